// Where a trainer starts from: `--init CKPT`, else the run's newest valid checkpoint, else
// the root's `deployed` model, else a fresh model from the flags. Also the rule that model
// flags apply only when a run is created: a flag that contradicts the checkpoint a run
// continues is refused (exit 64), never silently ignored. This file loads; it does not train.

import Foundation
import Logging
import Shared
import TextModel
import Training

/// The model hyperparameter flags as given on the command line (nil = not given).
struct ModelFlags {
    var dim: Int?
    var wordNgrams: Int?
    var minn: Int?
    var maxn: Int?
    var bucket: Int?
    var minCount: Int?
    var vocabCapacity: Int?
    var hidden: Int?
    var threads: Int?
    var seed: UInt64?
    var subwordWeight: ModelConfig.SubwordWeight?
    /// A static multi-pass job (`--once --passes N`): a model it creates defaults to the token
    /// sub-word weight (and, in TrainLoop, the multi-pass rate), the settings measured best on
    /// static data seen several times; continuous training keeps `each`, best on the streams
    /// (docs/research.md, "Sub-word weight"). Not a flag: a run it continues keeps its config.
    var multiPass = false

    /// A new model's config before the flags: the defaults, or a multi-pass job's.
    func freshBase() -> ModelConfig {
        var c = ModelConfig()
        if multiPass { c.subwordWeight = .token }
        return c
    }

    /// `base` with every given flag applied.
    func config(base: ModelConfig = ModelConfig()) -> ModelConfig {
        var c = base
        if let v = dim { c.dim = v }
        if let v = wordNgrams { c.wordNgrams = v }
        if let v = minn { c.minn = v }
        if let v = maxn { c.maxn = v }
        if let v = bucket { c.bucket = v }
        if let v = minCount { c.minCount = v }
        if let v = vocabCapacity { c.vocabCapacity = v }
        if let v = hidden { c.hidden = v }
        if let v = threads { c.threads = v }
        if let v = seed { c.seed = v }
        if let v = subwordWeight { c.subwordWeight = v }
        return c
    }

    /// The given flags whose value differs from `c`, as "--dim 8 (run has 100)".
    func conflicts(with c: ModelConfig) -> [String] {
        var out: [String] = []
        func check<T: Equatable>(_ flag: String, _ given: T?, _ have: T) {
            if let g = given, g != have { out.append("--\(flag) \(g) (the model has \(have))") }
        }
        check("dim", dim, c.dim)
        check("word-ngrams", wordNgrams, c.wordNgrams)
        check("minn", minn, c.minn)
        check("maxn", maxn, c.maxn)
        check("bucket", bucket, c.bucket)
        check("min-count", minCount, c.minCount)
        check("vocab-capacity", vocabCapacity, c.vocabCapacity)
        check("hidden", hidden, c.hidden)
        check("threads", threads, c.threads)
        check("seed", seed, c.seed)
        check("subword-weight", subwordWeight?.rawValue, c.subwordWeight.rawValue)
        return out
    }
}

/// The state a trainer starts in.
struct StartPoint {
    var trainer: Trainer
    var config: ModelConfig
    var knobs: Knobs
    var step: Int
    var tokens: Int
    var cursor: DataCursor
    /// The checkpoint file it continues (nil: fresh) and its "RUN/FILE" name for meta.parent.
    var path: String?
    var parent: String?
    /// For logs and status: "fresh", "resume", "init", "deployed".
    var kind: String
    /// The shard guard's state recorded in the checkpoint (nil: fresh, or written before the guard).
    var guardState: GuardState?
}

enum Start {
    /// "RUN/FILE" for a checkpoint under runs/RUN/checkpoints/ (symlinks resolved), else the
    /// path as given.
    static func parentName(_ path: String) -> String {
        var real = path
        if let r = realpath(path, nil) { real = String(cString: r); free(r) }
        let c = real.split(separator: "/").map(String.init)
        if c.count >= 4, c[c.count - 2] == "checkpoints", c[c.count - 4] == "runs" {
            return c[c.count - 3] + "/" + c[c.count - 1]
        }
        return path
    }

    static func fromCheckpoint(_ ck: Checkpoint, path: String, kind: String) throws -> StartPoint {
        // The knobs stored in a checkpoint are checked like those of control.json: a run must
        // not start (or resume) with a learning rate that trains nothing or diverges.
        if let why = ck.meta.knobs.problem { throw PPError.corrupt(path, "knobs stored in the checkpoint: \(why)") }
        let t = try Trainer(checkpoint: ck)
        return StartPoint(trainer: t, config: ck.meta.config, knobs: ck.meta.knobs, step: ck.meta.step,
                          tokens: ck.meta.tokens, cursor: ck.meta.cursor, path: path, parent: parentName(path), kind: kind,
                          guardState: ck.meta.guardState)
    }

    /// The data cursor of a fresh model.
    static func freshCursor(_ config: ModelConfig) -> DataCursor {
        var cursor = DataCursor()
        cursor.rngState = config.seed &* 0x9E37_79B9_7F4A_7C15 ^ 0x5EED
        return cursor
    }

    /// The first suspect shard in the full lineage of checkpoint `path`, if any (nil when
    /// there are no suspects: nothing is read then).
    static func suspectIn(_ path: String, suspects: Set<String>, root: Root) throws -> String? {
        if suspects.isEmpty { return nil }
        do {
            return try Lineage.of(checkpoint: path, root: root).shards.first { suspects.contains($0.name) }?.name
        } catch let e as PPError where e.status == .corrupt || e.status == .noInput {
            // An ancestor is unreadable: judge by what this checkpoint itself records (its own
            // lineage and its cursor, which lists every shard trained on that is still in
            // shards/). Its own head failing is the caller's "unreadable checkpoint".
            let meta = try Checkpoint.readHead(path: path, cursor: true).meta
            let names = meta.lineage.map(\.name) + meta.cursor.shards.filter { $0.passes > 0 || $0.position > 0 }.map(\.shard.name)
            return names.first { suspects.contains($0) }
        }
    }

    /// Picks and loads the start point. Throws PPError (usage for conflicting flags, corrupt
    /// or noInput for a bad --init).
    static func resolve(root: Root, run: String, initPath: String?, flags: ModelFlags, knobs: Knobs,
                        suspects: Set<String> = [], log: Logger) throws -> StartPoint {
        func refuseConflicts(_ c: ModelConfig, _ what: String) throws {
            let bad = flags.conflicts(with: c)
            if !bad.isEmpty {
                throw PPError("\(what) was created with other model flags: \(bad.joined(separator: ", ")); model flags apply only when a run is created (drop them, or start a new --run)", status: .usage)
            }
        }
        let dir = root.checkpoints(run: run)
        let files = try Root.checkpointFiles(in: dir)
        // --init seeds a run that has no checkpoint yet. Once the run has its own, a restart
        // resumes them (a unit whose flags carry --init must not go back to it on every
        // restart, nor undo a `pp-train rewind`).
        if let p = initPath {
            guard FileIO.exists(p) else { throw PPError("\(p): no such checkpoint", status: .noInput) }
            if files.isEmpty {
                let ck = try Checkpoint.load(path: p)
                try refuseConflicts(ck.meta.config, "--init \(p)")
                if let b = try? suspectIn(p, suspects: suspects, root: root) {
                    log.warning("--init \(p): its lineage contains suspect shard \(b) of run \(run); starting from it as asked")
                }
                return try fromCheckpoint(ck, path: p, kind: "init")
            }
            log.notice("--init ignored: run \(run) has checkpoints of its own; resuming them (--init only seeds a new run)", metadata: ["init": "\(p)"])
        }
        for f in files.reversed() {
            let p = dir + "/" + f
            do {
                if let bad = try suspectIn(p, suspects: suspects, root: root) {
                    log.warning("skipping checkpoint \(f): its lineage contains suspect shard \(bad) (pp-train rewind --before \(bad) --run \(run) moves it aside)")
                    continue
                }
                let ck = try Checkpoint.load(path: p)
                try refuseConflicts(ck.meta.config, "run \(run)")
                return try fromCheckpoint(ck, path: p, kind: "resume")
            } catch let e as PPError where e.status == .corrupt {
                log.warning("skipping unreadable checkpoint: \(e.message)")
            }
        }
        if FileIO.exists(root.deployed) {
            do {
                if let bad = try suspectIn(root.deployed, suspects: suspects, root: root) {
                    throw PPError("its lineage contains suspect shard \(bad) of run \(run)", status: .corrupt)
                }
                let ck = try Checkpoint.load(path: root.deployed)
                let bad = flags.conflicts(with: ck.meta.config)
                if bad.isEmpty { return try fromCheckpoint(ck, path: root.deployed, kind: "deployed") }
                log.notice("new run: model flags differ from the deployed model, starting fresh", metadata: ["differ": "\(bad.joined(separator: ", "))"])
            } catch let e as PPError where e.status == .corrupt || e.status == .ioError {
                log.warning("not starting from deployed: \(e.message)")
            }
        }
        let config = flags.config(base: flags.freshBase())
        return StartPoint(trainer: try Trainer(config: config, knobs: knobs), config: config, knobs: knobs,
                          step: 0, tokens: 0, cursor: freshCursor(config), path: nil, parent: nil, kind: "fresh")
    }
}
