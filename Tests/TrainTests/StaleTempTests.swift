// Issue 15, item 6: temps of killed writers are removed at start, a live writer's never.

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

final class StaleTempTests: XCTestCase {
    /// A PID that cannot exist (above the kernel's pid_max of 2^22).
    static let deadPID = 99_999_999

    func testPPTrainRemovesDeadWritersTempsAtStartAndKeepsLiveOnes() throws {
        let root = try Fix.newRoot("temps")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let ck = root + "/runs/main/checkpoints"
        try FileIO.makeDirectories(ck)
        try FileIO.makeDirectories(root + "/metrics")
        let dead = ck + "/.ckpt-20261206T000000Z-000000000001.ppc.tmp.\(Self.deadPID)"
        let deadStatus = root + "/runs/main/.status.json.tmp.\(Self.deadPID)"
        let deadProm = root + "/metrics/.pp-train-main.prom.tmp.\(Self.deadPID)"
        let live = ck + "/.ckpt-20261206T000000Z-000000000002.ppc.tmp.\(getpid())"
        let other = ck + "/.notes"
        for p in [dead, deadStatus, deadProm, live, other] { try FileIO.publish("partial", to: p) }
        let r = try TestSupport.run("pp-train", ["--root", root, "--once"] + Fix.tiny)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertFalse(FileIO.exists(dead), "a dead writer's checkpoint temp stays")
        XCTAssertFalse(FileIO.exists(deadStatus))
        XCTAssertFalse(FileIO.exists(deadProm))
        XCTAssertTrue(FileIO.exists(live), "a live writer's temp was removed")
        XCTAssertTrue(FileIO.exists(other), "a dot-file that is not our temp was removed")
        XCTAssertTrue(r.stderr.contains("removed a temp file left by a dead writer"), r.stderr)
    }
}
