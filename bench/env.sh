# bench/env.sh: sourced by bench/run.sh and bench/drift.sh. Checks $PP_BIN and makes it
# absolute, and sets one OpenBLAS kernel choice for every command of the run (pp-train's
# OpenBLAS and numpy's both read it when they load), from the CPU flags, unless the caller
# set it. $bench_tool names the caller in the error.
if [ -z "${PP_BIN:-}" ]; then
    echo "bench/$bench_tool: PP_BIN is not set: run \`make ${bench_make:-bench}\` (or PP_BIN=DIR bench/$bench_tool)" >&2
    exit 64
fi
export PP_BIN="$(cd "$PP_BIN" && pwd)"
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    if grep -qw avx512bw /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell
    fi
fi
