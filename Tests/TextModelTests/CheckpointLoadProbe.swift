import XCTest
import Foundation
import CZstd
@testable import Shared
@testable import TextModel

/// A hand-run profile of reading one checkpoint, phase by phase (no timed assertions): skipped
/// unless PP_PROBE_CKPT names a checkpoint file. It times what `Checkpoint.load` does, one
/// step at a time, against libzstd's one-shot decompression of the same file into a buffer
/// (what `zstd -d` costs), and then the loader itself in both modes. Run in release, e.g.
///   PP_PROBE_CKPT=path/ckpt.ppc swift test -c release -Xswiftc -enable-testing \
///     --scratch-path .build-test --filter CheckpointLoadProbe
/// Numbers are only comparable within one run (the machine is shared).
final class CheckpointLoadProbe: XCTestCase {
    func testProbe() throws {
        guard let path = ProcessInfo.processInfo.environment["PP_PROBE_CKPT"] else { throw XCTSkip("PP_PROBE_CKPT not set") }
        var lines: [String] = []
        // Wall time, and this thread's CPU time (user + system: page faults count), which
        // a busy machine inflates less.
        func cpu() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        func time<T>(_ what: String, _ mb: Double? = nil, _ body: () throws -> T) rethrows -> T {
            let t0 = DispatchTime.now().uptimeNanoseconds, c0 = cpu()
            let r = try body()
            let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9, c = cpu() - c0
            lines.append(String(format: "  %-46@ wall %8.1f ms  cpu %8.1f ms", what as NSString, s * 1e3, c * 1e3)
                         + (mb.map { String(format: "  %6.0f MB/s of cpu", $0 / max(c, 1e-9)) } ?? ""))
            return r
        }
        let file = try time("read the file (FileIO.readAll)") { try FileIO.readAll(path) }
        let rawSize = Int(file.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) })
        let mb = Double(rawSize) / 1e6
        // The reference: one-shot decompression into a buffer allocated once (zstd -d's work).
        let out = UnsafeMutableRawPointer.allocate(byteCount: rawSize, alignment: 64)
        defer { out.deallocate() }
        memset(out, 0, rawSize)   // faulted in before timing, as zstd -d's reused buffer is
        _ = time("zstd one-shot into a warm buffer (reference)", mb) {
            file.withUnsafeBytes { ZSTD_decompress(out, rawSize, $0.baseAddress, $0.count) }
        }
        let raw = try time("Zstd.decompress into [UInt8] (old path)", mb) { try Zstd.decompress(file) }
        // The parse, phase by phase (the same steps as the old Checkpoint.parse).
        try raw.withUnsafeBytes { p in
            var r = ByteReader(bytes: p, pos: 12, end: p.count - 8, path: path)
            let ml = Int(try r.u32())
            let metaBytes = try r.bytes(ml)
            let meta = try time("meta JSON (\(ml) bytes)") { try JSONDecoder().decode(CheckpointMeta.self, from: Data(metaBytes)) }
            let c = meta.config
            var vr = try r.section("VOCB")
            let vbytes = vr.remaining
            let vocab = try time("vocabulary (\(vbytes / 1000) kB)") {
                try Vocabulary.deserialize(&vr, capacity: c.vocabCapacity, minCount: c.minCount, evictions: 0)
            }
            var dr = try r.section("DENS")
            _ = try time("dense layers (\(dr.remaining / 1000) kB)") { () -> [Float] in
                dr.pos += 12
                return try dr.floats(dr.remaining / 4)
            }
            var ir = try r.section("INPT")
            let rows = try ir.count("rows"), dim = Int(try ir.u32()), stored = try ir.count("stored")
            let bitmap = try ir.bytes((rows + 7) / 8)
            let table = time("RowTable mmap (\(rows) rows)") { RowTable(rows: rows, dim: dim) }
            try time("\(stored) rows into the RowTable (faults)", Double(stored * dim * 4) / 1e6) {
                try Checkpoint.forEachSetBit(bitmap) { row in try ir.floats(dim, into: table.row(row)) }
            }
            var again = ir
            try time("the same rows again (no faults)", Double(stored * dim * 4) / 1e6) {
                again.pos -= stored * dim * 4
                try Checkpoint.forEachSetBit(bitmap) { row in try again.floats(dim, into: table.row(row)) }
            }
            var idx = [Int]()
            Checkpoint.forEachSetBit(bitmap) { idx.append($0) }
            try time("\(stored) accumulators") { for row in idx { try ir.floats(1, into: table.state(row)) } }
            let touched = time("count resident pages of the table") { () -> Int in
                var v = [UInt8](repeating: 0, count: (table.rows * table.stride * 4 + 4095) / 4096)
                _ = mincore(table.base, table.rows * table.stride * 4, &v)
                return v.reduce(0) { $0 + Int($1 & 1) }
            }
            lines.append(String(format: "  table: %.0f MB mapped, %.0f MB resident; vocabulary %d words, %d candidates",
                                Double(table.rows * table.stride * 4) / 1e6, Double(touched) * 4096 / 1e6, vocab.size, vocab.candidates))
        }
        // The loader as the tools call it.
        for mode in Checkpoint.LoadMode.allCases {
            for i in 0..<2 {
                _ = try time("Checkpoint.load(\(mode)) #\(i + 1)", mb) { try Checkpoint.load(path: path, mode: mode) }
            }
        }
        print("ckpt-load-probe: \(path): \(file.count) bytes, \(rawSize) decompressed\n" + lines.joined(separator: "\n"))
    }
}
