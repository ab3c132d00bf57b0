// libFuzzer target: the link index reader (LinkIndex.parse, runs/RUN/heads/links.idx) on
// arbitrary bytes. A parse either fails with a PPError or gives entries whose every field
// passed its check; both are fine, a trap or an out-of-bounds access is not. Built by
// tools/fuzz.sh with -sanitize=fuzzer,address; the top-level code below starts libFuzzer.
import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLinkIndex(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let entries = try? LinkIndex.parse(bytes) {
        for (key, e) in entries {
            precondition(!key.isEmpty && e.size >= 0 && e.link.lineage.allSatisfy { !$0.name.isEmpty && $0.name != "-" })
        }
    }
    return 0
}

// libFuzzer's driver with fuzzLinkIndex as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzLinkIndex($0, size) } ?? 0 })
