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

    func testMemoryStaysBoundedAndReplayShareAndMaxPasses() throws {
        let root = try makePool(12, 40)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let feed = DataFeed(dir: root + "/shards", cursor: DataCursor(), seed: 7, replay: 0.25, maxPasses: 3, log: log)
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
