import XCTest
import TestSupport
@testable import Shared
@testable import pp_select
#if canImport(Glibc)
import Glibc
#endif

/// History.read remembers what one process decoded of selections.jsonl and reads only what
/// was appended since; a light read decodes only what pp-select's rules use. Every answer
/// must be the one a read of the whole file gives, whatever happened to the file in between.
final class HistoryReadTests: XCTestCase {
    func record(_ i: Int, candidates: Int = 3) -> DecisionRecord {
        var r = DecisionRecord(at: "2026-12-08T00:00:0\(i % 10)Z", decision: i % 2 == 0 ? "promote" : "keep", reason: "line \(i)")
        r.deployedPath = "runs/main/checkpoints/ckpt-\(i).ppc"
        r.previousPath = "runs/main/checkpoints/ckpt-\(i - 1).ppc"
        r.rejected = [["checkpoint": "main/x\(i)", "kind": "poison", "reason": "r"]]
        r.candidates = (0..<candidates).map { Scored(checkpoint: "main/c\($0)", path: "p\($0)", step: $0, score: 0.5) }
        return r
    }

    func text(_ rs: [DecisionRecord]) throws -> String { try rs.map { try $0.json() + "\n" }.joined() }

    func write(_ path: String, _ s: String, inPlace: Bool) throws {
        if !inPlace { try FileIO.publish(s, to: path); return }
        let fd = open(path, O_WRONLY | O_TRUNC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let b = Array(s.utf8)
        XCTAssertEqual(b.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }, b.count)
        close(fd)
    }

    func append(_ path: String, _ s: String) {
        let fd = open(path, O_WRONLY | O_APPEND)
        let b = Array(s.utf8)
        XCTAssertEqual(b.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }, b.count)
        close(fd)
    }

    func testReadsWhatWasAppendedAndNoticesAFileRewrittenInPlace() throws {
        let dir = try TestSupport.tempDir("history")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/selections.jsonl"
        let all = (1...6).map { record($0) }
        try write(p, try text(Array(all[0..<2])), inPlace: false)

        // Light: the rules' members, not the candidates; full: everything.
        var light = try History.read(p)
        XCTAssertEqual(light.map(\.deployedPath), all[0..<2].map(\.deployedPath))
        XCTAssertEqual(light.map(\.previousPath), all[0..<2].map(\.previousPath))
        XCTAssertEqual(light.map(\.rejected), all[0..<2].map(\.rejected))
        XCTAssertEqual(light.map(\.moved), all[0..<2].map(\.moved))
        XCTAssertNil(light[0].candidates)
        XCTAssertEqual(try History.read(p, full: true), Array(all[0..<2]))

        // Appended lines are read; a torn one counts once it is whole.
        let third = try all[2].json()
        append(p, String(third.prefix(30)))
        light = try History.read(p)
        XCTAssertEqual(light.count, 2, "a torn last line is not a decision")
        append(p, String(third.dropFirst(30)) + "\n" + (try all[3].json()) + "\n")
        XCTAssertEqual(try History.read(p).map(\.reason), all[0..<4].map(\.reason))
        XCTAssertEqual(try History.read(p, full: true), Array(all[0..<4]))

        // Rewritten in place (same inode), longer than before, other lines: read again whole.
        let other = [record(7, candidates: 9), record(8, candidates: 9), record(9, candidates: 9), record(10, candidates: 9)]
        try write(p, try text(other), inPlace: true)
        XCTAssertEqual(try History.read(p).map(\.reason), other.map(\.reason))
        XCTAssertEqual(try History.read(p, full: true), other)
        // Cut back (repairTail) and replaced by another file: the same.
        try write(p, try text(Array(other[0..<1])), inPlace: true)
        XCTAssertEqual(try History.read(p).map(\.reason), ["line 7"])
        try write(p, try text(Array(all[4..<6])), inPlace: false)
        XCTAssertEqual(try History.read(p).map(\.reason), ["line 5", "line 6"])
        // Gone: nothing.
        try FileIO.removeDurably(p)
        XCTAssertEqual(try History.read(p).count, 0)
        // A FIFO or a symbolic link there is refused, never waited on or followed.
        XCTAssertEqual(mkfifo(p, 0o644), 0)
        XCTAssertThrowsError(try History.read(p)) { XCTAssertEqual(($0 as? PPError)?.status, .corrupt) }
        try FileIO.removeDurably(p)
        try FileIO.publish(try text(Array(all[0..<1])), to: dir + "/real.jsonl")
        XCTAssertEqual(symlink(dir + "/real.jsonl", p), 0)
        XCTAssertThrowsError(try History.read(p)) { XCTAssertEqual(($0 as? PPError)?.status, .corrupt) }
    }
}
