// libFuzzer target: the checkpoint reader (Checkpoint.decode, CheckpointLoad.swift) and a
// delta's vocabulary patch reader (Vocabulary.applyPatch) on arbitrary bytes, in the full load mode for inputs of even size and the inference mode for odd. Inputs
// that are not a zstd frame are also tried as the decompressed layout (compressed here, so
// the fuzzer reaches the section parser behind a valid checksum). Built by tools/fuzz.sh
// with -sanitize=fuzzer,address; the top-level code below starts libFuzzer.
import CFuzzer
import Glibc
import Shared
import TextModel

let fuzzBaseVocabulary: Vocabulary = {
    let v = Vocabulary(capacity: 8, minCount: 2)
    for w in ["a", "a", "b", "b", "c"] {
        var b = Array(w.utf8)
        _ = b.withUnsafeMutableBufferPointer { v.observe($0.baseAddress!, $0.count, key: FeatureHash.key64($0.baseAddress!, $0.count)) }
    }
    return v
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let mode: Checkpoint.LoadMode = size % 2 == 0 ? .full : .inference
    if let ck = try? Checkpoint.decode(bytes, path: "fuzz.ppc", mode: mode) {
        _ = ck.model.predict(tokens: ["a", "b"])
    }
    // A delta's vocabulary patch (VocabularyPatch.swift) over a fixed base: slots "a", "b",
    // candidate "c" (a decoded delta never reaches it here: its base file does not exist).
    _ = try? Vocabulary.applyPatch(bytes: bytes, path: "fuzz.ppc", to: fuzzBaseVocabulary)
    if !bytes.starts(with: [0x28, 0xB5, 0x2F, 0xFD]), let z = try? Zstd.compress(bytes, level: 1),
       let ck = try? Checkpoint.decode(z, path: "fuzz.ppc", mode: mode) {
        _ = ck.model.predict(tokens: ["a", "b"])
    }
    return 0
}

// libFuzzer's driver with fuzzCheckpoint as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzCheckpoint($0, size) } ?? 0 })
