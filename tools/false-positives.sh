#!/usr/bin/env bash
# tools/false-positives.sh: how often pp-ingest's batch checks quarantine clean data.
# Ingests every clean week of demo/data in order into a fresh root (one week a "week" apart
# by mtime), with a deployed model so the canary and OOV checks are live: every
# FP_DEPLOY_EVERY weeks `pp-train --once` trains on what came in and `pp-select --deploy`
# deploys that checkpoint (a model a few weeks stale, as in production between selections).
# Prints one line per quarantined week and the share quarantined (target: at most 2%).
#
#   tools/false-positives.sh [extra pp-ingest flags...]      e.g. --no-checks to only measure
#
# Environment: PP_BIN (folder with the pp-* tools; default .build/release), FP_ROOT (the
# root to create; default a temp folder, kept), FP_DATA (default demo/data),
# FP_DEPLOY_EVERY (default 4). Training uses --threads 1 (deterministic), so a re-run should
# give the same figures. Needs jq. The per-week JSON lines are in $FP_ROOT/ingest.jsonl.
# FP_SPOIL=1 also measures the other side: before each week from the 13th on is ingested,
# its six spoiled versions (tools/spoil.py; `resend` re-sends the week 8 weeks earlier) go
# through `pp-ingest --dry-run` against the same reference and model, and the share caught
# per kind is printed (the lines are in $FP_ROOT/spoil.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PP_BIN:-.build/release}
case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac
export PATH="$BIN:$PATH"
ROOT=${FP_ROOT:-$(mktemp -d /tmp/pp-fp.XXXXXX)/root}
DATA=${FP_DATA:-demo/data}
EVERY=${FP_DEPLOY_EVERY:-4}
for t in pp-ingest pp-train pp-select jq; do
  command -v "$t" >/dev/null || { echo "false-positives: $t not found (PP_BIN=$BIN)" >&2; exit 69; }
done

rm -rf "$ROOT"
mkdir -p "$ROOT/inbox"
LOG="$ROOT/log.txt"
base=1672531200   # 2023-01-01: week k arrives k weeks later (shard names sort by arrival)
k=0
for w in "$DATA"/*.jsonl.zst; do
  b=$(basename "$w")
  if [ "${FP_SPOIL:-0}" = 1 ] && (( k >= 12 )); then
    sp="$ROOT/spoiled"; rm -rf "$sp"; mkdir -p "$sp"
    weeks=("$DATA"/*.jsonl.zst)
    for kind in shuffle-labels one-label random-bytes binary mojibake first-word; do
      tools/spoil.py "$kind" "$w" "$sp/$kind.jsonl" --seed "$k"
    done
    tools/spoil.py resend "${weeks[$((k - 8))]}" "$sp/resend.jsonl" --seed "$k"
    pp-ingest --root "$ROOT" --dry-run "$@" "$sp"/*.jsonl 2>>"$LOG" | jq -c --arg w "$b" '. + {week: $w}' >>"$ROOT/spoil.jsonl" || true
  fi
  cp "$w" "$ROOT/inbox/.$b"
  touch -d "@$((base + k * 604800))" "$ROOT/inbox/.$b"
  mv "$ROOT/inbox/.$b" "$ROOT/inbox/$b"
  pp-ingest --root "$ROOT" --settle 0 --holdout 0.15 "$@" >>"$ROOT/ingest.jsonl" 2>>"$LOG" || true
  k=$((k + 1))
  if (( k % EVERY == 0 )); then
    ckpt=$(pp-train --root "$ROOT" --once --dim 50 --minn 3 --maxn 5 --bucket 200000 --min-count 2 \
             --lr 0.2 --threads 1 2>>"$LOG" || true)
    if [ -n "$ckpt" ]; then pp-select --root "$ROOT" --deploy "$ckpt" >/dev/null 2>>"$LOG"; fi
  fi
done

jq -r 'select(.status == "quarantined") | "quarantined: \(.file | split("/") | last) \(.tripped | join(",")): \(.reason)"' "$ROOT/ingest.jsonl"
jq -rs '
  [.[] | select(.status != null)] as $all
  | ($all | map(select(.status == "quarantined")) | length) as $q
  | ($all | map(select(.status == "accepted" or .status == "partial" or .status == "quarantined")) | length) as $n
  | "false positives: \($q) of \($n) clean weeks quarantined (\(if $n > 0 then ($q * 1000 / $n | round / 10) else 0 end)%); root: '"$ROOT"'"' \
  "$ROOT/ingest.jsonl"
if [ "${FP_SPOIL:-0}" = 1 ]; then
  jq -rs 'group_by(.file | split("/") | last) | .[]
    | "spoiled \(.[0].file | split("/") | last | sub(".jsonl$"; "")): caught \(map(select(.status == "quarantined" or .status == "rejected" or .status == "duplicate")) | length) of \(length) weeks; by check: \(map(.tripped // [] | .[]) | group_by(.) | map("\(.[0])=\(length)") | join(" "))"' \
    "$ROOT/spoil.jsonl"
fi
