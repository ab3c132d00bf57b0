#!/usr/bin/env bash
# Checkpoint cost of a trickling stream (issue 19, part 2): the util-linux weekly files of
# data/ go through pp-ingest and `pp-train --once`, WARM weeks at once, then one week at a
# time for WEEKS more (an hourly trainer on a slow stream writes checkpoints like these). For
# every checkpoint: its kind (full, or delta of its base), bytes and write seconds (pp-train's
# "checkpoint written" log line); then the load time of the last full checkpoint and of the
# last delta (`pp-eval predict` of one line, wall clock, best of 3). Default settings (2M
# buckets). Not a test: it prints a table. Scratch in a temporary folder, deleted at the end.
#
#   tools/delta-replay.sh                      PP_BIN=.build/release, WARM=400, WEEKS=30, FULL_EVERY=24
#   PP_BIN=.build-test/release WEEKS=50 tools/delta-replay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${PP_BIN:-.build/release}" && pwd)
WARM=${WARM:-400}; WEEKS=${WEEKS:-30}; FULL_EVERY=${FULL_EVERY:-24}
DATA=data/util-linux/stream
ROOT=$(mktemp -d /tmp/pp-delta-replay-XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
mapfile -t FILES < <(ls "$DATA" | sort)
ingest() { "$BIN/pp-ingest" --root "$ROOT" --holdout 0 --settle 0 --no-checks "$@" >/dev/null 2>>"$ROOT/ingest.log"; }
train() {
  "$BIN/pp-train" --root "$ROOT" --once --full-every "$FULL_EVERY" 2>&1 >/dev/null \
    | sed -n 's/.*checkpoint written bytes=\([0-9]*\) kind=\(.*\) path=\([^ ]*\) .*seconds=\([0-9.]*\).*/\1 \4 \3 \2/p'
}
ingest $(printf "$DATA/%s " "${FILES[@]:0:$WARM}")
printf '%-4s %-10s %12s %9s  %s\n' n kind bytes write_s file
n=0; last_full=""; last_delta=""
record() {
  read -r bytes secs path kind <<<"$1"
  n=$((n + 1))
  if [[ $kind == full ]]; then last_full=$path; k=full; else last_delta=$path; k=delta; fi
  printf '%-4s %-10s %12s %9s  %s\n' "$n" "$k" "$bytes" "$secs" "$(basename "$path")"
}
record "$(train)"
for f in "${FILES[@]:$WARM:$WEEKS}"; do
  ingest "$DATA/$f"
  out=$(train)
  [[ -n $out ]] && record "$out"
done
load() {
  local best=""
  for _ in 1 2 3; do
    local t0 t1
    t0=$(date +%s.%N)
    echo "mount fails on loop device" | "$BIN/pp-eval" predict "$1" --k 1 >/dev/null
    t1=$(date +%s.%N)
    best=$(echo "$t0 $t1 $best" | awk '{d=$2-$1; if ($3=="" || d<$3) print d; else print $3}')
  done
  echo "$best"
}
[[ -n $last_full ]] && echo "load (pp-eval predict, 1 line) of the last full checkpoint: $(load "$last_full") s"
[[ -n $last_delta ]] && echo "load (pp-eval predict, 1 line) of the last delta (base + delta): $(load "$last_delta") s"
