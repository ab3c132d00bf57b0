import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// Issue 19, part 2, piece A: the data cursor in a binary CURS section (format version 2)
/// instead of the meta JSON; version 1 files (the cursor in the JSON) still read; the section
/// is hostile input like the rest of the file.
final class CheckpointCursorTests: XCTestCase {
    func config() -> ModelConfig {
        .small(dim: 8, bucket: 3000, capacity: 40)
    }

    /// A cursor of `n` shards (names sorted, as pp-train keeps them).
    func cursor(_ n: Int) -> DataCursor {
        var c = DataCursor()
        c.rngState = 0xDEAD_BEEF_1234
        for i in 0..<n {
            let name = String(format: "git-%06d.pps", i)
            c.shards.append(ShardProgress(shard: ShardRef(name: name, sha256: String(repeating: "ab", count: 32)),
                                          examples: 50 + i % 7, passes: i % 3, position: i % 50))
        }
        return c
    }

    func trained(_ cur: DataCursor) throws -> (Trainer, [UInt8]) {
        let t = try Trainer(config: config(), knobs: Knobs(lr: 0.2))
        var b = Batch()
        for i in 0..<60 { b.append(label: "l\(i % 3)", tokens: ["w\(i % 3)", "x\(i % 7)", "y\(i % 11)"]) }
        _ = try t.train(b)
        var m = CheckpointMeta(run: "main", createdAt: "2026-12-06T00:00:00Z", step: 60, tokens: 180, config: config(), knobs: Knobs())
        m.cursor = cur
        return (t, try t.checkpointBytes(meta: m))
    }

    func u32(_ b: [UInt8], _ o: Int) -> Int { Int(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian }) }
    func u64(_ b: [UInt8], _ o: Int) -> Int { Int(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian }) }
    func put<T: FixedWidthInteger>(_ b: inout [UInt8], _ o: Int, _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[o + i] = x } }
    }

    /// A version 2 raw checkpoint turned into the version 1 layout a build before this change
    /// wrote: version 1, the cursor inside the meta JSON, no CURS section.
    func toVersion1(_ raw: [UInt8], cursor: DataCursor) throws -> [UInt8] {
        let ml = u32(raw, 12)
        var meta = try JSONDecoder().decode(CheckpointMeta.self, from: Data(raw[16..<(16 + ml)]))
        meta.cursor = cursor
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(meta))
        let cursAt = 16 + ml
        XCTAssertEqual(String(decoding: raw[cursAt..<(cursAt + 4)], as: UTF8.self), "CURS")
        let rest = raw[(cursAt + 12 + u64(raw, cursAt + 4))...]
        var out = Array(raw[0..<8])
        withUnsafeBytes(of: UInt32(1).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { out.append(contentsOf: $0) }
        return out + json + rest
    }

    func testCursorIsBinaryAndRoundTrips() throws {
        let cur = cursor(1000)
        let (t, bytes) = try trained(cur)
        let raw = try Zstd.decompress(bytes)
        let ml = u32(raw, 12)
        XCTAssertEqual(u32(raw, 8), 2, "format version")
        let json = String(decoding: raw[16..<(16 + ml)], as: UTF8.self)
        XCTAssertFalse(json.contains("\"cursor\""), "the meta JSON no longer carries the cursor")
        XCTAssertFalse(json.contains("git-000999"))
        XCTAssertLessThan(ml, 4096, "the meta stays small whatever the run saw")
        // Full load: the cursor as written; inference load: not built.
        let full = try Checkpoint.decode(bytes, path: "c.ppc")
        XCTAssertEqual(full.meta.cursor, cur)
        let inf = try Checkpoint.decode(bytes, path: "c.ppc", mode: .inference)
        XCTAssertTrue(inf.meta.cursor.shards.isEmpty)
        XCTAssertEqual(inf.model.predict(tokens: ["w1", "x2"]), t.model.predict(tokens: ["w1", "x2"]))
        // readHead: the cursor only when asked; the vocabulary behind the section still reads.
        let dir = try TestSupport.tempDir("curs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/ckpt-x.ppc"
        try FileIO.publish(bytes, to: p)
        XCTAssertTrue(try Checkpoint.readHead(path: p).meta.cursor.shards.isEmpty)
        XCTAssertEqual(try Checkpoint.readHead(path: p, cursor: true).meta.cursor, cur)
        let hv = try Checkpoint.readHead(path: p, vocabulary: true)
        XCTAssertEqual(hv.vocabulary?.size, t.model.vocabulary.size)
        XCTAssertEqual(try Lineage.link(p).createdAt, "2026-12-06T00:00:00Z")
    }

    /// Checkpoints written before (version 1: the cursor in the meta JSON) load as before,
    /// in both modes, through readHead, and a head kept from either is its meta without the cursor.
    func testVersion1CheckpointStillReads() throws {
        let cur = cursor(300)
        let (t, bytes) = try trained(cur)
        let v1raw = try toVersion1(try Zstd.decompress(bytes), cursor: cur)
        let v1 = try Zstd.compress(v1raw, level: 1)
        let full = try Checkpoint.decode(v1, path: "old.ppc")
        XCTAssertEqual(full.meta.cursor, cur)
        XCTAssertEqual(full.model.predict(tokens: ["w0", "y3"]), t.model.predict(tokens: ["w0", "y3"]))
        let inf = try Checkpoint.decode(v1, path: "old.ppc", mode: .inference)
        XCTAssertEqual(inf.model.predict(tokens: ["w0", "y3"]), t.model.predict(tokens: ["w0", "y3"]))
        // Re-encoding a version 1 checkpoint gives exactly the version 2 file.
        XCTAssertTrue(try Trainer(checkpoint: full).checkpointBytes(meta: full.meta) == bytes)

        let root = Root(try TestSupport.tempDir("curs1"))
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        for (name, file) in [("ckpt-a.ppc", v1), ("ckpt-b.ppc", bytes)] {
            let p = root.checkpoints(run: "main") + "/" + name
            try FileIO.publish(file, to: p)
            XCTAssertEqual(try Checkpoint.readHead(path: p, cursor: true).meta.cursor, cur, name)
            let h = try Checkpoint.keepHead(of: p, root: root)
            XCTAssertEqual(try Checkpoint.readHead(path: h).meta.cursor, DataCursor(), "the head of \(name) keeps no cursor")
            XCTAssertEqual(try Lineage.link(h).lineage, try Lineage.link(p).lineage, name)
        }
    }

    /// The CURS section is hostile input: counts and lengths are checked against the section
    /// before anything is allocated, positions like the JSON cursor's; both modes and readHead
    /// refuse the same.
    func testHostileCursorSectionIsRefused() throws {
        let (_, bytes) = try trained(cursor(3))
        let raw = try Zstd.decompress(bytes)
        let cursAt = 16 + u32(raw, 12)
        let payload = Array(raw[(cursAt + 12)..<(cursAt + 12 + u64(raw, cursAt + 4))])
        /// `raw` with its CURS payload replaced.
        func with(_ p: [UInt8]) -> [UInt8] {
            var out = Array(raw[0..<(cursAt + 4)])
            withUnsafeBytes(of: UInt64(p.count).littleEndian) { out.append(contentsOf: $0) }
            return out + p + raw[(cursAt + 12 + payload.count)...]
        }
        XCTAssertNoThrow(try Checkpoint.decode(try Zstd.compress(with(payload), level: 1), path: "ok.ppc"))
        /// A payload: the rng state, then `body`.
        func curs(_ body: (inout ByteWriter) -> Void) -> [UInt8] {
            var w = ByteWriter()
            w.u64(1)
            body(&w)
            return w.buf
        }
        func entry(_ w: inout ByteWriter, name: [UInt8] = Array("a.pps".utf8), form: UInt8 = 0, ex: UInt64 = 5, passes: UInt64 = 0, pos: UInt64 = 0) {
            w.u16(UInt16(name.count)); w.bytes(name); w.buf.append(form)
            if form == 0 { w.u16(2); w.bytes([0x30, 0x30]) }
            if form == 1 { w.bytes([UInt8](repeating: 7, count: 32)) }
            Checkpoint.varint(ex, into: &w); Checkpoint.varint(passes, into: &w); Checkpoint.varint(pos, into: &w)
        }
        func refuses(_ b: [UInt8], _ expect: String, line: UInt = #line) throws {
            let z = try Zstd.compress(b, level: 1)
            for mode in Checkpoint.LoadMode.allCases {
                XCTAssertThrowsError(try Checkpoint.decode(z, path: "bad.ppc", mode: mode), line: line) { e in
                    let p = e as? PPError
                    XCTAssertEqual(p?.status, .corrupt, "\(e)", line: line)
                    XCTAssertTrue(p?.message.hasPrefix("bad.ppc: ") == true && p?.message.contains(expect) == true, "\(mode): \(e)", line: line)
                }
            }
            let dir = try TestSupport.tempDir("cursbad")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try FileIO.publish(z, to: dir + "/bad.ppc")
            XCTAssertThrowsError(try Checkpoint.readHead(path: dir + "/bad.ppc", cursor: true), line: line) { e in
                XCTAssertEqual((e as? PPError)?.status, .corrupt, "\(e)", line: line)
            }
        }
        // A good hand-made payload loads (the pieces below change one thing each).
        let good = curs { w in Checkpoint.varint(2, into: &w); entry(&w); entry(&w, name: Array("b.pps".utf8), form: 1, ex: 300, passes: 2, pos: 299) }
        let ck = try Checkpoint.decode(try Zstd.compress(with(good), level: 1), path: "ok.ppc")
        XCTAssertEqual(ck.meta.cursor.shards.map(\.shard.name), ["a.pps", "b.pps"])
        XCTAssertEqual(ck.meta.cursor.shards[1].shard.sha256, String(repeating: "07", count: 32))
        XCTAssertEqual(ck.meta.cursor.shards[1].position, 299)

        try refuses(with(curs { Checkpoint.varint(1 << 40, into: &$0) }), "cursor entries")       // 2^40 entries in a few bytes
        try refuses(with(curs { Checkpoint.varint(UInt64(Int64.max), into: &$0) }), "cursor entries")
        try refuses(with(curs { $0.bytes([UInt8](repeating: 0xFF, count: 10)) }), "longer than 9 bytes")
        try refuses(with(curs { $0.bytes([0x81, 0x00]) }), "not minimal")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); entry(&w); entry(&w) }), "unread bytes")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); w.u16(0xFFFF); w.bytes([UInt8](repeating: 0x61, count: 40)) }), "truncated")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); entry(&w, name: [0x61, 0xFF, 0x62]) }), "not UTF-8")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); entry(&w, name: []) }), "empty shard name")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); entry(&w, form: 9) }), "unknown hash form 9")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); entry(&w, ex: 5, pos: 5) }), "cursor of shard a.pps: position 5")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); entry(&w, form: 1, ex: 0, pos: 1) }), "cursor of shard a.pps")
        try refuses(with(curs { w in Checkpoint.varint(1, into: &w); entry(&w); w.buf.removeLast() }), "truncated")
        // The section's own length past the end.
        var b = raw
        put(&b, cursAt + 4, UInt64(1) << 50)
        try refuses(b, "truncated")
    }

    /// The point of the change: a long history costs the meta JSON nothing, and the CURS
    /// section is several times smaller than the same cursor as JSON.
    func testLongHistoryStaysCompact() throws {
        let cur = cursor(20_000)
        let (_, bytes) = try trained(cur)
        let raw = try Zstd.decompress(bytes)
        let ml = u32(raw, 12)
        let curs = u64(raw, 16 + ml + 4)
        let json = try JSONEncoder().encode(cur).count
        XCTAssertLessThan(ml, 4096)
        XCTAssertLessThan(curs * 2, json, "CURS \(curs) bytes vs JSON \(json) bytes")
    }
}
