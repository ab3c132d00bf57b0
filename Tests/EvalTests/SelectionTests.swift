import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import pp_select

/// pp-select's rules on hand-made results: better, not better, tie, a regression on one label,
/// a corrupt winner, results on different eval sets; the deployed link, rollback, retention.
final class SelectionTests: XCTestCase {
    /// 400 examples: 300 of label a (0), 100 of b (1).
    let truths: [UInt32] = (0..<400).map { $0 % 4 == 3 ? 1 : 0 }
    func ck(_ i: Int) -> String { "ckpt-20261126T0\(i)0000Z-00000000000\(i).ppc" }

    /// The tests written for the `better` gate pass it; the default gate is `noninferior`.
    func selector(_ root: Root, corrupt: Set<String> = [], metric: String = "accuracy", gate: Gate = .better) -> Selector {
        var s = Selector(root: root, verify: { p in
            if corrupt.contains(FileIO.split(p).name) { throw PPError.corrupt(p, "checksum mismatch") }
        })
        s.config.metric = metric
        s.config.gate = gate
        return s
    }

    func testDefaultsAreTheStreamGate() {
        let c = SelectConfig()
        XCTAssertEqual(c.gate, .noninferior)
        XCTAssertEqual(c.metric, "recent.accuracy")
    }

    func testNoninferiorDeploysTheNewestWhenAtLeastAsGood() throws {
        let (root, hash) = try Fixture.root("noninf")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root, gate: .noninferior)
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<80)), file: ck(1), step: 1)
        try deploy(s, ck(1))
        // ck2 scores better, ck3 (newest) the same as the deployed one: ck3 is deployed.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<60)), file: ck(2), step: 2)
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<80)), file: ck(3), step: 3)
        var (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "promote", r.reason)
        XCTAssertEqual(r.winner?.checkpoint, "main/\(ck(3))")
        XCTAssertEqual(r.gate, "noninferior")
        XCTAssertTrue(r.reason.contains("as good"), r.reason)
        XCTAssertNotNil(r.oldChange)
        try s.commit(r)
        // A slightly worse newest one (2 more wrong of 400) is within the margin.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<82)), file: ck(4), step: 4)
        (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "promote", r.reason)
        XCTAssertLessThan(r.gain!, 0)
        try s.commit(r)
        // 6 more wrong of 400 net (beyond the margin; 6 better, 12 worse), but the interval includes 0: promoted.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(6..<94)), file: ck(5), step: 5)
        (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "promote", r.reason)
        XCTAssertLessThan(r.ci![0], 0)
        XCTAssertTrue(r.reason.contains("includes 0"), r.reason)
    }

    func testNoninferiorKeepsASignificantlyWorseOneAndSaysWhenTheDeployedIsStale() throws {
        let (root, hash) = try Fixture.root("noninf-worse")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        var s = selector(root, gate: .noninferior)
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<40)), file: ck(1), step: 1,
                           created: Clock.iso(Clock.now() - 10 * 86_400))
        try deploy(s, ck(1))
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<100)), file: ck(2), step: 2)
        var (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "keep")
        XCTAssertTrue(r.reason.contains("worse"), r.reason)
        XCTAssertTrue(r.reason.contains("past max-age"), r.reason)
        XCTAssertEqual(r.deployedAgeDays!, 10, accuracy: 0.01)
        // Forgetting alone: with a wide margin, the old slice's large significant loss blocks.
        s.config.margin = 0.5
        (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "keep")
        XCTAssertTrue(r.reason.contains("forgetting"), r.reason)
        // A loss on the old slice within --old-tolerance does not block.
        s.config.oldTolerance = 0.2
        (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "promote", r.reason)
        XCTAssertEqual(r.oldChange!, -0.15, accuracy: 1e-12)
    }

    /// Deploys `file` through a manual deploy decision.
    /// Several runs (a population, issue 16) checkpoint at about the same time: the gate
    /// deploys the best of the runs' newest checkpoints (not whichever run wrote last), and
    /// never a checkpoint older than the deployed one.
    func testNoninferiorAcrossRunsTakesTheBestNewestAndNeverGoesBack() throws {
        let (root, hash) = try Fixture.root("noninf-runs")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root, gate: .noninferior)
        let t = Clock.now() - 3_600
        func result(_ run: String, _ i: Int, wrong: Int, at: Double) throws {
            try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<wrong)),
                               run: run, file: ck(i), step: i, created: Clock.iso(at))
        }
        try result("p1", 1, wrong: 80, at: t)
        try deploy(s, ck(1), run: "p1")
        // Round 2: p1 writes at t+60 (good), p2 at t+61 (worse, but within the margin of the deployed).
        try result("p1", 2, wrong: 40, at: t + 60)
        try result("p2", 2, wrong: 82, at: t + 61)
        var (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "promote", r.reason)
        XCTAssertEqual(r.winner?.checkpoint, "p1/\(ck(2))", "the best of the runs' newest, not the last written")
        try s.commit(r)
        // A p3 checkpoint written before the deployed one (t+30 < t+60) is not a candidate at
        // all, however good.
        try result("p3", 3, wrong: 10, at: t + 30)
        (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertNotEqual(r.winner?.checkpoint, "p3/\(ck(3))", r.reason)
        XCTAssertFalse((r.candidates ?? []).contains { $0.checkpoint == "p3/\(ck(3))" }, "\(r.candidates ?? [])")
    }

    func deploy(_ s: Selector, _ file: String, run: String = "main") throws {
        try s.commit(try s.deploy(s.root.path + "/" + EvalNames.relativeCheckpointPath(run: run, file: file)))
    }

    func testFirstDeployAndClearlyBetter() throws {
        let (root, hash) = try Fixture.root("better")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root)
        // Nothing deployed: the best candidate is promoted.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<120)),
                           file: ck(1), step: 1)
        let (r1, st1) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r1.decision, "promote"); XCTAssertEqual(st1, .ok)
        try s.commit(r1)
        XCTAssertEqual(s.currentDeployed(), "runs/main/checkpoints/\(ck(1))")
        // 30% wrong -> 10% wrong: promoted, interval above zero.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<40)),
                           file: ck(2), step: 2)
        let (r2, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r2.decision, "promote", r2.reason)
        XCTAssertEqual(r2.gain!, 0.2, accuracy: 1e-12)
        XCTAssertGreaterThan(r2.ci![0], 0)
        XCTAssertEqual(r2.previous, "main/\(ck(1))")
        try s.commit(r2)
        XCTAssertEqual(s.currentDeployed(), "runs/main/checkpoints/\(ck(2))")
        let lines = try History.read(root.selections)
        XCTAssertEqual(lines.map(\.decision), ["promote", "promote"])
        // Only the deployed one is left in the window: nothing to do.
        try FileIO.removeDurably(root.path + "/runs/main/checkpoints/" + ck(1))
        XCTAssertNil(try s.select(since: 86_400))
    }

    func testNotBetterTieAndUncertain() throws {
        let (root, hash) = try Fixture.root("tie")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root)
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<80)),
                           file: ck(1), step: 1)
        try deploy(s, ck(1))
        // Same outcomes: a tie keeps the deployed one.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<80)),
                           file: ck(2), step: 2)
        var (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "keep")
        XCTAssertEqual(r.reason, "tie")
        XCTAssertEqual(r.deployed, "main/\(ck(1))")
        // One example better out of 400: below --min-gain.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<79)),
                           file: ck(3), step: 3)
        (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "keep")
        XCTAssertTrue(r.reason.contains("below min-gain"), r.reason)
        XCTAssertEqual(r.winner?.checkpoint, "main/\(ck(3))")
        // Worse: kept.
        try FileIO.removeDurably(root.path + "/runs/main/checkpoints/" + ck(2))
        try FileIO.removeDurably(root.path + "/runs/main/checkpoints/" + ck(3))
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<100)),
                           file: ck(4), step: 4)
        (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "keep")
        XCTAssertLessThan(r.gain!, 0)
        try s.commit(r)
        XCTAssertEqual(s.currentDeployed(), "runs/main/checkpoints/\(ck(1))")
    }

    func testUncertainGainIsKept() throws {
        let (root, hash) = try Fixture.root("ci", n: 40)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let t = Array(truths.prefix(40))
        let s = selector(root)
        // Deployed wrong on 0..<10; candidate wrong on 8..<16 plus right on 0..<8:
        // 10 vs 8 wrong, gain 0.05, but only 14 discordant examples in 40.
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(t, wrong: Set(0..<10)), file: ck(1), step: 1)
        try deploy(s, ck(1))
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(t, wrong: Set(8..<16)), file: ck(2), step: 2)
        let (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.gain!, 0.05, accuracy: 1e-12)
        XCTAssertEqual(r.decision, "keep", r.reason)
        XCTAssertLessThanOrEqual(r.ci![0], 0)
        XCTAssertTrue(r.reason.contains("interval"), r.reason)
        // The decision is reproducible: same inputs, same interval.
        let (again, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(again.ci, r.ci)
    }

    func testRegressionOnOneLabelBlocks() throws {
        let (root, hash) = try Fixture.root("reg")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root)
        // Labels a (200), b (100), c (100). Deployed: 80 a's predicted as c, b and c perfect
        // (accuracy .80). Candidate: a perfect, 20 b's predicted as c (accuracy .95); b's
        // F1 falls from 1 to .889 (P 1, R .8), beyond the .02 tolerance.
        let t3: [UInt32] = (0..<400).map { $0 % 4 < 2 ? 0 : ($0 % 4 == 2 ? 1 : 2) }
        let labels = ["a", "b", "c"]
        let aIdx = (0..<400).filter { t3[$0] == 0 }, bIdx = (0..<400).filter { t3[$0] == 1 }
        try Fixture.result(root, evalset: hash, labels: labels, outcomes: Fixture.outcomes(t3, wrong: Set(aIdx.prefix(80)), other: { _ in 2 }),
                           file: ck(1), step: 1)
        try deploy(s, ck(1))
        try Fixture.result(root, evalset: hash, labels: labels, outcomes: Fixture.outcomes(t3, wrong: Set(bIdx.prefix(20)), other: { _ in 2 }),
                           file: ck(2), step: 2)
        let (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.gain!, 0.15, accuracy: 1e-12)
        XCTAssertGreaterThan(r.ci![0], 0)
        XCTAssertEqual(r.decision, "keep", r.reason)
        XCTAssertEqual(r.regressions?.map(\.label), ["b"])
        XCTAssertEqual(r.regressions![0].deployed, 1, accuracy: 1e-12)
        XCTAssertEqual(r.regressions![0].candidate, 2 * 0.8 / 1.8, accuracy: 1e-12)
        XCTAssertTrue(r.reason.contains("F1 regression"), r.reason)
        // With a tolerance larger than the loss it is promoted.
        var loose = s
        loose.config.tolerance = 0.2
        XCTAssertEqual(try XCTUnwrap(try loose.select(since: 86_400)).0.decision, "promote")
        // A label below --label-min-support is not checked.
        var small = s
        small.config.labelMinSupport = 101
        XCTAssertEqual(try XCTUnwrap(try small.select(since: 86_400)).0.decision, "promote")
    }

    func testCorruptWinnerIsRefusedAndNextBestChosen() throws {
        let (root, hash) = try Fixture.root("corrupt")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root, corrupt: [ck(2)])
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<100)), file: ck(1), step: 1)
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<10)), file: ck(2), step: 2)
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<50)), file: ck(3), step: 3)
        let (r, st) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(st, .corrupt)
        XCTAssertEqual(r.decision, "promote")
        XCTAssertEqual(r.winner?.checkpoint, "main/\(ck(3))")
        XCTAssertEqual(r.rejected?.first?["checkpoint"], "main/\(ck(2))")
        // Every candidate corrupt: nothing moves.
        let all = selector(root, corrupt: [ck(1), ck(2), ck(3)])
        let (r2, st2) = try XCTUnwrap(try all.select(since: 86_400))
        XCTAssertEqual(st2, .corrupt)
        XCTAssertEqual(r2.decision, "keep")
        XCTAssertNil(r2.deployedPath)
    }

    func testDifferentEvalSetsAreNotCompared() throws {
        let (root, hash) = try Fixture.root("evalset")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root)
        let other = String(repeating: "f", count: 64)
        let dep = try Fixture.result(root, evalset: other, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: Set(0..<100)),
                                     file: ck(1), step: 1)
        try deploy(s, ck(1))
        let cand = try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: []),
                                      file: ck(2), step: 2)
        XCTAssertThrowsError(try Selection.compare(candidate: cand, deployed: dep, config: s.config, examples: s.examples)) { e in
            XCTAssertTrue("\(e)".contains("different eval sets"), "\(e)")
        }
        // The tool keeps the deployed one and says why.
        let (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        XCTAssertEqual(r.decision, "keep")
        XCTAssertTrue(r.reason.contains("has no result on eval set"), r.reason)
        // Per-example files of different sets are refused by the bootstrap too.
        let a = ExampleFile(evalset: hash, labels: ["a"], outcomes: [], slices: [])
        let b = ExampleFile(evalset: other, labels: ["a"], outcomes: [], slices: [])
        XCTAssertThrowsError(try Selection.bootstrap(a, b, slice: "all", metric: "accuracy", rounds: 10, seed: 1))
    }

    func testWindowExcludesOldCheckpoints() throws {
        let (root, hash) = try Fixture.root("window")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root)
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: []), file: ck(1), step: 1,
                           created: Clock.iso(Clock.now() - 3 * 86_400))
        XCTAssertNil(try s.select(since: 86_400))
        XCTAssertNotNil(try s.select(since: 4 * 86_400))
    }

    func testDryRunChangesNothing() throws {
        let (root, hash) = try Fixture.root("dry")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        var s = selector(root)
        s.dryRun = true
        var printed: [String] = []
        s.output = { printed.append($0) }
        try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: []), file: ck(1), step: 1)
        let (r, _) = try XCTUnwrap(try s.select(since: 86_400))
        try s.commit(r)
        XCTAssertEqual(printed.count, 1)
        XCTAssertTrue(printed[0].contains("\"dry_run\":true"), printed[0])
        XCTAssertNil(s.currentDeployed())
        XCTAssertFalse(FileIO.exists(root.selections))
    }

    func testRollbackWalksTheDeploymentHistory() throws {
        let (root, hash) = try Fixture.root("rollback")
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let s = selector(root)
        for i in 1...3 {
            try Fixture.result(root, evalset: hash, labels: ["a", "b"], outcomes: Fixture.outcomes(truths, wrong: []), file: ck(i), step: i)
            try deploy(s, ck(i))
        }
        XCTAssertEqual(s.currentDeployed(), "runs/main/checkpoints/\(ck(3))")
        try s.commit(try s.rollback())
        XCTAssertEqual(s.currentDeployed(), "runs/main/checkpoints/\(ck(2))")
        try s.commit(try s.rollback())
        XCTAssertEqual(s.currentDeployed(), "runs/main/checkpoints/\(ck(1))")
        XCTAssertThrowsError(try s.rollback()) { e in XCTAssertEqual((e as? PPError)?.status, .nothingToDo) }
        // A corrupt previous checkpoint is refused and nothing moves.
        try deploy(s, ck(3))
        let bad = selector(root, corrupt: [ck(1)])
        XCTAssertThrowsError(try bad.rollback()) { e in XCTAssertEqual((e as? PPError)?.status, .corrupt) }
        XCTAssertEqual(s.currentDeployed(), "runs/main/checkpoints/\(ck(3))")
        XCTAssertEqual(try History.read(root.selections).map(\.decision), ["deploy", "deploy", "deploy", "rollback", "rollback", "deploy"])
    }

    func testRetentionNeverDeletesTheDeployedChain() throws {
        let dir = try TestSupport.tempDir("retention")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        var s = selector(root)
        // Five old checkpoints in run main (2020), two in run b; ck 1 and 2 were deployed.
        let old = (1...5).map { "ckpt-2020010\($0)T000000Z-00000000000\($0).ppc" }
        for f in old { try FileIO.makeDirectories(root.checkpoints(run: "main")); try FileIO.publish("x", to: root.checkpoints(run: "main") + "/" + f) }
        try FileIO.makeDirectories(root.checkpoints(run: "b"))
        for f in old.prefix(2) { try FileIO.publish("x", to: root.checkpoints(run: "b") + "/" + f) }
        try deploy(s, old[0])
        try deploy(s, old[1])
        // Dry run: reports, deletes nothing.
        s.dryRun = true
        var printed: [String] = []
        s.output = { printed.append($0) }
        let rec = try XCTUnwrap(try s.retention(keepDays: 30))
        XCTAssertEqual(rec.deleted, ["runs/b/checkpoints/\(old[0])", "runs/main/checkpoints/\(old[2])", "runs/main/checkpoints/\(old[3])"])
        try s.commit(rec)
        XCTAssertEqual(try FileIO.list(root.checkpoints(run: "main")).count, 5)
        s.dryRun = false
        try s.commit(rec)
        XCTAssertEqual(try FileIO.list(root.checkpoints(run: "main")), [old[0], old[1], old[4]])
        XCTAssertEqual(try FileIO.list(root.checkpoints(run: "b")), [old[1]])
        XCTAssertNil(try s.retention(keepDays: 30))
        // Recent checkpoints are kept whatever they are.
        XCTAssertNil(try Selector(root: root, verify: { _ in }, now: Clock.parseISO("2020-01-02T00:00:00Z").map(Double.init)!)
            .retention(keepDays: 30))
    }

    func testRetentionByteBudgetDeletesOldestNeverDeployedFirst() throws {
        let dir = try TestSupport.tempDir("retention-bytes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        let s = selector(root)
        // Six checkpoints of 1000 bytes each in run main; ck 2 was deployed.
        let files = (1...6).map { "ckpt-2026010\($0)T000000Z-00000000000\($0).ppc" }
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        for f in files { try FileIO.publish(String(repeating: "x", count: 1000), to: root.checkpoints(run: "main") + "/" + f) }
        try deploy(s, files[1])
        XCTAssertNil(try s.retention(keepDays: nil, keepBytes: 6000))
        // A budget of 3500 bytes: the oldest never-deployed go (1, 3, 4), never 2 (deployed)
        // nor 6 (the newest).
        let rec = try XCTUnwrap(try s.retention(keepDays: nil, keepBytes: 3500))
        XCTAssertEqual(rec.deleted, [1, 3, 4].map { "runs/main/checkpoints/\(files[$0 - 1])" })
        XCTAssertTrue(rec.reason.contains("budget"), rec.reason)
        try s.commit(rec)   // stand-in files have no head: deleted, and said so
        XCTAssertEqual(try FileIO.list(root.checkpoints(run: "main")), [files[1], files[4], files[5]])
        // Over a budget too small for the rest, only what may go goes: not the deployed, not the newest.
        XCTAssertEqual(try XCTUnwrap(try s.retention(keepDays: nil, keepBytes: 100)).deleted, ["runs/main/checkpoints/\(files[4])"])
        XCTAssertEqual(parseBytes("20G"), 20 << 30)
        XCTAssertEqual(parseBytes("1500"), 1500)
        XCTAssertNil(parseBytes("20X"))
    }

    /// A gate that deploys almost daily leaves few never-deployed checkpoints: past the budget,
    /// retention also deletes deployments older than the last seven, oldest first, never the
    /// current one nor the newest (a 90-day replay outgrew its budget keeping every winner).
    func testRetentionBudgetDeletesOldDeploymentsWhenNeeded() throws {
        let dir = try TestSupport.tempDir("retention-deployed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        let s = selector(root)
        let files = (10...21).map { "ckpt-202601\($0)T000000Z-0000000000\($0).ppc" }
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        for f in files { try FileIO.publish(String(repeating: "x", count: 1000), to: root.checkpoints(run: "main") + "/" + f) }
        for f in files.dropLast() { try deploy(s, f) }   // 11 deployments, the last is current
        // Room for every file: nothing goes.
        XCTAssertNil(try s.retention(keepDays: nil, keepBytes: 12_000))
        // keep-days alone never deletes a deployment.
        XCTAssertNil(try s.retention(keepDays: 0, keepBytes: nil))
        // A budget of 9 files: the three oldest deployments go; the last seven, the current
        // one and the newest stay.
        let rec = try XCTUnwrap(try s.retention(keepDays: nil, keepBytes: 9000))
        XCTAssertEqual(rec.deleted, files[0..<3].map { "runs/main/checkpoints/\($0)" })
        XCTAssertTrue(rec.reason.contains("deployments older than the last 7"), rec.reason)
        // However small the budget, the last seven deployments, the current and the newest stay.
        XCTAssertEqual(try XCTUnwrap(try s.retention(keepDays: nil, keepBytes: 1)).deleted?.count, 3)
    }

    /// Retention of evals/: the per-example files of results whose checkpoint is gone are
    /// deleted (the JSON stays as history); those of existing checkpoints, names that are not
    /// a result's, and everything in a dry run are left alone.
    func testPruneExampleFilesOfGoneCheckpoints() throws {
        let dir = try TestSupport.tempDir("prune-pex")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        try FileIO.makeDirectories(root.evals)
        try FileIO.publish("kept", to: root.checkpoints(run: "main") + "/" + ck(1))
        let kept = EvalNames.base(checkpointFile: ck(1), run: "main", evalset: String(repeating: "a", count: 64))
        let gone = EvalNames.base(checkpointFile: ck(2), run: "main", evalset: String(repeating: "b", count: 64))
        // pp-eval's score caches: "<ckpt sans .ppc>--<RUN>.psc", one per checkpoint.
        let keptCache = String(ck(1).dropLast(4)) + "--main.psc", goneCache = String(ck(2).dropLast(4)) + "--main.psc"
        for f in [kept + ".pex", kept + ".json", gone + ".pex", gone + ".json", "notes.pex", keptCache, goneCache, "x--y--z.psc"] {
            try FileIO.publish("x", to: root.evals + "/" + f)
        }
        var s = selector(root)
        s.dryRun = true
        XCTAssertEqual(try s.pruneExampleFiles(), [])
        XCTAssertEqual(try FileIO.list(root.evals).count, 8)
        s.dryRun = false
        XCTAssertEqual(try s.pruneExampleFiles().sorted(), [gone + ".pex", goneCache].sorted())
        XCTAssertEqual(try FileIO.list(root.evals), [kept + ".json", kept + ".pex", gone + ".json", "notes.pex", keptCache, "x--y--z.psc"].sorted())
    }

    func testDeployedLinkNeverMissingDuringSwaps() throws {
        let dir = try TestSupport.tempDir("swap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        let s = selector(root)
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        for i in 1...2 { try FileIO.publish("checkpoint \(i)", to: root.checkpoints(run: "main") + "/" + ck(i)) }
        try deploy(s, ck(1))
        let box = ReaderBox()
        let path = root.deployed
        let reader = Thread {
            var buf = [UInt8](repeating: 0, count: 64)
            while !box.stopped {
                // open(2) through the link: must always reach one of the two files.
                let fd = open(path, O_RDONLY)
                if fd < 0 { box.count(miss: true, wrong: false); continue }
                let n = read(fd, &buf, buf.count)
                close(fd)
                let text = String(decoding: buf[0..<max(n, 0)], as: UTF8.self)
                box.count(miss: false, wrong: text != "checkpoint 1" && text != "checkpoint 2")
            }
            box.finish()
        }
        reader.start()
        for i in 0..<200 { try deploy(s, ck(i % 2 == 0 ? 2 : 1)) }
        box.stop()
        XCTAssertEqual(box.misses, 0)
        XCTAssertEqual(box.wrong, 0)
        XCTAssertGreaterThan(box.reads, 0)
        XCTAssertEqual(try History.read(root.selections).count, 201)
    }
}

/// Counters shared with the reader thread, behind a lock.
final class ReaderBox: @unchecked Sendable {
    private let lock = NSCondition()
    private var stopFlag = false, done = false
    private(set) var reads = 0, misses = 0, wrong = 0
    var stopped: Bool { lock.lock(); defer { lock.unlock() }; return stopFlag }
    func count(miss: Bool, wrong w: Bool) {
        lock.lock(); defer { lock.unlock() }
        reads += 1; if miss { misses += 1 }; if w { wrong += 1 }
    }
    func finish() { lock.lock(); done = true; lock.broadcast(); lock.unlock() }
    /// Stops the reader and waits until it has finished.
    func stop() {
        lock.lock(); stopFlag = true
        while !done { lock.wait() }
        lock.unlock()
    }
}
