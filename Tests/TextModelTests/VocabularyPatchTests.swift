import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel

/// Issue 19: a delta's vocabulary is a patch against its base's (checkpoint format version 4,
/// VocabularyPatch.swift). The patch rebuilds exactly the vocabulary it was written from (slots,
/// recency order, candidates; with admissions, evictions and candidate pruning between the
/// two), is a small fraction of the whole when little changed, and a hostile patch is refused
/// naming the file. The checkpoint round trip through chains is DeltaCheckpointTests'.
final class VocabularyPatchTests: XCTestCase {
    func see(_ v: Vocabulary, _ w: String) {
        var b = Array(w.utf8)
        _ = b.withUnsafeMutableBufferPointer { v.observe($0.baseAddress!, $0.count, key: FeatureHash.key64($0.baseAddress!, $0.count)) }
    }

    func full(_ v: Vocabulary) -> [UInt8] {
        var w = ByteWriter()
        v.serialize(into: &w)
        return w.buf
    }

    func patch(_ v: Vocabulary, against s: VocabularySnapshot) -> [UInt8] {
        var w = ByteWriter()
        v.serializePatch(against: s, into: &w)
        return w.buf
    }

    func apply(_ bytes: [UInt8], to base: Vocabulary) throws -> Vocabulary {
        try bytes.withUnsafeBytes { p in
            var r = ByteReader(bytes: p, pos: 0, end: p.count, path: "p.ppc")
            return try Vocabulary.applyPatch(&r, to: base, capacity: base.capacity, minCount: base.minCount)
        }
    }

    /// A copy of `v` through its full serialized form (what a base checkpoint's load gives).
    func copy(_ v: Vocabulary) throws -> Vocabulary {
        let b = full(v)
        return try b.withUnsafeBytes { p in
            var r = ByteReader(bytes: p, pos: 0, end: p.count, path: "b.ppc")
            return try Vocabulary.deserialize(&r, capacity: v.capacity, minCount: v.minCount, evictions: v.evictions)
        }
    }

    /// Random streams of words over a vocabulary small enough to evict and a candidate limit
    /// small enough to prune: after each stretch, the patch against the previous state
    /// rebuilds the new state byte for byte.
    func testThePatchRebuildsTheVocabularyExactly() throws {
        var rng = RNG(seed: 5)
        for (capacity, minCount, limit) in [(30, 2, 16), (200, 1, 64), (0, 3, 16), (50, 3, 40)] {
            let v = Vocabulary(capacity: capacity, minCount: minCount, candidateLimit: limit)
            var base = try copy(v)
            var snap = v.snapshot()
            for stretch in 0..<12 {
                let n = stretch % 4 == 0 ? 0 : Int(rng.next() % 120)
                for _ in 0..<n { see(v, "w\(rng.next() % UInt64(40 + 15 * stretch))") }
                let p = patch(v, against: snap)
                let rebuilt = try apply(p, to: base)
                XCTAssertEqual(full(rebuilt), full(v), "capacity \(capacity) stretch \(stretch)")
                XCTAssertEqual(rebuilt.recencyOrder(), v.recencyOrder())
                base = rebuilt
                snap = v.snapshot()
            }
        }
    }

    /// Seeing a few words of a large vocabulary patches a few slots of the order, not the
    /// whole: the patch is small against the full serialization.
    func testAPatchOfLittleChangeIsSmall() throws {
        let v = Vocabulary(capacity: 5000, minCount: 1)
        for i in 0..<4000 { see(v, "word\(i)") }
        for i in 0..<3000 { see(v, "cand\(i)-\(i % 7)") }   // admitted too (minCount 1)
        let base = try copy(v)
        let snap = v.snapshot()
        for w in ["word7", "word3999", "brand-new", "word12"] { see(v, w) }
        let p = patch(v, against: snap)
        XCTAssertLessThan(p.count, 200, "4 words seen: \(p.count) bytes")
        XCTAssertGreaterThan(full(v).count, 50_000)
        XCTAssertEqual(full(try apply(p, to: base)), full(v))
        // Nothing seen: an empty patch (sizes and zero counts).
        XCTAssertLessThan(patch(v, against: v.snapshot()).count, 24)
    }

    /// The front of a move-to-front order: the shortest prefix whose removal leaves the base's
    /// order.
    func testFrontOfAMoveToFrontOrder() {
        XCTAssertEqual(Vocabulary.front(of: [0, 1, 2], over: [0, 1, 2]), [])
        XCTAssertEqual(Vocabulary.front(of: [2, 0, 1], over: [0, 1, 2]), [2])
        XCTAssertEqual(Vocabulary.front(of: [3, 1, 0, 2], over: [0, 1, 2]), [3, 1])
        XCTAssertEqual(Vocabulary.front(of: [1, 0], over: [0, 1]), [1])
        XCTAssertEqual(Vocabulary.front(of: [4, 3], over: []), [4, 3])
    }

    /// Hostile patches are refused as corrupt, naming the file: a slot past the size, slots out
    /// of order, a gap in the new slots, a front slot twice, a removed candidate the base lacks,
    /// a smaller size than the base's, counts that do not fit, trailing bytes.
    func testHostilePatchesAreRefused() throws {
        let v = Vocabulary(capacity: 10, minCount: 2)
        for w in ["a", "a", "b", "b", "c"] { see(v, w) }   // a, b admitted; c a candidate
        let base = try copy(v)
        func patch(size: Int, slots: [(Int, String)] = [], front: [Int] = [], cands: [(UInt64, UInt32)] = [], gone: [UInt64] = [], extra: [UInt8] = [],
                   counts: (Int, Int, Int, Int)? = nil) -> [UInt8] {
            var w = ByteWriter()
            w.u64(10); w.u64(UInt64(size))
            Checkpoint.varint(UInt64(counts?.0 ?? slots.count), into: &w)
            for (s, word) in slots { w.u32(UInt32(s)); w.u16(UInt16(word.utf8.count)); w.bytes(Array(word.utf8)) }
            Checkpoint.varint(UInt64(counts?.1 ?? front.count), into: &w)
            for s in front { w.u32(UInt32(s)) }
            Checkpoint.varint(UInt64(counts?.2 ?? cands.count), into: &w)
            for (k, c) in cands { w.u64(k); w.u32(c) }
            Checkpoint.varint(UInt64(counts?.3 ?? gone.count), into: &w)
            for k in gone { w.u64(k) }
            w.bytes(extra)
            return w.buf
        }
        XCTAssertNoThrow(try apply(patch(size: 3, slots: [(2, "d")], front: [2]), to: base))
        let bad: [([UInt8], String)] = [
            (patch(size: 1), "must be from the base's 2"),
            (patch(size: 11), "must be from the base's 2 to the capacity 10"),
            (patch(size: 3, slots: [(3, "d")], front: [2]), "past the size"),
            (patch(size: 3, slots: [(2, "d"), (1, "e")], front: [2]), "out of order"),
            (patch(size: 4, slots: [(3, "d")], front: [3]), "without a word"),
            (patch(size: 3, slots: [(2, "d")]), "order holds 2 slots"),
            (patch(size: 3, slots: [(2, "d")], front: [2, 2]), "front invalid"),
            (patch(size: 2, gone: [12345]), "does not have"),
            (patch(size: 2, cands: [(0, 3)]), "candidate invalid"),
            (patch(size: 2, counts: (1_000_000, 0, 0, 0)), "needs more bytes"),
            (patch(size: 2, extra: [0]), "unread bytes"),
            (patch(size: 3, slots: [(2, "a")], front: [2]), "duplicated"),
        ]
        for (bytes, why) in bad {
            XCTAssertThrowsError(try apply(bytes, to: base), why) { e in
                let m = (e as? PPError)?.message ?? "\(e)"
                XCTAssertTrue(m.hasPrefix("p.ppc: ") && m.contains(why), "\(why): \(m)")
                XCTAssertEqual((e as? PPError)?.status, .corrupt)
            }
        }
    }
}
