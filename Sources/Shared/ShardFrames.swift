// Writing a shard in two zstd frames, for writers that learn the header last (pp-ingest
// streams an input of any size into bounded parts, and only at the end of the input knows
// its SHA-256, how many parts there are and whether the input is accepted at all).
//
// The decompressed bytes are exactly the layout in Shard.swift; only the compression is cut
// in two: frame 1 = magic, version, header length, header JSON, record byte count;
// frame 2 = the records and the end magic. `Shard(path:)` reads both forms (libzstd
// decompresses concatenated frames as one stream, checking each frame's checksum).

import CZstd
import Foundation

extension ShardWriter {
    /// The header as `finish` would write it: counts, labels and ts range from the records.
    public func filled(_ header: ShardHeader) -> ShardHeader {
        var h = header
        h.examples = examples; h.tokens = tokens
        h.labels = labels; h.labelCounts = labelCounts
        h.tsMin = tsMin; h.tsMax = tsMax
        return h
    }

    /// Frame 2: the records followed by the end magic, compressed (content size and XXH64
    /// checksum in the frame) and handed to `sink` in pieces of at most 1 MiB, so neither
    /// the records nor the compressed frame are ever copied whole.
    public func writeRecordsFrame(level: Int32 = 1, to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let cctx = ZSTD_createCCtx() else { throw PPError("zstd: out of memory") }
        defer { ZSTD_freeCCtx(cctx) }
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "level")
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "checksum")
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1), "content size")
        _ = try Zstd.check(ZSTD_CCtx_setPledgedSrcSize(cctx, UInt64(records.count + Shard.endMagic.count)), "pledged size")
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        try buf.withUnsafeMutableBytes { dst in
            func pump(_ src: UnsafeRawBufferPointer, _ mode: ZSTD_EndDirective) throws {
                var input = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
                while true {
                    var output = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                    let left = try Zstd.check(ZSTD_compressStream2(cctx, &output, &input, mode), "compress")
                    if output.pos > 0 { try sink(UnsafeRawBufferPointer(rebasing: dst[0..<output.pos])) }
                    if mode == ZSTD_e_end ? left == 0 : input.pos == input.size { return }
                }
            }
            try records.withUnsafeBytes { try pump($0, ZSTD_e_continue) }
            try Shard.endMagic.withUnsafeBytes { try pump($0, ZSTD_e_end) }
        }
    }

    /// Frame 2 as bytes (tests, small shards).
    public func recordsFrame(level: Int32 = 1) throws -> [UInt8] {
        var out = [UInt8]()
        try writeRecordsFrame(level: level) { out.append(contentsOf: $0) }
        return out
    }

    /// Frame 1: everything before the records. `header` must describe them (see `filled`)
    /// and `recordBytes` is the size of the records (`records.count` of the writer).
    public static func headerFrame(_ header: ShardHeader, recordBytes: Int, level: Int32 = 1) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(header))
        var out = [UInt8]()
        out.reserveCapacity(24 + json.count)
        out.append(contentsOf: Shard.magic)
        withUnsafeBytes(of: UInt32(Shard.version).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        withUnsafeBytes(of: UInt64(recordBytes).littleEndian) { out.append(contentsOf: $0) }
        return try Zstd.compress(out, level: level)
    }
}
