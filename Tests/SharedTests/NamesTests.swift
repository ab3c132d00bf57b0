import XCTest
import Foundation
import TestSupport
@testable import Shared

/// The contract's file names (Names.swift): what builds a name parses back to the same value,
/// what is not a name is refused, and names sort by time.
final class NamesTests: XCTestCase {
    func testShardNameBuildsAndParses() throws {
        let n = ShardName(stamp: "20261126T194500Z", sha16: "0123456789abcdef", part: 7)
        XCTAssertEqual(n.file, "20261126T194500Z-0123456789abcdef-007.pps")
        XCTAssertEqual(n.input, "20261126T194500Z-0123456789abcdef")
        XCTAssertEqual(ShardName(n.file), n)
        XCTAssertEqual(ShardName("20261126T194500Z-0123456789abcdef-1234.pps")?.part, 1234)
        for bad in ["20261126T194500Z-0123456789abcdef-007.ppc", "20261126T194500Z-0123456789abcde-007.pps",
                    "20261126T194500Z-0123456789abcdef-.pps", "20261126T194500Z-0123456789abcdef-0x7.pps",
                    "20261126T194500Z-0123456789abcdef-007-1.pps", "-0123456789abcdef-007.pps", "a.pps", ".pps", ""] {
            XCTAssertNil(ShardName(bad), bad)
        }
    }

    func testCheckpointNameBuildsAndParses() throws {
        let t = try XCTUnwrap(Clock.parseStamp("20261126T194500Z"))
        let n = CheckpointName(time: t, step: 42)
        XCTAssertEqual(n.file, "ckpt-20261126T194500Z-000000000042.ppc")
        XCTAssertEqual(CheckpointName(n.file), n)
        XCTAssertEqual(CheckpointName("main/" + n.file), n, "RUN/FILE")
        XCTAssertEqual(CheckpointName("/state/runs/main/checkpoints/" + n.file), n, "a path")
        XCTAssertEqual(n.time, t)
        XCTAssertEqual(CheckpointName.time(of: "main/" + n.file), t)
        XCTAssertEqual(CheckpointName(stamp: n.stamp, step: 1_000_000_000_000).file, "ckpt-20261126T194500Z-1000000000000.ppc",
                       "a step beyond 12 digits is written whole")
        for bad in ["ckpt-20261126T194500Z-000000000042.pps", "ckpt-20261126T194500-000000000042.ppc",
                    "ckpt-20261126T194500Z-.ppc", "ckpt-20261126T194500Z-42x.ppc", "ckpt-20261126T194500Z.ppc",
                    "full.ppc", "ckpt-.ppc", "main/", ""] {
            XCTAssertNil(CheckpointName(bad), bad)
        }
        XCTAssertNil(CheckpointName.time(of: "full.ppc"))
    }

    func testNamesSortByTimeThenStep() {
        let a = CheckpointName(stamp: "20261126T194500Z", step: 99).file
        let b = CheckpointName(stamp: "20261126T194500Z", step: 100).file
        let c = CheckpointName(stamp: "20261127T000000Z", step: 5).file
        XCTAssertEqual([c, b, a].sorted(), [a, b, c])
    }

    /// The one listing of checkpoints: names only, sorted, no temps, no other files, and an
    /// empty list for a run without a folder.
    func testCheckpointListingSkipsTempsAndOtherFiles() throws {
        let dir = try TestSupport.tempDir("names")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        XCTAssertEqual(try root.checkpointFiles(run: "main"), [])
        let folder = root.checkpoints(run: "main")
        try FileIO.makeDirectories(folder)
        let newer = CheckpointName(stamp: "20261127T000000Z", step: 2).file
        let older = CheckpointName(stamp: "20261126T000000Z", step: 1).file
        for f in [newer, older, ".tmp-" + newer, "model.ppc", "notes.txt"] { try FileIO.publish("x", to: folder + "/" + f) }
        XCTAssertEqual(try root.checkpointFiles(run: "main"), [older, newer])
    }
}
