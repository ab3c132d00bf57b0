import XCTest
import TestSupport
@testable import Shared
@testable import TextModel

/// The built tools on temporary roots: usage errors, nothing to do, exit codes.
final class EvalCLITests: XCTestCase {
    func testUsageAndNothingToDo() throws {
        let dir = try TestSupport.tempDir("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var r = try TestSupport.run("pp-eval", ["--root", dir])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-eval", ["--root", dir, "--pending", "x.ppc"])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-eval", ["--root", dir, "--pending"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout, "")
        r = try TestSupport.run("pp-eval", ["--root", dir, dir + "/missing.ppc"])
        XCTAssertEqual(r.status, 66, r.stderr)
        XCTAssertTrue(r.stderr.contains("missing.ppc"), r.stderr)
        r = try TestSupport.run("pp-select", ["--root", dir, "--metric", "recent.bogus"])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-select", ["--root", dir, "--since", "soon"])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-select", ["--root", dir])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertFalse(FileIO.exists(dir + "/selections.jsonl"))
        r = try TestSupport.run("pp-select", ["rollback", "--root", dir])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertFalse(FileIO.exists(dir + "/deployed"))
    }
}
