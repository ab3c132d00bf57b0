// The eval set: exactly which examples a checkpoint is scored on, in a fixed order, and the
// content hash that names it (docs/formats.md, "Eval set"). pp-eval loads it to score;
// pp-select only hashes it, to know which stored results are comparable. Two results are
// comparable only when their eval-set hashes match: same examples, same order.
//
// Files (holdout/ by default, or --data files/folders) are taken sorted by name; the hash is
// SHA-256 of "perpetuum-evalset-1\n" followed by one digest per file and "\n": for a shard
// (.pps) the SHA-256 of its bytes, for a raw input (JSON Lines or fastText, parsed by
// InputParser exactly as pp-ingest parses it) the SHA-256 of the examples kept, each as
// label TAB tokens TAB ts-or-"-" LF. Examples are scored in file order, records in file order.

import Shared
import Crypto
#if canImport(Glibc)
import Glibc
#endif

public final class EvalSet {
    public static let daySeconds: Int64 = 86_400

    /// SHA-256 (hex) of what is scored.
    public let hash: String
    /// "holdout" or what --data named.
    public let source: String
    public let shards: [Shard]
    /// Per shard (parallel to `shards`): the SHA-256 (hex) of what it contributes, the digest
    /// the set's hash is made of: a shard file's bytes, or a raw file's kept examples. pp-eval
    /// keys its per-shard score cache by it (ScoreCache.swift).
    public let digests: [String]
    /// The eval set's label table: labels in order of first appearance over the shards.
    public let labels: [String]
    /// For each shard, its label indices mapped into `labels`.
    public let labelMaps: [[UInt32]]
    public let count: Int
    /// Time of the newest and oldest example (Unix seconds): an example's `ts`, else its
    /// shard's newest ts, else the shard's ingest time.
    public let newest: Int64
    public let oldest: Int64

    public init(source: String, shards: [Shard], hash: String, digests: [String]? = nil) {
        precondition(digests == nil || digests!.count == shards.count)
        self.source = source
        self.shards = shards
        self.digests = digests ?? shards.map { _ in "" }
        self.hash = hash
        var labels: [String] = [], index: [String: UInt32] = [:], maps: [[UInt32]] = []
        var n = 0, newest = Int64.min, oldest = Int64.max
        for s in shards {
            var m: [UInt32] = []
            for l in s.header.labels {
                if let k = index[l] { m.append(k) } else {
                    let k = UInt32(labels.count); index[l] = k; labels.append(l); m.append(k)
                }
            }
            maps.append(m)
            n += s.header.examples
            let fallback = EvalSet.shardTime(s)
            if s.header.examples > 0 {
                newest = max(newest, s.header.tsMax ?? fallback)
                oldest = min(oldest, s.header.tsMin ?? fallback)
            }
        }
        self.labels = labels
        self.labelMaps = maps
        self.count = n
        self.newest = newest == Int64.min ? 0 : newest
        self.oldest = oldest == Int64.max ? 0 : oldest
    }

    /// The time given to a shard's examples without `ts`: its newest ts, else its ingest time.
    public static func shardTime(_ s: Shard) -> Int64 {
        s.header.tsMax ?? Clock.parseISO(s.header.ingestedAt) ?? 0
    }

    /// The recent slice starts here: `days` before the newest example.
    public func recentFrom(days: Int) -> Int64 { newest - Int64(days) * EvalSet.daySeconds }
    /// The old slice ends here: `days` after the oldest example.
    public func oldTo(days: Int) -> Int64 { oldest + Int64(days) * EvalSet.daySeconds }

    /// Every example's time, in scoring order (its `ts`, else its shard's time).
    public func exampleTimes() -> [Int64] {
        var out = [Int64]()
        out.reserveCapacity(count)
        for s in shards {
            let fallback = EvalSet.shardTime(s)
            s.forEach { _, ts, _ in out.append(ts ?? fallback) }
        }
        return out
    }

    /// Slice bounds by count (issue 13): the recent slice starts at the time of the `n`-th
    /// newest example, the old slice ends at the time of the `n`-th oldest, so that a slow
    /// stream still gets `n` examples in each (more when times tie; all when fewer exist).
    public func boundsByCount(_ n: Int) -> (recentFrom: Int64, oldTo: Int64) {
        let t = exampleTimes().sorted()
        guard !t.isEmpty else { return (0, 0) }
        let k = min(max(n, 1), t.count)
        return (t[t.count - k], t[k - 1])
    }

    /// recent/old flag bits of every example, in scoring order.
    public func sliceFlags(days: Int) -> [UInt8] {
        sliceFlags(recentFrom: recentFrom(days: days), oldTo: oldTo(days: days))
    }

    /// recent/old flag bits of every example, in scoring order, for given bounds.
    public func sliceFlags(recentFrom from: Int64, oldTo to: Int64) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count)
        for s in shards {
            let fallback = EvalSet.shardTime(s)
            s.forEach { _, ts, _ in
                let t = ts ?? fallback
                out.append((t >= from ? ExampleFlag.recent : 0) | (t <= to ? ExampleFlag.old : 0))
            }
        }
        return out
    }

    /// Calls `body(truth, tokens)` for every example in scoring order; `truth` indexes `labels`.
    public func forEach(_ body: (UInt32, UnsafeRawBufferPointer) throws -> Void) rethrows {
        for (k, s) in shards.enumerated() {
            let map = labelMaps[k]
            try s.forEach { li, _, tokens in try body(map[li], tokens) }
        }
    }

    // MARK: - Shard sets

    static let hashPrefix = Array("perpetuum-evalset-1\n".utf8)

    /// The shard files (`*.pps`) of a folder, sorted by name, dot-files skipped.
    public static func shardFiles(in dir: String) throws -> [String] {
        try FileIO.list(dir).filter { $0.hasSuffix("." + Shard.fileExtension) }.map { dir + "/" + $0 }
    }

    /// Shard paths named by --data arguments: folders are listed, files taken as they are;
    /// the result is sorted by file name (then path) so the order does not depend on how
    /// the arguments were given.
    public static func shardPaths(_ args: [String]) throws -> [String] {
        var out: [String] = []
        for a in args {
            var st = stat()
            guard stat(a, &st) == 0 else { throw PPError.io(a, "stat", errno: errno) }
            if (st.st_mode & S_IFMT) == S_IFDIR { out += try shardFiles(in: a) } else { out.append(a) }
        }
        return out.sorted { (FileIO.split($0).name, $0) < (FileIO.split($1).name, $1) }
    }

    /// The hash of a shard set without decompressing it (what pp-select needs); with an
    /// `index` (the root's holdout index) a shard's digest is read only when unknown.
    public static func hashShards(_ paths: [String], index: HoldoutIndex? = nil) throws -> String {
        var h = SHA256()
        h.update(data: hashPrefix)
        for p in paths {
            let digest = try index.map { try $0.sha256(p) } ?? hex(SHA256.hash(data: try FileIO.readAll(p)))
            h.update(data: Array((digest + "\n").utf8))
        }
        return hex(h.finalize())
    }

    /// The root's current eval window (`holdoutPaths`) and its hash, through the root's holdout
    /// index (HoldoutIndex.swift): a run that finds every shard known reads no shard.
    public static func currentHoldout(_ root: Root, warn: (String) -> Void = { _ in }) throws -> (paths: [String], hash: String) {
        let index = HoldoutIndex.shared(root, warn: warn)
        let paths = try holdoutPaths(root, index: index)
        return (paths, try hashShards(paths, index: index))
    }

    /// Reads and checks every file (a defect throws `.corrupt` naming the file) and hashes
    /// the set in the same pass. Shard files (.pps) are read as they are; any other file is a
    /// raw input: its bad lines are reported through `warn` and skipped, as pp-ingest skips them.
    ///
    /// `skipCorrupt` (the root's holdout set): a shard that fails its checks is reported
    /// through `warn` and contributes no examples, but its bytes stay in the set's hash, so
    /// the hash is still `hashShards` of the folder (`--pending` finds its results) and every
    /// checkpoint scored on this set was scored without it. One bad file in holdout/ must
    /// not stop every evaluation.
    public static func load(_ paths: [String], source: String, skipCorrupt: Bool = false, index: HoldoutIndex? = nil,
                            warn: (String) -> Void = { _ in }) throws -> EvalSet {
        var h = SHA256()
        h.update(data: hashPrefix)
        var shards: [Shard] = [], digests: [String] = []
        for p in paths {
            let digest: String
            if p.hasSuffix("." + Shard.fileExtension) {
                let st = FileIO.lstatOrNil(p)
                let bytes = try FileIO.readAll(p)
                digest = hex(SHA256.hash(data: bytes))
                do {
                    let shard = try Shard(path: p, fileBytes: bytes, stats: false)
                    if let index, let st { index.record(p, st: st, examples: shard.header.examples, sha256: digest) }
                    shards.append(shard); digests.append(digest)
                } catch let e as PPError where skipCorrupt && e.status == .corrupt {
                    warn("skipping unreadable holdout shard: \(e.message)")
                }
            } else {
                let (s, d) = try rawShard(p, warn: warn)
                shards.append(s)
                digest = d
                digests.append(d)
            }
            h.update(data: Array((digest + "\n").utf8))
        }
        return EvalSet(source: source, shards: shards, hash: hex(h.finalize()), digests: digests)
    }

    /// A raw input file parsed through InputParser into an in-memory shard, and the digest
    /// of the examples kept. Examples without `ts` get the file's mtime as their time.
    static func rawShard(_ path: String, warn: (String) -> Void) throws -> (Shard, String) {
        let loaded = try InputParser.load(path: path)
        for e in loaded.errors { warn("\(path): line \(e.line): \(e.reason.rawValue): \(e.detail)") }
        if loaded.summary.badLines > loaded.errors.count {
            warn("\(path): \(loaded.summary.badLines - loaded.errors.count) more bad line(s) skipped")
        }
        var w = ShardWriter()
        var h = SHA256()
        for ex in loaded.examples {
            let count = ex.tokens.isEmpty ? 0 : ex.tokens.reduce(1) { $0 + ($1 == 0x20 ? 1 : 0) }
            ex.tokens.withUnsafeBytes { w.append(label: ex.label, ts: ex.ts, tokenBytes: $0, tokenCount: count) }
            h.update(data: Array((ex.label + "\t").utf8))
            h.update(data: ex.tokens)
            h.update(data: Array(("\t" + (ex.ts.map { String($0) } ?? "-") + "\n").utf8))
        }
        let mtime = FileIO.lstatOrNil(path).map { Double($0.st_mtim.tv_sec) } ?? 0
        let header = ShardHeader(split: "eval", examples: 0, tokens: 0, labels: [], labelCounts: [],
                                 sourceName: FileIO.split(path).name, sourceSHA256: loaded.summary.sha256,
                                 sourceBytes: loaded.summary.bytes, part: 0, parts: 1, ingestedAt: Clock.iso(mtime),
                                 tsMin: nil, tsMax: nil)
        let shard = try Shard(path: path, fileBytes: try w.finish(header: header, level: 1))
        return (shard, hex(h.finalize()))
    }

    /// How many holdout examples the root's eval set holds at least (docs/formats.md, "The
    /// eval set"): the newest holdout shards are taken until they hold this many.
    public static let holdoutWindow = 5000

    /// The current default eval set of a root: its newest holdout shards (names start with the
    /// time their data landed, so they sort by time) that together hold at least `window`
    /// examples; all of them when they hold fewer. pp-eval --pending and pp-select agree on
    /// it, and the work of scoring a checkpoint stays bounded however long the holdout grows
    /// (issue 13). Only shard headers are read; a shard whose header cannot be read counts
    /// no examples and stays in the set (pp-eval reports it when it loads the set). Throws
    /// `.nothingToDo` when there are no holdout shards.
    public static func holdoutPaths(_ root: Root, window: Int = holdoutWindow, index: HoldoutIndex? = nil) throws -> [String] {
        let p = try shardFiles(in: root.holdout)
        if p.isEmpty { throw PPError("\(root.holdout): no holdout shards to score", status: .nothingToDo) }
        var start = p.count, held = 0
        while start > 0 && held < window {
            start -= 1
            let n = index.map { $0.examples(p[start]) } ?? (try? ShardHeader.read(path: p[start]).examples)
            held += max(0, n ?? 0)
        }
        return Array(p[start...])
    }

    public static func hex<D: Sequence>(_ d: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in d { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
