// How pp-ingest takes a file from inbox/ (issue 15): open first, then look at what was opened.
// open(2) with O_NOFOLLOW (a symbolic link is refused, never followed to a private file),
// O_NONBLOCK (a FIFO cannot make the open wait for a writer) and O_CLOEXEC; then fstat(2) on
// the descriptor decides: only a regular file is read, and the settle time and the open-for-
// writing check are made on that very file, so nothing can be swapped in between the check
// and the read. Names that are not UTF-8 are listed here too (`rawNames`).
// Not here: reading the content (InputParser through ChunkReader(fd:)).

import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

enum Inbox {
    enum Opened {
        /// A regular file, open read-only (blocking again), with its fstat.
        case file(fd: Int32, st: stat)
        /// The name is gone (taken by another run, or renamed away).
        case gone
        /// Not taken: refused with this reason (left in place).
        case refused(String)
    }

    /// Opens the inbox entry `path` for reading if it is a regular file.
    static func open(_ path: String) -> Opened {
        var fd: Int32
        repeat { fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) } while fd < 0 && errno == EINTR
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT: return .gone
            case ELOOP: return .refused("symbolic link refused (pp-ingest reads only regular files from inbox/; move the file itself in); left in place")
            case ENXIO: return .refused("not a regular file (a socket or FIFO); left in place")
            default: return .refused("cannot open: \(String(cString: strerror(e))); left in place")
            }
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            return .refused("cannot stat: \(String(cString: strerror(e))); left in place")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return .refused("not a regular file; left in place")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return .file(fd: fd, st: st)
    }

    /// The modification time of `st` in seconds.
    static func mtime(_ st: stat) -> Double { Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9 }

    /// The raw bytes of every name in `dir` but "." and ".." and dot-names (readdir(3)), in
    /// byte order; FileIO.list decodes names as UTF-8 and would mangle the others.
    static func rawNames(_ dir: String) throws -> [[UInt8]] {
        guard let d = opendir(dir) else {
            if errno == ENOENT { return [] }
            throw PPError.io(dir, "opendir", errno: errno)
        }
        defer { closedir(d) }
        // d_name read in place up to its NUL (see FileIO.entries).
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        var names: [[UInt8]] = []
        while let e = readdir(d) {
            let p = UnsafeRawPointer(e).advanced(by: nameOffset).assumingMemoryBound(to: UInt8.self)
            let n = strlen(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self))
            let name = Array(UnsafeBufferPointer(start: p, count: n))
            if name.first == UInt8(ascii: ".") { continue }   // ".", "..", dot-names (CONTRACT rule 1)
            names.append(name)
        }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// A file name made of valid UTF-8 for quarantine/: each byte of an invalid sequence (and
    /// "%") becomes %HH, so the name is readable, unique for a given input and reversible.
    static func safeName(_ raw: [UInt8]) -> String {
        LogText.mapUTF8(raw, keep: { $0 != UInt8(ascii: "%") && !($0 < 0x20 || $0 == 0x7F) },
                        text: { $0 }, byte: { "%" + LogText.hex2($0) })
    }

    /// rename(2) of a raw name in `dir` to `to` (a path), then fsync(2) of both folders.
    static func moveRaw(_ raw: [UInt8], in dir: String, to: String) throws {
        let from = Array(dir.utf8) + [UInt8(ascii: "/")] + raw + [0]
        let r = from.withUnsafeBufferPointer { p in
            rename(UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self), to)
        }
        if r != 0 { throw PPError.io(dir + "/" + LogText.escape(bytes: raw), "rename to \(to)", errno: errno) }
        try FileIO.syncDirectory(FileIO.split(to).dir)
        try FileIO.syncDirectory(dir)
    }

    /// lstat(2) of a raw name in `dir`.
    static func lstatRaw(_ raw: [UInt8], in dir: String) -> stat? {
        let path = Array(dir.utf8) + [UInt8(ascii: "/")] + raw + [0]
        var st = stat()
        let r = path.withUnsafeBufferPointer { p in lstat(UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self), &st) }
        return r == 0 ? st : nil
    }
}
