import XCTest
import TestSupport

/// The tool answers --help with exit 0 and a usage line naming itself.
final class IngestHelpTests: XCTestCase {
    func testHelpIngest() throws { try TestSupport.checkHelp("pp-ingest") }
}
