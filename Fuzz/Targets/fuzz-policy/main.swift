// libFuzzer target: policy.json as each tool reads its section (pp-ingest IngestPolicy,
// pp-train TrainPolicy, pp-select SelectPolicy) on arbitrary bytes. The three Policy files
// are linked in from Sources/. Built by tools/fuzz.sh; libFuzzer supplies main.

import Shared

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicy(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? IngestPolicy.parse(bytes, path: "policy.json")
    _ = try? TrainPolicy.parse(bytes, path: "policy.json")
    _ = try? SelectPolicy.parse(bytes, path: "policy.json")
    return 0
}
