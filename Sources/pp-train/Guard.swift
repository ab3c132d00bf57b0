// The guard at the door (issue 7, layer 2; issue 14: drift is not damage). The loss of each
// shard as the trainer first trains on it (new data, not replays) is compared with the
// losses of the recently accepted shards, and its label signal is measured: the model's loss
// with the shard's labels over its loss with those labels shuffled among the shard's
// examples (about 1 when the labels no longer follow from the texts, well below 1 for real
// labels, whatever the drift). Evidence of two kinds:
//
//   change   a loss far above the recent range (a spike). New labels, new words, a new mix:
//            drift raises the loss too, so a spike alone is recorded (log, status, metrics)
//            and the shard is trained on. It never marks a shard suspect by itself.
//   damage   a NaN/inf loss; or a spike AND a label signal above its limit, while the model
//            separates labels on the recently accepted shards (their median signal is at
//            most guard_signal_reference_max: a model that cannot tell labels apart on clean
//            data cannot tell a shuffled shard either). The loop (TrainLoop) then reverts to
//            the state before the shard, marks it suspect and goes on without it.
//
// `guard_spike_alone: true` in policy.json restores the old rule (a spike alone is damage).
//
// Probation (issue 14, item 2): a spike without a damage verdict only looks unusual, and so
// does a label signal above its limit without a spike (one label given to many texts: a flood
// trains its own loss down within the shard, so it never spikes, but so does a real one-label
// week), so the shard is trained on with its revert point kept (the newest checkpoint that has not trained
// on it: the loop writes none while a shard is judged) and judged by what follows. The first
// batch of each later new shard is scored, before the model trains on it, by the model that
// learned the shard ("after") and by the model at the revert point ("before"). Once
// guard_probation_examples examples are scored: confirmed unless the after-model's mean loss
// is higher with a paired t above 2 (worse beyond noise); then the loop undoes the shard
// exactly like `pp-train rewind` (revert, mark suspect with the evidence, train the good data
// since again). One shard at a time: a spike while one is pending is only recorded. The
// before-model also lacks the good shards between the revert point and now, which favours
// confirming (a conservative bias: a doubtful shard is kept rather than undone by noise).
//
// A shard's loss is the mean, weighted by its examples in each batch, of the training losses
// of the batches that carry its examples (DataFeed gives each batch in `new` mode one new
// shard only). Each example's loss is measured before the update it causes, so the figure
// is the model's loss on data it has not seen yet, like a held-out loss; the replay share
// in those batches dilutes it by the same amount for every shard. The label signal is
// measured on the first guard_signal_examples new examples of the shard, each scored by the
// model just before the batch that carries it (examples whose label the model did not know
// when the shard began are left out). It is not checkpointed mid-shard: a trainer stopped
// mid-shard measures the signal on the rest of the shard only.
//
// This file holds the numbers and the verdict; it does not train, revert or write files.

import Foundation
import Shared
import TextModel
import Training

/// The label signal of one shard, accumulated example by example: with S[l] the sum over
/// scored examples of the loss of label l, c[l] the count of label l and T the sum of the
/// losses of the true labels, the leave-one-out shuffled loss is (sum_l c[l] S[l] - T) / (n-1)
/// and the signal is T / that. O(labels) state, whatever the shard's size.
struct SignalMeter {
    let shard: String
    /// Labels the model knew when the shard began (later labels are not scored).
    let labels: Int
    var n = 0
    var trueSum = 0.0
    var perLabel: [Double]
    var counts: [Double]

    init(shard: String, labels: Int) {
        self.shard = shard
        self.labels = labels
        perLabel = [Double](repeating: 0, count: labels)
        counts = [Double](repeating: 0, count: labels)
    }

    /// Adds one example: its label's index and the model's probabilities (>= labels of them).
    mutating func add(label k: Int, probs: UnsafeMutableBufferPointer<Float>) {
        guard k >= 0, k < labels, probs.count >= labels else { return }
        n += 1
        counts[k] += 1
        for l in 0..<labels {
            let loss = -log(max(Double(probs[l]), 1e-7))
            perLabel[l] += loss
            if l == k { trueSum += loss }
        }
    }

    var signal: Double? {
        guard n >= 2 else { return nil }
        var s = 0.0
        for l in 0..<labels where counts[l] > 0 { s += counts[l] * perLabel[l] }
        let shuffled = (s - trueSum) / Double(n - 1)
        return shuffled > 0 ? trueSum / shuffled : nil
    }
}

struct ShardGuard {
    var policy: TrainPolicy
    /// Recently accepted shards and the shard being judged; carried in checkpoints.
    var state: GuardState
    /// The label signal of the shard being judged (not checkpointed).
    var meter: SignalMeter?
    /// How many accepted shards the checkpoint meta keeps (>= any sensible window).
    static let keep = 64

    enum Verdict: Equatable {
        /// Accepted; `judged` is false when there was no range yet or too few examples.
        /// `spike`: the loss was above the threshold, a change that was recorded, not stopped.
        /// `signalLimit`: set when the label signal went past its limit without a spike (the
        /// labels do not follow from the texts, yet the loss did not rise: a batch of one
        /// label, real or a flood, trains its own loss down at once); such a shard goes on
        /// probation like a spike.
        case accepted(loss: Double, judged: Bool, median: Double?, threshold: Double?, spike: Bool, signal: Double?, signalLimit: Double? = nil)
        /// Damage: a spike with labels that do not follow from the texts (or, with
        /// guard_spike_alone, any spike). `signalLimit` is nil for the old rule.
        case damaged(loss: Double, median: Double, threshold: Double, signal: Double?, signalLimit: Double?)
    }

    init(policy: TrainPolicy, state: GuardState?) {
        self.policy = policy
        self.state = state ?? GuardState()
    }

    /// Adds the loss of one batch carrying `examples` new examples of `shard`.
    mutating func add(shard: String, batchLoss: Double, examples: Int) {
        if var j = state.judging, j.shard == shard {
            let sum = j.loss * Double(j.examples) + batchLoss * Double(examples)
            j.examples += examples
            j.loss = sum / Double(j.examples)
            state.judging = j
        } else {
            state.judging = GuardState.Entry(shard: shard, loss: batchLoss, examples: examples)
        }
    }

    /// Scores the new examples of `shard` at `indices` in `batch` with `model` (before the
    /// update they cause), up to guard_signal_examples per shard.
    mutating func measure(shard: String, batch: Batch, indices: [Int], model: Model) {
        guard policy.guardSignalExamples > 0 else { return }
        if meter?.shard != shard { meter = SignalMeter(shard: shard, labels: model.labels.count) }
        guard var m = meter, m.labels >= 2 else { return }
        var probs = [Float](repeating: 0, count: max(model.labels.count, 1))
        for i in indices {
            if m.n >= policy.guardSignalExamples { break }
            guard let k = model.index(ofLabel: batch.labels[i]), k < m.labels else { continue }
            probs.withUnsafeMutableBufferPointer { p in
                batch.withTokens(i) { model.predict(tokens: $0, probs: p) }
                m.add(label: k, probs: p)
            }
        }
        meter = m
    }

    /// The reference losses: the last `guardWindow` accepted shards.
    var reference: [Double] { state.recent.suffix(policy.guardWindow).map(\.loss) }
    /// The label signals of the same shards (those that have one).
    var signalReference: [Double] { state.recent.suffix(policy.guardWindow).compactMap(\.signal).filter(\.isFinite) }

    /// The limit a shard's label signal is held to (n: its scored examples), or nil when the
    /// signal cannot judge: too few reference signals, or the model does not separate labels
    /// on them.
    func signalLimit(n: Int) -> Double? {
        let ref = signalReference
        guard ref.count >= max(1, policy.guardMinHistory), TrainPolicy.median(ref) <= policy.guardSignalReferenceMax else { return nil }
        return policy.guardSignalMax + policy.guardSignalWidth / Double(max(n, 1)).squareRoot()
    }

    /// The verdict on the shard being judged, whose first pass just ended. An accepted shard
    /// joins the reference range; either way nothing is being judged afterwards.
    mutating func finish() -> Verdict? {
        guard var j = state.judging else { return nil }
        state.judging = nil
        let m = meter?.shard == j.shard ? meter : nil
        meter = nil
        j.signal = m?.signal.map { ($0 * 1e6).rounded() / 1e6 }
        let ref = reference
        if policy.guardEnabled, j.examples >= policy.guardMinExamples, let (median, limit) = policy.threshold(reference: ref) {
            let spike = j.loss > limit
            if spike && policy.guardSpikeAlone {
                return .damaged(loss: j.loss, median: median, threshold: limit, signal: j.signal, signalLimit: nil)
            }
            if spike, let sig = j.signal, let sl = signalLimit(n: m?.n ?? 0), sig > sl {
                return .damaged(loss: j.loss, median: median, threshold: limit, signal: sig, signalLimit: sl)
            }
            accept(j)
            var doubt: Double? = nil
            if !spike, let sig = j.signal, let sl = signalLimit(n: m?.n ?? 0), sig > sl { doubt = sl }
            return .accepted(loss: j.loss, judged: true, median: median, threshold: limit, spike: spike, signal: j.signal, signalLimit: doubt)
        }
        accept(j)
        return .accepted(loss: j.loss, judged: false, median: ref.isEmpty ? nil : TrainPolicy.median(ref), threshold: nil,
                         spike: false, signal: j.signal)
    }

    private mutating func accept(_ e: GuardState.Entry) {
        // Too few examples to mean anything: the shard is trained on, but its loss does not
        // shape the range.
        if e.examples < policy.guardMinExamples { return }
        state.recent.append(e)
        if state.recent.count > ShardGuard.keep { state.recent.removeFirst(state.recent.count - ShardGuard.keep) }
    }

    enum ProbationVerdict: Equatable {
        case pending
        /// `after`, `before`: mean losses on the `n` following examples; `t`: the paired t of
        /// after - before (0 when the differences do not vary).
        case confirmed(after: Double, before: Double, n: Int, t: Double)
        case undo(after: Double, before: Double, n: Int, t: Double)
    }

    /// Puts `shard` (whose first pass just spiked without a damage verdict, or whose labels did
    /// not follow from its texts without a spike: `signal` > `signalLimit`) on probation;
    /// false when probation is off or another shard is on probation.
    mutating func startProbation(_ shard: ShardRef, loss: Double, threshold: Double, signal: Double? = nil, signalLimit: Double? = nil) -> Bool {
        guard policy.guardEnabled, policy.guardProbation, state.probation == nil else { return false }
        state.probation = GuardState.Probation(shard: shard.name, sha256: shard.sha256, loss: loss, threshold: threshold,
                                               signal: signal, signalLimit: signalLimit)
        return true
    }

    /// Adds following examples' losses under the after- and before-models (pairs) and says
    /// whether the evidence suffices: undo when the after-model is worse with t > 2.
    mutating func scoreProbation(_ pairs: [(after: Double, before: Double)]) -> ProbationVerdict {
        guard var p = state.probation else { return .pending }
        for (a, b) in pairs {
            p.n += 1; p.afterSum += a; p.beforeSum += b; p.diffSquares += (a - b) * (a - b)
        }
        state.probation = p
        guard p.n >= max(2, policy.guardProbationExamples) else { return .pending }
        let n = Double(p.n)
        let mean = (p.afterSum - p.beforeSum) / n
        let variance = max(0, (p.diffSquares - n * mean * mean) / (n - 1))
        let t = variance > 0 ? mean / (variance / n).squareRoot() : (mean > 0 ? .infinity : 0)
        state.probation = nil
        let after = p.afterSum / n, before = p.beforeSum / n
        let shown = t.isFinite ? (t * 1e3).rounded() / 1e3 : 1e9
        return mean > 0 && t > ShardGuard.probationT ? .undo(after: after, before: before, n: p.n, t: shown)
            : .confirmed(after: after, before: before, n: p.n, t: shown)
    }
    /// Worse beyond noise: a paired t above this (about 2.3% one-sided under the null).
    static let probationT = 2.0

    /// The threshold the next shard would be held to (nil: no range yet, or the guard is off).
    var currentThreshold: Double? {
        guard policy.guardEnabled else { return nil }
        return policy.threshold(reference: reference)?.threshold
    }
}
