// A file's or folder's identity and times, to tell cheaply whether it changed since it was
// last read: pp-train lists shards/ and parses control.json again only when theirs moved.

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
