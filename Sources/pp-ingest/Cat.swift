// `pp-ingest cat`: shards back to fastText lines (`__label__LABEL tok tok ...`), so that other
// learners (fastText, Vowpal Wabbit, PyTorch in bench/) see exactly the tokens Perpetuum
// trains on. Writes through a 1 MiB buffer straight to fd 1 (no print(), no Strings per
// example). Reads shards only; never writes to the state folder.

import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

struct ShardCat {
    let root: Root
    let labelsOnly: Bool

    /// The shard files named by `args`, in order; folders expand to their *.pps in name order.
    func expand(_ args: [String]) throws -> [String] {
        var out: [String] = []
        for a in args {
            var path = a
            if !FileIO.exists(path) && !a.hasPrefix("/") && FileIO.exists(root.path + "/" + a) { path = root.path + "/" + a }
            guard var st = FileIO.lstatOrNil(path) else { throw PPError("\(a): no such shard or folder", status: .noInput) }
            if (st.st_mode & S_IFMT) == S_IFLNK {
                guard stat(path, &st) == 0 else { throw PPError.io(path, "stat", errno: errno) }
            }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                for name in try FileIO.list(path) where name.hasSuffix("." + Shard.fileExtension) {
                    out.append(path + "/" + name)
                }
            } else {
                out.append(path)
            }
        }
        return out
    }

    func run(_ args: [String]) throws {
        let files = try expand(args)
        var buf = [UInt8]()
        let flushAt = 1 << 20
        buf.reserveCapacity(flushAt + 70_000)
        func flush() throws {
            try buf.withUnsafeBytes { try FileIO.writeAll(1, $0, path: "stdout") }
            buf.removeAll(keepingCapacity: true)
        }
        for f in files {
            let shard = try Shard(path: f)
            let prefixes = shard.header.labels.map { Array("__label__\($0)".utf8) }
            try shard.forEach { li, _, tokens in
                buf.append(contentsOf: prefixes[li])
                if !labelsOnly {
                    buf.append(0x20)
                    buf.append(contentsOf: tokens)
                }
                buf.append(0x0A)
                if buf.count >= flushAt { try flush() }
            }
        }
        try flush()
    }
}
