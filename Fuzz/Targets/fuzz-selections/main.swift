// libFuzzer target: the lines pp-select appends and the file beside them a person writes:
// selections.jsonl (History.parse) and the rollback stack built from what parses, a
// population's journal population.jsonl and population.json (PopulationFiles.swift). History.swift
// and PopulationFiles.swift are linked in from Sources/pp-select. Built by tools/fuzz.sh; the
// top-level code below starts libFuzzer.

import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSelections(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let records = History.parse(Array(UnsafeBufferPointer(start: data, count: size)), path: "selections.jsonl")
    _ = History.rollbackTargets(records, current: records.last?.deployedPath)
    _ = History.everDeployed(records)
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? PopulationJournal.parse(bytes, path: "population.jsonl")
    if let c = try? PopulationConfig.parse(bytes, path: "population.json") {
        // What parses is within the documented bounds.
        if c.runs.count < 2 || c.runs.count > PopulationConfig.maxRuns || c.perturb.isEmpty || c.perturb.count > 8 { abort() }
        for r in c.runs where c.knobs[r] == nil || Knobs.problem(lr: c.knobs[r]!.lr) != nil { abort() }
    }
    return 0
}

// libFuzzer's driver with fuzzSelections as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzSelections($0, size) } ?? 0 })
