// The parts of one input as it is read: examples go to a train or holdout part builder, each
// part compressed into a dot-named temp file in shards/ or holdout/ until pp-ingest names it
// (Ingest.swift, publish).

import Foundation
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

/// The parts of one split (train or holdout) of one input: examples accumulate in a
/// ShardWriter; a full writer is compressed into a dot-named temp file and forgotten, so at
/// most one part per split is in memory.
final class PartBuilder {
    struct Sealed {
        let tmp: String
        /// Counts, labels and ts range filled in; source, part and time are set at publish.
        let header: ShardHeader
        let recordBytes: Int
    }

    let split: String
    let dir: String
    let maxExamples: Int
    let maxBytes: Int
    private var writer = ShardWriter()
    private(set) var sealed: [Sealed] = []
    private(set) var total = 0
    private var lastLabelBytes: [UInt8] = []
    private var lastLabel = ""

    init(split: String, dir: String, maxExamples: Int, maxBytes: Int) {
        self.split = split; self.dir = dir; self.maxExamples = maxExamples; self.maxBytes = maxBytes
    }

    func append(_ e: InputExample) throws {
        if lastLabelBytes.count != e.label.count || !lastLabelBytes.withUnsafeBytes({ memcmp($0.baseAddress!, e.label.baseAddress!, e.label.count) == 0 }) {
            lastLabelBytes = Array(e.label)
            lastLabel = e.labelString
        }
        writer.append(label: lastLabel, ts: e.ts, tokenBytes: e.tokens, tokenCount: e.tokenCount)
        total += 1
        if writer.examples >= maxExamples || writer.records.count >= maxBytes { try seal() }
    }

    /// Compresses the open part into its temp file (no fsync: a temp only matters until
    /// the published copy is fsynced).
    func seal() throws {
        guard writer.examples > 0 else { return }
        let tmp = dir + "/.ingest-\(getpid())-\(split)-\(sealed.count).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw PPError.io(tmp, "create", errno: errno) }
        defer { close(fd) }
        try writer.writeRecordsFrame(level: 1) { try FileIO.writeAll(fd, $0, path: tmp) }
        let template = ShardHeader(split: split, examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: "",
                                   sourceSHA256: "", sourceBytes: 0, part: sealed.count, parts: 0, ingestedAt: "",
                                   tsMin: nil, tsMax: nil)
        sealed.append(Sealed(tmp: tmp, header: writer.filled(template), recordBytes: writer.records.count))
        writer = ShardWriter()
    }

    /// Removes the temps not published yet and forgets everything.
    func discard() {
        for s in sealed { unlink(s.tmp) }
        sealed.removeAll()
        writer = ShardWriter()
    }
}
