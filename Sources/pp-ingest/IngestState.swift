// pp-ingest's side of the state folder: the index of the shards already there (by input),
// free names in archive/ and quarantine/, temps of killed runs, the test hooks that pause or
// crash a run at a chosen step, and publishing a part durably (header frame + the temp's
// records, then FileIO.publish) with the check that completes an interrupted ingest.

import Foundation
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

extension Ingester {
    /// Names starting with "." in `dir` (FileIO.list hides them).
    func dotNames(_ dir: String) -> [String] {
        ((try? FileIO.entries(dir)) ?? nil)?.filter { $0.hasPrefix(".") } ?? []
    }

    /// Deletes what a killed pp-ingest left behind: part temps and FileIO.publish temps in
    /// the folders only pp-ingest writes. Safe because we hold the ingest lock.
    func removeStaleTemps() throws {
        for dir in [root.shards, root.holdout, root.quarantine] {
            for name in dotNames(dir) where name.hasPrefix(".ingest-") || name.contains(".tmp.") {
                log.info("removing a temp file left by an interrupted run", metadata: ["file": "\(dir)/\(name)"])
                try FileIO.removeDurably(dir + "/" + name)
            }
        }
        // Folders other tools write too (metrics/) or that hold FileIO.publish temps only:
        // only temps whose writer is dead (Temps.swift).
        Temps.sweep([Reference.dir(root), root.quarantine + "/holdout", root.quarantine + "/stats", root.archive, root.metrics], log: log)
    }

    /// Indexes the shard names (ShardName) in shards/, holdout/ and quarantine/ by input.
    func buildIndex() throws {
        // Quarantined shards count too: an input whose shards were taken out is not ingested
        // again by sending it again (it is a duplicate until someone releases it).
        for (dir, rel) in [(root.shards, "shards"), (root.holdout, "holdout"), (root.quarantine, "quarantine")] {
            for name in try FileIO.list(dir) {
                if let s = ShardName(name) { index[s.sha16, default: []].insert(rel + "/" + name) }
            }
        }
    }

    /// `name`, or `name.1`, `name.2`, ... : the first that does not exist in `dir`.
    func freeName(_ dir: String, _ name: String) -> String {
        if !FileIO.exists(dir + "/" + name) { return name }
        var k = 1
        while FileIO.exists(dir + "/\(name).\(k)") { k += 1 }
        return "\(name).\(k)"
    }

    /// PP_INGEST_PAUSE_AT (tests only): at that point, create ROOT/.pause-POINT and wait
    /// (up to 120 s) until it is removed, so a test can change inbox/ at a chosen moment.
    func pausePoint(_ point: String) {
        guard let v = getenv("PP_INGEST_PAUSE_AT"), String(cString: v) == point else { return }
        let flag = root.path + "/.pause-" + point
        try? FileIO.publish("", to: flag)
        let t0 = Clock.monotonic()
        while FileIO.exists(flag) && Clock.monotonic() - t0 < 120 { usleep(10_000) }
    }

    func crashPoint(_ point: String) {
        if crashAt == point {
            log.warning("PP_INGEST_CRASH_AT=\(point): killing myself (test hook)")
            kill(getpid(), SIGKILL)
        }
    }

    /// FileIO.publish for a shard whose records frame is already in the file `records`:
    /// writes `.NAME.tmp.PID` = header frame + a kernel-side copy of `records`
    /// (sendfile(2), read/write where unsupported), fsyncs it, renames it to `path`,
    /// and fsyncs the folder.
    func publishPart(header: [UInt8], records: String, to path: String) throws {
        try FileIO.publish(to: path) { out, tmp in
            try header.withUnsafeBytes { try FileIO.writeAll(out, $0, path: tmp) }
            let src = open(records, O_RDONLY | O_CLOEXEC)
            if src < 0 { throw PPError.io(records, "open", errno: errno) }
            defer { close(src) }
            var kernelCopy = true
            while kernelCopy {
                let n = sendfile(out, src, nil, 1 << 30)
                if n == 0 { break }
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == ENOSYS || errno == EINVAL { kernelCopy = false; break }
                    throw PPError.io(tmp, "sendfile", errno: errno)
                }
            }
            if !kernelCopy {
                var buf = [UInt8](repeating: 0, count: 1 << 20)
                while true {
                    let n = buf.withUnsafeMutableBytes { b in read(src, b.baseAddress!, b.count) }
                    if n < 0 { if errno == EINTR { continue }; throw PPError.io(records, "read", errno: errno) }
                    if n == 0 { break }
                    try buf.withUnsafeBytes { try FileIO.writeAll(out, UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: tmp) }
                }
            }
        }
    }

    /// True when every existing shard of this input is the part we would write under that
    /// name (same split, part number, part count and example count): then the missing ones
    /// complete the set. Anything else means other options made them; we do not mix.
    func consistent(_ existing: Set<String>, _ planned: [(rel: String, split: String, part: Int, parts: Int, examples: Int)]) -> Bool {
        let byRel = Dictionary(uniqueKeysWithValues: planned.map { ($0.rel, $0) })
        for rel in existing {
            guard let p = byRel[rel] else { return false }
            guard let shard = try? Shard(path: root.path + "/" + rel) else { return false }
            let h = shard.header
            if h.split != p.split || h.part != p.part || h.parts != p.parts || h.examples != p.examples { return false }
        }
        return true
    }
}
