// Unit tests of TextModel/InputParser.swift (both line formats, every refusal reason, the
// streaming line splitter), StableHash and the holdout split, and the two-frame shard form.

import XCTest
@testable import Shared
@testable import TextModel
import TestSupport

final class InputParserTests: XCTestCase {
    /// A line's outcome in comparable form.
    enum R: Equatable {
        case ex(label: String, tokens: String, ts: Int64?, id: String?)
        case bad(InputBadReason)
        case dup
        case blank
    }

    func outcome(_ p: InputParser, _ line: [UInt8], _ n: Int = 1) -> R {
        line.withUnsafeBytes { b -> R in
            switch p.parseLine(b, number: n) {
            case .blank: return .blank
            case .duplicate: return .dup
            case .bad(let e): return .bad(e.reason)
            case .example(let e):
                return .ex(label: e.labelString, tokens: e.tokenString, ts: e.ts,
                           id: e.id.map { String(decoding: $0, as: UTF8.self) })
            }
        }
    }

    func one(_ line: String, maxText: Int = 65536) -> R {
        outcome(InputParser(options: InputOptions(maxTextBytes: maxText)), Array(line.utf8))
    }

    func detail(_ line: String) -> String {
        let p = InputParser()
        return Array(line.utf8).withUnsafeBytes { b -> String in
            if case .bad(let e) = p.parseLine(b, number: 7) { return "\(e.line): \(e.detail)" }
            return "not bad"
        }
    }

    // MARK: JSON Lines

    func testJSONLineWithAllFields() {
        XCTAssertEqual(one(#"{"id": "c1", "ts": "2024-01-31T12:00:00Z", "text": "Fix the Typo!", "label": "doc"}"#),
                       .ex(label: "doc", tokens: "fix the typo", ts: 1706702400, id: "c1"))
        XCTAssertEqual(one(#"  {"label":"tests","text":"t1","ts":1700000000,"id":42}  "#),
                       .ex(label: "tests", tokens: "t1", ts: 1700000000, id: "42"))
        XCTAssertEqual(one(#"{"label":"a","text":"x","ts":1.7e9,"id":null}"#), .ex(label: "a", tokens: "x", ts: 1700000000, id: nil))
        XCTAssertEqual(one(#"{"label":"a","text":"x","ts":null}"#), .ex(label: "a", tokens: "x", ts: nil, id: nil))
    }

    func testJSONEscapesIncludingSurrogatePairs() {
        let p = InputParser()
        let line = Array(#"{"label":"l","text":"\"q\" a\\b \/ \b\f\n\r\t caf\u00e9 \u20AC \uD83D\uDE00 \u00C9T\u00C9"}"#.utf8)
        line.withUnsafeBytes { b in
            guard case .example(let e) = p.parseLine(b, number: 1) else { return XCTFail("not an example") }
            XCTAssertEqual(String(decoding: e.text, as: UTF8.self), "\"q\" a\\b / \u{8}\u{c}\n\r\t café € 😀 ÉTÉ")
            XCTAssertEqual(e.tokenString, "q a b café été")
        }
        // Escaped keys are keys like any other.
        XCTAssertEqual(one(#"{"te\u0078t":"hello","\u006Cabel":"l"}"#), .ex(label: "l", tokens: "hello", ts: nil, id: nil))
        // An escaped label is checked after unescaping.
        XCTAssertEqual(one(#"{"text":"a","label":"x\ty"}"#), .bad(.labelWhitespace))
        XCTAssertEqual(one(#"{"text":"a","label":"\u00e9t\u00e9"}"#), .ex(label: "été", tokens: "a", ts: nil, id: nil))
    }

    func testBrokenJSON() {
        for line in [
            #"{"text":"a","label":"b""#,                 // no closing brace
            #"{"text":"a","label":"b",}"#,               // trailing comma
            #"{"text" "a","label":"b"}"#,                // no colon
            #"{"text":"a","label":"b"} x"#,              // text after the object
            #"{"text":"a,"label":"b"}"#,                 // quote missing
            #"{"text":"a\x","label":"b"}"#,              // invalid escape
            #"{"text":"a\u12","label":"b"}"#,            // short \u
            #"{"text":"\uD83D","label":"b"}"#,           // lone high surrogate
            #"{"text":"\uD83Dx","label":"b"}"#,          // high surrogate, no low one
            #"{"text":"\uDE00","label":"b"}"#,           // lone low surrogate
            #"{"text":"\uD83D\u0041","label":"b"}"#,     // high surrogate + non-surrogate
            "{\"text\":\"a\u{01}b\",\"label\":\"b\"}",   // raw control character in a string
            #"{"text":"a","label":"b","n":01}"#,         // leading zero
            #"{"text":"a","label":"b","n":1.}"#,         // no fraction digits
            #"{"text":"a","label":"b","n":tru}"#,        // bad literal
            #"{"text":"a","label":"b","text":"c"}"#,     // duplicate key
            #"{text:"a"}"#,                              // unquoted key
            "{",
        ] {
            XCTAssertEqual(one(line), .bad(.badJSON), line)
        }
        let deep = "{\"text\":\"a\",\"label\":\"b\",\"x\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
        XCTAssertEqual(one(deep), .bad(.badJSON))
        XCTAssertEqual(detail(#"{"text" "a"}"#), #"7: broken JSON: expected ':' after a key at byte 9 ('"')"#)
    }

    func testOtherFieldsAreCheckedAndSkipped() {
        XCTAssertEqual(one(#"{"meta":{"a":[1,-2.5e3,{"b":null,"c":[true,false]}],"s":"x\"y"},"text":"ok","label":"b","n":0}"#),
                       .ex(label: "b", tokens: "ok", ts: nil, id: nil))
        XCTAssertEqual(one(#"{"meta":{"a":[1,2}, "text":"ok","label":"b"}"#), .bad(.badJSON))
    }

    func testFieldErrors() {
        XCTAssertEqual(one(#"{"text":"a"}"#), .bad(.missingLabel))
        XCTAssertEqual(one(#"{"label":"a"}"#), .bad(.missingText))
        XCTAssertEqual(one(#"{}"#), .bad(.missingLabel))
        XCTAssertEqual(one(#"{"text":"a","label":3}"#), .bad(.labelNotString))
        XCTAssertEqual(one(#"{"text":"a","label":null}"#), .bad(.labelNotString))
        XCTAssertEqual(one(#"{"text":"a","label":["x"]}"#), .bad(.labelNotString))
        XCTAssertEqual(one(#"{"text":5,"label":"a"}"#), .bad(.textNotString))
        XCTAssertEqual(one(#"{"text":{"a":1},"label":"a"}"#), .bad(.textNotString))
        XCTAssertEqual(one(#"{"text":"a","label":""}"#), .bad(.emptyLabel))
        XCTAssertEqual(one(#"{"text":"a","label":"two words"}"#), .bad(.labelWhitespace))
        XCTAssertEqual(one("{\"text\":\"a\",\"label\":\"nb\u{00A0}sp\"}"), .bad(.labelWhitespace))
        XCTAssertEqual(one("{\"text\":\"a\",\"label\":\"zero\u{200B}width\"}"), .bad(.labelWhitespace))
        XCTAssertEqual(one(#"{"text":"a","label":"x\u0000"}"#), .bad(.labelWhitespace))
        let l64 = String(repeating: "é", count: 32), l65 = l64 + "x"
        XCTAssertEqual(one("{\"text\":\"a\",\"label\":\"\(l64)\"}"), .ex(label: l64, tokens: "a", ts: nil, id: nil))
        XCTAssertEqual(one("{\"text\":\"a\",\"label\":\"\(l65)\"}"), .bad(.labelTooLong))
        XCTAssertEqual(one(#"{"text":"","label":"a"}"#), .bad(.emptyText))
        XCTAssertEqual(one(#"{"text":" ... !!! ","label":"a"}"#), .bad(.emptyText))
        XCTAssertEqual(one(#"{"text":"0123456789","label":"a"}"#, maxText: 10), .ex(label: "a", tokens: "0123456789", ts: nil, id: nil))
        XCTAssertEqual(one(#"{"text":"0123456789a","label":"a"}"#, maxText: 10), .bad(.textTooLong))
        // The limit applies to the unescaped text: 10 escapes are 10 bytes.
        XCTAssertEqual(one(#"{"text":"\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061","label":"a"}"#, maxText: 10),
                       .ex(label: "a", tokens: "aaaaaaaaaa", ts: nil, id: nil))
        XCTAssertEqual(one(#"{"text":"a","label":"b","ts":"yesterday"}"#), .bad(.badTS))
        XCTAssertEqual(one(#"{"text":"a","label":"b","ts":true}"#), .bad(.badTS))
        XCTAssertEqual(one(#"{"text":"a","label":"b","ts":1e300}"#), .bad(.badTS))
        XCTAssertEqual(one(#"{"text":"a","label":"b","id":{"x":1}}"#), .bad(.badID))
    }

    // MARK: fastText lines

    func testFastTextLines() {
        XCTAssertEqual(one("__label__doc Fix the typo in README"), .ex(label: "doc", tokens: "fix the typo in readme", ts: nil, id: nil))
        XCTAssertEqual(one(" \t__label__doc\tFix"), .ex(label: "doc", tokens: "fix", ts: nil, id: nil))
        XCTAssertEqual(one("__label__a text with __label__b inside"), .ex(label: "a", tokens: "text with __label__b inside", ts: nil, id: nil))
        // One label per example: a second leading label refuses the line (documented choice).
        XCTAssertEqual(one("__label__a __label__b some text"), .bad(.multipleLabels))
        XCTAssertEqual(one("__label__ some text"), .bad(.emptyLabel))
        XCTAssertEqual(one("__label__doc"), .bad(.emptyText))
        XCTAssertEqual(one("__label__doc ..."), .bad(.emptyText))
        XCTAssertEqual(one("__label__" + String(repeating: "x", count: 65) + " t"), .bad(.labelTooLong))
        XCTAssertEqual(one("__label__a\u{0B}b t"), .bad(.labelWhitespace))
        XCTAssertEqual(one("__label__d 12345678901", maxText: 10), .bad(.textTooLong))
    }

    func testOtherLines() {
        XCTAssertEqual(one("just some text"), .bad(.unknownFormat))
        XCTAssertEqual(one("[1, 2]"), .bad(.unknownFormat))
        XCTAssertEqual(one("label: x"), .bad(.unknownFormat))
        XCTAssertEqual(one(""), .blank)
        XCTAssertEqual(one(" \t \r"), .blank)
        XCTAssertEqual(outcome(InputParser(), [0x7B, 0x22, 0xFF, 0x22, 0x7D]), .bad(.invalidUTF8))
        XCTAssertEqual(outcome(InputParser(), Array("__label__a caf".utf8) + [0xC3]), .bad(.invalidUTF8))
        XCTAssertEqual(outcome(InputParser(), [0x00, 0x01, 0x02, 0x89, 0x50, 0x4E, 0x47]), .bad(.invalidUTF8))
        XCTAssertEqual(outcome(InputParser(), [0x00, 0x01, 0x02]), .bad(.unknownFormat))
        // CRLF and a byte-order mark on the first line are tolerated.
        XCTAssertEqual(one("__label__a b\r"), .ex(label: "a", tokens: "b", ts: nil, id: nil))
        XCTAssertEqual(outcome(InputParser(), [0xEF, 0xBB, 0xBF] + Array("__label__a b".utf8), 1), .ex(label: "a", tokens: "b", ts: nil, id: nil))
        XCTAssertEqual(outcome(InputParser(), [0xEF, 0xBB, 0xBF] + Array("__label__a b".utf8), 2), .bad(.unknownFormat))
    }

    func testDuplicatesAreSameTokens() {
        let p = InputParser()
        XCTAssertEqual(outcome(p, Array("__label__a Fix typo".utf8)), .ex(label: "a", tokens: "fix typo", ts: nil, id: nil))
        XCTAssertEqual(outcome(p, Array(#"{"text":"fix, TYPO!","label":"b"}"#.utf8)), .dup)
        XCTAssertEqual(outcome(p, Array("__label__a fix typos".utf8)), .ex(label: "a", tokens: "fix typos", ts: nil, id: nil))
        let q = InputParser(options: InputOptions(dedupe: false))
        XCTAssertEqual(outcome(q, Array("__label__a Fix typo".utf8)), .ex(label: "a", tokens: "fix typo", ts: nil, id: nil))
        XCTAssertEqual(outcome(q, Array("__label__a Fix typo".utf8)), .ex(label: "a", tokens: "fix typo", ts: nil, id: nil))
    }

    // MARK: Streaming

    func tempFile(_ bytes: [UInt8], _ name: String = "in.txt") throws -> String {
        let dir = try TestSupport.tempDir("parser")
        try FileIO.publish(bytes, to: dir + "/" + name)
        return dir + "/" + name
    }

    func testStreamingAcrossChunkBoundariesMatchesLineByLine() throws {
        var text = ""
        for i in 0..<500 {
            switch i % 5 {
            case 0: text += "{\"text\": \"line \(i) über \\u00e9 \(String(repeating: "w\(i) ", count: i % 17))\", \"label\": \"l\(i % 7)\", \"ts\": \(1600000000 + i)}\n"
            case 1: text += "__label__f\(i % 3) fast text \(i)\r\n"
            case 2: text += "\n"
            case 3: text += "{\"broken\": \(i)\n"
            default: text += "__label__dup same text again\n"
            }
        }
        text += "__label__last no newline at the end"
        let bytes = Array(text.utf8)
        let path = try tempFile(bytes)
        var whole: [String] = []
        let p1 = InputParser()
        var lineNo = 0
        for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNo += 1
            let r = outcome(p1, Array(line), lineNo)
            if case .blank = r { continue }
            whole.append("\(lineNo) \(r)")
        }
        for chunk in [1, 2, 7, 64, 1 << 20] {
            var got: [String] = []
            let p = InputParser()
            let s = try p.parse(try ChunkReader(path: path, chunk: chunk), example: { e in
                got.append("\(e.line) \(R.ex(label: e.labelString, tokens: e.tokenString, ts: e.ts, id: nil))")
            }, bad: { e, _ in got.append("\(e.line) \(R.bad(e.reason))") })
            // Duplicates are not reported per line: drop them from the reference.
            XCTAssertEqual(got, whole.filter { !$0.hasSuffix(" dup") }, "chunk \(chunk)")
            XCTAssertEqual(s.lines, 501)
            XCTAssertEqual(s.blankLines, 100)
            XCTAssertEqual(s.badLines, 100)
            XCTAssertEqual(s.bad, [.badJSON: 100])
            XCTAssertEqual(s.duplicates, 99)
            XCTAssertEqual(s.examples, 100 + 100 + 1 + 1)
            XCTAssertEqual(s.bytes, bytes.count)
        }
    }

    func testHugeLineIsRefusedWithoutHoldingIt() throws {
        let opts = InputOptions(maxTextBytes: 100)   // maxLineBytes = 800 + 65536
        let huge = "{\"text\": \"" + String(repeating: "x", count: 200_000) + "\", \"label\": \"a\"}"
        let text = "__label__a first\n" + huge + "\n__label__b after\n" + huge
        let path = try tempFile(Array(text.utf8))
        for chunk in [1000, 1 << 20] {
            var bad: [(Int, InputBadReason, Int)] = []
            var good: [Int] = []
            let s = try InputParser(options: opts).parse(try ChunkReader(path: path, chunk: chunk),
                                                         example: { good.append($0.line) },
                                                         bad: { e, raw in bad.append((e.line, e.reason, raw.count)) })
            XCTAssertEqual(good, [1, 3], "chunk \(chunk)")
            XCTAssertEqual(bad.map(\.0), [2, 4])
            XCTAssertEqual(bad.map(\.1), [.lineTooLong, .lineTooLong])
            XCTAssertTrue(bad.allSatisfy { $0.2 <= 256 }, "only the start of a too-long line is handed out")
            XCTAssertEqual(s.lines, 4)
        }
        // Just over the text limit but under the line limit: text_too_long.
        let long = "{\"text\": \"" + String(repeating: "y", count: 101) + "\", \"label\": \"a\"}\n"
        let p2 = try tempFile(Array(long.utf8), "long.txt")
        let s2 = try InputParser(options: opts).parse(try ChunkReader(path: p2), example: { _ in }, bad: { _, _ in })
        XCTAssertEqual(s2.bad, [.textTooLong: 1])
    }

    func testSHA256AndZstdInput() throws {
        let content = Array("abc".utf8)
        let path = try tempFile(content)
        let s = try InputParser().parse(try ChunkReader(path: path), example: { _ in }, bad: { _, _ in })
        XCTAssertEqual(s.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(s.bad, [.unknownFormat: 1])
        // The same lines compressed give the same examples and the same (content) SHA-256.
        let lines = Array("__label__a one\n{\"text\":\"two\",\"label\":\"b\"}\n".utf8)
        let plain = try tempFile(lines, "p.txt")
        let zst = try tempFile(try Zstd.compress(lines), "p.txt.zst")
        let a = try InputParser.load(path: plain), b = try InputParser.load(path: zst)
        XCTAssertEqual(a.examples.map { "\($0.label) \(String(decoding: $0.tokens, as: UTF8.self))" }, ["a one", "b two"])
        XCTAssertEqual(b.examples.map { "\($0.label) \(String(decoding: $0.tokens, as: UTF8.self))" }, ["a one", "b two"])
        XCTAssertEqual(a.summary.sha256, b.summary.sha256)
    }

    // MARK: Hashes and the split

    func testXXH64ReferenceVectors() {
        XCTAssertEqual(StableHash.xxh64(Array("".utf8)), 0xEF46DB3751D8E999)
        XCTAssertEqual(StableHash.xxh64(Array("abc".utf8)), 0x44BC2CF5AD770999)
        XCTAssertEqual(StableHash.xxh64(Array("Nobody inspects the spammish repetition".utf8)), 0xFBCEA83C8A378BF1)
    }

    func testHoldoutSplitIsStableAndHasTheAskedShare() {
        var held = 0
        for i in 0..<20_000 {
            let h = StableHash.xxh64(Array("text number \(i)".utf8))
            if HoldoutSplit.isHoldout(tokenHash: h, fraction: 0.05) { held += 1 }
            XCTAssertFalse(HoldoutSplit.isHoldout(tokenHash: h, fraction: 0))
        }
        XCTAssertEqual(Double(held) / 20_000, 0.05, accuracy: 0.006)
        // A fixed value: the split must never change between versions (shards already on
        // disk were cut with it).
        XCTAssertEqual(StableHash.xxh64(Array("fix typo".utf8)) >> 11 == 0, false)
        XCTAssertEqual(HoldoutSplit.isHoldout(tokenHash: StableHash.xxh64(Array("fix typo".utf8)), fraction: 0.05),
                       StableHash.unit(StableHash.xxh64(Array("fix typo".utf8))) < 0.05)
    }

    // MARK: The two-frame shard form

    func testTwoFrameShardReadsLikeOneFrame() throws {
        var w = ShardWriter()
        w.append(label: "doc", ts: 100, tokens: ["fix", "typo"])
        w.append(label: "tests", ts: nil, tokens: ["t1"])
        let header = ShardHeader(split: "train", examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: "w.jsonl",
                                 sourceSHA256: String(repeating: "a", count: 64), sourceBytes: 10, part: 0, parts: 1,
                                 ingestedAt: "2026-11-26T00:00:00Z", tsMin: nil, tsMax: nil)
        let two = try ShardWriter.headerFrame(w.filled(header), recordBytes: w.records.count) + w.recordsFrame()
        let one = try w.finish(header: header)
        let a = try Shard(path: "two.pps", fileBytes: two), b = try Shard(path: "one.pps", fileBytes: one)
        XCTAssertEqual(a.header, b.header)
        XCTAssertEqual(a.payload, b.payload)
        XCTAssertEqual(a.examples().map(\.tokens), [["fix", "typo"], ["t1"]])
        // A cut in either frame is refused.
        XCTAssertThrowsError(try Shard(path: "cut.pps", fileBytes: Array(two.dropLast(3))))
    }
}

