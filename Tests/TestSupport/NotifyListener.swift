// A bound AF_UNIX datagram socket standing in for systemd's notify socket: point
// $NOTIFY_SOCKET at `name` and read what arrived with `drain()`. Used by the Notify unit tests
// and by the pp-train daemon tests.

import Foundation
import Shared
#if canImport(Glibc)
import Glibc
#endif

public final class NotifyListener {
    let fd: Int32
    /// What goes into $NOTIFY_SOCKET ("@..." for an abstract socket).
    public let name: String
    /// The socket file (nil for an abstract socket).
    public let path: String?

    public init(abstract: Bool = false) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw PPError("socket failed", status: .software) }
        let tag = "pp-notify-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes: [UInt8]
        if abstract {
            name = "@" + tag; path = nil
            bytes = [0] + Array(tag.utf8)
        } else {
            let p = NSTemporaryDirectory() + tag + ".sock"
            name = p; path = p
            bytes = Array(p.utf8) + [0]
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let len = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard r == 0 else { throw PPError("bind \(name): errno \(errno)", status: .software) }
    }

    /// Every datagram queued so far, in order.
    public func drain() -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 { break }
            out.append(String(decoding: buf[0..<n], as: UTF8.self))
        }
        return out
    }

    deinit {
        close(fd)
        if let p = path { unlink(p) }
    }
}
