import XCTest
import TestSupport

/// The tool answers --help with exit 0 and a usage line naming itself.
final class TrainHelpTests: XCTestCase {
    func testHelpTrain() throws { try TestSupport.checkHelp("pp-train") }
}
