// Helpers for the CLI-level tests: temporary state folders, running the built tools and
// capturing their output and exit status.

import Foundation
import Shared
import TextModel

public enum TestSupport {
    /// The inputs `parse` accepts, or refuses without a PPError naming a line: a test of a
    /// line-based file format's hostile inputs (holdout.idx, links.idx) wants none.
    public static func notRefusedByLine(_ inputs: [String], _ parse: ([UInt8]) throws -> Void) -> [String] {
        inputs.filter { text in
            do { try parse(Array(text.utf8)); return true } catch let e as PPError { return !e.message.contains("line") } catch { return true }
        }
    }

    /// The folder holding the built executables (the test bundle sits beside them).
    public static var binDir: String {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // swift-corelibs-xctest: .build/<config>/PerpetuumPackageTests.xctest
        while url.pathComponents.count > 1 {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("pp-ingest").path) { return url.path }
        }
        fatalError("cannot find the built pp-* executables near \(CommandLine.arguments[0])")
    }

    public static func binary(_ name: String) -> String { binDir + "/" + name }

    /// A fresh temporary folder, removed by the caller (or left for inspection on failure).
    public static func tempDir(_ tag: String) throws -> String {
        let base = NSTemporaryDirectory() + "pp-test-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileIO.makeDirectories(base)
        return base
    }

    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
    }

    /// A check that failed, thrown by the helpers below (XCTest reports a thrown error as a
    /// failure of the test that called them).
    public struct CheckFailed: Error, CustomStringConvertible {
        public let description: String
    }

    /// The tool answers --help with exit 0 and a usage line naming itself.
    public static func checkHelp(_ tool: String) throws {
        let r = try run(tool, ["--help"])
        guard r.status == 0 else { throw CheckFailed(description: "\(tool) --help: exit \(r.status)\n\(r.stderr)") }
        guard r.stdout.contains("USAGE: \(tool)") else { throw CheckFailed(description: "\(tool) --help: no usage line\n\(r.stdout)") }
    }

    /// Starts a tool with `args` and extra environment without waiting for it; stdout and
    /// stderr are pipes, stdin is `stdin` or /dev/null.
    public static func start(_ tool: String, _ args: [String], stdin: Pipe? = nil, env: [String: String] = [:]) throws -> (Process, Pipe, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : binary(tool))
        p.arguments = args
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = stdin ?? FileHandle.nullDevice
        try p.run()
        return (p, out, err)
    }

    /// Runs a tool to completion with `args`, optional stdin bytes and extra environment.
    @discardableResult
    public static func run(_ tool: String, _ args: [String], stdin: [UInt8]? = nil, env: [String: String] = [:]) throws -> Result {
        let inPipe = Pipe()
        let (p, out, err) = try start(tool, args, stdin: stdin == nil ? nil : inPipe, env: env)
        if let s = stdin {
            inPipe.fileHandleForWriting.write(Data(s))
            try inPipe.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so a chatty child cannot block on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let g = DispatchGroup()
        g.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); g.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        g.wait()
        let errData = errBox.data
        p.waitUntilExit()
        return Result(status: p.terminationStatus,
                      stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// The repository's root folder (for demo/data fixtures).
    public static var repoRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        while url.pathComponents.count > 1 {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        fatalError("no Package.swift above \(#filePath)")
    }
}

extension ModelConfig {
    /// A small model for the tests (one thread: deterministic), each test naming what it needs
    /// beyond these values; one helper instead of a `config()` per test file.
    public static func small(dim: Int = 16, hidden: Int = 0, bucket: Int = 10_000, capacity: Int = 1000, minCount: Int = 2,
                             wordNgrams: Int = 2, minn: Int = 3, maxn: Int = 4, threads: Int = 1, seed: UInt64 = 7) -> ModelConfig {
        var c = ModelConfig()
        c.dim = dim; c.hidden = hidden; c.bucket = bucket; c.vocabCapacity = capacity; c.minCount = minCount
        c.wordNgrams = wordNgrams; c.minn = minn; c.maxn = maxn; c.threads = threads; c.seed = seed
        return c
    }
}
