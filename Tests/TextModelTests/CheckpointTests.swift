import XCTest
import Foundation
import TestSupport
import CZstd
@testable import Shared
@testable import TextModel
@testable import Training

/// The checkpoint format: round trip, refusal of damaged files, determinism and exact resume.
final class CheckpointTests: XCTestCase {
    func config(hidden: Int = 0, subwords: ModelConfig.SubwordWeight = .each) -> ModelConfig {
        var c = ModelConfig.small(dim: 12, hidden: hidden, bucket: 5000, capacity: 40, maxn: 5, seed: 42)
        c.subwordWeight = subwords
        return c
    }

    /// The models the format tests cover: linear, hidden, and a token's n-grams sharing a weight.
    static let kinds: [(hidden: Int, subwords: ModelConfig.SubwordWeight)] = [(0, .each), (8, .each), (0, .token)]

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

    /// A trainer after three batches and its checkpoint (step 450) published as
    /// DIR/ckpt-x.ppc in a new temporary DIR (the caller removes it).
    func trainedFile(hidden: Int, subwords: ModelConfig.SubwordWeight = .each) throws -> (trainer: Trainer, config: ModelConfig, bytes: [UInt8], dir: String, path: String) {
        let c = config(hidden: hidden, subwords: subwords)
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2, dropout: 0.2))
        for b in batches(3) { _ = try t.train(b) }
        let bytes = try t.checkpointBytes(meta: meta(c, step: 450))
        let dir = try tmp()
        let path = dir + "/ckpt-x.ppc"
        try FileIO.publish(bytes, to: path)
        return (t, c, bytes, dir, path)
    }

    func testRoundTripGivesIdenticalPredictions() throws {
        for (hidden, subwords) in Self.kinds {
            let (t, c, bytes, dir, path) = try trainedFile(hidden: hidden, subwords: subwords)
            defer { try? FileManager.default.removeItem(atPath: dir) }
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

    /// `subword_weight` is in the meta only when it is `token`; a config without it (every
    /// checkpoint written before it existed) is `each`; an unknown value is refused.
    func testSubwordWeightInTheMeta() throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let each = String(decoding: try enc.encode(config()), as: UTF8.self)
        XCTAssertFalse(each.contains("subword_weight"), each)
        XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: Data(each.utf8)).subwordWeight, .each)
        let token = String(decoding: try enc.encode(config(subwords: .token)), as: UTF8.self)
        XCTAssertTrue(token.contains("\"subword_weight\":\"token\""), token)
        XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: Data(token.utf8)), config(subwords: .token))
        let bad = token.replacingOccurrences(of: "\"token\"", with: "\"half\"")
        XCTAssertThrowsError(try JSONDecoder().decode(ModelConfig.self, from: Data(bad.utf8)))
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
        raw[8] = 3
        refused(try Zstd.compress(raw), "version 3")
        raw[8] = 2
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

    // MARK: load modes and the streaming reader (CheckpointLoad.swift)

    /// An inference load keeps only the stored rows (packed), no trainer state, and predicts
    /// bit for bit what the full load and the trainer predict.
    func testInferenceLoadPredictsExactlyAsTheFullLoad() throws {
        for (hidden, subwords) in Self.kinds {
            let (t, c, _, dir, path) = try trainedFile(hidden: hidden, subwords: subwords)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let full = try Checkpoint.load(path: path, mode: .full)
            let inf = try Checkpoint.load(path: path, mode: .inference)
            XCTAssertEqual(inf.meta, full.meta)
            XCTAssertEqual(inf.model.labels, full.model.labels)
            XCTAssertEqual(inf.model.vocabulary.size, full.model.vocabulary.size)
            XCTAssertEqual(inf.model.vocabulary.evictions, full.model.vocabulary.evictions)
            XCTAssertEqual(inf.model.dense, full.model.dense)
            XCTAssertNil(inf.state)
            XCTAssertNil(full.model.packed)
            let packed = try XCTUnwrap(inf.model.packed)
            // Every row of the table reads the same through the packed index: stored rows
            // equal, the others zero.
            var stored = 0
            for r in 0..<full.model.table.rows {
                let a = full.model.table.row(r), b = packed.row(r)
                if !Vec.isZero(a, c.dim) || full.model.table.state(r).pointee != 0 { stored += 1 }
                for k in 0..<c.dim where a[k].bitPattern != b[k].bitPattern {
                    XCTFail("row \(r)[\(k)]: \(a[k]) full, \(b[k]) packed"); return
                }
            }
            XCTAssertEqual(packed.stored, stored)
            XCTAssertGreaterThan(stored, 50)
            var rng = RNG(seed: 5)
            var probes: [[String]] = [["w0a", "n3"], ["w2b", "w1a", "n59"], ["never", "seen"], []]
            for _ in 0..<200 { probes.append((0..<(1 + Int(rng.next() % 6))).map { _ in ["w\(rng.next() % 4)a", "n\(rng.next() % 70)", "x\(rng.next())"][Int(rng.next() % 3)] }) }
            for probe in probes {
                let want = t.model.predict(tokens: probe)
                XCTAssertEqual(full.model.predict(tokens: probe).map(\.bitPattern), want.map(\.bitPattern), "\(probe)")
                XCTAssertEqual(inf.model.predict(tokens: probe).map(\.bitPattern), want.map(\.bitPattern), "\(probe)")
            }
            // Training needs the full load.
            XCTAssertThrowsError(try Trainer(checkpoint: inf)) { e in
                XCTAssertTrue("\(e)".contains("loaded for inference"), "\(e)")
            }
            XCTAssertNoThrow(try Trainer(checkpoint: full))
        }
    }

    /// The reader pulls the frame through a 1 MiB input buffer: a checkpoint larger than that
    /// (rows of random floats barely compress) loads the same from a file and from memory.
    func testCheckpointLargerThanTheReadBufferLoads() throws {
        var c = config()
        c.dim = 64; c.bucket = 40_000
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        var rng = RNG(seed: 3)
        let table = t.model.table
        for r in stride(from: 0, to: table.rows, by: 3) {
            for k in 0..<c.dim { table.row(r)[k] = rng.uniform() - 0.5 }
        }
        _ = try t.train(batches(1)[0])
        let bytes = try t.checkpointBytes(meta: meta(c))
        XCTAssertGreaterThan(bytes.count, 3 << 20)
        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/big.ppc"
        try FileIO.publish(bytes, to: path)
        for mode in Checkpoint.LoadMode.allCases {
            let a = try Checkpoint.load(path: path, mode: mode), b = try Checkpoint.decode(bytes, path: path, mode: mode)
            for probe in [["w0a", "n3"], ["w2b", "zz", "n59"]] {
                XCTAssertEqual(a.model.predict(tokens: probe), t.model.predict(tokens: probe))
                XCTAssertEqual(b.model.predict(tokens: probe), t.model.predict(tokens: probe))
            }
        }
        // Cut anywhere, the file is refused as truncated (or, cut inside the checksum, as damaged).
        for cut in [bytes.count - 1, bytes.count - 3, bytes.count / 2, 5, 1] {
            try FileIO.publish(Array(bytes.prefix(cut)), to: path)
            for mode in Checkpoint.LoadMode.allCases {
                XCTAssertThrowsError(try Checkpoint.load(path: path, mode: mode)) { e in
                    XCTAssertEqual((e as? PPError)?.status, .corrupt)
                    XCTAssertTrue("\(e)".contains("truncated") || "\(e)".contains("bad magic"), "cut at \(cut): \(e)")
                }
            }
        }
    }

    /// What the streaming reader adds to the checks: one frame, nothing after it, a declared
    /// content size, and a defect found while parsing named as the damage it is when the
    /// frame's checksum fails too.
    func testFrameLevelDefectsAreRefused() throws {
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs())
        _ = try t.train(batches(1)[0])
        let good = try t.checkpointBytes(meta: meta(c))
        func refused(_ bytes: [UInt8], _ expect: String, file: StaticString = #filePath, line: UInt = #line) {
            for mode in Checkpoint.LoadMode.allCases {
                XCTAssertThrowsError(try Checkpoint.decode(bytes, path: "x.ppc", mode: mode), file: file, line: line) { e in
                    XCTAssertEqual((e as? PPError)?.status, .corrupt, file: file, line: line)
                    XCTAssertTrue("\(e)".hasPrefix("x.ppc: ") && "\(e)".contains(expect), "\(e) lacks \(expect)", file: file, line: line)
                }
            }
        }
        refused(good + good, "data after the checkpoint's zstd frame")
        refused(good + [0], "data after the checkpoint's zstd frame")
        let raw = try Zstd.decompress(good)
        // A frame without its content size (as a streaming compressor writes from a pipe).
        let unsized: [UInt8] = try {
            guard let cctx = ZSTD_createCCtx() else { throw PPError("zstd") }
            defer { ZSTD_freeCCtx(cctx) }
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(raw.count) + 64)
            var n = 0
            try raw.withUnsafeBytes { src in
                try out.withUnsafeMutableBytes { dst in
                    _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
                    _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)
                    var inb = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
                    var outb = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                    while ZSTD_compressStream2(cctx, &outb, &inb, ZSTD_e_end) != 0 {}
                    n = outb.pos
                }
            }
            return Array(out.prefix(n))
        }()
        XCTAssertEqual(try Zstd.decompress(unsized), raw)
        refused(unsized, "does not declare its content size")
        // A tiny frame declaring far more than any frame of its size can hold: refused from the
        // header, before the declared size is used to bound anything.
        var lying = try Zstd.compress(Array(raw.prefix(16)))
        XCTAssertEqual(lying[4] & 0xE0, 0x20)   // single segment, 1-byte content size field (FCS flag 0)
        lying[4] |= 0xC0                        // now an 8-byte field: claim 2^48 + 16 bytes
        lying.insert(contentsOf: [0, 0, 0, 0, 0, 1, 0], at: 6)
        refused(lying, "corrupt compressed data")
        // The content is wrong (version 3) and the checksum fails: the checksum is the cause.
        var v3 = raw
        v3[8] = 3
        var z = try Zstd.compress(v3)
        refused(z, "version 3")
        z[z.count - 1] ^= 0x01
        refused(z, "checksum mismatch")
    }
}
