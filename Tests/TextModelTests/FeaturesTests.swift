import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel

/// Features (fastText's hashes, char and word n-grams) and vocabulary growth.
final class FeaturesTests: XCTestCase {
    // MARK: Features

    func fnv(_ s: String) -> UInt32 {
        let b = Array(s.utf8)
        return b.withUnsafeBufferPointer { FeatureHash.fnv32($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, b.count) }
    }

    func testHashIsFastTextFNV1a() {
        XCTAssertEqual(fnv(""), 2_166_136_261)
        XCTAssertEqual(fnv("a"), 0xE40C_292C)          // FNV-1a 32 test vector
        XCTAssertEqual(fnv("foobar"), 0xBF9C_F968)     // FNV-1a 32 test vector
        // Bytes >= 0x80 are sign-extended as fastText's int8_t cast does.
        var h: UInt32 = 2_166_136_261
        h = (h ^ 0xFFFF_FFC3) &* 16_777_619
        h = (h ^ 0xFFFF_FFA9) &* 16_777_619
        XCTAssertEqual(fnv("é"), h)
    }

    func testCharNgramsOfAWord() {
        let c = ModelConfig.small(capacity: 100, wordNgrams: 1, minn: 3, maxn: 6)
        let f = Features(config: c)
        let v = Vocabulary(capacity: 100, minCount: 5)
        // "<abc>": <ab <abc <abc> abc abc> bc>
        let expect = ["<ab", "<abc", "<abc>", "abc", "abc>", "bc>"].map { Int32(100) + Int32(fnv($0) % 10_000) }
        XCTAssertEqual(f.ids(tokens: ["abc"], vocabulary: v), expect)
        // UTF-8: "é" is one character: "<é>" is a 3-gram.
        XCTAssertEqual(f.ids(tokens: ["é"], vocabulary: v), [Int32(100) + Int32(fnv("<é>") % 10_000)])
        // No char n-grams with maxn 0.
        let c0 = ModelConfig.small(capacity: 100, wordNgrams: 1, minn: 0, maxn: 0)
        XCTAssertEqual(Features(config: c0).ids(tokens: ["abc"], vocabulary: v), [])
    }

    func testWordNgramsAndAdmittedWords() {
        let c = ModelConfig.small(capacity: 100, minCount: 1, wordNgrams: 3, minn: 0, maxn: 0)
        let f = Features(config: c)
        let v = Vocabulary(capacity: 100, minCount: 1)
        let words = ["fix", "the", "bug"]
        for w in words { var b = Array(w.utf8); _ = b.withUnsafeMutableBufferPointer { v.observe($0.baseAddress!, $0.count, key: FeatureHash.key64($0.baseAddress!, $0.count)) } }
        let hs = words.map { UInt64(bitPattern: Int64(Int32(bitPattern: fnv($0)))) }
        func ng(_ a: [UInt64]) -> Int32 {
            var h = a[0]
            for x in a.dropFirst() { h = h &* 116_049_371 &+ x }
            return Int32(100) + Int32(h % 10_000)
        }
        let expect: [Int32] = [0, 1, 2, ng([hs[0], hs[1]]), ng([hs[0], hs[1], hs[2]]), ng([hs[1], hs[2]])]
        XCTAssertEqual(f.ids(tokens: words, vocabulary: v), expect)
    }

    /// `subword_weight` token: a token's k char n-grams weigh 1/k each, its own row and the
    /// word n-grams 1; the rows are `ids`' rows in the same order. `each` (and maxn 0) share nothing.
    func testTokenSubwordWeights() {
        var c = ModelConfig.small(capacity: 100, minCount: 1, wordNgrams: 2, minn: 3, maxn: 6)
        XCTAssertFalse(Features(config: c).shareNgrams)
        c.subwordWeight = .token
        let f = Features(config: c)
        XCTAssertTrue(f.shareNgrams)
        let v = Vocabulary(capacity: 100, minCount: 1)
        _ = observe(v, "abc")
        let toks = ["abc", "xy"]   // "<abc>": 6 n-grams, "abc" has a row; "<xy>": 3 n-grams, no row
        var bytes = Array(toks.joined(separator: " ").utf8)
        var ids = [Int32](), w = [Float]()
        bytes.withUnsafeMutableBytes { f.weightedIds(tokens: UnsafeRawBufferPointer($0), vocabulary: v, into: &ids, weights: &w) }
        XCTAssertEqual(ids, f.ids(tokens: toks, vocabulary: v))
        XCTAssertEqual(ids.count, 1 + 6 + 3 + 1)
        XCTAssertEqual(w, [1] + [Float](repeating: 1 / 6, count: 6) + [Float](repeating: 1 / 3, count: 3) + [1])
        var nochar = c
        nochar.minn = 0; nochar.maxn = 0
        XCTAssertFalse(Features(config: nochar).shareNgrams, "nothing to share without char n-grams")
    }

    // MARK: Vocabulary

    func observe(_ v: Vocabulary, _ w: String) -> Vocabulary.Seen {
        var b = Array(w.utf8)
        return b.withUnsafeMutableBufferPointer { v.observe($0.baseAddress!, $0.count, key: FeatureHash.key64($0.baseAddress!, $0.count)) }
    }

    func testAdmissionAtMinCountAndEvictionOfLeastRecent() {
        let v = Vocabulary(capacity: 2, minCount: 3)
        for _ in 0..<2 { _ = observe(v, "alpha") }
        XCTAssertEqual(v.slot(of: "alpha"), -1)
        XCTAssertEqual(v.candidateCount(of: "alpha"), 2)
        guard case .admitted(let sa) = observe(v, "alpha") else { return XCTFail("not admitted at minCount") }
        for _ in 0..<3 { _ = observe(v, "beta") }
        let sb = v.slot(of: "beta")
        XCTAssertEqual(v.size, 2)
        XCTAssertNotEqual(sa, sb)
        _ = observe(v, "alpha")          // beta is now the least recently seen
        for _ in 0..<3 { _ = observe(v, "gamma") }
        XCTAssertEqual(v.slot(of: "beta"), -1, "least recently seen word evicted")
        XCTAssertEqual(v.slot(of: "gamma"), sb, "its slot reused")
        XCTAssertEqual(v.slot(of: "alpha"), sa)
        XCTAssertEqual(v.evictions, 1)
        XCTAssertEqual(v.word(atSlot: Int(sb)), "gamma")
    }

    func testZeroCapacityAdmitsNothing() {
        let v = Vocabulary(capacity: 0, minCount: 1)
        for _ in 0..<3 { _ = observe(v, "word") }
        XCTAssertEqual(v.slot(of: "word"), -1)
        XCTAssertEqual(v.size, 0)
    }

    func testCandidateMemoryIsBounded() {
        let v = Vocabulary(capacity: 10, minCount: 1000, candidateLimit: 64)
        for i in 0..<5000 {
            _ = observe(v, "w\(i)")
            if i % 10 == 0 { _ = observe(v, "frequent") }
        }
        XCTAssertLessThanOrEqual(v.candidates, 64)
        XCTAssertGreaterThan(v.candidateCount(of: "frequent"), 0, "frequent words survive pruning")
        XCTAssertEqual(v.candidateCount(of: "w4999"), 1)
    }
}
