// The batch checks of issue 7, layer 1: each compares one input's statistics (BatchStats)
// with the reference (Reference) and, where a model is deployed, with that model (the canary
// and the OOV rate). Every value is recorded whether or not it trips; a check that cannot be
// computed (no reference yet, no deployed model) says why instead of giving a value.
//
//   label_linf   max over labels |share in batch - share in reference|
//   label_js     Jensen-Shannon distance (base 2, in [0, 1]) of the label distributions
//   new_labels   share of the batch's examples whose label was never accepted before
//   oov          OOV rate of the batch's tokens against the deployed model's vocabulary,
//                minus the reference inputs' pooled OOV rate (an increase)
//   length_js    Jensen-Shannon distance of the token-count histograms (octave buckets)
//   duplicates   share of the batch's examples (sampled by hash) found in recent inputs
//   garbage      share of examples with control characters or U+FFFD
//   mojibake     share of examples with UTF-8-read-as-Latin-1 pairs ("Ã©"), which clean
//                text practically never has
//   canary       the deployed model's mean loss on the batch / its pooled mean loss on the
//                reference inputs (each measured when that input arrived)
//   label_signal the deployed model's loss with the batch's labels / its loss with the
//                labels shuffled among the batch's examples: near 1 when the labels carry
//                nothing the model recognises (a shuffled export), whatever the model's
//                overall quality or the drift; needs no reference
//   label_chance the chance that the batch's labels, shuffled at random among its examples,
//                would fit the texts at least as well as they do: the permutation test of
//                the same losses (T = the loss with the batch's labels; its mean and variance
//                over all permutations, Hoeffding's combinatorial CLT; value 1 - Phi(z),
//                z = (mean - T) / sd). About uniform on [0, 1] for shuffled labels, near 0 for
//                real ones; unlike the ratio it knows how much a shuffle could change in this
//                batch (a week dominated by one label changes little). Gated like
//                label_signal (a model that separates labels on the reference)
//
//   label_flood  the deployed model on the sample's recognised examples (at least half
//                their tokens in its vocabulary), per label l it knows: rise = share of l
//                among them - l's share in the reference; excess = (examples labelled l -
//                the model's summed probability of l) / examples. The value is the max over
//                labels of min(rise, excess): a label whose share jumped AND that is given to
//                texts that do not look like it ("90% of the texts given one label"). A real
//                rise of a label the model knows keeps the texts that say it (small excess),
//                a new label (unknown to the model) or new words (unrecognised) do not count,
//                nor a label the reference holds fewer than flood_min_reference (5) examples
//                of: too rare for the model to predict, its burst is change, like a new label
//   truncated    share of examples of at most three tokens, minus that share in the reference
//
// Two kinds of evidence (issue 14, "drift is not damage"), IngestPolicy.Limit.hard:
//   damage (hard: a trip quarantines)  duplicates, garbage, mojibake, label_signal,
//                                      label_chance, label_flood, truncated
//   change (soft: a trip is recorded   label_linf, label_js, new_labels, oov, length_js,
//    in "changed", never quarantines)  canary
// policy.json can make any check hard or soft ("hard": true/false).
//
// A check trips when value > base + width / sqrt(n) and at least min_count examples are
// behind the value (IngestPolicy.Limit). base is the policy's max, or, for a check with a
// mad_k (stream-derived), median + mad_k x 1.4826 x MAD of the check's own values on the
// reference inputs, kept within [max, cap] (the constant is a floor; the cap keeps a stream
// that drifts into damage from raising its own bar without end). Not here: the measuring
// (BatchStats.swift).

import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

struct CheckOutcome: Codable, Equatable {
    var check: String
    var value: Double?
    var threshold: Double?
    /// Examples the value is computed on (the n of the width term).
    var n: Int
    /// Examples counted by the value (new-label, duplicate, garbage examples), when it counts.
    var count: Int?
    var tripped: Bool
    /// Why there is no value (or why the check is off).
    var skipped: String?
    /// "damage" (a trip quarantines) or "change" (a trip is recorded only); nil in sidecars
    /// written before issue 14.
    var kind: String?
    /// The base of the threshold came from the reference's own values (mad_k), not the floor.
    var derived: Bool?
    var quarantines: Bool { tripped && kind == "damage" }
}

/// What the deployed model says about a batch's sample.
struct ModelView {
    var checkpoint: String
    var sampled = 0
    var tokens = 0
    var oovTokens = 0
    var canaryExamples = 0
    var canaryLossSum = 0.0
    /// Sum over examples of the loss against the other examples' labels (leave-one-out mean).
    var shuffledLossSum = 0.0
    /// label_flood: per model label, recognised examples with that label and the model's
    /// summed probability of it over the recognised examples.
    var floodCounts: [Double] = []
    var floodProbs: [Double] = []
    var recognised = 0
    var labelNames: [String] = []
    /// max over labels of min(rise, excess) (see the header), and that value in examples.
    /// `refCount`: a label's examples in the reference (of `refExamples`); labels with fewer
    /// than `minReference` are left out.
    func labelFlood(refCount: (String) -> Int, refExamples: Int, minReference: Int) -> (value: Double, count: Int)? {
        guard recognised > 0 else { return nil }
        let n = Double(recognised)
        var best = 0.0
        for l in 0..<min(floodCounts.count, labelNames.count) where floodCounts[l] > 0 {
            let c = refCount(labelNames[l])
            if c < minReference { continue }
            let rise = floodCounts[l] / n - Double(c) / Double(max(refExamples, 1))
            let excess = (floodCounts[l] - floodProbs[l]) / n
            best = max(best, min(rise, excess))
        }
        return (best, Int((best * n).rounded()))
    }
    var oovRate: Double? { tokens > 0 ? Double(oovTokens) / Double(tokens) : nil }
    var canaryLoss: Double? { canaryExamples > 0 ? canaryLossSum / Double(canaryExamples) : nil }
    /// The loss with the batch's labels over the loss with its labels shuffled among its
    /// examples (expected over all shufflings, each example's own label left out): about 1
    /// when the labels carry nothing the model recognises, well below 1 for real labels.
    var labelSignal: Double? { canaryExamples >= 2 && shuffledLossSum > 0 ? canaryLossSum / shuffledLossSum : nil }
    /// The permutation z of the true labels' loss (how many standard deviations below its
    /// mean over all shufflings), nil with fewer than 3 scored examples or no variance.
    var labelZ: Double?
    /// 1 - Phi(labelZ): the chance a random shuffle fits as well (see the header).
    var labelChance: Double? { labelZ.map { 0.5 * erfc($0 / 2.0.squareRoot()) } }

    /// Scores the sample with `model`: OOV tokens (no whole-word row) and the loss of the true
    /// label (examples with a label the model does not know are left out of the loss).
    static func measure(_ model: Model, checkpoint: String, labels: [String], sample: [BatchStats.Sampled]) -> ModelView {
        var v = ModelView(checkpoint: checkpoint)
        let L = model.labels.count
        let modelLabel = labels.map { model.index(ofLabel: $0) }
        var probs = [Float](repeating: 0, count: max(L, 1))
        // Per scored example: its label (model index) and its losses for every label.
        var scoredLabels: [Int] = []
        var losses: [Float] = []
        v.labelNames = model.labels
        v.floodCounts = [Double](repeating: 0, count: L)
        v.floodProbs = [Double](repeating: 0, count: L)
        for s in sample {
            v.sampled += 1
            s.tokens.withUnsafeBytes { t in
                var toks = 0, oov = 0
                Features.forEachToken(t) { p, n in
                    toks += 1
                    if model.vocabulary.slot(forKey: FeatureHash.key64(p, n)) < 0 { oov += 1 }
                }
                v.tokens += toks; v.oovTokens += oov
                guard L > 0, let k = modelLabel[s.label] else { return }
                probs.withUnsafeMutableBufferPointer { model.predict(tokens: t, probs: $0) }
                if toks > 0 && 2 * oov <= toks {
                    v.recognised += 1
                    v.floodCounts[k] += 1
                    for l in 0..<L { v.floodProbs[l] += Double(probs[l]) }
                }
                v.canaryExamples += 1
                v.canaryLossSum += -log(max(Double(probs[k]), 1e-7))
                scoredLabels.append(k)
                for l in 0..<L { losses.append(Float(-log(max(Double(probs[l]), 1e-7)))) }
            }
        }
        // Leave-one-out shuffled loss: sum_i (1/(n-1)) sum_{j != i} loss_i(y_j), through the
        // label counts c: sum_{j != i} loss_i(y_j) = sum_l c_l loss_i(l) - loss_i(y_i).
        let n = scoredLabels.count
        if n >= 2 {
            var c = [Double](repeating: 0, count: L)
            for k in scoredLabels { c[k] += 1 }
            for i in 0..<n {
                var sum = 0.0
                for l in 0..<L where c[l] > 0 { sum += c[l] * Double(losses[i * L + l]) }
                sum -= Double(losses[i * L + scoredLabels[i]])
                v.shuffledLossSum += sum / Double(n - 1)
            }
        }
        // label_chance: T = sum_i a_i(y_i) under a random permutation of the labels, with
        // a_i(l) the loss of example i for label l. Mean n x g; variance (Hoeffding)
        // 1/(n-1) sum_i sum_l c_l (a_i(l) - r_i - m_l + g)^2, with r_i = sum_l c_l a_i(l) / n,
        // m_l = sum_i a_i(l) / n (label l as column j for each of its c_l examples), g =
        // mean r_i. O(n x labels).
        v.labelZ = permutationZ(losses: losses, labels: scoredLabels, labelCount: L)
        return v
    }

    /// The permutation z of sum_i losses[i][labels[i]] (see measure): (mean over all
    /// permutations of the labels - the value) / its standard deviation; nil for fewer than 3
    /// examples or no variance. `losses`: row-major, labelCount per example.
    static func permutationZ(losses: [Float], labels scoredLabels: [Int], labelCount L: Int) -> Double? {
        let n = scoredLabels.count
        guard n >= 3, losses.count >= n * L else { return nil }
        var c = [Double](repeating: 0, count: L)
        for k in scoredLabels { c[k] += 1 }
        let nd = Double(n)
        var r = [Double](repeating: 0, count: n), m = [Double](repeating: 0, count: L)
        var t = 0.0
        for i in 0..<n {
            for l in 0..<L {
                let a = Double(losses[i * L + l])
                m[l] += a / nd
                if c[l] > 0 { r[i] += c[l] * a / nd }
            }
            t += Double(losses[i * L + scoredLabels[i]])
        }
        let g = r.reduce(0, +) / nd
        var variance = 0.0
        for i in 0..<n {
            for l in 0..<L where c[l] > 0 {
                let d = Double(losses[i * L + l]) - r[i] - m[l] + g
                variance += c[l] * d * d
            }
        }
        variance /= nd - 1
        return variance > 1e-12 ? (nd * g - t) / variance.squareRoot() : nil
    }
}

enum Checks {
    /// Runs every check, in the order of docs/formats.md (the first damage check that trips
    /// names the quarantine's reason). `stats` receives the measured values (docs/formats.md,
    /// "stats").
    static func evaluate(_ b: BatchStats, hashes: (values: [UInt64], limit: UInt64), model: ModelView?,
                         reference r: Reference, window: [StatsSidecar],
                         duplicateSets: [(name: String, values: [UInt64], limit: UInt64)], policy: IngestPolicy,
                         stats: inout [String: Double]) -> [CheckOutcome] {
        var run = CheckRun(b, hashes: hashes, model: model, reference: r, window: window, duplicateSets: duplicateSets, policy: policy)
        run.distributions()     // label_linf, label_js, new_labels
        run.outOfVocabulary()   // oov
        run.lengths()           // length_js, truncated
        run.duplicates()        // duplicates
        run.textSignatures()    // garbage, mojibake
        run.canary()            // canary
        run.labelSignal()       // label_signal, label_chance
        run.labelFlood()        // label_flood
        stats.merge(run.stats) { $1 }
        for (k, v) in stats { stats[k] = round6(v) }
        return run.out
    }

    /// The example-weighted mean of a recorded value over the window's inputs that have it.
    static func pooled(_ window: [StatsSidecar], value: String, weight: String) -> (mean: Double, inputs: Int) {
        var s = 0.0, w = 0.0, k = 0
        for x in window {
            guard let v = x.stats[value], let n = x.stats[weight], n > 0, v.isFinite else { continue }
            s += v * n; w += n; k += 1
        }
        return (w > 0 ? s / w : 0, k)
    }

    /// Jensen-Shannon distance, base 2: sqrt(JSD), in [0, 1]. Inputs are distributions.
    static func jsDistance(_ p: [Double], _ q: [Double]) -> Double {
        var d = 0.0
        for (a, b) in zip(p, q) {
            let m = (a + b) / 2
            if a > 0 { d += 0.5 * a * log2(a / m) }
            if b > 0 { d += 0.5 * b * log2(b / m) }
        }
        return max(0, min(1, d)).squareRoot()
    }

    static func binarySearch(_ a: [UInt64], _ x: UInt64) -> Bool {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo < a.count && a[lo] == x
    }

    static func round6(_ x: Double) -> Double { x.isFinite ? (x * 1e6).rounded() / 1e6 : x }
}
