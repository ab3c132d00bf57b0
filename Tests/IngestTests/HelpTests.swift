import XCTest
import TestSupport

/// Every tool answers --help with exit 0 and a usage line naming itself.
final class IngestHelpTests: XCTestCase {
    func testHelp() throws {
        for tool in "pp-ingest".split(separator: " ").map(String.init) {
            let r = try TestSupport.run(tool, ["--help"])
            XCTAssertEqual(r.status, 0, tool)
            XCTAssertTrue(r.stdout.contains("USAGE: \(tool)"), r.stdout)
        }
    }
}
