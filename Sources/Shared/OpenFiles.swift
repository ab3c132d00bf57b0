// Which processes hold a file open, read from /proc the way fuser(1) does (issue 15): pp-ingest
// leaves an inbox file alone while a process still has it open for writing, and the sweep of
// stale temps (Temps.swift) never removes a file that a live process holds.
// Not a lock and not a guarantee: only processes whose /proc/PID/fd this user may read are
// seen (its own, or every one for root), so a producer running as another user, or in another
// PID namespace, is invisible. The safe way to deliver is still write-then-rename
// (docs/operations.md, "Delivering files"). Linux only; elsewhere nothing is ever found.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file by device and inode: what a descriptor in /proc/PID/fd refers to.
public struct FileID: Hashable, Sendable {
    public let dev: UInt64
    public let ino: UInt64

    public init(dev: UInt64, ino: UInt64) { self.dev = dev; self.ino = ino }

    public init(_ st: stat) { dev = UInt64(st.st_dev); ino = UInt64(st.st_ino) }

    /// The file at `path` itself (lstat(2)), nil when it does not exist.
    public static func of(_ path: String) -> FileID? { FileIO.lstatOrNil(path).map(FileID.init) }

    /// The file open on `fd` (fstat(2)).
    public static func of(fd: Int32) -> FileID? {
        var st = stat()
        return fstat(fd, &st) == 0 ? FileID(st) : nil
    }
}

public enum OpenFiles {
    /// A process holding the file, and its command name (/proc/PID/comm).
    public struct Holder: Equatable, Sendable {
        public let pid: Int32
        public let command: String
        public var description: String { "\(command) (pid \(pid))" }
    }

    /// The processes that hold `file` open (every one, this one included); with `writing`,
    /// only those whose descriptor allows writing (O_WRONLY or O_RDWR in the `flags:` line of
    /// /proc/PID/fdinfo/FD). Each /proc/PID/fd/N is stat(2)ed (it follows the magic link to
    /// the open file); processes that vanish or hide their fds are skipped.
    public static func holders(of file: FileID, writing: Bool) -> [Holder] {
        guard let pids = try? FileIO.entries("/proc") else { return [] }
        var out: [Holder] = []
        for p in pids {
            guard let pid = Int32(p), pid > 0 else { continue }
            guard let fds = (try? FileIO.entries("/proc/\(p)/fd")) ?? nil else { continue }
            for fd in fds {
                var st = stat()
                guard stat("/proc/\(p)/fd/\(fd)", &st) == 0, FileID(st) == file else { continue }
                if writing && !openForWriting(pid: p, fd: fd) { continue }
                out.append(Holder(pid: pid, command: command(p)))
                break
            }
        }
        return out
    }

    /// True when /proc/PID/fdinfo/FD's `flags:` (octal open(2) flags) has write access.
    static func openForWriting(pid: String, fd: String) -> Bool {
        guard let bytes = try? FileIO.readAll("/proc/\(pid)/fdinfo/\(fd)") else { return false }
        return writeAccess(fdinfo: String(decoding: bytes, as: UTF8.self)) ?? false
    }

    /// Parses the `flags:\t0100002` line of an fdinfo file: true for O_WRONLY or O_RDWR, nil
    /// when there is no such line.
    static func writeAccess(fdinfo: String) -> Bool? {
        for line in fdinfo.split(separator: "\n") where line.hasPrefix("flags:") {
            let v = line.dropFirst("flags:".count).strippedOf(" \t")
            guard let flags = Int(v, radix: 8) else { return nil }
            let mode = Int32(flags) & O_ACCMODE
            return mode == O_WRONLY || mode == O_RDWR
        }
        return nil
    }

    static func command(_ pid: String) -> String {
        guard let b = try? FileIO.readAll("/proc/\(pid)/comm") else { return "?" }
        return LogText.escape(String(decoding: b, as: UTF8.self).strippedOf("\n"))
    }
}

fileprivate extension Substring {
    /// The substring without leading and trailing characters in `set` (no Foundation).
    func strippedOf(_ set: String) -> String {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

fileprivate extension String {
    func strippedOf(_ set: String) -> String { self[...].strippedOf(set) }
}
