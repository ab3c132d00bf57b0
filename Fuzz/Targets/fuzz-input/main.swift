// libFuzzer target: the input parser (JSON Lines and fastText lines, InputParser.parseLine)
// on each line of arbitrary bytes, with a small --max-text-bytes so the limits are reached.
// Built by tools/fuzz.sh; libFuzzer supplies main.
import Shared

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
