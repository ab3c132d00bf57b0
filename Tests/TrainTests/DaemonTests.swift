// pp-train as a daemon, run in the background on temporary state folders: knobs changed with
// `pp-train set` while it runs, SIGTERM, the run lock, and kill -9 then resume giving the
// same model bit for bit as a run that was never interrupted (--threads 1).

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

final class DaemonTests: XCTestCase {
    func state(_ root: String) -> String? { Fix.status(root)?["state"] as? String }

    /// A trickle of small shards (an ingest every 5 minutes) gets one checkpoint per
    /// `--checkpoint-every`, counted from the first unsaved batch, not one per shard; an idle
    /// trainer checkpoints its unsaved work once that interval has passed. On a simulated
    /// clock, as `make production-sim` runs it.
    func testTrickleOfShardsIsCheckpointedOncePerInterval() throws {
        let root = try Fix.newRoot("trickle")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let clock = root + "/clock"
        var now = 1_780_000_000.0
        func setClock(_ t: Double) throws { now = t; try FileIO.publish(Array("\(t)\n".utf8), to: clock) }
        try setClock(now)
        let t0 = now
        try Fix.shard(root, Fix.shardName(1), Fix.examples(40, labels: ["a", "b"], seed: 1))
        let d = try Daemon(["--root", root, "--rescan", "0.2", "--checkpoint-every", "1h", "--batch", "8", "--max-passes", "1"] + Fix.tiny,
                           tag: "trickle", env: ["PP_CLOCK_FILE": clock])
        func settled(_ name: String) -> Bool {
            guard let st = Fix.status(root) else { return false }
            return st["state"] as? String == "idle" && st["newest_shard"] as? String == name && st["pending_shards"] as? Int == 0
        }
        guard Fix.waitFor(30, "first shard trained", { settled(Fix.shardName(1)) }) else { return XCTFail(d.stderr) }
        var st = Fix.status(root) ?? [:]
        XCTAssertEqual(d.stdoutLines.count, 0, "no checkpoint on becoming idle before the interval: \(d.stdoutLines)")
        XCTAssertEqual(st["unsaved_since"] as? String, Clock.iso(t0))
        XCTAssertEqual(st["checkpoint_due"] as? String, Clock.iso(t0 + 3600))
        // Eleven more shards, one every 5 simulated minutes: still inside the hour.
        for k in 2...12 {
            try setClock(t0 + Double(k - 1) * 300)
            try Fix.shard(root, Fix.shardName(k), Fix.examples(40, labels: ["a", "b", "c"], seed: UInt64(k)))
            d.signal(SIGHUP)
            guard Fix.waitFor(30, "shard \(k) trained", { settled(Fix.shardName(k)) }) else { return XCTFail(d.stderr) }
        }
        XCTAssertEqual(d.stdoutLines.count, 0, "12 shards in 55 minutes: no checkpoint yet")
        // The 13th arrives an hour after the first unsaved batch: one checkpoint.
        try setClock(t0 + 3600)
        try Fix.shard(root, Fix.shardName(13), Fix.examples(40, labels: ["a", "b"], seed: 13))
        d.signal(SIGHUP)
        guard Fix.waitFor(30, "an hourly checkpoint", { d.stdoutLines.count == 1 && settled(Fix.shardName(13)) }) else { return XCTFail(d.stderr) }
        // Idle with unsaved work (what followed the checkpoint, if any) or none: nothing more
        // until the interval has passed; then an idle checkpoint without new data.
        sleep(3)
        XCTAssertEqual(d.stdoutLines.count, 1, d.stdoutLines.joined(separator: "\n"))
        st = Fix.status(root) ?? [:]
        let step = st["step"] as? Int ?? -1
        let saved = try Checkpoint.load(path: d.stdoutLines[0]).meta.step
        if saved < step {
            XCTAssertNotNil(st["checkpoint_due"] as? String)
            try setClock(t0 + 2 * 3600 + 1)
            guard Fix.waitFor(10, "an idle checkpoint once due", { d.stdoutLines.count == 2 }) else { return XCTFail(d.stderr) }
            XCTAssertEqual(try Checkpoint.load(path: d.stdoutLines[1]).meta.step, step)
        }
        guard Fix.waitFor(10, "status: all saved", { Fix.status(root)?["unsaved_since"] == nil && Fix.status(root)?["checkpoint_due"] == nil })
        else { return XCTFail("\(Fix.status(root) ?? [:])") }
        let lines = d.stdoutLines.count
        d.signal(SIGTERM)
        XCTAssertEqual(d.wait(), 0)
        XCTAssertEqual(d.stdoutLines.count, lines, "nothing unsaved: no final checkpoint")
    }

    func testSetAppliedToRunningTrainer() throws {
        let root = try Fix.newRoot("set")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(200, labels: ["a", "b", "c"], seed: 1))
        let d = try Daemon(["--root", root, "--rescan", "1", "--checkpoint-every", "100ex", "--batch", "16", "--max-passes", "2"] + Fix.tiny, tag: "set")
        guard Fix.waitFor(30, "idle", { state(root) == "idle" }) else { return print(d.stderr) }
        let before = d.stdoutLines.count
        XCTAssertGreaterThan(before, 0, "checkpoints while training and on becoming idle")
        // Idle, nothing changes: status.json is not rewritten every 2 s (a heartbeat a minute;
        // each rewrite replaces the file, so its inode tells).
        func statusInode() -> UInt64? {
            (try? FileManager.default.attributesOfItem(atPath: root + "/runs/main/status.json"))?[.systemFileNumber] as? UInt64
        }
        // (the throughput, measured between reports, reaches 0 a report or two after training)
        sleep(4)
        guard Fix.waitFor(10, "throughput 0", { Fix.status(root)?["examples_per_s"] as? Double == 0 }) else { return print(d.stderr) }
        let idleInode = statusInode()
        sleep(5)
        XCTAssertNotNil(idleInode)
        XCTAssertEqual(statusInode(), idleInode, "an unchanged status.json was rewritten while idle")

        // Bad requests are refused and change nothing.
        for bad in [["lr=abc"], ["lr=-1"], ["dropout=1.5"], ["pause=maybe"], ["speed=3"], ["lr"], [], ["average=0.5"], ["average=-1"], ["average=nan"]] {
            let r = try TestSupport.run("pp-train", ["set", "--root", root] + bad)
            XCTAssertEqual(r.status, 64, "\(bad): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("<3>pp-train: "), r.stderr)
        }
        let t0 = Date()
        var r = try TestSupport.run("pp-train", ["set", "--root", root, "lr=0.05", "dropout=0.25"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "{\"lr\":0.05,\"dropout\":0.25,\"pause\":false}\n")
        guard Fix.waitFor(8, "lr in status.json", { (Fix.status(root)?["knobs"] as? [String: Any])?["lr"] as? Double == 0.05 })
        else { return print(d.stderr) }
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5.5, "applied within 5 s")
        XCTAssertTrue(d.stderr.contains("knob changed"), d.stderr)
        // control.json edited in place (same inode, same size, no signal): the periodic look
        // at the file sees the change (it skips parsing only a file that did not change).
        let ctlPath = root + "/runs/main/control.json"
        let text = try String(contentsOfFile: ctlPath, encoding: .utf8)
        XCTAssertTrue(text.contains("0.05"), text)
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: ctlPath))
        try h.write(contentsOf: Data(text.replacingOccurrences(of: "0.05", with: "0.07").utf8))
        try h.close()
        guard Fix.waitFor(8, "lr 0.07 in status.json", { (Fix.status(root)?["knobs"] as? [String: Any])?["lr"] as? Double == 0.07 })
        else { return print(d.stderr) }

        r = try TestSupport.run("pp-train", ["set", "--root", root, "pause=true"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard Fix.waitFor(8, "paused", { state(root) == "paused" }) else { return print(d.stderr) }
        // New data while paused is not trained on.
        try Fix.shard(root, Fix.shardName(2), Fix.examples(100, labels: ["a", "d"], seed: 2))
        sleep(2)
        XCTAssertEqual(state(root), "paused")
        XCTAssertEqual(d.stdoutLines.count, before)
        r = try TestSupport.run("pp-train", ["set", "--root", root, "pause=false"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard Fix.waitFor(30, "a checkpoint with the new shard", { d.stdoutLines.count > before && state(root) == "idle" })
        else { return print(d.stderr) }

        let ck = try Checkpoint.load(path: d.stdoutLines[before])
        XCTAssertEqual(ck.meta.knobs.lr, 0.07)
        XCTAssertEqual(ck.meta.knobs.dropout, 0.25)
        let changes = ck.meta.knobChanges.map { "\($0.knob):\($0.old)->\($0.new)" }
        XCTAssertEqual(changes, ["lr:\(Knobs.defaultLR)->0.05", "dropout:0.0->0.25", "lr:0.05->0.07", "pause:false->true", "pause:true->false"])
        XCTAssertTrue(ck.meta.labels.contains("d"))
        XCTAssertEqual(ck.meta.parent, "main/" + FileIO.split(d.stdoutLines[before - 1]).name)
        // The next checkpoint does not repeat them.
        if d.stdoutLines.count > before + 1 {
            XCTAssertTrue(try Checkpoint.load(path: d.stdoutLines[before + 1]).meta.knobChanges.isEmpty)
        }
        d.signal(SIGTERM)
        XCTAssertEqual(d.wait(), 0, d.stderr)
        XCTAssertEqual(state(root), "stopped")
    }

    func testSigtermWritesFinalCheckpointAndSecondTrainerIsRefused() throws {
        let root = try Fix.newRoot("term")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(300, labels: ["a", "b"], seed: 1))
        // max-passes so high that it is still replaying when the signal comes.
        let d = try Daemon(["--root", root, "--max-passes", "100000000", "--batch", "16"] + Fix.tiny, tag: "term")
        guard Fix.waitFor(30, "training", { state(root) == "training" && (Fix.status(root)?["step"] as? Int ?? 0) > 0 })
        else { return print(d.stderr) }

        let second = try TestSupport.run("pp-train", ["--root", root, "--once"])
        XCTAssertEqual(second.status, 75, second.stderr)
        XCTAssertTrue(second.stderr.contains("already being trained"), second.stderr)
        let other = try TestSupport.run("pp-train", ["--root", root, "--run", "other", "--once", "--replay", "0"] + Fix.tiny)
        XCTAssertEqual(other.status, 0, "another run on the same root is fine: \(other.stderr)")

        XCTAssertTrue(d.stdoutLines.isEmpty, "no checkpoint before the hour is up")
        d.signal(SIGTERM)
        XCTAssertEqual(d.wait(), 0, d.stderr)
        XCTAssertEqual(d.stdoutLines.count, 1, d.stderr)
        let ck = try Checkpoint.load(path: d.stdoutLines[0])
        XCTAssertGreaterThan(ck.meta.step, 300, "kept replaying")
        let st = try XCTUnwrap(Fix.status(root))
        XCTAssertEqual(st["state"] as? String, "stopped")
        XCTAssertEqual(st["step"] as? Int, ck.meta.step)
        XCTAssertEqual(st["last_checkpoint"] as? String, d.stdoutLines[0])
        for key in ["examples_per_s", "tokens_per_s", "loss", "knobs", "vocabulary_size", "labels", "newest_shard", "pid"] {
            XCTAssertNotNil(st[key], key)
        }
        XCTAssertTrue(d.stderr.contains("SIGTERM received"), d.stderr)
    }

    func testSystemdNotifications() throws {
        let root = try Fix.newRoot("notify")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(100, labels: ["a", "b"], seed: 1))
        let sock = try NotifyListener()
        let d = try Daemon(["--root", root] + Fix.tiny, tag: "notify",
                           env: ["NOTIFY_SOCKET": sock.name, "WATCHDOG_USEC": "600000"])
        guard Fix.waitFor(30, "idle", { state(root) == "idle" }) else { return print(d.stderr) }
        sleep(2)  // idle: the keep-alives must go on (every 0.3 s for WatchdogSec=0.6s)
        var got = sock.drain()
        XCTAssertTrue(got.first?.hasPrefix("READY=1\nSTATUS=started from fresh") ?? false, "\(got.prefix(3))")
        XCTAssertTrue(got.contains { $0.hasPrefix("STATUS=idle") }, "\(got)")
        XCTAssertGreaterThanOrEqual(got.filter { $0 == "WATCHDOG=1" }.count, 4, "\(got)")
        d.signal(SIGTERM)
        XCTAssertEqual(d.wait(), 0, d.stderr)
        got = sock.drain()
        XCTAssertTrue(got.contains { $0.hasPrefix("STOPPING=1") }, "\(got)")
    }

    /// Runs a daemon until it is idle, then stops it; returns the checkpoints by step.
    func runToIdle(_ root: String, _ args: [String], tag: String) throws -> [Int: String] {
        let d = try Daemon(["--root", root] + args, tag: tag)
        guard Fix.waitFor(90, "idle (\(tag))", { state(root) == "idle" }) else { print(d.stderr); return [:] }
        d.signal(SIGTERM)
        XCTAssertEqual(d.wait(), 0, d.stderr)
        var out: [Int: String] = [:]
        for p in Fix.checkpoints(root) { out[try Checkpoint.load(path: p).meta.step] = p }
        return out
    }

    func testKill9ThenResumeIsBitIdentical() throws {
        let a = try Fix.newRoot("ref"), b = try Fix.newRoot("kill")
        defer { for r in [a, b] { try? FileManager.default.removeItem(atPath: r) } }
        for k in 1...3 {
            let ex = Fix.examples(1500, labels: k == 3 ? ["a", "b", "c", "d"] : ["a", "b", "c"], seed: UInt64(k))
            try Fix.shard(a, Fix.shardName(k), ex)
            try Fix.shard(b, Fix.shardName(k), ex)
        }
        let args = ["--checkpoint-every", "480ex", "--batch", "32", "--max-passes", "3", "--replay", "0.2", "--dropout", "0.1"] + Fix.tiny
        let ref = try runToIdle(a, args, tag: "ref")
        let finalStep = try XCTUnwrap(ref.keys.max())

        // Interrupted run: kill -9 as soon as the second checkpoint is out.
        let d = try Daemon(["--root", b] + args, tag: "kill")
        let end = Date().addingTimeInterval(60)
        while d.stdoutLines.count < 2 && Date() < end { usleep(1000) }
        d.signal(SIGKILL)
        d.wait()
        let survivors = Fix.checkpoints(b)
        let killedAt = try survivors.map { try Checkpoint.load(path: $0).meta.step }.max() ?? 0
        XCTAssertLessThan(killedAt, finalStep, "the kill must interrupt training for this test to mean anything")

        let resumed = try runToIdle(b, args, tag: "resume")
        let after = resumed.keys.filter { $0 > killedAt }.sorted()
        XCTAssertFalse(after.isEmpty, "the resumed run wrote checkpoints")
        XCTAssertEqual(resumed.keys.max(), finalStep)
        for step in resumed.keys.sorted() {
            guard let refPath = ref[step] else { XCTFail("step \(step) has no reference checkpoint"); continue }
            let x = try Checkpoint.load(path: refPath), y = try Checkpoint.load(path: resumed[step]!)
            XCTAssertEqual(x.meta.cursor, y.meta.cursor, "cursor at step \(step)")
            XCTAssertEqual(x.meta.labels, y.meta.labels, "labels at step \(step)")
            XCTAssertEqual(x.meta.tokens, y.meta.tokens, "tokens at step \(step)")
            XCTAssertEqual(x.meta.vocabularySize, y.meta.vocabularySize, "vocabulary at step \(step)")
            XCTAssertEqual(x.meta.lineage, y.meta.lineage, "lineage at step \(step)")
            XCTAssertEqual(Fix.fingerprint(x), Fix.fingerprint(y), "predictions at step \(step) are not bit-identical")
        }
    }
}
