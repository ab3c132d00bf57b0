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

    /// Zstd.decompress: frames that declare their sizes go straight into place (shards are
    /// two frames); a frame that lies about its size, a cut frame or bytes after the last
    /// frame are refused as corrupt, never read past.
    func testDecompressTakesDeclaredFramesAndRefusesLies() throws {
        var text = [UInt8]()
        for i in 0..<3000 { text.append(contentsOf: Array("line \(i % 97)\n".utf8)) }
        for n in [0, 1, 1000, text.count] {
            XCTAssertEqual(try Zstd.decompress(try Zstd.compress(Array(text[0..<n]))), Array(text[0..<n]), "\(n) bytes")
        }
        let a = try Zstd.compress(Array(text[0..<1000])), b = try Zstd.compress(Array(text[1000...]))
        XCTAssertEqual(try Zstd.decompress(a + b), text, "two frames are one stream")
        func corrupt(_ bytes: [UInt8], _ what: String, line: UInt = #line) {
            XCTAssertThrowsError(try Zstd.decompress(bytes), what, line: line) { e in
                XCTAssertEqual((e as? PPError)?.status, .corrupt, "\(what): \(e)", line: line)
            }
        }
        // The frame header's content size, one more than the frame holds (a single-segment
        // frame of 1,000 bytes: FCS is 2 bytes at offset 5, value - 256).
        var lie = a
        XCTAssertEqual((lie[4] >> 5) & 1, 1, "single segment")
        XCTAssertEqual(lie[4] >> 6, 1, "a 2-byte size field")
        lie[5] &+= 1
        corrupt(lie, "declares a byte more than it holds")
        lie = a
        lie[5] &-= 1
        corrupt(lie, "declares a byte less than it holds")
        corrupt(Array(a.dropLast(3)), "cut")
        corrupt(a + Array("junk".utf8), "bytes after the frame")
    }

    func testISOParse() {
        XCTAssertEqual(Clock.parseISO("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(Clock.parseISO("2016-02-15T16:03:36+07:00"), 1455527016)
        XCTAssertNil(Clock.parseISO("2016-13-15T16:03:36Z"))
        XCTAssertEqual(Clock.iso(1455527016), "2016-02-15T09:03:36Z")
    }
}
