// Thin wrappers over libzstd: one-shot compression (with frame checksum, optional worker
// threads) for shards and checkpoints, and a streaming decompressor for inputs of any size.
// A zstd context is not thread-safe: each call or reader owns its own.

import CZstd
#if canImport(Glibc)
import Glibc
#endif

public enum Zstd {
    package static func check(_ code: Int, _ what: String) throws -> Int {
        if ZSTD_isError(code) != 0 {
            throw PPError("zstd \(what): \(String(cString: ZSTD_getErrorName(code)))", status: .corrupt)
        }
        return code
    }

    /// Compresses `src` into one zstd frame with content size and XXH64 checksum
    /// (ZSTD_compress2). `workers` > 0 uses libzstd's multi-threaded mode.
    public static func compress(_ src: UnsafeRawBufferPointer, level: Int32 = 3, workers: Int32 = 0) throws -> [UInt8] {
        guard let cctx = ZSTD_createCCtx() else { throw PPError("zstd: out of memory") }
        defer { ZSTD_freeCCtx(cctx) }
        _ = try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "level")
        _ = try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "checksum")
        _ = try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1), "content size")
        if workers > 0 {
            // Ignored (error) by a libzstd built without threads: fall back to one thread.
            _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, workers)
        }
        let bound = ZSTD_compressBound(src.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = try out.withUnsafeMutableBytes { dst in
            try check(ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count), "compress")
        }
        out.removeSubrange(n...)
        return out
    }

    public static func compress(_ src: [UInt8], level: Int32 = 3, workers: Int32 = 0) throws -> [UInt8] {
        try src.withUnsafeBytes { try compress($0, level: level, workers: workers) }
    }

    /// Decompresses a whole buffer that holds one or more zstd frames; the frame checksum is
    /// verified by libzstd. `limit` bounds the output (a corrupt size field cannot make us
    /// allocate terabytes).
    public static func decompress(_ src: UnsafeRawBufferPointer, limit: Int = 1 << 36) throws -> [UInt8] {
        // Frames that declare their sizes (all Perpetuum writes do; a shard written by
        // pp-ingest is two): each decompressed in one call straight into its place in an array
        // of the total size, with a context reused across calls. Scoring a checkpoint reads
        // the newest 5,000 holdout examples, with 5-minute ingests ~5,000 tiny shards: a
        // context and a zeroed output window made per shard were ~20% of a scoring run (perf,
        // production-sim day 75).
        if let frames = declaredFrames(src, limit: limit) {
            let total = frames.reduce(0) { $0 + $1.size }
            guard let dctx = dctxPool.take() else { throw PPError("zstd: out of memory") }
            defer { dctxPool.give(dctx) }
            var failure: PPError?
            let out = [UInt8](unsafeUninitializedCapacity: max(total, 1)) { buf, count in
                var at = 0
                count = 0
                for f in frames {
                    let r = ZSTD_decompressDCtx(dctx, buf.baseAddress! + at, f.size, src.baseAddress! + f.offset, f.compressed)
                    if ZSTD_isError(r) != 0 {
                        failure = PPError("zstd decompress: \(String(cString: ZSTD_getErrorName(r)))", status: .corrupt); return
                    }
                    if r != f.size { failure = PPError("zstd: a frame holds \(r) bytes, declares \(f.size)", status: .corrupt); return }
                    at += r
                }
                count = at
            }
            if let e = failure { throw e }
            return out
        }
        var out = [UInt8]()
        let size = ZSTD_getFrameContentSize(src.baseAddress, src.count)
        // ZSTD_CONTENTSIZE_UNKNOWN = -1, ZSTD_CONTENTSIZE_ERROR = -2 (as UInt64)
        if size == UInt64.max - 1 { throw PPError("zstd: not a zstd frame", status: .corrupt) }
        if size != UInt64.max && size <= UInt64(limit) {
            // The declared size is a hint from the file, not a promise: reserve at most what
            // 64x the compressed bytes (plus 1 MiB) could hold, so a tiny frame declaring
            // 64 GiB cannot make us allocate it up front. Beyond that the array grows.
            out.reserveCapacity(min(Int(size), src.count.multipliedReportingOverflow(by: 64).partialValue + (1 << 20)))
        }
        guard let dctx = ZSTD_createDStream() else { throw PPError("zstd: out of memory") }
        defer { ZSTD_freeDStream(dctx) }
        // The output window: 1 MiB, or less for a frame that declares less (a hint only: a
        // frame that lies just takes more rounds). A zeroed 1 MiB per call was most of the
        // time of decoding small files (page faults; the checkpoint and shard fuzz targets).
        let window = size < UInt64(1 << 20) ? max(Int(size), 1 << 12) : 1 << 20
        var chunk = [UInt8](repeating: 0, count: window)
        var input = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
        var last = 0
        while input.pos < input.size {
            last = try chunk.withUnsafeMutableBytes { dst -> Int in
                var output = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                let r = try check(ZSTD_decompressStream(dctx, &output, &input), "decompress")
                out.append(contentsOf: UnsafeRawBufferPointer(start: dst.baseAddress, count: output.pos))
                return r
            }
            if out.count > limit { throw PPError("zstd: output larger than \(limit) bytes", status: .corrupt) }
        }
        // Flush what the decoder still holds.
        while last != 0 {
            var progressed = false
            last = try chunk.withUnsafeMutableBytes { dst -> Int in
                var output = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                let r = try check(ZSTD_decompressStream(dctx, &output, &input), "decompress")
                progressed = output.pos > 0
                out.append(contentsOf: UnsafeRawBufferPointer(start: dst.baseAddress, count: output.pos))
                return r
            }
            if !progressed && last != 0 { throw PPError("zstd: truncated frame", status: .corrupt) }
        }
        return out
    }

    /// The frames of `src` (offset, compressed bytes, declared size) when every one declares
    /// its size and they add up to at most `limit` and to at most 64x the input plus 1 MiB
    /// (the sizes are hints from the file: a tiny input declaring gigabytes takes the streaming
    /// path, which grows its output as it goes); nil otherwise.
    static func declaredFrames(_ src: UnsafeRawBufferPointer, limit: Int) -> [(offset: Int, compressed: Int, size: Int)]? {
        guard let base = src.baseAddress, src.count > 0 else { return nil }
        let cap = min(limit, src.count.multipliedReportingOverflow(by: 64).partialValue + (1 << 20))
        var frames: [(offset: Int, compressed: Int, size: Int)] = []
        var at = 0, total = 0
        while at < src.count {
            let size = ZSTD_getFrameContentSize(base + at, src.count - at)
            guard size < UInt64.max - 1, size <= UInt64(cap - total) else { return nil }
            let c = ZSTD_findFrameCompressedSize(base + at, src.count - at)
            guard ZSTD_isError(c) == 0, c > 0, c <= src.count - at else { return nil }
            frames.append((at, c, Int(size)))
            total += Int(size)
            at += c
        }
        return frames
    }

    public static func decompress(_ src: [UInt8], limit: Int = 1 << 36) throws -> [UInt8] {
        try src.withUnsafeBytes { try decompress($0, limit: limit) }
    }

    /// True when `bytes` begin with the zstd frame magic 28 B5 2F FD.
    public static func isFrame(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x28 && bytes[1] == 0xB5 && bytes[2] == 0x2F && bytes[3] == 0xFD
    }
}

/// Decompression contexts kept for reuse (a context is not thread-safe: each call takes one
/// of its own, and gives it back reset).
final class DCtxPool: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var free: [OpaquePointer] = []

    init() {
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
    }

    func take() -> OpaquePointer? {
        pthread_mutex_lock(lock)
        let d = free.popLast()
        pthread_mutex_unlock(lock)
        return d ?? ZSTD_createDCtx()
    }

    func give(_ d: OpaquePointer) {
        _ = ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters)
        pthread_mutex_lock(lock)
        let keep = free.count < 4
        if keep { free.append(d) }
        pthread_mutex_unlock(lock)
        if !keep { ZSTD_freeDCtx(d) }
    }
}

extension Zstd {
    static let dctxPool = DCtxPool()
}

/// Reads a file in chunks, decompressing it on the fly when it is zstd; memory stays bounded
/// by the chunk size whatever the input size. `next()` returns the next chunk of plain bytes,
/// or nil at the end.
public final class ChunkReader {
    public let path: String
    private let fd: Int32
    private let ownsFD: Bool
    private var raw: [UInt8]
    private var rawPos = 0
    private var rawLen = 0
    private var out: [UInt8]
    private var dctx: OpaquePointer?
    private var eof = false
    private var frameOpen = false
    /// Total compressed/plain bytes read from the file so far.
    public private(set) var bytesRead = 0

    /// Opens `path` ("-" reads standard input). Compression is detected from the first bytes.
    /// `regularOnly` refuses anything but a regular file (FileIO.openRegular).
    public init(path: String, chunk: Int = 1 << 20, regularOnly: Bool = false) throws {
        self.path = path
        if path == "-" && !regularOnly {
            fd = 0; ownsFD = false
        } else if regularOnly {
            fd = try FileIO.openRegular(path)
            ownsFD = true
        } else {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw PPError.io(path, "open", errno: errno) }
            ownsFD = true
        }
        (raw, out) = ChunkReader.buffers(chunk)
        try start()
    }

    /// Reads from `fd`, an open descriptor it takes over (closed on deinit, also when this
    /// throws): pp-ingest opens and checks an inbox file first (FileIO.openInboxFile).
    public init(fd: Int32, path: String, chunk: Int = 1 << 20) throws {
        self.path = path
        self.fd = fd
        ownsFD = true
        (raw, out) = ChunkReader.buffers(chunk)
        try start()
    }

    /// The read and decompression buffers, not zeroed: every byte is written (read(2),
    /// ZSTD_decompressStream) before it is read.
    private static func buffers(_ chunk: Int) -> ([UInt8], [UInt8]) {
        let n = max(chunk, 1)
        return ([UInt8](unsafeUninitializedCapacity: n) { $1 = n }, [UInt8](unsafeUninitializedCapacity: n) { $1 = n })
    }

    private func start() throws {
        try fill()
        let isZstd = raw.withUnsafeBytes { Zstd.isFrame(UnsafeRawBufferPointer(rebasing: $0[0..<rawLen])) }
        if isZstd {
            // A context from the pool keeps its window buffer: creating one per file and
            // faulting in its window was most of reading a checkpoint's head, which pp-select
            // does for every checkpoint of every run at every daily run.
            dctx = Zstd.dctxPool.take()
            if dctx == nil { throw PPError("zstd: out of memory") }
        }
    }

    deinit {
        if let d = dctx { Zstd.dctxPool.give(d) }
        if ownsFD { close(fd) }
    }

    public var isCompressed: Bool { dctx != nil }

    private func fill() throws {
        let n = try raw.withUnsafeMutableBytes { buf in
            try FileIO.retrying(path, "read") { read(fd, buf.baseAddress!, buf.count) }
        }
        rawPos = 0
        rawLen = n
        bytesRead += n
        if n == 0 { eof = true }
    }

    /// Calls `body` with the next chunk of plain bytes; returns false at the end of input.
    public func next(_ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        guard let d = dctx else {
            if rawPos >= rawLen { if eof { return false }; try fill(); if eof { return false } }
            try raw.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[rawPos..<rawLen])) }
            rawPos = rawLen
            return true
        }
        while true {
            if rawPos >= rawLen && !eof { try fill() }
            if rawPos >= rawLen && eof {
                if frameOpen { throw PPError("\(path): truncated zstd frame", status: .corrupt) }
                return false
            }
            var produced = 0
            try raw.withUnsafeBytes { rb in
                try out.withUnsafeMutableBytes { ob in
                    var input = ZSTD_inBuffer(src: rb.baseAddress, size: rawLen, pos: rawPos)
                    var output = ZSTD_outBuffer(dst: ob.baseAddress, size: ob.count, pos: 0)
                    let r = ZSTD_decompressStream(d, &output, &input)
                    if ZSTD_isError(r) != 0 {
                        throw PPError("\(path): zstd: \(String(cString: ZSTD_getErrorName(r)))", status: .corrupt)
                    }
                    frameOpen = r != 0
                    rawPos = input.pos
                    produced = output.pos
                }
            }
            if produced > 0 {
                try out.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) }
                return true
            }
        }
    }
}
