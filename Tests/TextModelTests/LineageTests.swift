import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// Checkpoint heads, lineage walks across runs and rewound/, suspect lists and the poison set.
/// Small checkpoints with a given parent and lineage (also LinkIndexTests').
enum LineageFixture {
    static func config() -> ModelConfig {
        .small(dim: 8, bucket: 2000, capacity: 50, minCount: 1, wordNgrams: 1)
    }

    /// Writes a checkpoint under runs/RUN/DIR/FILE with the given parent and lineage.
    static func write(_ root: Root, run: String, dir: String = "checkpoints", file: String, parent: String?, shards: [String], trainer t: Trainer) throws -> String {
        var m = CheckpointMeta(run: run, createdAt: "2026-11-26T00:00:00Z", step: 1, tokens: 1, config: config(), knobs: Knobs())
        m.parent = parent
        m.lineage = shards.map { ShardRef(name: $0, sha256: String(repeating: "0", count: 64)) }
        let d = root.run(run) + "/" + dir
        try FileIO.makeDirectories(d)
        let path = d + "/" + file
        try FileIO.publish(try t.checkpointBytes(meta: m), to: path)
        return path
    }

    static func trainer() throws -> Trainer {
        let t = try Trainer(config: config(), knobs: Knobs(lr: 0.1, dropout: 0))
        var b = Batch()
        for i in 0..<40 { b.append(label: "l\(i % 3)", tokens: ["alpha\(i % 5)", "beta", "gamma\(i % 7)"]) }
        _ = try t.train(b)
        return t
    }
}

final class LineageTests: XCTestCase {
    func config() -> ModelConfig { LineageFixture.config() }

    func write(_ root: Root, run: String, dir: String = "checkpoints", file: String, parent: String?, shards: [String], trainer t: Trainer) throws -> String {
        try LineageFixture.write(root, run: run, dir: dir, file: file, parent: parent, shards: shards, trainer: t)
    }

    func trainer() throws -> Trainer { try LineageFixture.trainer() }

    func testHeadMatchesFullLoadAndVocabularyIsReadable() throws {
        let dir = try TestSupport.tempDir("lineage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try trainer()
        let p = try write(root, run: "main", file: "ckpt-1.ppc", parent: nil, shards: ["a.shard"], trainer: t)
        let head = try Checkpoint.readHead(path: p, vocabulary: true)
        let full = try Checkpoint.load(path: p)
        XCTAssertEqual(head.meta, full.meta)
        let v = try XCTUnwrap(head.vocabulary)
        XCTAssertEqual(v.size, full.model.vocabulary.size)
        XCTAssertGreaterThan(v.size, 0)
        XCTAssertGreaterThanOrEqual(v.slot(of: "beta"), 0)
        XCTAssertLessThan(v.slot(of: "never-seen-word"), 0)
    }

    func testHeadRefusesDamagedFiles() throws {
        let dir = try TestSupport.tempDir("lineage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let p = try write(root, run: "main", file: "ckpt-1.ppc", parent: nil, shards: [], trainer: try trainer())
        let bytes = try FileIO.readAll(p)
        // Not zstd at all.
        try FileIO.publish(Array("hello world, not a checkpoint".utf8), to: dir + "/text.ppc")
        XCTAssertThrowsError(try Checkpoint.readHead(path: dir + "/text.ppc")) { e in
            XCTAssertEqual((e as? PPError)?.status, .corrupt)
            XCTAssertTrue((e as? PPError)?.message.contains("text.ppc") ?? false)
        }
        // Cut inside the first block: the head cannot be read.
        try FileIO.publish(Array(bytes[0..<12]), to: dir + "/cut.ppc")
        XCTAssertThrowsError(try Checkpoint.readHead(path: dir + "/cut.ppc")) { e in
            XCTAssertEqual((e as? PPError)?.status, .corrupt)
        }
        // Another program's zstd file.
        try FileIO.publish(try Zstd.compress(Array(repeating: 7, count: 100)), to: dir + "/other.ppc")
        XCTAssertThrowsError(try Checkpoint.readHead(path: dir + "/other.ppc")) { e in
            XCTAssertEqual((e as? PPError)?.status, .corrupt)
        }
        XCTAssertThrowsError(try Checkpoint.readHead(path: dir + "/missing.ppc")) { e in
            XCTAssertEqual((e as? PPError)?.status, .noInput)
        }
    }

    func testLineageWalksParentsAcrossRunsAndRewound() throws {
        let dir = try TestSupport.tempDir("lineage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try trainer()
        _ = try write(root, run: "base", file: "c1.ppc", parent: nil, shards: ["s1", "s2"], trainer: t)
        _ = try write(root, run: "main", dir: "rewound", file: "c2.ppc", parent: "base/c1.ppc", shards: ["s2", "s3"], trainer: t)
        let c3 = try write(root, run: "main", file: "c3.ppc", parent: "main/c2.ppc", shards: ["s4"], trainer: t)
        let l = try Lineage.of(checkpoint: c3, root: root)
        XCTAssertEqual(l.shards.map(\.name), ["s1", "s2", "s3", "s4"])
        XCTAssertEqual(l.chain.count, 3)
        XCTAssertTrue(l.complete)
        XCTAssertNil(l.missingParent)

        // A missing parent makes the lineage incomplete (and says which).
        let c4 = try write(root, run: "main", file: "c4.ppc", parent: "gone/c0.ppc", shards: ["s9"], trainer: t)
        let m = try Lineage.of(checkpoint: c4, root: root)
        XCTAssertEqual(m.shards.map(\.name), ["s9"])
        XCTAssertFalse(m.complete)
        XCTAssertEqual(m.missingParent, "gone/c0.ppc")
    }

    /// The light link (parent, lineage, time) is what the full meta says, and a memo serves
    /// a second walk without reading the files again (pp-select walks the deployed model's
    /// chain and each candidate's, which share most of it).
    func testLinkAndMemoAgreeWithTheFullMeta() throws {
        let dir = try TestSupport.tempDir("lineage-memo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try trainer()
        let c1 = try write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1", "s2"], trainer: t)
        let c2 = try write(root, run: "main", file: "c2.ppc", parent: "main/c1.ppc", shards: ["s3"], trainer: t)
        let c3 = try write(root, run: "main", file: "c3.ppc", parent: "main/c2.ppc", shards: ["s4"], trainer: t)
        for c in [c1, c2, c3] {
            let full = try Checkpoint.readHead(path: c).meta, link = try Lineage.link(c)
            XCTAssertEqual(link.parent, full.parent)
            XCTAssertEqual(link.lineage, full.lineage)
            XCTAssertEqual(link.createdAt, full.createdAt)
        }
        let memo = Lineage.Memo()
        let first = try Lineage.of(checkpoint: c3, root: root, memo: memo)
        XCTAssertEqual(first.shards.map(\.name), try Lineage.of(checkpoint: c3, root: root).shards.map(\.name))
        // Damage c1 in place (a second walk without the memo would throw): the memo answers.
        try FileIO.publish("not a checkpoint", to: c1)
        XCTAssertThrowsError(try Lineage.of(checkpoint: c3, root: root))
        let again = try Lineage.of(checkpoint: c2, root: root, memo: memo)
        XCTAssertEqual(again.shards.map(\.name), ["s1", "s2", "s3"])
    }

    /// JSONTop picks top-level members without being fooled by what strings and nested
    /// values contain, and gives up (nil: the caller decodes everything) on text it does not
    /// understand.
    func testJSONTopPicksMembersAndGivesUpOnOddText() throws {
        func pick(_ t: String, _ keys: Set<String>) -> String? {
            JSONTop.only(keys, of: Array(t.utf8)[...]).map { String(decoding: $0, as: UTF8.self) }
        }
        let meta = #"{"a":1,"cursor":{"shards":[{"x":""parent":"evil"}]"},[1,[2,{"}":"{"}]]]},"lineage":[{"name":"s1"}], "parent" : "main/c1.ppc" ,"z":null}"#
        let got = try XCTUnwrap(pick(meta, ["parent", "lineage"]))
        XCTAssertEqual(got, #"{"lineage":[{"name":"s1"}],"parent" : "main/c1.ppc"}"#)
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(got.utf8)) as? [String: Any])
        XCTAssertEqual(o["parent"] as? String, "main/c1.ppc")
        XCTAssertEqual(pick(#"{"parent":null,"n":-1.5e3,"t":true}"#, ["parent", "n", "t"]), #"{"parent":null,"n":-1.5e3,"t":true}"#)
        XCTAssertEqual(pick("{}", ["parent"]), "{}")
        XCTAssertEqual(pick(#"{"a":1}"#, ["parent"]), "{}")
        for bad in ["", "[1]", #"{"a":1"#, #"{"a" 1}"#, #"{"a":"unterminated}"#, #"{"a":[1,2}"#, #"{"a":1,}"#, #"{a:1}"#] {
            XCTAssertNil(pick(bad, ["a"]), bad)
        }
    }

    /// A checkpoint whose meta carries a data cursor of thousands of shards (years of a
    /// stream) still links to exactly what the full meta says, and a head file too.
    func testLinkSkipsALargeCursor() throws {
        let dir = try TestSupport.tempDir("lineage-cursor")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try trainer()
        let c1 = try write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1"], trainer: t)
        var meta = try Checkpoint.readHead(path: c1).meta
        meta.parent = "main/c0.ppc"
        meta.cursor.shards = (0..<3000).map { i in
            ShardProgress(shard: ShardRef(name: "20260101T000000Z-\(i)-000.pps", sha256: String(repeating: "a", count: 64)),
                          examples: i + 1, passes: 1, position: 0)
        }
        let big = root.checkpoints(run: "main") + "/c2.ppc"
        try FileIO.publish(try t.checkpointBytes(meta: meta), to: big)
        let link = try Lineage.link(big), full = try Checkpoint.readHead(path: big, cursor: true).meta
        XCTAssertEqual(full.cursor.shards.count, 3000)
        XCTAssertEqual(try Checkpoint.readHead(path: big).meta.cursor.shards.count, 0, "not read unless asked")
        XCTAssertEqual(link.parent, "main/c0.ppc")
        XCTAssertEqual(link.lineage, full.lineage)
        XCTAssertEqual(link.createdAt, full.createdAt)
        let head = try Checkpoint.keepHead(of: big, root: root)
        let hl = try Lineage.link(head)
        XCTAssertEqual(hl.parent, "main/c0.ppc")
        XCTAssertEqual(hl.lineage, full.lineage)
        // The head does not keep the cursor: its size does not grow with the run's history.
        XCTAssertLessThan(try FileIO.readAll(head).count, 4096, "a head is the meta without the data cursor")
        XCTAssertEqual(try Checkpoint.readHead(path: head, cursor: true).meta.cursor.shards.count, 0)
    }

    /// Heads written by older builds carry the data cursor (2.7 MB each after 75 simulated
    /// days of 5-minute ingests; heads/ grew with the square of the history). `slimHeads`
    /// rewrites them without it, everything else equal, and leaves slim heads alone.
    func testSlimHeadsDropsTheCursorOfOldHeadsAndKeepsTheRest() throws {
        let dir = try TestSupport.tempDir("slim-heads")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try trainer()
        let c1 = try write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1"], trainer: t)
        let slim = try Checkpoint.keepHead(of: c1, root: root)
        var meta = try Checkpoint.readHead(path: c1).meta
        meta.parent = "main/c1.ppc"
        meta.cursor.shards = (0..<2000).map { i in
            ShardProgress(shard: ShardRef(name: "20260101T000000Z-\(i)-000.pps", sha256: String(repeating: "a", count: 64)),
                          examples: i + 1, passes: 1, position: 0)
        }
        // An old head: the whole meta, cursor included, as older builds wrote it.
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let fat = root.heads(run: "main") + "/c2.ppc.head"
        try FileIO.publish(Array(try enc.encode(meta)), to: fat)
        XCTAssertGreaterThan(try FileIO.readAll(fat).count, 200_000)
        let slimBefore = try FileIO.readAll(slim)

        XCTAssertEqual(try Checkpoint.slimHeads(run: "main", root: root), ["c2.ppc.head"])
        XCTAssertLessThan(try FileIO.readAll(fat).count, 4096)
        var expect = meta
        expect.cursor = DataCursor()
        XCTAssertEqual(try Checkpoint.readHeadFile(fat), expect, "the same meta but the cursor")
        XCTAssertEqual(try FileIO.readAll(slim), slimBefore, "a slim head is not rewritten")
        XCTAssertEqual(try Checkpoint.slimHeads(run: "main", root: root), [], "nothing left to do")
        XCTAssertEqual(try Checkpoint.slimHeads(run: "none", root: root), [], "a run without heads")
        XCTAssertEqual(try FileIO.entries(root.heads(run: "main"))?.sorted(), ["c1.ppc.head", "c2.ppc.head"], "no temp left")
    }

    /// The revert point found from a head by the lineage of each member (heads keep no
    /// cursor): the parent of the oldest member that trained on the shard.
    func testNewestWithoutAShardFollowsTheLineageThroughHeads() throws {
        let dir = try TestSupport.tempDir("newest-without")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try trainer()
        let c1 = try write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1"], trainer: t)
        let c2 = try write(root, run: "main", file: "c2.ppc", parent: "main/c1.ppc", shards: ["s2"], trainer: t)
        let c3 = try write(root, run: "main", file: "c3.ppc", parent: "main/c2.ppc", shards: ["s3", "s2"], trainer: t)
        let c4 = try write(root, run: "main", file: "c4.ppc", parent: "main/c3.ppc", shards: ["s4"], trainer: t)
        let h2 = try Checkpoint.keepHead(of: c2, root: root), h3 = try Checkpoint.keepHead(of: c3, root: root)
        try FileIO.removeDurably(c2)
        try FileIO.removeDurably(c3)
        func at(_ shard: String, _ from: String) throws -> String? { try Lineage.newestWithout(shard: shard, from: from, root: root).target }
        XCTAssertEqual(try at("s2", h3), c1, "s2 first trained in c2 (replayed in c3): before it is c1")
        XCTAssertEqual(try at("s3", c4), h2)
        XCTAssertEqual(try at("s4", c4), h3)
        XCTAssertNil(try at("s1", c4), "the run's first checkpoint trained it: a fresh model")
        XCTAssertEqual(try at("s9", h3), h3, "never trained: the start itself")
        XCTAssertNil(try Lineage.newestWithout(shard: "s2", from: c4, root: root).missingParent)
        // c1 gone without a head: the part before c2 is unknown, and said so.
        try FileIO.removeDurably(c1)
        var r = try Lineage.newestWithout(shard: "s2", from: c4, root: root)
        XCTAssertEqual(r.target, h2)
        XCTAssertEqual(r.missingParent, "main/c1.ppc")
        r = try Lineage.newestWithout(shard: "s1", from: c4, root: root)
        XCTAssertEqual(r.target, c4)
        XCTAssertEqual(r.missingParent, "main/c1.ppc")
    }

    /// Issue 13: retention deletes weights but keeps heads, so the lineage stays complete
    /// (it was "incomplete" and pp-select refused every later candidate).
    func testLineageStaysCompleteThroughKeptHeads() throws {
        let dir = try TestSupport.tempDir("heads")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        let t = try trainer()
        let c1 = try write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1"], trainer: t)
        let c2 = try write(root, run: "main", file: "c2.ppc", parent: "main/c1.ppc", shards: ["s2"], trainer: t)
        let c3 = try write(root, run: "main", file: "c3.ppc", parent: "main/c2.ppc", shards: ["s3"], trainer: t)
        let head = try Checkpoint.keepHead(of: c2, root: root)
        XCTAssertEqual(head, root.heads(run: "main") + "/c2.ppc.head")
        try FileIO.removeDurably(c2)
        try FileIO.removeDurably(c1)   // deleted without a head: the walk must say so
        XCTAssertEqual(Lineage.resolveParent("main/c2.ppc", root: root), head)
        var l = try Lineage.of(checkpoint: c3, root: root)
        XCTAssertEqual(l.shards.map(\.name), ["s2", "s3"])
        XCTAssertFalse(l.complete)
        XCTAssertEqual(l.missingParent, "main/c1.ppc")
        // c1's head kept too (written from a copy before it was deleted): complete again.
        let c1again = try write(root, run: "main", file: "c1.ppc", parent: nil, shards: ["s1"], trainer: t)
        try Checkpoint.keepHead(of: c1again, root: root)
        try FileIO.removeDurably(c1again)
        l = try Lineage.of(checkpoint: c3, root: root)
        XCTAssertEqual(l.shards.map(\.name), ["s1", "s2", "s3"])
        XCTAssertTrue(l.complete)
        XCTAssertEqual(l.chain.count, 3)
        // A head is a meta only: the same meta as the checkpoint's, no vocabulary.
        XCTAssertEqual(try Checkpoint.readHead(path: head).meta.lineage.map(\.name), ["s2"])
        XCTAssertThrowsError(try Checkpoint.readHead(path: head, vocabulary: true))
        // A damaged head is refused like a damaged checkpoint.
        try FileIO.publish("{not json", to: head)
        XCTAssertThrowsError(try Lineage.of(checkpoint: c3, root: root)) { e in XCTAssertEqual((e as? PPError)?.status, .corrupt) }
    }

    /// Issue 15, item 11: the walk stays inside the root and reads regular files only. A
    /// parent that is a FIFO outside the root used to hang it (open(2) waits for a writer);
    /// a symbolic link in checkpoints/ used to be followed out of the root.
    func testLineageStaysInsideTheRootAndRefusesNonRegularFiles() throws {
        let dir = try TestSupport.tempDir("lineage")
        let outside = try TestSupport.tempDir("outside")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: outside) }
        let root = Root(dir)
        let t = try trainer()
        let fifo = outside + "/fifo.ppc"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let away = try write(Root(outside), run: "x", file: "away.ppc", parent: nil, shards: ["outside-shard"], trainer: t)
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        XCTAssertEqual(symlink(away, root.checkpoints(run: "main") + "/link.ppc"), 0)
        XCTAssertEqual(mkfifo(root.checkpoints(run: "main") + "/pipe.ppc", 0o600), 0)
        _ = try write(root, run: "main", file: "base.ppc", parent: nil, shards: ["s0"], trainer: t)

        for parent in [fifo, away, "main/link.ppc", "main/pipe.ppc", "main/../base.ppc", "../main/base.ppc", "x/away.ppc"] {
            let c = try write(root, run: "main", file: "child.ppc", parent: parent, shards: ["s1"], trainer: t)
            XCTAssertNil(Lineage.resolveParent(parent, root: root), parent)
            // Run the walk where a hang can be seen: a FIFO would block open(2) for ever.
            let done = DispatchSemaphore(value: 0)
            final class Box: @unchecked Sendable { var result: Lineage.Result? }
            let box = Box()
            DispatchQueue.global().async { box.result = try? Lineage.of(checkpoint: c, root: root); done.signal() }
            if done.wait(timeout: .now() + 10) == .timedOut {
                XCTFail("lineage walk hangs on parent \(parent)")
                let w = open(fifo, O_WRONLY | O_NONBLOCK); if w >= 0 { close(w) }   // let it go
                continue
            }
            let l = try XCTUnwrap(box.result, parent)
            XCTAssertEqual(l.shards.map(\.name), ["s1"], parent)
            XCTAssertFalse(l.complete, parent)
            XCTAssertEqual(l.missingParent, parent)
        }
        XCTAssertEqual(Lineage.resolveParent("main/base.ppc", root: root), root.checkpoints(run: "main") + "/base.ppc")
        // A checkpoint path that is a FIFO is refused at once by both readers.
        for read in [{ _ = try Checkpoint.readHead(path: fifo) }, { _ = try Checkpoint.load(path: fifo) }] {
            XCTAssertThrowsError(try read()) { e in
                XCTAssertEqual((e as? PPError)?.status, .corrupt, "\(e)")
                XCTAssertTrue("\(e)".contains("not a regular file"), "\(e)")
            }
        }
    }

    func testPoisonCollectsQuarantineAndSuspectsOfEveryRun() throws {
        let dir = try TestSupport.tempDir("lineage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        XCTAssertEqual(try Poison.shards(root: root), [:])
        try FileIO.publish("{}\n", to: root.quarantine + "/s3.reason.json")
        try FileIO.publish("raw bytes", to: root.quarantine + "/s3")
        try FileIO.makeDirectories(root.run("main"))
        try FileIO.makeDirectories(root.run("other"))
        var list = SuspectList()
        list.mark(SuspectShard(name: "s2", reason: "loss spike", loss: 9, reference: 1, at: "t0", by: "pp-train guard"))
        list.mark(SuspectShard(name: "s2", reason: "rewind", at: "t1", by: "alice"))   // replaces
        XCTAssertEqual(list.shards.count, 1)
        try list.publish(root: root, run: "other")
        XCTAssertEqual(try SuspectList.load(root: root, run: "other"), list)
        XCTAssertEqual(try SuspectList.load(root: root, run: "main"), SuspectList())

        let p = try Poison.shards(root: root)
        XCTAssertEqual(p["s3"], "quarantined")
        XCTAssertEqual(p["s2"], "suspect in run other: rewind")
        XCTAssertEqual(p.count, 2)

        let t = try trainer()
        let c = try write(root, run: "main", file: "c.ppc", parent: nil, shards: ["s1", "s2", "s3"], trainer: t)
        let found = Poison.find(in: try Lineage.of(checkpoint: c, root: root), poison: p)
        XCTAssertEqual(found.map(\.shard), ["s2", "s3"])

        // A damaged suspect list is an error, not an empty list.
        try FileIO.publish("{not json", to: SuspectList.path(root: root, run: "main"))
        XCTAssertThrowsError(try Poison.shards(root: root)) { e in
            XCTAssertEqual((e as? PPError)?.status, .corrupt)
            XCTAssertTrue((e as? PPError)?.message.contains("suspects.json") ?? false)
        }
    }
}
