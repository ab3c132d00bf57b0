// The CURS section of a checkpoint (format version 2, issue 19): pp-train's data cursor
// (DataCursor, ModelConfig.swift) in a compact binary form, right after the meta JSON. It
// lists every shard the run ever saw, so it grows with the run (200+ KB of JSON after 20 years
// of weekly shards; far more with minute ingests): kept out of the meta JSON, readers that do
// not need it (pp-eval, pp-select's lineage walk, pp-ingest's canary) pass over its bytes
// without decoding them. Format version 1 checkpoints carry the cursor in the meta JSON; both
// are read. It is not the cursor's meaning (pp-train's DataFeed) nor the rest of the file
// (Checkpoint.swift).
//
// Payload (little-endian; "varint": LEB128, 7 bits a byte, low first, at most 9 bytes and
// below 2^63):
//   u64 rng_state, varint entries N, then N times:
//     u16 name length, name (UTF-8, not empty),
//     u8 hash form: 1 = the shard's SHA-256 as 32 bytes (its hex text is 64 lowercase
//        digits), 0 = u16 length + the hash text as it is,
//     varint examples, varint passes, varint position
// A delta of format version 3 holds a patch against its base's cursor instead: u64
// rng_state, varint N and N entries as above (new or changed since the base's cursor), then
// varint D and D times u16 length + name (UTF-8, not empty) of the base's entries that are gone.
// Every count and length is checked against the bytes left before anything is allocated.

import Shared
import Foundation

extension Checkpoint {
    static let cursorTag = "CURS"
    /// The fewest bytes one entry takes (a 1-byte name, an empty text hash, 1-byte varints).
    static let cursorEntryMin = 2 + 1 + 1 + 2 + 3

    static func varint(_ v: UInt64, into w: inout ByteWriter) {
        var x = v
        while x >= 0x80 { w.buf.append(UInt8(x & 0x7F) | 0x80); x >>= 7 }
        w.buf.append(UInt8(x))
    }

    static func readVarint(_ r: inout ByteReader, _ field: String) throws -> Int {
        var v: UInt64 = 0
        for k in 0..<9 {
            try r.need(1)
            let b = r.bytes[r.pos]
            r.pos += 1
            v |= UInt64(b & 0x7F) << UInt64(7 * k)
            if b & 0x80 == 0 {
                guard let n = Int(exactly: v), k == 0 || b != 0 else { throw r.fail("\(field) out of range or not minimal") }
                return n
            }
        }
        throw r.fail("\(field) longer than 9 bytes")
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    /// The 32 bytes of a 64-digit lowercase hex text, or nil.
    static func sha256Bytes(_ hex: String) -> [UInt8]? {
        let u = Array(hex.utf8)
        guard u.count == 64 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<64 {
            guard let d = hexDigits.firstIndex(of: u[i]) else { return nil }
            out[i / 2] |= UInt8(d) << (i % 2 == 0 ? 4 : 0)
        }
        return out
    }

    /// Writes the CURS payload (without the section's tag and length).
    static func writeCursor(_ c: DataCursor, into w: inout ByteWriter) {
        w.u64(c.rngState)
        writeEntries(c.shards, into: &w)
    }

    /// Writes a delta's CURS payload (format version 3): the entries of `c` that are new or
    /// changed since `base` (the cursor of the delta's base), then the names of the base's
    /// entries that `c` no longer has.
    static func writeCursorPatch(_ c: DataCursor, against base: DataCursor, into w: inout ByteWriter) {
        var old = entriesByName(base)
        var changed: [ShardProgress] = []
        for p in c.shards {
            if let o = old.removeValue(forKey: p.shard.name), o == p { continue }
            changed.append(p)
        }
        w.u64(c.rngState)
        writeEntries(changed, into: &w)
        let removed = old.keys.sorted()
        varint(UInt64(removed.count), into: &w)
        for n in removed {
            let name = Array(n.utf8)
            w.u16(UInt16(name.count)); w.bytes(name)
        }
    }

    /// The cursor a patch (`readCursorPatch`) describes over its base's cursor, sorted by
    /// shard name as pp-train keeps it.
    package static func applyCursorPatch(_ p: CursorPatch, to base: DataCursor) -> DataCursor {
        var byName = entriesByName(base)
        for n in p.removed { byName[n] = nil }
        for e in p.entries { byName[e.shard.name] = e }
        return DataCursor(shards: byName.values.sorted { $0.shard.name < $1.shard.name }, rngState: p.rngState)
    }

    /// A cursor's entries by shard name (the last of a name wins).
    static func entriesByName(_ c: DataCursor) -> [String: ShardProgress] {
        Dictionary(c.shards.map { ($0.shard.name, $0) }, uniquingKeysWith: { _, b in b })
    }

    static func writeEntries(_ shards: [ShardProgress], into w: inout ByteWriter) {
        varint(UInt64(shards.count), into: &w)
        for p in shards {
            let name = Array(p.shard.name.utf8)
            w.u16(UInt16(name.count)); w.bytes(name)
            if let h = sha256Bytes(p.shard.sha256) {
                w.buf.append(1); w.bytes(h)
            } else {
                let hash = Array(p.shard.sha256.utf8)
                w.buf.append(0); w.u16(UInt16(hash.count)); w.bytes(hash)
            }
            varint(UInt64(p.examples), into: &w); varint(UInt64(p.passes), into: &w); varint(UInt64(p.position), into: &w)
        }
    }

    /// Can `c` be written as CURS (names and hashes under 64 KiB each, no negative count)?
    /// Shard names are file names (255 bytes at most), so this holds for any real cursor.
    static func cursorFits(_ c: DataCursor) -> Bool {
        c.shards.allSatisfy {
            !$0.shard.name.isEmpty && $0.shard.name.utf8.count <= Int(UInt16.max) && $0.shard.sha256.utf8.count <= Int(UInt16.max)
                && $0.examples >= 0 && $0.passes >= 0 && $0.position >= 0
        }
    }

    /// Reads a CURS payload (the reader spans exactly the section) and checks it like the
    /// cursor of a version 1 meta (checkCursor). With `build` false the same checks run over
    /// the bytes in place and no entry is built (an inference load: it refuses the same files
    /// as a full load, without the cost of building the cursor); the result is then empty.
    static func readCursor(_ r: inout ByteReader, build: Bool = true) throws -> DataCursor {
        var c = DataCursor()
        c.rngState = try r.u64()
        c.shards = try readEntries(&r, build: build)
        try r.expectEnd(cursorTag)
        if build { try checkCursor(c, path: r.path) }
        return c
    }

    /// Reads a delta's CURS payload (format version 3, `writeCursorPatch`), checked like
    /// `readCursor`; with `build` false nothing is built (the result is empty).
    static func readCursorPatch(_ r: inout ByteReader, build: Bool = true) throws -> CursorPatch {
        var p = CursorPatch(rngState: try r.u64())
        p.entries = try readEntries(&r, build: build)
        if build { try checkCursor(DataCursor(shards: p.entries), path: r.path) }
        let n = try readVarint(&r, "cursor removals")
        try r.fits(n, of: 3, "cursor removals")
        if build { p.removed.reserveCapacity(n) }
        for i in 0..<n {
            let len = Int(try r.u16())
            guard len > 0 else { throw r.fail("cursor removal \(i): empty shard name") }
            let b = try r.bytes(len)
            guard let name = String(validating: b, as: UTF8.self) else { throw r.fail("cursor removal \(i): shard name is not UTF-8") }
            if build { p.removed.append(name) }
        }
        try r.expectEnd(cursorTag)
        return p
    }

    /// The entries of a CURS payload (a varint count, then each entry); built only with `build`.
    static func readEntries(_ r: inout ByteReader, build: Bool) throws -> [ShardProgress] {
        var c = DataCursor()
        let n = try readVarint(&r, "cursor entries")
        try r.fits(n, of: cursorEntryMin, "cursor entries")
        if build { c.shards.reserveCapacity(n) }
        /// `len` bytes in place, checked to be UTF-8.
        func text(_ len: Int, _ i: Int, _ what: String) throws -> UnsafeRawBufferPointer {
            try r.need(len)
            let b = UnsafeRawBufferPointer(rebasing: r.bytes[r.pos..<(r.pos + len)])
            r.pos += len
            var it = b.makeIterator()
            var dec = UTF8()
            loop: while true {
                switch dec.decode(&it) {
                case .scalarValue: continue
                case .emptyInput: break loop
                case .error: throw r.fail("cursor entry \(i): \(what) is not UTF-8")
                }
            }
            return b
        }
        for i in 0..<n {
            let name = try text(Int(try r.u16()), i, "shard name")
            guard !name.isEmpty else { throw r.fail("cursor entry \(i): empty shard name") }
            var hash = ""
            switch try r.bytes(1)[0] {
            case 1:
                try r.need(32)
                if build {
                    var h = [UInt8](); h.reserveCapacity(64)
                    for k in 0..<32 { let b = r.bytes[r.pos + k]; h.append(hexDigits[Int(b >> 4)]); h.append(hexDigits[Int(b & 15)]) }
                    hash = String(decoding: h, as: UTF8.self)
                }
                r.pos += 32
            case 0:
                let t = try text(Int(try r.u16()), i, "shard hash")
                if build { hash = String(decoding: t, as: UTF8.self) }
            case let f:
                throw r.fail("cursor entry \(i): unknown hash form \(f)")
            }
            let ex = try readVarint(&r, "cursor examples"), passes = try readVarint(&r, "cursor passes"), pos = try readVarint(&r, "cursor position")
            let nameText = build ? String(decoding: name, as: UTF8.self) : ""
            let p = ShardProgress(shard: ShardRef(name: nameText, sha256: hash), examples: ex, passes: passes, position: pos)
            if build { c.shards.append(p) } else if !progressIsValid(p) {
                try checkCursor(DataCursor(shards: [p]), path: r.path, name: String(decoding: name, as: UTF8.self))
            }
        }
        return c.shards
    }

    /// Every position inside its shard, no negative count (the JSON form and CURS alike).
    /// `name`: the shard's name in the message when the entry's own is left empty.
    static func checkCursor(_ c: DataCursor, path: String, name: String? = nil) throws {
        for p in c.shards {
            guard progressIsValid(p) else {
                throw PPError.corrupt(path, "cursor of shard \(name ?? p.shard.name): position \(p.position), passes \(p.passes) of \(p.examples) examples")
            }
        }
    }
}

/// A delta's data cursor (format version 3): its RNG state, the entries new or changed since
/// its base's cursor, and the names of the base's entries it no longer has.
package struct CursorPatch: Equatable, Sendable {
    package var rngState: UInt64
    package var entries: [ShardProgress] = []
    package var removed: [String] = []
}

extension Checkpoint {
    @inline(__always)
    static func progressIsValid(_ p: ShardProgress) -> Bool {
        p.examples >= 0 && p.passes >= 0 && p.position >= 0 && (p.position < p.examples || (p.position == 0 && p.examples == 0))
    }
}
