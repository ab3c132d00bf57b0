// libFuzzer target: policy.json as each tool reads its section (pp-ingest IngestPolicy,
// pp-train TrainPolicy, pp-select SelectPolicy) on arbitrary bytes. The three Policy files
// are linked in from Sources/. Built by tools/fuzz.sh; the top-level code below starts libFuzzer.

import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicy(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? IngestPolicy.parse(bytes, path: "policy.json")
    _ = try? TrainPolicy.parse(bytes, path: "policy.json")
    _ = try? SelectPolicy.parse(bytes, path: "policy.json")
    return 0
}

// libFuzzer's driver with fuzzPolicy as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzPolicy($0, size) } ?? 0 })
