// The shard format: validated, tokenised examples as pp-ingest publishes them in shards/ and
// holdout/ (docs/formats.md). Shards are immutable once published and hold normalised tokens,
// not vocabulary ids (CONTRACT rule 4). The file is zstd around the layout below: one frame,
// or (as pp-ingest writes it, see ShardFrames.swift) two concatenated frames, each with its
// checksum, that decompress to the same bytes:
//
//   offset  size  field
//   0       8     magic "PPSHARD1"
//   8       4     format version (u32 LE) = 1
//   12      4     header length H (u32 LE)
//   16      H     header: UTF-8 JSON (ShardHeader)
//   16+H    8     record bytes R (u64 LE)
//   24+H    R     records, `examples` of them, each:
//                   u32 label index (into header.labels)
//                   i64 ts, Unix seconds (Int64.min when the input had none)
//                   u32 n, then n bytes: the tokens joined by single spaces
//   24+H+R  8     end magic "PPSHEND1"
//
// Readers check every field, so a truncated or foreign file is refused with a reason.

import Foundation

public struct ShardHeader: Codable, Equatable, Sendable {
    public var schema: Int = 1
    /// "train" (shards/) or "holdout" (holdout/).
    public var split: String
    public var examples: Int
    public var tokens: Int
    /// The label table; records refer to labels by index into it.
    public var labels: [String]
    /// Examples per label, parallel to `labels`.
    public var labelCounts: [Int]
    /// The input file this shard came from, its size and SHA-256 (hex).
    public var sourceName: String
    public var sourceSHA256: String
    public var sourceBytes: Int
    /// This shard's position among the shards cut from that input (0-based) and their count.
    public var part: Int
    public var parts: Int
    /// When pp-ingest wrote it (ISO-8601 UTC).
    public var ingestedAt: String
    /// Time range of the examples' `ts` fields (Unix seconds), nil when none had one.
    public var tsMin: Int64?
    public var tsMax: Int64?
    /// Batch statistics recorded by pp-ingest (docs/formats.md lists the keys).
    public var stats: [String: Double]?

    public init(split: String, examples: Int, tokens: Int, labels: [String], labelCounts: [Int],
                sourceName: String, sourceSHA256: String, sourceBytes: Int, part: Int, parts: Int,
                ingestedAt: String, tsMin: Int64?, tsMax: Int64?, stats: [String: Double]? = nil) {
        self.split = split; self.examples = examples; self.tokens = tokens
        self.labels = labels; self.labelCounts = labelCounts
        self.sourceName = sourceName; self.sourceSHA256 = sourceSHA256; self.sourceBytes = sourceBytes
        self.part = part; self.parts = parts; self.ingestedAt = ingestedAt
        self.tsMin = tsMin; self.tsMax = tsMax; self.stats = stats
    }

    static let keysButStats: Set<String> = Set(CodingKeys.allCases.map(\.rawValue)).subtracting(["stats"])

    enum CodingKeys: String, CodingKey, CaseIterable {
        case schema, split, examples, tokens, labels, stats, part, parts
        case labelCounts = "label_counts"
        case sourceName = "source_name"
        case sourceSHA256 = "source_sha256"
        case sourceBytes = "source_bytes"
        case ingestedAt = "ingested_at"
        case tsMin = "ts_min"
        case tsMax = "ts_max"
    }
}

extension ShardHeader {
    /// The header of the shard at `path`, decompressing only the first bytes (the layout
    /// above), so a 64 MiB shard costs one 64 KiB chunk. Checks the magic and the header's
    /// length, not the records or the checksum (a full `Shard` load does).
    public static func read(path: String) throws -> ShardHeader {
        let reader = try ChunkReader(path: path, chunk: 1 << 16, regularOnly: true)
        var buf: [UInt8] = []
        func fill(_ n: Int) throws -> Bool {
            while buf.count < n { if !(try reader.next { buf.append(contentsOf: $0) }) { return false } }
            return true
        }
        guard try fill(16), Array(buf[0..<8]) == Shard.magic else { throw PPError.corrupt(path, "not a shard") }
        let h = Int(buf.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) })
        guard h < (1 << 26), try fill(16 + h) else { throw PPError.corrupt(path, "truncated shard header") }
        do { return try JSONDecoder().decode(ShardHeader.self, from: Data(buf[16..<(16 + h)])) } catch {
            throw PPError.corrupt(path, "unreadable shard header")
        }
    }
}

/// Builds one shard in memory; `finish` returns the compressed file bytes.
public struct ShardWriter {
    public private(set) var labels: [String] = []
    public private(set) var labelCounts: [Int] = []
    private var labelIndex: [String: UInt32] = [:]
    public private(set) var records: [UInt8] = []
    public private(set) var examples = 0
    public private(set) var tokens = 0
    public private(set) var tsMin: Int64?
    public private(set) var tsMax: Int64?

    public init() {}

    /// Appends one example; `tokenBytes` are tokens joined by single spaces.
    public mutating func append(label: String, ts: Int64?, tokenBytes: UnsafeRawBufferPointer, tokenCount: Int) {
        let li: UInt32
        if let k = labelIndex[label] { li = k } else {
            li = UInt32(labels.count); labelIndex[label] = li; labels.append(label); labelCounts.append(0)
        }
        labelCounts[Int(li)] += 1
        appendLE(li)
        appendLE(UInt64(bitPattern: ts ?? Int64.min))
        appendLE(UInt32(tokenBytes.count))
        records.append(contentsOf: tokenBytes)
        examples += 1
        tokens += tokenCount
        if let t = ts {
            tsMin = min(tsMin ?? t, t)
            tsMax = max(tsMax ?? t, t)
        }
    }

    public mutating func append(label: String, ts: Int64?, tokens: [String]) {
        let joined = Array(tokens.joined(separator: " ").utf8)
        joined.withUnsafeBytes { append(label: label, ts: ts, tokenBytes: $0, tokenCount: tokens.count) }
    }

    private mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { records.append(contentsOf: $0) }
    }

    /// Serialises and compresses the shard. `header` must describe these records; its
    /// examples, tokens, labels, counts and ts range are filled in from what was appended.
    public func finish(header: ShardHeader, level: Int32 = 3) throws -> [UInt8] {
        var h = header
        h.examples = examples; h.tokens = tokens
        h.labels = labels; h.labelCounts = labelCounts
        h.tsMin = tsMin; h.tsMax = tsMax
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(h))
        var out = [UInt8]()
        out.reserveCapacity(32 + json.count + records.count)
        out.append(contentsOf: Shard.magic)
        withUnsafeBytes(of: UInt32(Shard.version).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        withUnsafeBytes(of: UInt64(records.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: records)
        out.append(contentsOf: Shard.endMagic)
        return try Zstd.compress(out, level: level)
    }
}

/// A shard read into memory and checked. Iterate with `forEach`.
public struct Shard: Sendable {
    public static let magic: [UInt8] = Array("PPSHARD1".utf8)
    public static let endMagic: [UInt8] = Array("PPSHEND1".utf8)
    public static let version = 1
    /// File name extension of shard files.
    public static let fileExtension = ShardName.fileExtension

    public let path: String
    public let header: ShardHeader
    /// The decompressed file; records live at `recordRange`.
    public let payload: [UInt8]
    public let recordRange: Range<Int>

    /// Reads and validates `path`. Throws `PPError` with status `.corrupt` naming the reason.
    public init(path: String) throws {
        let file = try FileIO.readAll(path)
        try self.init(path: path, fileBytes: file)
    }

    /// `stats`: false leaves `header.stats` nil without decoding it (pp-ingest's batch
    /// statistics, ~25 numbers: a third of the CPU of reading the 5,000 tiny holdout shards
    /// of an eval window; the eval set and the trainer do not use them).
    public init(path: String, fileBytes file: [UInt8], stats: Bool = true) throws {
        self.path = path
        let p: [UInt8]
        do { p = try Zstd.decompress(file) } catch let e as PPError {
            throw PPError.corrupt(path, "not a readable shard (\(e.message))")
        }
        func u32(_ o: Int) -> UInt32 { p.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian } }
        func u64(_ o: Int) -> UInt64 { p.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian } }
        guard p.count >= 32, Array(p[0..<8]) == Shard.magic else { throw PPError.corrupt(path, "bad magic (not a shard)") }
        let v = Int(u32(8))
        guard v == Shard.version else { throw PPError.corrupt(path, "shard format version \(v), this build reads \(Shard.version)") }
        let h = Int(u32(12))
        guard 16 + h + 8 <= p.count else { throw PPError.corrupt(path, "truncated header") }
        do {
            let text = p[16..<(16 + h)]
            if !stats, let small = JSONTop.only(ShardHeader.keysButStats, of: text) {
                header = try JSONDecoder().decode(ShardHeader.self, from: Data(small))
            } else {
                header = try JSONDecoder().decode(ShardHeader.self, from: Data(text))
            }
        } catch {
            throw PPError.corrupt(path, "unreadable header: \(error)")
        }
        // Sizes and counts from the file are checked against its length before use: a u64
        // >= 2^63 is refused (not trapped on), and no count is trusted beyond the bytes.
        let start = 24 + h
        let rField = u64(16 + h)
        guard let r = Int(exactly: rField), r <= p.count - start - 8 else {
            throw PPError.corrupt(path, "truncated records (size field \(rField), file \(p.count) bytes)")
        }
        guard start + r + 8 == p.count else { throw PPError.corrupt(path, "truncated records (size field \(r), file \(p.count) bytes)") }
        guard Array(p[(start + r)...]) == Shard.endMagic else { throw PPError.corrupt(path, "bad end magic") }
        let labelCount = header.labels.count
        guard header.labelCounts.count == labelCount else {
            throw PPError.corrupt(path, "header: \(header.labelCounts.count) label_counts for \(labelCount) labels")
        }
        // Every record takes at least 16 bytes.
        guard header.examples >= 0, header.examples <= r / 16, header.tokens >= 0 else {
            throw PPError.corrupt(path, "header: examples \(header.examples) / tokens \(header.tokens) impossible for \(r) record bytes")
        }
        payload = p
        recordRange = start..<(start + r)
        // Walk the records once: count, label counts and bounds must agree with the header.
        var n = 0, o = start
        var perLabel = [Int](repeating: 0, count: labelCount)
        while o < start + r {
            guard o + 16 <= start + r else { throw PPError.corrupt(path, "record \(n) truncated") }
            let li = Int(u32(o)); let len = Int(u32(o + 12))
            guard li < labelCount else { throw PPError.corrupt(path, "record \(n): label index \(li) out of range") }
            o += 16 + len
            guard o <= start + r else { throw PPError.corrupt(path, "record \(n) truncated") }
            perLabel[li] += 1
            n += 1
        }
        guard perLabel == header.labelCounts else { throw PPError.corrupt(path, "header label_counts do not match the records") }
        guard n == header.examples else { throw PPError.corrupt(path, "header says \(header.examples) examples, found \(n)") }
    }

    /// Calls `body(labelIndex, ts, tokenBytes)` for every example in file order. `ts` is nil
    /// when the input had none; `tokenBytes` are valid only during the call.
    public func forEach(_ body: (Int, Int64?, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try payload.withUnsafeBytes { p in
            var o = recordRange.lowerBound
            while o < recordRange.upperBound {
                let r = Shard.record(p, at: o)
                try body(r.label, r.ts, r.tokens)
                o = r.next
            }
        }
    }

    /// The byte offset in `payload` of each record, in file order (random access for
    /// `withRecord(at:)`; pp-train visits a shard's records in a shuffled order).
    public func recordOffsets() -> [Int] {
        var offs: [Int] = []
        offs.reserveCapacity(header.examples)
        payload.withUnsafeBytes { p in
            var o = recordRange.lowerBound
            while o < recordRange.upperBound { offs.append(o); o = Shard.record(p, at: o).next }
        }
        return offs
    }

    /// Calls `body(labelIndex, ts, tokenBytes)` for the record at `offset` (one of
    /// `recordOffsets()`); `tokenBytes` are valid only during the call.
    @inlinable
    public func withRecord<R>(at offset: Int, _ body: (Int, Int64?, UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try payload.withUnsafeBytes { p in
            let r = Shard.record(p, at: offset)
            return try body(r.label, r.ts, r.tokens)
        }
    }

    /// The one decoder of a record's layout (see the top of this file): label index u32, ts
    /// i64 (Int64.min: none), token byte count u32, then the tokens. Bounds were checked when
    /// the shard was loaded.
    @inlinable
    static func record(_ p: UnsafeRawBufferPointer, at o: Int) -> (label: Int, ts: Int64?, tokens: UnsafeRawBufferPointer, next: Int) {
        let li = Int(p.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian)
        let ts = Int64(bitPattern: p.loadUnaligned(fromByteOffset: o + 4, as: UInt64.self).littleEndian)
        let len = Int(p.loadUnaligned(fromByteOffset: o + 12, as: UInt32.self).littleEndian)
        return (li, ts == Int64.min ? nil : ts, UnsafeRawBufferPointer(rebasing: p[(o + 16)..<(o + 16 + len)]), o + 16 + len)
    }

    /// The examples as (label, tokens) pairs; convenient for tests and small tools.
    public func examples() -> [(label: String, ts: Int64?, tokens: [String])] {
        var out: [(String, Int64?, [String])] = []
        forEach { li, ts, bytes in
            let toks = bytes.isEmpty ? [] : bytes.split(separator: 0x20).map { String(decoding: $0, as: UTF8.self) }
            out.append((header.labels[li], ts, toks))
        }
        return out
    }
}
