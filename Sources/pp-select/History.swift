// selections.jsonl: one JSON line per decision (docs/formats.md, "selections.jsonl"), appended
// with one write(2) on an O_APPEND descriptor and fsynced; a failed or short write (disk full)
// is cut off again with ftruncate(2), so a line is whole or absent. A torn tail left by a
// crash mid-write is cut back to the last newline, with a warning, at the next run
// (`repairTail`, issue 15).
// The file is also pp-select's memory: which checkpoints were deployed, in which order
// (rollback walks it back, retention never deletes anything it names).

import Foundation
import Shared
import TextModel

/// A checkpoint as a decision names it.
struct Scored: Codable, Equatable {
    var checkpoint: String
    var path: String
    var step: Int
    var score: Double?
}

struct DecisionRecord: Codable, Equatable {
    var schema = 1
    var at: String
    /// promote | keep | deploy | rollback | retention
    var decision: String
    var dryRun = false
    var reason: String
    var metric: String?
    var evalset: String?
    /// Deployed after this decision ("RUN/FILE") and the link target (relative to the root).
    var deployed: String?
    var deployedPath: String?
    /// Deployed before it.
    var previous: String?
    var previousPath: String?
    var previousScore: Double?
    var winner: Scored?
    var gain: Double?
    var ci: [Double]?
    var bootstrap: Int?
    var minGain: Double?
    /// The gate (noninferior | better) and, for noninferior, its margin.
    var gate: String?
    var margin: Double?
    var tolerance: Double?
    /// Candidate - deployed on the old slice (the forgetting meter), positive = better.
    var oldChange: Double?
    /// Age of the checkpoint deployed before the decision, in days.
    var deployedAgeDays: Double?
    var candidates: [Scored]?
    var regressions: [Regression]?
    /// Candidates refused (corrupt checkpoint, unreadable result), with the reason.
    var rejected: [[String: String]]?
    /// Checkpoints deleted by retention (relative paths).
    var deleted: [String]?
    /// Poisoned shards in the lineage of the checkpoint deployed before (a poison rollback).
    var poisoned: [PoisonedShard]?

    enum CodingKeys: String, CodingKey {
        case schema, at, decision, reason, metric, evalset, deployed, previous, winner, gain, ci, bootstrap
        case tolerance, candidates, regressions, rejected, deleted, poisoned, gate, margin
        case oldChange = "old_change"
        case deployedAgeDays = "deployed_age_days"
        case dryRun = "dry_run"
        case deployedPath = "deployed_path"
        case previousPath = "previous_path"
        case previousScore = "previous_score"
        case minGain = "min_gain"
    }

    func json() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }

    /// True for a line that moved the `deployed` link, or (reconcile) records where it was
    /// found pointing.
    var moved: Bool { !dryRun && ["promote", "deploy", "rollback", "reconcile"].contains(decision) && deployedPath != nil }
}

enum History {
    /// Appends one line: open(O_APPEND), one write(2), fsync(2); the folder is fsynced when
    /// the file was created.
    /// Whole or absent: when the write or the fsync fails, the file is cut back to its size
    /// before (ftruncate(2); the caller holds the pp-select lock, so nobody else appends).
    static func append(_ line: String, to path: String) throws {
        let created = !FileIO.exists(path)
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw PPError.io(path, "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw PPError.io(path, "stat", errno: errno) }
        let bytes = Array((line + "\n").utf8)
        do {
            try bytes.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
            try FileIO.sync(fd, path: path)
        } catch {
            if ftruncate(fd, st.st_size) == 0 { _ = fsync(fd) }
            throw error
        }
        if created { try FileIO.syncDirectory(FileIO.split(path).dir) }
    }

    /// Cuts a torn last line (no final newline: a crash or a full disk in the middle of an
    /// older append) back to the last newline (ftruncate(2), fsync(2)), so the next append
    /// starts a line of its own. Returns the bytes cut off (nil: nothing to repair).
    @discardableResult
    static func repairTail(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw PPError.io(path, "open", errno: errno)
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw PPError.io(path, "stat", errno: errno) }
        let size = Int(st.st_size)
        guard size > 0 else { return nil }
        // Back from the end in 64 KiB blocks to the last newline.
        var end = size, cut = 0
        var block = [UInt8](repeating: 0, count: 1 << 16)
        search: while end > 0 {
            let start = max(0, end - block.count)
            let n = try block.withUnsafeMutableBytes { b in
                try FileIO.retrying(path, "read") { pread(fd, b.baseAddress!, end - start, off_t(start)) }
            }
            guard n == end - start else { throw PPError.io(path, "read", errno: EIO) }
            for i in stride(from: n - 1, through: 0, by: -1) where block[i] == 0x0A {
                cut = start + i + 1
                break search
            }
            end = start
        }
        guard cut < size else { return nil }
        var torn = [UInt8](repeating: 0, count: size - cut)
        _ = torn.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(cut)) }
        try FileIO.retrying(path, "ftruncate") { Int(ftruncate(fd, off_t(cut))) }
        try FileIO.sync(fd, path: path)
        return torn
    }

    /// What one process has read of a journal: the decisions of its whole lines up to
    /// `offset` (just past the last newline read), in the file `dev`/`ino`.
    final class Memo {
        var dev: UInt64 = 0, ino: UInt64 = 0
        var offset = 0, lines = 0
        var records: [DecisionRecord] = []
        /// The last bytes before `offset` (at most 64): they must still be there for the
        /// rest to be read from `offset` on (a file replaced by one that reuses the inode).
        var seam: [UInt8] = []
    }
    nonisolated(unsafe) static var memos: [String: Memo] = [:]

    /// What pp-select's own rules read of past decisions (the journal's last deployment,
    /// retention's deployed set, rollback's stack, the metrics' last decision): a `light` read
    /// decodes only these members of each line (JSONTop), not the candidates, regressions and
    /// scores that make a line ~1 KB: the decode was a fifth of a daily run after three years.
    static let lightKeys: Set<String> = ["schema", "at", "decision", "dry_run", "reason", "deployed", "deployed_path",
                                         "previous", "previous_path", "rejected", "poisoned"]

    /// Every readable decision, oldest first. A line that does not parse (hand-edited, or
    /// from a newer schema) is skipped with a warning.
    /// A run asks several times (reconcile, selection, retention, metrics), and the file is
    /// append-only (pp-select's lock: nobody else writes it meanwhile), so the whole lines
    /// already decoded are remembered and only what was appended since is read and decoded:
    /// the file once per run, not four times. A file that shrank (repairTail), was replaced
    /// or no longer holds the bytes last decoded is read again from the start.
    /// `full`: every member of every line (the report); else the `lightKeys` only.
    static func read(_ path: String, full: Bool = false) throws -> [DecisionRecord] {
        let memoKey = full ? path + "\u{0}full" : path
        guard FileIO.lstatOrNil(path) != nil else { memos[memoKey] = nil; return [] }
        // Open before check (a FIFO there must not hang the run, a symbolic link is refused).
        let fd = try FileIO.openRegular(path, followSymlinks: false)
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw PPError.io(path, "stat", errno: errno) }
        let size = Int(st.st_size)
        func fresh() -> Memo {
            let m = Memo()
            m.dev = UInt64(st.st_dev); m.ino = UInt64(st.st_ino)
            return m
        }
        var m = memos[memoKey] ?? fresh()
        if m.dev != UInt64(st.st_dev) || m.ino != UInt64(st.st_ino) || size < m.offset { m = fresh() }
        var tail = try readRange(fd, path: path, from: m.offset - m.seam.count, to: size)
        if tail.count >= m.seam.count && tail.starts(with: m.seam) {
            tail.removeFirst(m.seam.count)
        } else {
            m = fresh()
            tail = try readRange(fd, path: path, from: 0, to: size)
        }
        memos[memoKey] = m
        // Whole lines are remembered; a last line without its newline (torn, or being
        // appended) is decoded for this answer only.
        let whole = (tail.lastIndex(of: 0x0A)).map { $0 + 1 } ?? 0
        if whole > 0 {
            let (done, n) = parse(tail[..<whole], path: path, firstLine: m.lines + 1, light: !full)
            m.records += done
            m.lines += n
            m.offset += whole
            m.seam = Array((m.seam + tail[..<whole]).suffix(64))
        }
        guard whole < tail.count else { return m.records }
        return m.records + parse(tail[whole...], path: path, firstLine: m.lines + 1, light: !full).records
    }

    /// Bytes `from..<to` of the file (fewer if it ends first).
    static func readRange(_ fd: Int32, path: String, from: Int, to: Int) throws -> [UInt8] {
        guard to > from else { return [] }
        var buf = [UInt8](repeating: 0, count: to - from)
        var got = 0
        while got < buf.count {
            let n = try buf.withUnsafeMutableBytes { b in
                try FileIO.retrying(path, "read") { pread(fd, b.baseAddress! + got, b.count - got, off_t(from + got)) }
            }
            if n == 0 { break }
            got += n
        }
        buf.removeSubrange(got...)
        return buf
    }

    /// The decisions in the bytes of a selections.jsonl (`read`; also the fuzz target's entry).
    static func parse(_ bytes: [UInt8], path: String) -> [DecisionRecord] {
        parse(bytes[...], path: path, firstLine: 1).records
    }

    /// The decisions in `bytes`, whose first line is line `firstLine` of the file, and the
    /// number of lines (empty ones too) they hold.
    static func parse(_ bytes: ArraySlice<UInt8>, path: String, firstLine: Int, light: Bool = false) -> (records: [DecisionRecord], lines: Int) {
        guard !bytes.isEmpty else { return ([], 0) }
        var out: [DecisionRecord] = []
        let dec = JSONDecoder()
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        let count = bytes.last == 0x0A ? lines.count - 1 : lines.count
        for (i, line) in lines.prefix(count).enumerated() where !line.isEmpty {
            let text = light ? (JSONTop.only(lightKeys, of: line).map { Data($0) } ?? Data(line)) : Data(line)
            if let r = try? dec.decode(DecisionRecord.self, from: text) { out.append(r) } else {
                Log.fail("pp-select", "\(path): line \(firstLine + i): not a decision record, skipped")
            }
        }
        return (out, count)
    }

    /// The deployment stack: promote/deploy push, rollback pops down to its target (one
    /// entry for a plain rollback, more when poisoned or missing ones were skipped).
    static func stack(_ records: [DecisionRecord]) -> [String] {
        var s: [String] = []
        for r in records where r.moved {
            if r.decision == "rollback" {
                guard let p = r.deployedPath else { continue }
                if let i = s.dropLast().lastIndex(of: p) { s.removeSubrange((i + 1)...) } else {
                    if !s.isEmpty { s.removeLast() }
                    if s.last != p { s.append(p) }
                }
            } else if let p = r.deployedPath, s.last != p {
                s.append(p)
            }
        }
        return s
    }

    /// Where `rollback` may go from `current`, best first: the entries below it in the stack,
    /// newest first (or the whole stack when `current` is not in it: the link was changed by
    /// hand or the last line lost), each once, never `current`.
    static func rollbackTargets(_ records: [DecisionRecord], current: String?) -> [String] {
        let s = stack(records)
        let below: ArraySlice<String>
        if let c = current, let i = s.lastIndex(of: c) { below = s[..<i] } else { below = s[...] }
        var seen = Set<String>()
        return below.reversed().filter { $0 != current && seen.insert($0).inserted }
    }

    /// Every checkpoint ever deployed (relative paths): retention keeps them all.
    static func everDeployed(_ records: [DecisionRecord]) -> Set<String> {
        var s = Set<String>()
        for r in records where r.moved { if let p = r.deployedPath { s.insert(p) } }
        for r in records where !r.dryRun { if let p = r.previousPath { s.insert(p) } }
        return s
    }
}
