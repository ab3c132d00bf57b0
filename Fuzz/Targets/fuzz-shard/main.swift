// libFuzzer target: the shard reader (Shard(path:fileBytes:)) on arbitrary bytes, and on the
// bytes compressed as one frame (the record walk behind a valid checksum); a shard that
// loads is walked whole. Built by tools/fuzz.sh; the top-level code below starts libFuzzer.
import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzShard(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let s = try? Shard(path: "fuzz.pps", fileBytes: bytes) { _ = s.examples() }
    if !bytes.starts(with: [0x28, 0xB5, 0x2F, 0xFD]), let z = try? Zstd.compress(bytes, level: 1),
       let s = try? Shard(path: "fuzz.pps", fileBytes: z) {
        _ = s.examples()
    }
    return 0
}

// libFuzzer's driver with fuzzShard as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzShard($0, size) } ?? 0 })
