// Notify: the sd_notify datagrams as a service manager receives them. Each test binds its own
// AF_UNIX datagram socket, points $NOTIFY_SOCKET at it and reads what arrived.

import Foundation
import XCTest
@testable import Shared
#if canImport(Glibc)
import Glibc
#endif

final class NotifyTests: XCTestCase {
    /// A bound datagram socket standing in for systemd's notify socket.
    final class Listener {
        let fd: Int32
        let name: String   // what goes into $NOTIFY_SOCKET
        let path: String?  // the file to remove (nil for an abstract socket)

        init(abstract: Bool) throws {
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
        func drain() -> [String] {
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

    override func tearDown() {
        unsetenv("NOTIFY_SOCKET"); unsetenv("WATCHDOG_USEC"); unsetenv("WATCHDOG_PID")
    }

    func testMessagesArriveAsSystemdReadsThem() throws {
        for abstract in [false, true] {
            let l = try Listener(abstract: abstract)
            setenv("NOTIFY_SOCKET", l.name, 1)
            XCTAssertTrue(Notify.isEnabled)
            Notify.ready(status: "loaded ckpt-1\nsecond line")
            Notify.status("training: 1200 ex/s")
            Notify.stopping()
            XCTAssertEqual(l.drain(), [
                "READY=1\nSTATUS=loaded ckpt-1 second line",
                "STATUS=training: 1200 ex/s",
                "STOPPING=1",
            ], abstract ? "abstract socket" : "path socket")
        }
    }

    func testNoSocketIsANoOp() {
        unsetenv("NOTIFY_SOCKET")
        XCTAssertFalse(Notify.isEnabled)
        XCTAssertFalse(Notify.send(["READY=1"]))
        setenv("NOTIFY_SOCKET", "", 1)
        XCTAssertFalse(Notify.send(["READY=1"]))
        // A socket nobody listens on: sending fails quietly.
        setenv("NOTIFY_SOCKET", "/nonexistent/pp-notify.sock", 1)
        XCTAssertFalse(Notify.send(["READY=1"]))
    }

    func testWatchdogFollowsWatchdogUsecAndPid() throws {
        let l = try Listener(abstract: false)
        setenv("NOTIFY_SOCKET", l.name, 1)

        unsetenv("WATCHDOG_USEC")
        XCTAssertNil(Notify.watchdogInterval())
        Notify.watchdog()
        XCTAssertFalse(Notify.Watchdog().tick())
        XCTAssertEqual(l.drain(), [], "no watchdog configured: nothing sent")

        setenv("WATCHDOG_USEC", "4000000", 1)
        setenv("WATCHDOG_PID", String(getpid() + 1), 1)
        XCTAssertNil(Notify.watchdogInterval(), "a watchdog meant for another process is not ours")
        unsetenv("WATCHDOG_PID")
        XCTAssertEqual(Notify.watchdogInterval(), 4.0)
        setenv("WATCHDOG_PID", String(getpid()), 1)
        XCTAssertEqual(Notify.watchdogInterval(), 4.0)

        let w = Notify.Watchdog()
        XCTAssertEqual(w.period, 2.0)
        XCTAssertTrue(w.tick(), "the first tick always sends")
        XCTAssertFalse(w.tick(), "a second tick within the period does not")
        XCTAssertEqual(l.drain(), ["WATCHDOG=1"])

        setenv("WATCHDOG_USEC", "20000", 1)   // 20 ms: period 10 ms
        let fast = Notify.Watchdog()
        XCTAssertTrue(fast.tick())
        usleep(15_000)
        XCTAssertTrue(fast.tick(), "sends again once the period has passed")
        XCTAssertEqual(l.drain(), ["WATCHDOG=1", "WATCHDOG=1"])
    }
}
