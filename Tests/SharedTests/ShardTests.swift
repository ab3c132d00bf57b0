import XCTest
@testable import Shared

final class ShardTests: XCTestCase {
    func header() -> ShardHeader {
        ShardHeader(split: "train", examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: "w.jsonl",
                    sourceSHA256: String(repeating: "0", count: 64), sourceBytes: 10, part: 0, parts: 1,
                    ingestedAt: "2026-11-26T00:00:00Z", tsMin: nil, tsMax: nil)
    }

    func testRoundTrip() throws {
        var w = ShardWriter()
        w.append(label: "doc", ts: 100, tokens: ["fix", "typo"])
        w.append(label: "tests", ts: nil, tokens: [])
        w.append(label: "doc", ts: 50, tokens: ["über"])
        let bytes = try w.finish(header: header())
        let s = try Shard(path: "x.pps", fileBytes: bytes)
        XCTAssertEqual(s.header.examples, 3)
        XCTAssertEqual(s.header.tokens, 3)
        XCTAssertEqual(s.header.labels, ["doc", "tests"])
        XCTAssertEqual(s.header.labelCounts, [2, 1])
        XCTAssertEqual(s.header.tsMin, 50)
        XCTAssertEqual(s.header.tsMax, 100)
        let ex = s.examples()
        XCTAssertEqual(ex.map(\.label), ["doc", "tests", "doc"])
        XCTAssertEqual(ex.map(\.tokens), [["fix", "typo"], [], ["über"]])
        XCTAssertEqual(ex.map(\.ts), [100, nil, 50])
    }

    func testTruncatedAndForeignRefused() throws {
        var w = ShardWriter()
        for i in 0..<100 { w.append(label: "l\(i % 3)", ts: Int64(i), tokens: ["t\(i)", "x"]) }
        let bytes = try w.finish(header: header())
        XCTAssertThrowsError(try Shard(path: "cut.pps", fileBytes: Array(bytes.prefix(bytes.count - 7)))) { e in
            XCTAssertEqual((e as? PPError)?.status, .corrupt)
            XCTAssertTrue("\(e)".hasPrefix("cut.pps:"), "\(e)")
        }
        let foreign = try Zstd.compress(Array("hello world, not a shard at all....".utf8))
        XCTAssertThrowsError(try Shard(path: "f.pps", fileBytes: foreign)) { e in
            XCTAssertTrue("\(e)".contains("bad magic"), "\(e)")
        }
        var flipped = bytes
        flipped[flipped.count / 2] ^= 0x40
        XCTAssertThrowsError(try Shard(path: "flip.pps", fileBytes: flipped))
    }

    func testZstdChunkReaderStreamsBothForms() throws {
        let dir = NSTemporaryDirectory() + "/pp-zstd-\(getpid())"
        try FileIO.makeDirectories(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var text = [UInt8]()
        for i in 0..<200_000 { text.append(contentsOf: Array("line \(i)\n".utf8)) }
        try FileIO.publish(text, to: dir + "/a.txt")
        try FileIO.publish(try Zstd.compress(text), to: dir + "/a.txt.zst")
        for name in ["a.txt", "a.txt.zst"] {
            let r = try ChunkReader(path: dir + "/" + name, chunk: 1 << 16)
            var got = [UInt8]()
            while try r.next({ got.append(contentsOf: $0) }) {}
            XCTAssertEqual(got, text, name)
        }
    }

    func testISOParse() {
        XCTAssertEqual(Clock.parseISO("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(Clock.parseISO("2016-02-15T16:03:36+07:00"), 1455527016)
        XCTAssertNil(Clock.parseISO("2016-13-15T16:03:36Z"))
        XCTAssertEqual(Clock.iso(1455527016), "2016-02-15T09:03:36Z")
    }
}
