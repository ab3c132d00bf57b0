// Serving exports (`pp-eval export`, issue 19): a checkpoint's deployed weights in a smaller
// file that pp-eval, `pp-eval predict` and pp-ingest's canary load like any checkpoint, but
// that pp-train cannot resume from. It is a checkpoint file (docs/formats.md "Serving
// export") whose meta has `export` and whose input rows sit in an `INPQ` section instead of
// `INPT`: only the rows the model predicts with, 32, 16 (IEEE binary16) or 8 bits a weight
// (int8 with one float scale per row), without optimiser accumulators; the data cursor is
// empty, the dense layers stay float32 (a few hundred KB), `OPTM` holds no floats and `TRNR`
// zeros. A delta is exported whole (its base resolved), an averaged checkpoint with its
// averaged weights (what it serves). This file is not the checkpoint writer (Checkpoint.swift)
// nor its reader (CheckpointLoad.swift), which hands an export's INPQ section to
// `parseExport` below.

import Shared
import Foundation

extension Checkpoint {
    /// The storage widths an export may use.
    public static let exportBits: Set<Int> = [32, 16, 8]
    static let exportTag = "INPQ"

    /// The export of `ck` (loaded in either mode; averaged weights already folded in when it
    /// should serve them) with `bits` per input weight, the file named `from` in its meta.
    /// Returns the compressed bytes and the number of input rows stored.
    package static func encodeExport(_ ck: Checkpoint, bits: Int, from: String) throws -> (bytes: [UInt8], stored: Int) {
        precondition(exportBits.contains(bits))
        let model = ck.model
        var meta = ck.meta
        meta.export = ExportInfo(bits: bits, from: from)
        meta.base = nil
        meta.delta = nil
        meta.sinceFull = nil
        meta.cursor = DataCursor()
        meta.guardState = nil
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        enc.userInfo[CheckpointMeta.omitCursor] = true
        let json = [UInt8](try enc.encode(meta))

        // The rows a prediction can read as non-zero: every stored row of a packed (inference)
        // model, every row with a non-zero weight of a full table.
        let dim = model.config.dim
        let rows = model.features.rows
        let row: (Int) -> UnsafePointer<Float>?
        if let p = model.packed {
            row = { p.has($0) ? p.row($0) : nil }
        } else {
            let t = model.table
            row = { Vec.isZero(t.row($0), dim) ? nil : UnsafePointer(t.row($0)) }
        }
        var bitmap = [UInt8](repeating: 0, count: (rows + 7) / 8)
        var stored = 0
        for i in 0..<rows where row(i) != nil {
            bitmap[i >> 3] |= 1 << UInt8(i & 7)
            stored += 1
        }
        let payload = exportPayloadBytes(stored: stored, dim: dim, bits: bits)

        var head = ByteWriter(capacity: 64 + json.count + model.dense.flat.count * 4 + 1 << 16)
        head.bytes(magic)
        head.u32(version)
        head.u32(UInt32(json.count))
        head.bytes(json)
        head.section(cursorTag) { writeCursor(DataCursor(), into: &$0) }
        head.section("VOCB") { model.vocabulary.serialize(into: &$0) }
        head.section("DENS") { s in
            s.u32(UInt32(model.dense.dim)); s.u32(UInt32(model.dense.hidden)); s.u32(UInt32(model.dense.labels))
            s.floats(model.dense.flat)
        }
        head.bytes(Array(exportTag.utf8))
        head.u64(UInt64(24 + bitmap.count + payload))
        head.u64(UInt64(rows)); head.u32(UInt32(dim)); head.u64(UInt64(stored)); head.u32(UInt32(bits))
        head.bytes(bitmap)
        var tail = ByteWriter(capacity: 128)
        tail.section("OPTM") { $0.u64(0) }
        tail.section("TRNR") { s in
            for _ in 0..<4 { s.u64(0) }
            s.u64(0)
            s.u64(UInt64(model.vocabulary.evictions))
        }
        let total = head.buf.count + payload + tail.buf.count + endMagic.count
        let bytes = try streamCompress(total: total) { feed in
            try head.buf.withUnsafeBytes { try feed($0) }
            switch bits {
            case 32:
                try forEachSetBit(bitmap) { try feed(UnsafeRawBufferPointer(start: row($0)!, count: dim * 4)) }
            case 16:
                var half = [UInt16](repeating: 0, count: dim)
                try forEachSetBit(bitmap) { i in
                    let r = row(i)!
                    for j in 0..<dim {
                        guard abs(r[j]) <= 65504 else {
                            throw PPError("\(from): input row \(i) holds \(r[j]), beyond float16's range (65504): export it with --bits 8 or 32", status: .corrupt)
                        }
                        half[j] = Float16(r[j]).bitPattern
                    }
                    try half.withUnsafeBytes { try feed($0) }
                }
            default:
                // int8: all the rows' scales first (so a reader checks them in one piece),
                // then the rows, each weight round(w / scale) in -127...127.
                var scales = [Float]()
                scales.reserveCapacity(stored)
                forEachSetBit(bitmap) { scales.append(int8Scale(row($0)!, dim)) }
                try scales.withUnsafeBytes { try feed($0) }
                var q = [Int8](repeating: 0, count: dim)
                var k = 0
                try forEachSetBit(bitmap) { i in
                    let r = row(i)!, inv = scales[k] > 0 ? 1 / scales[k] : 0
                    for j in 0..<dim { q[j] = Int8(max(-127, min(127, (r[j] * inv).rounded()))) }
                    try q.withUnsafeBytes { try feed($0) }
                    k += 1
                }
            }
            try tail.buf.withUnsafeBytes { try feed($0) }
            try endMagic.withUnsafeBytes { try feed($0) }
        }
        return (bytes, stored)
    }

    /// int8 storage's scale of one row: its largest magnitude over 127 (0 for a zero row).
    static func int8Scale(_ r: UnsafePointer<Float>, _ dim: Int) -> Float {
        var m: Float = 0
        for j in 0..<dim { m = max(m, abs(r[j])) }
        return m / 127
    }

    /// INPQ's bytes after its bitmap.
    static func exportPayloadBytes(stored: Int, dim: Int, bits: Int) -> Int {
        bits == 8 ? stored * (4 + dim) : stored * dim * bits / 8
    }

    /// The rest of an export after its DENS section (`parse` read everything before): INPQ,
    /// then OPTM (no floats), TRNR, the end. Every count is checked before it is used;
    /// the rows are decoded into packed float rows, so the model predicts as any inference load.
    static func parseExport(_ s: FrameReader, meta: CheckpointMeta, config c: ModelConfig, vocabulary vocab: Vocabulary,
                            dense: DenseLayers, section: (String) throws -> Int) throws -> Checkpoint {
        let path = s.path
        func fail(_ reason: String) -> PPError { PPError.corrupt(path, reason) }
        let bits = meta.export!.bits
        let qlen = try section(exportTag)
        guard qlen >= 24 else { throw fail("truncated section \(exportTag) (\(qlen) bytes)") }
        let (rows, dim, stored, qbits) = try s.bytes(24).withUnsafeBytes { p -> (Int, Int, Int, Int) in
            var r = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
            return (try r.count("input rows"), Int(try r.u32()), try r.count("stored rows"), Int(try r.u32()))
        }
        let f = Features(config: c)
        guard rows == f.rows, dim == c.dim else { throw fail("input table \(rows) x \(dim), config says \(f.rows) x \(c.dim)") }
        guard qbits == bits else { throw fail("\(exportTag) holds \(qbits)-bit rows, the meta says \(bits)") }
        guard stored <= rows else { throw fail("\(stored) stored rows of \(rows)") }
        let bitmapBytes = (rows + 7) / 8
        // One row's bytes (dim is the config's, within its limits); the count is the file's.
        let (payload, overflow) = stored.multipliedReportingOverflow(by: exportPayloadBytes(stored: 1, dim: dim, bits: bits))
        guard !overflow, bitmapBytes <= qlen - 24, payload == qlen - 24 - bitmapBytes else {
            throw fail("\(exportTag): \(stored) stored rows of \(dim) \(bits)-bit weights and a \(bitmapBytes)-byte bitmap do not fill its \(qlen) bytes")
        }
        let bitmap = try s.bytes(bitmapBytes)
        try checkBitmap(bitmap, rows: rows, stored: stored, path: path)
        let packed = PackedRows(rows: rows, dim: dim, bitmap: bitmap, stored: stored)
        let out = packed.data
        switch bits {
        case 32:
            try s.read(into: out, stored * dim * 4)
        case 16:
            let chunk = 1 << 16
            var half = [UInt16](repeating: 0, count: chunk)
            var done = 0
            while done < stored * dim {
                let k = min(chunk, stored * dim - done)
                try half.withUnsafeMutableBytes { try s.read(into: $0.baseAddress!, k * 2) }
                for j in 0..<k { out[done + j] = Float(Float16(bitPattern: half[j])) }
                done += k
            }
        default:
            let scales = try s.floats(stored)
            guard scales.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw fail("\(exportTag): a row scale is negative or not finite") }
            var q = [Int8](repeating: 0, count: dim)
            for i in 0..<stored {
                try q.withUnsafeMutableBytes { try s.read(into: $0.baseAddress!, dim) }
                let sc = scales[i], o = out + i * dim
                for j in 0..<dim { o[j] = Float(q[j]) * sc }
            }
        }
        let olen = try section("OPTM")
        guard olen == 8, try s.bytes(8) == [UInt8](repeating: 0, count: 8) else { throw fail("an export's OPTM section must hold no floats") }
        let tlen = try section("TRNR")
        guard tlen == 48 else { throw fail("TRNR of \(tlen) bytes, expected 48") }
        let evictions = try s.bytes(48).withUnsafeBytes { p -> Int in
            var r = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
            r.pos = 40
            return try r.count("vocabulary evictions")
        }
        vocab.setEvictions(evictions)
        guard s.pos == s.size - 8 else { throw fail("section checkpoint has \(s.size - 8 - s.pos) unread bytes (an export has nothing after TRNR)") }
        guard try s.bytes(8) == endMagic else { throw fail("truncated (no end magic)") }
        try s.finish()
        let model = Model(config: c, vocabulary: vocab, table: RowTable(rows: 0, dim: dim), dense: dense, labels: meta.labels, packed: packed)
        return Checkpoint(meta: meta, model: model, state: nil)
    }
}
