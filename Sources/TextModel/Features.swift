// Input features of one example: the rows of the input table that its tokens select, exactly
// as fastText selects them, so training and prediction agree. It is not the vocabulary (see
// Vocabulary.swift: which words own a row) nor the model (Model.swift: what the rows mean).
//
// For tokens in the shard form (normalised tokens joined by single spaces), in order:
//  - each token: its own row when the vocabulary admitted it (rows 0..<vocabCapacity),
//    then its character n-grams, minn...maxn characters of "<token>", for EVERY token
//    (admitted or not, as fastText's computeSubwords does);
//  - word n-grams, 2...wordNgrams tokens, of every token (fastText's addWordNgrams).
// N-grams are hashed into `bucket` rows that follow the vocabulary rows:
//   row = vocabCapacity + hash % bucket.
// With `subword_weight` token (ModelConfig.SubwordWeight) the example's mean is weighted: a
// token's k character n-grams weigh 1/k each, every other row 1 (weightedIds).
// Hashes are fastText's: FNV-1a 32-bit over the bytes, each byte sign-extended first
// (`h ^= uint32_t(int8_t(c)); h *= 16777619`), and for word n-grams
// `h = h * 116049371 + hash(next word)` in 64 bits, the 32-bit word hashes sign-extended.
// fastText's end-of-line token "</s>" is not added.

import Shared

public enum FeatureHash {
    /// fastText's `Dictionary::hash`: FNV-1a 32-bit, bytes sign-extended.
    @inlinable @inline(__always)
    public static func fnv32(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for i in 0..<n {
            h = (h ^ UInt32(bitPattern: Int32(Int8(bitPattern: p[i])))) &* 16_777_619
        }
        return h
    }

    /// FNV-1a 64-bit: the vocabulary's key for a word (never 0: 0 marks an empty slot).
    @inlinable @inline(__always)
    public static func key64(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var h: UInt64 = 14_695_981_039_346_656_037
        for i in 0..<n { h = (h ^ UInt64(p[i])) &* 1_099_511_628_211 }
        return h == 0 ? 1 : h
    }

    /// Both hashes in one pass over the bytes.
    @inlinable @inline(__always)
    public static func both(_ p: UnsafePointer<UInt8>, _ n: Int) -> (UInt32, UInt64) {
        var h: UInt32 = 2_166_136_261
        var k: UInt64 = 14_695_981_039_346_656_037
        for i in 0..<n {
            let b = p[i]
            h = (h ^ UInt32(bitPattern: Int32(Int8(bitPattern: b)))) &* 16_777_619
            k = (k ^ UInt64(b)) &* 1_099_511_628_211
        }
        return (h, k == 0 ? 1 : k)
    }
}

/// The feature rule of a model (a view of ModelConfig).
public struct Features: Sendable {
    public let wordNgrams: Int
    public let minn: Int
    public let maxn: Int
    public let bucket: Int
    /// First bucket row (= vocabCapacity).
    public let bucketBase: Int
    /// `subword_weight` token: a token's k character n-grams weigh 1/k each in the example's
    /// mean (together one feature); false: each weighs 1, as in fastText.
    public let shareNgrams: Bool

    public init(config: ModelConfig) {
        wordNgrams = config.wordNgrams
        minn = config.minn
        maxn = config.maxn
        bucket = config.bucket
        bucketBase = config.vocabCapacity
        shareNgrams = config.subwordWeight == .token && config.maxn > 0
    }

    /// Total rows of the input table.
    public var rows: Int { bucketBase + bucket }

    /// Calls `body(start, count)` for each token of `tokens` (split on 0x20, empty runs skipped).
    @inlinable @inline(__always)
    public static func forEachToken(_ tokens: UnsafeRawBufferPointer, _ body: (UnsafePointer<UInt8>, Int) -> Void) {
        guard let base = tokens.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let n = tokens.count
        var i = 0
        while i < n {
            while i < n && base[i] == 0x20 { i += 1 }
            let s = i
            while i < n && base[i] != 0x20 { i += 1 }
            if i > s { body(base + s, i - s) }
        }
    }

    /// The number of tokens `forEachToken` would visit.
    @inlinable public static func countTokens(_ tokens: UnsafeRawBufferPointer) -> Int {
        var c = 0
        forEachToken(tokens) { _, _ in c += 1 }
        return c
    }

    /// Appends the bucket rows of the character n-grams of "<word>" to `ids`
    /// (fastText's Dictionary::computeSubwords; n counts UTF-8 characters).
    @inlinable @inline(__always)
    public func appendCharNgrams(_ word: UnsafePointer<UInt8>, _ len: Int, into ids: inout [Int32]) {
        forEachCharNgram(word, len) { ids.append($0) }
    }

    /// Calls `emit` with each char n-gram row of "<word>" (see appendCharNgrams).
    @inlinable @inline(__always)
    public func forEachCharNgram(_ word: UnsafePointer<UInt8>, _ len: Int, _ emit: (Int32) -> Void) {
        if maxn <= 0 { return }
        let total = len + 2
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: total) { buf in
            let w = buf.baseAddress!
            w[0] = 0x3C   // '<'
            for i in 0..<len { w[i + 1] = word[i] }
            w[total - 1] = 0x3E   // '>'
            let b = UInt32(bucket)
            let base = Int32(bucketBase)
            var i = 0
            while i < total {
                if (w[i] & 0xC0) == 0x80 { i += 1; continue }
                var h: UInt32 = 2_166_136_261
                var j = i
                var n = 1
                while j < total && n <= maxn {
                    h = (h ^ UInt32(bitPattern: Int32(Int8(bitPattern: w[j])))) &* 16_777_619
                    j += 1
                    while j < total && (w[j] & 0xC0) == 0x80 {
                        h = (h ^ UInt32(bitPattern: Int32(Int8(bitPattern: w[j])))) &* 16_777_619
                        j += 1
                    }
                    if n >= minn && !(n == 1 && (i == 0 || j == total)) {
                        emit(base + Int32(h % b))
                    }
                    n += 1
                }
                i += 1
            }
        }
    }

    /// Appends the bucket rows of the word n-grams (2...wordNgrams) of the 32-bit word hashes.
    @inlinable @inline(__always)
    public func appendWordNgrams(_ hashes: UnsafeBufferPointer<UInt32>, into ids: inout [Int32]) {
        forEachWordNgram(hashes) { ids.append($0) }
    }

    /// Calls `emit` with each word n-gram row (see appendWordNgrams).
    @inlinable @inline(__always)
    public func forEachWordNgram(_ hashes: UnsafeBufferPointer<UInt32>, _ emit: (Int32) -> Void) {
        if wordNgrams <= 1 { return }
        let b = UInt64(bucket)
        let base = Int32(bucketBase)
        let n = hashes.count
        for i in 0..<n {
            var h = UInt64(bitPattern: Int64(Int32(bitPattern: hashes[i])))
            var j = i + 1
            while j < n && j < i + wordNgrams {
                h = h &* 116_049_371 &+ UInt64(bitPattern: Int64(Int32(bitPattern: hashes[j])))
                emit(base + Int32(h % b))
                j += 1
            }
        }
    }

    /// An upper bound on the feature rows of an example of `tokens` tokens and `bytes` bytes.
    @inlinable public func maxIds(tokens: Int, bytes: Int) -> Int {
        let k = maxn > 0 ? max(0, maxn - max(minn, 1) + 1) : 0
        return tokens * (1 + max(0, wordNgrams - 1) + 2 * k) + bytes * k
    }

    /// The input rows of one example for prediction (the vocabulary is only read).
    public func ids(tokens: UnsafeRawBufferPointer, vocabulary: Vocabulary, into ids: inout [Int32]) {
        collect(tokens, vocabulary, into: &ids) { _, _ in }
    }

    /// The input rows of one example (as `ids`) and their weights in its mean: a token's k
    /// character n-grams weigh 1/k each (shareNgrams), every other row 1.
    public func weightedIds(tokens: UnsafeRawBufferPointer, vocabulary: Vocabulary, into ids: inout [Int32], weights: inout [Float]) {
        weights.removeAll(keepingCapacity: true)
        collect(tokens, vocabulary, into: &ids) { ids, ngrams in
            weights.append(contentsOf: repeatElement(1, count: ngrams - weights.count))
            weights.append(contentsOf: repeatElement(Features.ngramWeight(ids.count - ngrams), count: ids.count - ngrams))
        }
        weights.append(contentsOf: repeatElement(1, count: ids.count - weights.count))
    }

    /// The weight of each of a token's k character n-grams under shareNgrams (Worker.featurize
    /// uses it too, so training and prediction weigh alike).
    @inlinable @inline(__always) public static func ngramWeight(_ k: Int) -> Float { 1 / Float(k) }

    /// The rows of each token (its own when admitted, then its char n-grams; `token` is called
    /// after each with the index of its first n-gram), then the word n-grams.
    private func collect(_ tokens: UnsafeRawBufferPointer, _ vocabulary: Vocabulary, into ids: inout [Int32],
                         token: (_ ids: [Int32], _ ngrams: Int) -> Void) {
        ids.removeAll(keepingCapacity: true)
        var hashes = [UInt32]()
        Features.forEachToken(tokens) { p, n in
            let (h, k) = FeatureHash.both(p, n)
            hashes.append(h)
            let slot = vocabulary.slot(forKey: k)
            if slot >= 0 { ids.append(slot) }
            let ngrams = ids.count
            appendCharNgrams(p, n, into: &ids)
            token(ids, ngrams)
        }
        hashes.withUnsafeBufferPointer { appendWordNgrams($0, into: &ids) }
    }

    /// Convenience for tests: the ids of a list of tokens.
    public func ids(tokens: [String], vocabulary: Vocabulary) -> [Int32] {
        var bytes = Array(tokens.joined(separator: " ").utf8)
        var out = [Int32]()
        bytes.withUnsafeMutableBytes { ids(tokens: UnsafeRawBufferPointer($0), vocabulary: vocabulary, into: &out) }
        return out
    }
}
