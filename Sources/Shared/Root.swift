// The state folder (CONTRACT "The root"): where each tool finds its inputs and leaves its
// outputs. Only paths here; what goes into the files is each format's business.

import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

public struct Root: Sendable {
    public let path: String

    /// `--root`, else `$PP_ROOT`, else `/var/lib/perpetuum`.
    public init(_ explicit: String?) {
        if let e = explicit, !e.isEmpty { path = Root.trimSlash(e) }
        else if let env = getenv("PP_ROOT"), let s = String(validatingCString: env), !s.isEmpty { path = Root.trimSlash(s) }
        else { path = "/var/lib/perpetuum" }
    }

    static func trimSlash(_ s: String) -> String {
        var s = s
        while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
        return s
    }

    public var inbox: String { path + "/inbox" }
    public var shards: String { path + "/shards" }
    public var holdout: String { path + "/holdout" }
    public var quarantine: String { path + "/quarantine" }
    public var archive: String { path + "/archive" }
    public var runs: String { path + "/runs" }
    public var evals: String { path + "/evals" }
    public var metrics: String { path + "/metrics" }
    public var locks: String { path + "/locks" }
    public var deployed: String { path + "/deployed" }
    public var selections: String { path + "/selections.jsonl" }
    public func run(_ name: String) -> String { runs + "/" + name }
    public func checkpoints(run name: String) -> String { run(name) + "/checkpoints" }
    /// Checkpoints set aside by `pp-train rewind` (kept, never candidates).
    public func rewound(run name: String) -> String { run(name) + "/rewound" }
    /// Heads of checkpoints whose weights retention deleted (FILE.head: the meta as JSON), so
    /// a lineage stays complete forever (docs/formats.md, "Checkpoint heads").
    public func heads(run name: String) -> String { run(name) + "/heads" }
    public func control(run name: String) -> String { run(name) + "/control.json" }
    public func status(run name: String) -> String { run(name) + "/status.json" }
    public func lock(_ name: String) -> String { locks + "/" + name + ".lock" }

    /// Creates the folders of the layout that do not exist yet.
    public func ensureLayout() throws {
        for d in [path, inbox, shards, holdout, quarantine, archive, runs, evals, metrics, locks] {
            try FileIO.makeDirectories(d)
        }
    }
}

/// `--root DIR`, shared by every tool's command line.
public struct RootOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("State folder.", discussion: "Default: $PP_ROOT, else /var/lib/perpetuum.", valueName: "dir"))
    public var root: String?

    public init() {}

    public var resolved: Root { Root(root) }
}
