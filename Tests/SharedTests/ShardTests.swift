import XCTest
import TestSupport
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

    /// Readers share pooled decompression contexts: one left mid-frame (a head read stops
    /// early) or failed on a cut or corrupt frame hands back a context that decodes the next
    /// file from its start, with readers of different files alive at once.
    func testChunkReadersReusingContextsStartEachFileClean() throws {
        let dir = try TestSupport.tempDir("zstd-pool")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var a = [UInt8](), b = [UInt8]()
        for i in 0..<100_000 { a.append(contentsOf: Array("a \(i)\n".utf8)); b.append(contentsOf: Array("bee \(i % 501)\n".utf8)) }
        let za = try Zstd.compress(a, level: 1, workers: 2), zb = try Zstd.compress(b)
        try FileIO.publish(za, to: dir + "/a.zst")
        try FileIO.publish(zb, to: dir + "/b.zst")
        try FileIO.publish(Array(za[0..<(za.count / 2)]), to: dir + "/cut.zst")
        var bad = zb
        bad[bad.count / 2] ^= 0xFF
        try FileIO.publish(bad, to: dir + "/bad.zst")
        func read(_ name: String) throws -> [UInt8] {
            let r = try ChunkReader(path: dir + "/" + name, chunk: 1 << 12)
            var got = [UInt8]()
            while try r.next({ got.append(contentsOf: $0) }) {}
            return got
        }
        for round in 0..<3 {
            do {   // stopped after its first chunk, as a head read does
                let r = try ChunkReader(path: dir + "/a.zst", chunk: 1 << 12)
                XCTAssertTrue(try r.next { _ in })
            }
            XCTAssertThrowsError(try read("cut.zst"), "round \(round)")
            XCTAssertThrowsError(try read("bad.zst"), "round \(round)")
            let open = try ChunkReader(path: dir + "/b.zst", chunk: 1 << 12)   // alive while a is read
            XCTAssertEqual(try read("a.zst"), a, "round \(round)")
            var got = [UInt8]()
            while try open.next({ got.append(contentsOf: $0) }) {}
            XCTAssertEqual(got, b, "round \(round)")
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
