// pp-train --once and the start rules, run as a CLI on temporary state folders: checkpoints
// are loadable and printed, nothing to do is exit 2, new labels and deleted shards are
// handled, corrupt checkpoints are skipped on resume, conflicting model flags are refused.

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

final class OnceTests: XCTestCase {
    func once(_ root: String, _ extra: [String] = []) throws -> TestSupport.Result {
        try TestSupport.run("pp-train", ["--root", root, "--once"] + Fix.tiny + extra)
    }

    func testOnceWritesLoadableCheckpointThenNothingToDo() throws {
        let root = try Fix.newRoot("once")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // No shards at all: nothing to do, no checkpoint.
        var r = try once(root)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertTrue(Fix.checkpoints(root).isEmpty)

        try Fix.shard(root, Fix.shardName(1), Fix.examples(120, labels: ["a", "b", "c"], seed: 1))
        try Fix.shard(root, Fix.shardName(2), Fix.examples(80, labels: ["a", "b", "c"], seed: 2))
        r = try once(root, ["--replay", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdoutLines.count, 1, r.stdout)
        let path = r.stdoutLines[0]
        XCTAssertTrue(path.hasPrefix(root + "/runs/main/checkpoints/ckpt-") && path.hasSuffix(".ppc"), path)
        XCTAssertEqual(String(path.dropLast(4).suffix(12)), "000000000200", "file name carries the step")
        let ck = try Checkpoint.load(path: path)
        XCTAssertEqual(ck.meta.step, 200, "each new shard once, no replay")
        XCTAssertEqual(ck.meta.run, "main")
        XCTAssertNil(ck.meta.parent, "fresh start")
        XCTAssertEqual(Set(ck.meta.labels), ["a", "b", "c"])
        XCTAssertEqual(ck.meta.lineage.map(\.name), [Fix.shardName(1), Fix.shardName(2)])
        XCTAssertEqual(ck.meta.cursor.shards.map(\.passes), [1, 1])
        XCTAssertEqual(ck.meta.cursor.shards.map(\.position), [0, 0])
        XCTAssertEqual(ck.meta.config.dim, 8)
        XCTAssertEqual(ck.meta.lineage[0].sha256.count, 64)

        // Everything read: nothing to do, no new checkpoint.
        r = try once(root)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(Fix.checkpoints(root).count, 1)

        // status.json and control.json were written for the run.
        let st = try XCTUnwrap(Fix.status(root))
        XCTAssertEqual(st["state"] as? String, "stopped")
        let ctl = try controlJSON(root + "/runs/main/control.json")
        XCTAssertEqual(ctl["lr"] as? Double, Knobs.defaultLR)
    }

    /// A new model with a hidden layer starts at its own default rate (the study's best for
    /// that shape); an explicit --lr still wins.
    func testANewHiddenModelStartsAtTheHiddenDefaultRate() throws {
        for (extra, want) in [(["--hidden", "8"], Knobs.defaultHiddenLR), (["--hidden", "8", "--lr", "0.05"], 0.05)] {
            let root = try Fix.newRoot("hidden-lr")
            defer { try? FileManager.default.removeItem(atPath: root) }
            try Fix.shard(root, Fix.shardName(1), Fix.examples(40, labels: ["a", "b"], seed: 1))
            let r = try once(root, extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try Checkpoint.readHead(path: Fix.checkpoints(root)[0]).meta.knobs.lr, want, "\(extra)")
        }
        XCTAssertNotEqual(Knobs.defaultHiddenLR, Knobs.defaultLR)
    }

    /// A model a static multi-pass job creates (`--once --passes N`) defaults to the static
    /// recipe (token sub-word weight, lr 0.1); `--once` alone and the daemon keep the stream
    /// defaults; flags given win; and a run the job continues keeps its own config (no
    /// conflict from a default the user never gave).
    func testAMultiPassJobCreatesItsModelWithTheStaticRecipe() throws {
        let cases: [([String], ModelConfig.SubwordWeight, Double)] = [
            (["--passes", "2"], .token, Knobs.defaultMultiPassLR),
            ([], .each, Knobs.defaultLR),
            (["--passes", "2", "--subword-weight", "each", "--lr", "0.3"], .each, 0.3),
            (["--passes", "2", "--hidden", "8"], .token, Knobs.defaultHiddenLR),
        ]
        for (extra, weight, lr) in cases {
            let root = try Fix.newRoot("multipass")
            defer { try? FileManager.default.removeItem(atPath: root) }
            try Fix.shard(root, Fix.shardName(1), Fix.examples(40, labels: ["a", "b"], seed: 1))
            let r = try once(root, extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            let meta = try Checkpoint.readHead(path: Fix.checkpoints(root)[0]).meta
            XCTAssertEqual(meta.config.subwordWeight, weight, "\(extra)")
            XCTAssertEqual(meta.knobs.lr, lr, "\(extra)")
            if extra.isEmpty {
                // A later multi-pass job on the same run continues it: `each` and 0.2 stay.
                try Fix.shard(root, Fix.shardName(2), Fix.examples(40, labels: ["a", "b"], seed: 2))
                let again = try once(root, ["--passes", "2"])
                XCTAssertEqual(again.status, 0, again.stderr)
                let next = try Checkpoint.readHead(path: Fix.checkpoints(root).last!).meta
                XCTAssertEqual(next.config.subwordWeight, .each)
                XCTAssertEqual(next.knobs.lr, Knobs.defaultLR)
                XCTAssertNotNil(next.parent)
            }
        }
        XCTAssertNotEqual(Knobs.defaultMultiPassLR, Knobs.defaultLR)
    }

    func testNewLabelInLaterShardAndReplayShareAndLineage() throws {
        let root = try Fix.newRoot("label")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(100, labels: ["a", "b"], seed: 1))
        var r = try once(root, ["--batch", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let first = try Checkpoint.load(path: r.stdoutLines[0])
        XCTAssertEqual(Set(first.meta.labels), ["a", "b"])

        // A later shard brings label "d" and new words.
        try Fix.shard(root, Fix.shardName(2), Fix.examples(120, labels: ["a", "d"], seed: 2))
        r = try once(root, ["--batch", "8", "--replay", "0.25"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let second = try Checkpoint.load(path: r.stdoutLines[0])
        XCTAssertTrue(second.meta.labels.contains("d"), "new label added: \(second.meta.labels)")
        XCTAssertEqual(second.model.predict(tokens: ["d1", "d2", "d3"]).count, second.meta.labels.count)
        // 120 new examples took 3/4 of each batch of 8; the other 1/4 replayed shard 1.
        XCTAssertEqual(second.meta.step - first.meta.step, 160)
        XCTAssertEqual(second.meta.parent, "main/" + FileIO.split(Fix.checkpoints(root)[0]).name)
        XCTAssertEqual(Set(second.meta.lineage.map(\.name)), [Fix.shardName(1), Fix.shardName(2)], "replayed shard in the lineage")
        let p1 = second.meta.cursor.shards[0], p2 = second.meta.cursor.shards[1]
        XCTAssertEqual(p2.passes, 1)
        let q1 = first.meta.cursor.shards[0]
        XCTAssertEqual(p1.passes * 100 + p1.position, q1.passes * 100 + q1.position + 40, "shard 1: 40 more replayed")
        XCTAssertNotEqual(second.meta.cursor.rngState, 0)
    }

    func testDeletedShardLeavesThePool() throws {
        let root = try Fix.newRoot("delete")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let gone = try Fix.shard(root, Fix.shardName(1), Fix.examples(50, labels: ["a", "b"], seed: 1))
        try Fix.shard(root, Fix.shardName(2), Fix.examples(50, labels: ["a", "b"], seed: 2))
        var r = try once(root, ["--batch", "10", "--replay", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try FileIO.removeDurably(gone)
        try Fix.shard(root, Fix.shardName(3), Fix.examples(100, labels: ["a", "b"], seed: 3))
        r = try once(root, ["--batch", "10", "--replay", "0.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ck = try Checkpoint.load(path: r.stdoutLines[0])
        XCTAssertEqual(ck.meta.cursor.shards.map(\.shard.name), [Fix.shardName(2), Fix.shardName(3)])
        XCTAssertEqual(Set(ck.meta.lineage.map(\.name)), [Fix.shardName(2), Fix.shardName(3)], "deleted shard not replayed")
        XCTAssertTrue(r.stderr.contains("shard left the pool"), r.stderr)

        // --passes over a static set: N rounds over every remaining shard.
        r = try once(root, ["--passes", "3", "--batch", "7"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let p = try Checkpoint.load(path: r.stdoutLines[0])
        XCTAssertEqual(ck.meta.cursor.shards.map(\.position), [0, 0])
        XCTAssertEqual(p.meta.step - ck.meta.step, 3 * 150, "3 full passes")
        XCTAssertEqual(zip(p.meta.cursor.shards, ck.meta.cursor.shards).map { $0.passes - $1.passes }, [3, 3])
        XCTAssertEqual(p.meta.cursor.shards.map(\.position), [0, 0])
    }

    func testCorruptNewestCheckpointIsSkippedOnResume() throws {
        let root = try Fix.newRoot("corrupt")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(60, labels: ["a", "b"], seed: 1))
        let a = try once(root)
        XCTAssertEqual(a.status, 0, a.stderr)
        sleep(1)  // distinct time stamps in the names
        try Fix.shard(root, Fix.shardName(2), Fix.examples(60, labels: ["a", "b"], seed: 2))
        let b = try once(root)
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertEqual(Fix.checkpoints(root).last, b.stdoutLines[0])
        // Flip bytes in the middle of the newest checkpoint.
        var bytes = try FileIO.readAll(b.stdoutLines[0])
        for k in (bytes.count / 2)..<min(bytes.count, bytes.count / 2 + 16) { bytes[k] ^= 0x5A }
        try FileIO.publish(bytes, to: b.stdoutLines[0])

        try Fix.shard(root, Fix.shardName(3), Fix.examples(60, labels: ["a", "b"], seed: 3))
        let c = try once(root, ["--replay", "0"])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(c.stderr.contains("skipping unreadable checkpoint"), c.stderr)
        XCTAssertTrue(c.stderr.contains(FileIO.split(b.stdoutLines[0]).name), c.stderr)
        let ck = try Checkpoint.load(path: c.stdoutLines[0])
        XCTAssertEqual(ck.meta.parent, "main/" + FileIO.split(a.stdoutLines[0]).name, "resumed from the older, valid one")
        // The cursor came from checkpoint A: shard 2 (trained only into the corrupt one) is new again.
        XCTAssertEqual(ck.meta.step, 60 + 120)
    }

    func testModelFlagsConflictingWithTheRunAreRefused() throws {
        let root = try Fix.newRoot("conflict")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(30, labels: ["a", "b"], seed: 1))
        XCTAssertEqual(try once(root).status, 0)
        try Fix.shard(root, Fix.shardName(2), Fix.examples(30, labels: ["a", "b"], seed: 2))
        var r = try TestSupport.run("pp-train", ["--root", root, "--once", "--dim", "16"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("--dim 16 (the model has 8)"), r.stderr)
        r = try TestSupport.run("pp-train", ["--root", root, "--once", "--subword-weight", "token"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("--subword-weight token (the model has each)"), r.stderr)
        r = try TestSupport.run("pp-train", ["--root", root, "--once", "--subword-weight", "half"])
        XCTAssertEqual(r.status, 64, r.stderr)
        // A run created with it keeps it: in its checkpoints, and a resume without the flag.
        let root2 = try Fix.newRoot("subwords")
        defer { try? FileManager.default.removeItem(atPath: root2) }
        try Fix.shard(root2, Fix.shardName(1), Fix.examples(30, labels: ["a", "b"], seed: 1))
        let flags = ["--root", root2, "--once", "--dim", "8", "--bucket", "1000", "--minn", "2", "--maxn", "3", "--threads", "1", "--min-count", "1"]
        r = try TestSupport.run("pp-train", flags + ["--subword-weight", "token"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Checkpoint.load(path: r.stdoutLines[0]).meta.config.subwordWeight, .token)
        try Fix.shard(root2, Fix.shardName(2), Fix.examples(30, labels: ["a", "b"], seed: 2))
        r = try TestSupport.run("pp-train", flags)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Checkpoint.load(path: r.stdoutLines[0]).meta.config.subwordWeight, .token)
        // Same values as the run, and knobs, are fine.
        r = try TestSupport.run("pp-train", ["--root", root, "--once", "--dim", "8", "--lr", "0.05"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ck = try Checkpoint.load(path: r.stdoutLines[0])
        XCTAssertEqual(ck.meta.knobs.lr, 0.05)
        XCTAssertEqual(ck.meta.knobChanges.map(\.knob), ["lr"])
        XCTAssertEqual(ck.meta.knobChanges.first?.new, "0.05")
        // A bad --init is a clear error.
        r = try TestSupport.run("pp-train", ["--root", root, "--once", "--init", root + "/nope.ppc"])
        XCTAssertEqual(r.status, 66, r.stderr)
        r = try TestSupport.run("pp-train", ["--root", root, "--once", "--checkpoint-every", "soon"])
        XCTAssertEqual(r.status, 64, r.stderr)
    }

    func testNaNLossNeverReachesACheckpoint() throws {
        let root = try Fix.newRoot("nan")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(200, labels: ["a", "b", "c"], seed: 1))
        let r = try once(root, ["--lr", "1e30"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertTrue(Fix.checkpoints(root).isEmpty)
    }
}

/// control.json as a dictionary.
func controlJSON(_ path: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(path))) as? [String: Any] ?? [:]
}
