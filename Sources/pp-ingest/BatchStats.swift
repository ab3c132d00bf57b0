// The statistics pp-ingest measures on every input (issue 7, layer 1), gathered while the
// parser streams the input: one pass, no second read, memory bounded whatever the size.
// What is measured per example:
//  - its label (counts per label),
//  - its length in tokens (a histogram of octaves: 1, 2-3, 4-7, ...),
//  - garbage in its text: control characters (C0 other than tab/LF/CR, DEL, C1), U+FFFD,
//    and mojibake (UTF-8 read as Latin-1 and encoded again: "Ã©", "â€", ...),
//  - its token hash, kept in a bottom-k sample (the k smallest mixed hashes, so the sample
//    is the same whichever input an example comes in: duplicate checks compare samples),
//  - with a deployed model only: a bottom-k sample of the examples themselves, on which the
//    OOV rate and the canary loss are computed at the end (Canary.swift).
// Not here: the reference (Reference.swift), thresholds and verdicts (Checks.swift).

import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

/// The k smallest values seen (after mixing): all values <= `limit` are kept.
struct BottomK {
    let k: Int
    private(set) var items: [UInt64] = []
    /// Every value <= limit that was offered is in `items`; .max while nothing was dropped.
    private(set) var limit: UInt64 = .max

    init(k: Int) { self.k = max(1, k) }

    @inline(__always) mutating func offer(_ v: UInt64) {
        if v > limit { return }
        items.append(v)
        if items.count >= 2 * k { shrink() }
    }

    private mutating func shrink() {
        items.sort()
        items.removeLast(items.count - k)
        limit = items[k - 1]
    }

    /// Sorted values and the limit (.max when complete).
    mutating func finish() -> (values: [UInt64], limit: UInt64) {
        if items.count > k { shrink() } else { items.sort() }
        return (items, limit)
    }
}

/// A bijective 64-bit mixer (the murmur3 finaliser): spreads the token hash so that bottom-k
/// samples do not coincide with the holdout split (which takes the smallest raw hashes).
@inline(__always) func mixHash(_ x: UInt64) -> UInt64 {
    var h = x
    h ^= h >> 33; h &*= 0xff51_afd7_ed55_8ccd
    h ^= h >> 33; h &*= 0xc4ce_b9fe_1a85_ec53
    h ^= h >> 33
    return h
}

enum TextGarbage {
    static let control: UInt8 = 1
    static let replacement: UInt8 = 2
    static let mojibake: UInt8 = 4

    /// Flags for one text (valid UTF-8, as the parser guarantees). One pass; printable ASCII
    /// takes the first, well-predicted branch.
    static func scan(_ text: UnsafeRawBufferPointer) -> UInt8 {
        guard let p = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
        let n = text.count
        var flags: UInt8 = 0
        var i = 0
        while i < n {
            let b = p[i]
            if b >= 0x20 && b < 0x7F { i += 1; continue }
            if b < 0x80 {
                if b == 0x7F || (b != 0x09 && b != 0x0A && b != 0x0D) { flags |= control }
                i += 1
                continue
            }
            if b == 0xC2 && i + 1 < n && p[i + 1] < 0xA0 { flags |= control }          // C1 U+0080..U+009F
            else if b == 0xEF && i + 2 < n && p[i + 1] == 0xBF && p[i + 2] == 0xBD { flags |= replacement }
            else if b == 0xC3 && i + 3 < n && p[i + 1] >= 0x82 && p[i + 1] <= 0xB4
                        && p[i + 2] == 0xC2 && p[i + 3] >= 0x80 && p[i + 3] <= 0xBF {
                // U+00C2..U+00F4 (a UTF-8 lead byte read as Latin-1) then U+0080..U+00BF (a
                // continuation byte read as Latin-1): "Ã©" for "é", "â\u{80}\u{94}" for "—".
                flags |= mojibake
            }
            i += b < 0xE0 ? 2 : (b < 0xF0 ? 3 : 4)
        }
        return flags
    }
}

/// The length histogram's bucket of a token count: 0 for none, else its bit width (1, 2-3,
/// 4-7, ...), capped.
enum LengthBuckets {
    static let count = 16
    @inline(__always) static func bucket(_ tokens: Int) -> Int {
        tokens <= 0 ? 0 : min(count - 1, Int.bitWidth - tokens.leadingZeroBitCount)
    }
}

final class BatchStats {
    static let hashSample = 16384

    private(set) var examples = 0
    private(set) var tokens = 0
    private(set) var labels: [String] = []
    private(set) var labelCounts: [Int] = []
    private var labelBytes: [[UInt8]] = []
    private var labelByHash: [UInt64: Int] = [:]
    private(set) var lengthHist = [Int](repeating: 0, count: LengthBuckets.count)
    private(set) var controlExamples = 0
    private(set) var replacementExamples = 0
    private(set) var mojibakeExamples = 0
    private(set) var garbageExamples = 0
    /// Examples with a control character or U+FFFD (garbage without mojibake).
    private(set) var junkExamples = 0
    var hashes = BottomK(k: BatchStats.hashSample)

    /// Examples kept for the canary and the OOV rate (only when a model is deployed).
    struct Sampled { var key: UInt64; var label: Int; var tokens: [UInt8] }
    let sampleSize: Int
    private(set) var sample: [Sampled] = []
    private var sampleLimit: UInt64 = .max

    init(sampleSize: Int) { self.sampleSize = sampleSize }

    func observe(_ e: InputExample) {
        examples += 1
        tokens += e.tokenCount
        let li = labelIndex(e.label)
        labelCounts[li] += 1
        lengthHist[LengthBuckets.bucket(e.tokenCount)] += 1
        let g = TextGarbage.scan(e.text)
        if g != 0 {
            garbageExamples += 1
            if g & TextGarbage.control != 0 { controlExamples += 1 }
            if g & TextGarbage.replacement != 0 { replacementExamples += 1 }
            if g & TextGarbage.mojibake != 0 { mojibakeExamples += 1 }
            if g & (TextGarbage.control | TextGarbage.replacement) != 0 { junkExamples += 1 }
        }
        let key = mixHash(e.tokenHash)
        hashes.offer(key)
        if sampleSize > 0 && key <= sampleLimit {
            sample.append(Sampled(key: key, label: li, tokens: Array(e.tokens)))
            if sample.count >= 2 * sampleSize { shrinkSample() }
        }
    }

    private func shrinkSample() {
        sample.sort { $0.key < $1.key }
        sample.removeLast(sample.count - sampleSize)
        sampleLimit = sample[sampleSize - 1].key
    }

    /// The canary/OOV sample, at most `sampleSize` examples (a uniform, deterministic choice).
    func finishSample() -> [Sampled] {
        if sample.count > sampleSize { shrinkSample() }
        return sample
    }

    private func labelIndex(_ label: UnsafeRawBufferPointer) -> Int {
        let h = StableHash.xxh64(label)
        if let i = labelByHash[h], labelBytes[i].elementsEqual(label) { return i }
        let bytes = Array(label)
        if let i = labelBytes.firstIndex(of: bytes) { return i }   // an xxh64 collision: never seen, handled
        labels.append(String(decoding: bytes, as: UTF8.self)); labelBytes.append(bytes); labelCounts.append(0)
        labelByHash[h] = labels.count - 1
        return labels.count - 1
    }

    /// Adds `o`'s examples to these statistics, as if they had been observed here (a
    /// trickle's pool is judged as one batch): counts and histograms add up, the bottom-k
    /// samples merge (exact while neither dropped anything, as for a pool's small inputs).
    func absorb(_ o: BatchStats) {
        examples += o.examples
        tokens += o.tokens
        var map = [Int](repeating: 0, count: o.labels.count)
        for i in 0..<o.labels.count {
            map[i] = o.labelBytes[i].withUnsafeBytes { labelIndex($0) }
            labelCounts[map[i]] += o.labelCounts[i]
        }
        for i in 0..<lengthHist.count { lengthHist[i] += o.lengthHist[i] }
        controlExamples += o.controlExamples
        replacementExamples += o.replacementExamples
        mojibakeExamples += o.mojibakeExamples
        garbageExamples += o.garbageExamples
        junkExamples += o.junkExamples
        for h in o.hashes.items { hashes.offer(h) }
        if sampleSize > 0 {
            for var e in o.sample where e.key <= sampleLimit {
                e.label = map[e.label]
                sample.append(e)
                if sample.count >= 2 * sampleSize { shrinkSample() }
            }
        }
    }

    var labelCountMap: [String: Int] {
        var d: [String: Int] = [:]
        for (i, l) in labels.enumerated() { d[l, default: 0] += labelCounts[i] }
        return d
    }
}
