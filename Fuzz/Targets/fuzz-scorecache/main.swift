// libFuzzer target: pp-eval's per-shard score cache (ScoreCache.swift, linked in from
// Sources/pp-eval), fed the decompressed bytes so the fuzzer reaches the header and the
// counts rather than zstd's checks. Built by tools/fuzz.sh; the top-level code below starts
// libFuzzer.

import CFuzzer
import Glibc
import Shared
import TextModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzScoreCache(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let c = try? ScoreCache(path: "fuzz.psc", decompressed: Array(UnsafeBufferPointer(start: data, count: size))) {
        // What pp-eval does with a cache it accepted: look shards up, write it back.
        for s in c.shards { _ = c.outcomes(sha256: s.sha256, examples: s.outcomes.count) }
        _ = try? c.bytes()
    }
    return 0
}

// libFuzzer's driver with fuzzScoreCache as the input function (Fuzz/CFuzzer/fuzzer.h).
var fuzzArgc = CommandLine.argc
var fuzzArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in data.map { fuzzScoreCache($0, size) } ?? 0 })
