// What data a checkpoint has seen, and which data must never reach a deployed model.
//
// - `Checkpoint.readHead`: the meta (and optionally the vocabulary) of a checkpoint without
//   decompressing its weights: cheap even for a 2M x 100 model. It checks magic, version and
//   the lengths it reads, not the frame checksum (only a full `Checkpoint.load` can).
// - `Lineage.of`: a checkpoint's full lineage, the union of `meta.lineage` along the
//   `meta.parent` chain ("RUN/FILE" under runs/RUN/checkpoints/ or runs/RUN/rewound/).
// - `SuspectList`: runs/RUN/suspects.json, the shards pp-train's guard stopped or that
//   `pp-train rewind` named (writer: pp-train, replaced whole).
// - `Poison.shards`: every shard name that is quarantined (quarantine/NAME.reason.json
//   exists, written by pp-ingest) or suspect in any run.
// It is not the policy of what to do about poison (pp-select, pp-train decide that).

import Shared
import CZstd
import Foundation

extension Checkpoint {
    /// Only the delta base "RUN/FILE" a checkpoint's meta names (nil for a full checkpoint),
    /// for retention, which asks it of every checkpoint at every run: the meta JSON is
    /// scanned but only this key is decoded (readHead decodes the guard state and the lineage
    /// too: about a third of a daily pp-select run's CPU on a replay of three years of weekly
    /// checkpoints). Same errors as readHead, without its value checks.
    public static func readHeadBase(path: String) throws -> String? {
        if path.hasSuffix(Checkpoint.headSuffix) { return try readHead(path: path).meta.base }
        struct BaseOnly: Decodable { var base: String? }
        var head = try HeadReader(path: path)
        let ml = try head.metaLength()
        do { return try JSONDecoder().decode(BaseOnly.self, from: Data(head.buf[16..<(16 + ml)])).base } catch {
            throw PPError.corrupt(path, "unreadable meta JSON (\(error))")
        }
    }

    /// The meta of a checkpoint and, if asked, its data cursor and its vocabulary, from the
    /// first bytes of the decompressed stream. Without `cursor`, `meta.cursor` is empty for a
    /// format version 2 checkpoint (its CURS section is not read); a version 1 checkpoint and
    /// a head carry it in their JSON. Throws PPError(.corrupt) naming the file on a bad magic,
    /// version or length, PPError(.noInput) if it cannot be read.
    public static func readHead(path: String, vocabulary wantVocabulary: Bool = false, cursor wantCursor: Bool = false) throws -> (meta: CheckpointMeta, vocabulary: Vocabulary?) {
        try readHead(path: path, vocabulary: wantVocabulary, cursor: wantCursor, depth: 0)
    }

    /// `depth`: how many deltas above this one asked for its cursor or vocabulary (a chain,
    /// bounded by Checkpoint.maxChain like a load).
    static func readHead(path: String, vocabulary wantVocabulary: Bool, cursor wantCursor: Bool, depth: Int) throws -> (meta: CheckpointMeta, vocabulary: Vocabulary?) {
        if path.hasSuffix(Checkpoint.headSuffix) {
            guard !wantVocabulary else { throw PPError.corrupt(path, "a checkpoint head holds no vocabulary (its weights were deleted)") }
            return (try readHeadFile(path), nil)
        }
        var head = try HeadReader(path: path)
        let ml = try head.metaLength()
        var meta: CheckpointMeta
        do { meta = try JSONDecoder().decode(CheckpointMeta.self, from: Data(head.buf[16..<(16 + ml)])) } catch {
            throw PPError.corrupt(path, "unreadable meta JSON (\(error))")
        }
        try checkMeta(meta, path: path)
        // A delta's cursor (version 3 and up) and vocabulary (version 4) are patches over its
        // base's: the base's head is read once, with what this one's patches need (down the
        // chain, checked first so that the recursion is bounded).
        let cursorPatched = wantCursor && head.version >= cursorPatchVersion
        let vocabularyPatched = wantVocabulary && head.version >= deltaVersion
        var base: (meta: CheckpointMeta, vocabulary: Vocabulary?)? = nil
        if cursorPatched || vocabularyPatched {
            guard let name = meta.base else { throw PPError.corrupt(path, "format version \(head.version) is a delta's, and the meta names no base") }
            guard let bp = resolveBase(name, from: path).path else { throw PPError.corrupt(path, "its base checkpoint \(name) is missing") }
            if depth == 0 { _ = try chain(of: path) }
            guard depth < maxChain else { throw PPError.corrupt(path, "a chain of more than \(maxChain) delta checkpoints (at this one, a delta of \(name))") }
            do { base = try readHead(path: bp, vocabulary: vocabularyPatched, cursor: cursorPatched, depth: depth + 1) } catch let e as PPError {
                throw PPError.corrupt(path, "its base checkpoint \(name) cannot be read: \(e.message)")
            }
        }
        var at = 16 + ml
        if head.version >= 2 && (wantCursor || wantVocabulary) {
            guard try head.fill(at + 12) else { throw PPError.corrupt(path, "truncated before the data cursor") }
            guard String(decoding: head.buf[at..<(at + 4)], as: UTF8.self) == cursorTag else {
                throw PPError.corrupt(path, "expected section \(cursorTag) at offset \(at)")
            }
            let len = head.buf.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self)) }
            guard len < (1 << 40), try head.fill(at + 12 + Int(len)) else { throw PPError.corrupt(path, "truncated data cursor section") }
            if cursorPatched, let b = base {
                let patch = try head.buf.withUnsafeBytes { p in
                    var r = ByteReader(bytes: p, pos: at + 12, end: at + 12 + Int(len), path: path)
                    return try readCursorPatch(&r)
                }
                meta.cursor = applyCursorPatch(patch, to: b.meta.cursor)
            } else if wantCursor {
                meta.cursor = try head.buf.withUnsafeBytes { p in
                    var r = ByteReader(bytes: p, pos: at + 12, end: at + 12 + Int(len), path: path)
                    return try readCursor(&r)
                }
            }
            at += 12 + Int(len)
        }
        guard wantVocabulary else { return (meta, nil) }
        guard try head.fill(at + 12) else { throw PPError.corrupt(path, "truncated before the vocabulary") }
        guard String(decoding: head.buf[at..<(at + 4)], as: UTF8.self) == "VOCB" else {
            throw PPError.corrupt(path, "expected section VOCB at offset \(at)")
        }
        let len = head.buf.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self)) }
        guard len < (1 << 40), try head.fill(at + 12 + Int(len)) else { throw PPError.corrupt(path, "truncated vocabulary section") }
        let vocab = try head.buf.withUnsafeBytes { p -> Vocabulary in
            var r = ByteReader(bytes: p, pos: at + 12, end: at + 12 + Int(len), path: path)
            if vocabularyPatched, let b = base?.vocabulary {
                return try Vocabulary.applyPatch(&r, to: b, capacity: meta.config.vocabCapacity, minCount: meta.config.minCount)
            }
            let v = try Vocabulary.deserialize(&r, capacity: meta.config.vocabCapacity, minCount: meta.config.minCount, evictions: 0)
            try r.expectEnd("VOCB")
            return v
        }
        return (meta, vocab)
    }
}

/// The first bytes of a checkpoint's decompressed stream, read chunk by chunk as far as
/// asked: the start (magic, version) and the meta's length are checked on the way.
struct HeadReader {
    let path: String
    let reader: ChunkReader
    var buf: [UInt8] = []
    /// The format version, once `metaLength` checked it.
    var version: UInt32 = 0

    init(path: String) throws {
        self.path = path
        do { reader = try ChunkReader(path: path, chunk: 1 << 16, regularOnly: true) } catch let e as PPError {
            throw PPError(e.message, status: e.status == .ioError ? .noInput : e.status)
        }
        guard reader.isCompressed else { throw PPError.corrupt(path, "bad magic (not a zstd-compressed checkpoint)") }
    }

    /// Reads until `buf` holds at least n bytes; false at the end of the stream.
    mutating func fill(_ n: Int) throws -> Bool {
        while buf.count < n {
            let more = try reader.next { buf.append(contentsOf: $0) }
            if !more { return false }
        }
        return true
    }

    /// Checks the start and reads the whole meta; returns its length (it sits at 16..<16+n).
    mutating func metaLength() throws -> Int {
        _ = try fill(16)
        version = try buf.withUnsafeBytes { try Checkpoint.checkStart($0, path: path) }
        let ml = Int(buf.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) })
        guard try fill(16 + ml) else { throw PPError.corrupt(path, "truncated in the meta (\(ml) bytes announced)") }
        return ml
    }
}

extension Checkpoint {
    /// Heads kept by retention: runs/RUN/heads/FILE.head for runs/RUN/checkpoints/FILE.
    public static let headSuffix = ".head"
    /// The most a head file may hold (its meta lists the run's shards in the data cursor).
    static let maxHeadBytes = 64 << 20

    /// The meta of a head file (JSON, as in the checkpoint), checked like a checkpoint's. A
    /// head has no data cursor: one written by an older build still carries it, and it is cut
    /// out of the text before decoding (one pass; decoding a 1.5 MB cursor took ~50 ms).
    static func readHeadFile(_ path: String) throws -> CheckpointMeta {
        try decodeHead(try readHeadBytes(path), path: path)
    }

    static func readHeadBytes(_ path: String) throws -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path, regularOnly: true) } catch let e as PPError {
            throw PPError(e.message, status: e.status == .ioError ? .noInput : e.status)
        }
        guard bytes.count <= maxHeadBytes else { throw PPError.corrupt(path, "head of \(bytes.count) bytes, more than \(maxHeadBytes)") }
        return bytes
    }

    static func decodeHead(_ bytes: [UInt8], path: String) throws -> CheckpointMeta {
        var meta: CheckpointMeta
        do {
            meta = try JSONDecoder().decode(CheckpointMeta.self, from: Data(JSONTop.only(CheckpointMeta.keysButCursor, of: bytes[...]) ?? bytes))
        } catch {
            throw PPError.corrupt(path, "unreadable head JSON (\(error))")
        }
        meta.cursor = DataCursor()
        try checkMeta(meta, path: path)
        return meta
    }

    /// Keeps the head of the checkpoint at `path` (in runs/RUN/checkpoints/) under
    /// runs/RUN/heads/, durably, before its weights may be deleted. Returns the head's path.
    @discardableResult
    public static func keepHead(of path: String, root: Root) throws -> String {
        // The head is the meta without the data cursor: what a lineage needs (parent, shards
        // trained since it, their hashes) and nothing that grows with the run's history. The
        // cursor lists every shard the run ever saw; kept in every head it made heads/ grow
        // with the square of the history (2.2 GB of heads, 2.7 MB each, after 75 simulated
        // days of 5-minute ingests; pp-select spent 78% of a run reading them). pp-train's
        // revert walks heads by their lineage instead (pp-train Recovery.revertPoint).
        let meta = try readHead(path: path).meta
        let (dir, file) = FileIO.split(path)
        let run = FileIO.split(FileIO.split(dir).dir).name
        let heads = root.heads(run: run)
        try FileIO.makeDirectories(heads)
        let out = heads + "/" + file + headSuffix
        try FileIO.publish(try headBytes(meta), to: out)
        return out
    }

    static func headBytes(_ meta: CheckpointMeta) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        enc.userInfo[CheckpointMeta.omitCursor] = true
        return Array(try enc.encode(meta))
    }

    /// A head larger than this may carry a data cursor (heads written before 2026-12-07 did).
    static let slimHeadBytes: Int64 = 64 << 10

    /// Rewrites, in place and atomically, the heads of run `run` that still carry a data
    /// cursor (written by builds before heads were slimmed) without it; the rest of the meta is
    /// unchanged. Costs a listing and a stat per head when there is nothing to do. Returns the
    /// heads rewritten. A head that cannot be read is left as it is (the lineage walk reports it).
    @discardableResult
    public static func slimHeads(run: String, root: Root) throws -> [String] {
        let dir = root.heads(run: run)
        var done: [String] = []
        for f in try FileIO.list(dir) where f.hasSuffix(headSuffix) {
            let p = dir + "/" + f
            guard let st = FileIO.lstatOrNil(p), (st.st_mode & S_IFMT) == S_IFREG, Int64(st.st_size) > slimHeadBytes else { continue }
            // decodeHead cuts the cursor out of the text (a full decode took 110 s for the
            // 2,083 heads of the 5-minute production-sim); a head already as keepHead writes
            // it is left alone.
            guard let bytes = try? readHeadBytes(p), let meta = try? decodeHead(bytes, path: p) else { continue }
            let slim = try headBytes(meta)
            if slim == bytes { continue }
            try FileIO.publish(slim, to: p)
            done.append(f)
        }
        return done
    }
}

public enum Lineage {
    public struct Result: Sendable {
        /// Every shard the checkpoint and its ancestors trained on, oldest ancestor first,
        /// each once.
        public var shards: [ShardRef]
        /// Paths of the checkpoint and its ancestors, newest first.
        public var chain: [String]
        /// False when a parent named in a meta could not be found (its shards are unknown).
        public var complete: Bool
        /// The first parent that could not be found ("RUN/FILE"), if any.
        public var missingParent: String?
    }

    /// The file of a parent named "RUN/FILE": runs/RUN/checkpoints/FILE, else
    /// runs/RUN/rewound/FILE, else its head runs/RUN/heads/FILE.head (weights deleted by
    /// retention; only `readHead` reads it), when it is a regular file there (not a symbolic link, a FIFO or
    /// a folder); nil otherwise. RUN and FILE are plain names (no "/", not "." or "..", no
    /// dot-file). Any other form (an absolute path, as a run seeded by `--init` from outside
    /// the root records) is nil too: a lineage walk never leaves the state folder, and the
    /// ancestor counts as missing (an incomplete lineage, docs/formats.md).
    public static func resolveParent(_ name: String, root: Root) -> String? {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        for p in parts where p.isEmpty || p.hasPrefix(".") { return nil }
        let run = String(parts[0]), file = String(parts[1])
        for dir in [root.checkpoints(run: run), root.rewound(run: run)] where FileIO.isRegularFile(dir + "/" + file) {
            return dir + "/" + file
        }
        let head = root.heads(run: run) + "/" + file + Checkpoint.headSuffix
        return FileIO.isRegularFile(head) ? head : nil
    }

    /// What a lineage walk needs of a checkpoint's meta. Decoding only these keys (not the
    /// data cursor, the guard state or the knobs, which grow with the run) made a walk of a
    /// long chain several times cheaper (pp-select, issue 13).
    public struct Link: Decodable, Equatable, Sendable {
        public var parent: String?
        /// The delta base "RUN/FILE" (nil: a full checkpoint); retention keeps a base while a
        /// delta of it is kept.
        public var base: String?
        public var lineage: [ShardRef]
        public var createdAt: String
        enum CodingKeys: String, CodingKey {
            case parent, base, lineage
            case createdAt = "created_at"
        }
        static let keys: Set<String> = ["parent", "base", "lineage", "created_at"]
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            parent = try c.decodeIfPresent(String.self, forKey: .parent)
            base = try c.decodeIfPresent(String.self, forKey: .base)
            lineage = try c.decode([ShardRef].self, forKey: .lineage)
            createdAt = try c.decode(String.self, forKey: .createdAt)
        }
        init(_ m: CheckpointMeta) { parent = m.parent; base = m.base; lineage = m.lineage; createdAt = m.createdAt }
        init(parent: String?, base: String?, lineage: [ShardRef], createdAt: String) {
            self.parent = parent; self.base = base; self.lineage = lineage; self.createdAt = createdAt
        }
    }

    /// The newest checkpoint (or head) on the chain from `start` back that has not trained on
    /// `shard`: each member's lineage lists the shards it trained on since its parent, so it
    /// is the parent of the oldest member whose lineage holds the shard (`start` itself when
    /// none does; nil when the oldest that does began the run: a fresh model). This is what a
    /// checkpoint's data cursor says, without the cursor, which heads do not keep. When the
    /// walk stops at a parent that is gone, `missingParent` names it: the part before it is
    /// unknown, and `target` is the answer for the part that could be read.
    public static func newestWithout(shard: String, from start: String, root: Root) throws -> (target: String?, missingParent: String?) {
        var members: [(path: String, trained: Bool)] = []
        var current: String? = start, missing: String?
        var seen = Set<String>()
        while let p = current, seen.insert(FileIO.realPath(p) ?? p).inserted {
            let l = try link(p)
            members.append((p, l.lineage.contains { $0.name == shard }))
            current = nil
            guard let parentName = l.parent else { break }
            guard let pp = resolveParent(parentName, root: root) else { missing = parentName; break }
            current = pp
        }
        guard let k = members.lastIndex(where: \.trained) else {
            return (start, missing)
        }
        if k + 1 < members.count { return (members[k + 1].path, nil) }
        return missing == nil ? (nil, nil) : (members[k].path, missing)
    }

    /// The links read so far, by canonical path: checkpoints and heads never change once
    /// written (a name is never reused), so one process reads each at most once however
    /// many walks pass through it. Not for a long-lived process whose files may be deleted
    /// and re-created by a rewind (pp-train walks without one).
    /// With an `index` (pp-select's), links are also remembered between processes.
    public final class Memo: @unchecked Sendable {
        var links: [String: Link] = [:]
        let index: LinkIndex?
        public init(index: LinkIndex? = nil) { self.index = index }

        public func link(_ path: String) throws -> Link {
            try index?.link(path) ?? Lineage.link(path)
        }
    }

    /// The link of the checkpoint (or head) at `path`: its meta's parent, delta base, lineage
    /// and time, with the same checks of the file's start as `Checkpoint.readHead`.
    public static func link(_ path: String) throws -> Link {
        if path.hasSuffix(Checkpoint.headSuffix) {
            // A head is the meta JSON alone: take the link's keys out first (JSONTop), as
            // below; anything odd goes through the full, checked decode.
            if let bytes = try? FileIO.readAll(path, regularOnly: true), bytes.count <= Checkpoint.maxHeadBytes,
               let small = JSONTop.only(Link.keys, of: bytes[...]),
               let l = try? JSONDecoder().decode(Link.self, from: Data(small)) {
                return l
            }
            return Link(try Checkpoint.readHeadFile(path))
        }
        var head = try HeadReader(path: path)
        let ml = try head.metaLength()
        // The meta's data cursor lists every shard the run ever saw (hundreds of KB after a
        // few years of weekly shards), and a walk reads every head of a chain: decoding only
        // the link's keys made pp-select's daily run ~40% cheaper on the git replay. The
        // full decode stays the fallback, so a malformed meta is reported as before.
        let meta = head.buf[16..<(16 + ml)]
        do {
            if let small = JSONTop.only(Link.keys, of: meta) { return try JSONDecoder().decode(Link.self, from: Data(small)) }
            return try JSONDecoder().decode(Link.self, from: Data(meta))
        } catch {
            throw PPError.corrupt(path, "unreadable meta JSON (\(error))")
        }
    }

    /// Walks `meta.parent` from `checkpoint` (reading only the heads) and collects the shards.
    public static func of(checkpoint: String, root: Root, memo: Memo? = nil) throws -> Result {
        var links: [Link] = []
        var chain: [String] = []
        var seen = Set<String>()
        var current: String? = checkpoint
        var missing: String?
        while let p = current {
            let key = FileIO.realPath(p) ?? p
            guard seen.insert(key).inserted else { break }   // a cycle cannot be written, but never loop
            let l: Link
            if let m = memo?.links[key] { l = m } else {
                l = try memo?.link(p) ?? link(p)
                memo?.links[key] = l
            }
            links.append(l); chain.append(p)
            current = nil
            if let parent = l.parent {
                if let file = resolveParent(parent, root: root) { current = file } else { missing = parent }
            }
        }
        var shards: [ShardRef] = []
        var have = Set<ShardRef>()
        for l in links.reversed() {
            for s in l.lineage where have.insert(s).inserted { shards.append(s) }
        }
        return Result(shards: shards, chain: chain, complete: missing == nil, missingParent: missing)
    }
}

/// One shard pp-train will not train on again.
public struct SuspectShard: Codable, Equatable, Sendable {
    public var name: String
    public var sha256: String?
    /// "loss spike", "non-finite loss", "rewind", ...
    public var reason: String
    /// The shard's loss and the reference it was compared with, when the guard stopped it.
    public var loss: Double?
    public var reference: Double?
    public var step: Int?
    /// ISO-8601 UTC time and who (user name) or what ("pp-train guard") marked it.
    public var at: String
    public var by: String

    public init(name: String, sha256: String? = nil, reason: String, loss: Double? = nil, reference: Double? = nil,
                step: Int? = nil, at: String, by: String) {
        self.name = name; self.sha256 = sha256; self.reason = reason; self.loss = loss
        self.reference = reference; self.step = step; self.at = at; self.by = by
    }
}

/// A suspect mark a person withdrew (`pp-train unsuspect`): the mark as it was, and who
/// withdrew it, when and why.
public struct WithdrawnSuspect: Codable, Equatable, Sendable {
    public var mark: SuspectShard
    public var at: String
    public var by: String
    public var why: String?
    public init(mark: SuspectShard, at: String, by: String, why: String?) {
        self.mark = mark; self.at = at; self.by = by; self.why = why
    }
}

/// runs/RUN/suspects.json: `{"shards": [SuspectShard...], "withdrawn": [...]}`, replaced
/// whole by pp-train. Only `shards` are poison; `withdrawn` (absent in older files) is the
/// history of marks people took back.
public struct SuspectList: Codable, Equatable, Sendable {
    public var shards: [SuspectShard] = []
    public var withdrawn: [WithdrawnSuspect]? = nil
    public init(shards: [SuspectShard] = []) { self.shards = shards }

    /// Removes the mark of `name` and records who withdrew it; nil when it is not marked.
    public mutating func withdraw(_ name: String, at: String, by: String, why: String?) -> WithdrawnSuspect? {
        guard let i = shards.firstIndex(where: { $0.name == name }) else { return nil }
        let w = WithdrawnSuspect(mark: shards.remove(at: i), at: at, by: by, why: why)
        withdrawn = (withdrawn ?? []) + [w]
        return w
    }

    public var names: Set<String> { Set(shards.map(\.name)) }

    public static func path(root: Root, run: String) -> String { root.run(run) + "/suspects.json" }

    /// The run's list; empty if the file does not exist. A file that exists but does not
    /// parse is an error (PPError(.corrupt) naming it): silently forgetting suspects
    /// would let poison back in.
    public static func load(root: Root, run: String) throws -> SuspectList {
        let p = path(root: root, run: run)
        guard FileIO.exists(p) else { return SuspectList() }
        let bytes = try FileIO.readAll(p)
        do { return try JSONDecoder().decode(SuspectList.self, from: Data(bytes)) } catch {
            throw PPError("\(p): unreadable suspect list (\(error))", status: .corrupt)
        }
    }

    /// Adds or replaces (by name) an entry.
    public mutating func mark(_ s: SuspectShard) {
        if let i = shards.firstIndex(where: { $0.name == s.name }) { shards[i] = s } else { shards.append(s) }
    }

    public func publish(root: Root, run: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(self)
        try FileIO.publish(String(decoding: data, as: UTF8.self) + "\n", to: SuspectList.path(root: root, run: run))
    }
}

public enum Poison {
    /// Shard name -> why it must not be in a deployed model: "quarantined" (quarantine/NAME.reason.json
    /// exists) or "suspect in run RUN: REASON" (runs/RUN/suspects.json).
    public static func shards(root: Root) throws -> [String: String] {
        var out: [String: String] = [:]
        if FileIO.exists(root.quarantine) {
            for f in try FileIO.list(root.quarantine) where f.hasSuffix(".reason.json") {
                out[String(f.dropLast(".reason.json".count))] = "quarantined"
            }
        }
        if FileIO.exists(root.runs) {
            for run in try FileIO.list(root.runs) where FileIO.exists(SuspectList.path(root: root, run: run)) {
                for s in try SuspectList.load(root: root, run: run).shards where out[s.name] == nil {
                    out[s.name] = "suspect in run \(run): \(s.reason)"
                }
            }
        }
        return out
    }

    /// The poisoned shards in a lineage, in lineage order, with why.
    public static func find(in lineage: Lineage.Result, poison: [String: String]) -> [(shard: String, why: String)] {
        lineage.shards.compactMap { s in poison[s.name].map { (s.name, $0) } }
    }
}
