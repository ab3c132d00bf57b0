// libFuzzer target: selections.jsonl (pp-select History.parse) and the rollback stack built
// from what parses. History.swift is linked in from Sources/pp-select. Built by
// tools/fuzz.sh; libFuzzer supplies main.

import Shared

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSelections(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let records = History.parse(Array(UnsafeBufferPointer(start: data, count: size)), path: "selections.jsonl")
    _ = History.rollbackTargets(records, current: records.last?.deployedPath)
    _ = History.everDeployed(records)
    return 0
}
