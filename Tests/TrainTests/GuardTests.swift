// The guard at the door (issue 7, layer 2) and `pp-train rewind`, run as a CLI on temporary
// state folders: a label-shuffled or NaN-inducing shard is stopped, marked suspect and left
// out, the good shards after it are trained, the revert is exact (bit-identical to a run that
// never had the shard), suspects survive a restart, and a rewound run that continues is
// bit-identical to a run that never saw the bad shard (--threads 1). Issue 14: a loss spike
// from drift (new labels, new words) is trained on, not stopped.

import Foundation
@testable import pp_train
import Shared
import TextModel
import TestSupport
import XCTest

final class GuardTests: XCTestCase {
    let labels = ["a", "b", "c", "d"]

    func once(_ root: String, _ extra: [String] = [], env: [String: String] = [:]) throws -> TestSupport.Result {
        try TestSupport.run("pp-train", ["--root", root, "--once", "--batch", "32"] + Fix.tiny + extra, env: env)
    }

    /// Clean shard k: texts whose words say their label.
    func clean(_ k: Int, _ n: Int = 200) -> [(String, [String])] { Fix.examples(n, labels: labels, seed: UInt64(k)) }

    /// The same kind of texts with their labels shuffled (a broken export).
    func shuffled(_ k: Int, _ n: Int = 200) -> [(String, [String])] {
        let ex = clean(k, n)
        var r = Fix.Rng(s: 777)
        var ls = ex.map(\.0)
        for i in stride(from: ls.count - 1, to: 0, by: -1) { ls.swapAt(i, r.below(i + 1)) }
        return zip(ls, ex).map { ($0, $1.1) }
    }

    func suspects(_ root: String, run: String = "main") throws -> SuspectList {
        try SuspectList.load(root: Root(root), run: run)
    }

    /// A checkpoint's bytes after the meta (vocabulary, dense layers, input rows, optimiser
    /// and trainer state, end magic): equal bytes mean the same model, bit for bit.
    static func sections(_ path: String) throws -> [UInt8] {
        let raw = try Zstd.decompress(try FileIO.readAll(path))
        let m = raw.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self))) }
        XCTAssertGreaterThan(raw.count, 16 + m)
        return Array(raw[(16 + m)...])
    }

    /// Same model, vocabulary, labels, optimiser state and data cursor.
    func assertSameState(_ x: String, _ y: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try Checkpoint.readHead(path: x, cursor: true).meta, b = try Checkpoint.readHead(path: y, cursor: true).meta
        XCTAssertEqual(a.step, b.step, "step", file: file, line: line)
        XCTAssertEqual(a.tokens, b.tokens, "tokens", file: file, line: line)
        XCTAssertEqual(a.labels, b.labels, "labels", file: file, line: line)
        XCTAssertEqual(a.vocabularySize, b.vocabularySize, "vocabulary size", file: file, line: line)
        XCTAssertEqual(a.cursor, b.cursor, "data cursor", file: file, line: line)
        let sa = try GuardTests.sections(x), sb = try GuardTests.sections(y)
        XCTAssertEqual(sa.count, sb.count, "section bytes", file: file, line: line)
        XCTAssertTrue(sa == sb, "the weights, vocabulary or optimiser state differ", file: file, line: line)
    }

    // MARK: the guard

    func testLabelShuffledShardIsStoppedAndTheRevertIsExact() throws {
        let root = try Fix.newRoot("guard"), ref = try Fix.newRoot("guardref")
        defer { for r in [root, ref] { try? FileManager.default.removeItem(atPath: r) } }
        // Ten clean shards, a label-shuffled one, two clean ones; the reference never has the bad one.
        let bad = 11
        for k in 1...13 where k != bad {
            try Fix.shard(root, Fix.shardName(k), clean(k))
            try Fix.shard(ref, Fix.shardName(k), clean(k))
        }
        try Fix.shard(root, Fix.shardName(bad), shuffled(bad))

        let r = try once(root)   // default policy: no policy.json
        XCTAssertEqual(r.status, 1, "a stopped shard makes --once exit 1: " + r.stderr)
        XCTAssertEqual(r.stdoutLines.count, 1, "the checkpoint is still written: \(r.stdout)")
        XCTAssertTrue(r.stderr.contains("guard: shard stopped and marked suspect"), r.stderr)
        XCTAssertTrue(r.stderr.contains("shard=\(Fix.shardName(bad))"), r.stderr)
        let list = try suspects(root)
        XCTAssertEqual(list.shards.map(\.name), [Fix.shardName(bad)])
        let mark = try XCTUnwrap(list.shards.first)
        // Issue 14: damage, not a spike alone: the labels no longer follow from the texts.
        XCTAssertTrue(mark.reason.hasPrefix("labels do not follow from the texts: label signal "), mark.reason)
        XCTAssertEqual(mark.by, "pp-train guard")
        XCTAssertEqual(mark.sha256?.count, 64)
        let loss = try XCTUnwrap(mark.loss), median = try XCTUnwrap(mark.reference)
        XCTAssertGreaterThan(loss, 2 * median, "a spike far outside the range")

        let ck = try Checkpoint.readHead(path: r.stdoutLines[0], cursor: true).meta
        XCTAssertEqual(ck.lineage.map(\.name), (1...13).filter { $0 != bad }.map { Fix.shardName($0) },
                       "every good shard trained, also those after the bad one")
        XCTAssertFalse(ck.cursor.shards.contains { $0.shard.name == Fix.shardName(bad) })
        let g = try XCTUnwrap(ck.guardState)
        XCTAssertNil(g.judging)
        XCTAssertEqual(g.recent.map(\.shard), (1...13).filter { $0 != bad }.map { Fix.shardName($0) })

        let st = try XCTUnwrap(Fix.status(root))
        XCTAssertEqual(st["guard_trips"] as? Int, 1)
        XCTAssertEqual(st["suspects"] as? Int, 1)
        XCTAssertEqual((st["last_guard_trip"] as? [String: Any])?["name"] as? String, Fix.shardName(bad))

        // metrics/pp-train-main.prom: strictly valid, and the same numbers.
        let prom = String(decoding: try FileIO.readAll(root + "/metrics/pp-train-main.prom"), as: UTF8.self)
        let samples = try PromTextParser.parse(prom)
        func value(_ name: String, _ extra: [String: String] = [:]) -> Double? {
            samples.first { $0.name == name && $0.labels == ["run": "main"].merging(extra) { a, _ in a } }?.value
        }
        XCTAssertEqual(value("perpetuum_train_suspect_shards"), 1, prom)
        XCTAssertEqual(value("perpetuum_train_guard_trips_total"), 1, prom)
        XCTAssertEqual(value("perpetuum_train_step"), Double(ck.step), prom)
        XCTAssertEqual(value("perpetuum_train_lr"), Knobs.defaultLR, prom)
        XCTAssertEqual(value("perpetuum_train_dropout"), 0, prom)
        XCTAssertEqual(value("perpetuum_train_paused"), 0, prom)
        XCTAssertEqual(value("perpetuum_train_labels"), 4, prom)
        XCTAssertEqual(value("perpetuum_train_vocabulary_size"), Double(ck.vocabularySize), prom)
        XCTAssertEqual(value("perpetuum_train_state", ["state": "stopped"]), 1, prom)
        XCTAssertEqual(value("perpetuum_train_state", ["state": "training"]), 0, prom)
        XCTAssertEqual(value("perpetuum_train_up"), 0, prom)
        XCTAssertNotNil(value("perpetuum_train_loss"), prom)
        XCTAssertNotNil(value("perpetuum_train_examples_per_second"), prom)
        XCTAssertNotNil(value("perpetuum_train_guard_threshold"), prom)
        let written = try XCTUnwrap(value("perpetuum_train_last_checkpoint_timestamp_seconds"), prom)
        XCTAssertLessThan(abs(written - Date().timeIntervalSince1970), 120)
        XCTAssertNotNil(value("perpetuum_train_last_checkpoint_age_seconds"), prom)

        // Exact: the same state as a run that never had the bad shard.
        let rr = try once(ref)
        XCTAssertEqual(rr.status, 0, rr.stderr)
        try assertSameState(r.stdoutLines[0], rr.stdoutLines[0])

        // Suspects survive a restart: a new shard comes, the bad one is still left out.
        try Fix.shard(root, Fix.shardName(14), clean(14))
        let r2 = try once(root)
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let ck2 = try Checkpoint.readHead(path: r2.stdoutLines[0], cursor: true).meta
        XCTAssertFalse(ck2.cursor.shards.contains { $0.shard.name == Fix.shardName(bad) })
        XCTAssertFalse(ck2.lineage.contains { $0.name == Fix.shardName(bad) }, "never replayed")
        XCTAssertEqual(ck2.lineage.filter { $0.name == Fix.shardName(14) }.count, 1)
        XCTAssertEqual(try suspects(root).shards.count, 1)
    }

    func testRunningTrainerStopsABadShardAndGoesOn() throws {
        let root = try Fix.newRoot("guardd")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for k in 1...10 { try Fix.shard(root, Fix.shardName(k), clean(k)) }
        let d = try Daemon(["--root", root, "--rescan", "0.3", "--checkpoint-every", "300ex", "--max-passes", "2", "--batch", "32"] + Fix.tiny, tag: "guardd")
        XCTAssertTrue(Fix.waitFor(60, "idle after the clean shards") { Fix.status(root)?["state"] as? String == "idle" }, d.stderr)
        // A label-shuffled shard and a clean one arrive while it runs.
        try Fix.shard(root, Fix.shardName(11), shuffled(11))
        try Fix.shard(root, Fix.shardName(12), clean(12))
        XCTAssertTrue(Fix.waitFor(60, "the guard to stop shard 11, then idle again") {
            let st = Fix.status(root)
            return st?["guard_trips"] as? Int == 1 && st?["state"] as? String == "idle" && st?["pending_shards"] as? Int == 0
        }, d.stderr)
        d.signal(SIGTERM)
        XCTAssertEqual(d.wait(), 0, d.stderr)
        XCTAssertEqual(try suspects(root).shards.map(\.name), [Fix.shardName(11)])
        XCTAssertTrue(d.stderr.contains("reverted: the good data since then is trained again"), d.stderr)
        // No checkpoint ever held the bad shard; the newest has shard 12.
        let cks = Fix.checkpoints(root)
        XCTAssertGreaterThan(cks.count, 2)
        for p in cks {
            let lin = try Lineage.of(checkpoint: p, root: Root(root))
            XCTAssertFalse(lin.shards.contains { $0.name == Fix.shardName(11) }, "\(p) trained on the bad shard")
        }
        let newest = try Checkpoint.readHead(path: try XCTUnwrap(cks.last), cursor: true).meta
        XCTAssertEqual(newest.cursor.shards.first { $0.shard.name == Fix.shardName(12) }?.passes, 2)
        XCTAssertNil(newest.cursor.shards.first { $0.shard.name == Fix.shardName(11) })

        // After a restart the suspect stays out (and the metrics say so).
        let d2 = try Daemon(["--root", root, "--rescan", "0.3", "--max-passes", "2", "--batch", "32"] + Fix.tiny, tag: "guardd2")
        // status.json and the metrics file are two files written one after the other: wait
        // for both to come from the restarted trainer (the old one's last metrics say "down").
        func metrics() -> String { (try? FileIO.readAll(root + "/metrics/pp-train-main.prom")).map { String(decoding: $0, as: UTF8.self) } ?? "" }
        XCTAssertTrue(Fix.waitFor(30, "the restarted trainer") {
            Fix.status(root)?["pid"] as? Int == Int(d2.pid) && Fix.status(root)?["state"] as? String == "idle"
                && (try? PromTextParser.parse(metrics()))?.first { $0.name == "perpetuum_train_up" }?.value == 1
        }, d2.stderr)
        let prom = metrics()
        let samples = try PromTextParser.parse(prom)
        XCTAssertEqual(samples.first { $0.name == "perpetuum_train_suspect_shards" }?.value, 1, prom)
        XCTAssertEqual(samples.first { $0.name == "perpetuum_train_shards" }?.value, 11, prom)
        XCTAssertEqual(samples.first { $0.name == "perpetuum_train_up" }?.value, 1, prom)
        d2.signal(SIGTERM)
        XCTAssertEqual(d2.wait(), 0, d2.stderr)
    }

    func testCleanShardsNeverTrip() throws {
        let root = try Fix.newRoot("clean")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Drifting clean data: new labels and new words keep arriving.
        for k in 1...12 {
            let ls = Array(["a", "b", "c", "d", "e", "f", "g", "h"].prefix(3 + k / 3))
            try Fix.shard(root, Fix.shardName(k), Fix.examples(150, labels: ls, seed: UInt64(k)))
        }
        let r = try once(root)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileIO.exists(root + "/runs/main/suspects.json"))
        XCTAssertTrue(r.stderr.contains("guard: shard accepted"), r.stderr)
    }

    /// Issue 14: a shard of new labels and new words (a new sub-project) spikes the loss; that
    /// is change, so it is recorded and trained on, never marked suspect. The old rule
    /// (guard_spike_alone) stops the same shard, which shows the spike is real.
    func testALossSpikeFromDriftIsTrainedOnNotStopped() throws {
        let root = try Fix.newRoot("drift"), old = try Fix.newRoot("driftold")
        defer { for r in [root, old] { try? FileManager.default.removeItem(atPath: r) } }
        for r in [root, old] {
            for k in 1...10 { try Fix.shard(r, Fix.shardName(k), clean(k)) }
            try Fix.shard(r, Fix.shardName(11), Fix.examples(200, labels: ["w", "x", "y", "z"], seed: 11))
            try Fix.shard(r, Fix.shardName(12), clean(12))
        }
        let r = try once(root)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("guard: loss spike on new data, trained on"), r.stderr)
        XCTAssertTrue(r.stderr.contains("shard=\(Fix.shardName(11))"), r.stderr)
        XCTAssertEqual(try suspects(root).shards, [])
        // All twelve shards in one first pass: no checkpoint before shard 11, so its probation
        // has nothing fair to compare with (not a blank model, which would confirm anything).
        XCTAssertTrue(r.stderr.contains("guard: probation cannot be judged, the shard stays: no checkpoint before it"), r.stderr)
        XCTAssertFalse(r.stderr.contains("guard: probation confirmed"), r.stderr)
        let ck = try Checkpoint.readHead(path: r.stdoutLines[0], cursor: true).meta
        XCTAssertEqual(ck.lineage.map(\.name), (1...12).map { Fix.shardName($0) })
        XCTAssertEqual(Fix.status(root)?["guard_spikes"] as? Int, 1)
        // Clean shards after a first one have a label signal well below 1.
        let sig = try XCTUnwrap(ck.guardState?.recent.last?.signal)
        XCTAssertLessThan(sig, 0.5)

        try FileIO.publish(#"{"train": {"guard_spike_alone": true}}"#, to: old + "/policy.json")
        let o = try once(old)
        XCTAssertEqual(o.status, 1, o.stderr)
        XCTAssertEqual(try suspects(old).shards.map(\.name), [Fix.shardName(11)])
        XCTAssertTrue(try suspects(old).shards[0].reason.hasPrefix("loss spike: loss "))
    }

    // MARK: probation (issue 14, item 2)

    /// Two roots with `policy`, both trained on clean shards 1-10; `never` then also on clean
    /// 12-15 (`ref`: the run that never had shard 11). The test gives `undo` shard 11 and 12-15.
    func neverAndUndo(_ tag: String, policy: String) throws -> (never: String, undo: String, ref: TestSupport.Result) {
        let a = try Fix.newRoot(tag + "never"), b = try Fix.newRoot(tag + "undo")
        for r in [a, b] {
            try FileIO.publish(policy, to: r + "/policy.json")
            for k in 1...10 { try Fix.shard(r, Fix.shardName(k), clean(k)) }
            XCTAssertEqual(try once(r).status, 0)
        }
        for k in 12...15 { try Fix.shard(a, Fix.shardName(k), clean(k)) }
        let ref = try once(a)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        return (a, b, ref)
    }

    /// The signal is not measured (guard_signal_examples 0), so a label-shuffled shard is a
    /// spike without a damage verdict: it goes on probation, is trained on, and the clean
    /// shards that follow show that the model that learned it predicts them worse than the
    /// model before it: it is undone exactly (the run ends bit-identical to one that never
    /// had it) and marked suspect with the evidence.
    func testAShardOnProbationThatTheFollowingDataContradictsIsUndoneExactly() throws {
        let (a, b, ref) = try neverAndUndo("prob", policy: #"{"train": {"guard_signal_examples": 0, "guard_probation_examples": 60}}"#)
        defer { for r in [a, b] { try? FileManager.default.removeItem(atPath: r) } }

        try Fix.shard(b, Fix.shardName(11), shuffled(11))
        for k in 12...15 { try Fix.shard(b, Fix.shardName(k), clean(k)) }
        let r = try once(b)
        XCTAssertEqual(r.status, 1, "an undone shard makes --once exit 1, like a stopped one: " + r.stderr)
        XCTAssertTrue(r.stderr.contains("on probation"), r.stderr)
        let mark = try XCTUnwrap(try suspects(b).shards.first)
        XCTAssertEqual(mark.name, Fix.shardName(11))
        XCTAssertTrue(mark.reason.hasPrefix("probation: the model that learned it predicts the "), mark.reason)
        XCTAssertTrue(mark.reason.contains("following examples worse"), mark.reason)
        let st = try XCTUnwrap(Fix.status(b))
        XCTAssertEqual(st["probation_undone"] as? Int, 1)
        XCTAssertNil(st["probation"] as? String)
        let ck = try Checkpoint.readHead(path: r.stdoutLines[0], cursor: true).meta
        XCTAssertFalse(ck.lineage.contains { $0.name == Fix.shardName(11) })
        XCTAssertTrue(Set((12...15).map { Fix.shardName($0) }).isSubset(of: ck.lineage.map(\.name)), "the good shards since, trained again")
        XCTAssertNil(ck.guardState?.probation)
        try assertSameState(ref.stdoutLines[0], r.stdoutLines[0])
    }

    /// A one-label flood (90% of a shard's labels replaced by one label, the texts unchanged)
    /// trains its own loss down at once, so it may not spike; its label signal is near 1 (the
    /// labels do not follow from the texts). Without a spike that is doubt, not a verdict: the
    /// shard goes on probation, and the clean data after it undo it exactly (issue 14). Spikes
    /// are switched off here (guard_ratio and guard_margin far out of reach) so that the signal
    /// alone is what the guard sees; on these texts, whose words name their label, the 10% of
    /// labels left keep the flood's signal at 0.88, so its limit is 0.8 + 0.5 / sqrt(n).
    func testAOneLabelFloodWithoutASpikeGoesOnProbationAndIsUndone() throws {
        let (a, b, ref) = try neverAndUndo("flood", policy: #"{"train": {"guard_ratio": 1000, "guard_margin": 1000, "guard_signal_max": 0.8, "guard_probation_examples": 60}}"#)
        defer { for r in [a, b] { try? FileManager.default.removeItem(atPath: r) } }

        var r = Fix.Rng(s: 99)
        let flood = clean(11).map { ex in (r.below(10) == 0 ? ex.0 : "b", ex.1) }
        try Fix.shard(b, Fix.shardName(11), flood)
        for k in 12...15 { try Fix.shard(b, Fix.shardName(k), clean(k)) }
        let out = try once(b)
        XCTAssertEqual(out.status, 1, out.stderr)
        XCTAssertTrue(out.stderr.contains("guard: labels do not follow from the texts"), out.stderr)
        XCTAssertFalse(out.stderr.contains("guard: loss spike on new data"), out.stderr)
        let mark = try XCTUnwrap(try suspects(b).shards.first)
        XCTAssertEqual(mark.name, Fix.shardName(11))
        XCTAssertTrue(mark.reason.contains("its labels did not follow from its texts: label signal"), mark.reason)
        XCTAssertEqual(Fix.status(b)?["probation_undone"] as? Int, 1)
        try assertSameState(ref.stdoutLines[0], out.stdoutLines[0])
    }

    /// A drift shard (new labels, new words) spikes, goes on probation and stays on it across
    /// runs (checkpointed) until enough of the following data is scored; the drift goes on,
    /// the model that learned the shard predicts it better, and the shard is confirmed.
    func testAShardOnProbationThatTheFollowingDataAgreesWithIsConfirmed() throws {
        let root = try Fix.newRoot("probconfirm")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileIO.publish(#"{"train": {"guard_probation_examples": 60}}"#, to: root + "/policy.json")
        for k in 1...10 { try Fix.shard(root, Fix.shardName(k), clean(k)) }
        XCTAssertEqual(try once(root).status, 0)
        let sub = ["w", "x", "y", "z"]
        try Fix.shard(root, Fix.shardName(11), Fix.examples(200, labels: sub, seed: 11))
        try Fix.shard(root, Fix.shardName(12), Fix.examples(200, labels: labels + sub, seed: 12))
        let r1 = try once(root)
        XCTAssertEqual(r1.status, 0, r1.stderr)
        XCTAssertTrue(r1.stderr.contains("on probation"), r1.stderr)
        XCTAssertEqual(Fix.status(root)?["probation"] as? String, Fix.shardName(11))
        let p = try XCTUnwrap(try Checkpoint.readHead(path: r1.stdoutLines[0], cursor: true).meta.guardState?.probation)
        XCTAssertEqual(p.shard, Fix.shardName(11))
        XCTAssertGreaterThan(p.n, 0)
        XCTAssertLessThan(p.n, 60, "pending: not enough following examples yet")
        for k in 13...15 { try Fix.shard(root, Fix.shardName(k), Fix.examples(200, labels: labels + sub, seed: UInt64(k))) }
        let r2 = try once(root)
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertTrue(r2.stderr.contains("guard: probation confirmed"), r2.stderr)
        XCTAssertEqual(Fix.status(root)?["probation_confirmed"] as? Int, 1)
        XCTAssertEqual(try suspects(root).shards, [])
        let ck = try Checkpoint.readHead(path: r2.stdoutLines[0], cursor: true).meta
        XCTAssertNil(ck.guardState?.probation)
        XCTAssertTrue(Set((13...15).map { Fix.shardName($0) }).isSubset(of: ck.lineage.map(\.name)))
    }

    /// The revert point is unreadable when the following data arrives: nothing to compare
    /// with, so the shard stays (logged) and training goes on.
    func testAProbationThatCannotBeJudgedKeepsTheShardAndTrainingGoesOn() throws {
        let root = try Fix.newRoot("probbroken")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileIO.publish(#"{"train": {"guard_probation_examples": 60}}"#, to: root + "/policy.json")
        for k in 1...10 { try Fix.shard(root, Fix.shardName(k), clean(k)) }
        let r0 = try once(root)
        XCTAssertEqual(r0.status, 0)
        let sub = ["w", "x", "y", "z"]
        try Fix.shard(root, Fix.shardName(11), Fix.examples(200, labels: sub, seed: 11))
        try Fix.shard(root, Fix.shardName(12), Fix.examples(200, labels: labels + sub, seed: 12))
        XCTAssertEqual(try once(root).status, 0)
        XCTAssertEqual(Fix.status(root)?["probation"] as? String, Fix.shardName(11))
        // The revert point (the first run's checkpoint) is damaged.
        try FileIO.publish(Array("not a checkpoint".utf8), to: r0.stdoutLines[0])
        try Fix.shard(root, Fix.shardName(13), Fix.examples(200, labels: labels + sub, seed: 13))
        let r = try once(root)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("guard: probation cannot be judged, the shard stays"), r.stderr)
        XCTAssertNotEqual(Fix.status(root)?["probation"] as? String, Fix.shardName(11), "no longer on probation")
        XCTAssertEqual(try suspects(root).shards, [])
    }

    /// Confirming by hand (docs/runbook.md): with guard_probation false in policy.json a
    /// pending probation is never judged, so the shard stays whatever follows.
    func testProbationSwitchedOffLeavesAPendingShardUnjudged() throws {
        let root = try Fix.newRoot("proboff")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileIO.publish(#"{"train": {"guard_probation_examples": 60, "guard_signal_examples": 0}}"#, to: root + "/policy.json")
        for k in 1...10 { try Fix.shard(root, Fix.shardName(k), clean(k)) }
        XCTAssertEqual(try once(root).status, 0)
        try Fix.shard(root, Fix.shardName(11), shuffled(11))
        XCTAssertEqual(try once(root).status, 0)
        XCTAssertEqual(Fix.status(root)?["probation"] as? String, Fix.shardName(11))
        try FileIO.publish(#"{"train": {"guard_probation": false, "guard_probation_examples": 60, "guard_signal_examples": 0}}"#, to: root + "/policy.json")
        for k in 12...15 { try Fix.shard(root, Fix.shardName(k), clean(k)) }
        let r = try once(root)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("guard: probation"), r.stderr)
        XCTAssertEqual(try suspects(root).shards, [], "the same shard is undone when probation is on (above)")
        XCTAssertEqual(Fix.status(root)?["probation"] as? String, Fix.shardName(11), "still pending, not judged")
    }

    func testProbationVerdictIsAPairedTest() {
        var p = TrainPolicy()
        p.guardProbationExamples = 4
        var g = ShardGuard(policy: p, state: nil)
        XCTAssertTrue(g.startProbation(ShardRef(name: "s", sha256: "x"), loss: 5, threshold: 3))
        XCTAssertFalse(g.startProbation(ShardRef(name: "t", sha256: "y"), loss: 5, threshold: 3), "one at a time")
        XCTAssertEqual(g.scoreProbation([(1, 1), (2, 1.5)]), .pending)
        // Worse every time by about 0.5: undo.
        guard case .undo(let a, let b, let n, let t) = g.scoreProbation([(1.5, 1), (1.4, 1)]) else { return XCTFail("expected undo") }
        XCTAssertEqual(n, 4); XCTAssertEqual(a, 1.475, accuracy: 1e-9); XCTAssertEqual(b, 1.125, accuracy: 1e-9)
        XCTAssertGreaterThan(t, 2)
        XCTAssertNil(g.state.probation, "decided")
        // Worse on average but within noise: confirmed.
        XCTAssertTrue(g.startProbation(ShardRef(name: "u", sha256: "z"), loss: 5, threshold: 3))
        guard case .confirmed = g.scoreProbation([(2, 1), (1, 2), (2.2, 1), (1, 2)]) else { return XCTFail("expected confirmed") }
        p.guardProbation = false
        g = ShardGuard(policy: p, state: nil)
        XCTAssertFalse(g.startProbation(ShardRef(name: "s", sha256: "x"), loss: 5, threshold: 3), "off in policy")
    }

    func testGuardThresholdIsRobustToTheStream() {
        var p = TrainPolicy()
        p.guardMinHistory = 3
        // A quiet stream: the ratio rule.
        XCTAssertEqual(p.threshold(reference: [1, 1, 1, 1])?.threshold ?? 0, 2.5, accuracy: 1e-9)
        // A stream whose loss moves: median 1, MAD 0.5 -> 1 + 8 x 1.4826 x 0.5.
        XCTAssertEqual(p.threshold(reference: [0.5, 1, 1.5, 0.5, 1.5])?.threshold ?? 0, 1 + 8 * 1.4826 * 0.5, accuracy: 1e-9)
        XCTAssertNil(p.threshold(reference: [1, 1]))
        var m = SignalMeter(shard: "s", labels: 2)
        var a: [Float] = [0.9, 0.1], b: [Float] = [0.1, 0.9]
        a.withUnsafeMutableBufferPointer { m.add(label: 0, probs: $0) }
        b.withUnsafeMutableBufferPointer { m.add(label: 1, probs: $0) }
        // True labels: 2 x -log 0.9; shuffled (each gets the other's label): 2 x -log 0.1.
        XCTAssertEqual(m.signal ?? 0, log(0.9) / log(0.1), accuracy: 1e-6)
    }

    func testNaNShardIsStoppedAndTwoInARowBlameTheKnobs() throws {
        let root = try Fix.newRoot("nanshard"), ref = try Fix.newRoot("nanref")
        defer { for r in [root, ref] { try? FileManager.default.removeItem(atPath: r) } }
        for k in 1...4 {
            try Fix.shard(root, Fix.shardName(k), clean(k, 100))
            if k != 3 { try Fix.shard(ref, Fix.shardName(k), clean(k, 100)) }
        }
        let r = try once(root, env: ["PP_TRAIN_TEST_NAN_SHARDS": Fix.shardName(3)])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(try suspects(root).shards.map(\.reason), ["non-finite loss"])
        XCTAssertEqual(try suspects(root).shards.map(\.name), [Fix.shardName(3)])
        let ck = try Checkpoint.readHead(path: r.stdoutLines[0], cursor: true).meta
        XCTAssertEqual(ck.lineage.map(\.name), [1, 2, 4].map { Fix.shardName($0) })
        let rr = try once(ref)
        XCTAssertEqual(rr.status, 0, rr.stderr)
        try assertSameState(r.stdoutLines[0], rr.stdoutLines[0])

        // NaN on two shards in a row: the knobs, not the data. No mark stays, nothing is written.
        let root2 = try Fix.newRoot("nan2")
        defer { try? FileManager.default.removeItem(atPath: root2) }
        for k in 1...4 { try Fix.shard(root2, Fix.shardName(k), clean(k, 100)) }
        let r2 = try once(root2, env: ["PP_TRAIN_TEST_NAN_SHARDS": Fix.shardName(2) + "," + Fix.shardName(3)])
        XCTAssertEqual(r2.status, 1, r2.stderr)
        XCTAssertEqual(r2.stdout, "")
        XCTAssertTrue(Fix.checkpoints(root2).isEmpty)
        XCTAssertEqual(try suspects(root2).shards, [], "the mark for the first NaN is withdrawn")
        XCTAssertTrue(r2.stderr.contains("the knobs are the likelier cause"), r2.stderr)
    }

    func testPolicyIsValidated() throws {
        let root = try Fix.newRoot("policy")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), clean(1, 50))
        // Other tools' sections are not pp-train's business.
        try FileIO.publish(#"{"ingest": {"whatever": 1}, "train": {"guard_ratio": 3, "guard": true}}"#, to: root + "/policy.json")
        XCTAssertEqual(try once(root).status, 0)
        try FileIO.publish(#"{"train": {"guard_ratoi": 3}}"#, to: root + "/policy.json")
        try Fix.shard(root, Fix.shardName(2), clean(2, 50))
        var r = try once(root)
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("policy.json: train.guard_ratoi: unknown key"), r.stderr)
        try FileIO.publish(#"{"train": {"guard": 1}}"#, to: root + "/policy.json")
        r = try once(root)
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("train.guard: expected true or false"), r.stderr)
        try FileIO.publish(#"{"train": {"guard_ratio": 0.5}}"#, to: root + "/policy.json")
        r = try once(root)
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("train.guard_ratio"), r.stderr)
        try FileIO.publish(#"{"train": {"guard_spike_alone": "yes"}}"#, to: root + "/policy.json")
        r = try once(root)
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("train.guard_spike_alone: expected true or false"), r.stderr)
        try FileIO.publish(#"{"train": {"guard_probation": 1}}"#, to: root + "/policy.json")
        r = try once(root)
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("train.guard_probation: expected true or false"), r.stderr)
        let q = try TrainPolicy.parse(Array(#"{"train": {"guard_probation": false, "guard_probation_examples": 40}}"#.utf8), path: "p")
        XCTAssertFalse(q.guardProbation)
        XCTAssertEqual(q.guardProbationExamples, 40)
        let p = try TrainPolicy.parse(Array(#"{"train": {"guard_signal_max": 0.95, "guard_mad_k": 5, "guard_signal_examples": 0}}"#.utf8), path: "p")
        XCTAssertEqual(p.guardSignalMax, 0.95)
        XCTAssertEqual(p.guardMadK, 5)
        XCTAssertEqual(p.guardSignalExamples, 0)
        XCTAssertFalse(p.guardSpikeAlone)
    }

    // MARK: rewind

    func testRewindThenContinueIsBitIdenticalToNeverSeeingTheShard() throws {
        let a = try Fix.newRoot("never"), b = try Fix.newRoot("rewind")
        defer { for r in [a, b] { try? FileManager.default.removeItem(atPath: r) } }
        // The guard is off: the bad shard gets in, as one that looks clean would.
        try FileIO.publish(#"{"train": {"guard": false}}"#, to: b + "/policy.json")
        let args = ["--replay", "0.25", "--dropout", "0.1"]

        // Reference: shards 1, 2; later 4, 5. Never shard 3.
        try Fix.shard(a, Fix.shardName(1), clean(1))
        try Fix.shard(a, Fix.shardName(2), clean(2))
        XCTAssertEqual(try once(a, args).status, 0)
        try Fix.shard(a, Fix.shardName(4), clean(4))
        try Fix.shard(a, Fix.shardName(5), clean(5))
        let refRun = try once(a, args)
        XCTAssertEqual(refRun.status, 0, refRun.stderr)

        // The spoiled run: 1, 2; then the bad shard 3; then 4 (trained on top of 3).
        try Fix.shard(b, Fix.shardName(1), clean(1))
        try Fix.shard(b, Fix.shardName(2), clean(2))
        let c1 = try once(b, args)
        XCTAssertEqual(c1.status, 0, c1.stderr)
        try Fix.shard(b, Fix.shardName(3), shuffled(3))
        let c3 = try once(b, args)
        XCTAssertEqual(c3.status, 0, c3.stderr)
        try Fix.shard(b, Fix.shardName(4), clean(4))
        let c4 = try once(b, args)
        XCTAssertEqual(c4.status, 0, c4.stderr)
        XCTAssertTrue(try Lineage.of(checkpoint: c4.stdoutLines[0], root: Root(b)).shards.contains { $0.name == Fix.shardName(3) })

        // Undo shard 3.
        let rw = try TestSupport.run("pp-train", ["rewind", "--root", b, "--before", Fix.shardName(3)])
        XCTAssertEqual(rw.status, 0, rw.stderr)
        let out = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(rw.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(out["target"] as? String, c1.stdoutLines[0])
        let moved = try XCTUnwrap(out["moved"] as? [String])
        XCTAssertEqual(moved.map { FileIO.split($0).name }, [c3, c4].map { FileIO.split($0.stdoutLines[0]).name })
        XCTAssertEqual(Fix.checkpoints(b), [c1.stdoutLines[0]], "only the target is left to resume")
        for p in moved { XCTAssertTrue(FileIO.exists(p), "kept in rewound/: \(p)") }
        let mark = try XCTUnwrap(try suspects(b).shards.first)
        XCTAssertEqual(mark.name, Fix.shardName(3))
        XCTAssertEqual(mark.reason, "rewind")
        XCTAssertFalse(mark.by.isEmpty)
        XCTAssertEqual(mark.sha256?.count, 64)
        // Rewinding again finds nothing more to move and changes nothing.
        let again = try TestSupport.run("pp-train", ["rewind", "--root", b, "--before", Fix.shardName(3)])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("\"moved\":[]"), again.stdout)

        // Shard 5 arrives; the next start resumes from the target and trains 4 again, then 5.
        // --init (e.g. left in a unit's flags) does not win over the run's own checkpoints.
        try Fix.shard(b, Fix.shardName(5), clean(5))
        let cont = try once(b, args + ["--init", moved[1]])
        XCTAssertEqual(cont.status, 0, cont.stderr)
        XCTAssertTrue(cont.stderr.contains("--init ignored"), cont.stderr)
        let meta = try Checkpoint.readHead(path: cont.stdoutLines[0], cursor: true).meta
        XCTAssertEqual(meta.parent, "main/" + FileIO.split(c1.stdoutLines[0]).name)
        XCTAssertFalse(meta.cursor.shards.contains { $0.shard.name == Fix.shardName(3) })
        try assertSameState(refRun.stdoutLines[0], cont.stdoutLines[0])
    }

    func testUnsuspectWithdrawsTheMarkAndTheRunTrainsOnTheShardAgain() throws {
        let root = try Fix.newRoot("unsuspect")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileIO.publish(#"{"train": {"guard": false}}"#, to: root + "/policy.json")
        try Fix.shard(root, Fix.shardName(1), clean(1, 60))
        try Fix.shard(root, Fix.shardName(2), clean(2, 60))
        var list = SuspectList()
        list.mark(SuspectShard(name: Fix.shardName(1), reason: "loss spike", loss: 9, reference: 1, at: Clock.iso(Clock.now()), by: "pp-train guard"))
        try FileIO.makeDirectories(Root(root).run("main"))
        try list.publish(root: Root(root), run: "main")
        // Marked: the run never trains on shard 1.
        let first = try once(root)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(try Lineage.of(checkpoint: first.stdoutLines[0], root: Root(root)).shards.map(\.name), [Fix.shardName(2)])

        var r = try TestSupport.run("pp-train", ["unsuspect", "--root", root, "nonsense"])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-train", ["unsuspect", "--root", root, Fix.shardName(2)])
        XCTAssertEqual(r.status, 66, r.stderr)
        XCTAssertTrue(r.stderr.contains("is not a suspect"), r.stderr)
        // A trainer holds the run: refused, nothing changed.
        do {
            let held = try FileLock(path: Root(root).lock("train-main"), wait: false)
            r = try TestSupport.run("pp-train", ["unsuspect", "--root", root, Fix.shardName(1)])
            XCTAssertEqual(r.status, 75, r.stderr)
            XCTAssertTrue(r.stderr.contains("stop it first"), r.stderr)
            held.release()
        }
        XCTAssertEqual(try suspects(root).names, [Fix.shardName(1)])

        r = try TestSupport.run("pp-train", ["unsuspect", "--root", root, "--why", "looked: a real re-org", Fix.shardName(1)])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(out["shard"] as? String, Fix.shardName(1))
        let after = try suspects(root)
        XCTAssertTrue(after.shards.isEmpty)
        let w = try XCTUnwrap(after.withdrawn?.first)
        XCTAssertEqual(w.mark.name, Fix.shardName(1))
        XCTAssertEqual(w.mark.reason, "loss spike", "the mark is kept as it was")
        XCTAssertEqual(w.why, "looked: a real re-org")
        XCTAssertFalse(w.by.isEmpty)
        r = try TestSupport.run("pp-train", ["unsuspect", "--root", root, Fix.shardName(1)])
        XCTAssertEqual(r.status, 66, "already withdrawn: " + r.stderr)

        // The next run trains on shard 1.
        let next = try once(root)
        XCTAssertEqual(next.status, 0, next.stderr)
        XCTAssertTrue(try Lineage.of(checkpoint: next.stdoutLines[0], root: Root(root)).shards.contains { $0.name == Fix.shardName(1) })
    }

    func testRewindRefusals() throws {
        let root = try Fix.newRoot("rwrefuse")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var r = try TestSupport.run("pp-train", ["rewind", "--root", root, "--before", "nonsense"])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-train", ["rewind", "--root", root, "--before", Fix.shardName(1)])
        XCTAssertEqual(r.status, 66, r.stderr)
        XCTAssertTrue(r.stderr.contains("has no checkpoints"), r.stderr)

        try FileIO.publish(#"{"train": {"guard": false}}"#, to: root + "/policy.json")
        try Fix.shard(root, Fix.shardName(1), clean(1, 60))
        let first = try once(root)
        XCTAssertEqual(first.status, 0, first.stderr)
        // Every checkpoint trained on shard 1: refused unless --allow-fresh.
        r = try TestSupport.run("pp-train", ["rewind", "--root", root, "--before", Fix.shardName(1)])
        XCTAssertEqual(r.status, 66, r.stderr)
        XCTAssertTrue(r.stderr.contains("--allow-fresh"), r.stderr)
        XCTAssertFalse(FileIO.exists(root + "/runs/main/suspects.json"), "nothing changed")
        XCTAssertEqual(Fix.checkpoints(root).count, 1)

        // A running trainer holds the run: rewind refuses with exit 75 and says what to do.
        let d = try Daemon(["--root", root, "--rescan", "60"] + Fix.tiny, tag: "rwlock")
        XCTAssertTrue(Fix.waitFor(20, "the trainer to start") { Fix.status(root)?["pid"] as? Int == Int(d.pid) })
        r = try TestSupport.run("pp-train", ["rewind", "--root", root, "--before", Fix.shardName(1), "--allow-fresh"])
        XCTAssertEqual(r.status, 75, r.stderr)
        XCTAssertTrue(r.stderr.contains("stop it first"), r.stderr)
        d.signal(SIGTERM)
        XCTAssertEqual(d.wait(), 0, d.stderr)

        // --allow-fresh: everything moves aside; the next start is a fresh model without shard 1.
        r = try TestSupport.run("pp-train", ["rewind", "--root", root, "--before", Fix.shardName(1), "--allow-fresh"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\"target\":null"), r.stdout)
        XCTAssertTrue(Fix.checkpoints(root).isEmpty)
        try Fix.shard(root, Fix.shardName(2), clean(2, 60))
        let next = try once(root)
        XCTAssertEqual(next.status, 0, next.stderr)
        let meta = try Checkpoint.readHead(path: next.stdoutLines[0], cursor: true).meta
        XCTAssertNil(meta.parent)
        XCTAssertEqual(meta.lineage.map(\.name), [Fix.shardName(2)])
    }
}
