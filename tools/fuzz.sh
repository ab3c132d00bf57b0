#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (Fuzz/Targets, issue 15): the checkpoint reader, the
# shard reader, the input parser (JSON Lines, fastText lines), control.json, policy.json and
# selections.jsonl, pp-eval's score cache, the holdout index. Each runs for FUZZ_SECONDS (default 60) from its committed seed corpus
# (Fuzz/corpus/TARGET, read only; new inputs go to .build-fuzz/corpus/TARGET). A crash
# leaves its input in .build-fuzz/crash-TARGET-* and makes the script exit 1.
#
#   tools/fuzz.sh                       every target, FUZZ_SECONDS each
#   FUZZ_SECONDS=20 tools/fuzz.sh       a smoke (make fuzz-smoke)
#   tools/fuzz.sh checkpoint shard      some targets
#   FUZZ_RUNS=10000000 FUZZ_SECONDS=7200 tools/fuzz.sh shard
#                                       stop at 10 million executions (or the time, first)
#
# Build: SwiftPM with PP_FUZZ=1 (Package.swift adds the fuzz-* targets) and swiftc's
# -sanitize=fuzzer,address, optimised (-c release, as libFuzzer's own docs advise: ASan checks
# optimised code as well, and the Codable parsers run 3-4x faster than at -Onone, which is
# what makes 10 million executions of the JSON targets an hour's work), in .build-fuzz.
# FUZZ_CONFIG=debug builds at -Onone instead. Each target's top-level code calls
# LLVMFuzzerRunDriver (SwiftPM links an executable's main as MODULE_main).
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
SECONDS_EACH=${FUZZ_SECONDS:-60}
RUNS=${FUZZ_RUNS:--1}
ALL=(checkpoint shard input control policy selections scorecache holdoutindex linkindex)
TARGETS=("$@"); [ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
SCRATCH=.build-fuzz
FLAGS=(-c "${FUZZ_CONFIG:-release}" --scratch-path "$SCRATCH" -Xswiftc -sanitize=fuzzer,address)

for t in "${TARGETS[@]}"; do
  PP_FUZZ=1 $SWIFT build "${FLAGS[@]}" --product "fuzz-$t" >&2
done
BIN=$(PP_FUZZ=1 $SWIFT build "${FLAGS[@]}" --show-bin-path)

status=0
printf '%-11s %12s %9s %8s  %s\n' target executions exec/s crashes corpus
for t in "${TARGETS[@]}"; do
  work="$SCRATCH/corpus/$t"; mkdir -p "$work"
  log="$SCRATCH/fuzz-$t.log"
  # -close_fd_mask=3: the parsers log refused lines to stderr; libFuzzer's own report still
  # goes to the log. 2 GiB of RSS is a leak or a bomb. Inputs of 64 KiB at most for the
  # binary formats and the input parser (a line may be that long); 8 KiB for the small text
  # files people edit or the tools append a line to (control.json, policy.json,
  # selections.jsonl, holdout.idx, links.idx): their parsers go line by line or key by key, so a longer
  # input only repeats what 8 KiB already reaches, and at 64 KiB libFuzzer grew its inputs
  # until the JSON targets ran at ~700-1,900 executions a second.
  case "$t" in control|policy|selections|holdoutindex|linkindex) maxlen=8192 ;; *) maxlen=65536 ;; esac
  set +e
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0 "$BIN/fuzz-$t" "$work" "Fuzz/corpus/$t" \
    -max_total_time="$SECONDS_EACH" -runs="$RUNS" -max_len="$maxlen" -rss_limit_mb=2048 -timeout=10 -close_fd_mask=3 \
    -artifact_prefix="$SCRATCH/crash-$t-" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # find, not ls: with pipefail, ls of no match (exit 2) ended the script after the first target.
  crashes=$(find "$SCRATCH" -maxdepth 1 -name "crash-$t-*" | wc -l)
  printf '%-11s %12s %9s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes" "$(ls "$work" | wc -l) files"
  if [ $rc -ne 0 ]; then status=1; echo "fuzz-$t: exit $rc, see $log" >&2; grep -m5 -A15 'ERROR\|==ERROR\|Fatal error' "$log" >&2 || true; fi
done
exit $status
