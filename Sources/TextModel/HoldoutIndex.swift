// The holdout index: what pp-eval and pp-select need to know of each holdout shard to find the
// eval window and name it (its example count and the SHA-256 of its bytes), remembered between
// runs so that a run with nothing to do costs a listing and a stat per shard, not a read and
// a JSON decode of every shard in the window (issue 13: at one holdout shard every few minutes
// the window holds thousands of small shards, and pp-select plus the every-minute pp-eval timer
// read them all at every run).
//
// evals/holdout.idx, text, written by pp-eval only (atomically), read by both:
//
//   perpetuum-holdout-index 1
//   NAME SIZE MTIME_NS INODE EXAMPLES SHA256      one line per shard of the last window
//
// An entry is used only while the shard's lstat still gives the same size, mtime and inode
// (holdout shards are published by rename and never rewritten; a replaced file misses and is
// read again). The file is an optimisation and hostile input like any other: a line that fails
// a check makes the whole file ignored (and reported through `warn`), never trusted, and
// nothing is allocated from a count it claims.

import Shared
import Crypto
#if canImport(Glibc)
import Glibc
#endif

public final class HoldoutIndex {
    public struct Entry: Equatable {
        public var size: Int64
        public var mtimeNs: Int64
        public var inode: UInt64
        public var examples: Int
        /// Lower-case hex; "" when only the example count is known.
        public var sha256: String
    }

    static let magicLine = "perpetuum-holdout-index 1"
    public static let fileName = "holdout.idx"
    /// Far above an index of any real window (a line is ~150 bytes).
    static let maxFileBytes = 64 << 20
    /// A shard's records are 16 bytes at least, so no shard under 2^40 bytes holds more.
    static let maxExamples = 1 << 36

    public private(set) var entries: [String: Entry] = [:]
    /// True when an entry was added or changed since the index was loaded.
    public private(set) var dirty = false

    public init() {}

    public static func path(_ root: Root) -> String { root.evals + "/" + fileName }

    nonisolated(unsafe) static var loaded: [String: HoldoutIndex] = [:]

    /// The index of `root` for this process: loaded from disk once, then kept in memory (a
    /// tool that hashes the window three times reads and stats it, but decodes it once).
    public static func shared(_ root: Root, warn: (String) -> Void = { _ in }) -> HoldoutIndex {
        if let i = loaded[root.path] { return i }
        let i = load(root, warn: warn)
        loaded[root.path] = i
        return i
    }

    /// The index of `root` (empty when there is none or it is damaged: then `warn` says why).
    public static func load(_ root: Root, warn: (String) -> Void = { _ in }) -> HoldoutIndex {
        let idx = HoldoutIndex()
        idx.entries = IndexText.load(path(root), maxBytes: maxFileBytes, warn: warn, parse: parse).entries ?? [:]
        return idx
    }

    /// Entries of an index file's bytes; throws on the first defect (its line and reason).
    public static func parse(_ bytes: [UInt8]) throws -> [String: Entry] {
        var out: [String: Entry] = [:]
        for (number, line) in try IndexText.entryLines(bytes, magicLine: magicLine, maxBytes: maxFileBytes, what: "holdout index") {
            let f = line.split(separator: 0x20, omittingEmptySubsequences: false)
            func bad(_ why: String) -> PPError { PPError("line \(number): \(why)", status: .corrupt) }
            guard f.count == 6 else { throw bad("6 fields expected, found \(f.count)") }
            let name = String(decoding: f[0], as: UTF8.self)
            guard validName(name), Array(name.utf8) == Array(f[0]) else { throw bad("not a shard file name") }
            guard let size = Int64(String(decoding: f[1], as: UTF8.self)), size >= 0,
                  let mtime = Int64(String(decoding: f[2], as: UTF8.self)),
                  let inode = UInt64(String(decoding: f[3], as: UTF8.self)),
                  let examples = Int(String(decoding: f[4], as: UTF8.self)), examples >= 0, examples <= maxExamples else {
                throw bad("size, mtime, inode or example count out of range")
            }
            let hex = f[5]
            guard hex.isEmpty || (hex.count == 64 && hex.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
                throw bad("not a SHA-256 in lower-case hex")
            }
            guard out[name] == nil else { throw bad("\(name) listed twice") }
            out[name] = Entry(size: size, mtimeNs: mtime, inode: inode, examples: examples, sha256: String(decoding: hex, as: UTF8.self))
        }
        return out
    }

    static func validName(_ n: String) -> Bool {
        let u = Array(n.utf8)
        return !u.isEmpty && u.count <= 255 && u.first != 0x2E && n.hasSuffix("." + Shard.fileExtension)
            && u.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != 0x2F }
    }

    static func key(_ st: stat) -> (Int64, Int64, UInt64) {
        (Int64(st.st_size), Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec), UInt64(st.st_ino))
    }

    /// The entry of the shard at `path`, if remembered and the file is unchanged.
    func lookup(_ path: String) -> Entry? {
        let name = FileIO.split(path).name
        guard let e = entries[name], let st = FileIO.lstatOrNil(path), (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let (size, mtime, inode) = HoldoutIndex.key(st)
        return e.size == size && e.mtimeNs == mtime && e.inode == inode ? e : nil
    }

    /// Remembers what was read of the shard at `path`; `st` is its lstat taken *before* it was
    /// read, so a file replaced meanwhile is keyed by the old file and misses later.
    func record(_ path: String, st: stat, examples: Int?, sha256: String?) {
        let name = FileIO.split(path).name
        guard HoldoutIndex.validName(name), (st.st_mode & S_IFMT) == S_IFREG else { return }
        let (size, mtime, inode) = HoldoutIndex.key(st)
        var e = entries[name].flatMap { $0.size == size && $0.mtimeNs == mtime && $0.inode == inode ? $0 : nil }
            ?? Entry(size: size, mtimeNs: mtime, inode: inode, examples: -1, sha256: "")
        if let n = examples { e.examples = n }
        if let h = sha256 { e.sha256 = h }
        if entries[name] != e { entries[name] = e; dirty = true }
    }

    /// The example count of the holdout shard at `path` (from its header on a miss); nil when
    /// the header cannot be read.
    public func examples(_ path: String) -> Int? {
        if let e = lookup(path), e.examples >= 0 { return e.examples }
        guard let st = FileIO.lstatOrNil(path), let h = try? ShardHeader.read(path: path) else { return nil }
        record(path, st: st, examples: max(0, h.examples), sha256: nil)
        return max(0, h.examples)
    }

    /// The SHA-256 (hex) of the bytes of the shard at `path` (read on a miss).
    public func sha256(_ path: String) throws -> String {
        if let e = lookup(path), !e.sha256.isEmpty { return e.sha256 }
        let st = FileIO.lstatOrNil(path)
        let bytes = try FileIO.readAll(path)
        let digest = EvalSet.hex(SHA256.hash(data: bytes))
        if let st { record(path, st: st, examples: nil, sha256: digest) }
        return digest
    }

    /// Writes the entries of the shards named in `keep` (the window just used) to the root's
    /// index, atomically; nothing when nothing changed.
    public func save(_ root: Root, keep paths: [String]) throws {
        let names = Set(paths.map { FileIO.split($0).name })
        let kept = entries.filter { names.contains($0.key) }
        guard dirty || kept.count != entries.count else { return }
        var text = HoldoutIndex.magicLine + "\n"
        for (name, e) in kept.sorted(by: { $0.key < $1.key }) where e.examples >= 0 {
            text += "\(name) \(e.size) \(e.mtimeNs) \(e.inode) \(e.examples) \(e.sha256)\n"
        }
        try FileIO.makeDirectories(root.evals)
        try FileIO.publish(text, to: HoldoutIndex.path(root))
        entries = kept
        dirty = false
    }
}

/// The text index files (evals/holdout.idx, runs/RUN/heads/links.idx): a first line naming the
/// format and its version, then one LF-terminated line per entry.
enum IndexText {
    /// The entries of the index file at `path`: nil when there is none, nil and `damaged` when
    /// it is not a regular file of at most `maxBytes` or `parse` refuses it (`warn` says why;
    /// the caller rebuilds it). An index is an optimisation: it is never an error.
    static func load<E>(_ path: String, maxBytes: Int, warn: (String) -> Void, parse: ([UInt8]) throws -> E) -> (entries: E?, damaged: Bool) {
        guard let st = FileIO.lstatOrNil(path) else { return (nil, false) }
        guard (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) <= maxBytes,
              let bytes = try? FileIO.readAll(path, regularOnly: true) else {
            warn("\(path): not a regular file of at most \(maxBytes) bytes; ignored (it is rebuilt)")
            return (nil, true)
        }
        do { return (try parse(bytes), false) } catch {
            warn("\(path): \((error as? PPError)?.message ?? "\(error)"); ignored (it is rebuilt)")
            return (nil, true)
        }
    }

    /// The entry lines of `bytes`, each with its 1-based line number, once the size, the first
    /// line and a whole last line are checked (a defect throws `.corrupt` saying which).
    static func entryLines(_ bytes: [UInt8], magicLine: String, maxBytes: Int, what: String) throws -> [(number: Int, line: ArraySlice<UInt8>)] {
        guard bytes.count <= maxBytes else { throw PPError("index larger than \(maxBytes) bytes", status: .corrupt) }
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        guard let first = lines.first, String(decoding: first, as: UTF8.self) == magicLine else {
            throw PPError("line 1: not a \(what) (\"\(magicLine)\" expected)", status: .corrupt)
        }
        guard let last = lines.last, last.isEmpty else { throw PPError("last line not terminated (torn file)", status: .corrupt) }
        return lines.enumerated().dropFirst().dropLast().map { ($0.offset + 1, $0.element) }
    }
}
