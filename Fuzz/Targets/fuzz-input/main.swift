// libFuzzer target: the input parser (JSON Lines and fastText lines, InputParser.parseLine)
// on each line of arbitrary bytes, with a small --max-text-bytes so the limits are reached.
// Built by tools/fuzz.sh; the top-level code below starts libFuzzer.
import CFuzzer
import Glibc
import Shared
import TextModel

let parser = InputParser(options: InputOptions(maxTextBytes: 256))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    parser.reset()
    let buf = UnsafeRawBufferPointer(start: data, count: size)
    var start = 0, n = 0
    for i in 0...size where i == size || buf[i] == 0x0A {
        n += 1
        _ = parser.parseLine(UnsafeRawBufferPointer(rebasing: buf[start..<i]), number: n)
        start = i + 1
    }
    return 0
}

// libFuzzer's driver with fuzzInput as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzInput($0, size) } ?? 0 })
