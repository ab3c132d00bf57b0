// libFuzzer target: control.json (pp-train's Control.parse) and `pp-train set KEY=VALUE`
// (Control.set) on arbitrary bytes. Control.swift is linked in from Sources/pp-train.
// Built by tools/fuzz.sh; libFuzzer supplies main.

import Shared

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let c = try? Control.parse(bytes, path: "control.json") { _ = c.json; _ = c.applied(to: Knobs()) }
    var c = Control()
    try? c.set(String(decoding: bytes, as: UTF8.self))
    return 0
}
