import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// A hand-run speed probe of pp-eval and `pp-eval predict` (no timed assertions): skipped
/// unless PP_PROBE_EVAL names a folder of input files (e.g. demo/data). It ingests them with
/// pp-ingest into a temporary root, trains one pass with the core's Trainer (fastText-like
/// defaults: dim 100, words + bigrams, char 3..6-grams; PP_PROBE_MINN=0 for words only),
/// then times the built pp-eval and predict on the training shards (the holdout is too small to time). Run in release:
///   PP_PROBE_EVAL=demo/data swift test -c release -Xswiftc -enable-testing \
///     --scratch-path .build-test --filter EvalSpeedProbe
final class EvalSpeedProbe: XCTestCase {
    func testProbe() throws {
        let env = ProcessInfo.processInfo.environment
        guard let data = env["PP_PROBE_EVAL"] else { throw XCTSkip("PP_PROBE_EVAL not set") }
        let dir = try TestSupport.tempDir("evalprobe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        let inputs = try FileIO.list(data).filter { $0.contains(".jsonl") }.map { data + "/" + $0 }
        let ing = try TestSupport.run("pp-ingest", ["--root", dir] + inputs)
        XCTAssertEqual(ing.status, 0, ing.stderr)

        var c = ModelConfig()
        c.threads = 2
        if let m = env["PP_PROBE_MINN"].flatMap(Int.init) { c.minn = m; if m == 0 { c.maxn = 0 } }
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.1))
        var batch = Batch()
        for f in try EvalSet.shardFiles(in: root.shards) {
            let s = try Shard(path: f)
            s.forEach { li, _, tokens in
                batch.append(label: s.header.labels[li], tokens: tokens)
            }
            if batch.count >= 10_000 { _ = try t.train(batch); batch = Batch() }
        }
        if batch.count > 0 { _ = try t.train(batch) }
        let ck = root.checkpoints(run: "main") + "/ckpt-20261126T000000Z-000000000001.ppc"
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        try FileIO.publish(try t.checkpointBytes(meta: CheckpointMeta(run: "main", createdAt: Clock.iso(Clock.now()), step: 1,
                                                                        tokens: 0, config: c, knobs: Knobs())), to: ck)

        var t0 = Clock.monotonic()
        // The training shards as eval set: large enough to time (the holdout is 5%).
        let ev = try TestSupport.run("pp-eval", ["--root", dir, "--no-store", "--data", root.shards, ck])
        let evalWall = Clock.monotonic() - t0
        XCTAssertEqual(ev.status, 0, ev.stderr)
        let r = try JSONSerialization.jsonObject(with: Data(ev.stdout.utf8)) as! [String: Any]
        let n = r["examples"] as! Int

        // predict: the holdout texts as plain lines (tokens joined by spaces).
        var input = [UInt8]()
        for f in try EvalSet.shardFiles(in: root.shards) {
            try Shard(path: f).forEach { _, _, tokens in input.append(contentsOf: tokens); input.append(0x0A) }
        }
        // Through files: a pipe both ways would deadlock once the output fills its buffer
        // before all input is written.
        try FileIO.publish(input, to: dir + "/in.txt")
        t0 = Clock.monotonic()
        let pr = try TestSupport.run("/bin/sh", ["-c", "\"$0\" predict \"$1\" < \"$2/in.txt\" > \"$2/out.jsonl\"",
                                                 TestSupport.binary("pp-eval"), ck, dir])
        let predictWall = Clock.monotonic() - t0
        XCTAssertEqual(pr.status, 0, pr.stderr)
        XCTAssertEqual(try FileIO.readAll(dir + "/out.jsonl").split(separator: 0x0A).count, n)
        print("""
        EvalSpeedProbe: \(n) examples, \(r["evalset_files"]!) shards, minn \(c.minn) maxn \(c.maxn)
          pp-eval: accuracy \(r["accuracy"]!) macro_f1 \(r["macro_f1"]!); scoring \(r["examples_per_second"]!) examples/s; \
        whole command \(Int(Double(n) / evalWall)) examples/s (\(String(format: "%.2f", evalWall)) s, incl. checkpoint load)
          predict: whole command \(Int(Double(n) / predictWall)) lines/s (\(String(format: "%.2f", predictWall)) s, incl. checkpoint load)
        """)
    }
}
