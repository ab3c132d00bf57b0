// The holdout index (TextModel/HoldoutIndex.swift, docs/formats.md "Holdout index"): the window and
// its hash are the same with and without it, a changed shard is never taken from it, and a
// damaged index file is refused as a whole.

import Foundation
import XCTest
import TestSupport
@testable import Shared
@testable import TextModel

final class HoldoutIndexTests: XCTestCase {
    func shard(_ root: Root, _ name: String, _ n: Int, seed: Int = 0) throws {
        try Fixture.shard((0..<n).map { ($0 % 3 == 0 ? "b" : "a", Int64(1_700_000_000 + $0), "w\(seed) x\($0)") },
                          to: root.holdout + "/" + name)
    }

    /// Window and hash straight from the shards, as before the index.
    func direct(_ root: Root, window: Int) throws -> ([String], String) {
        let p = try EvalSet.holdoutPaths(root, window: window)
        return (p, try EvalSet.hashShards(p))
    }

    func testIndexGivesTheSameWindowAndHashAndMissesChangedShards() throws {
        let dir = try TestSupport.tempDir("hidx")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        for k in 0..<6 { try shard(root, "2026010\(k)T000000Z-0000000000000000-000.pps", 10 + k) }
        let index = HoldoutIndex()
        let paths = try EvalSet.holdoutPaths(root, window: 30, index: index)
        let hash = try EvalSet.hashShards(paths, index: index)
        XCTAssertEqual(paths.count, 3, "15 + 14 + 13 examples reach 30")
        XCTAssertEqual(try direct(root, window: 30).0, paths)
        XCTAssertEqual(try direct(root, window: 30).1, hash)
        try index.save(root, keep: paths)

        // A fresh process: the saved entries are used (each shard unchanged).
        let again = HoldoutIndex.load(root, warn: { XCTFail("unexpected warning: \($0)") })
        XCTAssertEqual(again.entries.count, 3)
        XCTAssertEqual(Set(again.entries.keys), Set(paths.map { FileIO.split($0).name }))
        XCTAssertEqual(try EvalSet.hashShards(try EvalSet.holdoutPaths(root, window: 30, index: again), index: again), hash)
        XCTAssertFalse(again.dirty, "nothing new was read")

        // The newest shard is replaced under the same name (other content, other count): its
        // stale entry must not be used.
        try shard(root, "20260105T000000Z-0000000000000000-000.pps", 40, seed: 7)
        let p2 = try EvalSet.holdoutPaths(root, window: 30, index: again)
        XCTAssertEqual(p2.count, 1, "the new 40-example shard fills the window alone")
        XCTAssertEqual(try EvalSet.hashShards(p2, index: again), try direct(root, window: 30).1)
        XCTAssertNotEqual(try EvalSet.hashShards(p2, index: again), hash)
        XCTAssertTrue(again.dirty)
        try again.save(root, keep: p2)
        XCTAssertEqual(HoldoutIndex.load(root).entries.count, 1, "only the last window is kept")
    }

    func testDamagedIndexIsIgnoredAsAWhole() throws {
        let sha = String(repeating: "a", count: 64)
        let good = "perpetuum-holdout-index 1\nx-000.pps 1 2 3 4 \(sha)\ny-000.pps 5 6 7 8 \n"
        XCTAssertEqual(try HoldoutIndex.parse(Array(good.utf8)).count, 2)
        let bad = [
            "perpetuum-holdout-index 2\n",                                        // other version
            "perpetuum-holdout-index 1\nx-000.pps 1 2 3 4 \(sha)",                  // torn last line
            "perpetuum-holdout-index 1\nx-000.pps 1 2 3 \(sha)\n",                  // 5 fields
            "perpetuum-holdout-index 1\nx-000.pps -1 2 3 4 \(sha)\n",               // negative size
            "perpetuum-holdout-index 1\nx-000.pps 1 2 3 -4 \(sha)\n",               // negative count
            "perpetuum-holdout-index 1\nx-000.pps 1 2 3 99999999999999999999 \n",   // count overflows
            "perpetuum-holdout-index 1\nx-000.pps 1 2 3 4 \(sha.uppercased())\n",   // upper-case hex
            "perpetuum-holdout-index 1\nx-000.pps 1 2 3 4 abc\n",                   // short digest
            "perpetuum-holdout-index 1\n../x.pps 1 2 3 4 \n",                       // a path
            "perpetuum-holdout-index 1\n.x.pps 1 2 3 4 \n",                         // a dot-file
            "perpetuum-holdout-index 1\nx.json 1 2 3 4 \n",                         // not a shard
            "perpetuum-holdout-index 1\nx-000.pps 1 2 3 4 \nx-000.pps 1 2 3 4 \n",  // twice
            "perpetuum-holdout-index 1\nx-000.pps  1 2 3 4\n",                      // empty field
        ]
        XCTAssertEqual(TestSupport.notRefusedByLine(bad) { _ = try HoldoutIndex.parse($0) }, [])
        // On disk: reported, ignored, and the window is still right.
        let dir = try TestSupport.tempDir("hidx-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        try shard(root, "20260101T000000Z-0000000000000000-000.pps", 12)
        try FileIO.publish(bad[3], to: HoldoutIndex.path(root))
        var warned: [String] = []
        let idx = HoldoutIndex.load(root, warn: { warned.append($0) })
        XCTAssertTrue(idx.entries.isEmpty)
        XCTAssertEqual(warned.count, 1)
        XCTAssertTrue(warned.first?.contains("holdout.idx: line 2") ?? false, "\(warned)")
        XCTAssertEqual(try EvalSet.hashShards(try EvalSet.holdoutPaths(root, index: idx), index: idx), try direct(root, window: 5000).1)
    }

    /// pp-eval writes the index; pp-select agrees on the eval set through it.
    func testPendingWritesTheIndexAndSelectUsesTheSameEvalSet() throws {
        let (root, hash) = try Fixture.root("hidx-cli", n: 30)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let r = try TestSupport.run("pp-eval", ["--root", root.path, "--pending"])
        XCTAssertEqual(r.status, 2, "no checkpoint: nothing to do, \(r.stderr)")
        let idx = HoldoutIndex.load(root, warn: { XCTFail($0) })
        XCTAssertEqual(idx.entries["h-000.pps"]?.examples, 30)
        XCTAssertEqual(try EvalSet.hashShards([root.holdout + "/h-000.pps"], index: idx), hash)
        // Re-published under the same name (a new inode): the old entry is not used.
        let loaded = HoldoutIndex.load(root)
        XCTAssertNotNil(loaded.lookup(root.holdout + "/h-000.pps"))
        try FileIO.publish(try FileIO.readAll(root.holdout + "/h-000.pps"), to: root.holdout + "/h-000.pps")
        XCTAssertNil(loaded.lookup(root.holdout + "/h-000.pps"))
    }
}
