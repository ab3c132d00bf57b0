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
