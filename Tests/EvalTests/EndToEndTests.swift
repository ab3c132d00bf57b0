import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// The built pp-eval and pp-select on a root with real (tiny) checkpoints made by the core's
/// Trainer: scoring, storing, --pending, a corrupt checkpoint, predict, --lineage, --data
/// RAWFILE, promotion, --deploy and rollback.
final class EvalEndToEndTests: XCTestCase {
    static let words = ["doc": "readme docs typo manual", "fix": "crash bug null segfault", "test": "unit test assert flaky"]

    func config() -> ModelConfig {
        .small(dim: 16, bucket: 2000, capacity: 200, minCount: 1, wordNgrams: 1, minn: 0, maxn: 0, seed: 7)
    }

    func example(_ i: Int) -> (String, String) {
        let labels = ["doc", "fix", "test"]
        let l = labels[i % 3]
        let w = Self.words[l]!.split(separator: " ")
        return (l, "\(w[i % 4]) \(w[(i / 3) % 4]) filler\(i % 5)")
    }

    /// Trains `batches` batches and publishes a checkpoint; returns its path.
    func checkpoint(_ root: Root, batches: Int, stamp: String, parent: String?) throws -> String {
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.5))
        for b in 0..<batches {
            var batch = Batch()
            for i in 0..<30 { let (l, text) = example(b * 30 + i); batch.append(label: l, tokens: Tokenizer.tokens(text)) }
            _ = try t.train(batch)
        }
        var meta = CheckpointMeta(run: "main", createdAt: Clock.iso(Clock.now()), step: batches * 30, tokens: 0, config: c, knobs: Knobs(lr: 0.5))
        meta.parent = parent
        meta.lineage = [ShardRef(name: "s-\(stamp).pps", sha256: String(repeating: "a", count: 64))]
        let file = "ckpt-\(stamp)-\(String(repeating: "0", count: 12 - String(batches * 30).count))\(batches * 30).ppc"
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        let path = root.checkpoints(run: "main") + "/" + file
        try FileIO.publish(try t.checkpointBytes(meta: meta), to: path)
        return path
    }

    func json(_ line: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
    }

    /// Issue 13, bounded evaluation: as the holdout grows and shrinks, `--pending` scores a
    /// checkpoint's new shards only (result field scored_examples), and the combined result
    /// equals scoring from scratch (`--no-store` bypasses the cache). A damaged cache is
    /// reported and scored around; retention's pp-select deletes the cache with the weights.
    /// Holdout shard of day k (2026-01-0k) with n examples.
    func holdoutDay(_ root: Root, _ k: Int, _ n: Int) throws {
        try Fixture.shard((0..<n).map { i in let (l, t) = example(k * 100 + i); return (l, Int64(1_700_000_000 + k * 86_400 + i), t) },
                          to: root.holdout + "/2026010\(k)T000000Z-0000000000000000-000.pps")
    }

    func testPendingScoresEachExampleOnce() throws {
        let dir = try TestSupport.tempDir("e2e-cache")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        func holdout(_ k: Int, _ n: Int) throws { try holdoutDay(root, k, n) }
        try holdout(1, 60)
        let a = try checkpoint(root, batches: 5, stamp: "20261126T000001Z", parent: nil)
        let cache = root.evals + "/" + FileIO.split(a).name.dropLast(4) + "--main.psc"
        /// The result's fields that do not depend on when or how fast it was computed.
        func scores(_ line: String) throws -> String {
            var o = try json(line)
            for k in ["evaluated_at", "seconds", "examples_per_second", "scored_examples"] { o[k] = nil }
            return String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
        }
        func pending() throws -> [String: Any] {
            let r = try TestSupport.run("pp-eval", ["--root", dir, "--pending"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(r.stdoutLines.count, 1, r.stdout)
            let fresh = try TestSupport.run("pp-eval", ["--root", dir, "--no-store", a])
            XCTAssertEqual(fresh.status, 0, fresh.stderr)
            XCTAssertEqual(try scores(r.stdoutLines.first ?? "{}"), try scores(fresh.stdout), "cached result differs from scoring from scratch")
            var o = try json(r.stdoutLines.first ?? "{}")
            o["stderr"] = r.stderr
            return o
        }
        var o = try pending()
        XCTAssertEqual(o["scored_examples"] as? Int, 60)
        XCTAssertTrue(FileIO.exists(cache))
        try holdout(2, 30)
        o = try pending()
        XCTAssertEqual(o["examples"] as? Int, 90)
        XCTAssertEqual(o["scored_examples"] as? Int, 30, "only the new shard")
        // A shard leaves the holdout: everything left is cached, nothing is scored.
        try FileIO.removeDurably(root.holdout + "/20260101T000000Z-0000000000000000-000.pps")
        o = try pending()
        XCTAssertEqual(o["examples"] as? Int, 30)
        XCTAssertEqual(o["scored_examples"] as? Int, 0)
        // A damaged cache is reported and not trusted.
        try FileIO.publish("not a cache", to: cache)
        try holdout(3, 20)
        o = try pending()
        XCTAssertEqual(o["scored_examples"] as? Int, 50)
        XCTAssertTrue((o["stderr"] as? String ?? "").contains("ignoring score cache"), "\(o["stderr"] ?? "")")
        // Retention deletes the weights: pp-select deletes the cache (and per-example files) too.
        _ = try checkpoint(root, batches: 6, stamp: "20261126T000002Z", parent: "main/" + FileIO.split(a).name)
        try FileIO.removeDurably(a)
        let r = try TestSupport.run("pp-select", ["--root", dir, "--bootstrap", "50", "--keep-days", "0"])
        XCTAssertFalse(FileIO.exists(cache), r.stderr)
    }

    /// `--pending --new` (the checkpoint path unit and the every-minute timer): each checkpoint
    /// is scored once, when it first appears; a new holdout shard alone gives no work (the
    /// eval set is not even read), and plain `--pending` (pp-select.service's ExecStartPre)
    /// brings it to the current eval set, scoring only the new shard (issue 13).
    func testPendingNewScoresEachCheckpointOnceAsItAppears() throws {
        let dir = try TestSupport.tempDir("e2e-new")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        func holdout(_ k: Int, _ n: Int) throws { try holdoutDay(root, k, n) }
        func run(_ args: [String]) throws -> (status: Int32, lines: [[String: Any]], stderr: String) {
            let r = try TestSupport.run("pp-eval", ["--root", dir, "--pending"] + args)
            return (r.status, try r.stdoutLines.map { try json($0) }, r.stderr)
        }
        try holdout(1, 40)
        let a = try checkpoint(root, batches: 5, stamp: "20261126T000001Z", parent: nil)
        var r = try run(["--new"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.lines.map { $0["scored_examples"] as? Int }, [40])
        r = try run(["--new"])
        XCTAssertEqual(r.status, 2, "a checkpoint with a result is not pending for --new: \(r.stderr)")
        // New holdout data: still nothing for --new, though the eval set changed.
        try holdout(2, 25)
        r = try run(["--new"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.lines.isEmpty)
        // A second checkpoint appears: --new scores it alone, on the whole current set.
        let b = try checkpoint(root, batches: 6, stamp: "20261126T000002Z", parent: "main/" + FileIO.split(a).name)
        r = try run(["--new"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.lines.count, 1)
        XCTAssertEqual(r.lines.first?["checkpoint"] as? String, "main/" + FileIO.split(b).name)
        XCTAssertEqual(r.lines.first?["scored_examples"] as? Int, 65)
        // Plain --pending (every checkpoint: these are older than its 24-hour window): the first
        // checkpoint on the current set, only the new shard scored.
        r = try run(["--since", "all"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.lines.count, 1, "\(r.lines)")
        XCTAssertEqual(r.lines.first?["checkpoint"] as? String, "main/" + FileIO.split(a).name)
        XCTAssertEqual(r.lines.first?["examples"] as? Int, 65)
        XCTAssertEqual(r.lines.first?["scored_examples"] as? Int, 25, "only the shard it had not seen")
        XCTAssertEqual(try run(["--since", "all"]).status, 2)
        // --new is a mode of --pending.
        XCTAssertEqual(try TestSupport.run("pp-eval", ["--root", dir, "--new"]).status, 64)
    }

    func testWholeLoop() throws {
        let dir = try TestSupport.tempDir("e2e")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        try Fixture.shard((0..<90).map { i in let (l, t) = example(i + 7); return (l, Int64(1_700_000_000 + i * 3600), t) },
                          to: root.holdout + "/20260101T000000Z-0000000000000000-000.pps")
        let a = try checkpoint(root, batches: 1, stamp: "20261126T000001Z", parent: nil)
        let aID = "main/" + FileIO.split(a).name
        let b = try checkpoint(root, batches: 20, stamp: "20261126T000002Z", parent: aID)

        // One checkpoint: printed and stored.
        var r = try TestSupport.run("pp-eval", ["--root", dir, a])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ra = try json(r.stdout.trimmingCharacters(in: .newlines))
        XCTAssertEqual(ra["checkpoint"] as? String, aID)
        XCTAssertEqual(ra["examples"] as? Int, 90)
        XCTAssertEqual(ra["schema"] as? Int, 1)
        let evalset = try XCTUnwrap(ra["evalset"] as? String)
        XCTAssertEqual(evalset, try EvalSet.hashShards(try EvalSet.holdoutPaths(root)))
        XCTAssertTrue(FileIO.exists(root.evals + "/" + EvalNames.base(checkpointFile: FileIO.split(a).name, run: "main", evalset: evalset) + ".json"))

        // --pending scores only what is missing, then has nothing to do.
        r = try TestSupport.run("pp-eval", ["--root", dir, "--pending"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.stdoutLines.count == 1 else { return XCTFail("pending: \(r.stdout) \(r.stderr)") }
        let rb = try json(r.stdoutLines[0])
        XCTAssertEqual(rb["checkpoint"] as? String, "main/" + FileIO.split(b).name)
        XCTAssertGreaterThan(rb["accuracy"] as! Double, 0.9, "20 batches of an easy task")
        r = try TestSupport.run("pp-eval", ["--root", dir, "--pending"])
        XCTAssertEqual(r.status, 2, r.stderr)
        // Prometheus textfile: the newest result of run main (b, 600 examples trained).
        let prom = String(decoding: try FileIO.readAll(root.metrics + "/pp-eval.prom"), as: UTF8.self)
        XCTAssertTrue(prom.contains("perpetuum_eval_step{run=\"main\"} 600"), prom)
        XCTAssertTrue(prom.contains("perpetuum_eval_score{run=\"main\",slice=\"recent\",metric=\"macro_f1\"}"), prom)

        // A corrupt checkpoint: one-line error, exit 65, no result.
        var bytes = try FileIO.readAll(b)
        bytes[bytes.count / 2] ^= 0x20
        let bad = root.checkpoints(run: "main") + "/ckpt-20261126T000003Z-000000000999.ppc"
        try FileIO.publish(bytes, to: bad)
        r = try TestSupport.run("pp-eval", ["--root", dir, bad])
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("ckpt-20261126T000003Z-000000000999.ppc"), r.stderr)
        r = try TestSupport.run("pp-eval", ["--root", dir, "--pending"])
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertFalse(try FileIO.list(root.evals).contains { $0.hasPrefix("ckpt-20261126T000003Z") })
        // pp-select refuses it as a candidate too (it has no result, so it is not even one).
        try FileIO.removeDurably(bad)

        // predict: one JSON line per input line.
        r = try TestSupport.run("pp-eval", ["predict", b, "--k", "2"], stdin: Array("crash bug\n{\"text\": \"unit test\"}\n".utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.stdoutLines.count == 2 else { return XCTFail("predict: \(r.stdout) \(r.stderr)") }
        XCTAssertEqual(try json(r.stdoutLines[0])["label"] as? String, "fix")
        XCTAssertEqual(try json(r.stdoutLines[1])["label"] as? String, "test")
        XCTAssertEqual((try json(r.stdoutLines[1])["top"] as? [Any])?.count, 2)

        // OpenBLAS opens at the first product, after main set one thread (COpenBLAS/blas.c):
        // a running predict filter has it loaded and no BLAS server thread beside its own.
        // (Linked, it started one per extra core, spinning ~0.1 s at a time.)
        if ProcessInfo.processInfo.activeProcessorCount >= 2 {
            let inPipe = Pipe()
            let (p, out, err) = try TestSupport.start("pp-eval", ["predict", b], stdin: inPipe)
            inPipe.fileHandleForWriting.write(Data("crash bug\n".utf8))
            var got = Data()
            while !got.contains(0x0A) {
                let d = out.fileHandleForReading.availableData
                if d.isEmpty { break }
                got.append(d)
            }
            XCTAssertTrue(String(decoding: got, as: UTF8.self).contains("\"label\""), String(decoding: got, as: UTF8.self))
            let maps = String(decoding: (try? FileIO.readAll("/proc/\(p.processIdentifier)/maps")) ?? [], as: UTF8.self)
            let threads = (try? FileIO.list("/proc/\(p.processIdentifier)/task"))?.count ?? 0
            try inPipe.fileHandleForWriting.close()
            p.waitUntilExit()
            _ = err.fileHandleForReading.readDataToEndOfFile()
            XCTAssertTrue(maps.contains("libopenblas"), "OpenBLAS not loaded by a predicting filter")
            XCTAssertEqual(threads, 1, "pp-eval predict runs \(threads) threads: OpenBLAS started its server threads")
        }
        // Without OpenBLAS: exit 69 and why, naming the file.
        r = try TestSupport.run("pp-eval", ["predict", b], stdin: Array("crash bug\n".utf8), env: ["PP_OPENBLAS": "/nonexistent/libopenblas.so.0"])
        XCTAssertEqual(r.status, 69, r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot load OpenBLAS (/nonexistent/libopenblas.so.0)"), r.stderr)

        // --lineage walks back to the fresh start.
        r = try TestSupport.run("pp-eval", ["--root", dir, "--lineage", b])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.stdoutLines.count == 2 else { return XCTFail("lineage: \(r.stdout) \(r.stderr)") }
        XCTAssertEqual(try json(r.stdoutLines[0])["parent"] as? String, aID)
        XCTAssertTrue(try json(r.stdoutLines[1])["parent"] is NSNull)
        XCTAssertEqual(((try json(r.stdoutLines[1])["shards"] as? [[String: Any]])?.first?["name"]) as? String, "s-20261126T000001Z.pps")

        // --data RAWFILE: parsed like pp-ingest (the bad line is reported and skipped).
        let raw = dir + "/extra.jsonl"
        try FileIO.publish("{\"text\":\"crash null\",\"label\":\"fix\"}\nnot json at all\n{\"text\":\"readme typo\",\"label\":\"doc\"}\n", to: raw)
        r = try TestSupport.run("pp-eval", ["--root", dir, "--data", raw, "--no-store", b])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rr = try json(r.stdout.trimmingCharacters(in: .newlines))
        XCTAssertEqual(rr["examples"] as? Int, 2)
        XCTAssertNotEqual(rr["evalset"] as? String, evalset)
        XCTAssertTrue(r.stderr.contains("extra.jsonl: line 2"), r.stderr)

        // pp-select: nothing deployed, so the best is promoted; then by hand; then rollback.
        r = try TestSupport.run("pp-select", ["--root", dir, "--bootstrap", "100"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.stdoutLines.count == 1 else { return XCTFail("select: \(r.stdout) \(r.stderr)") }
        let d = try json(r.stdoutLines[0])
        XCTAssertEqual(d["decision"] as? String, "promote")
        XCTAssertEqual(d["deployed"] as? String, "main/" + FileIO.split(b).name)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed),
                       "runs/main/checkpoints/" + FileIO.split(b).name)
        let sprom = String(decoding: try FileIO.readAll(root.metrics + "/pp-select.prom"), as: UTF8.self)
        XCTAssertTrue(sprom.contains("perpetuum_select_last_decision{decision=\"promote\"} 1"), sprom)
        XCTAssertTrue(sprom.contains("perpetuum_deployed_step{run=\"main\"} 600"), sprom)
        r = try TestSupport.run("pp-select", ["--root", dir])   // only the deployed one is left
        XCTAssertEqual(r.status, 0, r.stderr)                    // a stays a candidate: kept, worse
        guard r.stdoutLines.count == 1 else { return XCTFail("select: \(r.stdout) \(r.stderr)") }
        XCTAssertEqual(try json(r.stdoutLines[0])["decision"] as? String, "keep")
        r = try TestSupport.run("pp-select", ["--root", dir, "--deploy", a])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed), "runs/main/checkpoints/" + FileIO.split(a).name)
        r = try TestSupport.run("pp-select", ["rollback", "--root", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed), "runs/main/checkpoints/" + FileIO.split(b).name)
        XCTAssertEqual(try FileIO.readAll(root.selections).split(separator: 0x0A).count, 4)
        // A corrupt checkpoint is never deployed by hand.
        try FileIO.publish(bytes, to: bad)
        r = try TestSupport.run("pp-select", ["--root", dir, "--deploy", bad])
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed), "runs/main/checkpoints/" + FileIO.split(b).name)
    }
}
