// The file names of the contract (docs/contract.md, docs/design.md "File names"), built and
// parsed in one place: a shard is `<stamp>-<sha16>-<part>.pps`, a checkpoint
// `ckpt-<stamp>-<step, 12 digits>.ppc`, where `<stamp>` is a UTC time as YYYYMMDDTHHMMSSZ
// (Clock.stamp). Both sort by time as plain strings. A name that does not parse is not one of
// these files: the tools skip it when they list a folder.

/// `<stamp>-<sha16>-<part>.pps`: part `part` of the input whose SHA-256 starts with `sha16`
/// (16 hex digits), stamped with the input file's mtime, so the same input always gets the
/// same names (pp-ingest; docs/formats.md).
public struct ShardName: Hashable, Sendable, CustomStringConvertible {
    public static let fileExtension = "pps"
    public let stamp: String
    public let sha16: String
    public let part: Int

    public init(stamp: String, sha16: String, part: Int) {
        self.stamp = stamp; self.sha16 = sha16; self.part = part
    }

    /// Parses a file name (no folder); nil when it is not a shard name.
    public init?(_ file: String) {
        guard file.hasSuffix("." + ShardName.fileExtension) else { return nil }
        let parts = file.dropLast(ShardName.fileExtension.count + 1).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].utf8.count == 16, !parts[0].isEmpty,
              !parts[2].isEmpty, parts[2].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let part = Int(parts[2]) else { return nil }
        self.init(stamp: String(parts[0]), sha16: String(parts[1]), part: part)
    }

    /// The file name; parts are numbered with at least 3 digits.
    public var file: String { "\(input)-\(ShardName.padded(part, 3)).\(ShardName.fileExtension)" }
    public var description: String { file }
    /// `<stamp>-<sha16>`: what every part of one input shares (quarantine moves them together).
    public var input: String { stamp + "-" + sha16 }

    static func padded(_ n: Int, _ width: Int) -> String {
        let d = String(n)
        return d.count >= width ? d : String(repeating: "0", count: width - d.count) + d
    }
}

/// `ckpt-<stamp>-<step>.ppc`: the checkpoint a run wrote at `stamp` after `step` examples
/// (pp-train; the step with 12 digits, so names sort by time, then step).
public struct CheckpointName: Hashable, Sendable, CustomStringConvertible {
    public static let fileExtension = "ppc"
    public let stamp: String
    public let step: Int

    public init(stamp: String, step: Int) { self.stamp = stamp; self.step = step }
    /// The name of a checkpoint written now (`time`, Unix seconds).
    public init(time: Double, step: Int) { self.init(stamp: Clock.stamp(time), step: step) }

    /// Parses a file name, or a path or "RUN/FILE" (the last component counts); nil when it
    /// is not a checkpoint name.
    public init?(_ name: String) {
        let file = name.split(separator: "/").last.map(String.init) ?? name
        guard file.hasPrefix("ckpt-"), file.hasSuffix("." + CheckpointName.fileExtension) else { return nil }
        let body = file.dropFirst(5).dropLast(CheckpointName.fileExtension.count + 1)
        let parts = body.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, Clock.parseStamp(parts[0]) != nil, !parts[1].isEmpty,
              parts[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let step = Int(parts[1]) else { return nil }
        self.init(stamp: String(parts[0]), step: step)
    }

    public var file: String { "ckpt-\(stamp)-\(ShardName.padded(step, 12)).\(CheckpointName.fileExtension)" }
    public var description: String { file }
    /// Unix seconds of the stamp.
    public var time: Double? { Clock.parseStamp(stamp) }

    /// The creation time in a checkpoint name or path; nil when it is not one.
    public static func time(of name: String) -> Double? { CheckpointName(name)?.time }
}

extension Root {
    /// The checkpoint files (names, no folder) in `dir`, sorted: oldest first. Other files,
    /// temps (dot-names) and a missing folder are skipped. The one listing of checkpoints
    /// every tool uses (pp-train's resume and rewind, pp-eval --pending, pp-select).
    public static func checkpointFiles(in dir: String) throws -> [String] {
        try FileIO.list(dir).filter { CheckpointName($0) != nil }
    }

    /// `checkpointFiles(in:)` of a run's checkpoints/ folder (FileIO.list: sorted, no dot-names).
    public func checkpointFiles(run: String) throws -> [String] {
        try Root.checkpointFiles(in: checkpoints(run: run))
    }
}
