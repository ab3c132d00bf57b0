import XCTest
import Logging
import TestSupport
@testable import Shared
#if canImport(Glibc)
import Glibc
#endif

/// Issue 15: log lines cannot be forged (LogText, item 8); who holds a file open for writing
/// (OpenFiles, item 2).
final class LogTextTests: XCTestCase {
    func testControlCharactersAreEscapedAndTheRestKept() {
        XCTAssertEqual(LogText.escape("plain name.txt"), "plain name.txt")
        XCTAssertEqual(LogText.escape("a\n<0>b"), "a\\n<0>b")
        XCTAssertEqual(LogText.escape("\r\t\u{1B}[2J\u{7F}\u{85}\u{2028}é"), "\\r\\t\\x1B[2J\\x7F\\x85\\u{2028}é")
        XCTAssertEqual(LogText.escape(bytes: Array("ok\n".utf8) + [0xFF, 0xC3, 0xA9, 0xC3]), "ok\\n\\xFFé\\xC3")
    }

    /// The handler writes one line per event whatever the message and metadata hold.
    func testHandlerWritesOneLinePerEvent() throws {
        let dir = try TestSupport.tempDir("log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/stderr"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let saved = dup(2)
        dup2(fd, 2)
        let h = StderrLogHandler(label: "t")
        h.log(event: LogEvent(level: .info, message: "file x\n<0>t: forged", metadata: ["file": "y\n<2>z"],
                              source: "t", file: #file, function: #function, line: #line))
        Log.fail("t", "f\n<0>forged too")
        dup2(saved, 2)
        close(saved); close(fd)
        let text = String(decoding: try FileIO.readAll(path), as: UTF8.self)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, text)
        XCTAssertEqual(String(lines[0]), "<6>t: file x\\n<0>t: forged file=y\\n<2>z")
        XCTAssertEqual(String(lines[1]), "<3>t: f\\n<0>forged too")
    }
}

final class OpenFilesTests: XCTestCase {
    func testFdinfoFlags() {
        XCTAssertEqual(OpenFiles.writeAccess(fdinfo: "pos:\t0\nflags:\t0100002\nmnt_id:\t25\n"), true)   // O_RDWR
        XCTAssertEqual(OpenFiles.writeAccess(fdinfo: "pos:\t0\nflags:\t02102001\n"), true)              // O_WRONLY|O_APPEND
        XCTAssertEqual(OpenFiles.writeAccess(fdinfo: "pos:\t0\nflags:\t02100000\n"), false)             // O_RDONLY
        XCTAssertNil(OpenFiles.writeAccess(fdinfo: "pos:\t0\n"))
    }

    func testHoldersFindsThisProcessOnlyWhileItWrites() throws {
        let dir = try TestSupport.tempDir("holders")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/f"
        try FileIO.publish("x", to: path)
        let id = try XCTUnwrap(FileID.of(path))
        XCTAssertEqual(OpenFiles.holders(of: id, writing: false), [])
        let r = open(path, O_RDONLY)
        XCTAssertEqual(OpenFiles.holders(of: id, writing: false).map(\.pid), [getpid()])
        XCTAssertEqual(OpenFiles.holders(of: id, writing: true), [])
        let w = open(path, O_WRONLY | O_APPEND)
        XCTAssertEqual(OpenFiles.holders(of: id, writing: true).map(\.pid), [getpid()])
        close(w); close(r)
        XCTAssertEqual(OpenFiles.holders(of: id, writing: true), [])
    }
}
