// pp-train: the perpetual trainer's command line. `pp-train [train]` runs the loop
// (TrainLoop) until stopped, or once with --once; `pp-train set KEY=VALUE...` replaces a
// run's control.json; `pp-train status` prints its status.json; `pp-train rewind` (Rewind.swift)
// sets a run back before a bad shard. Parsing and validation only: what training does is in TrainLoop, DataFeed, Start and the Shared core.

import ArgumentParser
import Foundation
import Shared
import TextModel
import Training

struct PPTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-train",
        abstract: "Train continuously on the shards, writing checkpoints.",
        discussion: """
            Stdout carries only the paths of the checkpoints written, one per line; logs go to stderr. \
            Options of the default subcommand: pp-train help train.

            Exit status: 0 done (also after SIGTERM/SIGINT); 1 --once: the guard stopped a shard (the rest is \
            checkpointed), or a NaN/inf loss outside the guard (no checkpoint); 2 nothing to do (--once); \
            64 usage, or model flags contradicting the run; 65 corrupt --init checkpoint, invalid policy.json \
            or suspects.json; 66 no such --init file; 74 I/O error; 75 another pp-train holds the run. \
            See docs/operations.md, section pp-train.
            """,
        version: BuildTarget.versionLine("pp-train"),
        subcommands: [Train.self, SetKnobs.self, ShowStatus.self, Rewind.self, Unsuspect.self],
        defaultSubcommand: Train.self
    )
}

struct RunOption: ParsableArguments {
    @Option(help: ArgumentHelp("Training run name (runs/RUN/).", valueName: "run"))
    var run = "main"

    func validate() throws {
        if run.isEmpty || run.contains("/") || run.hasPrefix(".") {
            throw ValidationError("--run \(run): a run name is a plain file name (no '/', not starting with '.')")
        }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train on shards/ until stopped (the default), or once with --once."
    )

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup var runOption: RunOption

    @Option(name: .customLong("init"), help: ArgumentHelp("Seed a new run from this checkpoint (ignored once the run has checkpoints; else the run's newest, else deployed, else fresh).", valueName: "ckpt"))
    var initPath: String?
    @Flag(help: "Train on everything pending (each new shard once, with the replay share), write one checkpoint, print its path, exit.")
    var once = false
    @Option(help: "With --once: N passes over all shards instead (no replay share), for static data sets and benchmarks. A model such a job creates defaults to --subword-weight token and --lr 0.1 (without --hidden): the static recipe, docs/research.md.")
    var passes: Int?

    // Model hyperparameters (fastText's names); they apply when a run is created.
    @Option(help: ArgumentHelp("Embedding dimension (default 100).", valueName: "n")) var dim: Int?
    @Option(name: .customLong("word-ngrams"), help: ArgumentHelp("Word n-grams: 1 words only, 2 + bigrams (default 2).", valueName: "n")) var wordNgrams: Int?
    @Option(help: ArgumentHelp("Shortest character n-gram, 0 = none (default 3).", valueName: "n")) var minn: Int?
    @Option(help: ArgumentHelp("Longest character n-gram, 0 = none (default 6).", valueName: "n")) var maxn: Int?
    @Option(help: ArgumentHelp("Hash buckets for n-grams (default 2000000).", valueName: "n")) var bucket: Int?
    @Option(name: .customLong("min-count"), help: ArgumentHelp("Occurrences before a word gets its own row (default 5).", valueName: "n")) var minCount: Int?
    @Option(name: .customLong("vocab-capacity"), help: ArgumentHelp("Word rows; least recently seen are evicted when full (default 500000).", valueName: "n")) var vocabCapacity: Int?
    @Option(help: ArgumentHelp("Hidden layer width, 0 = linear (default 0).", valueName: "n")) var hidden: Int?
    @Option(help: ArgumentHelp("Training threads; 1 with a fixed seed is bit-reproducible (default 2).", valueName: "n")) var threads: Int?
    @Option(help: ArgumentHelp("Random seed (default 1).", valueName: "n")) var seed: UInt64?
    @Option(name: .customLong("subword-weight"), help: ArgumentHelp("How a token's character n-grams weigh in an example's mean: each (one feature each, fastText's rule; default, best on sparse streams) or token (1/k each, one feature together; better on static data trained for several passes, and the default of a model --passes creates). See docs/research.md.", valueName: "each|token"))
    var subwordWeight: ModelConfig.SubwordWeight?

    // Knobs: like `pp-train set` at start.
    @Option(help: ArgumentHelp("Learning rate (a knob: also `pp-train set lr=...`; default \(JSONText.number(Knobs.defaultLR)), \(JSONText.number(Knobs.defaultHiddenLR)) for a new model with --hidden: the best fixed rates on the shipped streams; \(JSONText.number(Knobs.defaultMultiPassLR)) for a linear model --passes creates; docs/research.md).", valueName: "x")) var lr: Double?
    @Option(help: ArgumentHelp("Dropout rate in [0, 1) (a knob; default 0).", valueName: "x")) var dropout: Double?
    @Option(help: ArgumentHelp("Checkpoints deploy an exponential moving average of the weights with this half-life in trained examples; 0 = the training weights (a knob: also `pp-train set average=...`; default \(JSONText.number(Knobs.defaultAverage))). See docs/operations.md.", valueName: "examples")) var average: Double?

    // The loop.
    @Option(name: .customLong("checkpoint-every"), help: ArgumentHelp("Checkpoint interval: 1h, 30m, 90s, 2d, or examples such as 50000ex.", valueName: "every"))
    var checkpointEvery = "1h"
    @Option(help: ArgumentHelp("Seconds between scans of shards/.", valueName: "seconds")) var rescan: Double = 60
    @Option(help: ArgumentHelp("Share of each batch replayed from older shards, in [0, 1).", valueName: "fraction")) var replay: Double = 0.2
    @Option(name: .customLong("max-passes"), help: ArgumentHelp("Passes over each shard before the trainer idles.", valueName: "n")) var maxPasses = 5
    @Option(help: ArgumentHelp("Examples per training batch.", valueName: "n")) var batch = 256
    @Option(name: .customLong("full-every"), help: ArgumentHelp("Every Nth checkpoint is full; those between are deltas that store only the rows changed since the previous checkpoint, a chain a load follows back to the full one (1: every checkpoint full; at most 101). A delta whose rows would exceed half of the full one's is written full.", valueName: "n"))
    var fullEvery = DeltaPolicy.defaultFullEvery
    @Option(name: .customLong("chain-limit"), help: ArgumentHelp("The most deltas a load reads above the full checkpoint: a delta that would chain deeper is written against the full one with every row changed since it, and the next ones chain to it (1: every delta against the full one).", valueName: "n"))
    var chainLimit = DeltaPolicy.defaultChainLimit

    func validate() throws {
        if passes != nil && !once { throw ValidationError("--passes needs --once") }
        if let p = passes, p < 1 { throw ValidationError("--passes must be at least 1") }
        if Cadence(parsing: checkpointEvery) == nil {
            throw ValidationError("--checkpoint-every \(checkpointEvery): expected a duration (90s, 30m, 1h, 2d) or an example count (50000ex)")
        }
        if !(rescan.isFinite && rescan > 0) { throw ValidationError("--rescan must be > 0 seconds") }
        if !(replay >= 0 && replay < 1) { throw ValidationError("--replay must be in [0, 1)") }
        if maxPasses < 1 { throw ValidationError("--max-passes must be at least 1") }
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
        if fullEvery < 1 || fullEvery > DeltaPolicy.maxFullEvery { throw ValidationError("--full-every must be 1 to \(DeltaPolicy.maxFullEvery)") }
        if chainLimit < 1 || chainLimit > DeltaPolicy.maxFullEvery - 1 { throw ValidationError("--chain-limit must be 1 to \(DeltaPolicy.maxFullEvery - 1)") }
        for (name, v, lo) in [("dim", dim, 1), ("word-ngrams", wordNgrams, 1), ("minn", minn, 0), ("maxn", maxn, 0),
                              ("bucket", bucket, 1), ("min-count", minCount, 1), ("vocab-capacity", vocabCapacity, 1),
                              ("hidden", hidden, 0), ("threads", threads, 1)] {
            if let v, v < lo { throw ValidationError("--\(name) must be at least \(lo)") }
        }
        let mn = minn ?? ModelConfig().minn, mx = maxn ?? ModelConfig().maxn
        if mn > mx && !(mx == 0) { throw ValidationError("--minn \(mn) is larger than --maxn \(mx)") }
        if let v = lr, let r = Control.check(lr: v) { throw ValidationError("--lr: \(r)") }
        if let v = dropout, let r = Control.check(dropout: v) { throw ValidationError("--dropout: \(r)") }
        if let v = average, let r = Knobs.problem(average: v) { throw ValidationError("--average: \(r)") }
    }

    func run() throws {
        let log = Log.make("pp-train")
        BLASSetup.logCore(log)
        // What the hot loop was compiled for, and a warning when this CPU could run a faster
        // build (issue 20: a plain build is ~3.5x slower and would otherwise say nothing).
        log.info("compiled for \(BuildTarget.summary)", metadata: ["version": "\(BuildTarget.version)", "build": "\(BuildTarget.configuration)"])
        if let w = BuildTarget.slowBuildWarning(cpuFlags: BuildTarget.cpuFlags()) { log.warning("\(w)") }
        let root = rootOptions.resolved
        let runName = runOption.run
        try exitingOnFailure("pp-train") {
            try root.ensureLayout()
            try FileIO.makeDirectories(root.checkpoints(run: runName))
            let lock: FileLock
            do { lock = try FileLock(path: root.lock("train-" + runName), wait: false) } catch let e as PPError where e.status == .locked {
                throw PPError("run \(runName) is already being trained by another pp-train (\(e.message))", status: .locked)
            }
            defer { lock.release() }
            // Temps of a killed pp-train (or pp-select) whose writer is dead (Temps.swift).
            Temps.sweep([root.checkpoints(run: runName), root.run(runName), root.heads(run: runName), root.metrics], log: log)
            let signals = try Signals()
            let settings = TrainSettings(
                root: root, run: runName, initPath: initPath, once: once, passes: passes, batch: batch, rescan: rescan,
                replay: replay, maxPasses: maxPasses, cadence: Cadence(parsing: checkpointEvery)!,
                flags: ModelFlags(dim: dim, wordNgrams: wordNgrams, minn: minn, maxn: maxn, bucket: bucket, minCount: minCount,
                                  vocabCapacity: vocabCapacity, hidden: hidden, threads: threads, seed: seed,
                                  subwordWeight: subwordWeight, multiPass: passes != nil),
                lr: lr, dropout: dropout, average: average, deltas: DeltaPolicy(fullEvery: fullEvery, chainLimit: chainLimit))
            let loop = try TrainLoop(settings: settings, log: log, signals: signals)
            let status = once ? try loop.runOnce() : try loop.runForever()
            if status != .ok { throw ExitCode(status.rawValue) }
        }
    }
}

struct SetKnobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Change a run's knobs: replaces runs/RUN/control.json; a running trainer applies it within 5 s.",
        discussion: "Keys: lr (> 0), dropout ([0, 1)), pause (true|false), average (half-life in examples of the deployed weight average, 0 = off). Keys not given keep their value. Prints the new control.json."
    )

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup var runOption: RunOption
    @Argument(help: ArgumentHelp("lr=X, dropout=X, pause=true|false, average=N", valueName: "key=value"))
    var assignments: [String] = []

    func run() throws {
        let root = rootOptions.resolved
        let path = root.control(run: runOption.run)
        try exitingOnFailure("pp-train") {
            if assignments.isEmpty { throw PPError("set: nothing to set (keys: \(Control.keys.joined(separator: ", ")))", status: .usage) }
            var c: Control
            do { c = try Control.read(path) ?? Control() } catch let e as PPError {
                Log.fail("pp-train", "warning: replacing an unreadable control.json (\(e.message))")
                c = Control()
            }
            for a in assignments {
                do { try c.set(a) } catch let e as PPError { throw PPError("set: \(e.message)", status: e.status) }
            }
            try c.write(path)
            try Stdout.line(String(c.json.dropLast()))   // json ends with its newline
        }
    }
}

struct ShowStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print a run's status.json (and warn on stderr when no trainer holds the run)."
    )

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup var runOption: RunOption

    func run() throws {
        let root = rootOptions.resolved
        let path = root.status(run: runOption.run)
        guard FileIO.exists(path) else {
            Log.fail("pp-train", "\(path): no status (the run has never been trained)")
            throw ExitCode(ExitStatus.noInput.rawValue)
        }
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path) } catch let e as PPError {
            Log.fail("pp-train", e.message)
            throw ExitCode(e.status.rawValue)
        }
        if !FileLock.isHeld(root.lock("train-" + runOption.run)) {
            Log.fail("pp-train", "warning: no trainer is running for run \(runOption.run); this status is its last word")
        }
        FileHandle.standardOutput.write(Data(bytes))
    }
}

/// `--subword-weight each|token`.
extension ModelConfig.SubwordWeight: ExpressibleByArgument {}

// OpenBLAS's environment (one thread, this CPU's kernel) before any thread starts; the
// library itself opens at the first product (TextModel's BLASLibrary).
BLASLibrary.prepare()
PPTrain.main()
