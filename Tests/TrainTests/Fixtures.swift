// Fixtures for the pp-train tests: synthetic shards written with ShardWriter + FileIO.publish
// (no pp-ingest), a background trainer process with its stdout lines collected, and polling
// helpers. Tiny model flags keep every test fast.

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

enum Fix {
    /// Flags for a tiny, reproducible model.
    static let tiny = ["--dim", "8", "--bucket", "1000", "--minn", "0", "--maxn", "0", "--threads", "1", "--min-count", "1", "--vocab-capacity", "5000"]

    /// Deterministic pseudo-random numbers (SplitMix64) for fixture text.
    struct Rng {
        var s: UInt64
        mutating func next() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// `n` examples over `labels`: each text mixes words typical of its label with common words.
    static func examples(_ n: Int, labels: [String], seed: UInt64, words: Int = 12) -> [(String, [String])] {
        var r = Rng(s: seed)
        return (0..<n).map { _ in
            let l = labels[r.below(labels.count)]
            let toks = (0..<words).map { _ in r.below(3) == 0 ? "common\(r.below(30))" : "\(l)\(r.below(15))" }
            return (l, toks)
        }
    }

    /// A shard name as pp-ingest makes them (sorts by arrival).
    static func shardName(_ k: Int) -> String {
        "20260101T\(String(format: "%06d", k))Z-\(String(format: "%016x", k))-000.pps"
    }

    /// Publishes a shard into ROOT/shards and returns its path.
    @discardableResult
    static func shard(_ root: String, _ name: String, _ ex: [(String, [String])]) throws -> String {
        var w = ShardWriter()
        for (l, t) in ex { w.append(label: l, ts: nil, tokens: t) }
        let h = ShardHeader(split: "train", examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: name,
                            sourceSHA256: String(repeating: "0", count: 64), sourceBytes: 0, part: 0, parts: 1,
                            ingestedAt: "2026-01-01T00:00:00Z", tsMin: nil, tsMax: nil)
        try FileIO.makeDirectories(root + "/shards")
        let path = root + "/shards/" + name
        try FileIO.publish(try w.finish(header: h), to: path)
        return path
    }

    static func newRoot(_ tag: String) throws -> String {
        let r = try TestSupport.tempDir(tag)
        try FileIO.makeDirectories(r + "/shards")
        return r
    }

    static func checkpoints(_ root: String, run: String = "main") -> [String] {
        ((try? FileIO.list(root + "/runs/\(run)/checkpoints")) ?? []).filter { $0.hasSuffix(".ppc") }
            .map { root + "/runs/\(run)/checkpoints/" + $0 }
    }

    static func status(_ root: String, run: String = "main") -> [String: Any]? {
        guard let b = try? FileIO.readAll(root + "/runs/\(run)/status.json"),
              let o = try? JSONSerialization.jsonObject(with: Data(b)) as? [String: Any] else { return nil }
        return o
    }

    /// Polls `cond` every 50 ms for up to `timeout` seconds.
    static func waitFor(_ timeout: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if cond() { return true }
            usleep(50_000)
        }
        if cond() { return true }
        XCTFail("timed out after \(timeout) s waiting for \(what)", file: file, line: line)
        return false
    }

    /// Fixed probe texts: predictions on them compare two models bit for bit.
    static let probes: [[String]] = examples(40, labels: ["a", "b", "c", "d"], seed: 99).map { $0.1 } + [["never", "seen"], []]

    /// Every probability of `ck` on the probes, as bit patterns.
    static func fingerprint(_ ck: Checkpoint) -> [UInt32] {
        var out: [UInt32] = []
        for p in probes {
            out.append(contentsOf: ck.model.predict(tokens: p).map { $0.bitPattern })
        }
        return out
    }
}

/// pp-train running in the background; stdout lines are collected as they come, stderr
/// goes to a file (shown when a test fails).
final class Daemon {
    let process = Process()
    let errPath: String
    private let box = LineBox()

    init(_ args: [String], tag: String, env: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: TestSupport.binary("pp-train"))
        process.arguments = args
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        process.environment = e
        errPath = NSTemporaryDirectory() + "pp-train-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).err"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        process.standardInput = FileHandle.nullDevice
        let out = Pipe()
        process.standardOutput = out
        let h = out.fileHandleForReading
        try process.run()
        let b = box
        Thread { Daemon.readLines(h, into: b) }.start()
    }

    /// Collected stdout lines; shared with the reader thread, which may outlive the Daemon.
    final class LineBox: @unchecked Sendable {
        let lock = NSLock()
        var lines: [String] = []
    }

    private static func readLines(_ h: FileHandle, into box: LineBox) {
        var buffer = Data()
        while true {
            let d = h.availableData
            if d.isEmpty { return }
            buffer.append(d)
            while let nl = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...nl)
                box.lock.lock(); box.lines.append(line); box.lock.unlock()
            }
        }
    }

    /// A copy made under the lock into a buffer of its own: handing out `box.lines` itself
    /// would share its storage with the reader thread's next append (a race TSan reports).
    var stdoutLines: [String] { box.lock.lock(); defer { box.lock.unlock() }; return box.lines.map { $0 } }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
    var pid: Int32 { process.processIdentifier }

    func signal(_ s: Int32) { kill(pid, s) }

    /// Waits for exit (up to `timeout` s, then SIGKILL) and returns the exit status.
    @discardableResult
    func wait(_ timeout: Double = 20) -> Int32 {
        let end = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit(); return -9 }
        process.waitUntilExit()
        usleep(50_000)  // let the reader drain the pipe
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        unlink(errPath)
    }
}

