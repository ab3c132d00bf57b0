// Notify: the sd_notify datagrams as a service manager receives them. Each test binds its own
// AF_UNIX datagram socket (TestSupport.NotifyListener), points $NOTIFY_SOCKET at it and reads
// what arrived.

import Foundation
import XCTest
@testable import Shared
@testable import TextModel
@testable import Training
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class NotifyTests: XCTestCase {
    override func tearDown() {
        unsetenv("NOTIFY_SOCKET"); unsetenv("WATCHDOG_USEC"); unsetenv("WATCHDOG_PID")
    }

    func testMessagesArriveAsSystemdReadsThem() throws {
        for abstract in [false, true] {
            let l = try NotifyListener(abstract: abstract)
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
        let l = try NotifyListener(abstract: false)
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
