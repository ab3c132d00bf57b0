// Durable file primitives for the state folder (CONTRACT rule 1): a file appears complete or
// not at all. Each wrapper names the system call it makes; EINTR is retried in `retrying`.
// This file does not know about formats; callers hand it bytes.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum FileIO {
    /// Retries a call that returned -1 with EINTR; returns the result or throws `PPError.io`.
    @discardableResult
    public static func retrying(_ path: String, _ what: String, _ body: () -> Int) throws -> Int {
        while true {
            let r = body()
            if r >= 0 { return r }
            if errno == EINTR { continue }
            throw PPError.io(path, what, errno: errno)
        }
    }

    /// Writes every byte of `bytes` to `fd`. The corresponding C function is `write`.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var off = 0
        while off < bytes.count {
            let n = try retrying(path, "write") { write(fd, bytes.baseAddress! + off, bytes.count - off) }
            off += n
        }
    }

    /// fsync(2) on an open descriptor.
    public static func sync(_ fd: Int32, path: String) throws {
        try retrying(path, "fsync") { Int(fsync(fd)) }
    }

    /// Opens a directory and fsyncs it, making renames and creations inside it durable.
    public static func syncDirectory(_ dir: String) throws {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw PPError.io(dir, "open directory", errno: errno) }
        defer { close(fd) }
        try sync(fd, path: dir)
    }

    /// Makes `path` appear complete or not at all: writes `.NAME.tmp.PID` in the same folder,
    /// fsyncs it, renames it over `path` (rename(2)), then fsyncs the folder.
    /// `durable: false` skips the folder's fsync: the file is still never seen half-written,
    /// but after a power loss the folder may show the version before this one. Only for a
    /// view that its writer replaces again soon and that nothing is derived from (status.json,
    /// a metrics textfile): the folder's fsync was half of their cost.
    public static func publish(_ bytes: UnsafeRawBufferPointer, to path: String, mode: mode_t = 0o644, durable: Bool = true) throws {
        try publish(to: path, mode: mode, durable: durable) { fd, tmp in try writeAll(fd, bytes, path: tmp) }
    }

    /// `publish` of what `write` writes to the temp file's descriptor (its path given for
    /// errors): for content that is copied rather than held in memory (pp-ingest's shard
    /// parts). The one copy of the tmp + fsync + rename + fsync-folder sequence; a throw
    /// from `write` removes the temp file and leaves `path` as it was.
    public static func publish(to path: String, mode: mode_t = 0o644, durable: Bool = true, write: (Int32, String) throws -> Void) throws {
        let (dir, name) = split(path)
        let tmp = dir + "/." + name + ".tmp." + String(getpid())
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        if fd < 0 { throw PPError.io(tmp, "create", errno: errno) }
        do {
            try write(fd, tmp)
            try sync(fd, path: tmp)
            close(fd)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw PPError.io(path, "rename", errno: e)
        }
        if durable { try syncDirectory(dir) }
    }

    public static func publish(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644, durable: Bool = true) throws {
        try bytes.withUnsafeBytes { try publish($0, to: path, mode: mode, durable: durable) }
    }

    public static func publish(_ text: String, to path: String, mode: mode_t = 0o644, durable: Bool = true) throws {
        try publish(Array(text.utf8), to: path, mode: mode, durable: durable)
    }

    /// Moves `from` to `to` (rename(2)) and fsyncs both folders.
    public static func moveDurably(_ from: String, _ to: String) throws {
        if rename(from, to) != 0 { throw PPError.io(from, "rename to \(to)", errno: errno) }
        let a = split(from).dir, b = split(to).dir
        try syncDirectory(b)
        if a != b { try syncDirectory(a) }
    }

    /// Removes `path` (unlink(2)) and fsyncs its folder. A missing file is not an error.
    public static func removeDurably(_ path: String) throws {
        if unlink(path) != 0 {
            if errno == ENOENT { return }
            throw PPError.io(path, "unlink", errno: errno)
        }
        try syncDirectory(split(path).dir)
    }

    /// Replaces the symlink `path` so that it points to `target`, atomically: a reader sees
    /// the old link or the new one, never none (symlink(2) to a temp name, then rename(2)).
    public static func replaceSymlink(_ path: String, target: String) throws {
        let (dir, name) = split(path)
        let tmp = dir + "/." + name + ".tmp." + String(getpid())
        unlink(tmp)
        if symlink(target, tmp) != 0 { throw PPError.io(tmp, "symlink", errno: errno) }
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw PPError.io(path, "rename", errno: e)
        }
        try syncDirectory(dir)
    }

    /// Reads a whole file into memory (read(2) in a loop). Meant for shards and checkpoints,
    /// whose size is bounded; inputs of any size go through `LineReader` instead.
    /// `regularOnly` refuses anything but a regular file (see `openRegular`), so a FIFO or a
    /// device where a checkpoint is expected cannot hang or flood the reader.
    public static func readAll(_ path: String, regularOnly: Bool = false) throws -> [UInt8] {
        let fd = regularOnly ? try openRegular(path) : open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw PPError.io(path, "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw PPError.io(path, "stat", errno: errno) }
        // Straight into an array of the file's size (plus one byte, to see the end in the same
        // reads): a zeroed 1 MiB bounce buffer per call was 11% of a scoring run that reads
        // 5,000 tiny holdout shards. A file that grows meanwhile is read on in chunks.
        let expect = max(Int(st.st_size), 0) + 1
        var failure: Error?
        var out = [UInt8](unsafeUninitializedCapacity: expect) { buf, count in
            count = 0
            do {
                while count < expect {
                    let n = try retrying(path, "read") { read(fd, buf.baseAddress! + count, expect - count) }
                    if n == 0 { return }
                    count += n
                }
            } catch { failure = error }
        }
        if let e = failure { throw e }
        if out.count < expect { return out }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { buf in
                try retrying(path, "read") { read(fd, buf.baseAddress!, buf.count) }
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Opens `path` read-only if it is a regular file, else throws PPError(.corrupt) "not a
    /// regular file". open(2) with O_NONBLOCK, so opening a FIFO does not wait for a writer;
    /// fstat(2) checks the type; fcntl(2) clears O_NONBLOCK again. `followSymlinks: false`
    /// adds O_NOFOLLOW: a symbolic link is refused too.
    public static func openRegular(_ path: String, followSymlinks: Bool = true) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (followSymlinks ? 0 : O_NOFOLLOW))
        if fd < 0 {
            if errno == ELOOP && !followSymlinks { throw PPError.corrupt(path, "a symbolic link, not a regular file") }
            throw PPError.io(path, "open", errno: errno)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw PPError.corrupt(path, "not a regular file")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    /// True when `path` itself (not a link's target) is a regular file (lstat(2)).
    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Creates `path` and any missing parents (mkdir(2)), like `mkdir -p`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if path.isEmpty { return }
        var st = stat()
        if stat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { return }
            throw PPError("\(path): exists and is not a directory", status: .ioError)
        }
        let parent = split(path).dir
        if parent != path && parent != "." && parent != "/" { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw PPError.io(path, "mkdir", errno: errno) }
    }

    /// Names in `dir` (readdir(3)), sorted, without dot-files (CONTRACT rule 1: readers ignore
    /// them). A missing folder reads as empty.
    public static func list(_ dir: String) throws -> [String] {
        guard let names = try entries(dir) else { return [] }
        return names.filter { !$0.hasPrefix(".") }.sorted()
    }

    /// Every name in `dir` but "." and "..", dot-files included, in directory order (readdir(3));
    /// nil when the folder does not exist.
    public static func entries(_ dir: String) throws -> [String]? {
        guard let d = opendir(dir) else {
            if errno == ENOENT { return nil }
            throw PPError.io(dir, "opendir", errno: errno)
        }
        defer { closedir(d) }
        // d_name is read in place, up to its NUL: glibc packs entries by d_reclen, so copying
        // `e.pointee` (the whole 280-byte struct) read past the end of getdents' buffer for a
        // short name at its end, and crashed when that was a page boundary (seen: pp-ingest
        // listing stats/ of a long stream, SIGSEGV in a `make drift` replay).
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        var names: [String] = []
        while let e = readdir(d) {
            let name = String(cString: UnsafeRawPointer(e).advanced(by: nameOffset).assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The canonical absolute path (symlinks resolved), nil if it does not exist.
    public static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// lstat(2), or nil when the path does not exist.
    public static func lstatOrNil(_ path: String) -> stat? {
        var st = stat()
        return lstat(path, &st) == 0 ? st : nil
    }

    /// Splits "a/b/c" into ("a/b", "c"); a bare name has dir ".".
    /// (On the UTF-8 view: "/" is one byte that no other character's encoding holds, and
    /// the Character view's search was ~5% of a daily pp-select run, which splits every
    /// holdout shard's path several times.)
    public static func split(_ path: String) -> (dir: String, name: String) {
        let u = path.utf8
        guard let slash = u.lastIndex(of: 0x2F) else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[u.index(after: slash)...]))
    }
}

/// An exclusive advisory lock on a file (flock(2)), held until `release()` or process exit,
/// so a crashed holder never leaves a stale lock behind (CONTRACT rule 6).
public final class FileLock {
    private var fd: Int32
    public let path: String

    /// Takes the lock at `path`, creating the file if needed. With `wait` false, throws
    /// `PPError` with status `.locked` when another process holds it.
    public init(path: String, wait: Bool) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw PPError.io(path, "open lock", errno: errno) }
        while flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0 {
            if errno == EINTR { continue }
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { throw PPError("\(path): held by another process", status: .locked) }
            throw PPError.io(path, "flock", errno: e)
        }
    }

    /// True when another process holds the lock right now (used to print "waiting" once).
    public static func isHeld(_ path: String) -> Bool {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        if fd < 0 { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { flock(fd, LOCK_UN); return false }
        return true
    }

    public func release() {
        if fd >= 0 { flock(fd, LOCK_UN); close(fd); fd = -1 }
    }

    deinit { release() }
}
