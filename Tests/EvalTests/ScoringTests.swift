import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
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

    /// A KeywordModel that counts the examples it was asked about.
    final class CountingModel: Predictor {
        let inner: KeywordModel
        var calls = 0
        init(labels: [String]) { inner = KeywordModel(labels: labels) }
        var labels: [String] { inner.labels }
        func predict(tokens: UnsafeRawBufferPointer, probs: UnsafeMutableBufferPointer<Float>) {
            calls += 1
            inner.predict(tokens: tokens, probs: probs)
        }
    }

    /// Issue 13: each checkpoint scores each example once. Through the per-shard cache, a set
    /// that gained a shard costs only that shard's examples, a set whose every shard is cached
    /// costs no model at all, and the outcomes are exactly those of scoring from scratch, even
    /// when the label tables of the set and the model differ (a model label the set lacks, a
    /// set label the model lacks).
    func testScoreCacheScoresOnlyNewShardsAndCombinesExactly() throws {
        let dir = try TestSupport.tempDir("cache")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Fixture.shard([("doc", t0, "doc here"), ("fix", t0 + 1, "fix it"), ("new", t0 + 2, "new label doc")], to: dir + "/a-000.pps")
        try Fixture.shard([("test", t0 + 3, "test fix"), ("fix", t0 + 4, "nothing"), ("doc", t0 + 5, "doc doc")], to: dir + "/b-000.pps")
        let labels = ["fix", "doc", "test", "extra"]
        let setA = try EvalSet.load([dir + "/a-000.pps"], source: "t")
        let setAB = try EvalSet.load([dir + "/a-000.pps", dir + "/b-000.pps"], source: "t")
        XCTAssertEqual(setAB.digests.count, 2)
        XCTAssertEqual(setAB.digests[0], setA.digests[0])

        let m1 = CountingModel(labels: labels)
        let first = try Scorer.scoreCached(setA, checkpoint: "main/c.ppc", checkpointBytes: 10, cache: nil, load: { m1 })
        XCTAssertEqual(m1.calls, 3)
        XCTAssertEqual(first.scored, 3)
        XCTAssertTrue(first.loaded)
        XCTAssertEqual(first.outcomes, Scorer.score(setA, KeywordModel(labels: labels)))

        // The cache survives its file format, then serves the old shard: only b's 3 examples run.
        let cache = try ScoreCache(path: "c.psc", fileBytes: try first.cache.bytes())
        XCTAssertEqual(cache, first.cache)
        let m2 = CountingModel(labels: labels)
        let second = try Scorer.scoreCached(setAB, checkpoint: "main/c.ppc", checkpointBytes: 10, cache: cache, load: { m2 })
        XCTAssertEqual(m2.calls, 3)
        XCTAssertEqual(second.scored, 3)
        XCTAssertEqual(second.outcomes, Scorer.score(setAB, KeywordModel(labels: labels)))
        XCTAssertEqual(second.cache.shards.map(\.sha256), setAB.digests)

        // Every shard cached: the model is never loaded; a shard that left the set leaves the cache.
        let setB = try EvalSet.load([dir + "/b-000.pps"], source: "t")
        let third = try Scorer.scoreCached(setB, checkpoint: "main/c.ppc", checkpointBytes: 10, cache: second.cache,
                                           load: { XCTFail("loaded although every shard was cached"); return m2 })
        XCTAssertFalse(third.loaded)
        XCTAssertEqual(third.scored, 0)
        XCTAssertEqual(third.outcomes, Scorer.score(setB, KeywordModel(labels: labels)))
        XCTAssertEqual(third.cache.shards.map(\.sha256), setB.digests)

        // A cached shard whose example count does not match is scored again, not trusted.
        var wrong = second.cache
        wrong.shards[1].outcomes.removeLast()
        let m3 = CountingModel(labels: labels)
        _ = try Scorer.scoreCached(setAB, checkpoint: "main/c.ppc", checkpointBytes: 10, cache: wrong, load: { m3 })
        XCTAssertEqual(m3.calls, 3)
    }

    /// The score cache is hostile input like every file: each defect is refused by name, and
    /// a cache of another checkpoint (or of a file of another size) is not used.
    func testCorruptScoreCacheRefused() throws {
        let c = ScoreCache(checkpoint: "main/c.ppc", checkpointBytes: 42, labels: ["a", "b"],
                           shards: [(String(repeating: "1", count: 64), [ModelOutcome(pred: 1, pTrue: 0.25, pTop: 0.75, top5: true)])])
        let bytes = try c.bytes()
        XCTAssertEqual(try ScoreCache(path: "c.psc", fileBytes: bytes), c)
        func refused(_ raw: [UInt8], _ why: String, line: UInt = #line) {
            XCTAssertThrowsError(try ScoreCache(path: "c.psc", fileBytes: try Zstd.compress(raw)), line: line) { e in
                XCTAssertEqual((e as? PPError)?.status, .corrupt, line: line)
                XCTAssertTrue("\(e)".contains(why), "\(e)", line: line)
            }
        }
        let raw = try Zstd.decompress(bytes)
        refused(Array(raw.dropLast(3)), "size does not match")
        refused(Array("PPSHARD1".utf8) + raw.dropFirst(8), "bad magic")
        // The header's count claims more examples than any cache holds: refused before allocating.
        let hl = Int(raw[12]) | Int(raw[13]) << 8
        let h = String(decoding: raw[16..<(16 + hl)], as: UTF8.self)
        func withHeader(_ nh: String) -> [UInt8] {
            let hb = Array(nh.utf8)
            var out = Array(raw[0..<12])
            withUnsafeBytes(of: UInt32(hb.count).littleEndian) { out.append(contentsOf: $0) }
            return out + hb + raw[(16 + hl)...]
        }
        refused(withHeader(h.replacingOccurrences(of: "\"examples\":1", with: "\"examples\":9223372036854775807")), "out of range")
        refused(withHeader(h.replacingOccurrences(of: "\"examples\":1", with: "\"examples\":-1")), "out of range")
        // A prediction outside the label table.
        var badPred = raw
        badPred[16 + hl] = 7
        refused(badPred, "out of range")
        // Wrong owner or size: ignored with a warning (it is only an optimisation).
        let dir = try TestSupport.tempDir("cache-owner")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileIO.publish(bytes, to: dir + "/c.psc")
        var warnings: [String] = []
        XCTAssertNotNil(ScoreCache.read(path: dir + "/c.psc", checkpoint: "main/c.ppc", checkpointBytes: 42, warn: { warnings.append($0) }))
        XCTAssertNil(ScoreCache.read(path: dir + "/c.psc", checkpoint: "main/d.ppc", checkpointBytes: 42, warn: { warnings.append($0) }))
        XCTAssertNil(ScoreCache.read(path: dir + "/c.psc", checkpoint: "main/c.ppc", checkpointBytes: 43, warn: { warnings.append($0) }))
        try FileIO.publish("garbage", to: dir + "/c.psc")
        XCTAssertNil(ScoreCache.read(path: dir + "/c.psc", checkpoint: "main/c.ppc", checkpointBytes: 42, warn: { warnings.append($0) }))
        XCTAssertEqual(warnings.count, 3, "\(warnings)")
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
