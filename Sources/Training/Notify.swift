// systemd's notification protocol (sd_notify(3)) without libsystemd: a long-running tool tells
// its service manager that it is READY, what it is doing (STATUS=), that it is still alive
// (WATCHDOG=1) and that it is STOPPING. Each message is one datagram of newline-separated
// KEY=VALUE assignments sent to the AF_UNIX socket named by $NOTIFY_SOCKET.
//
// Everything here is a no-op when $NOTIFY_SOCKET is unset (a tool run by hand, in a test, or
// under a `Type=simple` unit), so callers never need to check first. Errors while sending are
// swallowed: a lost notification must never stop training (systemd then reports a start
// timeout or a watchdog kill, which is the right signal for a broken socket).
//
// Not here: reading sd_listen_fds, the FDSTORE, or anything else from libsystemd.

import Shared
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum Notify {
    /// True when a service manager listens ($NOTIFY_SOCKET is set and not empty).
    public static var isEnabled: Bool { socketPath() != nil }

    /// The service is up: for pp-train, once its trained state (checkpoint or fresh model) is
    /// loaded and it is about to train. Until this arrives a `Type=notify` unit is "activating".
    public static func ready(status: String? = nil) {
        send(["READY=1"] + (status.map { ["STATUS=" + oneLine($0)] } ?? []))
    }

    /// Free-form one-line status shown by `systemctl status` ("training: 12345 ex/s, loss 0.41").
    public static func status(_ text: String) {
        send(["STATUS=" + oneLine(text)])
    }

    /// The service is shutting down (e.g. writing its final checkpoint after SIGTERM).
    public static func stopping(status: String? = nil) {
        send(["STOPPING=1"] + (status.map { ["STATUS=" + oneLine($0)] } ?? []))
    }

    /// Keep-alive for `WatchdogSec=`. Prefer a `Watchdog` value, which sends only as often as
    /// needed; this sends unconditionally (when a watchdog is configured for this process).
    public static func watchdog() {
        if watchdogInterval() != nil { send(["WATCHDOG=1"]) }
    }

    /// The watchdog interval systemd expects keep-alives within, in seconds: $WATCHDOG_USEC,
    /// when set and meant for this process ($WATCHDOG_PID absent or equal to our PID), else nil.
    public static func watchdogInterval() -> Double? {
        guard let usec = env("WATCHDOG_USEC").flatMap({ UInt64($0) }), usec > 0 else { return nil }
        if let pid = env("WATCHDOG_PID") { guard Int32(pid) == getpid() else { return nil } }
        return Double(usec) / 1e6
    }

    /// Sends the assignments as one datagram. Returns whether it was sent (false when
    /// $NOTIFY_SOCKET is unset or sending failed). The corresponding C function is `sendto`.
    @discardableResult
    public static func send(_ assignments: [String]) -> Bool {
        guard let path = socketPath() else { return false }
        return send(assignments.joined(separator: "\n"), to: path)
    }

    /// A rate-limited keep-alive for a loop that may spin fast or slow: call `tick()` from the
    /// loop as often as convenient (every batch, every idle wait); it sends WATCHDOG=1 when
    /// half the interval has passed since the last one. Does nothing without a watchdog.
    /// Not thread-safe: call it from one thread (the training loop).
    public final class Watchdog {
        /// Seconds between keep-alives (half of WatchdogSec=, as sd_watchdog_enabled(3)
        /// recommends), or nil when no watchdog is configured.
        public let period: Double?
        private var last: Double = -Double.infinity

        public init() {
            period = Notify.watchdogInterval().map { $0 / 2 }
        }

        /// Sends WATCHDOG=1 if a period has elapsed since the last one; returns whether it sent.
        @discardableResult
        public func tick() -> Bool {
            guard let p = period else { return false }
            let now = monotonicSeconds()
            if now - last < p { return false }
            last = now
            return Notify.send(["WATCHDOG=1"])
        }
    }

    // MARK: - Internals

    /// STATUS= ends at the first newline (the next line would be read as a new assignment).
    static func oneLine(_ s: String) -> String {
        String(s.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

    static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    /// $NOTIFY_SOCKET: an absolute path, or "@name" for the abstract namespace.
    static func socketPath() -> String? {
        guard let p = env("NOTIFY_SOCKET"), p.hasPrefix("/") || p.hasPrefix("@") else { return nil }
        return p
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// One datagram to an AF_UNIX socket path ("@..." = abstract): socket(2) + sendto(2).
    static func send(_ message: String, to path: String) -> Bool {
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_DGRAM, 0)
        #endif
        if fd < 0 { return false }
        defer { close(fd) }

        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }   // abstract namespace
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        // A path must leave room for its NUL terminator; an abstract name has none.
        if pathBytes.count > (pathBytes[0] == 0 ? capacity : capacity - 1) { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in pathBytes.enumerated() { raw[i] = b }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        let length = socklen_t(pathOffset + pathBytes.count + (pathBytes[0] == 0 ? 0 : 1))

        let bytes = Array(message.utf8)
        while true {
            let n = bytes.withUnsafeBytes { buf in
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        #if canImport(Glibc)
                        sendto(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), $0, length)
                        #else
                        sendto(fd, buf.baseAddress, buf.count, 0, $0, length)
                        #endif
                    }
                }
            }
            if n >= 0 { return n == bytes.count }
            if errno == EINTR { continue }
            return false
        }
    }
}
