import XCTest
import Logging
import TestSupport
@testable import Shared
#if canImport(Glibc)
import Glibc
#endif

/// Issue 15, item 6: which names are our temps, and the sweep never takes a live writer's.
final class TempsTests: XCTestCase {
    func testWriterPIDFromTempNames() {
        XCTAssertEqual(Temps.writerPID(".ckpt-20261206T000000Z-000000000001.ppc.tmp.4242"), 4242)
        XCTAssertEqual(Temps.writerPID(".deployed.tmp.17"), 17)
        XCTAssertEqual(Temps.writerPID(".a.tmp.b.json.tmp.99"), 99)
        XCTAssertEqual(Temps.writerPID(".ingest-123-train-0.tmp"), 123)
        XCTAssertNil(Temps.writerPID(".week.jsonl.tmp"))          // a producer's inbox temp
        XCTAssertNil(Temps.writerPID("x.tmp.12"))                  // not a dot-name
        XCTAssertNil(Temps.writerPID(".x.tmp.0"))
        XCTAssertNil(Temps.writerPID(".x.tmp.-3"))
    }

    func testSweepTakesOnlyDeadUnheldTemps() throws {
        let dir = try TestSupport.tempDir("sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dead = 99_999_999
        try FileIO.publish("x", to: dir + "/.a.tmp.\(dead)")
        try FileIO.publish("x", to: dir + "/.held.tmp.\(dead)")
        try FileIO.publish("x", to: dir + "/.mine.tmp.\(getpid())")
        try FileIO.publish("x", to: dir + "/.ingest-\(dead)-train-0.tmp")
        XCTAssertEqual(symlink("runs/x", dir + "/.deployed.tmp.\(dead)"), 0)
        let held = open(dir + "/.held.tmp.\(dead)", O_RDONLY)
        defer { close(held) }
        let removed = Temps.sweep([dir, dir + "/missing"], log: Logger(label: "t"))
        XCTAssertEqual(Set(removed.map { FileIO.split($0).name }),
                       [".a.tmp.\(dead)", ".ingest-\(dead)-train-0.tmp", ".deployed.tmp.\(dead)"])
        XCTAssertEqual(try FileIO.entries(dir)?.sorted(), [".held.tmp.\(dead)", ".mine.tmp.\(getpid())"])
    }
}
