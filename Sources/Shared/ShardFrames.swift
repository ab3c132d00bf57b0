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
    /// checksum in the frame) without copying the records.
    public func recordsFrame(level: Int32 = 1) throws -> [UInt8] {
        guard let cctx = ZSTD_createCCtx() else { throw PPError("zstd: out of memory") }
        defer { ZSTD_freeCCtx(cctx) }
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "level")
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "checksum")
        _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1), "content size")
        let total = records.count + Shard.endMagic.count
        _ = try Zstd.check(ZSTD_CCtx_setPledgedSrcSize(cctx, UInt64(total)), "pledged size")
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(total) + 64)
        var written = 0
        try out.withUnsafeMutableBytes { dst in
            var output = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
            try records.withUnsafeBytes { src in
                var input = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
                while input.pos < input.size {
                    _ = try Zstd.check(ZSTD_compressStream2(cctx, &output, &input, ZSTD_e_continue), "compress")
                }
            }
            try Shard.endMagic.withUnsafeBytes { src in
                var input = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
                while try Zstd.check(ZSTD_compressStream2(cctx, &output, &input, ZSTD_e_end), "compress") != 0 {
                    if output.pos == output.size { throw PPError("zstd: output buffer too small") }
                }
            }
            written = output.pos
        }
        out.removeSubrange(written...)
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
