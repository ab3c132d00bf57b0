#!/usr/bin/env bash
# bench/run.sh: `make bench` and `make bench-quick`. Perpetuum's tools (in $PP_BIN) side by
# side with fastText, Vowpal Wabbit, PyTorch and zstd on this machine, as ratios measured in
# the same run (bench/README.md). This script sets up the environment; bench/bench.py runs
# the comparisons and prints the table.
#
# Environment:
#   PP_BIN            folder with pp-ingest, pp-train, pp-eval (the Makefile sets it)
#   BENCH_QUICK=1     tiny data, 1 round, never touches the network: reference tools that are
#                     not installed are skipped (and said so); the Perpetuum side still runs
#   BENCH_DATA=DIR    another folder of weekly *.jsonl[.zst] files (default: demo/data)
#   BENCH_REPS, BENCH_PASSES, BENCH_MIN_TOKENS, BENCH_LR, BENCH_LR_HIDDEN, BENCH_TORCH_LRS,
#   BENCH_ONLY=1a,3   run only these comparisons (development)
# Output: the table on stdout; bench/results/latest.json (full runs) or bench/work/quick.json.
# Exit status: 0 when the run completed (missed targets are printed as MISS, not errors),
# 1 when a built tool failed, 64 on a usage error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

bench_tool=run.sh bench_make=bench
source "$here/env.sh"

if [ "${BENCH_QUICK:-0}" = 0 ]; then
    "$here/setup.sh"
elif [ ! -f "$here/venv/.bench-setup" ]; then
    echo "bench/run.sh: quick mode without bench/venv: reference tools will be skipped (bench/setup.sh installs them)" >&2
fi

python3 "$here/bench.py"
# The static accuracy check on two large test sets (bench/accuracy.py, issue 19): full runs
# only (it builds its data from Debian's package lists and downloads one package).
if [ "${BENCH_QUICK:-0}" = 0 ] && [ -z "${BENCH_ONLY:-}" ]; then
    python3 "$here/accuracy.py"
fi
