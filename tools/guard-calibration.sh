#!/usr/bin/env bash
# tools/guard-calibration.sh: how pp-train's guard at the door (issue 7, layer 2) judges the
# clean weeks of demo/data, and spoiled weeks built from them.
#
# 1. Ingests every clean week in order into a base root (pp-ingest --no-checks, one "week" a
#    minute apart by mtime, 15% holdout as in the demo), so that every week becomes a shard.
# 2. Clean stream: a fresh run takes the shards one at a time, one `pp-train --once` per week
#    (GC_MODE=once, the default; deterministic with --threads 1) or one running trainer that
#    gets a week every GC_PERIOD seconds (GC_MODE=daemon, as `make demo` does; timing-
#    dependent). Every judged week is logged with its loss, the median and the threshold.
#    Prints the weeks judged, the weeks stopped (false positives), and the highest clean
#    loss/threshold ratio.
# 3. Spoiled weeks (tools/spoil.py: shuffle-labels, one-label, first-word, random-bytes of
#    three weeks): each is judged by the clean run's checkpoints after 40, 80 and 120 weeks
#    (`pp-train --once --init CKPT` on a root holding only that shard). Prints loss/threshold
#    and whether it was stopped.
#
#   tools/guard-calibration.sh
#
# Environment: PP_BIN (folder with the pp-* tools; default .build/release), GC_DIR (work
# folder; default a temp folder, kept), GC_MODE (once|daemon), GC_PERIOD (default 0.75).
# The demo's model flags: --dim 50 --minn 3 --maxn 5 --bucket 200000 --min-count 2 --lr 0.2.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PP_BIN:-.build/release}
case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac
DIR=${GC_DIR:-$(mktemp -d /tmp/pp-guard.XXXXXX)}
MODE=${GC_MODE:-once}
PERIOD=${GC_PERIOD:-0.75}
FLAGS=(--dim 50 --minn 3 --maxn 5 --bucket 200000 --min-count 2 --lr 0.2)
for t in pp-ingest pp-train; do
  [ -x "$BIN/$t" ] || { echo "guard-calibration: $BIN/$t not found (set PP_BIN)" >&2; exit 69; }
done
echo "guard-calibration: work folder $DIR, mode $MODE" >&2

# 1. Every clean week as a shard, in order.
BASE=$DIR/base
rm -rf "$BASE"; mkdir -p "$BASE/inbox"
i=0
for w in demo/data/*.jsonl.zst; do
  i=$((i + 1)); b=$(basename "$w")
  cp "$w" "$BASE/inbox/$b"; touch -d "@$((1700000000 + i * 60))" "$BASE/inbox/$b"
done
"$BIN/pp-ingest" --root "$BASE" --settle 0 --holdout 0.15 --no-checks >/dev/null 2>"$DIR/ingest.log"
mapfile -t SHARDS < <(ls "$BASE/shards")
echo "clean weeks as shards: ${#SHARDS[@]}"

# 2. The clean stream.
RUN=$DIR/clean
rm -rf "$RUN"; mkdir -p "$RUN/shards"; : >"$DIR/clean.log"
add() { ln "$BASE/shards/$1" "$RUN/shards/.$1" && mv "$RUN/shards/.$1" "$RUN/shards/$1"; }
if [ "$MODE" = daemon ]; then
  "$BIN/pp-train" --root "$RUN" "${FLAGS[@]}" --threads 2 --rescan 0.5 --checkpoint-every 15s >/dev/null 2>>"$DIR/clean.log" &
  T=$!
  for s in "${SHARDS[@]}"; do add "$s"; sleep "$PERIOD"; done
  sleep 3; kill -TERM "$T"; wait "$T" || true
else
  for s in "${SHARDS[@]}"; do
    add "$s"
    "$BIN/pp-train" --root "$RUN" --once "${FLAGS[@]}" --threads 1 >/dev/null 2>>"$DIR/clean.log" || true
  done
fi
python3 - "$DIR/clean.log" <<'EOF'
import re, sys
judged, stopped, worst = 0, [], (0, "")
for line in open(sys.argv[1]):
    if "guard: shard" not in line: continue
    m = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    if "stopped" in line: stopped.append(m["shard"])
    if "threshold" in m:
        judged += 1
        r = float(m["loss"]) / float(m["threshold"])
        if "accepted" in line and r > worst[0]: worst = (r, m["shard"])
print(f"clean weeks judged: {judged}, stopped (false positives): {len(stopped)} {stopped}")
print(f"highest clean loss/threshold: {worst[0]:.2f} ({worst[1]})")
EOF

# 3. Spoiled weeks judged by the clean run at three points of the stream.
SP=$DIR/spoil
rm -rf "$SP"; mkdir -p "$SP/inbox"
for w in 2023-W40 2024-W10 2025-W02; do
  for k in shuffle-labels one-label first-word random-bytes; do
    python3 tools/spoil.py "$k" "demo/data/$w.jsonl.zst" "$SP/inbox/$k-$w.jsonl" --seed 7 >/dev/null
  done
done
"$BIN/pp-ingest" --root "$SP" --settle 0 --holdout 0 --no-checks >"$DIR/spoil-ingest.jsonl" 2>/dev/null || true
mapfile -t CK < <(ls "$RUN"/runs/main/checkpoints/*.ppc)
echo "checkpoints of the clean run: ${#CK[@]}"
for at in 40 80 120; do
  k=$(( at * ${#CK[@]} / ${#SHARDS[@]} )); [ "$k" -ge "${#CK[@]}" ] && k=$((${#CK[@]} - 1))
  for line in $(jq -r 'select(.status=="accepted") | "\(.file)|\([.shards[] | select(contains("/shards/"))][0] // "")"' "$DIR/spoil-ingest.jsonl" 2>/dev/null); do
    f=${line%%|*}; s=${line##*|}; [ -n "$s" ] || continue
    s=$(basename "$s")
    P=$DIR/probe; rm -rf "$P"; mkdir -p "$P/shards"; ln "$SP/shards/$s" "$P/shards/$s"
    "$BIN/pp-train" --root "$P" --once --init "${CK[$k]}" >/dev/null 2>"$P.log" || true
    v=$(grep -o 'guard: shard [a-z]*\|loss=[0-9.]*\|threshold=[0-9.]*' "$P.log" | tr '\n' ' ')
    echo "after ~$at weeks: $(basename "$f" .jsonl): $v"
  done
done
