#!/usr/bin/env bash
# bench/drift.sh: `make drift` and `make drift-quick` (issue 12; bench/README.md, "make drift").
# Replays real, time-ordered streams week by week through the built tools beside weekly
# fastText retraining and Vowpal Wabbit (bench/drift.py does the work; this sets up).
#
# Environment (the Makefile passes its variables of the same names):
#   PP_BIN        folder with the four tools (required)
#   STREAM        git | util-linux | all (default all: both shipped streams, side by side)
#   STREAM_DIR    any folder of weekly YYYY-Www.jsonl[.zst] files instead (NAME= names it,
#                 else the folder's name)
#   PERIOD        evaluation period, ISO years: 2023-2025 (default) or 2024
#   POPULATION    N (runs with lr 0.1, 0.2, 0.4, ...) or LR1,LR2,...: a population of runs
#                 stepped daily by `pp-select population` (issue 16); results go to
#                 drift-NAME-population.json/.svg
#   DRIFT_QUICK=1 4 weeks of the period after 26 weeks of warm-up: checks the whole path and
#                 the output's shape, not the numbers (CI); results go to bench/work/
# Output: the tables on stdout; bench/results/drift-NAME.json and .svg (quick: bench/work/).
# Exit status: 0 every replay finished, 1 one failed, 64 usage.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

bench_tool=drift.sh bench_make=drift
source "$here/env.sh"
"$here/setup.sh" drift
PY="$here/venv/bin/python"
PERIOD="${PERIOD:-2023-2025}"
quick=(); [ "${DRIFT_QUICK:-0}" != 0 ] && quick=(--quick)

runs=()
if [ -n "${STREAM_DIR:-}" ]; then
    [ -d "$STREAM_DIR" ] || { echo "bench/drift.sh: STREAM_DIR=$STREAM_DIR is not a folder" >&2; exit 64; }
    runs+=("$STREAM_DIR|${NAME:-}")
else
    case "${STREAM:-all}" in
        all|"") runs+=("$repo/data/git|git" "$repo/data/util-linux|util-linux") ;;
        git|util-linux) runs+=("$repo/data/$STREAM|$STREAM") ;;
        *) echo "bench/drift.sh: STREAM=$STREAM: expected git, util-linux or all (or STREAM_DIR=DIR)" >&2; exit 64 ;;
    esac
fi

# The streams run side by side (one replay per core); each prints its progress on stderr
# and its table on stdout when it ends.
pids=()
for r in "${runs[@]}"; do
    dir="${r%%|*}"; name="${r#*|}"
    args=(--stream-dir "$dir" --period "$PERIOD" --bin "$PP_BIN" "${quick[@]}")
    if [ -n "${POPULATION:-}" ]; then
        args+=(--population "$POPULATION")
        name="${name:-$(basename "$dir")}-population"
    fi
    [ -n "$name" ] && args+=(--name "$name")
    "$PY" "$here/drift.py" "${args[@]}" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
