import XCTest
import TestSupport
@testable import Shared
#if canImport(Glibc)
import Glibc
#endif

/// FileIO.list and FileIO.entries: every name of every length comes back once, dot-files only
/// from `entries`. The readdir crash they fix (copying the whole dirent read past the end of
/// glibc's buffer when a short name ended it at a page boundary) depends on the heap layout
/// and cannot be forced here; this pins the names read in place, up to the NUL.
final class FileIOTests: XCTestCase {
    /// open(2) directly: FileIO.publish's temp name would be longer than the 255-byte names.
    func touch(_ path: String) throws {
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        if fd < 0 { throw PPError.io(path, "open", errno: errno) }
        close(fd)
    }

    func testListAndEntriesReturnEveryNameOfEveryLength() throws {
        let dir = try TestSupport.tempDir("list")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var want: [String] = []
        for n in 1...255 {
            let name = String(repeating: "abcdefghij", count: 26).prefix(n - 1) + "z"
            try touch(dir + "/" + name)
            want.append(String(name))
        }
        for i in 0..<700 { let n = "s\(i)"; try touch(dir + "/" + n); want.append(n) }
        try touch(dir + "/.hidden")
        XCTAssertEqual(try FileIO.list(dir), want.sorted())
        let all = try XCTUnwrap(try FileIO.entries(dir))
        XCTAssertEqual(all.sorted(), (want + [".hidden"]).sorted())
        XCTAssertFalse(all.contains(".") || all.contains(".."))
        XCTAssertNil(try FileIO.entries(dir + "/missing"))
        XCTAssertEqual(try FileIO.list(dir + "/missing"), [])
    }
}

/// FileStamp: a stamp taken right after a change is not settled against a clock read before
/// the change (a later change in the same tick could keep its times); one read a few ticks
/// later is; a write, a replacement and a folder's new entry each change the stamp.
final class FileStampTests: XCTestCase {
    func testSettledOnlyAfterTheChangesTickAndEveryChangeMovesTheStamp() throws {
        let dir = try TestSupport.tempDir("stamp")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/f"
        let before = FileStamp.coarseNow()
        try FileIO.publish("a\n", to: path)
        let s1 = try XCTUnwrap(FileStamp(path: path))
        XCTAssertFalse(s1.settled(before: before), "a stamp newer than the clock read before it counted as settled")
        usleep(30_000)
        XCTAssertTrue(s1.settled(before: FileStamp.coarseNow()))
        XCTAssertEqual(FileStamp(path: path), s1)
        // Written in place, same size: the times move.
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(write(fd, "b", 1), 1)
        close(fd)
        let s2 = try XCTUnwrap(FileStamp(path: path))
        XCTAssertNotEqual(s2, s1)
        XCTAssertEqual(s2.size, s1.size)
        // Replaced by rename: another inode.
        try FileIO.publish("b\n", to: path)
        XCTAssertNotEqual(FileStamp(path: path)?.ino, s2.ino)
        // A folder: a new entry moves its times.
        let d1 = try XCTUnwrap(FileStamp(path: dir))
        try FileIO.publish("c\n", to: dir + "/g")
        XCTAssertNotEqual(FileStamp(path: dir), d1)
        XCTAssertNil(FileStamp(path: dir + "/missing"))
    }

    /// FileWatch: unchanged only after a read of a settled look; a write, `forget` and a look
    /// read in the change's own tick all count as changed.
    func testWatchTrustsOnlySettledReads() throws {
        let dir = try TestSupport.tempDir("watch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/f"
        var w = FileWatch()
        XCTAssertFalse(w.look(path).unchanged, "a missing file")
        try FileIO.publish("a\n", to: path)
        let early = w.look(path)
        XCTAssertFalse(early.unchanged)
        w.read(early)   // possibly in the write's tick: not trusted unless settled
        usleep(30_000)
        let l = w.look(path)
        w.read(l)
        XCTAssertTrue(w.look(path).unchanged)
        try FileIO.publish("b\n", to: path)
        XCTAssertFalse(w.look(path).unchanged, "a replaced file")
        usleep(30_000)
        w.read(w.look(path))
        XCTAssertTrue(w.look(path).unchanged)
        w.forget()
        XCTAssertFalse(w.look(path).unchanged)
    }

    /// split finds the last "/" by byte; names with multi-byte characters (and combining
    /// marks next to the slash) split where the Character view would.
    func testSplit() {
        let cases: [(String, String, String)] = [
            ("a/b/c", "a/b", "c"), ("c", ".", "c"), ("/c", "/", "c"), ("/", "/", ""), ("a/", "a", ""),
            ("é/ü.pps", "é", "ü.pps"), ("日本/語", "日本", "語"), ("x\u{301}/y\u{301}", "x\u{301}", "y\u{301}"),
        ]
        for (path, dir, name) in cases {
            let got = FileIO.split(path)
            XCTAssertEqual(got.dir, dir, path)
            XCTAssertEqual(got.name, name, path)
        }
    }
}
