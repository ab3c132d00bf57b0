// The link index: what a lineage walk and retention need of each checkpoint of a run (its
// parent, the shards it trained on since, its time, its delta base), remembered between
// pp-select runs, so that a daily run costs a stat per checkpoint and head, not a zstd
// decompression and a JSON decode of every one. pp-select walks the deployed checkpoint's
// whole chain (every head ever kept) and reads every checkpoint's delta base at every run:
// a quarter of a daily run's CPU after three years of weekly checkpoints, and O(history) in
// reads; with hourly checkpoints a year's chain is ~9,000 heads.
//
// runs/RUN/heads/links.idx, text, written by pp-select only (atomically, at the end of a run
// that is not a dry run), read by pp-select:
//
//   perpetuum-link-index 1
//   KIND/FILE SIZE MTIME_NS CTIME_NS INODE CREATED_AT PARENT BASE N SHARD_1 SHA_1 ... SHARD_N SHA_N
//
// KIND is checkpoints, rewound or heads (the folder under runs/RUN/ the file is in); PARENT
// and BASE are "RUN/FILE" or "-" for none, a SHA is "-" when the lineage records none. An
// entry is used only while the file's lstat still gives the same size, mtime, ctime and inode
// (checkpoints and heads are published by rename and never rewritten; ctime, which no one can
// set back, makes an edit in place miss too). Links with a field
// that is not a plain token (printable ASCII without spaces, not "-") are not remembered:
// they are read from their file every time, as without an index. The file is an optimisation
// and hostile input like any other: a line that fails a check makes the whole file ignored
// (reported through `warn`) and it is rebuilt; nothing is allocated from a count it claims
// before the line is known to hold that many fields. A save keeps the entries of the files
// this process looked at, so entries of deleted files do not accumulate.

import Shared
#if canImport(Glibc)
import Glibc
#endif

public final class LinkIndex {
    public struct Entry: Equatable {
        public var size: Int64
        public var mtimeNs: Int64
        public var ctimeNs: Int64
        public var inode: UInt64
        public var link: Lineage.Link
    }

    static let magicLine = "perpetuum-link-index 1"
    public static let fileName = "links.idx"
    /// Far above a run's index after years of hourly checkpoints (~1 KB a line).
    static let maxFileBytes = 256 << 20
    static let maxToken = 4096
    static let kinds = ["checkpoints", "rewound", "heads"]

    let root: Root
    let warn: (String) -> Void
    /// By run: entries by "KIND/FILE", whether one was added, the keys looked at.
    final class RunIndex {
        var entries: [String: Entry] = [:]
        var dirty = false
        var used = Set<String>()
    }
    var runs: [String: RunIndex] = [:]
    /// Links read from their files (not found in the index) by this process.
    public private(set) var misses = 0

    public init(root: Root, warn: @escaping (String) -> Void = { _ in }) {
        self.root = root
        self.warn = warn
    }

    nonisolated(unsafe) static var shared: [String: LinkIndex] = [:]

    /// The index of `root` for this process (one per root: the poison guard's walks and
    /// retention share it).
    public static func shared(_ root: Root, warn: @escaping (String) -> Void = { _ in }) -> LinkIndex {
        if let i = shared[root.path] { return i }
        let i = LinkIndex(root: root, warn: warn)
        shared[root.path] = i
        return i
    }

    public static func path(_ root: Root, run: String) -> String { root.heads(run: run) + "/" + fileName }

    /// (run, "KIND/FILE") of a path under runs/RUN/KIND/, as the root spells it; nil otherwise.
    func place(_ path: String) -> (run: String, key: String)? {
        let prefix = root.runs + "/"
        guard path.hasPrefix(prefix) else { return nil }
        let parts = path.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, LinkIndex.kinds.contains(String(parts[1])),
              let run = LinkIndex.token(String(parts[0])), let file = LinkIndex.token(String(parts[2])),
              !run.hasPrefix("."), !file.hasPrefix(".") else { return nil }
        return (run, parts[1] + "/" + file)
    }

    func run(_ name: String) -> RunIndex {
        if let r = runs[name] { return r }
        let r = RunIndex()
        runs[name] = r
        let (entries, damaged) = IndexText.load(LinkIndex.path(root, run: name), maxBytes: LinkIndex.maxFileBytes,
                                                warn: warn, parse: LinkIndex.parse)
        r.entries = entries ?? [:]
        r.dirty = damaged
        return r
    }

    static func stamp(_ st: stat, _ link: Lineage.Link) -> Entry {
        let s = FileStamp(st)
        return Entry(size: s.size, mtimeNs: s.mtime, ctimeNs: s.ctime, inode: s.ino, link: link)
    }

    /// The link of the checkpoint or head at `path`: remembered when its lstat is unchanged,
    /// else read (`Lineage.link`) and remembered, keyed by the lstat taken before the read.
    public func link(_ path: String) throws -> Lineage.Link {
        guard let (runName, key) = place(path), let st = FileIO.lstatOrNil(path), (st.st_mode & S_IFMT) == S_IFREG else {
            return try Lineage.link(path)
        }
        let r = run(runName)
        r.used.insert(key)
        if let e = r.entries[key] {
            let now = LinkIndex.stamp(st, e.link)
            if e == now { return e.link }
        }
        misses += 1
        let l = try Lineage.link(path)
        let e = LinkIndex.stamp(st, l)
        if LinkIndex.line(key, e) != nil {
            r.entries[key] = e
            r.dirty = true
        }
        return l
    }

    /// Writes each run's index whose entries changed (or whose file held entries of files no
    /// longer looked at), atomically; the entries kept are those looked at by this process.
    public func save() throws {
        for (name, r) in runs.sorted(by: { $0.key < $1.key }) {
            let kept = r.entries.filter { r.used.contains($0.key) }
            guard r.dirty || kept.count != r.entries.count else { continue }
            guard let st = FileIO.lstatOrNil(root.run(name)), (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            var text = LinkIndex.magicLine + "\n"
            for (k, e) in kept.sorted(by: { $0.key < $1.key }) {
                if let l = LinkIndex.line(k, e) { text += l + "\n" }
            }
            try FileIO.makeDirectories(root.heads(run: name))
            try FileIO.publish(text, to: LinkIndex.path(root, run: name))
            r.entries = kept
            r.dirty = false
        }
    }

    /// `s` when it can stand as one field: 1-4096 bytes of printable ASCII without spaces.
    static func token(_ s: String) -> String? {
        let u = s.utf8
        guard !u.isEmpty, u.count <= maxToken, u.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        return s
    }

    /// An optional field: "-" for none; nil when the value cannot be written (not a token, or "-").
    static func field(_ s: String?) -> String? {
        guard let s else { return "-" }
        guard s != "-" else { return nil }
        return token(s)
    }

    /// The line of an entry; nil when one of its fields cannot be written (not remembered).
    static func line(_ key: String, _ e: Entry) -> String? {
        guard let created = token(e.link.createdAt), let parent = field(e.link.parent), let base = field(e.link.base) else { return nil }
        var out = "\(key) \(e.size) \(e.mtimeNs) \(e.ctimeNs) \(e.inode) \(created) \(parent) \(base) \(e.link.lineage.count)"
        for s in e.link.lineage {
            guard let n = field(s.name), let h = field(s.sha256.isEmpty ? nil : s.sha256) else { return nil }
            out += " " + n + " " + h
        }
        return out
    }

    /// Entries of an index file's bytes; throws on the first defect (its line and reason).
    public static func parse(_ bytes: [UInt8]) throws -> [String: Entry] {
        var out: [String: Entry] = [:]
        for (number, line) in try IndexText.entryLines(bytes, magicLine: magicLine, maxBytes: maxFileBytes, what: "link index") {
            func bad(_ why: String) -> PPError { PPError("line \(number): \(why)", status: .corrupt) }
            let f = line.split(separator: 0x20, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            guard f.count >= 9 else { throw bad("at least 9 fields expected, found \(f.count)") }
            guard f.allSatisfy({ token($0) != nil }) else { throw bad("a field that is not printable ASCII of 1-\(maxToken) bytes") }
            let key = f[0]
            let kp = key.split(separator: "/", omittingEmptySubsequences: false)
            guard kp.count == 2, kinds.contains(String(kp[0])), !kp[1].isEmpty, !kp[1].hasPrefix(".") else {
                throw bad("\(key): not KIND/FILE (KIND: \(kinds.joined(separator: ", ")))")
            }
            guard let size = Int64(f[1]), size >= 0, let mtime = Int64(f[2]), let ctime = Int64(f[3]), let inode = UInt64(f[4]) else {
                throw bad("size, mtime, ctime or inode out of range")
            }
            guard let n = Int(f[8]), n >= 0, n == (f.count - 9) / 2, f.count == 9 + 2 * n else {
                throw bad("shard count \(f[8]) does not match the \(f.count - 9) fields after it")
            }
            var lineage: [ShardRef] = []
            lineage.reserveCapacity(n)
            for i in 0..<n {
                let name = f[9 + 2 * i], sha = f[10 + 2 * i]
                guard name != "-" else { throw bad("shard \(i + 1) has no name") }
                lineage.append(ShardRef(name: name, sha256: sha == "-" ? "" : sha))
            }
            guard out[key] == nil else { throw bad("\(key) listed twice") }
            let link = Lineage.Link(parent: f[6] == "-" ? nil : f[6], base: f[7] == "-" ? nil : f[7], lineage: lineage, createdAt: f[5])
            out[key] = Entry(size: size, mtimeNs: mtime, ctimeNs: ctime, inode: inode, link: link)
        }
        return out
    }
}
