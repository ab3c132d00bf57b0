import XCTest
import Foundation
import TestSupport
@testable import Shared

/// The checkpoint format: round trip, refusal of damaged files, determinism and exact resume.
final class CheckpointTests: XCTestCase {
    func config(hidden: Int = 0) -> ModelConfig {
        var c = ModelConfig()
        c.dim = 12; c.hidden = hidden; c.bucket = 5000; c.vocabCapacity = 40; c.minCount = 2
        c.minn = 3; c.maxn = 5; c.wordNgrams = 2; c.threads = 1; c.seed = 42
        return c
    }

    func meta(_ c: ModelConfig, step: Int = 0) -> CheckpointMeta {
        CheckpointMeta(run: "main", createdAt: "2026-11-26T00:00:00Z", step: step, tokens: 0, config: c, knobs: Knobs())
    }

    /// Deterministic synthetic batches: a few labels with their own words, plus noise words
    /// (enough distinct words to fill the 40-slot vocabulary and evict), and a label that
    /// first appears in batch 2.
    func batches(_ n: Int) -> [Batch] {
        var rng = RNG(seed: 99)
        return (0..<n).map { bi in
            var b = Batch()
            for i in 0..<150 {
                let k = Int(rng.next() % (bi >= 2 ? 4 : 3))
                var toks = ["w\(k)a", "w\(k)b"]
                for _ in 0..<4 { toks.append("n\(rng.next() % 60)") }
                b.append(label: "label\(k)", tokens: i % 17 == 0 ? [] : toks)
            }
            return b
        }
    }

    func tmp() throws -> String { try TestSupport.tempDir("ckpt") }

    func testRoundTripGivesIdenticalPredictions() throws {
        for hidden in [0, 8] {
            let c = config(hidden: hidden)
            let t = try Trainer(config: c, knobs: Knobs(lr: 0.2, dropout: 0.2))
            for b in batches(3) { _ = try t.train(b) }
            let bytes = try t.checkpointBytes(meta: meta(c, step: 450))
            let dir = try tmp()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let path = dir + "/ckpt-x.ppc"
            try FileIO.publish(bytes, to: path)
            let ck = try Checkpoint.load(path: path)
            XCTAssertEqual(ck.meta.step, 450)
            XCTAssertEqual(ck.meta.labels, t.model.labels)
            XCTAssertEqual(ck.meta.vocabularySize, t.model.vocabulary.size)
            XCTAssertEqual(ck.meta.config, c)
            XCTAssertEqual(ck.model.labels, t.model.labels)
            for probe in [["w0a", "n3"], ["w2b", "w1a", "n59"], ["never", "seen"], []] {
                XCTAssertEqual(ck.model.predict(tokens: probe), t.model.predict(tokens: probe), "\(probe)")
            }
            // Re-encoding the loaded checkpoint gives the same bytes.
            let again = try Trainer(checkpoint: ck).checkpointBytes(meta: ck.meta)
            XCTAssertTrue(again == bytes, "re-encoded checkpoint differs")
        }
    }

    func testDamagedCheckpointsAreRefused() throws {
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs())
        _ = try t.train(batches(1)[0])
        let good = try t.checkpointBytes(meta: meta(c))
        func refused(_ bytes: [UInt8], _ expect: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try Checkpoint.decode(bytes, path: "runs/main/checkpoints/ckpt-bad.ppc"), file: file, line: line) { e in
                let pe = e as? PPError
                XCTAssertEqual(pe?.status, .corrupt, file: file, line: line)
                let msg = "\(e)"
                XCTAssertTrue(msg.hasPrefix("runs/main/checkpoints/ckpt-bad.ppc: "), msg, file: file, line: line)
                XCTAssertTrue(msg.contains(expect), "\(msg) lacks \(expect)", file: file, line: line)
                XCTAssertFalse(msg.contains("\n"), file: file, line: line)
            }
        }
        // A flipped byte in the compressed data (checksum or block structure catches it).
        var flipped = good
        flipped[good.count / 2] ^= 0x10
        XCTAssertThrowsError(try Checkpoint.decode(flipped, path: "x.ppc")) { XCTAssertEqual(($0 as? PPError)?.status, .corrupt) }
        // A flipped bit in the frame's checksum itself: the data decodes, the checksum does not match.
        var sum = good
        sum[good.count - 1] ^= 0x01
        refused(sum, "checksum mismatch")
        refused(Array(good.prefix(good.count - 10)), "truncated")
        refused(Array(good.prefix(good.count / 3)), "truncated")
        refused([], "empty")
        refused(Array("PPCKPT01 but not compressed".utf8), "bad magic")
        // Inside the frame: wrong version, wrong magic, cut before the end magic.
        var raw = try Zstd.decompress(good)
        raw[8] = 2
        refused(try Zstd.compress(raw), "version 2")
        raw[8] = 1
        raw[0] = UInt8(ascii: "X")
        refused(try Zstd.compress(raw), "bad magic")
        raw[0] = UInt8(ascii: "P")
        refused(try Zstd.compress(Array(raw.prefix(raw.count - 20))), "truncated")
        // Sanity: the untouched file loads.
        XCTAssertNoThrow(try Checkpoint.decode(try Zstd.compress(raw), path: "ok.ppc"))
    }

    func testMissingFileIsNoInput() {
        XCTAssertThrowsError(try Checkpoint.load(path: "/nonexistent/ckpt.ppc")) { e in
            XCTAssertEqual((e as? PPError)?.status, .noInput)
        }
    }

    func testSingleThreadIsBitReproducible() throws {
        for hidden in [0, 8] {
            let c = config(hidden: hidden)
            var outs: [[UInt8]] = []
            for _ in 0..<2 {
                let t = try Trainer(config: c, knobs: Knobs(lr: 0.2, dropout: 0.3))
                for b in batches(4) { _ = try t.train(b) }
                outs.append(try t.checkpointBytes(meta: meta(c)))
            }
            XCTAssertTrue(outs[0] == outs[1], "hidden \(hidden): checkpoints differ")
        }
    }

    func testResumeFromCheckpointEqualsUninterrupted() throws {
        for hidden in [0, 8] {
            let c = config(hidden: hidden)
            let bs = batches(5)
            let knobs = Knobs(lr: 0.15, dropout: 0.25)
            let straight = try Trainer(config: c, knobs: knobs)
            for b in bs { _ = try straight.train(b) }
            let a = try Trainer(config: c, knobs: knobs)
            for b in bs.prefix(2) { _ = try a.train(b) }
            let mid = try a.checkpointBytes(meta: meta(c))
            let resumed = try Trainer(checkpoint: try Checkpoint.decode(mid, path: "mid.ppc"))
            XCTAssertEqual(resumed.knobs, a.knobs)
            for b in bs.dropFirst(2) { _ = try resumed.train(b) }
            XCTAssertGreaterThan(resumed.model.vocabulary.evictions, 0, "the test data exercises eviction")
            let r = try resumed.checkpointBytes(meta: meta(c)), s = try straight.checkpointBytes(meta: meta(c))
            XCTAssertTrue(r == s, "hidden \(hidden): resumed checkpoint differs from the uninterrupted one")
        }
    }

    func testUntouchedRowsAreNotStored() throws {
        var c = config()
        c.bucket = 2_000_000
        let t = try Trainer(config: c, knobs: Knobs())
        _ = try t.train(batches(1)[0])
        let bytes = try t.checkpointBytes(meta: meta(c))
        // 2M rows x 12 floats would be 96 MB; the bitmap alone is 250 KB and compresses.
        XCTAssertLessThan(bytes.count, 1 << 20)
        let ck = try Checkpoint.decode(bytes, path: "s.ppc")
        XCTAssertEqual(ck.model.predict(tokens: ["w1a"]), t.model.predict(tokens: ["w1a"]))
    }
}
