// Crash safety and locking of pp-ingest (CONTRACT rules 1-3 and 6): a kill -9 at a chosen
// point (PP_INGEST_CRASH_AT, a test-only hook) or at a random moment, then a re-run, must
// end in the same state as a run that was never interrupted: no input lost, no shard
// duplicated or missing, no temp file left, every shard readable. Two runs on one root
// must not step on each other.

import Foundation
import XCTest
import TestSupport
@testable import Shared
@testable import TextModel

final class IngestCrashTests: IngestTestCase {
    /// Fills `inbox` of `r` with demo weeks, all with the same fixed mtimes (so two roots get
    /// the same shard names).
    func fill(_ r: String, weeks: [String]) throws {
        for (k, w) in weeks.enumerated() {
            let p = try drop(w + ".jsonl.zst", try demo(w), in: r + "/inbox")
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_700_000_000 + Double(k) * 60)],
                                                  ofItemAtPath: p)
        }
    }

    /// Everything that defines the outcome: published names, their examples, where inputs are.
    struct State: Equatable {
        var shards: [String], holdout: [String], inbox: [String], archive: [String], quarantine: [String]
        var examples: [String]
    }

    func state(_ r: String) throws -> State {
        State(shards: names("shards", root: r), holdout: names("holdout", root: r), inbox: names("inbox", root: r),
              archive: names("archive", root: r), quarantine: names("quarantine", root: r),
              examples: (try cat(["shards", "holdout"], root: r)).sorted())
    }

    /// Checks what must hold after any crash: every published shard reads, and every input
    /// is in exactly one place.
    func checkInvariants(_ r: String, inputs: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        for sub in ["shards", "holdout"] {
            for n in names(sub, root: r) {
                XCTAssertNoThrow(try Shard(path: r + "/" + sub + "/" + n), "\(sub)/\(n) unreadable", file: file, line: line)
            }
        }
        let places = names("inbox", root: r) + names("archive", root: r) + names("quarantine", root: r).filter { !$0.hasSuffix(".reason.json") }
        XCTAssertEqual(places.sorted(), inputs.sorted(), "every input in exactly one place", file: file, line: line)
    }

    let options = ["--shard-examples", "7", "--holdout", "0.1"]

    func testKillAtEachPointThenRerunGivesTheCleanState() throws {
        let weeks = Array(Self.demoWeeks.prefix(3))
        let inputs = weeks.map { $0 + ".jsonl.zst" }
        let reference = try TestSupport.tempDir("ref")
        defer { try? FileManager.default.removeItem(atPath: reference) }
        try fill(reference, weeks: weeks)
        XCTAssertEqual(try ingest(options, root: reference).status, 0)
        let clean = try state(reference)
        XCTAssertEqual(clean.inbox, [])
        XCTAssertGreaterThan(clean.shards.count, 3)

        let cleanStats = names("stats", root: reference)
        XCTAssertEqual(cleanStats.filter { $0.hasSuffix(".hashes") }.count, 3, "one stats sidecar per input")
        for point in ["before-publish", "after-first-shard", "after-shards", "after-sidecar"] {
            let r = try TestSupport.tempDir("crash")
            defer { try? FileManager.default.removeItem(atPath: r) }
            try fill(r, weeks: weeks)
            let killed = try ingest(options, root: r, env: ["PP_INGEST_CRASH_AT": point])
            XCTAssertEqual(killed.status, SIGKILL, "\(point): \(killed.stderr)")
            XCTAssertEqual(names("inbox", root: r), inputs, "\(point): the first input is still in inbox")
            try checkInvariants(r, inputs: inputs)
            if point == "before-publish" {
                XCTAssertEqual(names("shards", root: r) + names("holdout", root: r), [])
                XCTAssertFalse(allNames("shards", root: r).isEmpty, "temps were left behind by the kill")
            }
            if point == "after-shards" {
                XCTAssertFalse(names("shards", root: r).isEmpty)
            }
            let rerun = try ingest(options, root: r)
            XCTAssertEqual(rerun.status, 0, "\(point): \(rerun.stderr)")
            let statuses = reports(rerun).map { $0["status"] as? String ?? "?" }
            XCTAssertEqual(statuses.first, point.hasPrefix("after-s") ? "duplicate" : "accepted", "\(point): \(rerun.stdout)")
            XCTAssertEqual(names("stats", root: r), cleanStats, "\(point): the sidecars are complete after the re-run")
            XCTAssertEqual(try state(r), clean, point)
            XCTAssertEqual(allNames("shards", root: r), clean.shards, "\(point): no temp left")
            XCTAssertEqual(allNames("holdout", root: r), clean.holdout, "\(point): no temp left")
        }
    }

    func testKillBetweenReasonAndQuarantineMove() throws {
        try drop("bad.txt", Array("nothing good\n".utf8))
        let killed = try ingest(env: ["PP_INGEST_CRASH_AT": "after-reason"])
        XCTAssertEqual(killed.status, SIGKILL)
        XCTAssertEqual(names("inbox"), ["bad.txt"])
        XCTAssertEqual(names("quarantine"), ["bad.txt.reason.json"])
        let rerun = try ingest()
        XCTAssertEqual(rerun.status, 1)
        XCTAssertEqual(names("inbox"), [])
        XCTAssertEqual(names("quarantine"), ["bad.txt", "bad.txt.reason.json"])
    }

    func testKillAtRandomMomentsThenRerun() throws {
        let weeks = Array(Self.demoWeeks.prefix(12))
        let inputs = weeks.map { $0 + ".jsonl.zst" }
        let reference = try TestSupport.tempDir("ref")
        defer { try? FileManager.default.removeItem(atPath: reference) }
        try fill(reference, weeks: weeks)
        let t0 = Date()
        XCTAssertEqual(try ingest(options, root: reference).status, 0)
        let cleanSeconds = Date().timeIntervalSince(t0)
        let clean = try state(reference)

        let r = try TestSupport.tempDir("random")
        defer { try? FileManager.default.removeItem(atPath: r) }
        try fill(r, weeks: weeks)
        var kills = 0
        for attempt in 0..<8 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestSupport.binary("pp-ingest"))
            p.arguments = ["--root", r] + options
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            // Within the time a clean run takes (start-up included), so the kill lands mid-run.
            // The first kill comes early (a tenth of a clean run) so that at least one lands
            // even when this run is faster than the measured one; later ones anywhere in the
            // first half.
            let upper = attempt == 0 ? cleanSeconds * 0.1 : cleanSeconds * 0.5
            usleep(UInt32(Double.random(in: 0.002...max(0.004, upper)) * 1e6))
            if p.isRunning { kill(p.processIdentifier, SIGKILL); kills += 1 }
            p.waitUntilExit()
            try checkInvariants(r, inputs: inputs)
            if names("inbox", root: r).isEmpty { break }
        }
        XCTAssertGreaterThan(kills, 0, "no kill landed while pp-ingest ran")
        let final = try ingest(options, root: r)
        XCTAssertTrue([0, 2].contains(final.status), final.stderr)
        XCTAssertEqual(try state(r), clean, "after \(kills) kills")
        XCTAssertEqual(allNames("shards", root: r), clean.shards, "no temp left")
        XCTAssertEqual(allNames("holdout", root: r), clean.holdout, "no temp left")
    }

    func testNoWaitExitsWhenLockedAndWaitingRunProceedsAfterRelease() throws {
        try drop("a.txt", Array("__label__a locked out\n".utf8))
        try FileIO.makeDirectories(root + "/locks")
        var lock: FileLock? = try FileLock(path: root + "/locks/ingest.lock", wait: false)
        let r = try ingest(["--no-wait"])
        XCTAssertEqual(r.status, 75, r.stderr)
        XCTAssertTrue(r.stderr.contains("another pp-ingest is running"), r.stderr)
        XCTAssertEqual(names("inbox"), ["a.txt"])

        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.binary("pp-ingest"))
        p.arguments = ["--root", root]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        usleep(700_000)
        XCTAssertTrue(p.isRunning, "waits while the lock is held")
        XCTAssertEqual(names("inbox"), ["a.txt"])
        lock?.release()
        lock = nil
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(stderr.components(separatedBy: "waiting for lock").count - 1, 1, stderr)
        XCTAssertEqual(names("archive"), ["a.txt"])
    }

    func testTwoConcurrentRunsProcessEachInputOnce() throws {
        let weeks = Array(Self.demoWeeks.prefix(8))
        try fill(root, weeks: weeks)
        var procs: [(Process, Pipe)] = []
        for _ in 0..<2 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestSupport.binary("pp-ingest"))
            p.arguments = ["--root", root]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            procs.append((p, out))
        }
        var statuses: [String] = []
        var codes: [Int32] = []
        for (p, out) in procs {
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            codes.append(p.terminationStatus)
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let j = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                statuses.append(j["status"] as! String)
            }
        }
        XCTAssertEqual(statuses.filter { $0 == "accepted" || $0 == "partial" }.count, weeks.count, "\(statuses)")
        XCTAssertEqual(statuses.count, weeks.count, "no input seen twice: \(statuses)")
        XCTAssertTrue(codes.allSatisfy { $0 == 0 || $0 == 2 }, "\(codes)")
        XCTAssertEqual(names("archive").count, weeks.count)
        let perInput = Dictionary(grouping: names("shards"), by: { Ingest_sha16($0) })
        XCTAssertTrue(perInput.values.allSatisfy { $0.count == 1 }, "one shard per input: \(perInput)")
    }
}

/// The sha16 field of a shard name.
func Ingest_sha16(_ name: String) -> String {
    String(name.split(separator: "-")[1])
}
