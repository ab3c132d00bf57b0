// libFuzzer target: the holdout index reader (HoldoutIndex.parse, evals/holdout.idx) on arbitrary
// bytes. A parse either fails with a PPError or gives entries whose every field passed its
// check; both are fine, a trap or an out-of-bounds access is not. Built by tools/fuzz.sh with
// -sanitize=fuzzer,address; the top-level code below starts libFuzzer.
import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHoldoutIndex(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let entries = try? HoldoutIndex.parse(bytes) {
        for (name, e) in entries {
            precondition(!name.isEmpty && e.size >= 0 && e.examples >= 0 && (e.sha256.isEmpty || e.sha256.utf8.count == 64))
        }
    }
    return 0
}

// libFuzzer's driver with fuzzHoldoutIndex as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzHoldoutIndex($0, size) } ?? 0 })
