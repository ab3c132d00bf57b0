import XCTest
@testable import Shared
@testable import TextModel

final class TokenizerTests: XCTestCase {
    func testASCIILowercaseAndPunctuation() {
        XCTAssertEqual(Tokenizer.tokens("Fix match_pathname() in t/t3070: \"1/2\" OK!"),
                       ["fix", "match_pathname", "in", "t", "t3070", "1", "2", "ok"])
    }

    func testUnicodeLowercaseAndSeparators() {
        XCTAssertEqual(Tokenizer.tokens("Ärger—ÜBER  straße\u{00A0}Ωμέγα"), ["ärger", "über", "straße", "ωμέγα"])
    }

    func testEmptyAndOnlyPunctuation() {
        XCTAssertEqual(Tokenizer.tokens(""), [])
        XCTAssertEqual(Tokenizer.tokens("  ... --- !!! "), [])
    }

    func testLongTokenIsCut() {
        let long = String(repeating: "a", count: 250)
        XCTAssertEqual(Tokenizer.tokens(long + " b"), [String(repeating: "a", count: Tokenizer.maxTokenBytes), "b"])
    }

    func testInvalidUTF8SeparatesTokens() {
        var out = [UInt8]()
        let bytes: [UInt8] = [0x61, 0xFF, 0x62, 0xC3, 0x28]
        bytes.withUnsafeBytes { _ = Tokenizer.tokenize($0, into: &out) }
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "a b")
        XCTAssertFalse(bytes.withUnsafeBytes { Tokenizer.isValidUTF8($0) })
        XCTAssertTrue(Array("héllo ωorld 😀".utf8).withUnsafeBytes { Tokenizer.isValidUTF8($0) })
        // Overlong "/" and a UTF-16 surrogate encoded in UTF-8 are invalid.
        XCTAssertFalse([UInt8]([0xC0, 0xAF]).withUnsafeBytes { Tokenizer.isValidUTF8($0) })
        XCTAssertFalse([UInt8]([0xED, 0xA0, 0x80]).withUnsafeBytes { Tokenizer.isValidUTF8($0) })
    }
}
