// Issue 15, items 2, 3, 7, 8: pp-ingest against a hostile or careless inbox. A symlink or FIFO
// swapped in after the scan, a file its writer still holds open, a name that is not UTF-8, a
// name that tries to forge a journal line.

import Foundation
import XCTest
import TestSupport
@testable import Shared
@testable import TextModel

final class InboxHardeningTests: IngestTestCase {
    /// Starts pp-ingest on the root without waiting for it.
    func start(_ args: [String] = [], env: [String: String]) throws -> (Process, Pipe, Pipe) {
        try TestSupport.start("pp-ingest", ["--root", root] + args, env: env)
    }

    func waitFor(_ what: String, seconds: Double, _ cond: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !cond() {
            if Date() > deadline { return false }
            usleep(10_000)
        }
        return true
    }

    /// Item 3: the scan saw two regular files; before they are opened, one becomes a symlink
    /// to a private file and the other a FIFO. Neither is read: the symlink's target never
    /// reaches a shard, the FIFO does not block the run (and its lock) forever.
    func testSymlinkAndFIFOSwappedInAfterTheScanAreRefused() throws {
        let secret = try drop("secret.txt", Array("__label__private passwordword hunter2\n".utf8), in: root + "/private")
        let a = try drop("a.txt", Array("__label__a a good text\n".utf8))
        let b = try drop("b.txt", Array("__label__b another good text\n".utf8))
        try drop("c.txt", Array("__label__c a third good text\n".utf8))
        let (p, out, err) = try start(env: ["PP_INGEST_PAUSE_AT": "listed"])
        let flag = root + "/.pause-listed"
        XCTAssertTrue(waitFor("pause", seconds: 120) { FileIO.exists(flag) }, "pp-ingest never reached the pause point")
        XCTAssertEqual(unlink(a), 0)
        XCTAssertEqual(symlink(secret, a), 0)
        XCTAssertEqual(unlink(b), 0)
        XCTAssertEqual(mkfifo(b, 0o644), 0)
        try FileIO.removeDurably(flag)
        let exited = waitFor("exit", seconds: 60) { !p.isRunning }
        if !exited { p.terminate(); p.waitUntilExit() }
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(exited, "pp-ingest blocked (on the FIFO): \(stderr)")
        XCTAssertEqual(p.terminationStatus, 1, stderr)
        XCTAssertTrue(stderr.contains("a.txt: symbolic link refused"), stderr)
        XCTAssertTrue(stderr.contains("b.txt: not a regular file"), stderr)
        XCTAssertTrue(stdout.contains("\"status\":\"accepted\""), stdout)
        let lines = try cat(names("shards").map { root + "/shards/" + $0 } + names("holdout").map { root + "/holdout/" + $0 })
        XCTAssertEqual(lines.count, 1, "\(lines)")
        XCTAssertFalse(lines.joined().contains("hunter2"), "the private file leaked into a shard: \(lines)")
        XCTAssertEqual(names("inbox"), ["a.txt", "b.txt"], "refused entries stay where they are")
    }

    /// Item 2: a settled file (old mtime) that a process still holds open for writing is left
    /// in inbox/ until the writer closes it; then all of its lines are ingested.
    func testAFileStillOpenForWritingIsLeftAlone() throws {
        let path = try drop("slow.txt", Array("__label__a the first line\n".utf8))
        let fd = open(path, O_WRONLY | O_APPEND)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var r = try ingest()
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("still open for writing"), r.stderr)
        XCTAssertTrue(r.stderr.contains("pid \(getpid())"), r.stderr)
        XCTAssertEqual(names("inbox"), ["slow.txt"])
        XCTAssertEqual(names("shards") + names("holdout"), [])
        // A reader does not hold it back.
        let more = Array("__label__b the second line, after a long pause\n".utf8)
        XCTAssertEqual(more.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }, more.count)
        close(fd)
        let reader = open(path, O_RDONLY)
        defer { close(reader) }
        try setAge(path, 3600)
        r = try ingest()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(names("inbox"), [])
        let lines = try cat(names("shards").map { root + "/shards/" + $0 } + names("holdout").map { root + "/holdout/" + $0 })
        XCTAssertEqual(lines.count, 2, "\(lines)")
    }

    /// Item 7: a name that is not UTF-8 is quarantined with a reason, not ignored forever.
    func testNonUTF8NameIsQuarantinedWithAReason() throws {
        try FileIO.makeDirectories(root + "/inbox")
        let raw: [UInt8] = Array("bad".utf8) + [0xFF, 0xFE] + Array(".txt".utf8)
        let path = Array((root + "/inbox/").utf8) + raw + [0]
        let fd = path.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_WRONLY | O_CREAT | O_EXCL, 0o644) }
        XCTAssertGreaterThanOrEqual(fd, 0)
        let body = Array("__label__a some text\n".utf8)
        XCTAssertEqual(body.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }, body.count)
        var times = [timespec(tv_sec: time(nil) - 3600, tv_nsec: 0), timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)]
        XCTAssertEqual(futimens(fd, &times), 0)
        close(fd)
        try drop("good.txt", Array("__label__a good text\n".utf8))
        let r = try ingest()
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(names("quarantine"), ["bad%FF%FE.txt", "bad%FF%FE.txt.reason.json"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/inbox"), [])
        let reason = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/quarantine/bad%FF%FE.txt.reason.json"))) as! [String: Any]
        XCTAssertEqual(reason["name_hex"] as? String, "626164fffe2e747874")
        XCTAssertTrue((reason["reason"] as? String ?? "").contains("not valid UTF-8"), "\(reason)")
        XCTAssertEqual(try FileIO.readAll(root + "/quarantine/bad%FF%FE.txt"), body)
        XCTAssertTrue(r.stderr.contains("bad\\xFF\\xFE.txt: quarantined"), r.stderr)
        let byStatus = Dictionary(grouping: reports(r), by: { $0["status"] as? String ?? "" })
        XCTAssertEqual(byStatus["quarantined"]?.count, 1, r.stdout)
        XCTAssertEqual(byStatus["accepted"]?.count, 1, r.stdout)
    }

    /// Item 8: a name with a newline and `<0>` stays inside its own log line.
    func testControlCharactersInNamesCannotForgeLogLines() throws {
        let forged = "x\n<0>pp-ingest: forged emergency\r\u{1B}[2J.txt"
        try drop(forged, Array("__label__a text\n".utf8), age: 0)            // "not settled" (metadata)
        try FileIO.makeDirectories(root + "/inbox")
        XCTAssertEqual(symlink("/etc/hostname", root + "/inbox/l\n<0>forged link"), 0)   // refused (message)
        let r = try ingest()
        XCTAssertEqual(r.status, 1, r.stderr)
        for line in r.stderr.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            XCTAssertTrue(line.hasPrefix("<") && !line.hasPrefix("<0>"), "forged line: \(line)\n\(r.stderr)")
        }
        XCTAssertTrue(r.stderr.contains("x\\n<0>pp-ingest: forged emergency\\r\\x1B[2J.txt"), r.stderr)
        XCTAssertTrue(r.stderr.contains("l\\n<0>forged link: symbolic link refused"), r.stderr)
    }
}
