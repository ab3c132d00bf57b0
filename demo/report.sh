#!/usr/bin/env bash
# demo/report.sh ROOT: what the demo made, for a person: checkpoints and their scores on the
# final eval set, pp-select's decisions, and the deployed model's predictions on a few texts.
set -euo pipefail
ROOT=${1:-${PP_ROOT:-demo/root}}
cd "$(dirname "$0")/.."
BIN=${PP_BIN:-.build/release}
case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac
export PATH="$BIN:$PATH"

latest=$(ls -t "$ROOT"/evals/*.json 2>/dev/null | head -n1 || true)
if [ -z "$latest" ]; then echo "no eval results in $ROOT/evals"; exit 0; fi
evalset=$(jq -r .evalset "$latest")
printf '%-48s %9s %9s %9s %12s %9s\n' checkpoint step accuracy macro_f1 recent_macro_f1 old_acc
jq -rs --arg e "$evalset" '
  map(select(.evalset == $e)) | sort_by(.step)[] |
  [.checkpoint, .step, .accuracy, .macro_f1, (.recent.macro_f1 // null), (.old.accuracy // null)] |
  @tsv' "$ROOT"/evals/*.json |
  while IFS=$'\t' read -r c s a m r o; do
    printf '%-48s %9s %9.3f %9.3f %12.3f %9.3f\n' "$c" "$s" "$a" "$m" "$r" "$o"
  done
echo "(eval set ${evalset:0:16}: $(jq -r .examples "$latest") holdout examples)"
# The deployed model against the best checkpoint on the same eval set (issue 13 asks for
# the deployed one within 0.02 accuracy of the best of the last day: the demo is one "day").
dep=$(readlink "$ROOT/deployed" 2>/dev/null || true)
if [ -n "$dep" ]; then
  jq -rs --arg e "$evalset" --arg d "$dep" '
    map(select(.evalset == $e)) as $r | ($r | max_by(.accuracy)) as $b | ($r | map(select(.path == $d)) | first) as $p |
    if $p == null then "deployed \($d): no result on this eval set"
    else "deployed \($p.checkpoint) accuracy \($p.accuracy * 1000 | round / 1000); best \($b.checkpoint) \($b.accuracy * 1000 | round / 1000); gap \(($b.accuracy - $p.accuracy) * 1000 | round / 1000) (\(if $b.accuracy - $p.accuracy <= 0.02 then "within" else "more than" end) 0.02)" end' \
    "$ROOT"/evals/*.json
fi

echo
echo "== decisions (selections.jsonl) =="
if [ -s "$ROOT/selections.jsonl" ]; then
  jq -r '[.at, .decision, (.deployed // "-"), .reason] | @tsv' "$ROOT/selections.jsonl" |
    while IFS=$'\t' read -r at d dep why; do printf '%s  %-8s %-44s %s\n' "$at" "$d" "$dep" "$why"; done
else
  echo "(none)"
fi

echo
echo "== quarantined batches (quarantine/*.reason.json) =="
if ls "$ROOT"/quarantine/*.reason.json >/dev/null 2>&1; then
  for f in "$ROOT"/quarantine/*.reason.json; do
    printf '  %-40s %s\n' "$(basename "$f" .reason.json)" "$(jq -r '.reason // .check' "$f")"
  done
else
  echo "(none)"
fi

echo
if [ -e "$ROOT/deployed" ]; then
  echo "== the deployed model ($(readlink "$ROOT/deployed")) on a few real texts =="
  texts=(
    "Documentation: fix typos in the description of the --force option"
    "t7004: add a test for tag creation with an empty message"
    "refs: avoid reading the packed-refs file twice when updating a reference"
    "gitk: fix the display of merge commits with many parents"
    "l10n: update German translation"
  )
  printf '%s\n' "${texts[@]}" | pp-eval predict "$ROOT/deployed" 2>/dev/null |
    paste <(printf '%s\n' "${texts[@]}") - |
    while IFS=$'\t' read -r text json; do
      printf '  %-78s -> %s (%.2f)\n' "${text:0:78}" "$(jq -r .label <<<"$json")" "$(jq -r .prob <<<"$json")"
    done
else
  echo "(nothing deployed)"
fi

cat <<EOT

Everything is in $ROOT. To look further:
  ls $ROOT/shards $ROOT/runs/*/checkpoints
  jq . $ROOT/quarantine/*.reason.json          # why a batch was held back
  tail -n 5 $ROOT/ingest.jsonl | jq -c '{file, status, checks}'   # what pp-ingest measured
  jq . $ROOT/runs/*/status.json
  jq '{checkpoint, accuracy, macro_f1, recent: .recent.macro_f1}' $ROOT/evals/*.json
  tail -n 3 $ROOT/selections.jsonl | jq .
  echo "fix a typo in the manual" | PP_ROOT=$ROOT pp-eval predict $ROOT/deployed
  PP_ROOT=$ROOT pp-eval --lineage $ROOT/deployed
EOT
