// libFuzzer target: selections.jsonl (pp-select History.parse) and the rollback stack built
// from what parses. History.swift is linked in from Sources/pp-select. Built by
// tools/fuzz.sh; the top-level code below starts libFuzzer.

import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSelections(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let records = History.parse(Array(UnsafeBufferPointer(start: data, count: size)), path: "selections.jsonl")
    _ = History.rollbackTargets(records, current: records.last?.deployedPath)
    _ = History.everDeployed(records)
    return 0
}

// libFuzzer's driver with fuzzSelections as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzSelections($0, size) } ?? 0 })
