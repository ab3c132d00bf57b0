import XCTest
import TestSupport
@testable import Shared
@testable import pp_eval

/// The eval set, scoring with a stand-in model, slices, the stored files and their formats.
final class ScoringTests: XCTestCase {
    let day: Int64 = 86_400
    let t0: Int64 = 1_700_000_000

    /// Issue 13: the root's eval set is the newest holdout shards holding at least the
    /// window's examples, so scoring a checkpoint costs the same in year two as in week two;
    /// pp-eval and pp-select get the same set (the same function).
    func testHoldoutWindowTakesTheNewestShardsUpToTheCount() throws {
        let dir = try TestSupport.tempDir("window")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        for (i, name) in ["20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c", "20260104T000000Z-d"].enumerated() {
            try Fixture.shard((0..<3).map { ("l\(i)", t0 + Int64(i * 10 + $0), "text \(i) \($0)") }, to: root.holdout + "/\(name)-000.pps")
        }
        let name = { (p: String) in String(FileIO.split(p).name.prefix(18)) }
        XCTAssertEqual(try EvalSet.holdoutPaths(root, window: 4).map(name), ["20260103T000000Z-c", "20260104T000000Z-d"])
        XCTAssertEqual(try EvalSet.holdoutPaths(root, window: 3).map(name), ["20260104T000000Z-d"])
        XCTAssertEqual(try EvalSet.holdoutPaths(root, window: 100).count, 4)
        // An unreadable shard counts no examples and stays in the set (pp-eval reports it).
        try FileIO.publish("garbage", to: root.holdout + "/20260105T000000Z-e-000.pps")
        XCTAssertEqual(try EvalSet.holdoutPaths(root, window: 3).map(name), ["20260104T000000Z-d", "20260105T000000Z-e"])
        XCTAssertEqual(EvalSet.holdoutWindow, 5000)
        XCTAssertEqual(try EvalSet.holdoutPaths(root).count, 5)
    }

    func testScoreSlicesAndStore() throws {
        let dir = try TestSupport.tempDir("score")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        // Shard 1: 30 days ago; shard 2: the newest 3 days. Names sort shard 1 first.
        try Fixture.shard([("doc", t0, "update the doc"), ("fix", t0 + 1, "fix crash"), ("test", t0 + 2, "nothing here")],
                          to: root.holdout + "/a-000.pps")
        try Fixture.shard([("fix", t0 + 30 * day, "fix fix"), ("doc", t0 + 28 * day, "doc fix"), ("new", nil, "brand new")],
                          to: root.holdout + "/b-000.pps")
        let set = try EvalSet.load(try EvalSet.holdoutPaths(root), source: "holdout")
        XCTAssertEqual(set.count, 6)
        XCTAssertEqual(set.labels, ["doc", "fix", "test", "new"])
        XCTAssertEqual(set.hash, try EvalSet.hashShards(try EvalSet.holdoutPaths(root)))
        XCTAssertEqual(set.newest, t0 + 30 * day)
        XCTAssertEqual(set.oldest, t0)
        // Recent (7 days): the three examples of shard 2 (the ts-less one takes the shard's newest ts).
        XCTAssertEqual(set.sliceFlags(days: 7), [2, 2, 2, 1, 1, 1])

        let model = KeywordModel(labels: ["fix", "doc", "test", "style"])
        let outcomes = Scorer.score(set, model)
        // doc->doc, fix->fix, "nothing here" flat (first max = fix), fix, "doc fix" -> fix (first
        // label found in the model's order), "brand new" flat -> fix; "new" unknown to the model.
        XCTAssertEqual(outcomes.map(\.pred), [0, 1, 1, 1, 1, 1])
        XCTAssertEqual(outcomes.map(\.truth), [0, 1, 2, 1, 0, 3])
        XCTAssertEqual(outcomes[5].pTrue, 0)
        XCTAssertFalse(outcomes[5].top5)
        XCTAssertEqual(outcomes[2].pTrue, 0.25, accuracy: 1e-6)
        XCTAssertTrue(outcomes[2].top5)

        let id = CheckpointIdentity(run: "main", file: "ckpt-20261126T000000Z-000000000010.ppc",
                                    path: "runs/main/checkpoints/ckpt-20261126T000000Z-000000000010.ppc", step: 10,
                                    createdAt: "2026-11-26T00:00:00Z")
        let (r, ex) = evaluate(model, identity: id, set: set, slicing: .days(7))
        XCTAssertEqual(r.all.examples, 6)
        XCTAssertEqual(r.all.accuracy, 3.0 / 6.0, accuracy: 1e-12)
        XCTAssertEqual(r.recent.examples, 3)
        XCTAssertEqual(r.recent.accuracy, 1.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(r.old.examples, 3)
        XCTAssertEqual(r.old.accuracy, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(r.checkpoint, "main/ckpt-20261126T000000Z-000000000010.ppc")

        let path = try store(r, ex, root: root)
        XCTAssertEqual(FileIO.split(path).name, "ckpt-20261126T000000Z-000000000010--main--\(set.hash.prefix(16)).json")
        let back = try EvalResult.load(path: path)
        XCTAssertEqual(back, r)
        let exBack = try ExampleFile.load(path: root.evals + "/" + back.examplesFile)
        XCTAssertEqual(exBack, ex)
        // The per-example file reproduces the stored metrics exactly.
        XCTAssertEqual(exBack.metrics(slice: "recent"), r.recent)
        XCTAssertEqual(exBack.metrics(slice: "all"), r.all)
    }

    func testStableKeyNames() throws {
        let (root, hash) = try Fixture.root("keys")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let r = try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes([0, 1, 0], wrong: [1]),
                                   file: "ckpt-20261126T000000Z-000000000001.ppc", step: 1)
        let obj = try JSONSerialization.jsonObject(with: Data(try r.json().utf8)) as! [String: Any]
        for k in ["schema", "checkpoint", "run", "path", "step", "evalset", "examples", "accuracy", "top5_accuracy", "macro_f1",
                  "weighted_f1", "log_loss", "ece", "labels", "recent", "old", "seconds", "examples_per_second", "examples_file",
                  "recent_days", "checkpoint_created_at", "evaluated_at"] {
            XCTAssertNotNil(obj[k], k)
        }
        XCTAssertEqual(obj["schema"] as? Int, 1)
        let recent = obj["recent"] as! [String: Any]
        XCTAssertNotNil(recent["macro_f1"])
        let la = (obj["labels"] as! [String: Any])["a"] as! [String: Any]
        XCTAssertEqual(Set(la.keys), ["precision", "recall", "f1", "support"])
        XCTAssertEqual(r.metric("recent.macro_f1"), r.recent.macroF1)
        XCTAssertEqual(r.metric("macro_f1"), r.all.macroF1)
        XCTAssertEqual(r.metric("all.accuracy"), r.all.accuracy)
        XCTAssertNil(r.metric("recent.nope"))
    }

    func testEvalSetHashDependsOnContentNotArgumentOrder() throws {
        let dir = try TestSupport.tempDir("hash")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Fixture.shard([("a", 1, "one")], to: dir + "/x/1.pps")
        try Fixture.shard([("b", 2, "two")], to: dir + "/y/2.pps")
        let h1 = try EvalSet.hashShards(try EvalSet.shardPaths([dir + "/x", dir + "/y/2.pps"]))
        let h2 = try EvalSet.hashShards(try EvalSet.shardPaths([dir + "/y/2.pps", dir + "/x"]))
        XCTAssertEqual(h1, h2)
        try Fixture.shard([("b", 2, "two changed")], to: dir + "/y/2.pps")
        let h3 = try EvalSet.hashShards(try EvalSet.shardPaths([dir + "/x", dir + "/y"]))
        XCTAssertNotEqual(h1, h3)
    }

    func testCorruptExampleFileRefused() throws {
        let f = ExampleFile(evalset: "ab", labels: ["a"], outcomes: [ExampleOutcome(truth: 0, pred: 0, pTrue: 1, pTop: 1, top5: true)],
                            slices: [3])
        let bytes = try f.bytes()
        XCTAssertEqual(try ExampleFile(path: "x.pex", fileBytes: bytes), f)
        XCTAssertThrowsError(try ExampleFile(path: "x.pex", fileBytes: Array(bytes.dropLast(3)))) { e in
            XCTAssertEqual((e as? PPError)?.status, .corrupt)
        }
        XCTAssertThrowsError(try ExampleFile(path: "x.pex", fileBytes: try Zstd.compress(Array("PPSHARD1 not this".utf8)))) { e in
            XCTAssertTrue("\(e)".contains("bad magic"), "\(e)")
        }
    }

    func testPredictStreamsOneLinePerInput() throws {
        let model = KeywordModel(labels: ["fix", "doc", "te\"st"])
        let s = PredictStream(model: model, k: 2)
        let input = Array("Fix the crash\n{\"text\": \"DOC update\"}\n{bad json\n\nte st".utf8)
        var pipeIn: [Int32] = [0, 0], pipeOut: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&pipeIn), 0); XCTAssertEqual(pipe(&pipeOut), 0)
        _ = input.withUnsafeBytes { write(pipeIn[1], $0.baseAddress!, $0.count) }
        close(pipeIn[1])
        try s.run(input: pipeIn[0], output: pipeOut[1])
        close(pipeOut[1]); close(pipeIn[0])
        var out = [UInt8](), buf = [UInt8](repeating: 0, count: 4096)
        while true { let n = read(pipeOut[0], &buf, buf.count); if n <= 0 { break }; out += buf[0..<n] }
        close(pipeOut[0])
        let lines = String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertEqual(lines.count, 5, "\(lines)")
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(first["label"] as? String, "fix")
        XCTAssertEqual((first["prob"] as! NSNumber).doubleValue, 0.7, accuracy: 1e-6)
        XCTAssertEqual((first["top"] as! [Any]).count, 2)
        let second = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
        XCTAssertEqual(second["label"] as? String, "doc")
        XCTAssertTrue(lines[2].contains("\"error\""), String(lines[2]))
        XCTAssertEqual(s.errors, 1)
        // Flat distribution: the first label wins; a label with a quote is escaped correctly.
        let fourth = try JSONSerialization.jsonObject(with: Data(lines[3].utf8)) as! [String: Any]
        XCTAssertEqual(fourth["label"] as? String, "fix")
        let top = (fourth["top"] as! [[String: Any]]).map { $0["label"] as! String }
        XCTAssertEqual(top, ["fix", "doc"])
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(lines[4].utf8)))
    }
}
