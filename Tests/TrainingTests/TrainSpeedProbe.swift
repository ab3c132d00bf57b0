import XCTest
import Foundation
@testable import Shared
@testable import TextModel
@testable import Training

/// A hand-run speed and accuracy probe of the training core (no timed assertions): skipped
/// unless PP_PROBE_DATA names a folder of *.jsonl or *.jsonl.zst files. Every 10th example is
/// held out. Knobs from the environment: PP_PROBE_DIM, _HIDDEN, _MINN, _MAXN, _NGRAMS, _BUCKET,
/// _PASSES, _LR, _DROPOUT, _THREADS, _MINCOUNT, _BATCH, and the TrainerTuning values _BETA and
/// _CACHE (Optimizer.swift). Run in release, e.g.
///   OPENBLAS_CORETYPE=Haswell PP_PROBE_DATA=DIR swift test -c release -Xswiftc -target-cpu \
///     -Xswiftc haswell -Xswiftc -enable-testing --scratch-path .build-test --filter TrainSpeedProbe
final class TrainSpeedProbe: XCTestCase {
    func env(_ k: String, _ d: Double) -> Double { ProcessInfo.processInfo.environment["PP_PROBE_" + k].flatMap(Double.init) ?? d }

    func testProbe() throws {
        guard let dir = ProcessInfo.processInfo.environment["PP_PROBE_DATA"] else { throw XCTSkip("PP_PROBE_DATA not set") }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".jsonl") }.sorted()
        var train: [(String, [UInt8])] = [], test: [(String, [UInt8])] = []
        var n = 0
        for name in names {
            for e in try TrainerTests.readExamples(dir + "/" + name) {
                if n % 10 == 0 { test.append(e) } else { train.append(e) }
                n += 1
            }
        }
        var c = ModelConfig()
        c.dim = Int(env("DIM", 100)); c.hidden = Int(env("HIDDEN", 0))
        c.minn = Int(env("MINN", 3)); c.maxn = Int(env("MAXN", 0)); c.wordNgrams = Int(env("NGRAMS", 2))
        c.bucket = Int(env("BUCKET", 2_000_000)); c.threads = Int(env("THREADS", 2)); c.minCount = Int(env("MINCOUNT", 1))
        var tuning = TrainerTuning()
        tuning.beta = Float(env("BETA", Double(tuning.beta)))
        tuning.cacheBudget = Int(env("CACHE", Double(tuning.cacheBudget)))
        let passes = Int(env("PASSES", 5)), batchSize = Int(env("BATCH", 10_000))
        let t = try Trainer(config: c, knobs: Knobs(lr: env("LR", 0.1), dropout: env("DROPOUT", 0)), tuning: tuning)
        var batches: [Batch] = []
        var b = Batch()
        for (l, toks) in train {
            toks.withUnsafeBytes { b.append(label: l, tokens: $0) }
            if b.count == batchSize { batches.append(b); b = Batch() }
        }
        if b.count > 0 { batches.append(b) }
        let tokens = batches.reduce(0) { $0 + $1.tokenCount }
        var losses: [Double] = []
        var cpu0 = timespec(), cpu1 = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0)
        let start = Date()
        for _ in 0..<passes {
            var l = 0.0
            for bb in batches { l += try t.train(bb).loss * Double(bb.count) }
            losses.append(l / Double(train.count))
        }
        let secs = Date().timeIntervalSince(start)
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1)
        let cpu = Double(cpu1.tv_sec - cpu0.tv_sec) + Double(cpu1.tv_nsec - cpu0.tv_nsec) / 1e9
        print(String(format: "probe: cpu %.2f s = %.0f tokens per cpu-second (wall %.2f s)", cpu, Double(tokens * passes) / cpu, secs))
        let acc = TrainerTests.accuracy(t.model, test[...])
        let ck0 = Date()
        let bytes = try t.checkpointBytes(meta: CheckpointMeta(run: "p", createdAt: "", step: 0, tokens: 0, config: c, knobs: t.knobs))
        let ckSecs = Date().timeIntervalSince(ck0)
        if let raw = ProcessInfo.processInfo.environment["PP_PROBE_RAW"] {
            // The uncompressed checkpoint bytes, to time `zstd -1 -T2` on the same input.
            try FileIO.publish(try Zstd.decompress(bytes), to: raw)
        }
        print(String(format: "probe: %d train / %d test, %d tokens x %d passes in %.2f s = %.0f tokens/s; held-out accuracy %.4f; loss per pass %@; vocab %d; checkpoint %.1f MB in %.2f s; blas %@",
                     train.count, test.count, tokens, passes, secs, Double(tokens * passes) / secs, acc,
                     losses.map { String(format: "%.3f", $0) }.joined(separator: " "), t.model.vocabulary.size,
                     Double(bytes.count) / 1e6, ckSecs, BLASSetup.coreName))
    }
}

/// Hand-run: time writing and reading a checkpoint of a full 2M x 100 input table (every row
/// non-zero, the worst case). Skipped unless PP_PROBE_CKPT names a scratch file path; the raw
/// (uncompressed) bytes go to PP_PROBE_CKPT.raw to time `zstd -1 -T2` on the same input.
final class CheckpointSpeedProbe: XCTestCase {
    func testBigCheckpoint() throws {
        guard let path = ProcessInfo.processInfo.environment["PP_PROBE_CKPT"] else { throw XCTSkip("PP_PROBE_CKPT not set") }
        var c = ModelConfig()
        c.dim = 100; c.bucket = 2_000_000; c.vocabCapacity = 0; c.minn = 0; c.maxn = 0; c.threads = 1
        let t = try Trainer(config: c, knobs: Knobs())
        var b = Batch()
        for i in 0..<50 { b.append(label: "l\(i)", tokens: ["a", "b"]) }
        _ = try t.train(b)
        var rng = RNG(seed: 1)
        let table = t.model.table
        for r in 0..<table.rows {
            let row = table.row(r)
            for k in 0..<100 { row[k] = (rng.uniform() - 0.5) * 0.2 }
        }
        let t0 = Date()
        let bytes = try t.checkpointBytes(meta: CheckpointMeta(run: "p", createdAt: "", step: 0, tokens: 0, config: c, knobs: t.knobs))
        let t1 = Date()
        try FileIO.publish(bytes, to: path)
        let t2 = Date()
        let ck = try Checkpoint.load(path: path)
        let t3 = Date()
        let raw = try Zstd.decompress(bytes)
        try FileIO.publish(raw, to: path + ".raw")
        print(String(format: "ckpt-probe: 2M x 100 full: raw %.1f MB -> %.1f MB; encode+compress %.2f s (%.0f MB/s of raw), publish %.2f s, load %.2f s",
                     Double(raw.count) / 1e6, Double(bytes.count) / 1e6, t1.timeIntervalSince(t0),
                     Double(raw.count) / 1e6 / t1.timeIntervalSince(t0), t2.timeIntervalSince(t1), t3.timeIntervalSince(t2)))
        XCTAssertEqual(ck.model.labels.count, 50)
    }
}
