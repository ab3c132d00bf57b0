import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// Issue 19, part 2: the serving export (`pp-eval export`, TextModel/Export.swift). It loads
/// like a checkpoint for prediction, predicts within the stated tolerance of the checkpoint it
/// came from (32 bits: bit for bit), is smaller, cannot be resumed, and is hostile input like
/// every file.
final class ExportTests: XCTestCase, RawCheckpointEditing {
    func config(hidden: Int = 0) -> ModelConfig {
        .small(dim: 16, hidden: hidden, bucket: 20_000, capacity: 60, maxn: 5, threads: 1, seed: 7)
    }

    func meta(_ c: ModelConfig, step: Int) -> CheckpointMeta {
        CheckpointMeta(run: "main", createdAt: "2026-12-07T00:00:00Z", step: step, tokens: 0, config: c, knobs: Knobs())
    }

    /// Example i of stream `seed`: 6 labels, each with its own words, plus shared noise words.
    static func example(_ i: Int, seed: UInt64) -> (label: String, tokens: [String]) {
        var rng = RNG(seed: seed &* 7919 &+ UInt64(i))
        let k = Int(rng.next() % 6)
        var toks = ["w\(k)x\(rng.next() % 3)", "w\(k)y\(rng.next() % 5)"]
        for _ in 0..<5 { toks.append("noise\(rng.next() % 80)") }
        if rng.next() % 4 == 0 { toks.append("w\((k + 1) % 6)x0") }
        return ("label\(k)", toks)
    }

    func trained(hidden: Int, average: Double = 0) throws -> (Trainer, [UInt8]) {
        let c = config(hidden: hidden)
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.3, dropout: 0, average: average))
        for b in 0..<8 {
            var batch = Batch()
            for i in 0..<200 { let e = Self.example(b * 200 + i, seed: 1); batch.append(label: e.label, tokens: e.tokens) }
            _ = try t.train(batch)
        }
        return (t, try t.checkpointBytes(meta: meta(c, step: 1600)))
    }

    let probes = (0..<600).map { ExportTests.example($0, seed: 99).tokens } + [["never", "seen"], []]

    /// Largest probability difference and top-1 agreement of `b` against `a` over the probes.
    func compare(_ a: Model, _ b: Model) -> (maxDiff: Float, agree: Double) {
        var maxDiff: Float = 0, same = 0
        for p in probes {
            let x = a.predict(tokens: p), y = b.predict(tokens: p)
            for j in 0..<x.count { maxDiff = max(maxDiff, abs(x[j] - y[j])) }
            if x.firstIndex(of: x.max()!) == y.firstIndex(of: y.max()!) { same += 1 }
        }
        return (maxDiff, Double(same) / Double(probes.count))
    }

    func testExportsPredictWithinTheStatedToleranceAndAreSmaller() throws {
        for (hidden, average) in [(0, 0.0), (8, 0.0), (0, 300.0)] {
            let (_, bytes) = try trained(hidden: hidden, average: average)
            let src = try Checkpoint.decode(bytes, path: "ck.ppc", mode: .inference, averaged: true)
            var sizes: [Int: Int] = [:]
            for bits in [32, 16, 8] {
                let what = "hidden \(hidden) average \(average) bits \(bits)"
                let (ex, stored) = try Checkpoint.encodeExport(src, bits: bits, from: "ck.ppc")
                sizes[bits] = ex.count
                XCTAssertGreaterThan(stored, 100, what)
                let back = try Checkpoint.decode(ex, path: "model.ppm", mode: .inference, averaged: true)
                XCTAssertEqual(back.meta.export, ExportInfo(bits: bits, from: "ck.ppc"), what)
                XCTAssertEqual(back.model.labels, src.model.labels, what)
                XCTAssertEqual(back.model.vocabulary.size, src.model.vocabulary.size, what)
                let (d, agree) = compare(src.model, back.model)
                switch bits {
                case 32:
                    for p in probes { XCTAssertEqual(back.model.predict(tokens: p).map(\.bitPattern), src.model.predict(tokens: p).map(\.bitPattern), what) }
                    // Exporting an export again gives the same bytes.
                    XCTAssertTrue(try Checkpoint.encodeExport(back, bits: 32, from: "ck.ppc").bytes == ex, what)
                case 16:
                    XCTAssertLessThanOrEqual(d, 1e-3, what)
                    XCTAssertGreaterThanOrEqual(agree, 0.995, what)
                default:
                    XCTAssertLessThanOrEqual(d, 2e-2, what)
                    XCTAssertGreaterThanOrEqual(agree, 0.98, what)
                }
                XCTAssertGreaterThan(d, bits == 32 ? -1 : 0, "\(what): quantization changes something (the test can fail)")
            }
            XCTAssertLessThan(sizes[32]!, bytes.count, "no optimiser state, no cursor")
            XCTAssertLessThan(Double(sizes[16]!), 0.75 * Double(sizes[32]!))
            // dim 16: an int8 row is 20 bytes (a scale and 16 weights) against 32.
            XCTAssertLessThan(Double(sizes[8]!), 0.8 * Double(sizes[16]!))
        }
    }

    /// A delta is exported whole: the export predicts as the chain does.
    func testADeltaIsExportedWithItsBase() throws {
        let root = Root(try TestSupport.tempDir("export"))
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.3))
        let policy = DeltaPolicy(fullEvery: 24, maxFraction: 100)
        var batch = Batch()
        for i in 0..<300 { let e = Self.example(i, seed: 1); batch.append(label: e.label, tokens: e.tokens) }
        _ = try t.train(batch)
        let base = root.checkpoints(run: "main") + "/ckpt-a.ppc"
        try FileIO.publish(try t.checkpointBytes(meta: meta(c, step: 300), policy: policy), to: base)
        t.checkpointPublished(as: "main/ckpt-a.ppc")
        batch = Batch()
        for i in 0..<300 { let e = Self.example(i, seed: 2); batch.append(label: e.label, tokens: e.tokens + ["late\(i % 7)"]) }
        _ = try t.train(batch)
        let dp = root.checkpoints(run: "main") + "/ckpt-b.ppc"
        try FileIO.publish(try t.checkpointBytes(meta: meta(c, step: 600), policy: policy), to: dp)
        let chain = try Checkpoint.load(path: dp, mode: .inference, averaged: true)
        XCTAssertNotNil(chain.meta.base)
        let ex = try Checkpoint.encodeExport(chain, bits: 32, from: "ckpt-b.ppc").bytes
        let back = try Checkpoint.decode(ex, path: "model.ppm", mode: .inference)
        XCTAssertNil(back.meta.base)
        for p in probes + [["late3", "w1x0"]] {
            XCTAssertEqual(back.model.predict(tokens: p).map(\.bitPattern), chain.model.predict(tokens: p).map(\.bitPattern))
        }
    }

    func testAnExportCannotBeResumed() throws {
        let (_, bytes) = try trained(hidden: 0)
        let src = try Checkpoint.decode(bytes, path: "ck.ppc", mode: .inference)
        let ex = try Checkpoint.encodeExport(src, bits: 16, from: "ck.ppc").bytes
        XCTAssertThrowsError(try Checkpoint.decode(ex, path: "model.ppm", mode: .full)) { e in
            let p = e as? PPError
            XCTAssertEqual(p?.status, .corrupt)
            XCTAssertTrue(p?.message.contains("model.ppm: a serving export") == true, p?.message ?? "")
            XCTAssertTrue(p?.message.contains("resume from the checkpoint it was made from, ck.ppc") == true, p?.message ?? "")
        }
    }

    /// Hostile exports: wrong widths, counts that do not fit, bad scales, trailing sections
    /// are refused as corrupt with the reason; random mutations never crash.
    func testHostileExportsAreRefused() throws {
        let (_, bytes) = try trained(hidden: 0)
        let src = try Checkpoint.decode(bytes, path: "ck.ppc", mode: .inference)
        func refused(_ raw: [UInt8], _ expect: String, line: UInt = #line) throws {
            let b = try Zstd.compress(raw, level: 1)
            XCTAssertThrowsError(try Checkpoint.decode(b, path: "bad.ppm", mode: .inference), line: line) { e in
                let p = e as? PPError
                XCTAssertEqual(p?.status, .corrupt, line: line)
                XCTAssertTrue(p?.message.contains(expect) == true, "\(p?.message ?? "") does not contain \(expect)", line: line)
            }
        }
        for bits in [16, 8] {
            let raw = try Zstd.decompress(try Checkpoint.encodeExport(src, bits: bits, from: "ck.ppc").bytes)
            let q = sections(raw)["INPQ"]!
            var b = raw; put(&b, q + 20, UInt32(bits == 16 ? 8 : 16))
            try refused(b, "INPQ holds")
            b = raw; put(&b, q + 12, UInt64(1) << 62)
            try refused(b, "stored rows")
            b = raw; put(&b, q + 12, u64(raw, q + 12) - 1)
            try refused(b, "do not fill")
            try refused(try withMeta(raw) { $0.export = ExportInfo(bits: 12, from: "x") }, "export bits 12")
            try refused(try withMeta(raw) { $0.export = ExportInfo(bits: bits == 16 ? 8 : 16, from: "x") }, "the meta says")
            try refused(try withMeta(raw) { $0.export = nil }, "expected section INPT")
            try refused(try withMeta(raw) { $0.base = "main/x.ppc"; $0.delta = 1 }, "an export cannot be a delta")
            if bits == 8 {
                // The first row's scale made negative.
                let rows = Int(u64(raw, q)), scales = q + 24 + (rows + 7) / 8
                b = raw; put(&b, scales, (-1.0 as Float).bitPattern)
                try refused(b, "row scale")
            }
            // Random mutations: refused as corrupt or loaded; never a crash.
            var rng = SplitMix64(state: UInt64(bits))
            for i in 0..<150 {
                b = raw
                for _ in 0..<(1 + Int(rng.next() % 3)) { b[Int(rng.next() % UInt64(b.count))] ^= 1 << UInt8(rng.next() % 8) }
                do { _ = try Checkpoint.decode(try Zstd.compress(b, level: 1), path: "m\(i).ppm", mode: .inference).model.predict(tokens: ["w1x0"]) }
                catch let e as PPError { XCTAssertEqual(e.status, .corrupt, e.message) }
            }
        }
    }
}
