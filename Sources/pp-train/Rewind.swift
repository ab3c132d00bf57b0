// `pp-train rewind --before SHARD [--run RUN]`: undo a shard that got into a run. Finds the
// run's newest checkpoint whose full lineage (TextModel/Lineage: meta.lineage along the
// meta.parent chain) contains neither SHARD nor another suspect of the run, adds SHARD to
// runs/RUN/suspects.json (reason "rewind", who, when), and moves every newer checkpoint to
// runs/RUN/rewound/ (kept, never deleted). The next start of the trainer resumes from that
// checkpoint and, since its data cursor predates SHARD, trains again on the good shards
// that came after, without SHARD: with --threads 1 the result is bit-identical to a run that
// never saw it.
//
// A running trainer holds the run's lock and keeps its state in memory, so rewind refuses
// (exit 75) while one runs: stop it, rewind, start it (docs/operations.md). Order of the
// writes: the suspect mark first, then the moves, newest first; a crash in between leaves a
// state that a second `rewind` completes, and that a restarted trainer already treats
// correctly (it skips checkpoints whose lineage holds a suspect shard).
// This file does not train.

import ArgumentParser
import Foundation
import Logging
import Shared
import TextModel

struct Rewind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewind",
        abstract: "Undo a shard: set the run back to its newest checkpoint that never trained on it.",
        discussion: """
            Marks SHARD suspect in runs/RUN/suspects.json (never trained on again) and moves the run's \
            checkpoints newer than the newest one free of it (and of the run's other suspects) to \
            runs/RUN/rewound/. The trainer must be stopped (exit 75 otherwise); its next start resumes \
            from that checkpoint and trains again on the good shards that came after. Prints one JSON \
            line: run, shard, target (null: fresh start), moved.

            Exit status: 0 done; 64 usage; 65 unreadable suspects.json; 66 the run has no checkpoint \
            free of SHARD (see --allow-fresh) or no checkpoints at all; 74 I/O error; 75 a trainer is \
            running for the run.
            """
    )

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup var runOption: RunOption
    @Option(name: .customLong("before"), help: ArgumentHelp("The shard to undo: its file name (as in shards/ or quarantine/) or a path to it.", valueName: "shard"))
    var before: String
    @Flag(name: .customLong("allow-fresh"), help: "When every checkpoint trained on SHARD, move them all aside: the run starts over.")
    var allowFresh = false
    @Flag(name: .customLong("dry-run"), help: "Say what would be done; change nothing.")
    var dryRun = false

    func validate() throws {
        try Rewind.checkShardName(before, what: "--before \(before)")
    }

    func run() throws {
        let log = Log.make("pp-train")
        let root = rootOptions.resolved
        let run = runOption.run
        let shard = FileIO.split(before).name
        try exitingOnFailure("pp-train") {
            let lock = try Rewind.lockStoppedRun(root: root, run: run, command: "rewind")
            defer { lock.release() }

            let dir = root.checkpoints(run: run)
            let files = try Root.checkpointFiles(in: dir)
            if files.isEmpty { throw PPError("run \(run) has no checkpoints in \(dir)", status: .noInput) }
            var suspects = try SuspectList.load(root: root, run: run)
            let poison = suspects.names.union([shard])

            let (target, sha) = try Rewind.target(files: files, in: dir, before: shard, poison: poison, root: root, log: log)
            if target == nil && !allowFresh {
                throw PPError("no checkpoint of run \(run) is free of \(shard) (every one trained on it or on another suspect, or its lineage is incomplete); nothing changed. --allow-fresh moves them all aside so that the run starts over", status: .noInput)
            }
            let targetName = target.map { FileIO.split($0).name }
            let moved = files.filter { targetName == nil || $0 > targetName! }

            let by = Who.current()
            if !dryRun {
                if !suspects.names.contains(shard) || suspects.shards.first(where: { $0.name == shard })?.reason != "rewind" {
                    suspects.mark(SuspectShard(name: shard, sha256: sha, reason: "rewind", at: Clock.iso(Clock.now()), by: by))
                    try suspects.publish(root: root, run: run)
                }
                if !moved.isEmpty { try FileIO.makeDirectories(root.rewound(run: run)) }
                for f in moved.reversed() {
                    try FileIO.moveDurably(dir + "/" + f, root.rewound(run: run) + "/" + f)
                }
            }
            let verb = dryRun ? "would move" : "moved"
            if moved.isEmpty {
                log.notice("\(shard) marked suspect in run \(run); no checkpoint trained on it, nothing \(verb)", metadata: ["by": "\(by)"])
            } else {
                log.notice("run \(run) rewound before \(shard): \(verb) \(moved.count) checkpoint(s) to \(root.rewound(run: run)); the next start resumes from \(targetName ?? "a fresh model") and trains again on the good shards since", metadata: ["by": "\(by)"])
            }
            let movedJSON = moved.map { JSONText.string(root.rewound(run: run) + "/" + $0) }.joined(separator: ",")
            try Stdout.line("{\"run\":\(JSONText.string(run)),\"shard\":\(JSONText.string(shard)),\"target\":\(target.map { JSONText.string($0) } ?? "null"),\"moved\":[\(movedJSON)],\"dry_run\":\(dryRun)}")
        }
    }

    /// The rewind target: newest first, the first checkpoint in `dir` whose known, complete
    /// lineage is free of `poison` (nil: none). Also the SHA-256 of `shard` as the lineages
    /// recorded it (for its suspect mark), if any checkpoint trained on it.
    static func target(files: [String], in dir: String, before shard: String, poison: Set<String>,
                       root: Root, log: Logger) throws -> (path: String?, sha256: String?) {
        var sha: String?
        for f in files.reversed() {
            let p = dir + "/" + f
            let lin: Lineage.Result
            do { lin = try Lineage.of(checkpoint: p, root: root) } catch let e as PPError {
                log.warning("not a rewind target: \(e.message)")
                continue
            }
            if let hit = lin.shards.first(where: { $0.name == shard }) { sha = sha ?? hit.sha256 }
            if let bad = lin.shards.first(where: { poison.contains($0.name) }) {
                log.info("trained on \(bad.name)", metadata: ["checkpoint": "\(f)"])
                continue
            }
            if !lin.complete {
                log.warning("not a rewind target: its lineage is incomplete (parent \(lin.missingParent ?? "?") is gone), so it may hold \(shard)", metadata: ["checkpoint": "\(f)"])
                continue
            }
            return (p, sha)
        }
        return (nil, sha)
    }

    /// `arg` names a shard file (NAME.pps, or a path to one); `what` leads the usage error.
    static func checkShardName(_ arg: String, what: String) throws {
        let name = FileIO.split(arg).name
        if name.isEmpty || !name.hasSuffix("." + Shard.fileExtension) || name.hasPrefix(".") {
            throw ValidationError("\(what): expected a shard file name (NAME.\(Shard.fileExtension))")
        }
    }

    /// The run's trainer lock, for a command that changes a stopped run (rewind, unsuspect):
    /// a running trainer keeps its state in memory and would undo the change, so a held lock
    /// is PPError(.locked) saying what to do.
    static func lockStoppedRun(root: Root, run: String, command: String) throws -> FileLock {
        try FileIO.makeDirectories(root.locks)
        do { return try FileLock(path: root.lock("train-" + run), wait: false) } catch let e as PPError where e.status == .locked {
            throw PPError("run \(run) is being trained by a running pp-train: stop it first (systemctl stop pp-train@\(run), or kill -TERM its pid), \(command), then start it again", status: .locked)
        }
    }
}

/// `pp-train unsuspect SHARD [--run RUN] [--why TEXT]`: withdraw a suspect mark (the guard's
/// or a rewind's) after a person looked, so that the run may train on the shard again and
/// pp-select stops treating checkpoints that hold it as poisoned. The mark moves to the
/// list's `withdrawn` history (who, when, why); nothing else changes: checkpoints moved to
/// rewound/ stay there. Like rewind, it refuses while a trainer runs (the trainer keeps its
/// suspects in memory).
struct Unsuspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unsuspect",
        abstract: "Withdraw a shard's suspect mark (the run may train on it again).",
        discussion: """
            Removes SHARD from runs/RUN/suspects.json and records the withdrawn mark there \
            ("withdrawn": the mark, who, when, why). The trainer must be stopped (exit 75 \
            otherwise); its next start treats the shard as any other in shards/. Prints one \
            JSON line: run, shard, the withdrawn mark.

            Exit status: 0 done; 64 usage; 65 unreadable suspects.json; 66 SHARD is not a \
            suspect of the run; 74 I/O error; 75 a trainer is running for the run.
            """
    )

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup var runOption: RunOption
    @Option(help: ArgumentHelp("Why (recorded with the withdrawn mark).", valueName: "text"))
    var why: String?
    @Argument(help: ArgumentHelp("The shard: its file name or a path to it.", valueName: "shard"))
    var shard: String

    func validate() throws {
        try Rewind.checkShardName(shard, what: shard)
    }

    func run() throws {
        let log = Log.make("pp-train")
        let root = rootOptions.resolved
        let run = runOption.run
        let name = FileIO.split(shard).name
        try exitingOnFailure("pp-train") {
            let lock = try Rewind.lockStoppedRun(root: root, run: run, command: "unsuspect")
            defer { lock.release() }
            var list = try SuspectList.load(root: root, run: run)
            let by = Who.current()
            guard let w = list.withdraw(name, at: Clock.iso(Clock.now()), by: by, why: why) else {
                throw PPError("\(name) is not a suspect of run \(run) (\(SuspectList.path(root: root, run: run)))", status: .noInput)
            }
            try list.publish(root: root, run: run)
            log.notice("suspect mark withdrawn: run \(run) may train on \(name) again", metadata: ["by": "\(by)", "was": "\(w.mark.reason)"])
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            let mark = String(decoding: try enc.encode(w), as: UTF8.self)
            try Stdout.line("{\"run\":\(JSONText.string(run)),\"shard\":\(JSONText.string(name)),\"withdrawn\":\(mark)}")
        }
    }
}
