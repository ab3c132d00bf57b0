// pp-eval: scores checkpoints on an eval set (default: the holdout shards) and stores one JSON
// result per (checkpoint, eval set) under evals/; `--pending` does that for every checkpoint
// still missing a result; `predict` labels text from stdin; `--lineage` prints which data
// made a checkpoint. Formats: docs/formats.md ("Eval set", "Eval result").
// It never writes anything but evals/ files, and never a result for a corrupt checkpoint.

import ArgumentParser
import Logging
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

let tool = "pp-eval"

/// Writes one line to stdout at once (Stdout.line: results appear as they come).
func emit(_ line: String) throws { try Stdout.line(line) }

/// How the result names a checkpoint: RUN and FILE from its (resolved) path
/// "runs/RUN/checkpoints/FILE", else the run its metadata names; the path relative to the root.
func identity(path: String, meta: CheckpointMeta, root: Root) -> CheckpointIdentity {
    let real = FileIO.realPath(path) ?? path
    let rootReal = FileIO.realPath(root.path) ?? root.path
    let id = EvalNames.checkpointID(path: real) ?? (meta.run, FileIO.split(real).name)
    let rel = real.hasPrefix(rootReal + "/") ? String(real.dropFirst(rootReal.count + 1)) : real
    return CheckpointIdentity(run: id.run, file: id.file, path: rel, step: meta.step, createdAt: meta.createdAt)
}

/// The eval set --data names (shard files, raw input files, folders of shards), else the
/// root's holdout shards.
func loadEvalSet(data: [String], root: Root, saveIndex: Bool = true) throws -> EvalSet {
    let set: EvalSet
    if data.isEmpty {
        let index = HoldoutIndex.shared(root, warn: { Log.make(tool).warning("\($0)") })
        let paths = try EvalSet.holdoutPaths(root, index: index)
        set = try EvalSet.load(paths, source: "holdout", skipCorrupt: true, index: index,
                               warn: { Log.make(tool).error("\($0)") })
        if saveIndex { saveHoldoutIndex(index, root: root, window: paths) }
    } else {
        let paths = try EvalSet.shardPaths(data)
        if paths.isEmpty { throw PPError("\(data.joined(separator: " ")): no shard files", status: .nothingToDo) }
        set = try EvalSet.load(paths, source: data.joined(separator: " "), warn: { Log.make(tool).warning("\($0)") })
    }
    if set.count == 0 { throw PPError("\(set.source): the eval set has no examples", status: .nothingToDo) }
    return set
}

/// Stores what this run learnt of the holdout shards (HoldoutIndex.swift); an index that
/// cannot be written only costs the next run a re-read, so it is a warning.
func saveHoldoutIndex(_ index: HoldoutIndex, root: Root, window: [String]) {
    do { try index.save(root, keep: window) } catch let e as PPError {
        Log.make(tool).warning("holdout index not saved: \(e.message)")
    } catch {}
}

struct PPEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-eval",
        abstract: "Score checkpoints on the holdout shards, as JSON.",
        discussion: """
        pp-eval CKPT prints one JSON result and stores it as evals/<ckpt>--<run>--<evalset16>.json \
        (with a per-example .pex file beside it, for pp-select's bootstrap). \
        --pending scores every checkpoint that selection can still choose (created within --since, \
        default 24h, and every run's newest) and the deployed one, that has no result \
        for the current holdout set, one JSON line each; --pending --new only those that have \
        no result at all (each checkpoint once, as it appears). Formats: docs/formats.md.

        EXIT STATUS: 0 done, 2 nothing to do (no pending checkpoint, no holdout examples), \
        64 usage, 65 corrupt checkpoint or shard (no result written), 66 no such file, \
        74 I/O error.
        """,
        version: BuildTarget.versionLine("pp-eval"),
        subcommands: [Score.self, Predict.self, Export.self],
        defaultSubcommand: Score.self
    )
}

/// The default subcommand: `pp-eval CKPT`, `--pending`, `--lineage` (a subcommand so that
/// `predict` is never taken for a checkpoint name).
struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score one checkpoint (CKPT), every pending one (--pending), or print a lineage (--lineage CKPT)."
    )

    @OptionGroup var rootOptions: RootOptions

    @Argument(help: "The checkpoint file (.ppc) to score; the root's `deployed` link works too.")
    var checkpoint: String?

    @Option(name: .long, help: ArgumentHelp("Score on these shard files or folders instead of holdout/.", valueName: "file|dir"))
    var data: [String] = []

    @Option(name: .customLong("recent-examples"), help: "The recent (and old) slice: the newest (and oldest) this many examples (the default, 200).")
    var recentExamples: Int?

    @Option(name: .customLong("recent-days"), help: "Instead: the recent (and old) slice spans this many days of the data's time.")
    var recentDays: Int?

    var slicing: Slicing { recentDays.map { .days($0) } ?? .examples(recentExamples ?? 200) }

    @Flag(name: .customLong("no-store"), help: "Print the result without storing it under evals/.")
    var noStore = false

    @Flag(name: .long, help: "Score every checkpoint that selection can still choose and that has no result for the current holdout set.")
    var pending = false

    @Flag(name: .long, help: "With --pending: only checkpoints that have no result at all, each scored once, on the eval set of the moment it is seen (what the checkpoint path unit and timer run; the other results come when pp-select's unit runs plain --pending).")
    var new = false

    @Option(name: .long, help: ArgumentHelp("With --pending: checkpoints created within this window (s, m, h, d, w; as pp-select --since), each run's newest and the deployed one; `all` for every checkpoint.", valueName: "duration"))
    var since = "24h"

    @Option(name: .long, help: ArgumentHelp("Print the chain of parents of this checkpoint and the shards each trained on.", valueName: "ckpt"))
    var lineage: String?

    func validate() throws {
        let modes = (checkpoint != nil ? 1 : 0) + (pending ? 1 : 0) + (lineage != nil ? 1 : 0)
        if modes != 1 { throw ValidationError("give exactly one of CKPT, --pending, --lineage CKPT") }
        if let d = recentDays, d < 1 { throw ValidationError("--recent-days must be at least 1") }
        if let n = recentExamples, n < 1 { throw ValidationError("--recent-examples must be at least 1") }
        if recentDays != nil && recentExamples != nil { throw ValidationError("give --recent-examples or --recent-days, not both") }
        if new && !pending { throw ValidationError("--new goes with --pending") }
        if pending && !data.isEmpty { throw ValidationError("--pending scores the holdout set; --data is for one CKPT") }
        if since != "all" && Clock.duration(since) == nil { throw ValidationError("--since: not a duration: \(since)") }
    }

    func run() throws {
        let root = rootOptions.resolved
        try exitingOnFailure(tool) {
            if let c = checkpoint { try scoreOne(c, root: root) }
            else if let c = lineage { try printLineage(c, root: root) }
            else { try scorePending(root: root) }
        }
    }

    func scoreOne(_ path: String, root: Root) throws {
        guard FileIO.exists(path) else { throw PPError("\(path): no such checkpoint", status: .noInput) }
        let set = try loadEvalSet(data: data, root: root, saveIndex: !noStore)
        let result: EvalResult
        if !noStore && data.isEmpty {
            let real = FileIO.realPath(path) ?? path
            result = try scoreStored(real, meta: try Checkpoint.readHead(path: real).meta, set: set, root: root, slicing: slicing)
        } else {
            let ck = try loadCheckpoint(path)
            let examples: ExampleFile
            (result, examples) = evaluate(ck.model, identity: identity(path: path, meta: ck.meta, root: root),
                                          set: set, slicing: slicing)
            if !noStore { try store(result, examples, root: root) }
        }
        try emit(try result.json())
        if !noStore && data.isEmpty {
            try publishEvalMetrics(root: root, evalset: result.evalset, lastExamplesPerSecond: result.examplesPerSecond)
        }
    }

    /// The checkpoints selection can still choose, plus the deployed one, resolved, without
    /// duplicates: of every run, those created at or after `from` (by the stamp in their name;
    /// nil = all) and its newest. Older ones are never scored again: pp-select's window
    /// (--since) would not consider them, so a growing holdout set does not make the work grow
    /// with the history (issue 13).
    static func allCheckpoints(_ root: Root, from: Double? = nil) throws -> [String] {
        var out: [String] = [], seen = Set<String>()
        for run in try FileIO.list(root.runs) {
            let dir = root.checkpoints(run: run)
            let names = try Root.checkpointFiles(in: dir)
            for f in names {
                if let from, f != names.last, let t = CheckpointName.time(of: f), t < from { continue }
                let p = dir + "/" + f
                if seen.insert(FileIO.realPath(p) ?? p).inserted { out.append(p) }
            }
        }
        if FileIO.exists(root.deployed), let r = FileIO.realPath(root.deployed), seen.insert(r).inserted { out.append(r) }
        return out
    }

    /// "<ckpt file sans .ppc>--<RUN>" of every checkpoint that has a stored result on any
    /// eval set (a result is "<stem>--<evalset16>.json").
    static func scoredStems(_ root: Root) throws -> Set<String> {
        guard FileIO.exists(root.evals) else { return [] }
        return Set(try FileIO.list(root.evals).compactMap(EvalNames.resultStem))
    }

    func scorePending(root: Root) throws {
        try FileIO.makeDirectories(root.locks)
        let lock = try FileLock(path: root.lock("pp-eval"), wait: true)
        defer { lock.release() }
        let log = Log.make(tool)
        Temps.sweep([root.evals, root.metrics], log: log)   // temps of dead writers (Temps.swift)
        let todo = try pendingCheckpoints(root: root, log: log)
        let set = try loadEvalSet(data: [], root: root)
        var worst = ExitStatus.ok
        var lastSpeed: Double? = nil
        defer {
            // Metrics describe what is stored, even when one checkpoint failed.
            if let v = lastSpeed { try? publishEvalMetrics(root: root, evalset: set.hash, lastExamplesPerSecond: v) }
        }
        for p in todo {
            do {
                let real = FileIO.realPath(p) ?? p
                let meta = try Checkpoint.readHead(path: real).meta
                let id = identity(path: real, meta: meta, root: root)
                let base = EvalNames.base(checkpointFile: id.file, run: id.run, evalset: set.hash)
                if FileIO.exists(root.evals + "/" + base + ".json") { continue }
                let result = try scoreStored(real, meta: meta, set: set, root: root, slicing: slicing)
                if (result.scoredExamples ?? 0) > 0 { lastSpeed = result.examplesPerSecond }
                try emit(try result.json())
            } catch let e as PPError {
                // One bad checkpoint must not stop the others: report it, carry on, and say so
                // in the exit status.
                Log.fail(tool, e.message)
                if e.status == .unavailable { throw e }
                if worst == .ok || e.status == .corrupt { worst = e.status }
            }
        }
        if worst != .ok { throw ExitCode(worst.rawValue) }
    }

    /// What `--pending` scores: with --new, the checkpoints of the window that have no result
    /// at all; otherwise those without a result for the current holdout set. Throws exit 2
    /// (nothing to do) when there is none.
    func pendingCheckpoints(root: Root, log: Logger) throws -> [String] {
        let from = since == "all" ? nil : Clock.now() - Clock.duration(since)!
        let todo: [String]
        if new {
            // Arrivals only: a listing of evals/ says which checkpoints were ever scored; the
            // eval set is not even hashed when none is new, so the every-minute timer and a
            // holdout shard every few minutes cost a directory listing (issue 13).
            let scored = try Score.scoredStems(root)
            todo = try Score.allCheckpoints(root, from: from).filter { p in
                guard let id = EvalNames.checkpointID(path: FileIO.realPath(p) ?? p) else { return true }
                return !scored.contains(EvalNames.checkpointStem(id.file, run: id.run))
            }
            if todo.isEmpty {
                log.info("nothing pending: every checkpoint has a result (--new)")
                throw ExitCode(ExitStatus.nothingToDo.rawValue)
            }
        } else {
            let (window, hash) = try EvalSet.currentHoldout(root, warn: { log.warning("\($0)") })
            saveHoldoutIndex(HoldoutIndex.shared(root), root: root, window: window)
            todo = try Score.allCheckpoints(root, from: from).filter { p in
                let id = EvalNames.checkpointID(path: FileIO.realPath(p) ?? p) ?? ("", FileIO.split(p).name)
                // A checkpoint outside runs/ is named by its metadata's run, known only once loaded.
                if id.run.isEmpty { return true }
                let base = EvalNames.base(checkpointFile: id.file, run: id.run, evalset: hash)
                return !FileIO.exists(root.evals + "/" + base + ".json")
            }
            if todo.isEmpty {
                log.info("nothing pending", metadata: ["evalset": "\(hash.prefix(16))"])
                throw ExitCode(ExitStatus.nothingToDo.rawValue)
            }
        }
        return todo
    }

    /// Scores the checkpoint at `real` (a resolved path; `meta` from its head, which the
    /// caller has read) on the root's holdout set `set` through its per-shard score cache
    /// (ScoreCache.swift): only shards the checkpoint was never scored on go through the
    /// model, and the checkpoint is loaded (and fully checked) only then. Stores the cache,
    /// then the per-example file, then the result, each atomically.
    func scoreStored(_ real: String, meta: CheckpointMeta, set: EvalSet, root: Root, slicing: Slicing) throws -> EvalResult {
        let id = identity(path: real, meta: meta, root: root)
        let bytes = FileIO.lstatOrNil(real).map { Int($0.st_size) } ?? -1
        let cachePath = root.evals + "/" + EvalNames.scoreCache(checkpointFile: id.file, run: id.run)
        let log = Log.make(tool)
        let cache = ScoreCache.read(path: cachePath, checkpoint: id.id, checkpointBytes: bytes, warn: { log.warning("\($0)") })
        let sc = try Scorer.scoreCached(set, checkpoint: id.id, checkpointBytes: bytes, cache: cache) {
            let ck = try loadCheckpoint(real)
            guard ck.meta.step == meta.step, ck.meta.createdAt == meta.createdAt else {
                throw PPError.corrupt(real, "changed while it was being scored")
            }
            return ck.model
        }
        let (result, examples) = evaluate(outcomes: sc.outcomes, seconds: sc.seconds, scored: sc.scored,
                                          identity: id, set: set, slicing: slicing)
        try FileIO.makeDirectories(root.evals)
        if sc.loaded || cache.map({ $0.shards.map(\.sha256) }) != sc.cache.shards.map(\.sha256) {
            try FileIO.publish(try sc.cache.bytes(), to: cachePath)
        }
        try store(result, examples, root: root)
        return result
    }

    /// One JSON line per checkpoint from CKPT back through its parents (Shared Lineage.of,
    /// reading only the checkpoints' heads): its step, creation time, parent and the shards it
    /// trained on since that parent, each marked with why when it is quarantined or suspect.
    func printLineage(_ path: String, root: Root) throws {
        guard FileIO.exists(path) else { throw PPError("\(path): no such checkpoint", status: .noInput) }
        let lin = try Lineage.of(checkpoint: path, root: root)
        let poison = try Poison.shards(root: root)
        for p in lin.chain {
            let meta = try Checkpoint.readHead(path: p).meta
            let id = identity(path: p, meta: meta, root: root)
            let shards = meta.lineage.map { s in
                "{\"name\":\(jsonString(s.name)),\"sha256\":\(jsonString(s.sha256))"
                    + (poison[s.name].map { ",\"poisoned\":\(jsonString($0))" } ?? "") + "}"
            }
            let parent = meta.parent.map(jsonString) ?? "null"
            try emit("{\"checkpoint\":\(jsonString(id.id)),\"step\":\(meta.step),\"created_at\":\(jsonString(meta.createdAt)),"
                     + "\"parent\":\(parent),\"shards\":[\(shards.joined(separator: ","))]}")
        }
        if let m = lin.missingParent { try emit("{\"checkpoint\":\(jsonString(m)),\"missing\":true}") }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Label text lines (or JSON Lines with \"text\") from stdin, one JSON line each on stdout.",
        discussion: "Output: {\"label\":L,\"prob\":P,\"top\":[{\"label\":L,\"prob\":P},...]}. Answers each line as soon as it is read, so it works on an endless pipe. EXIT STATUS: 0 done, 1 some lines were not valid JSON (they got {\"line\":N,\"error\":...}), 65 corrupt checkpoint."
    )

    @Argument(help: "The checkpoint file (.ppc).")
    var checkpoint: String

    @Option(name: [.customShort("k"), .customLong("k")], help: "How many labels to list under \"top\".")
    var k = 5

    func validate() throws {
        if k < 1 { throw ValidationError("-k must be at least 1") }
    }

    func run() throws {
        try exitingOnFailure(tool) {
            guard FileIO.exists(checkpoint) else { throw PPError("\(checkpoint): no such checkpoint", status: .noInput) }
            let ck = try loadCheckpoint(checkpoint)
            let stream = PredictStream(model: ck.model, k: k)
            try stream.run(input: 0, output: 1)
            if stream.errors > 0 {
                Log.fail(tool, "\(stream.errors) input line(s) were not JSON objects with a string \"text\"")
                throw ExitCode(ExitStatus.partial.rawValue)
            }
        }
    }
}

BLASLibrary.prepare()   // before any thread: OpenBLAS's environment (TextModel/BLAS.swift)
PPEval.main()
