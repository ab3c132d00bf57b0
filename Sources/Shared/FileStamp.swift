// A file's or folder's identity and times, to tell cheaply whether it changed since it was
// last read (FileWatch): pp-train lists shards/ and parses control.json again only when
// theirs moved.

#if canImport(Glibc)
import Glibc
#endif

/// Device, inode, size and modification and change times (stat(2)). Equal stamps mean the
/// file was not replaced, written or (a folder) had no entry added, removed or renamed in
/// between, provided the first stamp was *settled*: the kernel stamps a change with a coarse
/// clock (CLOCK_REALTIME_COARSE, one tick of 1-10 ms), so a change in the same tick as a stat
/// could leave the times as the stat saw them, and a read that missed it would be trusted
/// forever (git's "racily clean" index entries). A stamp whose times are older than a coarse
/// clock reading taken before the stat is settled: every later change gets a time at least
/// that reading. A clock stepped back, or a network file system whose server keeps its own
/// clock, could still fool it, so readers look again at least every `recheckAfter` seconds
/// whatever the stamp says.
public struct FileStamp: Equatable, Sendable {
    public let dev: UInt64, ino: UInt64, size: Int64
    public let mtime: Int64, ctime: Int64   // ns since the epoch
    public static let recheckAfter: Double = 600

    public init(_ st: stat) {
        dev = UInt64(st.st_dev); ino = UInt64(st.st_ino); size = Int64(st.st_size)
        mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        ctime = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }

    /// stat(2) of `path` (following a final symlink), nil when it fails.
    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        self.init(st)
    }

    /// The coarse real-time clock the kernel stamps changes with, in ns; read it before the stat.
    public static func coarseNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Both times strictly before `t` (a `coarseNow()` read before this stamp's stat).
    public func settled(before t: Int64) -> Bool { mtime < t && ctime < t }
}

/// What a reader remembers of the file (or folder) it last read, to skip reading it again
/// while it is unchanged: `look` stats it, and after reading what it saw the reader calls
/// `read(_:)` with that look, which keeps the stamp only if it is settled. A stamp older than
/// `FileStamp.recheckAfter` seconds (monotonic) counts as changed.
public struct FileWatch {
    public struct Look {
        let stamp: FileStamp?
        let coarseNow: Int64
        /// The file is as it was at the last remembered read.
        public let unchanged: Bool
    }
    private var seen: (stamp: FileStamp, at: Double)?

    public init() {}

    /// Stats `path` now (`follow`: stat(2), else lstat(2)).
    public func look(_ path: String, follow: Bool = true) -> Look {
        let coarseNow = FileStamp.coarseNow()   // before the stat (FileStamp.settled)
        let stamp = follow ? FileStamp(path: path) : FileIO.lstatOrNil(path).map(FileStamp.init)
        let unchanged = stamp != nil && seen.map { $0.stamp == stamp && Clock.monotonic() - $0.at < FileStamp.recheckAfter } == true
        return Look(stamp: stamp, coarseNow: coarseNow, unchanged: unchanged)
    }

    /// What `look` saw was read (listed, parsed) after it: remembered when settled, else
    /// forgotten, so the next look counts as changed.
    public mutating func read(_ l: Look) {
        seen = l.stamp.flatMap { $0.settled(before: l.coarseNow) ? ($0, Clock.monotonic()) : nil }
    }

    /// The next look counts as changed.
    public mutating func forget() { seen = nil }
}
