// Edge cases of TextModel/Tokenizer.swift beyond Tests/TextModelTests/TokenizerTests.swift, added
// with the pointer-based tokenizer core: the token length cut, lower-case mappings that grow,
// the output bound, the leading-space rule, and a randomized comparison with a slow
// reference written with Swift's String and Unicode APIs (docs/tokenizer.md's rules).

import XCTest
@testable import Shared
@testable import TextModel

final class TokenizerEdgeTests: XCTestCase {
    /// docs/tokenizer.md, the slow way.
    func reference(_ bytes: [UInt8]) -> String {
        var tokens: [[UInt8]] = []
        var cur: [UInt8]? = nil
        var full = false
        func end() { if let c = cur { tokens.append(c) }; cur = nil }
        for u in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            guard Tokenizer.isTokenScalar(u) else { end(); continue }
            if cur == nil { cur = []; full = false }
            let lower = Array(String(u.properties.lowercaseMapping).utf8)
            if !full && cur!.count + lower.count <= Tokenizer.maxTokenBytes { cur! += lower } else { full = true }
        }
        end()
        return tokens.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
    }

    func tok(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        bytes.withUnsafeBytes { _ = Tokenizer.tokenize($0, into: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    func testLongTokenCutDropsTheRestOfTheRun() {
        let a99 = String(repeating: "a", count: 99)
        // é (2 bytes) does not fit after 99 bytes; nothing of that run follows it.
        XCTAssertEqual(tok(Array((a99 + "ébc d").utf8)), a99 + " d")
        XCTAssertEqual(tok(Array((a99 + "XYZ d").utf8)), a99 + "x d")
        let e50 = String(repeating: "é", count: 50)
        XCTAssertEqual(tok(Array((e50 + "ÉÉ x").utf8)), e50 + " x")
    }

    func testGrowingLowercaseAndOutputBound() {
        // İ (2 bytes) lower-cases to i + U+0307 (3 bytes): the worst growth there is.
        let text = String(repeating: "İ", count: 40) + " " + String(repeating: "İ ", count: 30)
        let bytes = Array(text.utf8)
        let got = tok(bytes)
        XCTAssertEqual(got, reference(bytes))
        XCTAssertLessThanOrEqual(got.utf8.count, Tokenizer.outputBound(bytes.count))
        XCTAssertEqual(Tokenizer.tokens("ẞ Ⱥ K"), ["ß", "ⱥ", "k"])   // sharp s, A with stroke, Kelvin sign
    }

    func testLeadingSpaceAndPointerAPI() {
        var out = Array("x".utf8)
        Array(" Hello, World ".utf8).withUnsafeBytes { _ = Tokenizer.tokenize($0, into: &out) }
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "x hello world")
        var none = [UInt8]()
        XCTAssertEqual(Array("...".utf8).withUnsafeBytes { Tokenizer.tokenize($0, into: &none) }, 0)
        XCTAssertEqual(none, [])
        let dst = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)
        defer { dst.deallocate() }
        let r = Array("A-b".utf8).withUnsafeBytes { Tokenizer.tokenize($0, to: dst, leadingSpace: true) }
        XCTAssertEqual(r.tokens, 2)
        XCTAssertEqual(String(decoding: UnsafeBufferPointer(start: dst, count: r.bytes), as: UTF8.self), " a b")
    }

    func testRandomTextsMatchTheReference() {
        let pieces: [[UInt8]] = ["a", "Z", "q", "7", "_", " ", "-", "'", ".", "\t", "\n", "é", "É", "Ω", "ς", "İ", "ß", "ẞ",
                                 "日本", "한", "\u{0301}", "😀", "👍🏽", "①", "²", "\u{00A0}", "\u{200B}", "K", "Ⱥ"].map { Array($0.utf8) }
            + [[0xFF], [0xC3], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xC0, 0xAF]]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            var bytes: [UInt8] = []
            let long = Int.random(in: 0..<10, using: &rng) == 0
            for _ in 0..<Int.random(in: 0...(long ? 400 : 40), using: &rng) {
                let p = pieces.randomElement(using: &rng)!
                // Long runs of one piece exercise the 100-byte cut.
                for _ in 0..<(long ? Int.random(in: 1...30, using: &rng) : 1) { bytes += p }
            }
            XCTAssertEqual(tok(bytes), reference(bytes), "\(bytes)")
        }
    }
}
