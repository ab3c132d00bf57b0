// Removing the temp files of writers that died (issue 15): a process killed between creating
// its dot-named temp and renaming it leaves the temp behind for ever (19 checkpoint temps,
// 183 MB, after 38 kills of pp-train). Every temp the tools write names its writer's PID:
// `.NAME.tmp.PID` (FileIO.publish, FileIO.replaceSymlink, pp-ingest's parts) and
// `.ingest-PID-...` (pp-ingest's part buffers). At start each tool sweeps the folders it
// writes: a temp is removed only when no process of that PID exists (kill(2) with signal 0
// says ESRCH) and no process holds the file open (OpenFiles, /proc), so a live writer's temp
// is never touched, whoever it belongs to. A PID reused by an unrelated process keeps the
// temp until a later sweep: the safe direction. Dot-names without a PID are never touched
// (inbox/'s `.NAME.tmp` are the producers', and inbox/ is not swept).

import Logging
#if canImport(Glibc)
import Glibc
#endif

public enum Temps {
    /// The writer's PID encoded in a temp name, nil for names that are not our temps.
    public static func writerPID(_ name: String) -> Int32? {
        guard name.hasPrefix(".") else { return nil }
        if name.hasPrefix(".ingest-") {
            let rest = name.dropFirst(".ingest-".count)
            guard let dash = rest.firstIndex(of: "-") else { return nil }
            return Int32(rest[..<dash]).flatMap { $0 > 0 ? $0 : nil }
        }
        guard let r = name.ranges(of: ".tmp.").last else { return nil }
        return Int32(name[r.upperBound...]).flatMap { $0 > 0 ? $0 : nil }
    }

    /// True when no process with this PID exists (kill(2), signal 0: ESRCH). EPERM means
    /// one exists (another user's): alive.
    public static func isDead(_ pid: Int32) -> Bool {
        if pid == getpid() { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    /// Removes the stale temps in `dirs` (see above) and returns their paths. Failures to
    /// remove are logged and skipped: a sweep never stops a tool.
    @discardableResult
    public static func sweep(_ dirs: [String], log: Logger) -> [String] {
        var removed: [String] = []
        for dir in dirs {
            guard let names = (try? FileIO.entries(dir)) ?? nil else { continue }
            for name in names {
                guard let pid = writerPID(name), isDead(pid) else { continue }
                let path = dir + "/" + name
                guard let st = FileIO.lstatOrNil(path), (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFLNK else { continue }
                if !OpenFiles.holders(of: FileID(st), writing: false).isEmpty { continue }
                do {
                    try FileIO.removeDurably(path)
                    removed.append(path)
                    log.notice("removed a temp file left by a dead writer", metadata: ["file": "\(path)", "pid": "\(pid)", "bytes": "\(st.st_size)"])
                } catch let e as PPError {
                    log.warning("cannot remove a stale temp file: \(e.message)")
                } catch {
                    log.warning("cannot remove a stale temp file \(path): \(error)")
                }
            }
        }
        return removed
    }
}
