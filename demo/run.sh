#!/usr/bin/env bash
# make demo: the whole Perpetuum loop on a compressed clock, in a few minutes.
# Replays the 130 real weeks in demo/data into demo/root/inbox (two weeks every
# DEMO_WEEK_SECONDS), while pp-train trains continuously, pp-eval scores each checkpoint and
# pp-select deploys winners; midway it changes the running trainer's learning rate and
# dropout; at three quarters it drops a spoiled batch (a real week with its labels shuffled,
# as a broken export would) into the inbox, which pp-ingest's canary quarantines. Everything
# it makes stays in demo/root for you to inspect; it ends by writing demo/root/report/index.html
# (pp-select report) and printing its path.
#
# POPULATION=N (make demo POPULATION=3): N runs p1..pN train side by side with learning rates
# 0.1, 0.2, 0.4, ... (one thread each; as `make drift POPULATION=N`), and after each selection `pp-select population`
# restarts the weakest from the best run's checkpoint with perturbed knobs (issue 16; the
# knobs then belong to the population, so the mid-run `pp-train set` is left out). The demo
# ends with the population's journal (population.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PP_BIN:-.build/release}
case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac   # make passes an absolute path
export PATH="$BIN:$PATH"
ROOT=${DEMO_ROOT:-$PWD/demo/root}
WEEK_SECONDS=${DEMO_WEEK_SECONDS:-1.5}
WEEKS_PER_TICK=${DEMO_WEEKS_PER_TICK:-2}
export PP_ROOT="$ROOT"
POPULATION=${POPULATION:-0}
case $POPULATION in ''|*[!0-9]*) echo "demo: POPULATION=$POPULATION: expected a number of runs" >&2; exit 64 ;; esac
if [ "$POPULATION" -eq 1 ] || [ "$POPULATION" -gt 8 ]; then echo "demo: POPULATION=$POPULATION: 2 to 8 runs (or 0: one run)" >&2; exit 64; fi

for t in pp-ingest pp-train pp-eval pp-select; do
  command -v "$t" >/dev/null || { echo "demo: $t not found in $BIN (run make build)" >&2; exit 1; }
done

rm -rf "$ROOT"
mkdir -p "$ROOT/inbox"
LOG="$ROOT/demo.log"
: >"$LOG"

# A small, fast model for the demo: words + bigrams + char 3..5-grams, 200k buckets.
MODEL=(--dim 50 --minn 3 --maxn 5 --bucket 200000 --min-count 2 --rescan 1 --checkpoint-every 15s)
TRAINERS=()
if [ "$POPULATION" -ge 2 ]; then
  RUNS=(); conf=""; lr=0.1
  for ((p = 1; p <= POPULATION; p++)); do
    RUNS+=("p$p"); conf+="${conf:+, }\"p$p\": {\"lr\": $lr}"; lr=$(awk "BEGIN{print $lr * 2}")
  done
  # min_interval 0s: the demo's "days" are seconds apart.
  echo "{\"runs\": {$conf}, \"seed\": 7, \"min_interval\": \"0s\"}" >"$ROOT/population.json"
  pp-select population >"$ROOT/population-steps.jsonl" 2>>"$LOG"   # init: each run's control.json
  for r in "${RUNS[@]}"; do
    pp-train --run "$r" "${MODEL[@]}" --threads 1 >>"$ROOT/checkpoints.txt" 2>>"$LOG" &
    TRAINERS+=($!)
  done
  echo "demo: a population of $POPULATION runs (${RUNS[*]}): $(jq -c '.runs' "$ROOT/population.json")"
else
  RUNS=(main)
  pp-train --run main "${MODEL[@]}" --lr 0.2 --threads 2 >"$ROOT/checkpoints.txt" 2>>"$LOG" &
  TRAINERS+=($!)
fi
cleanup() { kill "${TRAINERS[@]}" 2>/dev/null || true; }
trap cleanup EXIT

status() { jq -r "$1" "$ROOT/runs/${RUNS[0]}/status.json" 2>/dev/null || echo -; }
score() { # newest eval result's recent macro-F1 and its checkpoint
  local f; f=$(ls -t "$ROOT"/evals/*.json 2>/dev/null | head -n1 || true)
  [ -n "$f" ] && jq -r '"\(.checkpoint | split("/")[1] | .[0:26]) F1 \(.macro_f1 * 1000 | round / 1000)"' "$f" || echo -
}

weeks=(demo/data/*.jsonl.zst)
n=${#weeks[@]}
half=$((n / 2))
spoil_at=$((n * 3 / 4))
echo "demo: $n weeks of git/git commit messages, ${WEEKS_PER_TICK} every ${WEEK_SECONDS}s; root: $ROOT"
# Each week's file lands with the time of its week as its mtime (the Sunday before its ISO
# week, counted on from the first one), as a weekly export would: pp-ingest stamps shard
# names with it and tells a weekly stream from a trickle by it (docs/formats.md, "Trickles").
first=$(basename "${weeks[0]}")
fy=${first:0:4}; fw=$((10#${first:6:2}))
jan4=$(date -u -d "$fy-01-04" +%s); jan4dow=$(date -u -d "$fy-01-04" +%u)
base=$((jan4 - (jan4dow - 1) * 86400 + (fw - 1) * 604800 - 86400))
i=0
while [ $i -lt $n ]; do
  for ((k = 0; k < WEEKS_PER_TICK && i < n; k++, i++)); do
    w=${weeks[$i]}; b=$(basename "$w")
    cp "$w" "$ROOT/inbox/.$b" && touch -d "@$((base + i * 604800))" "$ROOT/inbox/.$b" &&
      mv "$ROOT/inbox/.$b" "$ROOT/inbox/$b"   # appear complete
  done
  if [ $i -ge $spoil_at ] && [ $i -lt $n ] && [ -z "${spoiled:-}" ] && command -v python3 >/dev/null; then
    # A spoiled batch: the next week arrives with its labels shuffled (a broken export's
    # join), instead of the real one.
    src=${weeks[$i]}; bad="spoiled-$(basename "$src")"
    python3 tools/spoil.py shuffle-labels "$src" "$ROOT/inbox/.$bad" --seed 7 2>>"$LOG" &&
      touch -d "@$((base + i * 604800))" "$ROOT/inbox/.$bad" && mv "$ROOT/inbox/.$bad" "$ROOT/inbox/$bad"
    spoiled=$bad; i=$((i + 1))
  fi
  pp-ingest --settle 0 --holdout 0.15 >>"$ROOT/ingest.jsonl" 2>>"$LOG" || true
  if [ -n "${spoiled:-}" ] && [ -z "${spoil_told:-}" ]; then
    echo
    if [ -f "$ROOT/quarantine/$spoiled.reason.json" ]; then
      echo "demo: week $i: a spoiled batch ($spoiled, labels shuffled) was quarantined: $(jq -r '.reason' "$ROOT/quarantine/$spoiled.reason.json")"
    else
      echo "demo: week $i: a spoiled batch ($spoiled, labels shuffled) was NOT caught by pp-ingest (see $ROOT/ingest.jsonl)"
    fi
    spoil_told=1
  fi
  if [ $i -ge $half ] && [ -z "${knobs_changed:-}" ] && [ "$POPULATION" -eq 0 ]; then
    pp-train set lr=0.1 dropout=0.1 --run main 2>>"$LOG"
    echo; echo "demo: week $i: pp-train set lr=0.1 dropout=0.1 (the running trainer picks it up within seconds)"
    knobs_changed=1
  fi
  if (( i % 12 == 0 )); then
    pp-eval --pending --recent-days 91 >>"$ROOT/evals.jsonl" 2>>"$LOG" || true
    pp-select --since 24h >>"$ROOT/select.jsonl" 2>>"$LOG" || true
    if [ "$POPULATION" -ge 2 ]; then pp-select population >>"$ROOT/population-steps.jsonl" 2>>"$LOG" || true; fi
  fi
  dep=$(readlink "$ROOT/deployed" 2>/dev/null | xargs -r basename | cut -c1-26 || true)
  printf '\rweek %3d/%d %s | %6s ex/s | loss %5s | vocab %5s labels %2s | newest eval %s | deployed %s   ' \
    "$i" "$n" "$(basename "${weeks[$((i - 1))]}" .jsonl.zst)" "$(status '.examples_per_s // 0 | round')" \
    "$(status '.loss // 0 | . * 1000 | round / 1000')" "$(status .vocabulary_size)" "$(status .labels)" \
    "$(score)" "${dep:-none}"
  sleep "$WEEK_SECONDS"
done
echo
echo "demo: all weeks delivered; letting the trainer finish, then a final checkpoint (SIGTERM)"
sleep 5
kill -TERM "${TRAINERS[@]}"; wait "${TRAINERS[@]}" || true
trap - EXIT
pp-eval --pending --recent-days 91 >>"$ROOT/evals.jsonl" 2>>"$LOG" || true
pp-select --since 24h >>"$ROOT/select.jsonl" 2>>"$LOG" || true

if [ "$POPULATION" -ge 2 ]; then
  echo
  echo "== the population's journal (population.jsonl) =="
  jq -r '[.seq, .at, .action, (.run // "-"), (.knobs.lr // "-"), (.from // "-"), .reason] | @tsv' "$ROOT/population.jsonl" |
    while IFS=$'\t' read -r q at a r lr from why; do printf '%3s %s %-7s %-3s lr %-8s %s\n' "$q" "$at" "$a" "$r" "$lr" "${why:0:110}"; done
fi
echo
echo "== checkpoints and scores (holdout, all / recent) =="
demo/report.sh "$ROOT"

# The same story as one page with charts (pp-select report, issue 17): its path on stdout.
echo
if page=$(pp-select report --out "$ROOT/report" 2>>"$LOG"); then
  echo "demo: the report, to open in a browser:"
  echo "$page"
else
  echo "demo: pp-select report failed (see $LOG)"
fi
