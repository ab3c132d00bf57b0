import XCTest
import TestSupport

/// The tool answers --help with exit 0 and a usage line naming itself.
final class EvalHelpTests: XCTestCase {
    func testHelpEval() throws { try TestSupport.checkHelp("pp-eval") }
    func testHelpSelect() throws { try TestSupport.checkHelp("pp-select") }
}
