// libFuzzer target: control.json (pp-train's Control.parse) and `pp-train set KEY=VALUE`
// (Control.set) on arbitrary bytes; Control is TextModel's (TextModel/Control.swift).
// Built by tools/fuzz.sh; the top-level code below starts libFuzzer.

import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let c = try? Control.parse(bytes, path: "control.json") {
        _ = c.json; _ = c.applied(to: Knobs())
        // What a file writes must read back the same (adopt included).
        if (try? Control.parse(Array(c.json.utf8), path: "control.json")) != c { abort() }
    }
    var c = Control()
    try? c.set(String(decoding: bytes, as: UTF8.self))
    return 0
}

// libFuzzer's driver with fuzzControl as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzControl($0, size) } ?? 0 })
