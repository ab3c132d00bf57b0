// Scoring: runs a model over an eval set and keeps one ExampleOutcome per example, then turns
// the outcomes into an EvalResult (whole set, recent and old slices). The model is anything
// that gives probabilities over its labels for one example (`Predictor`); checkpoints are
// loaded in CheckpointAccess.swift. This file does not read or write the state folder.

import Shared
import TextModel

/// What scoring needs from a model: its label table and one example's probabilities.
protocol Predictor: AnyObject {
    var labels: [String] { get }
    /// Fills `probs` (labels.count entries) for one example; `tokens` are normalised tokens
    /// joined by single spaces (the shard form).
    func predict(tokens: UnsafeRawBufferPointer, probs: UnsafeMutableBufferPointer<Float>)
}

enum Scorer {
    /// One outcome per example of `set`, in its order. The model's labels are mapped onto the
    /// eval set's table once; a predicted label the set lacks becomes "other" (labels.count).
    static func score(_ set: EvalSet, _ model: Predictor) -> [ExampleOutcome] {
        combine(set, perShard: set.shards.map { scoreShard($0, model) }, modelLabels: model.labels)
    }

    /// One shard's outcomes in the model's label table: what the score cache keeps. They do
    /// not depend on the eval set the shard is part of (a shard's true labels are its own).
    static func scoreShard(_ shard: Shard, _ model: Predictor) -> [ModelOutcome] {
        let ml = model.labels
        let k = ml.count
        var modelIndex: [String: Int] = [:]
        for (m, l) in ml.enumerated() { modelIndex[l] = m }
        let shardToModel: [Int] = shard.header.labels.map { modelIndex[$0] ?? -1 }
        var out = [ModelOutcome]()
        out.reserveCapacity(shard.header.examples)
        var probs = [Float](repeating: 0, count: max(k, 1))
        probs.withUnsafeMutableBufferPointer { pb in
            shard.forEach { li, _, tokens in
                if k == 0 {
                    out.append(ModelOutcome(pred: ModelOutcome.noLabel, pTrue: 0, pTop: 0, top5: false))
                    return
                }
                model.predict(tokens: tokens, probs: UnsafeMutableBufferPointer(rebasing: pb[0..<k]))
                var best = 0
                var bestP = pb[0]
                for j in 1..<k where pb[j] > bestP { best = j; bestP = pb[j] }
                let tm = li < shardToModel.count ? shardToModel[li] : -1
                var pTrue: Float = 0
                var top5 = false
                if tm >= 0 {
                    pTrue = pb[tm]
                    // Rank of the true label: labels strictly more probable than it.
                    var above = 0
                    for j in 0..<k where pb[j] > pTrue { above += 1; if above >= 5 { break } }
                    top5 = above < 5
                }
                out.append(ModelOutcome(pred: UInt32(best), pTrue: pTrue, pTop: bestP, top5: top5))
            }
        }
        return out
    }

    /// The eval set's outcomes from per-shard ones (`perShard[k]` for `set.shards[k]`, in the
    /// model's label table `modelLabels`): true labels and predictions mapped onto the set's
    /// table; a predicted label the set lacks becomes "other" (labels.count).
    static func combine(_ set: EvalSet, perShard: [[ModelOutcome]], modelLabels ml: [String]) -> [ExampleOutcome] {
        precondition(perShard.count == set.shards.count)
        let other = UInt32(set.labels.count)
        var evalIndex: [String: Int] = [:]
        for (i, l) in set.labels.enumerated() { evalIndex[l] = i }
        let modelToEval: [UInt32] = ml.map { evalIndex[$0].map(UInt32.init) ?? other }
        var out = [ExampleOutcome]()
        out.reserveCapacity(set.count)
        for (k, s) in set.shards.enumerated() {
            let map = set.labelMaps[k], mo = perShard[k]
            precondition(mo.count == s.header.examples)
            var i = 0
            s.forEach { li, _, _ in
                let o = mo[i]
                i += 1
                let pred = o.pred == ModelOutcome.noLabel || Int(o.pred) >= modelToEval.count ? other : modelToEval[Int(o.pred)]
                out.append(ExampleOutcome(truth: map[li], pred: pred, pTrue: o.pTrue, pTop: o.pTop, top5: o.top5))
            }
        }
        return out
    }

    /// The metrics of the whole set and of its recent and old slices.
    static func slices(_ outcomes: [ExampleOutcome], flags: [UInt8], labels: [String])
        -> (all: SliceMetrics, recent: SliceMetrics, old: SliceMetrics) {
        var all = MetricsAccumulator(labelCount: labels.count)
        var recent = all, old = all
        for (i, o) in outcomes.enumerated() {
            all.add(o)
            if flags[i] & ExampleFlag.recent != 0 { recent.add(o) }
            if flags[i] & ExampleFlag.old != 0 { old.add(o) }
        }
        return (all.finish(labels: labels), recent.finish(labels: labels), old.finish(labels: labels))
    }
}

/// Who was scored, as the result names it.
struct CheckpointIdentity {
    var run: String
    var file: String
    /// Relative to the root, or absolute outside it.
    var path: String
    var step: Int
    var createdAt: String

    var id: String { run + "/" + file }
}

/// Scores `model` on `set` and builds the result and its per-example file (not stored).
/// The recent and old slices: by count (`.examples(n)`: the newest and the oldest n examples,
/// the default) or by days of the data's own time (`.days(d)`).
enum Slicing: Equatable {
    case examples(Int), days(Int)
}

func evaluate(_ model: Predictor, identity: CheckpointIdentity, set: EvalSet, slicing: Slicing)
    -> (EvalResult, ExampleFile) {
    let t0 = Clock.monotonic()
    let outcomes = Scorer.score(set, model)
    return evaluate(outcomes: outcomes, seconds: Clock.monotonic() - t0, scored: outcomes.count,
                    identity: identity, set: set, slicing: slicing)
}

/// The result and per-example file of outcomes already computed (`scored` of them went through
/// the model just now, in `seconds`; the rest came from the score cache).
func evaluate(outcomes: [ExampleOutcome], seconds: Double, scored: Int, identity: CheckpointIdentity,
              set: EvalSet, slicing: Slicing) -> (EvalResult, ExampleFile) {
    let bounds: (recentFrom: Int64, oldTo: Int64)
    var recentDays = 0, recentExamples: Int? = nil
    switch slicing {
    case .examples(let n): bounds = set.boundsByCount(n); recentExamples = n
    case .days(let d): bounds = (set.recentFrom(days: d), set.oldTo(days: d)); recentDays = d
    }
    let flags = set.sliceFlags(recentFrom: bounds.recentFrom, oldTo: bounds.oldTo)
    let m = Scorer.slices(outcomes, flags: flags, labels: set.labels)
    let base = EvalNames.base(checkpointFile: identity.file, run: identity.run, evalset: set.hash)
    var result = EvalResult(
        checkpoint: identity.id, run: identity.run, path: identity.path, step: identity.step,
        checkpointCreatedAt: identity.createdAt, evaluatedAt: Clock.iso(Clock.now()),
        evalset: set.hash, evalsetSource: set.source, evalsetFiles: set.shards.count, recentDays: recentDays,
        recentFrom: Clock.iso(Double(bounds.recentFrom)), oldTo: Clock.iso(Double(bounds.oldTo)),
        seconds: (seconds * 1e6).rounded() / 1e6,
        examplesPerSecond: seconds > 0 ? (Double(scored) / seconds).rounded() : 0,
        examplesFile: base + "." + ExampleFile.fileExtension,
        all: m.all, recent: m.recent, old: m.old)
    result.recentExamples = recentExamples
    result.scoredExamples = scored
    return (result, ExampleFile(evalset: set.hash, labels: set.labels, outcomes: outcomes, slices: flags))
}

/// Scoring through the per-shard score cache (ScoreCache.swift).
struct CachedScoring {
    var outcomes: [ExampleOutcome]
    /// Examples that went through the model (the others came from the cache).
    var scored: Int
    var seconds: Double
    /// The cache to store with the result: exactly the set's shards.
    var cache: ScoreCache
    /// Whether the checkpoint had to be loaded.
    var loaded: Bool
}

extension Scorer {
    /// Scores `set` for the checkpoint named `checkpoint` ("RUN/FILE"): each shard from `cache`
    /// when it holds that shard's digest, the others through the model, which `load` gives
    /// (called at most once, and not at all when every shard is cached).
    static func scoreCached(_ set: EvalSet, checkpoint: String, checkpointBytes: Int, cache: ScoreCache?,
                            load: () throws -> Predictor) throws -> CachedScoring {
        var per: [[ModelOutcome]?] = set.shards.enumerated().map { k, s in
            cache?.outcomes(sha256: set.digests[k], examples: s.header.examples)
        }
        var labels = cache?.labels ?? []
        var scored = 0, seconds = 0.0, loaded = false
        if per.contains(where: { $0 == nil }) {
            let model = try load()
            loaded = true
            if model.labels != labels {
                // Another model's table (cannot happen for one checkpoint file): trust nothing.
                per = per.map { _ in nil }
                labels = model.labels
            }
            let t0 = Clock.monotonic()
            for (k, s) in set.shards.enumerated() where per[k] == nil {
                per[k] = scoreShard(s, model)
                scored += s.header.examples
            }
            seconds = Clock.monotonic() - t0
        }
        let perShard = per.map { $0! }
        let outcomes = combine(set, perShard: perShard, modelLabels: labels)
        let kept = set.shards.indices.filter { !set.digests[$0].isEmpty }.map { (sha256: set.digests[$0], outcomes: perShard[$0]) }
        return CachedScoring(outcomes: outcomes, scored: scored, seconds: seconds,
                             cache: ScoreCache(checkpoint: checkpoint, checkpointBytes: checkpointBytes, labels: labels, shards: kept), loaded: loaded)
    }
}

/// Stores a result: the per-example file first, then the JSON, both atomically, so a JSON
/// that exists always has its per-example file. Returns the JSON path.
@discardableResult
func store(_ result: EvalResult, _ examples: ExampleFile, root: Root) throws -> String {
    try FileIO.makeDirectories(root.evals)
    try FileIO.publish(try examples.bytes(), to: root.evals + "/" + result.examplesFile)
    let base = String(result.examplesFile.dropLast(ExampleFile.fileExtension.count + 1))
    let path = root.evals + "/" + base + ".json"
    try FileIO.publish(try result.json() + "\n", to: path)
    return path
}
