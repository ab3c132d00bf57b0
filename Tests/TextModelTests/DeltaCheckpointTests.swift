import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// Issue 19, part 2, piece B: delta checkpoints. A delta stores only the rows changed since
/// its base, the checkpoint before it (a chain: full, delta of the full, delta of that
/// delta, ...); loading resolves the chain, and must give exactly what the trainer would
/// have written as a full checkpoint, in both load modes; resume from a delta is exact; a
/// missing, damaged or looping base is a `.corrupt` error naming it.
final class DeltaCheckpointTests: XCTestCase {
    func config(hidden: Int = 0, threads: Int = 1, bucket: Int = 20_000) -> ModelConfig {
        .small(dim: 12, hidden: hidden, bucket: bucket, capacity: 40, maxn: 5, threads: threads, seed: 42)
    }

    func meta(_ c: ModelConfig, step: Int) -> CheckpointMeta {
        var m = CheckpointMeta(run: "main", createdAt: "2026-12-06T00:00:00Z", step: step, tokens: 0, config: c, knobs: Knobs())
        m.cursor.shards = [ShardProgress(shard: ShardRef(name: "s\(step).pps", sha256: String(repeating: "0", count: 64)), examples: 10, passes: 1, position: 0)]
        return m
    }

    /// Batch `bi`: a few labels with their own words and noise words drawn from a pool that
    /// moves with bi (a trickling stream: each batch touches a few new rows, many old ones).
    func batch(_ bi: Int, size: Int = 120) -> Batch {
        var rng = RNG(seed: UInt64(1000 + bi))
        var b = Batch()
        for i in 0..<size {
            let k = Int(rng.next() % 4)
            var toks = ["w\(k)a", "w\(k)b"]
            for _ in 0..<4 { toks.append("n\(bi * 3 + Int(rng.next() % 50))") }
            b.append(label: "label\(k)", tokens: i % 13 == 0 ? [] : toks)
        }
        return b
    }

    /// Writes `bytes` as runs/main/checkpoints/NAME and tells the trainer.
    func publish(_ t: Trainer, _ bytes: [UInt8], _ root: Root, _ name: String) throws -> String {
        let p = root.checkpoints(run: "main") + "/" + name
        try FileIO.publish(bytes, to: p)
        t.checkpointPublished(as: "main/" + name)
        return p
    }

    func newRoot() throws -> Root {
        let root = Root(try TestSupport.tempDir("delta"))
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        return root
    }

    let probes = [["w0a", "n3"], ["w2b", "w1a", "n59", "n61"], ["never", "seen"], [], ["n100", "w3a"]]

    /// The chain (full + deltas, each of the one before) loads to exactly the state the
    /// trainer would have written as a full checkpoint: re-encoded in full it is the same bytes, and both load modes predict
    /// bit for bit the same. Linear and hidden models, 1 and 2 threads (each worker marks the
    /// rows it updates), and with the averaged weights on.
    func testChainLoadsBitIdenticalToTheFullCheckpoint() throws {
        for (hidden, threads, average) in [(0, 1, 0.0), (8, 1, 0.0), (0, 2, 0.0), (0, 1, 200.0)] {
            let root = try newRoot()
            defer { try? FileManager.default.removeItem(atPath: root.path) }
            let c = config(hidden: hidden, threads: threads)
            let t = try Trainer(config: c, knobs: Knobs(lr: 0.2, dropout: 0.1, average: average))
            let policy = DeltaPolicy(fullEvery: 24, maxFraction: 100)
            for bi in 0..<3 { _ = try t.train(batch(bi)) }
            let fullBytes = try t.checkpointBytes(meta: meta(c, step: 3), policy: policy)
            XCTAssertEqual(t.pendingCheckpointIsDelta, false, "the first checkpoint is full")
            let fp = try publish(t, fullBytes, root, "ckpt-a.ppc")
            XCTAssertNil(try Checkpoint.readHeadBase(path: fp), "a full checkpoint names no base")
            for round in 1...3 {
                _ = try t.train(batch(2 + round))
                let m = meta(c, step: 3 + round)
                let d = try t.checkpointBytes(meta: m, policy: policy)
                XCTAssertEqual(t.pendingCheckpointIsDelta, true, "round \(round)")
                let dp = try publish(t, d, root, "ckpt-d\(round).ppc")
                // What the trainer would have written in full at this point.
                let full = try t.checkpointBytes(meta: m)
                let what = "hidden \(hidden) threads \(threads) average \(average) round \(round)"
                let loaded = try Checkpoint.load(path: dp)
                let parent = round == 1 ? "main/ckpt-a.ppc" : "main/ckpt-d\(round - 1).ppc"
                XCTAssertEqual(loaded.meta.base, parent, "a chain: each delta's base is the checkpoint before it")
                XCTAssertEqual(try Checkpoint.readHeadBase(path: dp), parent, "retention's cheap read of the base")
                XCTAssertEqual(loaded.meta.delta, round)
                XCTAssertEqual(try Checkpoint.chain(of: dp).count, round + 1)
                XCTAssertEqual(loaded.meta.cursor, m.cursor)
                var plain = loaded.meta
                plain.base = nil; plain.delta = nil
                XCTAssertTrue(try Trainer(checkpoint: loaded).checkpointBytes(meta: plain) == full, "\(what): the chain differs from the full checkpoint")
                XCTAssertLessThan(d.count, full.count, what)
                let ref = try Checkpoint.decode(full, path: "full.ppc")
                for averaged in [false, true] {
                    let inf = try Checkpoint.load(path: dp, mode: .inference, averaged: averaged)
                    let fullInf = try Checkpoint.decode(full, path: "full.ppc", mode: .inference, averaged: averaged)
                    if !averaged {
                        // Every row reads as the full checkpoint's, the rows the delta added
                        // to its base's (PackedRows.readDelta's extra) too.
                        let packed = try XCTUnwrap(inf.model.packed)
                        var mismatches = 0
                        for r in 0..<ref.model.table.rows
                        where UnsafeBufferPointer(start: ref.model.table.row(r), count: c.dim).map(\.bitPattern)
                            != UnsafeBufferPointer(start: packed.row(r), count: c.dim).map(\.bitPattern) { mismatches += 1 }
                        XCTAssertEqual(mismatches, 0, "\(what): rows differ from the full checkpoint's")
                        XCTAssertGreaterThan(packed.extra?.stored ?? 0, 0, "\(what): the delta adds rows to its base")
                        XCTAssertNil(packed.extra?.extra, "\(what): the added rows stay one level deep down a chain")
                    }
                    for p in probes {
                        XCTAssertEqual(inf.model.predict(tokens: p).map(\.bitPattern), fullInf.model.predict(tokens: p).map(\.bitPattern), "\(what) averaged \(averaged) \(p)")
                        if !averaged { XCTAssertEqual(inf.model.predict(tokens: p), ref.model.predict(tokens: p), "\(what) \(p)") }
                    }
                }
            }
        }
    }

    /// Resuming from a delta (single thread) continues exactly as if the trainer had never
    /// stopped, and the resumed trainer's next checkpoint is a delta of the one it resumed
    /// from (the chain goes on).
    func testResumeFromADeltaEqualsNeverStopping() throws {
        for hidden in [0, 8] {
            let root = try newRoot()
            defer { try? FileManager.default.removeItem(atPath: root.path) }
            let c = config(hidden: hidden)
            let knobs = Knobs(lr: 0.15, dropout: 0.25)
            let policy = DeltaPolicy(fullEvery: 24, maxFraction: 100)
            let straight = try Trainer(config: c, knobs: knobs)
            for bi in 0..<6 { _ = try straight.train(batch(bi)) }

            let a = try Trainer(config: c, knobs: knobs)
            for bi in 0..<2 { _ = try a.train(batch(bi)) }
            _ = try publish(a, try a.checkpointBytes(meta: meta(c, step: 2), policy: policy), root, "ckpt-a.ppc")
            _ = try a.train(batch(2))
            let dp = try publish(a, try a.checkpointBytes(meta: meta(c, step: 3), policy: policy), root, "ckpt-b.ppc")
            XCTAssertEqual(try Checkpoint.readHead(path: dp).meta.base, "main/ckpt-a.ppc")

            let resumed = try Trainer(checkpoint: try Checkpoint.load(path: dp))
            XCTAssertEqual(resumed.deltaBase, "main/ckpt-b.ppc")
            XCTAssertEqual(resumed.deltasSinceFull, 1)
            for bi in 3..<6 { _ = try resumed.train(batch(bi)) }
            let m = meta(c, step: 6)
            XCTAssertTrue(try resumed.checkpointBytes(meta: m) == straight.checkpointBytes(meta: m), "hidden \(hidden): resumed differs")
            // Its next delta (of ckpt-b, itself a delta of ckpt-a) loads to the same state too.
            let d2 = try resumed.checkpointBytes(meta: m, policy: policy)
            XCTAssertEqual(resumed.pendingCheckpointIsDelta, true)
            let d2p = try publish(resumed, d2, root, "ckpt-c.ppc")
            let ck = try Checkpoint.load(path: d2p)
            XCTAssertEqual(ck.meta.delta, 2)
            XCTAssertEqual(ck.meta.base, "main/ckpt-b.ppc")
            var plain = ck.meta
            plain.base = nil; plain.delta = nil
            XCTAssertTrue(try Trainer(checkpoint: ck).checkpointBytes(meta: plain) == straight.checkpointBytes(meta: plain))
            // Resuming from a full checkpoint makes it the base of the next deltas.
            let fromFull = try Trainer(checkpoint: try Checkpoint.load(path: root.checkpoints(run: "main") + "/ckpt-a.ppc"))
            XCTAssertEqual(fromFull.deltaBase, "main/ckpt-a.ppc")
            XCTAssertEqual(fromFull.deltasSinceFull, 0)
            // ... but not for another run (a run seeded with --init from it): that one's first
            // checkpoint is full.
            var other = meta(c, step: 2)
            other.run = "other"
            _ = try fromFull.checkpointBytes(meta: other, policy: policy)
            XCTAssertEqual(fromFull.pendingCheckpointIsDelta, false)
            _ = try fromFull.checkpointBytes(meta: meta(c, step: 2), policy: policy)
            XCTAssertEqual(fromFull.pendingCheckpointIsDelta, true)
        }
    }

    /// Levels (DeltaPolicy.chainLimit): with a limit of 3, a stream of checkpoints goes full,
    /// link (depth 1), link (2), link (3), cumulative (1, base the full one), link (2), ...; a
    /// load never reads more than the full one and three deltas; every checkpoint, loaded,
    /// is exactly the trainer's state; a trainer resumed from any of them writes from then on
    /// exactly the bytes of one that never stopped (the same kinds, bases and rows).
    func testLevelsBoundTheChainAndResumeIsExact() throws {
        for hidden in [0, 8] {
            let root = try newRoot()
            defer { try? FileManager.default.removeItem(atPath: root.path) }
            let c = config(hidden: hidden)
            let knobs = Knobs(lr: 0.15, dropout: 0.25)
            let policy = DeltaPolicy(fullEvery: 11, maxFraction: 100, chainLimit: 3)
            let name = { (k: Int) in String(format: "ckpt-%02d.ppc", k) }
            // One trainer writes 13 checkpoints, one per batch.
            let t = try Trainer(config: c, knobs: knobs)
            var files: [[UInt8]] = []
            for k in 0..<13 {
                _ = try t.train(batch(k))
                let b = try t.checkpointBytes(meta: meta(c, step: k), policy: policy)
                files.append(b)
                _ = try publish(t, b, root, name(k))
            }
            let heads = try (0..<13).map { try Checkpoint.readHead(path: root.checkpoints(run: "main") + "/" + name($0)).meta }
            XCTAssertEqual(heads.map(\.delta), [nil, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, nil, 1], "hidden \(hidden)")
            XCTAssertEqual(heads.map(\.sinceFull), [nil, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, nil, 1])
            XCTAssertEqual(heads.map(\.base), [nil, "main/" + name(0), "main/" + name(1), "main/" + name(2), "main/" + name(0),
                                               "main/" + name(4), "main/" + name(5), "main/" + name(0), "main/" + name(7),
                                               "main/" + name(8), "main/" + name(0), nil, "main/" + name(11)])
            for k in 0..<13 {
                let path = root.checkpoints(run: "main") + "/" + name(k)
                XCTAssertLessThanOrEqual(try Checkpoint.chain(of: path).count, 4, "\(name(k)): the full one and at most three deltas")
                // Loaded, it is the state the trainer had: a fresh trainer from it writes, in
                // full, what a trainer replaying batches 0...k writes.
                let replay = try Trainer(config: c, knobs: knobs)
                for bi in 0...k { _ = try replay.train(batch(bi)) }
                var plain = meta(c, step: 99)
                plain.base = nil
                XCTAssertTrue(try Trainer(checkpoint: try Checkpoint.load(path: path)).checkpointBytes(meta: plain) == replay.checkpointBytes(meta: plain),
                              "\(name(k)) loads to a different state")
            }
            // Resumed from any of them, the next checkpoints are the same bytes as the
            // never-stopped trainer's (its cumulative deltas need the rows of the whole chain).
            for k in [2, 3, 5, 9] {
                let other = try newRoot()
                defer { try? FileManager.default.removeItem(atPath: other.path) }
                for j in 0...k {
                    try FileIO.publish(files[j], to: other.checkpoints(run: "main") + "/" + name(j))
                }
                let r = try Trainer(checkpoint: try Checkpoint.load(path: other.checkpoints(run: "main") + "/" + name(k)))
                for j in (k + 1)..<13 {
                    _ = try r.train(batch(j))
                    let b = try r.checkpointBytes(meta: meta(c, step: j), policy: policy)
                    XCTAssertTrue(b == files[j], "resumed from \(name(k)): \(name(j)) differs (delta \(String(describing: heads[j].delta)))")
                    _ = try publish(r, b, other, name(j))
                }
            }
        }
    }

    /// A delta's data cursor is a patch against its base's (format version 3): its size
    /// follows what changed, not every shard the run ever saw, and every reader (full load,
    /// readHead, a resumed trainer's next delta) gets the whole cursor back.
    func testADeltaStoresItsCursorAsAPatchAgainstItsBase() throws {
        let root = try newRoot()
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        let policy = DeltaPolicy(fullEvery: 24, maxFraction: 100)
        func entry(_ i: Int, passes: Int = 1, position: Int = 0) -> ShardProgress {
            ShardProgress(shard: ShardRef(name: "20260101T\(String(format: "%06d", i))Z-abc.pps", sha256: String(repeating: "\(i % 10)", count: 64)),
                          examples: 7, passes: passes, position: position)
        }
        var m = meta(c, step: 1)
        m.cursor = DataCursor(shards: (0..<5000).map { entry($0) }, rngState: 11)
        _ = try t.train(batch(0))
        let fullBytes = try t.checkpointBytes(meta: m, policy: policy)
        let fp = try publish(t, fullBytes, root, "ckpt-a.ppc")
        XCTAssertEqual(try GuardVersion.of(fp), Checkpoint.version, "a full checkpoint stays version 2")
        // Two deltas: one entry moves on, one shard is new, one is gone.
        var sizes: [Int] = []
        for round in 1...2 {
            _ = try t.train(batch(round))
            var shards = m.cursor.shards.filter { $0.shard.name != entry(round).shard.name }
            shards[100] = ShardProgress(shard: shards[100].shard, examples: 7, passes: 1 + round, position: 3)
            shards.append(entry(9000 + round))
            var md = meta(c, step: 1 + round)
            md.cursor = DataCursor(shards: shards.sorted { $0.shard.name < $1.shard.name }, rngState: UInt64(20 + round))
            let d = try t.checkpointBytes(meta: md, policy: policy)
            XCTAssertEqual(t.pendingCheckpointIsDelta, true)
            let dp = try publish(t, d, root, "ckpt-d\(round).ppc")
            XCTAssertEqual(try GuardVersion.of(dp), Checkpoint.deltaVersion)
            sizes.append(try GuardVersion.cursorBytes(dp))
            XCTAssertEqual(try Checkpoint.load(path: dp).meta.cursor, md.cursor, "round \(round): full load")
            XCTAssertEqual(try Checkpoint.readHead(path: dp, cursor: true).meta.cursor, md.cursor, "round \(round): readHead")
            XCTAssertTrue(try Checkpoint.readHead(path: dp).meta.cursor.shards.isEmpty, "not read unless asked")
            _ = try Checkpoint.load(path: dp, mode: .inference)   // checked in place
            // A trainer resumed from the delta writes its next delta as a patch of that delta.
            let resumed = try Trainer(checkpoint: try Checkpoint.load(path: dp))
            let next = try resumed.checkpointBytes(meta: md, policy: policy)
            XCTAssertEqual(resumed.pendingCheckpointIsDelta, true)
            let np = root.checkpoints(run: "main") + "/ckpt-n\(round).ppc"
            try FileIO.publish(next, to: np)
            XCTAssertEqual(try GuardVersion.of(np), Checkpoint.deltaVersion)
            XCTAssertEqual(try Checkpoint.load(path: np).meta.cursor, md.cursor)
        }
        let fullCursor = try GuardVersion.cursorBytes(fp)
        XCTAssertGreaterThan(fullCursor, 5000 * 40)
        for s in sizes { XCTAssertLessThan(s, 400, "a patch of 3 changes, not the \(fullCursor)-byte cursor") }
        // Down the chain: the second delta's patch is against the first (itself a patch).
        XCTAssertEqual(try Checkpoint.readHeadBase(path: root.checkpoints(run: "main") + "/ckpt-d2.ppc"), "main/ckpt-d1.ppc")

        // Hostile: a version 3 file without a base, a patch whose removal is not UTF-8.
        let raw = try Zstd.decompress(try FileIO.readAll(fp))
        var v3 = raw
        v3[8] = 3
        XCTAssertThrowsError(try Checkpoint.decode(try Zstd.compress(v3, level: 1), path: "v3.ppc")) { e in
            XCTAssertTrue((e as? PPError)?.message.contains("is a delta's") == true, "\(e)")
        }
        var r = ByteWriter(capacity: 64)
        r.u64(1); Checkpoint.varint(0, into: &r); Checkpoint.varint(1, into: &r); r.u16(2); r.bytes([0xff, 0xfe])
        try r.buf.withUnsafeBytes { p in
            var br = ByteReader(bytes: p, pos: 0, end: p.count, path: "x.ppc")
            XCTAssertThrowsError(try Checkpoint.readCursorPatch(&br)) { e in XCTAssertTrue("\(e)".contains("not UTF-8"), "\(e)") }
        }
    }

    /// A full checkpoint every `fullEvery`; a delta that would hold more than `maxFraction`
    /// of its base's rows is written full; deltas are much smaller when little changed.
    func testPolicyFullEveryKAndWhenTooLarge() throws {
        let root = try newRoot()
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let c = config(bucket: 200_000)
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        for bi in 0..<20 { _ = try t.train(batch(bi)) }
        var kinds: [Bool] = [], sizes: [Int] = []
        for k in 0..<7 {
            _ = try t.train(batch(20 + k, size: 10))
            let b = try t.checkpointBytes(meta: meta(c, step: k), policy: DeltaPolicy(fullEvery: 3, maxFraction: 0.5))
            kinds.append(try XCTUnwrap(t.pendingCheckpointIsDelta))
            sizes.append(b.count)
            _ = try publish(t, b, root, "ckpt-\(k).ppc")
        }
        XCTAssertEqual(kinds, [false, true, true, false, true, true, false])
        XCTAssertLessThan(sizes[1] * 3, sizes[0], "a delta of a small change is a fraction of a full checkpoint: \(sizes)")
        // Far more changed rows than half of the base's: full.
        for bi in 0..<40 { _ = try t.train(batch(100 + bi * 7)) }
        _ = try t.checkpointBytes(meta: meta(c, step: 99), policy: DeltaPolicy(fullEvery: 3, maxFraction: 0.5))
        XCTAssertEqual(t.pendingCheckpointIsDelta, false)
        // The default policy of checkpointBytes(meta:) never writes a delta.
        _ = try t.checkpointBytes(meta: meta(c, step: 100))
        XCTAssertEqual(t.pendingCheckpointIsDelta, false)
    }

    /// A delta whose base is missing, damaged, a loop back to itself or not older is refused
    /// as corrupt in both modes, and the message names the base.
    func testMissingOrBadBaseIsCorruptNamingIt() throws {
        let root = try newRoot()
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        let policy = DeltaPolicy(fullEvery: 24, maxFraction: 100)
        _ = try t.train(batch(0))
        let basePath = try publish(t, try t.checkpointBytes(meta: meta(c, step: 1), policy: policy), root, "ckpt-a.ppc")
        let good = try Data(contentsOf: URL(fileURLWithPath: basePath))
        _ = try t.train(batch(1))
        let dp = try publish(t, try t.checkpointBytes(meta: meta(c, step: 2), policy: policy), root, "ckpt-b.ppc")
        func refused(_ expect: String, line: UInt = #line) {
            for mode in Checkpoint.LoadMode.allCases {
                XCTAssertThrowsError(try Checkpoint.load(path: dp, mode: mode), line: line) { e in
                    let p = e as? PPError
                    XCTAssertEqual(p?.status, .corrupt, "\(e)", line: line)
                    XCTAssertTrue(p?.message.hasPrefix(dp + ": its base checkpoint main/ckpt-a.ppc") == true, "\(e)", line: line)
                    XCTAssertTrue(p?.message.contains(expect) == true, "\(mode): \(e)", line: line)
                }
            }
        }
        XCTAssertNoThrow(try Checkpoint.load(path: dp))
        try FileManager.default.removeItem(atPath: basePath)
        refused("is missing")
        var bad = [UInt8](good)
        bad[bad.count - 1] ^= 1
        try FileIO.publish(bad, to: basePath)
        refused("checksum mismatch")
        // The base replaced by the delta itself: a chain that loops (its base names itself).
        try FileIO.publish(try [UInt8](Data(contentsOf: URL(fileURLWithPath: dp))), to: basePath)
        refused("already in its chain (a loop)")
        XCTAssertThrowsError(try Checkpoint.readHead(path: dp, cursor: true)) { e in
            XCTAssertTrue("\(e)".contains("a loop"), "\(e)")
        }
        // The base found through runs/main/rewound/ (a rewind moved it).
        try FileIO.makeDirectories(root.rewound(run: "main"))
        try FileManager.default.removeItem(atPath: basePath)
        try FileIO.publish([UInt8](good), to: root.rewound(run: "main") + "/ckpt-a.ppc")
        XCTAssertNoThrow(try Checkpoint.load(path: dp, mode: .inference))
        // A symbolic link to the delta (as `deployed` is) finds the base beside its target.
        let link = root.path + "/deployed"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: dp)
        XCTAssertNoThrow(try Checkpoint.load(path: link, mode: .inference))
    }

    /// `since_full` (levels) is a count a trainer resumes with: one that does not fit the
    /// delta's depth, or is not above its base's, makes the file corrupt.
    func testHostileSinceFullIsRefused() throws {
        let root = try newRoot()
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let c = config()
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        let policy = DeltaPolicy(fullEvery: 24, maxFraction: 100, chainLimit: 2)
        var paths: [String] = []
        for k in 0..<5 {
            _ = try t.train(batch(k))
            paths.append(try publish(t, try t.checkpointBytes(meta: meta(c, step: k), policy: policy), root, "ckpt-\(k).ppc"))
        }
        // ckpt-3 is the cumulative delta (depth 1, since_full 3) of ckpt-0; ckpt-4 a link of it
        // (depth 2, since_full 4).
        let m3 = try Checkpoint.readHead(path: paths[3]).meta
        XCTAssertEqual([m3.delta, m3.sinceFull], [1, 3])
        XCTAssertEqual(m3.base, "main/ckpt-0.ppc")
        XCTAssertEqual(try Checkpoint.readHead(path: paths[4]).meta.sinceFull, 4)
        let raw = try Zstd.decompress(try FileIO.readAll(paths[4]))
        XCTAssertNoThrow(try Checkpoint.decode(try Zstd.compress(raw, level: 1), path: paths[4]))
        for (bad, expect) in [(0, "since_full 0"), (-5, "since_full -5"), (1000, "since_full 1000"), (1, "since_full 1"),
                              (3, "is not the one this delta")] {
            let edited = try EditRaw().withMeta(raw) { $0.sinceFull = bad }
            XCTAssertThrowsError(try Checkpoint.decode(try Zstd.compress(edited, level: 1), path: paths[4]), "\(bad)") { e in
                XCTAssertEqual((e as? PPError)?.status, .corrupt, "\(e)")
                XCTAssertTrue("\(e)".contains(expect), "\(bad): \(e)")
            }
        }
    }
}

private struct EditRaw: RawCheckpointEditing {}

extension DeltaCheckpointTests {
    /// A chain as pp-train writes it (time-stamped names): hourly deltas, each of the one
    /// before, every one loads to the trainer's state; a delta whose base is not older (a
    /// hostile file pointing forward) is refused; a chain longer than maxChain is refused; and
    /// the rows a link stores are only those changed since its parent, so with little
    /// training between checkpoints a link is a small fraction of a cumulative delta.
    func testAChainOfTimeStampedDeltas() throws {
        let root = try newRoot()
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let c = config(bucket: 200_000)
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        let policy = DeltaPolicy(fullEvery: 24, maxFraction: 0.5)
        for bi in 0..<20 { _ = try t.train(batch(bi)) }
        var names: [String] = [], sizes: [Int] = []
        for k in 0..<6 {
            _ = try t.train(batch(20 + k, size: 8))
            let m = meta(c, step: 100 + k)
            let b = try t.checkpointBytes(meta: m, policy: policy)
            let name = CheckpointName(time: 1_780_000_000 + Double(k) * 3600, step: 100 + k).file
            let p = try publish(t, b, root, name)
            names.append(name); sizes.append(b.count)
            let full = try t.checkpointBytes(meta: m)
            var plain = try Checkpoint.load(path: p).meta
            XCTAssertEqual(plain.base, k == 0 ? nil : "main/" + names[k - 1])
            plain.base = nil; plain.delta = nil
            XCTAssertTrue(try Trainer(checkpoint: try Checkpoint.load(path: p)).checkpointBytes(meta: plain) == full, "link \(k)")
        }
        // Each link holds one small batch's rows: far less than the full checkpoint, and not
        // growing along the chain (a cumulative delta grew with every hour).
        for k in 1..<6 { XCTAssertLessThan(sizes[k] * 4, sizes[0], "\(sizes)") }
        XCTAssertLessThan(sizes[5], sizes[1] * 2, "links stay the size of one hour's change: \(sizes)")
        // Each link's vocabulary is a patch (format version 4): less than the whole, and
        // readHead rebuilds the same vocabulary down the chain as a load does.
        let dirP = root.checkpoints(run: "main")
        let fullVocab = try GuardVersion.sectionBytes(dirP + "/" + names[0], "VOCB")
        for k in 1..<6 {
            let p = dirP + "/" + names[k]
            XCTAssertEqual(try GuardVersion.of(p), Checkpoint.deltaVersion)
            // (A 40-word vocabulary churned by every batch here; VocabularyPatchTests has the
            // size of a little change in a large one.)
            XCTAssertLessThan(try GuardVersion.sectionBytes(p, "VOCB"), fullVocab, "link \(k)")
            var a = ByteWriter(), b = ByteWriter()
            try XCTUnwrap(try Checkpoint.readHead(path: p, vocabulary: true).vocabulary).serialize(into: &a)
            try Checkpoint.load(path: p, mode: .inference).model.vocabulary.serialize(into: &b)
            XCTAssertEqual(a.buf, b.buf, "link \(k)")
        }
        // A hostile delta whose base is newer than itself.
        let dir = root.checkpoints(run: "main")
        let last = dir + "/" + names[5]
        let older = dir + "/" + CheckpointName(time: 1_770_000_000, step: 105).file
        try FileManager.default.copyItem(atPath: last, toPath: older)
        for mode in Checkpoint.LoadMode.allCases {
            XCTAssertThrowsError(try Checkpoint.load(path: older, mode: mode)) { e in
                XCTAssertTrue((e as? PPError)?.message.contains("is not older than it") == true, "\(e)")
            }
        }
        // A chain longer than maxChain (the trainer never writes one: --full-every <= maxChain + 1).
        let links = try Checkpoint.chain(of: last)
        XCTAssertEqual(links.map { FileIO.split($0.path).name }, names.reversed())
        XCTAssertEqual(DeltaPolicy.maxFullEvery, Checkpoint.maxChain + 1)
    }
}

/// What a checkpoint file says of itself: its format version and its CURS section's size.
enum GuardVersion {
    static func raw(_ path: String) throws -> [UInt8] { try Zstd.decompress(try FileIO.readAll(path)) }
    static func of(_ path: String) throws -> UInt32 {
        try raw(path).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
    }
    /// The length of section `tag` (walking the sections after the meta).
    static func sectionBytes(_ path: String, _ tag: String) throws -> Int {
        let b = try raw(path)
        return b.withUnsafeBytes { p in
            var at = 16 + Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
            while at + 12 <= p.count {
                let t = String(decoding: p[at..<(at + 4)], as: UTF8.self)
                let n = Int(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self)))
                if t == tag { return n }
                at += 12 + n
            }
            return -1
        }
    }
    static func cursorBytes(_ path: String) throws -> Int {
        let b = try raw(path)
        return b.withUnsafeBytes { p in
            let ml = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
            return Int(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16 + ml + 4, as: UInt64.self)))
        }
    }
}
