import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import pp_select

/// Issue 15, items 4, 5 and 10, on the built pp-select and real (tiny) checkpoints: a torn
/// last line of selections.jsonl, an append on a full disk, a kill between the link swap and
/// its record, a deployed checkpoint that rots after it was deployed.
final class SelectJournalTests: XCTestCase {
    /// Root with the chain ck1 <- ck2 <- ck3 (PoisonTests.chain) deployed by hand up to `upTo`.
    func root(_ tag: String, deployed upTo: Int) throws -> Root {
        let (root, hash) = try Fixture.root(tag)
        var parent: String? = nil
        for i in 1...3 {
            try PoisonTests.trainShard(root, PoisonTests.shard(i), ingested: "2026-11-26T0\(i):30:00Z")
            try PoisonTests.checkpoint(root, PoisonTests.ck(i), parent: parent, shards: [PoisonTests.shard(i)])
            parent = "main/" + PoisonTests.ck(i)
            let truths: [UInt32] = (0..<400).map { $0 % 4 == 3 ? 1 : 0 }
            try Fixture.result(root, evalset: hash, labels: ["a", "b"],
                               outcomes: Fixture.outcomes(truths, wrong: Set(0..<(160 - 40 * i))), file: PoisonTests.ck(i), step: i)
        }
        for i in 0..<upTo {
            let r = try select(root, ["--deploy", path(root, i + 1)])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        return root
    }

    func path(_ root: Root, _ i: Int) -> String { root.path + "/runs/main/checkpoints/" + PoisonTests.ck(i) }
    func rel(_ i: Int) -> String { "runs/main/checkpoints/" + PoisonTests.ck(i) }
    func link(_ root: Root) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: root.deployed) }

    @discardableResult
    func select(_ root: Root, _ args: [String], env: [String: String] = [:]) throws -> TestSupport.Result {
        try TestSupport.run("pp-select", ["--root", root.path] + args, env: env)
    }

    /// The journal's idea of what is deployed: the last line that moved the link.
    func recorded(_ root: Root) throws -> String? { try History.read(root.selections).last(where: \.moved)?.deployedPath }

    /// Item 4: a torn last line (a crash or full disk mid-append) is cut off with a warning; the
    /// next decision is a line of its own.
    func testTornLastLineIsCutOffAndTheNextDecisionIsWhole() throws {
        let root = try root("torn", deployed: 1)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let fd = open(root.selections, O_WRONLY | O_APPEND)
        let torn = Array("{\"schema\":1,\"at\":\"2026-12-".utf8)
        XCTAssertEqual(torn.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }, torn.count)
        close(fd)
        var r = try select(root, ["--deploy", path(root, 2)])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("cut off a torn last line (\(torn.count) bytes"), r.stderr)
        XCTAssertEqual(try History.read(root.selections).map(\.decision), ["deploy", "deploy"])
        XCTAssertEqual(try FileIO.readAll(root.selections).last, 0x0A)
        r = try select(root, ["rollback"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("not a decision record"), r.stderr)
        XCTAssertEqual(link(root), rel(1))
    }

    /// Item 4: an append that hits the file size limit (a full disk) leaves no partial line.
    func testAppendOnAFullDiskIsWholeOrAbsent() throws {
        // ThreadSanitizer's runtime maps files of its own: under a file size limit it dies of
        // SIGBUS before pp-select runs (make test-sanitize sets TSAN_OPTIONS).
        if ProcessInfo.processInfo.environment["TSAN_OPTIONS"] != nil {
            throw XCTSkip("RLIMIT_FSIZE kills ThreadSanitizer's own runtime (SIGBUS), not the code under test")
        }
        let root = try root("full", deployed: 1)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let before = try FileIO.readAll(root.selections)
        // RLIMIT_FSIZE just above the journal's size: the next line gets 10 bytes, then EFBIG
        // (SIGXFSZ ignored, as a full disk gives ENOSPC).
        let r = try TestSupport.run("/bin/sh", ["-c", "trap '' XFSZ; exec prlimit --fsize=\(before.count + 10) \"$0\" \"$@\"",
                                                TestSupport.binary("pp-select"), "--root", root.path, "--deploy", path(root, 2)])
        XCTAssertEqual(r.status, 74, r.stderr)
        XCTAssertEqual(try FileIO.readAll(root.selections), before, "a partial line was left in selections.jsonl")
        // The link moved before the record failed: the next run records it (reconcile).
        XCTAssertEqual(link(root), rel(2))
        let r2 = try select(root, ["rollback", "--dry-run"])
        XCTAssertFalse(r2.stderr.contains("not a decision record"), r2.stderr)
    }

    /// Item 10: killed between the link swap and its record. The journal never names a
    /// deployment that did not happen, and the next run brings it in line with the link.
    func testKilledBetweenLinkAndRecordIsReconciled() throws {
        let root = try root("kill", deployed: 1)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let r = try select(root, ["--deploy", path(root, 2)], env: ["PP_SELECT_CRASH_AT": "between-link-and-record"])
        XCTAssertNotEqual(r.status, 0, r.stderr)
        let names = try History.read(root.selections).compactMap(\.deployedPath)
        XCTAssertTrue(!names.contains(rel(2)) || link(root) == rel(2),
                      "selections.jsonl records a deployment of ck2 that did not happen (link: \(link(root) ?? "none"))")
        // The next run (any command) reconciles first.
        var r2 = try select(root, ["--deploy", path(root, 3)])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertEqual(try recorded(root), link(root))
        let recs = try History.read(root.selections)
        XCTAssertEqual(recs.map(\.decision), ["deploy", "reconcile", "deploy"], "\(recs)")
        XCTAssertEqual(recs[1].deployedPath, rel(2))
        XCTAssertEqual(recs[1].previousPath, rel(1))
        XCTAssertEqual(recs[2].previousPath, rel(2))
        // The reconciled deployment is on the rollback stack.
        r2 = try select(root, ["rollback"])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertEqual(link(root), rel(2))
        // Agreeing link and journal: no reconcile line.
        r2 = try select(root, ["rollback", "--dry-run"])
        XCTAssertFalse(r2.stdout.contains("reconcile"), r2.stdout)
    }

    /// Item 5: a deployed checkpoint corrupted after deployment is found at the next run and
    /// rolled back to the previous good deployment, with a decision that says why.
    func testDeployedCheckpointCorruptedAfterDeploymentIsRolledBack() throws {
        let root = try root("rot", deployed: 2)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        var bytes = try FileIO.readAll(path(root, 2))
        bytes[bytes.count / 2] ^= 0x40
        let fd = open(path(root, 2), O_WRONLY)            // in place, as a disk error would
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }, bytes.count)
        close(fd)
        XCTAssertThrowsError(try Checkpoint.verifyFile(path: path(root, 2)))
        XCTAssertNoThrow(try Checkpoint.verifyFile(path: path(root, 1)))
        let r = try select(root, ["--metric", "accuracy", "--bootstrap", "100"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        guard let first = r.stdoutLines.first,
              let d = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any] else { return XCTFail(r.stdout) }
        XCTAssertEqual(d["decision"] as? String, "rollback", first)
        XCTAssertEqual(d["deployed"] as? String, "main/" + PoisonTests.ck(1), first)
        XCTAssertEqual(d["previous"] as? String, "main/" + PoisonTests.ck(2), first)
        XCTAssertTrue((d["reason"] as? String ?? "").contains("fails verification"), first)
        XCTAssertNotEqual(link(root), rel(2))
        XCTAssertTrue(r.stderr.contains("fails verification"), r.stderr)
    }

    func testVerifyFileRefusesTruncatedAndForeignFiles() throws {
        let root = try root("verify", deployed: 0)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        let good = try FileIO.readAll(path(root, 1))
        try FileIO.publish(Array(good.prefix(good.count - 5)), to: root.path + "/cut.ppc")
        try FileIO.publish("not a checkpoint", to: root.path + "/text.ppc")
        for f in ["cut.ppc", "text.ppc"] {
            XCTAssertThrowsError(try Checkpoint.verifyFile(path: root.path + "/" + f)) { e in
                XCTAssertEqual((e as? PPError)?.status, .corrupt, "\(f): \(e)")
            }
        }
        XCTAssertNoThrow(try Checkpoint.verifyFile(path: path(root, 1)))
    }
}
