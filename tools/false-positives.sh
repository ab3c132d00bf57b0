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
# root to create; default a temp folder, kept), FP_DATA (default demo/data; also
# data/git/stream, data/util-linux/stream), FP_FIRST / FP_LAST (only the weeks whose file
# names sort within [FP_FIRST, FP_LAST], e.g. 2015-W01 2019-W52: a contiguous range),
# FP_DEPLOY_EVERY (default 4), FP_POLICY (a policy.json copied into the root, e.g.
# tools/policy-issue7.json for the rules before issue 14). Training uses --threads 1
# (deterministic), so a re-run should give the same figures. Needs jq. The per-week JSON
# lines are in $FP_ROOT/ingest.jsonl.
# Issue 14: the summary counts, per check, the clean weeks quarantined (damage checks) and
# the weeks on which a change check went beyond its threshold (recorded, not stopped), and
# the shards pp-train's guard marked suspect (runs/main/suspects.json).
# FP_EVENTS=FILE: the weeks (file names, one a line; tools/drift-events.py prints them)
# that are synthetic drift events: their verdicts are printed, and any quarantined or
# suspect one is a failure of the guards.
# FP_SPOIL=1 also measures the other side: before each week from the 13th on is ingested,
# its six spoiled versions (tools/spoil.py; `resend` re-sends the week 8 weeks earlier) go
# through `pp-ingest --dry-run` against the same reference and model, and the share caught
# per kind is printed (the lines are in $FP_ROOT/spoil.jsonl). FP_SPOIL_TRAIN=1: each spoiled
# version ingest admitted is also ingested, followed by the next 6 clean weeks, and trained in
# a copy of the root, and pp-train's guard's verdict on it counted (suspect: stopped or undone
# on probation; confirmed; probation: pending; trained; $FP_ROOT/spoil-train.jsonl).
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

FIRST=${FP_FIRST:-}
LAST=${FP_LAST:-}

rm -rf "$ROOT"
mkdir -p "$ROOT/inbox"
if [ -n "${FP_POLICY:-}" ]; then cp "$FP_POLICY" "$ROOT/policy.json"; fi
LOG="$ROOT/log.txt"
# Week k arrives k weeks after the base (shard names sort by arrival). The base is the Sunday
# before the first included week (file names are ISO weeks, YYYY-Www): 2023-01-01 for the 130
# demo weeks. So no file's time is in the future (pp-ingest leaves such a file as not settled:
# week k lands on or before its real week, weeks without data being absent), and a run gives
# the same shard names, hence the same training, on any day (before, the base was counted back
# from today, and the git range stopped 1 clean week on one day and 6 on another).
first=""
for w in "$DATA"/*.jsonl.zst; do
  b=$(basename "$w")
  if [ -n "$FIRST" ] && [[ "$b" < "$FIRST" ]]; then continue; fi
  first=$b; break
done
base=$(python3 -c 'import datetime, sys
y, w = sys.argv[1][:8].split("-W")
d = datetime.datetime.fromisocalendar(int(y), int(w), 1).replace(tzinfo=datetime.timezone.utc)
print(int(d.timestamp()) - 86400)' "$first")
k=0
for w in "$DATA"/*.jsonl.zst; do
  b=$(basename "$w")
  if [ -n "$FIRST" ] && [[ "$b" < "$FIRST" ]]; then continue; fi
  if [ -n "$LAST" ] && [[ "$b" > "$LAST~" ]]; then break; fi
  if [ "${FP_SPOIL:-0}" = 1 ] && (( k >= 12 )); then
    sp="$ROOT/spoiled"; rm -rf "$sp"; mkdir -p "$sp"
    weeks=("$DATA"/*.jsonl.zst)
    for kind in shuffle-labels one-label random-bytes binary mojibake first-word; do
      tools/spoil.py "$kind" "$w" "$sp/$kind.jsonl" --seed "$k"
    done
    for i in "${!weeks[@]}"; do [ "${weeks[$i]}" = "$w" ] && wi=$i; done
    tools/spoil.py resend "${weeks[$((wi - 8))]}" "$sp/resend.jsonl" --seed "$k"
    pp-ingest --root "$ROOT" --dry-run "$@" "$sp"/*.jsonl 2>>"$LOG" | jq -c --arg w "$b" '. + {week: $w}' >>"$ROOT/spoil.jsonl" || true
    if [ "${FP_SPOIL_TRAIN:-0}" = 1 ] && [ -d "$ROOT/runs/main/checkpoints" ]; then
      # The second guard: each spoiled version ingest admitted goes in for real in place of
      # this week, followed by the next FP_TRIAL_WEEKS (6) clean weeks, into a hard-linked
      # copy of the root (every file there is replaced by rename, never rewritten), and
      # `pp-train --once` trains them; the verdict is pp-train's guard's on the spoiled shard:
      # suspect (stopped, or on probation and undone by the weeks after it), probation (still
      # pending), or trained.
      for f in "$sp"/*.jsonl; do
        st=$(jq -r --arg f "$f" 'select(.file == $f) | .status' "$ROOT/spoil.jsonl" | tail -1)
        case $st in accepted|partial) ;; *) continue ;; esac
        trial="$ROOT.trial"; rm -rf "$trial"; cp -al "$ROOT" "$trial"
        sname="${b%.jsonl.zst}-spoiled-$(basename "$f")"
        cp "$f" "$trial/inbox/.$sname"; touch -d "@$((base + k * 604800))" "$trial/inbox/.$sname"
        mv "$trial/inbox/.$sname" "$trial/inbox/$sname"
        for j in $(seq 1 "${FP_TRIAL_WEEKS:-6}"); do
          nw="${weeks[$((wi + j))]:-}"; [ -n "$nw" ] || break
          nb=$(basename "$nw")
          cp "$nw" "$trial/inbox/.$nb"; touch -d "@$((base + (k + j) * 604800))" "$trial/inbox/.$nb"
          mv "$trial/inbox/.$nb" "$trial/inbox/$nb"
        done
        shards=$(pp-ingest --root "$trial" --settle 0 --holdout 0.15 "$@" 2>>"$LOG" \
                 | jq -r --arg s "$sname" 'select((.file // "") | endswith($s)) | .shards[]? | select(contains("/shards/")) | split("/") | last' || true)
        pp-train --root "$trial" --once --dim 50 --minn 3 --maxn 5 --bucket 200000 --min-count 2 \
          --lr 0.2 --threads 1 >/dev/null 2>"$trial.log" || true
        v=trained
        [ -n "$shards" ] || v=quarantined-later
        for s1 in $shards; do
          if [ -f "$trial/runs/main/suspects.json" ] && jq -e --arg n "$s1" '.shards[] | select(.name == $n)' "$trial/runs/main/suspects.json" >/dev/null; then v=suspect
          elif [ $v != suspect ] && grep -F "$s1" "$trial.log" | grep -q "probation confirmed"; then v=confirmed
          elif [ $v != suspect ] && grep -F "$s1" "$trial.log" | grep -q "on probation"; then v=probation; fi
        done
        jq -cn --arg f "$f" --arg w "$b" --arg v "$v" '{file: $f, week: $w, guard: $v}' >>"$ROOT/spoil-train.jsonl"
        rm -rf "$trial" "$trial.log"
      done
    fi
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
jq -rs '
  [.[] | select(.status == "accepted" or .status == "partial" or .status == "quarantined")] as $all
  | "per check, clean weeks quarantined (damage): \([$all[] | .tripped // [] | .[]] | group_by(.) | map("\(.[0])=\(length)") | join(" "))",
    "per check, weeks with a change recorded (not stopped): \([$all[] | .changed // [] | .[]] | group_by(.) | map("\(.[0])=\(length)") | join(" "))"' \
  "$ROOT/ingest.jsonl"
nshards=$(ls "$ROOT/shards" 2>/dev/null | grep -c . || true)
if [ -f "$ROOT/runs/main/suspects.json" ]; then
  jq -r '.shards[] | "suspect: \(.name): \(.reason)"' "$ROOT/runs/main/suspects.json"
  nsus=$(jq '.shards | length' "$ROOT/runs/main/suspects.json")
else
  nsus=0
fi
spikes=$(grep -c "guard: loss spike on new data" "$LOG" || true)
echo "train guard: $nsus suspect of $nshards shards; $spikes loss spikes recorded as change (trained on)"
if [ -n "${FP_EVENTS:-}" ]; then
  fail=0; nev=0
  while read -r ev; do
    [ -n "$ev" ] || continue
    nev=$((nev + 1))
    st=$(jq -r --arg e "$ev" 'select((.file // "") | endswith("/" + $e)) | .status' "$ROOT/ingest.jsonl" | tail -1)
    sus=no
    if [ -f "$ROOT/runs/main/suspects.json" ] && jq -e --arg e "${ev%%.*}" '.shards[] | select(.name | startswith($e))' "$ROOT/runs/main/suspects.json" >/dev/null; then sus=yes; fi
    echo "drift event $ev: ingest $st, suspect $sus"
    if [ "$st" = quarantined ] || [ "$sus" = yes ]; then fail=$((fail + 1)); fi
  done <"$FP_EVENTS"
  echo "drift events stopped: $fail of $nev"
fi
if [ "${FP_SPOIL:-0}" = 1 ] && [ -f "$ROOT/spoil-train.jsonl" ]; then
  jq -rs 'group_by(.file | split("/") | last) | .[]
    | "spoiled \(.[0].file | split("/") | last | sub(".jsonl$"; "")), admitted by ingest then trained: \(length) weeks; pp-train guard: \(group_by(.guard) | map("\(.[0].guard)=\(length)") | join(" "))"' \
    "$ROOT/spoil-train.jsonl"
fi
if [ "${FP_SPOIL:-0}" = 1 ]; then
  jq -rs 'group_by(.file | split("/") | last) | .[]
    | "spoiled \(.[0].file | split("/") | last | sub(".jsonl$"; "")): caught \(map(select(.status == "quarantined" or .status == "rejected" or .status == "duplicate")) | length) of \(length) weeks; by check: \(map(.tripped // [] | .[]) | group_by(.) | map("\(.[0])=\(length)") | join(" "))"' \
    "$ROOT/spoil.jsonl"
fi
