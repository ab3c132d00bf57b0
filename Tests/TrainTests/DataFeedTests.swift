// DataFeed on its own (no trainer): at most two shards in memory whatever the pool size, the
// replay share, the --max-passes limit, and a feed rebuilt from a saved cursor handing out
// exactly the examples the original would have.

import Foundation
import Logging
import Shared
import TextModel
import Training
import TestSupport
import XCTest
@testable import pp_train

final class DataFeedTests: XCTestCase {
    let log = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    func makePool(_ shards: Int, _ each: Int) throws -> String {
        let root = try Fix.newRoot("feed")
        for k in 1...shards {
            try Fix.shard(root, Fix.shardName(k), Fix.examples(each, labels: ["a", "b", "c"], seed: UInt64(k)))
        }
        return root
    }

    /// A feed of ROOT/shards: seed 7, a replay share of 0.25, at most 3 passes.
    func feed(_ root: String) -> DataFeed {
        DataFeed(dir: root + "/shards", cursor: DataCursor(), seed: 7, replay: 0.25, maxPasses: 3, log: log)
    }

    func testMemoryStaysBoundedAndReplayShareAndMaxPasses() throws {
        let root = try makePool(12, 40)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let feed = feed(root)
        try feed.scan()
        XCTAssertEqual(feed.pool.count, 12)
        var step = 0
        while feed.hasNew {
            var b = Batch()
            let n = feed.fill(&b, size: 16, mode: .new, slotBase: step)
            XCTAssertEqual(n, b.count)
            XCTAssertLessThanOrEqual(feed.openShards, 2, "at most two shards in memory")
            step += n
        }
        let newTaken = 12 * 40
        // 3 new : 1 replay, except before the first shard is complete (nothing old to replay).
        XCTAssertGreaterThan(step, newTaken + newTaken / 3 - 40)
        XCTAssertLessThanOrEqual(step, newTaken + newTaken / 3 + 1)
        XCTAssertTrue(feed.cursor.shards.allSatisfy { $0.passes >= 1 })

        // Idle replay up to maxPasses, then nothing.
        while feed.canReplay {
            var b = Batch()
            let n = feed.fill(&b, size: 16, mode: .replay, slotBase: step)
            XCTAssertGreaterThan(n, 0)
            XCTAssertLessThanOrEqual(feed.openShards, 2)
            step += n
        }
        XCTAssertTrue(feed.cursor.shards.allSatisfy { $0.passes >= 3 }, "\(feed.cursor.shards.map(\.passes))")
        var b = Batch()
        XCTAssertEqual(feed.fill(&b, size: 16, mode: .replay, slotBase: step), 0)
        XCTAssertEqual(feed.fill(&b, size: 16, mode: .new, slotBase: step), 0)
    }

    /// A rescan of an unchanged shards/ does not list it (a trickle-fed trainer rescans every
    /// minute and at every SIGHUP); a shard added or removed at any moment, even right after
    /// a listing, is seen by the next scan; `include` lists it again whatever its stamp.
    func testRescanListsOnlyAChangedFolderAndMissesNoChange() throws {
        let root = try makePool(3, 5)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let feed = feed(root)
        try feed.scan()
        XCTAssertEqual(feed.pool.count, 3)
        XCTAssertEqual(feed.pendingShards, 3)
        // Changes right after a listing (the same clock tick, often): each one seen at once.
        for k in 4...40 {
            try Fix.shard(root, Fix.shardName(k), Fix.examples(2, labels: ["a"], seed: UInt64(k)))
            let (added, _) = try feed.scan()
            XCTAssertEqual(added, [Fix.shardName(k)], "shard \(k) missed by the scan right after it")
            if k % 5 == 0 {
                try FileIO.removeDurably(root + "/shards/" + Fix.shardName(k - 1))
                XCTAssertEqual(try feed.scan().removed, [Fix.shardName(k - 1)])
            }
        }
        XCTAssertEqual(feed.pool.count, 40 - 8)
        XCTAssertEqual(feed.pendingShards, 40 - 8)
        // Settled (older than a clock tick): an unchanged folder is not listed again.
        usleep(30_000)
        try feed.scan()
        let listed = feed.listings
        for _ in 0..<5 { XCTAssertEqual(try feed.scan().added, []) }
        XCTAssertEqual(feed.listings, listed, "an unchanged shards/ was listed again")
        // Any entry changes the folder's times, a non-shard too.
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/shards/note.txt", contents: Data()))
        try feed.scan()
        XCTAssertEqual(feed.listings, listed + 1)
        // Excluded, then included again: back at the next scan though the folder did not change.
        usleep(30_000)
        try feed.scan()
        feed.exclude(Fix.shardName(40))
        XCTAssertEqual(feed.pool.count, 40 - 9)
        try feed.scan()
        XCTAssertEqual(feed.pool.count, 40 - 9, "an excluded shard came back")
        feed.include(Fix.shardName(40))
        try feed.scan()
        XCTAssertEqual(feed.pool.count, 40 - 8, "an included shard was not listed again")
        // Trained through: nothing pending, and the count does not look past the shards read.
        while feed.hasNew {
            var b = Batch()
            _ = feed.fill(&b, size: 16, mode: .new, slotBase: 0)
        }
        XCTAssertEqual(feed.pendingShards, 0)
        try Fix.shard(root, Fix.shardName(41), Fix.examples(2, labels: ["a"], seed: 41))
        try feed.scan()
        XCTAssertEqual(feed.pendingShards, 1)
    }

    func testFeedFromSavedCursorContinuesExactly() throws {
        let root = try makePool(5, 30)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let a = DataFeed(dir: root + "/shards", cursor: DataCursor(), seed: 3, replay: 0.3, maxPasses: 4, log: log)
        try a.scan()
        var step = 0
        func next(_ f: DataFeed) -> [String] {
            var b = Batch()
            let n = f.fill(&b, size: 7, mode: f.hasNew ? .new : .replay, slotBase: step)
            step += n
            return b.labels + [String(b.tokenCount)]
        }
        for _ in 0..<13 { _ = next(a) }
        // Save the cursor as a checkpoint would (JSON round trip), rebuild, compare the rest.
        let saved = try JSONDecoder().decode(DataCursor.self, from: JSONEncoder().encode(a.cursor))
        let savedStep = step
        let b = DataFeed(dir: root + "/shards", cursor: saved, seed: 3, replay: 0.3, maxPasses: 4, log: log)
        try b.scan()
        var rest: [[String]] = []
        while a.hasNew || a.canReplay { rest.append(next(a)) }
        step = savedStep
        var again: [[String]] = []
        while b.hasNew || b.canReplay { again.append(next(b)) }
        XCTAssertGreaterThan(rest.count, 5)
        XCTAssertEqual(rest, again)
        XCTAssertEqual(a.cursor, b.cursor)
    }
}
