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

    /// Every readable decision, oldest first. A line that does not parse (hand-edited, or
    /// from a newer schema) is skipped with a warning.
    static func read(_ path: String) throws -> [DecisionRecord] {
        guard FileIO.exists(path) else { return [] }
        return parse(try FileIO.readAll(path), path: path)
    }

    /// The decisions in the bytes of a selections.jsonl (`read`; also the fuzz target's entry).
    static func parse(_ bytes: [UInt8], path: String) -> [DecisionRecord] {
        var out: [DecisionRecord] = []
        let dec = JSONDecoder()
        for (i, line) in bytes.split(separator: 0x0A).enumerated() where !line.isEmpty {
            if let r = try? dec.decode(DecisionRecord.self, from: Data(line)) { out.append(r) } else {
                Log.fail("pp-select", "\(path): line \(i + 1): not a decision record, skipped")
            }
        }
        return out
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
