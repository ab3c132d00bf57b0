// The guard at the door (issue 7, layer 2): the loss of each shard as the trainer first
// trains on it (new data, not replays) is compared with the losses of the recently accepted
// shards. A spike far outside that range, or a NaN/inf loss, stops the shard; the loop
// (TrainLoop) then reverts to the state before it, marks it suspect and goes on without it.
//
// A shard's loss is the mean, weighted by its examples in each batch, of the training losses
// of the batches that carry its examples (DataFeed gives each batch in `new` mode one new
// shard only). Each example's loss is measured before the update it causes, so the figure
// is the model's loss on data it has not seen yet, like a held-out loss; the replay share
// in those batches dilutes it by the same amount for every shard.
//
// This file holds the numbers and the verdict; it does not train, revert or write files.

import Foundation
import Shared

struct ShardGuard {
    var policy: TrainPolicy
    /// Recently accepted shards and the shard being judged; carried in checkpoints.
    var state: GuardState
    /// How many accepted shards the checkpoint meta keeps (>= any sensible window).
    static let keep = 64

    enum Verdict: Equatable {
        /// Accepted; `judged` is false when there was no range yet or too few examples.
        case accepted(loss: Double, judged: Bool, median: Double?, threshold: Double?)
        case spike(loss: Double, median: Double, threshold: Double)
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

    /// The reference losses: the last `guardWindow` accepted shards.
    var reference: [Double] { state.recent.suffix(policy.guardWindow).map(\.loss) }

    /// The verdict on the shard being judged, whose first pass just ended. An accepted shard
    /// joins the reference range; either way nothing is being judged afterwards.
    mutating func finish() -> Verdict? {
        guard let j = state.judging else { return nil }
        state.judging = nil
        let ref = reference
        if policy.guardEnabled, j.examples >= policy.guardMinExamples, let (median, limit) = policy.threshold(reference: ref) {
            if j.loss > limit { return .spike(loss: j.loss, median: median, threshold: limit) }
            accept(j)
            return .accepted(loss: j.loss, judged: true, median: median, threshold: limit)
        }
        accept(j)
        return .accepted(loss: j.loss, judged: false, median: ref.isEmpty ? nil : TrainPolicy.median(ref), threshold: nil)
    }

    private mutating func accept(_ e: GuardState.Entry) {
        // Too few examples to mean anything: the shard is trained on, but its loss does not
        // shape the range.
        if e.examples < policy.guardMinExamples { return }
        state.recent.append(e)
        if state.recent.count > ShardGuard.keep { state.recent.removeFirst(state.recent.count - ShardGuard.keep) }
    }

    /// The threshold the next shard would be held to (nil: no range yet, or the guard is off).
    var currentThreshold: Double? {
        guard policy.guardEnabled else { return nil }
        return policy.threshold(reference: reference)?.threshold
    }
}
