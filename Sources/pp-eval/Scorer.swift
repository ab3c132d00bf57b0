// Scoring: runs a model over an eval set and keeps one ExampleOutcome per example, then turns
// the outcomes into an EvalResult (whole set, recent and old slices). The model is anything
// that gives probabilities over its labels for one example (`Predictor`); checkpoints are
// loaded in CheckpointAccess.swift. This file does not read or write the state folder.

import Shared

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
        let ml = model.labels
        let other = UInt32(set.labels.count)
        var evalIndex: [String: Int] = [:]
        for (i, l) in set.labels.enumerated() { evalIndex[l] = i }
        let modelToEval: [UInt32] = ml.map { evalIndex[$0].map(UInt32.init) ?? other }
        var evalToModel = [Int](repeating: -1, count: set.labels.count)
        for (m, l) in ml.enumerated() { if let e = evalIndex[l] { evalToModel[e] = m } }

        var out = [ExampleOutcome]()
        out.reserveCapacity(set.count)
        var probs = [Float](repeating: 0, count: max(ml.count, 1))
        probs.withUnsafeMutableBufferPointer { pb in
            let k = ml.count
            set.forEach { truth, tokens in
                if k == 0 {
                    out.append(ExampleOutcome(truth: truth, pred: other, pTrue: 0, pTop: 0, top5: false))
                    return
                }
                model.predict(tokens: tokens, probs: UnsafeMutableBufferPointer(rebasing: pb[0..<k]))
                var best = 0
                var bestP = pb[0]
                for j in 1..<k where pb[j] > bestP { best = j; bestP = pb[j] }
                let tm = evalToModel[Int(truth)]
                var pTrue: Float = 0
                var top5 = false
                if tm >= 0 {
                    pTrue = pb[tm]
                    // Rank of the true label: labels strictly more probable than it.
                    var above = 0
                    for j in 0..<k where pb[j] > pTrue { above += 1; if above >= 5 { break } }
                    top5 = above < 5
                }
                out.append(ExampleOutcome(truth: truth, pred: modelToEval[best], pTrue: pTrue, pTop: bestP, top5: top5))
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
    let seconds = Clock.monotonic() - t0
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
        examplesPerSecond: seconds > 0 ? (Double(outcomes.count) / seconds).rounded() : 0,
        examplesFile: base + "." + ExampleFile.fileExtension,
        all: m.all, recent: m.recent, old: m.old)
    result.recentExamples = recentExamples
    return (result, ExampleFile(evalset: set.hash, labels: set.labels, outcomes: outcomes, slices: flags))
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
