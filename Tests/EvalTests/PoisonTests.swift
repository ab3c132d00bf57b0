import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training
@testable import pp_select

/// Layer 3 of issue 7 on real (tiny, untrained) checkpoints whose metas form a lineage:
/// poisoned candidates refused, a poisoned deployed model rolled back (or replaced, or kept
/// with an alarm), incomplete lineages, manual deploy/rollback, and the freshness metrics.
final class PoisonTests: XCTestCase {
    /// 400 examples: 300 of label a (0), 100 of b (1).
    let truths: [UInt32] = (0..<400).map { $0 % 4 == 3 ? 1 : 0 }

    static func config() -> ModelConfig {
        .small(dim: 4, bucket: 64, capacity: 16, minCount: 1, wordNgrams: 1, minn: 0, maxn: 0, seed: 3)
    }

    /// "ckpt-20261126T0<i>0000Z-<step>.ppc", created at that stamp.
    static func ck(_ i: Int) -> String { "ckpt-20261126T0\(i)0000Z-00000000000\(i).ppc" }
    /// A train shard name stamped 2026-11-26 0<i>:30 (input time).
    static func shard(_ i: Int) -> String { "20261126T0\(i)3000Z-00000000000000a\(i)-000.pps" }

    /// Writes runs/RUN/checkpoints/FILE with this parent and lineage; returns the relative path.
    @discardableResult
    static func checkpoint(_ root: Root, run: String = "main", _ file: String, parent: String?, shards: [String]) throws -> String {
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.1))
        var meta = CheckpointMeta(run: run, createdAt: "2026-11-26T00:00:00Z", step: 1, tokens: 0, config: c, knobs: Knobs(lr: 0.1))
        meta.parent = parent
        meta.lineage = shards.map { ShardRef(name: $0, sha256: String(repeating: "b", count: 64)) }
        try FileIO.makeDirectories(root.checkpoints(run: run))
        try FileIO.publish(try t.checkpointBytes(meta: meta), to: root.checkpoints(run: run) + "/" + file)
        return EvalNames.relativeCheckpointPath(run: run, file: file)
    }

    /// A train shard in shards/ ingested at `ingested` with examples stamped `ts`.
    static func trainShard(_ root: Root, _ name: String, ingested: String, ts: Int64 = 1_700_000_000) throws {
        var w = ShardWriter()
        w.append(label: "a", ts: ts, tokens: ["x"])
        var h = Fixture.header("train")
        h.ingestedAt = ingested
        try FileIO.publish(try w.finish(header: h), to: root.shards + "/" + name)
    }

    static func quarantine(_ root: Root, _ name: String) throws {
        try FileIO.makeDirectories(root.quarantine)
        if FileIO.exists(root.shards + "/" + name) {
            try FileIO.publish(try FileIO.readAll(root.shards + "/" + name), to: root.quarantine + "/" + name)
            try FileIO.removeDurably(root.shards + "/" + name)
        }
        try FileIO.publish("{\"check\":\"manual\",\"reason\":\"test\",\"by\":\"t\",\"at\":\"2026-11-26T12:00:00Z\"}\n",
                           to: root.quarantine + "/" + name + ".reason.json")
    }

    static func suspect(_ root: Root, run: String, _ name: String) throws {
        var l = try SuspectList.load(root: root, run: run)
        l.mark(SuspectShard(name: name, reason: "loss spike", at: "2026-11-26T12:00:00Z", by: "pp-train guard"))
        try FileIO.makeDirectories(root.run(run))
        try l.publish(root: root, run: run)
    }

    /// A selector with a fresh poison set (as each pp-select run reads it); stand-in verify.
    func selector(_ root: Root, corrupt: Set<String> = []) throws -> Selector {
        var s = Selector(root: root, verify: { p in
            if corrupt.contains(FileIO.split(p).name) { throw PPError.corrupt(p, "checksum mismatch") }
        })
        s.config.metric = "accuracy"
        s.config.bootstrap = 200
        s.poisonGuard = try PoisonGuard(root: root)
        return s
    }

    /// Root with the chain main: ck1 (s1) <- ck2 (s2) <- ck3 (s3), each shard ingested at its
    /// stamp, and results where later checkpoints are better.
    func chain(_ tag: String) throws -> (Root, String) {
        let (root, hash) = try Fixture.root(tag)
        var parent: String? = nil
        for i in 1...3 {
            try Self.trainShard(root, Self.shard(i), ingested: "2026-11-26T0\(i):30:00Z")
            try Self.checkpoint(root, Self.ck(i), parent: parent, shards: [Self.shard(i)])
            parent = "main/" + Self.ck(i)
            try Fixture.result(root, evalset: hash, labels: ["a", "b"],
                               outcomes: Fixture.outcomes(truths, wrong: Set(0..<(160 - 40 * i))), file: Self.ck(i), step: i)
        }
        return (root, hash)
    }

    func path(_ i: Int, run: String = "main") -> String { "runs/\(run)/checkpoints/\(Self.ck(i))" }

    func testPoisonedCandidatesAreRefused() throws {
        let (root, _) = try chain("poison-cand")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        // Clean: the best (ck3) wins.
        XCTAssertEqual(try XCTUnwrap(try selector(root).select(since: 86_400)).0.winner?.path, path(3))
        // s3 quarantined: ck3 is refused for poison (exit status stays 0), ck2 is promoted.
        try Self.quarantine(root, Self.shard(3))
        var (r, st) = try XCTUnwrap(try selector(root).select(since: 86_400))
        XCTAssertEqual(st, .ok)
        XCTAssertEqual(r.decision, "promote")
        XCTAssertEqual(r.deployedPath, path(2))
        XCTAssertEqual(r.rejected?.count, 1)
        XCTAssertEqual(r.rejected?[0]["checkpoint"], "main/" + Self.ck(3))
        XCTAssertEqual(r.rejected?[0]["kind"], "poison")
        XCTAssertTrue(r.rejected![0]["reason"]!.contains(Self.shard(3) + " (quarantined)"), r.rejected![0]["reason"]!)
        // s2 suspect in another run: ck2 and ck3 (whose lineage includes s2) refused, ck1 wins.
        try Self.suspect(root, run: "other", Self.shard(2))
        (r, st) = try XCTUnwrap(try selector(root).select(since: 86_400))
        XCTAssertEqual(r.deployedPath, path(1))
        XCTAssertEqual(r.rejected?.map { $0["checkpoint"]! }, ["main/" + Self.ck(3), "main/" + Self.ck(2)])
        XCTAssertTrue(r.rejected![0]["reason"]!.contains("suspect in run other: loss spike"), r.rejected![0]["reason"]!)
        // Everything poisoned: every candidate refused, nothing promoted.
        try Self.quarantine(root, Self.shard(1))
        (r, st) = try XCTUnwrap(try selector(root).select(since: 86_400))
        XCTAssertEqual(r.decision, "keep")
        XCTAssertNil(r.deployedPath)
        XCTAssertEqual(r.reason, "every candidate was refused")
    }

    func testPoisonedDeployedIsRolledBack() throws {
        let (root, hash) = try chain("poison-dep")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        var s = try selector(root)
        for i in 1...3 { try s.commit(try s.deploy(root.path + "/" + path(i))) }
        XCTAssertNil(try s.guardDeployed(), "clean: nothing to do")
        // s3 quarantined: back to ck2, the newest earlier deployment without it.
        try Self.quarantine(root, Self.shard(3))
        s = try selector(root)
        var (r, st) = try XCTUnwrap(try s.guardDeployed())
        XCTAssertEqual(st, .partial)
        XCTAssertEqual(r.decision, "rollback")
        XCTAssertEqual(r.previousPath, path(3))
        XCTAssertEqual(r.deployedPath, path(2))
        XCTAssertEqual(r.poisoned, [PoisonedShard(shard: Self.shard(3), why: "quarantined", certain: true)])
        XCTAssertTrue(r.reason.contains("rolled back to the newest earlier deployment without poison"), r.reason)
        try s.commit(r)
        XCTAssertEqual(s.currentDeployed(), path(2))
        XCTAssertNil(try s.guardDeployed())
        // A line for it in selections.jsonl, with the poisoned shard.
        let last = try XCTUnwrap(try History.read(root.selections).last)
        XCTAssertEqual(last.decision, "rollback")
        XCTAssertEqual(last.poisoned?.first?.shard, Self.shard(3))

        // Deploy ck3's sibling on run b (clean, s4), then poison s2 and s4: from b's
        // checkpoint the rollback skips ck2 (poisoned) and lands on ck1.
        try Self.trainShard(root, Self.shard(4), ingested: "2026-11-26T04:30:00Z")
        try Self.checkpoint(root, run: "b", Self.ck(4), parent: nil, shards: [Self.shard(4)])
        try s.commit(try s.deploy(root.path + "/" + path(4, run: "b")))
        try Self.suspect(root, run: "main", Self.shard(2))
        try Self.suspect(root, run: "main", Self.shard(4))
        s = try selector(root)
        (r, st) = try XCTUnwrap(try s.guardDeployed())
        XCTAssertEqual(r.deployedPath, path(1))
        XCTAssertEqual(r.rejected?.map { $0["checkpoint"]! }, ["main/" + Self.ck(2)])
        try s.commit(r)
        XCTAssertEqual(History.stack(try History.read(root.selections)), [path(1)])

        // ck1 poisoned too and no earlier deployment: the best clean candidate on the
        // current eval set (any age) is deployed instead: run c's ck5.
        try Self.trainShard(root, Self.shard(5), ingested: "2026-11-26T05:30:00Z")
        try Self.checkpoint(root, run: "c", Self.ck(5), parent: nil, shards: [Self.shard(5)])
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<150)), run: "c",
                           file: Self.ck(5), step: 5, created: "2020-01-01T00:00:00Z")
        try Self.quarantine(root, Self.shard(1))
        s = try selector(root)
        (r, st) = try XCTUnwrap(try s.guardDeployed())
        XCTAssertEqual(st, .partial)
        XCTAssertEqual(r.decision, "promote")
        XCTAssertEqual(r.deployedPath, path(5, run: "c"))
        try s.commit(r)

        // Nothing clean left at all: it stays deployed, the decision says so, status 65.
        try Self.quarantine(root, Self.shard(5))
        s = try selector(root)
        (r, st) = try XCTUnwrap(try s.guardDeployed())
        XCTAssertEqual(st, .corrupt)
        XCTAssertEqual(r.decision, "keep")
        XCTAssertEqual(r.deployedPath, path(5, run: "c"))
        XCTAssertTrue(r.reason.contains("the link stays"), r.reason)
    }

    /// `pp-train rewind` moves the checkpoints that trained on a shard to rewound/; when the
    /// deployed one is among them, the link dangles until pp-select replaces it.
    func testDeployedMovedAwayIsReplaced() throws {
        let (root, _) = try chain("poison-rewound")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        var s = try selector(root)
        for i in 1...3 { try s.commit(try s.deploy(root.path + "/" + path(i))) }
        try FileIO.makeDirectories(root.rewound(run: "main"))
        try Self.suspect(root, run: "main", Self.shard(3))
        XCTAssertEqual(rename(root.path + "/" + path(3), root.rewound(run: "main") + "/" + Self.ck(3)), 0)
        s = try selector(root)
        var (r, st) = try XCTUnwrap(try s.guardDeployed())
        XCTAssertEqual(st, .partial)
        XCTAssertEqual(r.deployedPath, path(2))
        XCTAssertTrue(r.reason.contains("no longer exists at \(path(3)) (moved to runs/main/rewound/\(Self.ck(3)))"), r.reason)
        XCTAssertEqual(r.poisoned?.map(\.shard), [Self.shard(3)])
        try s.commit(r)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.deployed), "the link resolves again")
        // Deleted outright: replaced too, without a poison record.
        try FileIO.removeDurably(root.path + "/" + path(2))
        s = try selector(root)
        (r, st) = try XCTUnwrap(try s.guardDeployed())
        XCTAssertEqual(r.deployedPath, path(1))
        XCTAssertNil(r.poisoned)
        XCTAssertTrue(r.reason.hasSuffix("no longer exists; rolled back to the newest earlier deployment without poison"), r.reason)
    }

    func testIncompleteLineage() throws {
        let (root, _) = try chain("poison-incomplete")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        // ck2 deleted (as retention may): ck3's lineage is only {s3}, parent main/ck2 missing.
        try FileIO.removeDurably(root.path + "/" + path(2))
        let g0 = try PoisonGuard(root: root)
        let v0 = try g0.check(root.path + "/" + path(3))
        XCTAssertFalse(v0.complete)
        XCTAssertEqual(v0.missingParent, "main/" + Self.ck(2))
        XCTAssertTrue(v0.clean, "no poison at all: an incomplete lineage is fine")
        // s1 (ingested 01:30, before ck2 was written at 02:00) may hide in the missing part.
        try Self.quarantine(root, Self.shard(1))
        var v = try PoisonGuard(root: root).check(root.path + "/" + path(3))
        XCTAssertFalse(v.clean)
        XCTAssertEqual(v.unresolved.map(\.shard), [Self.shard(1)])
        XCTAssertEqual(v.records, [PoisonedShard(shard: Self.shard(1), why: "quarantined", certain: false)])
        XCTAssertTrue(v.reason.contains("lineage incomplete (parent main/\(Self.ck(2)) is missing)"), v.reason)
        // A shard ingested after ck2 was written cannot be in the missing part.
        try FileIO.removeDurably(root.quarantine + "/" + Self.shard(1) + ".reason.json")
        try Self.trainShard(root, Self.shard(7), ingested: "2026-11-26T07:30:00Z")
        try Self.quarantine(root, Self.shard(7))
        v = try PoisonGuard(root: root).check(root.path + "/" + path(3))
        XCTAssertTrue(v.clean, v.reason)
        // A poisoned shard whose file is gone (time unknown) counts as possibly there.
        try FileIO.publish("{}", to: root.quarantine + "/gone.pps.reason.json")
        v = try PoisonGuard(root: root).check(root.path + "/" + path(3))
        XCTAssertEqual(v.unresolved.map(\.shard), ["gone.pps"])
        // ck1's lineage is complete and clean of both: accepted.
        XCTAssertTrue(try PoisonGuard(root: root).check(root.path + "/" + path(1)).clean)
        // policy "refuse": no time bound, shard 7 (ingested later) refuses ck3 too.
        try FileIO.removeDurably(root.quarantine + "/gone.pps.reason.json")
        v = try PoisonGuard(root: root, refuseIncomplete: true).check(root.path + "/" + path(3))
        XCTAssertEqual(v.unresolved.map(\.shard), [Self.shard(7)])
    }

    func testManualDeployAndRollbackAvoidPoison() throws {
        let (root, _) = try chain("poison-manual")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        var s = try selector(root)
        for i in 1...3 { try s.commit(try s.deploy(root.path + "/" + path(i))) }
        try Self.quarantine(root, Self.shard(2))
        s = try selector(root)
        // --deploy of a poisoned checkpoint: refused (65), nothing moves.
        XCTAssertThrowsError(try s.deploy(root.path + "/" + path(2))) { e in
            XCTAssertEqual((e as? PPError)?.status, .corrupt)
            XCTAssertTrue((e as? PPError)?.message.contains("pp-ingest release") ?? false)
        }
        // Manual rollback from ck3 skips ck2 (poisoned) and goes to ck1.
        let r = try s.rollback()
        XCTAssertEqual(r.deployedPath, path(1))
        XCTAssertEqual(r.rejected?.first?["kind"], "poison")
        try s.commit(r)
        XCTAssertThrowsError(try s.rollback()) { e in XCTAssertEqual((e as? PPError)?.status, .nothingToDo) }
    }

    func testStackPopsToASkippedTarget() {
        func rec(_ d: String, _ p: String) -> DecisionRecord {
            var r = DecisionRecord(at: "2026-11-26T00:00:00Z", decision: d, reason: "")
            r.deployedPath = p
            return r
        }
        let h = [rec("promote", "a"), rec("promote", "b"), rec("promote", "c"), rec("rollback", "a")]
        XCTAssertEqual(History.stack(h), ["a"])
        XCTAssertEqual(History.stack(h + [rec("promote", "d"), rec("rollback", "a")]), ["a"])
        XCTAssertEqual(History.stack([rec("promote", "a"), rec("promote", "b"), rec("rollback", "a")]), ["a"])
        // Changed by hand to something outside the stack: rollback pops one and pushes it.
        XCTAssertEqual(History.stack([rec("promote", "a"), rec("promote", "b"), rec("rollback", "x")]), ["a", "x"])
        XCTAssertEqual(History.rollbackTargets(h + [rec("promote", "d"), rec("promote", "e")], current: "e"), ["d", "a"])
        XCTAssertEqual(History.rollbackTargets([rec("promote", "a"), rec("promote", "b"), rec("promote", "a")], current: "z"), ["a", "b"])
    }

    /// The pp-select.prom file: strictly valid, freshness from the deployed lineage's newest
    /// shard, the deployed checkpoint's scores, poison counts.
    func testMetricsFreshnessAndScores() throws {
        let (root, _) = try chain("poison-metrics")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let now = Double(Clock.parseISO("2026-11-26T10:00:00Z")!)
        var s = try selector(root)
        s.now = now
        try s.commit(try s.deploy(root.path + "/" + path(3)))
        try Self.suspect(root, run: "main", "unrelated.pps")
        try FileIO.publish("{}", to: root.quarantine + "/2026-W01.jsonl.reason.json")   // an input, not a shard
        s = try selector(root)
        s.now = now
        try s.publishMetrics()
        let text = String(decoding: try FileIO.readAll(root.metrics + "/pp-select.prom"), as: UTF8.self)
        let samples = try PromTextParser.parse(text)
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { $0.name == name && $0.labels == labels }?.value
        }
        // Newest input: s3, stamped 03:30 (its name), so 6.5 h old at 10:00.
        let t3 = Double(Clock.parseISO("2026-11-26T03:30:00Z")!)
        XCTAssertEqual(value("perpetuum_deployed_newest_input_timestamp_seconds"), t3, text)
        XCTAssertEqual(value("perpetuum_deployed_newest_input_age_seconds"), now - t3)
        XCTAssertEqual(value("perpetuum_deployed_newest_example_timestamp_seconds"), 1_700_000_000)
        XCTAssertEqual(value("perpetuum_deployed_lineage_shards"), 3)
        XCTAssertEqual(value("perpetuum_deployed_lineage_complete"), 1)
        XCTAssertEqual(value("perpetuum_deployed_poisoned_shards"), 0)
        XCTAssertEqual(value("perpetuum_poisoned_shards"), 1)
        XCTAssertEqual(value("perpetuum_deployed_step", ["run": "main"]), 3)
        // ck3: 40 of 400 wrong.
        XCTAssertEqual(value("perpetuum_deployed_score", ["metric": "accuracy"]), 0.9)
        XCTAssertEqual(value("perpetuum_deployed_eval_score", ["slice": "recent", "metric": "accuracy"]), 0.9)
        XCTAssertEqual(value("perpetuum_select_last_decision", ["decision": "deploy"]), 1)
        XCTAssertEqual(value("perpetuum_select_last_run_timestamp_seconds"), now)
        XCTAssertEqual(value("perpetuum_select_rejected", ["kind": "poison"]), 0)
        // Every family has HELP and TYPE gauge.
        for name in Set(samples.map(\.name)) {
            XCTAssertTrue(text.contains("# TYPE \(name) gauge\n"), name)
            XCTAssertTrue(text.contains("# HELP \(name) "), name)
        }
    }

    /// The built tools: pp-select's exit statuses and lines, pp-eval --lineage's marks.
    func testCommandLine() throws {
        let (root, _) = try chain("poison-cli")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let dir = root.path
        for i in 1...3 {
            let r = try TestSupport.run("pp-select", ["--root", dir, "--deploy", dir + "/" + path(i)])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        try Self.quarantine(root, Self.shard(3))
        // The lineage marks the quarantined shard.
        var r = try TestSupport.run("pp-eval", ["--root", dir, "--lineage", dir + "/deployed"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdoutLines.count, 3, r.stdout)
        XCTAssertTrue(r.stdoutLines[0].contains("\"name\":\"\(Self.shard(3))\",\"sha256\":\"\(String(repeating: "b", count: 64))\",\"poisoned\":\"quarantined\""),
                      r.stdoutLines[0])
        XCTAssertFalse(r.stdoutLines[1].contains("poisoned"), r.stdoutLines[1])
        // A dry run says what it would do and changes nothing.
        r = try TestSupport.run("pp-select", ["--root", dir, "--dry-run"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed), path(3))
        // pp-select: exit 1, a rollback line naming the shard, then the usual selection
        // (ck3 refused as a candidate; ck1 is worse than ck2: kept).
        r = try TestSupport.run("pp-select", ["--root", dir, "--metric", "accuracy", "--bootstrap", "100"])
        XCTAssertEqual(r.status, 1, r.stderr)
        guard r.stdoutLines.count == 2 else { return XCTFail("select: \(r.stdout) \(r.stderr)") }
        let roll = try JSONSerialization.jsonObject(with: Data(r.stdoutLines[0].utf8)) as! [String: Any]
        XCTAssertEqual(roll["decision"] as? String, "rollback")
        XCTAssertEqual(roll["deployed"] as? String, "main/" + Self.ck(2))
        XCTAssertEqual((roll["poisoned"] as? [[String: Any]])?.first?["shard"] as? String, Self.shard(3))
        let keep = try JSONSerialization.jsonObject(with: Data(r.stdoutLines[1].utf8)) as! [String: Any]
        XCTAssertEqual(keep["decision"] as? String, "keep")
        XCTAssertEqual((keep["rejected"] as? [[String: String]])?.first?["kind"], "poison")
        XCTAssertTrue(r.stderr.contains("<3>") && r.stderr.contains(Self.shard(3)), r.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed), path(2))
        // Again: nothing poisoned deployed any more; a plain keep, exit 0.
        r = try TestSupport.run("pp-select", ["--root", dir, "--metric", "accuracy", "--bootstrap", "100"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // --deploy of the poisoned one: 65, one line on stderr, the link stays.
        r = try TestSupport.run("pp-select", ["--root", dir, "--deploy", dir + "/" + path(3)])
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed), path(2))
        let prom = String(decoding: try FileIO.readAll(root.metrics + "/pp-select.prom"), as: UTF8.self)
        XCTAssertNoThrow(try PromTextParser.parse(prom), prom)
        XCTAssertTrue(prom.contains("perpetuum_poisoned_shards 1\n"), prom)
    }

    func testPolicySection() throws {
        func parse(_ text: String) throws -> SelectPolicy { try SelectPolicy.parse(Array(text.utf8), path: "/r/policy.json") }
        XCTAssertEqual(try parse("{}"), SelectPolicy())
        XCTAssertEqual(try parse("{\"ingest\": {\"whatever\": 1}, \"train\": 3}"), SelectPolicy())
        let p = try parse("{\"select\": {\"guard\": false, \"incomplete_lineage\": \"refuse\"}}")
        XCTAssertFalse(p.guardEnabled)
        XCTAssertEqual(p.incompleteLineage, "refuse")
        for (text, needle) in [("{\"select\": {\"gaurd\": false}}", "select.gaurd: unknown key"),
                               ("{\"select\": {\"guard\": 0}}", "select.guard: expected true or false"),
                               ("{\"select\": {\"incomplete_lineage\": \"accept\"}}", "select.incomplete_lineage"),
                               ("{\"select\": []}", "select: expected an object"),
                               ("[1]", "expected a JSON object"), ("{", "not valid JSON")] {
            XCTAssertThrowsError(try parse(text), text) { e in
                let m = (e as? PPError)?.message ?? ""
                XCTAssertTrue(m.hasPrefix("/r/policy.json: ") && m.contains(needle), m)
                XCTAssertEqual((e as? PPError)?.status, .corrupt)
            }
        }
        // The built tool: a typo is refused (65, naming file and key); guard false deploys
        // a poisoned checkpoint (the measurement's "guards off"), with a warning.
        let (root, _) = try chain("poison-policy")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        try Self.quarantine(root, Self.shard(3))
        try FileIO.publish("{\"select\": {\"gaurd\": false}}", to: root.path + "/policy.json")
        var r = try TestSupport.run("pp-select", ["--root", root.path, "--metric", "accuracy"])
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("policy.json: select.gaurd: unknown key"), r.stderr)
        XCTAssertFalse(FileIO.exists(root.deployed))
        try FileIO.publish("{\"select\": {\"guard\": false}}", to: root.path + "/policy.json")
        r = try TestSupport.run("pp-select", ["--root", root.path, "--metric", "accuracy"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("NOT refused"), r.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root.deployed), path(3))
        let prom = String(decoding: try FileIO.readAll(root.metrics + "/pp-select.prom"), as: UTF8.self)
        XCTAssertTrue(prom.contains("perpetuum_deployed_poisoned_shards 1\n"), prom)
    }
}
