import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// Issue 15, item 1: checkpoints and shards whose zstd checksum is valid but whose values are
/// out of range. Every file here is built by hand (bytes patched, then compressed again, so
/// the frame checksum is right) and must be refused with a `.corrupt` error: a trap or an
/// allocation of gigabytes kills the test process, which is the failure these tests catch.
final class HostileFileTests: XCTestCase, RawCheckpointEditing {
    // MARK: building blocks

    func config(hidden: Int = 0) -> ModelConfig {
        .small(dim: 8, hidden: hidden, bucket: 3000, capacity: 40)
    }

    /// A small trained checkpoint, decompressed.
    func rawCheckpoint(hidden: Int = 0) throws -> [UInt8] {
        let c = config(hidden: hidden)
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        var b = Batch()
        for i in 0..<60 { b.append(label: "l\(i % 3)", tokens: ["w\(i % 3)", "x\(i % 7)", "x\(i % 7)", "y\(i % 11)"]) }
        _ = try t.train(b); _ = try t.train(b)
        var m = CheckpointMeta(run: "main", createdAt: "2026-11-26T00:00:00Z", step: 120, tokens: 480, config: c, knobs: Knobs())
        m.cursor.shards = [ShardProgress(shard: ShardRef(name: "s.pps", sha256: "00"), examples: 60, passes: 1, position: 3)]
        return try Zstd.decompress(try t.checkpointBytes(meta: m))
    }

    /// Compresses `raw` (valid checksum) and asserts that decoding refuses it as corrupt,
    /// with `expect` in the message, in both load modes.
    func refusesCheckpoint(_ raw: [UInt8], _ expect: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let bytes = try Zstd.compress(raw, level: 1)
        for mode in Checkpoint.LoadMode.allCases {
        XCTAssertThrowsError(try Checkpoint.decode(bytes, path: "bad.ppc", mode: mode), file: file, line: line) { e in
            guard let p = e as? PPError else { return XCTFail("not a PPError: \(e)", file: file, line: line) }
            XCTAssertEqual(p.status, .corrupt, p.message, file: file, line: line)
            XCTAssertTrue(p.message.hasPrefix("bad.ppc: "), p.message, file: file, line: line)
            XCTAssertTrue(p.message.contains(expect), "\(mode): \(p.message) does not contain \(expect)", file: file, line: line)
        }
        }
    }

    // MARK: checkpoints

    func testCheckpointBuildingBlocksRoundTrip() throws {
        let raw = try rawCheckpoint()
        XCTAssertEqual(Set(sections(raw).keys), ["CURS", "VOCB", "DENS", "INPT", "OPTM", "TRNR"])
        // Unchanged bytes and an unchanged meta re-encoded both load: the tests below change
        // one value only.
        XCTAssertNoThrow(try Checkpoint.decode(try Zstd.compress(raw, level: 1), path: "ok.ppc"))
        XCTAssertNoThrow(try Checkpoint.decode(try Zstd.compress(try withMeta(raw) { _ in }, level: 1), path: "ok.ppc"))
    }

    /// u64 counts >= 2^63 used to trap in Int(_:) ("Not enough bits to represent the passed value").
    func testCountsOfTwoToTheSixtyThreeAreRefused() throws {
        let raw = try rawCheckpoint()
        let s = sections(raw)
        let huge: [UInt64] = [1 << 63, UInt64.max, (1 << 63) + 12345]
        let fields: [(String, Int, String)] = [
            ("VOCB capacity", s["VOCB"]!, "vocabulary capacity"),
            ("VOCB size", s["VOCB"]! + 8, "vocabulary size"),
            ("INPT rows", s["INPT"]!, "input rows"),
            ("INPT stored", s["INPT"]! + 12, "stored rows"),
            ("OPTM n", s["OPTM"]!, "optimiser state size"),
            ("TRNR examples", s["TRNR"]! + 32, "examples trained"),
            ("TRNR evictions", s["TRNR"]! + 40, "vocabulary evictions"),
        ]
        for (what, at, expect) in fields {
            for v in huge {
                var b = raw
                put(&b, at, v)
                try refusesCheckpoint(b, expect + " \(v) out of range")
                XCTAssertFalse(what.isEmpty)
            }
        }
        // The candidate count sits after the words and the recency list.
        var b = raw
        var o = s["VOCB"]! + 8
        let size = Int(u64(raw, o)); o += 8
        for _ in 0..<size { o += 2 + (Int(raw[o]) | Int(raw[o + 1]) << 8) }
        o += 4 * size
        put(&b, o, UInt64.max)
        try refusesCheckpoint(b, "vocabulary candidates")
    }

    /// A vocabulary capacity near 2^31 or a hidden width of 2^31 used to allocate gigabytes
    /// (the recency list, the dense layers) before anything was checked.
    func testHugeDimensionsInTheConfigAreRefused() throws {
        let raw = try rawCheckpoint()
        // The section agrees with the meta, as a consistent writer's would: the old reader
        // allocated the recency list (16 GiB) or the dense layers (77 GiB) from them.
        var b = try withMeta(raw) { $0.config.vocabCapacity = Int(Int32.max) - 3000 }
        put(&b, sections(b)["VOCB"]!, UInt64(Int(Int32.max) - 3000))
        try refusesCheckpoint(b, "vocab_capacity must be in 0...")
        b = try withMeta(raw) { $0.config.vocabCapacity = 1 << 25; $0.config.bucket = 3000 }
        put(&b, sections(b)["VOCB"]!, UInt64(1 << 25))
        try refusesCheckpoint(b, "more than the")
        b = try withMeta(raw) { $0.config.hidden = 1 << 31 }
        put(&b, sections(b)["DENS"]! + 4, UInt32(1 << 31))
        try refusesCheckpoint(b, "hidden must be in 0...")
        try refusesCheckpoint(try withMeta(raw) { $0.config.bucket = Int(Int32.max) - 40 }, "more than the")
        try refusesCheckpoint(try withMeta(raw) { $0.config.dim = 4096; $0.config.bucket = 1 << 30 }, "2^35 floats")
        try refusesCheckpoint(try withMeta(raw) { $0.config.wordNgrams = Int.max }, "word_ngrams")
        try refusesCheckpoint(try withMeta(raw) { $0.config.maxn = 1 << 40 }, "maxn")
        // A hidden width within the limits that the DENS section does not hold: refused from
        // the section's length, before the layers are allocated.
        b = try withMeta(raw) { $0.config.hidden = 65_536 }
        put(&b, sections(b)["DENS"]! + 4, UInt32(65_536))
        try refusesCheckpoint(b, "dense weights")
    }

    func testCountsLargerThanTheFileAreRefused() throws {
        let raw = try rawCheckpoint()
        let s = sections(raw)
        var b = raw
        put(&b, s["VOCB"]! + 8, UInt64(40))       // size 40 (within capacity), far more than the words there
        try refusesCheckpoint(b, "vocabulary size 40 needs more bytes")
        b = raw
        let rows = Int(u64(raw, s["INPT"]!))
        put(&b, s["INPT"]! + 12, UInt64(rows))    // every row stored
        try refusesCheckpoint(b, "input table")
        b = raw
        put(&b, s["OPTM"]!, UInt64(1 << 40))
        try refusesCheckpoint(b, "optimiser state")
        // A section length past the end.
        b = raw
        put(&b, s["DENS"]! - 8, UInt64(1) << 62)
        try refusesCheckpoint(b, "truncated section DENS")
    }

    /// `raw` in the format version 1 layout (the data cursor in the meta JSON, no CURS
    /// section), as builds before issue 19 part 2 wrote it.
    func version1(_ raw: [UInt8]) throws -> [UInt8] {
        let cursor = try Checkpoint.decode(try Zstd.compress(raw, level: 1), path: "v2.ppc").meta.cursor
        let curs = sections(raw)["CURS"]!
        var v1 = Array(raw[0..<(curs - 12)]) + raw[(curs + Int(u64(raw, curs - 8)))...]
        put(&v1, 8, UInt32(1))
        return try withMeta(v1) { $0.cursor = cursor }
    }

    /// The data cursor is indexed with by pp-train (order[position]): a position outside its
    /// shard, or a negative count, is refused when the checkpoint is read. In a version 1
    /// file it is in the meta JSON (the binary CURS section: CheckpointCursorTests).
    func testCursorOutOfRangeIsRefused() throws {
        let raw = try version1(try rawCheckpoint())
        XCTAssertNoThrow(try Checkpoint.decode(try Zstd.compress(raw, level: 1), path: "ok.ppc"))
        try refusesCheckpoint(try withMeta(raw) { $0.cursor.shards[0].position = 60 }, "cursor of shard s.pps")
        try refusesCheckpoint(try withMeta(raw) { $0.cursor.shards[0].position = -1 }, "cursor of shard s.pps")
        try refusesCheckpoint(try withMeta(raw) { $0.cursor.shards[0].passes = -2 }, "cursor of shard s.pps")
        try refusesCheckpoint(try withMeta(raw) { $0.step = -5 }, "negative step")
    }

    /// readHead (lineage walks, pp-ingest's vocabulary) applies the same checks.
    func testReadHeadRefusesTheSame() throws {
        let raw = try rawCheckpoint()
        let dir = try TestSupport.tempDir("hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var big = try withMeta(raw) { $0.config.vocabCapacity = Int(Int32.max) - 3000 }
        put(&big, sections(big)["VOCB"]!, UInt64(Int(Int32.max) - 3000))
        for (i, b) in [big, try withMeta(raw) { $0.config.hidden = 1 << 31 }].enumerated() {
            let p = dir + "/c\(i).ppc"
            try FileIO.publish(try Zstd.compress(b, level: 1), to: p)
            XCTAssertThrowsError(try Checkpoint.readHead(path: p, vocabulary: true)) { e in
                XCTAssertEqual((e as? PPError)?.status, .corrupt, "\(e)")
            }
        }
    }

    /// Byte mutations (deterministic seed), re-compressed so the checksum is valid: each
    /// file is refused or loads; none may trap. A loaded one is also used (predict). Both load
    /// modes give the same verdict, and the same predictions.
    func testMutatedCheckpointsNeverCrash() throws {
        let raws = [try rawCheckpoint(), try rawCheckpoint(hidden: 4)]
        // Where the u64/u32 fields sit (section lengths, counts, dimensions): a third of the
        // value mutations land on one, as a writer's bug or a bit flip in memory would.
        let fields: [[Int]] = raws.map { r in
            let s = sections(r)
            return ["VOCB", "DENS", "INPT", "OPTM", "TRNR"].map { s[$0]! - 8 }
                + [s["VOCB"]!, s["VOCB"]! + 8, s["DENS"]!, s["DENS"]! + 4, s["DENS"]! + 8,
                   s["INPT"]!, s["INPT"]! + 8, s["INPT"]! + 12, s["OPTM"]!, s["TRNR"]! + 32, s["TRNR"]! + 40]
        }
        var rng = SplitMix64(state: 15)
        let interesting: [UInt64] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 31, 1 << 32, 1 << 62, 1 << 63, UInt64.max, UInt64.max - 1]
        var refused = 0, loaded = 0
        for i in 0..<400 {
            var b = raws[i % 2]
            let n = 1 + Int(rng.next() % 4)
            for _ in 0..<n {
                let at = Int(rng.next() % UInt64(b.count))
                switch rng.next() % 3 {
                case 0: b[at] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b[at] ^= 1 << UInt8(rng.next() % 8)
                default:
                    // An interesting u64 or u32 value over a field-sized span.
                    let v = interesting[Int(rng.next() % UInt64(interesting.count))]
                    let f = fields[i % 2]
                    if rng.next() % 3 == 0 { put(&b, f[Int(rng.next() % UInt64(f.count))], v) }
                    else if at + 8 <= b.count { put(&b, at, v) } else if at + 4 <= b.count { put(&b, at, UInt32(truncatingIfNeeded: v)) }
                }
            }
            let bytes = try Zstd.compress(b, level: 1)
            do {
                let ck = try Checkpoint.decode(bytes, path: "m\(i).ppc")
                let p = ck.model.predict(tokens: ["w0", "x1", "y2"])
                loaded += 1
                do {
                    let q = try Checkpoint.decode(bytes, path: "m\(i).ppc", mode: .inference).model.predict(tokens: ["w0", "x1", "y2"])
                    XCTAssertEqual(p.map(\.bitPattern), q.map(\.bitPattern), "mutation \(i)")
                } catch { XCTFail("mutation \(i): the full load accepts, the inference load refuses: \(error)") }
            } catch let e as PPError {
                XCTAssertEqual(e.status, .corrupt, e.message)
                refused += 1
                do {
                    _ = try Checkpoint.decode(bytes, path: "m\(i).ppc", mode: .inference)
                    XCTFail("mutation \(i): the full load refuses (\(e.message)), the inference load accepts")
                } catch let f as PPError { XCTAssertEqual(f.message, e.message) }
            }
        }
        XCTAssertEqual(refused + loaded, 400)
        XCTAssertGreaterThan(refused, 100, "a third of the mutations hit a checked field")
    }

    // MARK: shards

    func rawShard() throws -> [UInt8] {
        var w = ShardWriter()
        for i in 0..<40 { w.append(label: "l\(i % 4)", ts: i % 5 == 0 ? nil : Int64(1_700_000_000 + i), tokens: ["a\(i)", "b", "c\(i % 3)"]) }
        let h = ShardHeader(split: "train", examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: "w.jsonl",
                            sourceSHA256: String(repeating: "0", count: 64), sourceBytes: 10, part: 0, parts: 1,
                            ingestedAt: "2026-11-26T00:00:00Z", tsMin: nil, tsMax: nil)
        return try Zstd.decompress(try w.finish(header: h, level: 1))
    }

    func refusesShard(_ raw: [UInt8], _ expect: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let bytes = try Zstd.compress(raw, level: 1)
        XCTAssertThrowsError(try Shard(path: "bad.pps", fileBytes: bytes), file: file, line: line) { e in
            guard let p = e as? PPError else { return XCTFail("not a PPError: \(e)", file: file, line: line) }
            XCTAssertEqual(p.status, .corrupt, p.message, file: file, line: line)
            XCTAssertTrue(p.message.contains(expect), "\(p.message) does not contain \(expect)", file: file, line: line)
        }
    }

    func withHeader(_ raw: [UInt8], _ edit: (inout ShardHeader) -> Void) throws -> [UInt8] {
        let hl = Int(u32(raw, 12))
        var h = try JSONDecoder().decode(ShardHeader.self, from: Data(raw[16..<(16 + hl)]))
        edit(&h)
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(h))
        var out = Array(raw[0..<12])
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { out.append(contentsOf: $0) }
        return out + json + raw[(16 + hl)...]
    }

    func testShardRecordSizeOfTwoToTheSixtyThreeIsRefused() throws {
        let raw = try rawShard()
        XCTAssertNoThrow(try Shard(path: "ok.pps", fileBytes: try Zstd.compress(raw, level: 1)))
        let at = 16 + Int(u32(raw, 12))
        for v: UInt64 in [1 << 63, UInt64.max, UInt64.max - 7, (1 << 62) + 5] {
            var b = raw
            put(&b, at, v)
            try refusesShard(b, "truncated records (size field \(v)")
        }
    }

    func testShardHeaderCountsMustAgree() throws {
        let raw = try rawShard()
        try refusesShard(try withHeader(raw) { $0.labelCounts.removeLast() }, "label_counts for 4 labels")
        try refusesShard(try withHeader(raw) { $0.labelCounts[0] += 1; $0.labelCounts[1] -= 1 }, "label_counts do not match")
        try refusesShard(try withHeader(raw) { $0.examples = Int.max }, "impossible")
        try refusesShard(try withHeader(raw) { $0.examples = -1 }, "impossible")
        try refusesShard(try withHeader(raw) { $0.tokens = -1 }, "impossible")
    }

    func testMutatedShardsNeverCrash() throws {
        let raw = try rawShard()
        let recordSize = 16 + Int(u32(raw, 12))   // the u64 record byte count
        var rng = SplitMix64(state: 1515)
        var refused = 0
        for i in 0..<400 {
            var b = raw
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let at = rng.next() % 4 == 0 ? recordSize : Int(rng.next() % UInt64(b.count))
                if rng.next() % 2 == 0 { b[at] = UInt8(truncatingIfNeeded: rng.next()) } else if at + 8 <= b.count {
                    put(&b, at, [UInt64.max, 1 << 63, 0xFFFF_FFFF, 1 << 40][Int(rng.next() % 4)])
                }
            }
            do {
                let s = try Shard(path: "m\(i).pps", fileBytes: try Zstd.compress(b, level: 1))
                XCTAssertEqual(s.examples().count, s.header.examples)   // walks every record
            } catch let e as PPError {
                XCTAssertEqual(e.status, .corrupt, e.message)
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, 100)
    }

    /// A frame that declares a huge content size is not reserved up front (a 32 GiB
    /// reservation used to kill the process before a byte was decoded).
    func testDeclaredContentSizeIsNotTrusted() throws {
        // A 16-byte frame: magic, descriptor (single segment off, 8-byte FCS), window, FCS 2^35,
        // then a last, empty raw block. It decodes to nothing, against its declared size.
        var f: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0xC0, 0x58]
        withUnsafeBytes(of: UInt64(1 << 35).littleEndian) { f.append(contentsOf: $0) }
        f += [0x01, 0x00, 0x00]
        let out = try? Zstd.decompress(f)
        XCTAssertEqual(out?.count ?? 0, 0)
    }
}

/// A corrupt shard in holdout/ is skipped (with an error) rather than failing the whole
/// eval set; its bytes stay in the set's hash so `--pending` keeps finding its results.
final class HostileHoldoutTests: XCTestCase {
    func testCorruptHoldoutShardIsSkippedNotFatal() throws {
        let dir = try TestSupport.tempDir("holdout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = ShardWriter()
        for i in 0..<10 { w.append(label: "l\(i % 2)", ts: nil, tokens: ["t\(i)"]) }
        let h = ShardHeader(split: "holdout", examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: "w",
                            sourceSHA256: String(repeating: "0", count: 64), sourceBytes: 1, part: 0, parts: 1,
                            ingestedAt: "2026-11-26T00:00:00Z", tsMin: nil, tsMax: nil)
        var raw = try Zstd.decompress(try w.finish(header: h, level: 1))
        try FileIO.publish(try Zstd.compress(raw, level: 1), to: dir + "/a-000.pps")
        let at = 16 + Int(raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian })
        withUnsafeBytes(of: UInt64.max.littleEndian) { for (i, x) in $0.enumerated() { raw[at + i] = x } }
        try FileIO.publish(try Zstd.compress(raw, level: 1), to: dir + "/b-000.pps")
        let paths = [dir + "/a-000.pps", dir + "/b-000.pps"]

        XCTAssertThrowsError(try EvalSet.load(paths, source: "x")) { XCTAssertEqual(($0 as? PPError)?.status, .corrupt) }
        var warnings: [String] = []
        let set = try EvalSet.load(paths, source: "holdout", skipCorrupt: true, warn: { warnings.append($0) })
        XCTAssertEqual(set.count, 10)
        XCTAssertEqual(set.hash, try EvalSet.hashShards(paths))
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings.first?.contains("b-000.pps") ?? false, "\(warnings)")
    }
}

/// Editing a decompressed checkpoint's bytes (HostileFileTests, ExportTests).
protocol RawCheckpointEditing {}

extension RawCheckpointEditing {
    /// Offset of each section's payload (after tag and u64 length) in a raw checkpoint.
    func sections(_ raw: [UInt8]) -> [String: Int] {
        var out: [String: Int] = [:]
        var o = 16 + Int(u32(raw, 12))
        while o + 12 <= raw.count - 8 {
            let tag = String(decoding: raw[o..<(o + 4)], as: UTF8.self)
            let len = Int(u64(raw, o + 4))
            out[tag] = o + 12
            o += 12 + len
        }
        return out
    }

    func u32(_ b: [UInt8], _ o: Int) -> UInt32 { b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian } }
    func u64(_ b: [UInt8], _ o: Int) -> UInt64 { b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian } }
    func put<T: FixedWidthInteger>(_ b: inout [UInt8], _ o: Int, _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[o + i] = x } }
    }

    /// The raw checkpoint with its meta replaced by `edit(meta)` (JSON re-encoded).
    func withMeta(_ raw: [UInt8], _ edit: (inout CheckpointMeta) -> Void) throws -> [UInt8] {
        let ml = Int(u32(raw, 12))
        var meta = try JSONDecoder().decode(CheckpointMeta.self, from: Data(raw[16..<(16 + ml)]))
        edit(&meta)
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(meta))
        var out = Array(raw[0..<12])
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { out.append(contentsOf: $0) }
        return out + json + raw[(16 + ml)...]
    }
}
