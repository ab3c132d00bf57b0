// Reading a checkpoint file (*.ppc; layout in Checkpoint.swift and docs/formats.md): one pass
// over its zstd frame, decompressed piece by piece (ZSTD_decompressStream) straight into the
// arrays the model keeps, with every length and count checked before anything is allocated
// for it. It is not the writer (Checkpoint.swift) nor the head-only reader (Lineage.swift).
//
// Two load modes:
// - `.full`: everything pp-train needs to continue exactly (the row table with its optimiser
//   accumulators, the dense optimiser state, the RNG): `Trainer(checkpoint:)`.
// - `.inference`: only what prediction needs (pp-eval, `pp-eval predict`, pp-ingest's canary,
//   pp-select's check, pp-train's probation baseline). The stored input rows stay packed as
//   the file holds them (PackedRows), decompressed straight into their final place, instead
//   of being spread over a table of every possible row (2.5M rows x 416 bytes with the
//   defaults: faulting in ~1 GB for ~60 MB of rows); the optimiser state is decompressed,
//   checked for its length and dropped. Both modes check the same things and refuse the same
//   files; their models predict bit for bit the same.
//
// The frame's checksum is verified by libzstd when the frame ends, after the sections were
// parsed: a defect found while parsing is reported as "checksum mismatch" when the rest of
// the frame proves the file damaged, so a flipped bit still reads as one.

import Shared
import CZstd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension Checkpoint {
    public enum LoadMode: CaseIterable, Sendable {
        /// The model and the trainer state (pp-train continues from it).
        case full
        /// The model only (prediction); `Trainer(checkpoint:)` refuses such a checkpoint.
        case inference
    }

    /// Reads, decompresses and checks a checkpoint file (magic, version, every length, the
    /// frame checksum). Throws PPError(status: .corrupt) with a one-line reason
    /// ("ckpt-...ppc: checksum mismatch") on any defect, .noInput when it cannot be read.
    ///
    /// `averaged`: the model's weights are replaced by the averaged weights of the AVGW
    /// section when the checkpoint has one (what a deployed checkpoint predicts with: pp-eval,
    /// predict, pp-ingest's canary); otherwise the training weights, and in `.full` mode the
    /// average is kept as trainer state (a resume). The average is folded into a full table,
    /// so an inference load of a checkpoint with the section is read again in `.full` mode
    /// (only when the `average` knob is on; off by default).
    ///
    /// A delta checkpoint (meta.base, DeltaCheckpoint.swift) loads its base first, in the same
    /// mode (a base may be a delta too: the chain down to its full checkpoint), then its own
    /// rows over the base's; a base that is missing, unreadable, not older, of another model,
    /// or a chain longer than `maxChain` makes the delta corrupt (the message names the base).
    public static func load(path: String, mode: LoadMode = .full, averaged: Bool = false) throws -> Checkpoint {
        do { return try loadChain(path: path, mode: mode, averaged: averaged) } catch is NeedsFullTable {
            return try loadChain(path: path, mode: .full, averaged: true)
        }
    }

    /// A checkpoint and the chain under it, without recursion: the chain's files are found
    /// first from their heads (`chain(of:)`), then loaded from the full checkpoint up, each
    /// delta over the one before. An error in a base names every delta above it, innermost
    /// last ("D2: its base checkpoint main/D1 cannot be read: D1: its base ... checksum
    /// mismatch").
    static func loadChain(path: String, mode: LoadMode, averaged: Bool) throws -> Checkpoint {
        let links = try chain(of: path)
        var below: Checkpoint? = nil
        for k in stride(from: links.count - 1, through: 0, by: -1) {
            do {
                // The links below the top leave their vocabulary patches pending: the top
                // applies them all and builds the vocabulary once.
                below = try loadOne(path: links[k].path, mode: mode, averaged: k == 0 && averaged, base: below, deferVocabulary: k > 0)
            } catch let e as PPError where k > 0 {
                throw namedFromTop(e, links: links, below: k)
            }
        }
        return below!
    }

    /// `e`, raised at link `k` of `links`, wrapped by each link above it, innermost last.
    static func namedFromTop(_ e: PPError, links: [(path: String, name: String)], below k: Int) -> PPError {
        var err = e
        for j in stride(from: k - 1, through: 0, by: -1) {
            err = PPError.corrupt(links[j].path, "its base checkpoint \(links[j + 1].name) cannot be read: \(err.message)")
        }
        return err
    }

    /// The files of `path`'s chain: itself, then its base, ... down to a full checkpoint (the
    /// last), each with the "RUN/FILE" name its delta gave it. Refused as corrupt, naming the
    /// delta: a base that is missing, not older than its delta, already in the chain, or a
    /// chain longer than `maxChain`.
    package static func chain(of path: String) throws -> [(path: String, name: String)] {
        var links: [(path: String, name: String)] = [(path, path)]
        do { try extendChain(&links) } catch let e as PPError where links.count > 1 && e.status == .corrupt {
            // Named from the top, as a load's errors are.
            throw namedFromTop(e, links: links, below: links.count - 1)
        }
        return links
    }

    /// Appends the base of the last link until a full checkpoint (or an unreadable base,
    /// which its load reports).
    private static func extendChain(_ links: inout [(path: String, name: String)]) throws {
        var seen: Set<String> = [FileIO.realPath(links[0].path) ?? links[0].path]
        while true {
            let at = links[links.count - 1].path
            let base: String?
            do { base = try readHeadBase(path: at) } catch let e as PPError {
                // The first file's own error is its own; a base's is reported by its load.
                if links.count == 1 { throw PPError(e.message, status: e.status == .ioError ? .noInput : e.status) }
                return
            }
            guard let name = base else { return }
            guard links.count <= maxChain else { throw PPError.corrupt(at, "a chain of more than \(maxChain) delta checkpoints (at this one, a delta of \(name))") }
            let (found, tried) = resolveBase(name, from: at)
            guard let bp = found else {
                throw PPError.corrupt(at, "its base checkpoint \(name) is missing" + (tried.isEmpty ? " (not a RUN/FILE name)" : " (looked for \(tried.joined(separator: ", ")))"))
            }
            try checkBaseIsOlder(name, of: at)
            guard seen.insert(FileIO.realPath(bp) ?? bp).inserted else {
                throw PPError.corrupt(at, "its base checkpoint \(name) is already in its chain (a loop)")
            }
            links.append((bp, name))
        }
    }

    /// One file of a chain, over `base` (the checkpoint its meta names, already loaded), or
    /// alone when it is full. A delta given no base loads its own chain (Checkpoint.decode).
    static func loadOne(path: String, mode: LoadMode, averaged: Bool, base: Checkpoint?, deferVocabulary: Bool = false) throws -> Checkpoint {
        let frame: FrameReader
        do { frame = try FrameReader(path: path) } catch let e as PPError {
            throw PPError(e.message, status: e.status == .ioError ? .noInput : e.status)
        }
        return try read(frame, mode: mode, averaged: averaged, base: base, deferVocabulary: deferVocabulary)
    }

    /// Checks and parses the bytes of a checkpoint file; `path` names it in errors.
    public static func decode(_ file: [UInt8], path: String, mode: LoadMode = .full, averaged: Bool = false) throws -> Checkpoint {
        do {
            return try file.withUnsafeBytes { try read(try FrameReader(bytes: $0, path: path), mode: mode, averaged: averaged) }
        } catch is NeedsFullTable {
            return try decode(file, path: path, mode: .full, averaged: true)
        }
    }

    /// An inference load met an AVGW section it must fold into a full table.
    struct NeedsFullTable: Error {}

    static func read(_ frame: FrameReader, mode: LoadMode, averaged: Bool = false, base: Checkpoint? = nil, deferVocabulary: Bool = false) throws -> Checkpoint {
        do {
            return try parse(frame, mode: mode, averaged: averaged, given: base, deferVocabulary: deferVocabulary)
        } catch let e as PPError where e.status == .corrupt && !frame.failed {
            // A defect in the content: when the frame's checksum fails too, that is the
            // cause (a damaged file), and the message says so.
            if frame.drainFindsChecksumMismatch() { throw PPError.corrupt(frame.path, "checksum mismatch") }
            throw e
        }
    }

    /// The sections in order (Checkpoint.swift's layout), each length checked against what
    /// the frame declares it holds before it is read.
    static func parse(_ s: FrameReader, mode: LoadMode, averaged: Bool = false, given: Checkpoint? = nil, deferVocabulary: Bool = false) throws -> Checkpoint {
        let path = s.path
        func fail(_ reason: String) -> PPError { PPError.corrupt(path, reason) }
        // The content ends with the end magic; sections must fit before it.
        let end = s.size - 8
        var remaining: Int { end - s.pos }
        func need(_ n: Int) throws {
            guard n >= 0, n <= remaining else { throw fail("truncated (need \(n) bytes at offset \(s.pos), section ends at \(end))") }
        }
        /// A section's tag and length; returns the length.
        func section(_ tag: String) throws -> Int {
            try need(12)
            let h = try s.bytes(12)
            let t = String(decoding: h[0..<4], as: UTF8.self)
            guard t == tag else { throw fail("expected section \(tag), found \"\(t)\" at offset \(s.pos - 12)") }
            let len = h.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt64.self)) }
            guard len <= UInt64(max(remaining, 0)) else { throw fail("truncated section \(tag) (\(len) bytes announced, \(remaining) left)") }
            return Int(len)
        }
        /// The first `n` bytes of a section of `len` (fewer when it is shorter: the reader
        /// then reports what is missing), as a ByteReader.
        func fields<T>(_ n: Int, of len: Int, _ body: (inout ByteReader) throws -> T) throws -> T {
            let b = try s.bytes(min(n, len))
            return try b.withUnsafeBytes { p in
                var r = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
                return try body(&r)
            }
        }

        let start = try s.bytes(min(16, s.size))
        let version = try start.withUnsafeBytes { try checkStart($0, path: path) }
        guard s.size >= 16 + 8 else { throw fail("truncated (no end magic)") }
        let ml = Int(start.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) })
        try need(ml)
        let metaBytes = try s.bytes(ml)
        var meta: CheckpointMeta
        do { meta = try JSONDecoder().decode(CheckpointMeta.self, from: Data(metaBytes)) } catch {
            throw fail("unreadable meta JSON (\(error))")
        }
        let c = meta.config
        try checkMeta(meta, path: path)
        var patch: CursorPatch?
        if version >= cursorPatchVersion && meta.base == nil {
            throw fail("format version \(version) is a delta's, and the meta names no base")
        }
        if version >= 2 {
            // CURS: the data cursor; built for a full load (pp-train resumes from it), only
            // checked in place otherwise (meta.cursor stays empty: nothing else needs it). A
            // version 3 delta's is a patch against its base's cursor, applied below.
            let clen = try section(cursorTag)
            try s.bytes(clen).withUnsafeBytes { p in
                var r = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
                if version >= cursorPatchVersion {
                    patch = try readCursorPatch(&r, build: mode == .full)
                } else {
                    let cursor = try readCursor(&r, build: mode == .full)
                    if mode == .full { meta.cursor = cursor }
                }
            }
        }
        if let sf = meta.sinceFull {
            // pp-train writes at most fullEvery - 1 (<= maxChain) deltas after a full one.
            guard let d = meta.delta, sf >= d, sf <= maxChain else {
                throw fail("meta since_full \(sf) does not fit its delta number \(meta.delta.map(String.init) ?? "none") (1 to \(maxChain), at least the delta number)")
            }
        }
        // A delta: its base first (the rows it does not store are the base's).
        var base: Checkpoint? = nil
        if let b = meta.base {
            base = try checkBase(given, named: b, of: path, meta: meta, mode: mode)
            if let p = patch, mode == .full, let bc = base?.meta.cursor { meta.cursor = applyCursorPatch(p, to: bc) }
        } else if meta.delta != nil {
            throw fail("meta has a delta number but no base")
        }
        let f = Features(config: c)
        // The INPT bitmap alone holds ceil(rows / 8) bytes: a config that declares more rows
        // than the rest of the file can describe is refused before anything is allocated for
        // it (the vocabulary's recency list is 8 bytes per slot of capacity).
        guard (f.rows + 7) / 8 <= remaining else {
            throw fail("config declares \(f.rows) input rows (vocab_capacity \(c.vocabCapacity) + bucket \(c.bucket)), more than the \(remaining) bytes left can hold")
        }

        // VOCB: read whole (a few MB at most), parsed by the vocabulary.
        let vlen = try section("VOCB")
        let vbytes = try s.bytes(vlen)
        var pendingPatches: [(bytes: [UInt8], path: String)] = []
        let vocab: Vocabulary
        if version >= deltaVersion, let b = base {
            // A patch over the base's vocabulary (VocabularyPatch.swift): kept for the link
            // above when this one is inside a chain, else applied with those still pending.
            pendingPatches = b.pendingVocabularyPatches + [(vbytes, path)]
            if deferVocabulary {
                vocab = b.model.vocabulary
            } else {
                vocab = try Vocabulary.applyPatches(pendingPatches, to: b.model.vocabulary, capacity: c.vocabCapacity, minCount: c.minCount)
                pendingPatches = []
            }
        } else {
            vocab = try vbytes.withUnsafeBytes { p -> Vocabulary in
                var vr = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
                // Evictions are in TRNR (read below); patched after.
                let v = try Vocabulary.deserialize(&vr, capacity: c.vocabCapacity, minCount: c.minCount, evictions: 0)
                try vr.expectEnd("VOCB")
                return v
            }
        }

        // DENS: three u32, then the weights straight into the layers' vector.
        let dlen = try section("DENS")
        let (dim, hid, L) = try fields(12, of: dlen) { r in (Int(try r.u32()), Int(try r.u32()), Int(try r.u32())) }
        guard dim == c.dim, hid == c.hidden else { throw fail("dense layers \(dim)/\(hid) do not match config dim \(c.dim) hidden \(c.hidden)") }
        guard L == meta.labels.count else { throw fail("\(L) output rows for \(meta.labels.count) labels") }
        guard Set(meta.labels).count == L else { throw fail("duplicate labels in meta") }
        let denseCount = DenseLayers.size(dim: dim, hidden: hid, labels: L)
        try exactFloats(denseCount, in: dlen - 12, "dense weights", "DENS", path: path)
        var dense = DenseLayers(dim: dim, hidden: hid)
        dense.flat = try s.floats(denseCount)

        if let x = meta.export {
            // A serving export (Export.swift): quantized rows, no training state.
            guard mode == .inference else {
                throw fail("a serving export (pp-eval export, \(x.bits)-bit rows) holds no training state; resume from the checkpoint it was made from, \(x.from)")
            }
            return try parseExport(s, meta: meta, config: c, vocabulary: vocab, dense: dense, section: section)
        }

        // INPT: u64 rows, u32 dim, u64 stored, the bitmap, the stored rows, their accumulators.
        let ilen = try section("INPT")
        let (rows, idim, stored) = try fields(20, of: ilen) { r in (try r.count("input rows"), Int(try r.u32()), try r.count("stored rows")) }
        guard rows == f.rows, idim == c.dim else { throw fail("input table \(rows) x \(idim), config says \(f.rows) x \(c.dim)") }
        guard stored <= rows else { throw fail("\(stored) stored rows of \(rows)") }
        let bitmapBytes = (rows + 7) / 8
        guard bitmapBytes <= ilen - 20 else { throw fail("truncated (need \(bitmapBytes) bytes at offset \(s.pos), section ends at \(s.pos + ilen - 20))") }
        // Each stored row is dim floats plus one accumulator: the section must hold exactly
        // that many bytes after the bitmap (checked before the rows are allocated).
        let (rowBytes, o1) = stored.multipliedReportingOverflow(by: (dim + 1) * 4)
        guard !o1, rowBytes == ilen - 20 - bitmapBytes else {
            throw fail("input table: \(stored) stored rows of \(dim) floats need \(o1 ? "too many" : String(rowBytes)) bytes, the section has \(ilen - 20 - bitmapBytes)")
        }
        let bitmap = try s.bytes(bitmapBytes)
        try checkBitmap(bitmap, rows: rows, stored: stored, path: path)
        let table: RowTable
        var packed: PackedRows? = nil
        switch mode {
        case .inference:
            if let b = base?.model.packed {
                // A delta's rows go straight over its base's, in place (no third copy).
                guard b.rows == rows, b.dim == dim else { throw fail("its base \(meta.base ?? "") has a \(b.rows) x \(b.dim) input table") }
                try b.readDelta(s, bitmap: bitmap, stored: stored)
                packed = b
            } else {
                let p = PackedRows(rows: rows, dim: dim, bitmap: bitmap, stored: stored)
                try s.read(into: p.data, stored * dim * 4)
                packed = p
            }
            try s.skip(stored * 4)
            table = RowTable(rows: 0, dim: dim)
        case .full:
            if let b = base?.model.table {
                guard b.rows == rows, b.dim == dim else { throw fail("its base \(meta.base ?? "") has a \(b.rows) x \(b.dim) input table") }
                table = b
            } else {
                table = RowTable(rows: rows, dim: dim)
            }
            try readRows(s, into: table, bitmap: bitmap, stored: stored)
        }

        // OPTM: u64 n (= the dense weights' count), then n floats.
        let olen = try section("OPTM")
        let nd = try fields(8, of: olen) { r in try r.count("optimiser state size") }
        guard nd == dense.flat.count else { throw fail("optimiser state of \(nd) floats for \(dense.flat.count) dense weights") }
        try exactFloats(nd, in: olen - 8, "float count", "OPTM", path: path)
        var denseState: [Float] = []
        if mode == .full { denseState = try s.floats(nd) } else { try s.skip(nd * 4) }

        // TRNR: the RNG, examples trained, vocabulary evictions.
        let tlen = try section("TRNR")
        let (rng, examples, evictions) = try fields(tlen, of: tlen) { r -> (RNG, Int, Int) in
            let rng = RNG(state: [try r.u64(), try r.u64(), try r.u64(), try r.u64()])
            let ex = try r.count("examples trained"), ev = try r.count("vocabulary evictions")
            try r.expectEnd("TRNR")
            return (rng, ex, ev)
        }
        vocab.setEvictions(evictions)

        // AVGW (optional, Average.swift): read whole, checked there.
        var avg: (parsed: WeightAverage.Parsed, payload: [UInt8])? = nil
        if remaining > 0 {
            let alen = try section(WeightAverage.tag)
            let payload = try s.bytes(alen)
            let a = try payload.withUnsafeBytes { p -> WeightAverage.Parsed in
                var ar = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
                return try WeightAverage.read(&ar, rows: rows, dim: dim, denseCount: denseCount, examples: examples)
            }
            if mode == .inference && averaged { throw NeedsFullTable() }
            avg = (a, payload)
        }
        guard s.pos == end else { throw fail("section checkpoint has \(end - s.pos) unread bytes") }
        guard try s.bytes(8) == endMagic else { throw fail("truncated (no end magic)") }
        try s.finish()

        let model = Model(config: c, vocabulary: vocab, table: table, dense: dense, labels: meta.labels, packed: packed)
        var average: WeightAverage? = nil
        if let a = avg {
            if averaged {
                a.payload.withUnsafeBytes { WeightAverage.fold(a.parsed, bytes: $0, into: model) }
            } else if mode == .full {
                average = a.payload.withUnsafeBytes { WeightAverage(a.parsed, bytes: $0, rows: rows, dim: dim) }
            }
        }
        let state = mode == .full ? TrainerState(rng: rng, examples: examples, denseState: denseState, average: average) : nil
        let ck = Checkpoint(meta: meta, model: model, state: state)
        ck.pendingVocabularyPatches = pendingPatches
        // The next checkpoint of a trainer that resumes from this one is a delta of it (a
        // chain, DeltaCheckpoint.swift): this file is the base, nothing has changed since.
        ck.deltaBase = runName(ofPath: path)
        ck.baseStoredRows = base?.baseStoredRows ?? stored
        if mode == .full {
            ck.baseCursor = meta.cursor
            if let b = base {
                ck.fullName = b.fullName
                ck.fullCursor = b.fullCursor
                ck.fullVocabulary = b.fullVocabulary
                var rows = b.rowsSinceFull ?? [UInt8](repeating: 0, count: bitmap.count)
                guard rows.count == bitmap.count else { throw fail("its input table does not match its base's") }
                RowBits.orBitmap(bitmap, into: &rows)
                ck.rowsSinceFull = rows
            } else {
                ck.fullName = ck.deltaBase
                ck.fullCursor = meta.cursor
                ck.fullVocabulary = vocab.snapshot()
            }
        }
        return ck
    }

    /// The longest chain of deltas a load follows (a delta of a delta ... of a full
    /// checkpoint). pp-train writes at most `--full-every` - 1 in a row (DeltaPolicy.maxFullEvery).
    package static let maxChain = 100

    /// The base "RUN/FILE" of the delta at `path`: `given` (loaded by loadChain), or, for a
    /// delta decoded from bytes, loaded here with its own chain; checked to be an older
    /// checkpoint of the same run and model that this delta can complete: a step no later and
    /// a smaller delta number (loadChain checked that its file name sorts earlier).
    static func checkBase(_ given: Checkpoint?, named name: String, of path: String, meta: CheckpointMeta, mode: LoadMode) throws -> Checkpoint {
        guard let k = meta.delta, k >= 1 else { throw PPError.corrupt(path, "delta checkpoint of \(name) without a delta number >= 1") }
        let b: Checkpoint
        if let g = given {
            b = g
        } else {
            let (found, tried) = resolveBase(name, from: path)
            guard let bp = found else {
                throw PPError.corrupt(path, "its base checkpoint \(name) is missing" + (tried.isEmpty ? " (not a RUN/FILE name)" : " (looked for \(tried.joined(separator: ", ")))"))
            }
            try checkBaseIsOlder(name, of: path)
            do { b = try loadChain(path: bp, mode: mode, averaged: false) } catch let e as PPError {
                throw PPError.corrupt(path, "its base checkpoint \(name) cannot be read: \(e.message)")
            }
        }
        guard b.meta.config == meta.config else { throw PPError.corrupt(path, "its base checkpoint \(name) has another model config") }
        guard b.meta.run == String(name.prefix { $0 != "/" }), b.meta.step <= meta.step, (b.meta.delta ?? 0) < k,
              (b.meta.sinceFull ?? b.meta.delta ?? 0) < (meta.sinceFull ?? k) else {
            throw PPError.corrupt(path, "its base checkpoint \(name) (run \(b.meta.run), step \(b.meta.step), delta \(b.meta.delta ?? 0)) is not the one this delta (step \(meta.step), delta \(k)) completes")
        }
        return b
    }

    /// A base's file name sorts before its delta's (CheckpointName: time, then step): what
    /// keeps a hostile chain from looping.
    static func checkBaseIsOlder(_ name: String, of path: String) throws {
        let baseFile = String(name.drop { $0 != "/" }.dropFirst())
        let file = FileIO.split(FileIO.realPath(path) ?? path).name
        guard let bn = CheckpointName(baseFile), let n = CheckpointName(file) else { return }
        guard (bn.stamp, bn.step) < (n.stamp, n.step) else {
            throw PPError.corrupt(path, "its base checkpoint \(name) is not older than it")
        }
    }

    /// A run of `n` floats that must fill exactly `bytes` (what is left of a section).
    static func exactFloats(_ n: Int, in bytes: Int, _ field: String, _ tag: String, path: String) throws {
        let (need, o) = n.multipliedReportingOverflow(by: 4)
        guard n >= 0, !o, need <= bytes else { throw PPError.corrupt(path, "\(field) \(n) needs more bytes than the \(max(bytes, 0)) left") }
        guard need == bytes else { throw PPError.corrupt(path, "section \(tag) has \(bytes - need) unread bytes") }
    }

    /// The INPT bitmap marks exactly `stored` rows, all inside the table.
    static func checkBitmap(_ bitmap: [UInt8], rows: Int, stored: Int, path: String) throws {
        var seen = 0
        for b in bitmap { seen += b.nonzeroBitCount }
        if rows % 8 != 0, let last = bitmap.last, last >> UInt8(rows % 8) != 0 {
            let bit = (last >> UInt8(rows % 8)).trailingZeroBitCount + rows % 8
            throw PPError.corrupt(path, "bitmap marks row \((bitmap.count - 1) * 8 + bit) past the table")
        }
        guard seen <= stored else { throw PPError.corrupt(path, "bitmap marks more rows than the \(stored) stored") }
        guard seen == stored else { throw PPError.corrupt(path, "bitmap marks \(seen) rows, \(stored) stored") }
    }

    /// The stored rows and then their accumulators into the full table, through a small
    /// buffer (the table's rows are strided: weights, accumulator, padding).
    static func readRows(_ s: FrameReader, into table: RowTable, bitmap: [UInt8], stored: Int) throws {
        let dim = table.dim
        let per = max(1, (256 << 10) / (dim * 4))
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: per * dim)
        defer { buf.deallocate() }
        var order = [Int32]()
        order.reserveCapacity(stored)
        forEachSetBit(bitmap) { order.append(Int32($0)) }
        var i = 0
        while i < stored {
            let k = min(per, stored - i)
            try s.read(into: buf, k * dim * 4)
            for j in 0..<k { table.row(Int(order[i + j])).update(from: buf + j * dim, count: dim) }
            i += k
        }
        i = 0
        while i < stored {
            let k = min(per * dim, stored - i)
            try s.read(into: buf, k * 4)
            for j in 0..<k { table.state(Int(order[i + j])).pointee = buf[j] }
            i += k
        }
    }
}

/// The input rows of an inference load: only the stored rows, packed in row order (dim
/// floats each, exactly as the INPT section holds them), found through the row bitmap with a
/// rank per 64 rows. Rows not stored read as one shared row of zeros, so a prediction adds
/// the same floats in the same order as with the full table (bit-identical results). The
/// index takes a quarter byte per row (~0.6 MB for 2.5M rows) and stays in cache; the rows are
/// mapped (mmap, huge pages where granted) and only touched as they are decompressed.
@usableFromInline package final class PackedRows: @unchecked Sendable {
    let rows: Int
    let dim: Int
    /// Rows stored here and in `extra`.
    private(set) var stored: Int
    /// A delta's rows that its base does not store (readDelta), else nil.
    private(set) var extra: PackedRows?
    /// Per 64 rows: which are stored (bit r % 64 for row r), and how many are stored before.
    private let blocks: UnsafeMutablePointer<(bits: UInt64, before: UInt64)>
    private let blockCount: Int
    /// This object's own rows (stored minus extra's) x dim floats.
    let data: UnsafeMutablePointer<Float>
    private let dataBytes: Int
    private let zero: UnsafeMutablePointer<Float>

    /// `bitmap`: ceil(rows / 8) bytes, bit i % 8 of byte i / 8 set for a stored row i
    /// (checked by Checkpoint.checkBitmap: exactly `stored` bits, none past `rows`).
    init(rows: Int, dim: Int, bitmap: [UInt8], stored: Int) {
        self.rows = rows; self.dim = dim; self.stored = stored
        let n = (rows + 63) / 64
        let blocks = UnsafeMutablePointer<(bits: UInt64, before: UInt64)>.allocate(capacity: max(n, 1))
        var before: UInt64 = 0
        bitmap.withUnsafeBytes { b in
            for w in 0..<n {
                var bits: UInt64 = 0
                for k in 0..<min(8, b.count - w * 8) { bits |= UInt64(b[w * 8 + k]) << UInt64(8 * k) }
                blocks[w] = (bits, before)
                before += UInt64(bits.nonzeroBitCount)
            }
        }
        self.blocks = blocks
        blockCount = n
        dataBytes = max(1, stored * dim * 4)
        // mmap(2): anonymous, private, not reserved up front; pages appear as rows arrive.
        let p = mmap(nil, dataBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("mmap of \(dataBytes) bytes failed: \(String(cString: strerror(errno)))") }
        // madvise(2): transparent huge pages (fewer faults and TLB misses; ignored where unsupported).
        _ = madvise(p, dataBytes, 14 /* MADV_HUGEPAGE */)
        data = p.bindMemory(to: Float.self, capacity: stored * dim)
        zero = .allocate(capacity: dim)
        zero.initialize(repeating: 0, count: dim)
    }

    deinit {
        munmap(data, dataBytes)
        blocks.deallocate()
        zero.deallocate()
    }

    @inline(__always) func isStored(_ i: Int) -> Bool { blocks[i >> 6].bits & (UInt64(1) << UInt64(i & 63)) != 0 }

    /// Whether row i is stored here or in `extra` (a serving export keeps exactly these).
    func has(_ i: Int) -> Bool { isStored(i) || (extra?.has(i) ?? false) }

    /// Reads a delta checkpoint's stored rows (its INPT `bitmap` and `stored` rows of dim
    /// floats in row order, next in `s`) over these, a base's, in place: a row the base
    /// stores (or `extra` holds) is overwritten, a row neither has goes to `extra`. The result
    /// reads every row as the full checkpoint of that step would (DeltaCheckpointTests). The
    /// base's rows are not copied: an inference load of a delta costs the base's memory, not
    /// twice it (issue 13: 187 -> 110 MB resident for the util-linux replay's deployed delta).
    /// Down a chain (a delta of a delta) each link reads over the result of the one before;
    /// `extra` stays one level (it is rebuilt with the old extra rows when a link adds rows),
    /// so a row is found in at most two lookups however long the chain.
    func readDelta(_ s: FrameReader, bitmap: [UInt8], stored: Int) throws {
        precondition(bitmap.count == (rows + 7) / 8)
        var adds = [UInt8](repeating: 0, count: bitmap.count)
        var added = 0
        for j in 0..<bitmap.count {
            adds[j] = bitmap[j] & ~byte(j) & ~(extra?.byte(j) ?? 0)
            added += adds[j].nonzeroBitCount
        }
        var target = extra
        if added > 0 {
            let old = extra
            var merged = adds
            if let o = old { for j in 0..<merged.count { merged[j] |= o.byte(j) } }
            let e = PackedRows(rows: rows, dim: dim, bitmap: merged, stored: (old?.stored ?? 0) + added)
            old?.forEachStored { i in e.slot(i).update(from: old!.slot(i), count: dim) }
            target = e
        }
        try Checkpoint.forEachSetBit(bitmap) { i in
            if isStored(i) {
                try s.read(into: slot(i), dim * 4)
            } else if let t = target {
                try s.read(into: t.slot(i), dim * 4)
            }
        }
        extra = target
        self.stored += added
    }

    /// Byte j of the stored-rows bitmap (rows 8j ..< 8j + 8).
    @inline(__always) func byte(_ j: Int) -> UInt8 { UInt8(truncatingIfNeeded: blocks[j >> 3].bits >> UInt64(8 * (j & 7))) }

    /// Calls `body` with each stored row (not `extra`'s), in order.
    func forEachStored(_ body: (Int) -> Void) {
        for w in 0..<blockCount {
            var bits = blocks[w].bits
            while bits != 0 {
                body(w * 64 + bits.trailingZeroBitCount)
                bits &= bits &- 1
            }
        }
    }

    /// Where stored row i's floats are.
    @inline(__always) private func slot(_ i: Int) -> UnsafeMutablePointer<Float> {
        let b = blocks[i >> 6]
        return data + (Int(b.before) + (b.bits & ((UInt64(1) << UInt64(i & 63)) &- 1)).nonzeroBitCount) * dim
    }

    /// Row i's weights (the zero row when it is not stored); i < rows.
    @inline(__always) func row(_ i: Int) -> UnsafePointer<Float> {
        if !isStored(i) { return extra?.row(i) ?? UnsafePointer(zero) }
        return UnsafePointer(slot(i))
    }
}

/// One zstd frame's decompressed bytes, handed out in order straight into the caller's
/// memory (ZSTD_decompressStream), from a file read in 1 MiB pieces or from a buffer. Its
/// `size` is what the frame header declares (libzstd checks it when the frame ends), bounded
/// by what a frame of this many compressed bytes can hold. Errors name the file.
final class FrameReader {
    let path: String
    /// Decompressed size declared by the frame header.
    private(set) var size = 0
    /// Decompressed bytes handed out so far.
    private(set) var pos = 0
    /// True once this reader threw (the compressed data or the file is at fault).
    private(set) var failed = false
    private let dctx: OpaquePointer
    private var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
    private let fd: Int32
    private let buffer: UnsafeMutableRawPointer?
    private let bufferSize = 1 << 20
    private var eof = false
    private var frameEnded = false
    /// Compressed bytes: the file's size, or the buffer's.
    private let compressedSize: Int

    /// A zstd block of up to 128 KiB costs at least 4 compressed bytes (an RLE block), so no
    /// frame decompresses to more than 32768 times its size.
    static let maxRatio = 1 << 15

    init(path: String) throws {
        self.path = path
        fd = try FileIO.openRegular(path)
        var st = stat()
        _ = fstat(fd, &st)
        compressedSize = Int(st.st_size)
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
        guard let d = ZSTD_createDStream() else { close(fd); buffer?.deallocate(); throw PPError("zstd: out of memory") }
        dctx = d
        try refill()
        try start()
    }

    init(bytes: UnsafeRawBufferPointer, path: String) throws {
        self.path = path
        fd = -1
        buffer = nil
        compressedSize = bytes.count
        input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        eof = true
        guard let d = ZSTD_createDStream() else { throw PPError("zstd: out of memory") }
        dctx = d
        try start()
    }

    deinit {
        ZSTD_freeDStream(dctx)
        if fd >= 0 { close(fd) }
        buffer?.deallocate()
    }

    private func fail(_ reason: String) -> PPError {
        failed = true
        return PPError.corrupt(path, reason)
    }

    /// Checks the frame's magic and header and takes its declared content size.
    private func start() throws {
        let head = UnsafeRawBufferPointer(start: input.src, count: input.size)
        guard head.count >= 4, Zstd.isFrame(head) else {
            throw fail(head.isEmpty ? "empty file" : "bad magic (not a zstd-compressed checkpoint)")
        }
        let declared = ZSTD_getFrameContentSize(head.baseAddress, head.count)
        // ZSTD_CONTENTSIZE_UNKNOWN = -1, ZSTD_CONTENTSIZE_ERROR = -2 (as UInt64)
        if declared == UInt64.max - 1 {
            throw fail(head.count < 18 && head.count == compressedSize ? "truncated (\(compressedSize) bytes)" : "corrupt compressed data (bad frame header)")
        }
        guard declared != UInt64.max else { throw fail("corrupt compressed data (the frame does not declare its content size)") }
        guard declared <= UInt64(compressedSize) * UInt64(FrameReader.maxRatio) else {
            throw fail("corrupt compressed data (the frame declares \(declared) bytes, more than \(compressedSize) compressed bytes can hold)")
        }
        size = Int(declared)
    }

    private func refill() throws {
        guard let buffer, !eof else { return }
        let n = try FileIO.retrying(path, "read") { Glibc.read(fd, buffer, bufferSize) }
        input = ZSTD_inBuffer(src: buffer, size: n, pos: 0)
        if n == 0 { eof = true }
    }

    private func zstdError(_ code: Int) -> PPError {
        if ZSTD_getErrorCode(code) == ZSTD_error_checksum_wrong { return fail("checksum mismatch") }
        return fail("corrupt compressed data (\(String(cString: ZSTD_getErrorName(code))))")
    }

    /// Decompresses into `out` until it is full or the frame ends; returns the bytes written.
    private func pump(_ out: inout ZSTD_outBuffer) throws {
        while out.pos < out.size && !frameEnded {
            if input.pos == input.size { try refill() }
            let before = (out.pos, input.pos)
            let r = ZSTD_decompressStream(dctx, &out, &input)
            if ZSTD_isError(r) != 0 { throw zstdError(r) }
            if r == 0 { frameEnded = true; break }
            if out.pos == before.0 && input.pos == before.1 && input.pos == input.size && eof {
                throw fail("truncated (\(compressedSize) bytes)")
            }
        }
    }

    /// Exactly `n` bytes of content into `dst`.
    func read(into dst: UnsafeMutableRawPointer, _ n: Int) throws {
        guard n >= 0, n <= size - pos else { throw fail("truncated (need \(n) bytes at offset \(pos) of \(size))") }
        if n == 0 { return }
        var out = ZSTD_outBuffer(dst: dst, size: n, pos: 0)
        try pump(&out)
        guard out.pos == n else { throw fail("truncated (\(compressedSize) bytes)") }
        pos += n
    }

    func read(into dst: UnsafeMutablePointer<Float>, _ n: Int) throws { try read(into: UnsafeMutableRawPointer(dst), n) }

    func bytes(_ n: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: n) { b, k in
            k = 0
            try read(into: UnsafeMutableRawPointer(b.baseAddress ?? UnsafeMutablePointer(bitPattern: 1)!), n)
            k = n
        }
    }

    func floats(_ n: Int) throws -> [Float] {
        try [Float](unsafeUninitializedCapacity: n) { b, k in
            k = 0
            try read(into: UnsafeMutableRawPointer(b.baseAddress ?? UnsafeMutablePointer(bitPattern: 4)!), n * 4)
            k = n
        }
    }

    /// Decompresses `n` bytes of content and drops them.
    func skip(_ n: Int) throws {
        let chunk = 64 << 10
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { scratch.deallocate() }
        var left = n
        while left > 0 {
            let k = min(chunk, left)
            try read(into: scratch, k)
            left -= k
        }
    }

    /// After all `size` bytes were read: the frame must end here (libzstd then verifies the
    /// content size and the checksum) and nothing may follow it.
    func finish() throws {
        guard pos == size else { throw fail("\(size - pos) bytes of content left unread") }
        let extra = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
        defer { extra.deallocate() }
        var out = ZSTD_outBuffer(dst: extra, size: 1, pos: 0)
        try pump(&out)
        guard out.pos == 0, frameEnded else { throw fail("corrupt compressed data (more content than the frame declares)") }
        if input.pos == input.size { try refill() }
        guard input.pos == input.size else { throw fail("data after the checkpoint's zstd frame") }
    }

    /// After a parse error: decompresses the rest of the frame; true when its checksum (or
    /// its compressed data) proves the file damaged.
    func drainFindsChecksumMismatch() -> Bool {
        let chunk = 64 << 10
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { scratch.deallocate() }
        do {
            while !frameEnded {
                var out = ZSTD_outBuffer(dst: scratch, size: chunk, pos: 0)
                try pump(&out)
                if !frameEnded && out.pos == 0 { return false }
            }
        } catch let e as PPError {
            return e.message.hasSuffix("checksum mismatch")
        } catch { return false }
        return false
    }
}
