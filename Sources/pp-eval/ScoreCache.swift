// The per-shard score cache (docs/formats.md, "Score cache"): what one checkpoint predicted for
// every example of each holdout shard it was scored on, so that each checkpoint runs each
// example through the model once, ever (issue 13). When the eval set moves on (a new holdout
// shard arrives, an old one leaves the window), pp-eval scores only the new shards and combines
// the rest from here; a checkpoint whose every shard is cached is not even loaded.
//
// evals/<ckpt file sans .ppc>--<RUN>.psc, one zstd frame around:
//
//   offset  size  field
//   0       8     magic "PPSCOR01"
//   8       4     version (u32 LE) = 1
//   12      4     header length H (u32 LE)
//   16      H     header: UTF-8 JSON {"schema":1,"checkpoint":"RUN/FILE","checkpoint_bytes":B,
//                 "labels":[the model's labels],"shards":[{"sha256":HEX,"examples":N},...]}
//                 (B: the checkpoint file's size; a cache whose B differs is not used)
//   16+H    4T    pred, u32 LE each: index into the header's labels (0xFFFFFFFF: the model has no
//                 labels); T = the sum of the shards' N, shards in header order
//           4T    p_true, f32 LE each (0 when the model does not know the true label)
//           4T    p_top, f32 LE each
//           T     flags, u8 each: bit 0 the true label is in the model's top 5
//   ...     8     end magic "PPSCEND1"
//
// Predictions are kept in the model's label table (not the eval set's, which changes with the
// window), so combining is exact. The cache is an optimisation: a file that fails any check is
// reported and ignored (its shards are scored again), never trusted. It is written only with
// the result it served, atomically, and holds only the shards of the eval set just scored, so
// it stays the size of one eval window. pp-select deletes it with the checkpoint's weights.
//
// This file encodes and decodes the cache (EvalNames.scoreCache names it); Scorer.swift
// fills and combines it.

import Foundation
import Shared
import TextModel

/// One example's outcome in the model's label table (the cacheable part of ExampleOutcome).
struct ModelOutcome: Equatable {
    static let noLabel = UInt32.max
    var pred: UInt32
    var pTrue: Float
    var pTop: Float
    var top5: Bool
}

struct ScoreCache: Equatable {
    static let magic: [UInt8] = Array("PPSCOR01".utf8)
    static let endMagic: [UInt8] = Array("PPSCEND1".utf8)
    static let version = 1
    static let fileExtension = EvalNames.scoreCacheExtension
    /// Far above any eval window (EvalSet.holdoutWindow plus one large shard); a header that
    /// claims more is refused before anything is allocated for it.
    static let maxExamples = 1 << 26
    static let maxLabels = 1 << 24

    struct ShardEntry: Codable, Equatable { var sha256: String; var examples: Int }
    struct Header: Codable {
        var schema: Int; var checkpoint: String; var checkpointBytes: Int; var labels: [String]; var shards: [ShardEntry]
        enum CodingKeys: String, CodingKey {
            case schema, checkpoint, checkpointBytes = "checkpoint_bytes", labels, shards
        }
    }

    var checkpoint: String
    /// The size of the checkpoint file the outcomes came from.
    var checkpointBytes: Int
    /// The model's label table the predictions index.
    var labels: [String]
    /// Outcomes per shard digest.
    var shards: [(sha256: String, outcomes: [ModelOutcome])]

    static func == (a: ScoreCache, b: ScoreCache) -> Bool {
        a.checkpoint == b.checkpoint && a.checkpointBytes == b.checkpointBytes && a.labels == b.labels && a.shards.count == b.shards.count
            && zip(a.shards, b.shards).allSatisfy { $0.sha256 == $1.sha256 && $0.outcomes == $1.outcomes }
    }

    /// The outcomes of the shard with this digest, if cached with the expected example count.
    func outcomes(sha256: String, examples: Int) -> [ModelOutcome]? {
        guard !sha256.isEmpty, let s = shards.first(where: { $0.sha256 == sha256 }), s.outcomes.count == examples else { return nil }
        return s.outcomes
    }

    func bytes() throws -> [UInt8] {
        let all = shards.flatMap { $0.outcomes }
        let header = Header(schema: 1, checkpoint: checkpoint, checkpointBytes: checkpointBytes, labels: labels,
                            shards: shards.map { ShardEntry(sha256: $0.sha256, examples: $0.outcomes.count) })
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let h = [UInt8](try enc.encode(header))
        var out = [UInt8]()
        out.reserveCapacity(32 + h.count + 13 * all.count)
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out.append(contentsOf: Self.magic)
        le(UInt32(Self.version)); le(UInt32(h.count))
        out.append(contentsOf: h)
        for o in all { le(o.pred) }
        for o in all { le(o.pTrue.bitPattern) }
        for o in all { le(o.pTop.bitPattern) }
        for o in all { out.append(o.top5 ? 1 : 0) }
        out.append(contentsOf: Self.endMagic)
        return try Zstd.compress(out, level: 3)
    }

    /// Decodes and checks a cache file's bytes; any defect is a `.corrupt` PPError naming `path`.
    init(path: String, fileBytes: [UInt8]) throws {
        let p: [UInt8]
        do { p = try Zstd.decompress(fileBytes) } catch let e as PPError {
            throw PPError.corrupt(path, "not a readable score cache (\(e.message))")
        }
        try self.init(path: path, decompressed: p)
    }

    /// Decodes the decompressed bytes (what the fuzz target Fuzz/Targets/fuzz-scorecache feeds).
    init(path: String, decompressed p: [UInt8]) throws {
        func bad(_ why: String) -> PPError { PPError.corrupt(path, why) }
        guard p.count >= 24, Array(p[0..<8]) == Self.magic else { throw bad("bad magic (not a score cache)") }
        func u32(_ o: Int) -> UInt32 { p.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian } }
        guard Int(u32(8)) == Self.version else { throw bad("score cache version \(u32(8)), this build reads \(Self.version)") }
        let hl = Int(u32(12))
        guard hl <= p.count - 16 else { throw bad("truncated header") }
        let h: Header
        do { h = try JSONDecoder().decode(Header.self, from: Data(p[16..<(16 + hl)])) } catch { throw bad("unreadable header: \(error)") }
        guard h.schema == 1 else { throw bad("schema \(h.schema), this build reads 1") }
        guard h.labels.count <= Self.maxLabels else { throw bad("\(h.labels.count) labels, more than \(Self.maxLabels)") }
        var total = 0
        for s in h.shards {
            guard s.examples >= 0, s.examples <= Self.maxExamples - total else { throw bad("shard \(s.sha256): example count \(s.examples) out of range") }
            total += s.examples
        }
        let start = 16 + hl
        guard p.count - start == 13 * total + 8 else { throw bad("size does not match \(total) examples") }
        guard Array(p[(start + 13 * total)...]) == Self.endMagic else { throw bad("bad end magic") }
        let labelCount = UInt32(h.labels.count)
        var shards: [(sha256: String, outcomes: [ModelOutcome])] = []
        try p.withUnsafeBytes { b in
            var i = 0
            for s in h.shards {
                var out = [ModelOutcome]()
                out.reserveCapacity(s.examples)
                for _ in 0..<s.examples {
                    let pred = b.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self).littleEndian
                    let pt = Float(bitPattern: b.loadUnaligned(fromByteOffset: start + 4 * (total + i), as: UInt32.self).littleEndian)
                    let pp = Float(bitPattern: b.loadUnaligned(fromByteOffset: start + 4 * (2 * total + i), as: UInt32.self).littleEndian)
                    let f = b[start + 12 * total + i]
                    guard pred < labelCount || (pred == ModelOutcome.noLabel && labelCount == 0) else {
                        throw bad("example \(i): predicted label index \(pred) out of range")
                    }
                    guard f <= 1, pt.isFinite, pp.isFinite else { throw bad("example \(i): bad flags or probabilities") }
                    out.append(ModelOutcome(pred: pred, pTrue: pt, pTop: pp, top5: f == 1))
                    i += 1
                }
                shards.append((s.sha256, out))
            }
        }
        self.checkpoint = h.checkpoint
        self.checkpointBytes = h.checkpointBytes
        self.labels = h.labels
        self.shards = shards
    }

    init(checkpoint: String, checkpointBytes: Int, labels: [String], shards: [(sha256: String, outcomes: [ModelOutcome])]) {
        self.checkpoint = checkpoint; self.checkpointBytes = checkpointBytes; self.labels = labels; self.shards = shards
    }

    /// The cache at `path` when it exists, is valid and belongs to `checkpoint` (a file of
    /// `checkpointBytes` bytes); nil otherwise (a bad one is reported through `warn`: it is
    /// only an optimisation).
    static func read(path: String, checkpoint: String, checkpointBytes: Int, warn: (String) -> Void) -> ScoreCache? {
        guard FileIO.exists(path) else { return nil }
        do {
            let c = try ScoreCache(path: path, fileBytes: try FileIO.readAll(path))
            guard c.checkpoint == checkpoint, c.checkpointBytes == checkpointBytes else {
                warn("\(path): score cache of \(c.checkpoint) (\(c.checkpointBytes) bytes), not of \(checkpoint) (\(checkpointBytes) bytes); scoring again")
                return nil
            }
            return c
        } catch let e as PPError {
            warn("ignoring score cache: \(e.message)")
            return nil
        } catch {
            warn("ignoring score cache \(path): \(error)")
            return nil
        }
    }
}
