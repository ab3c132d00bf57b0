// The checkpoint file (*.ppc): a model and the trainer state that continues it, in one zstd
// frame (level -1, 2 workers, XXH64 content checksum). It is not the policy of when to write
// one or what to name it (pp-train's loop) nor the meaning of the weights (Model.swift).
//
// Layout of the decompressed bytes (all integers little-endian, floats IEEE-754 binary32 LE):
//
//   offset  size   field
//   0       8      magic "PPCKPT01"
//   8       4      format version u32 = 2, or 4 for a delta whose CURS and VOCB are patches
//                  against its base's (3: CURS only; 1 is still read: the cursor in the meta,
//                  no CURS)
//   12      4      meta length M u32
//   16      M      meta: CheckpointMeta as UTF-8 JSON, sorted keys, without the data cursor
//   16+M    ...    sections, in this order, each: 4-byte ASCII tag, u64 payload length, payload
//     "CURS"  (version 2) the data cursor, binary (CheckpointCursor.swift)
//     "VOCB"  vocabulary: u64 capacity, u64 size; per slot: u16 length + word bytes;
//             recency order (most recent first): size x u32 slot; u64 candidate count,
//             then (u64 key, u32 count) per candidate, sorted by key (Vocabulary.swift);
//             in a version 4 delta a patch against the base's (VocabularyPatch.swift)
//     "DENS"  dense layers: u32 dim, u32 hidden, u32 labels, then the flat vector
//             [W1|b1: hidden x (dim+1)][W|b: labels x (inDim+1)] as floats; output row k is
//             meta.labels[k]
//     "INPT"  input rows, sparse: u64 rows, u32 dim, u64 stored rows R, a bitmap of
//             ceil(rows/8) bytes (bit i%8 of byte i/8 set = row i stored; all other rows
//             and their optimiser state are exactly zero), then the R stored rows in
//             increasing order, dim floats each, then their R optimiser accumulators (floats).
//             In a delta checkpoint (meta.base set, DeltaCheckpoint.swift) the stored rows
//             are those changed since the base; the others are the base's
//     "OPTM"  dense optimiser state: u64 n, then n floats, same layout as DENS's vector
//     "TRNR"  trainer state: 4 x u64 RNG state (xoshiro256**), u64 examples trained,
//             u64 vocabulary evictions
//     "AVGW"  optional (issue 19): the averaged weights, written when the `average` knob is
//             on (Average.swift has the layout and its checks); absent in older checkpoints
//   end     8      end magic "PPCKEND1"
//
// `Checkpoint.load` (CheckpointLoad.swift) checks everything (frame checksum, magics, version,
// every length) and throws PPError(status: .corrupt) with one line naming the file and the
// defect; it decompresses the frame once, straight into the model's arrays.

import Shared
import CZstd
import Foundation

/// Little-endian byte building for the checkpoint sections.
struct ByteWriter {
    var buf: [UInt8] = []
    init(capacity: Int = 0) { buf.reserveCapacity(capacity) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { buf.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { buf.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { buf.append(contentsOf: $0) } }
    mutating func bytes(_ b: [UInt8]) { buf.append(contentsOf: b) }
    mutating func raw(_ p: UnsafeRawPointer, _ n: Int) { buf.append(contentsOf: UnsafeRawBufferPointer(start: p, count: n)) }
    mutating func floats(_ f: [Float]) { f.withUnsafeBytes { buf.append(contentsOf: $0) } }
    /// Appends a section: tag, u64 length, then what `body` writes.
    mutating func section(_ tag: String, _ body: (inout ByteWriter) -> Void) {
        buf.append(contentsOf: Array(tag.utf8))
        let at = buf.count
        u64(0)
        body(&self)
        let len = UInt64(buf.count - at - 8).littleEndian
        withUnsafeBytes(of: len) { for i in 0..<8 { buf[at + i] = $0[i] } }
    }
}

/// Bounds-checked little-endian reading; every failure names the file.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var pos: Int
    var end: Int
    let path: String

    func fail(_ reason: String) -> PPError { PPError.corrupt(path, reason) }

    /// Bytes left before the end of this reader's range.
    var remaining: Int { end - pos }

    mutating func need(_ n: Int) throws {
        guard n >= 0, n <= end - pos else { throw fail("truncated (need \(n) bytes at offset \(pos), section ends at \(end))") }
    }
    /// A u64 field that counts or sizes something, as an Int; a value >= 2^63 (no file can
    /// hold that many of anything) is refused by name instead of trapping in Int(_:).
    mutating func count(_ field: String) throws -> Int {
        let v = try u64()
        guard let n = Int(exactly: v) else { throw fail("\(field) \(v) out of range") }
        return n
    }
    /// Checks that `n` items of `size` bytes each fit in what is left, before anything is
    /// allocated for them (a count from the file is never trusted further than its length).
    func fits(_ n: Int, of size: Int, _ field: String) throws {
        let (bytes, o) = n.multipliedReportingOverflow(by: size)
        guard n >= 0, !o, bytes <= end - pos else {
            throw fail("\(field) \(n) needs more bytes than the \(end - pos) left")
        }
    }
    mutating func u16() throws -> UInt16 { try need(2); defer { pos += 2 }; return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt16.self)) }
    mutating func u32() throws -> UInt32 { try need(4); defer { pos += 4 }; return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt32.self)) }
    mutating func u64() throws -> UInt64 { try need(8); defer { pos += 8 }; return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt64.self)) }
    mutating func bytes(_ n: Int) throws -> [UInt8] { try need(n); defer { pos += n }; return Array(UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])) }
    mutating func floats(_ n: Int, into p: UnsafeMutablePointer<Float>) throws {
        try fits(n, of: 4, "float count")
        UnsafeMutableRawPointer(p).copyMemory(from: bytes.baseAddress! + pos, byteCount: n * 4)
        pos += n * 4
    }
    mutating func floats(_ n: Int) throws -> [Float] {
        try fits(n, of: 4, "float count")
        var out = [Float](repeating: 0, count: n)
        try out.withUnsafeMutableBufferPointer { try floats(n, into: $0.baseAddress!) }
        return out
    }
    /// Enters the next section, which must carry `tag`; returns a reader limited to it and
    /// moves self past it.
    mutating func section(_ tag: String) throws -> ByteReader {
        try need(12)
        let t = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + 4)]), as: UTF8.self)
        guard t == tag else { throw fail("expected section \(tag), found \"\(t)\" at offset \(pos)") }
        pos += 4
        let len = try u64()
        guard len <= UInt64(end - pos) else { throw fail("truncated section \(tag) (\(len) bytes announced, \(end - pos) left)") }
        let sub = ByteReader(bytes: bytes, pos: pos, end: pos + Int(len), path: path)
        pos += Int(len)
        return sub
    }
    func expectEnd(_ what: String) throws {
        guard pos == end else { throw fail("section \(what) has \(end - pos) unread bytes") }
    }
}

/// What a checkpoint carries beyond the model so that training continues exactly.
@usableFromInline package struct TrainerState {
    @usableFromInline package var rng: RNG
    @usableFromInline package var examples: Int
    @usableFromInline package var denseState: [Float]
    /// The averaged weights, or nil (no AVGW section).
    @usableFromInline package var average: WeightAverage?

    package init(rng: RNG, examples: Int, denseState: [Float], average: WeightAverage?) {
        self.rng = rng; self.examples = examples; self.denseState = denseState; self.average = average
    }
}

public final class Checkpoint {
    public static let magic: [UInt8] = Array("PPCKPT01".utf8)
    public static let endMagic: [UInt8] = Array("PPCKEND1".utf8)
    /// The version of a full checkpoint; `checkStart` also accepts 1 (no CURS: the cursor in
    /// the meta), `cursorPatchVersion` and `deltaVersion`.
    public static let version: UInt32 = 2
    /// A delta whose CURS holds only what changed since the base's cursor
    /// (CheckpointCursor.swift), its VOCB whole: what pp-train wrote on 2026-12-07 (session 13).
    public static let cursorPatchVersion: UInt32 = 3
    /// The version of a delta written with its base's cursor and vocabulary known: CURS and
    /// VOCB are patches against the base's (CheckpointCursor.swift, VocabularyPatch.swift). A
    /// full checkpoint stays version 2, readable by builds that predate both.
    public static let deltaVersion: UInt32 = 4
    public static let fileExtension = CheckpointName.fileExtension

    public let meta: CheckpointMeta
    public let model: Model
    /// The trainer's state; nil for a checkpoint loaded for inference (CheckpointLoad.swift).
    @usableFromInline package let state: TrainerState?
    /// Inside a chain load only (CheckpointLoad.loadChain): the vocabulary patches of the
    /// links read so far whose vocabulary was not built (each with its file's path), applied
    /// all at once by the link that builds it; `model.vocabulary` is then the last built one.
    var pendingVocabularyPatches: [(bytes: [UInt8], path: String)] = []
    /// The base a delta written after this one would complete: this checkpoint's own
    /// "RUN/FILE" when it sits in a run's folder (deltas form chains); nil otherwise.
    @usableFromInline package var deltaBase: String?
    /// Rows stored in the full checkpoint at the bottom of this one's chain (a delta is
    /// written only while its rows are at most a share of these: DeltaPolicy.maxFraction).
    @usableFromInline package var baseStoredRows = 0
    /// The data cursor of that base (`.full` loads only): a delta written after this one
    /// stores its cursor as a patch against it.
    package var baseCursor: DataCursor?
    /// `.full` loads only, for a trainer that resumes here and may write a cumulative delta
    /// (DeltaPolicy.chainLimit): the full checkpoint at the bottom of the chain ("RUN/FILE"),
    /// its data cursor and vocabulary, and the rows every delta of the chain stored (the rows
    /// changed since it; nil for a full checkpoint).
    package var fullName: String?
    package var fullCursor: DataCursor?
    package var fullVocabulary: VocabularySnapshot?
    package var rowsSinceFull: [UInt8]?

    package init(meta: CheckpointMeta, model: Model, state: TrainerState?) {
        self.meta = meta; self.model = model; self.state = state
    }

    /// Verifies the whole file without building a model: a regular file, one zstd frame
    /// whose checksum holds, decompressed content starting with the magic and version and
    /// ending with the end marker. Streams (ChunkReader), so memory stays small whatever the
    /// size. pp-select checks the deployed checkpoint with it at every run (issue 15).
    public static func verifyFile(path: String) throws {
        let reader: ChunkReader
        do { reader = try ChunkReader(path: path, chunk: 1 << 20, regularOnly: true) } catch let e as PPError {
            throw PPError(e.message, status: e.status == .ioError ? .noInput : e.status)
        }
        guard reader.isCompressed else { throw PPError.corrupt(path, "bad magic (not a zstd-compressed checkpoint)") }
        var head: [UInt8] = []
        var tail: [UInt8] = []
        var total = 0
        do {
            while try reader.next({ chunk in
                total += chunk.count
                if head.count < 16 { head += chunk.prefix(16 - head.count) }
                // The last 8 bytes seen. Index slicing, not `suffix` (which took the
                // Sequence path here, a walk over every byte: a quarter of the check's time).
                let k = endMagic.count
                if chunk.count >= k {
                    tail = Array(UnsafeRawBufferPointer(rebasing: chunk[(chunk.count - k)...]))
                } else {
                    tail += Array(chunk)
                    if tail.count > k { tail.removeFirst(tail.count - k) }
                }
            }) {}
        } catch let e as PPError {
            if e.message.contains("checksum") { throw PPError.corrupt(path, "checksum mismatch") }
            if e.status == .corrupt { throw PPError.corrupt(path, "corrupt compressed data (\(e.message))") }
            throw e
        }
        _ = try head.withUnsafeBytes { try checkStart($0, path: path) }
        guard tail == endMagic else { throw PPError.corrupt(path, "no end marker (truncated content, \(total) bytes)") }
    }

    /// Checks the first 12 bytes: length, magic, format version (also `readHead`'s check);
    /// returns the version (1 to 4).
    @discardableResult
    static func checkStart(_ p: UnsafeRawBufferPointer, path: String) throws -> UInt32 {
        guard p.count >= 16 else { throw PPError.corrupt(path, "truncated (\(p.count) bytes)") }
        guard Array(p[0..<8]) == magic else { throw PPError.corrupt(path, "bad magic (not a checkpoint)") }
        let v = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard v >= 1 && v <= deltaVersion else { throw PPError.corrupt(path, "checkpoint format version \(v), this build reads 1 to \(deltaVersion)") }
        return v
    }

    /// The meta's values that other code indexes or allocates with: the config within the
    /// documented limits (ModelConfig.validate, docs/formats.md "Limits") and the data cursor
    /// (every position inside its shard, no negative count). Used by `parse` and `readHead`.
    static func checkMeta(_ meta: CheckpointMeta, path: String) throws {
        do { try meta.config.validate() } catch let e as PPError { throw PPError.corrupt(path, e.message) }
        try checkCursor(meta.cursor, path: path)
        guard meta.step >= 0, meta.tokens >= 0 else { throw PPError.corrupt(path, "negative step or tokens in meta") }
        if let x = meta.export {
            guard Checkpoint.exportBits.contains(x.bits) else { throw PPError.corrupt(path, "export bits \(x.bits), expected 32, 16 or 8") }
            guard meta.base == nil, meta.delta == nil else { throw PPError.corrupt(path, "an export cannot be a delta") }
        }
    }

    /// Calls `body(i)` for every set bit i of the row bitmap (bit k of byte b is row 8b + k),
    /// in increasing order: the stored rows of the INPT section.
    @inlinable @inline(__always)
    package static func forEachSetBit(_ bitmap: [UInt8], _ body: (Int) throws -> Void) rethrows {
        for (byteIndex, byte) in bitmap.enumerated() where byte != 0 {
            var bits = byte
            while bits != 0 {
                try body(byteIndex * 8 + bits.trailingZeroBitCount)
                bits &= bits - 1
            }
        }
    }

    /// Serialises and compresses (see the layout above). With `delta` (a delta checkpoint,
    /// meta.base set), INPT stores exactly those rows, whatever their values; otherwise the
    /// rows that are not all zero. Returns the bytes and the number of rows stored.
    package static func encode(meta: CheckpointMeta, model: Model, delta: RowBits? = nil, baseCursor: DataCursor? = nil,
                               baseVocabulary: VocabularySnapshot? = nil, state: TrainerState) throws -> (bytes: [UInt8], stored: Int) {
        precondition((delta == nil) == (meta.base == nil), "a delta checkpoint names its base, a full one none")
        // A delta whose base's cursor is known stores its own as a patch (version 3), and
        // its vocabulary too when the base's is known (version 4).
        let patchAgainst = delta == nil ? nil : baseCursor
        let vocabularyAgainst = patchAgainst == nil ? nil : baseVocabulary
        precondition(model.packed == nil, "a model loaded for inference cannot be written")
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        enc.userInfo[CheckpointMeta.omitCursor] = true
        let json = [UInt8](try enc.encode(meta))
        guard cursorFits(meta.cursor) else { throw PPError("checkpoint encoder: a shard name or hash in the cursor is longer than 65535 bytes", status: .software) }
        let t = model.table, dim = t.dim, rows = t.rows
        // Which rows are stored: those whose weights or optimiser state are not exactly zero.
        var bitmap: [UInt8]
        var stored = 0
        if let d = delta {
            precondition(d.rows == rows)
            bitmap = d.bitmap
            stored = d.count
        } else {
            bitmap = [UInt8](repeating: 0, count: (rows + 7) / 8)
            for i in 0..<rows where t.state(i).pointee != 0 || !Vec.isZero(t.row(i), dim) {
                bitmap[i >> 3] |= 1 << UInt8(i & 7)
                stored += 1
            }
        }
        // Small parts are built in memory; the input rows stream from the table straight into
        // the compressor (no raw copy of an ~800 MB table).
        var head = ByteWriter(capacity: 64 + json.count + model.dense.flat.count * 4 + 1 << 16)
        head.bytes(magic)
        head.u32(patchAgainst == nil ? version : vocabularyAgainst == nil ? cursorPatchVersion : deltaVersion)
        head.u32(UInt32(json.count))
        head.bytes(json)
        if let b = patchAgainst {
            head.section(cursorTag) { writeCursorPatch(meta.cursor, against: b, into: &$0) }
        } else {
            head.section(cursorTag) { writeCursor(meta.cursor, into: &$0) }
        }
        if let b = vocabularyAgainst {
            head.section("VOCB") { model.vocabulary.serializePatch(against: b, into: &$0) }
        } else {
            head.section("VOCB") { model.vocabulary.serialize(into: &$0) }
        }
        head.section("DENS") { s in
            s.u32(UInt32(model.dense.dim)); s.u32(UInt32(model.dense.hidden)); s.u32(UInt32(model.dense.labels))
            s.floats(model.dense.flat)
        }
        let rowBytes = stored * dim * 4
        var states = [Float]()
        states.reserveCapacity(stored)
        Checkpoint.forEachSetBit(bitmap) { states.append(t.state($0).pointee) }
        var inpt = ByteWriter(capacity: 32 + bitmap.count)
        inpt.bytes(Array("INPT".utf8))
        inpt.u64(UInt64(20 + bitmap.count + rowBytes + stored * 4))
        inpt.u64(UInt64(rows)); inpt.u32(UInt32(dim)); inpt.u64(UInt64(stored))
        inpt.bytes(bitmap)
        var tail = ByteWriter(capacity: 1 << 12 + state.denseState.count * 4)
        tail.section("OPTM") { s in
            s.u64(UInt64(state.denseState.count))
            s.floats(state.denseState)
        }
        tail.section("TRNR") { s in
            for x in state.rng.state { s.u64(x) }
            s.u64(UInt64(state.examples))
            s.u64(UInt64(model.vocabulary.evictions))
        }
        let avg = state.average?.section(clock: state.examples)
        let total = head.buf.count + inpt.buf.count + rowBytes + stored * 4 + tail.buf.count + (avg?.count ?? 0) + endMagic.count
        let bytes = try streamCompress(total: total) { feed in
            try head.buf.withUnsafeBytes { try feed($0) }
            try inpt.buf.withUnsafeBytes { try feed($0) }
            try Checkpoint.forEachSetBit(bitmap) { try feed(UnsafeRawBufferPointer(start: t.row($0), count: dim * 4)) }
            try states.withUnsafeBytes { try feed($0) }
            try tail.buf.withUnsafeBytes { try feed($0) }
            try avg?.produce(feed)
            try endMagic.withUnsafeBytes { try feed($0) }
        }
        return (bytes, stored)
    }

    /// Compresses `total` bytes handed over by `produce` (through `feed`, in pieces of any
    /// size) into one zstd frame: level -1, 2 workers, content size and checksum. Pieces are
    /// gathered into 4 MiB blocks for ZSTD_compressStream2.
    static func streamCompress(total: Int, _ produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> [UInt8] {
        guard let cctx = ZSTD_createCCtx() else { throw PPError("zstd: out of memory") }
        defer { ZSTD_freeCCtx(cctx) }
        // Level -1 ("--fast=1"): trained float weights barely compress (level 1 gives 1.22x
        // on a bench checkpoint, -1 gives 1.07x) but -1 compresses twice as fast, and a
        // checkpoint write is time the trainer does not train (measured with the zstd CLI on
        // a 57 MB checkpoint, 2 threads: level 1 0.68 s, --fast=1 0.33 s).
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, -1), "level")
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "checksum")
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1), "content size")
        _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, 2)   // ignored by a libzstd without threads
        _ = try Zstd.check(ZSTD_CCtx_setPledgedSrcSize(cctx, UInt64(total)), "pledged size")
        let bound = ZSTD_compressBound(total)
        let blockSize = 4 << 20
        let block = UnsafeMutableRawPointer.allocate(byteCount: blockSize, alignment: 64)
        defer { block.deallocate() }
        var fill = 0, fed = 0
        return try [UInt8](unsafeUninitializedCapacity: bound) { buf, n in
            n = 0
            var out = ZSTD_outBuffer(dst: buf.baseAddress, size: bound, pos: 0)
            func flush(_ mode: ZSTD_EndDirective) throws {
                var inb = ZSTD_inBuffer(src: block, size: fill, pos: 0)
                while true {
                    let r = try Zstd.check(ZSTD_compressStream2(cctx, &out, &inb, mode), "compress")
                    if mode == ZSTD_e_end ? r == 0 : inb.pos == inb.size { break }
                }
                fill = 0
            }
            try produce { piece in
                var off = 0
                while off < piece.count {
                    let k = min(blockSize - fill, piece.count - off)
                    (block + fill).copyMemory(from: piece.baseAddress! + off, byteCount: k)
                    fill += k; off += k
                    if fill == blockSize { try flush(ZSTD_e_continue) }
                }
                fed += piece.count
            }
            guard fed == total else { throw PPError("checkpoint encoder: \(fed) bytes produced, \(total) announced") }
            try flush(ZSTD_e_end)
            n = out.pos
        }
    }

}
