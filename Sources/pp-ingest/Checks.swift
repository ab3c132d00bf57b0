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
    /// Runs every check. `stats` receives the measured values (docs/formats.md, "stats").
    static func evaluate(_ b: BatchStats, hashes: (values: [UInt64], limit: UInt64), model: ModelView?,
                         reference r: Reference, policy: IngestPolicy, stats: inout [String: Double]) -> [CheckOutcome] {
        var out: [CheckOutcome] = []
        let n = b.examples
        let window = r.recent
        let refExamples = window.reduce(0) { $0 + $1.examples }
        stats["examples"] = Double(n)
        stats["tokens"] = Double(b.tokens)
        stats["mean_tokens"] = n > 0 ? Double(b.tokens) / Double(n) : 0
        stats["ref_inputs"] = Double(window.count)
        stats["ref_examples"] = Double(refExamples)

        func add(_ name: String, value: Double?, n: Int, count: Int? = nil, skipped: String? = nil) {
            guard let limit = policy.limit(name) else {
                out.append(CheckOutcome(check: name, value: value, threshold: nil, n: n, count: count, tripped: false, skipped: skipped ?? "off in policy"))
                return
            }
            let kind = limit.hard ? "damage" : "change"
            guard let v = value else {
                out.append(CheckOutcome(check: name, value: nil, threshold: nil, n: n, count: count, tripped: false, skipped: skipped, kind: kind))
                return
            }
            // The check's own values on the reference inputs (stream-derived threshold).
            let key = IngestPolicy.statKey[name] ?? name
            let own = window.compactMap { $0.stats[key] }.filter(\.isFinite)
            let (t, derived) = limit.threshold(n: n, reference: own, minInputs: policy.derivedMinInputs)
            let tripped = v > t && (count ?? n) >= limit.minCount && n > 0
            out.append(CheckOutcome(check: name, value: round6(v), threshold: round6(t), n: n, count: count, tripped: tripped, skipped: nil,
                                    kind: kind, derived: limit.madK == nil ? nil : derived))
        }

        // Garbage needs no reference.
        let share = { (k: Int) -> Double in n > 0 ? Double(k) / Double(n) : 0 }
        stats["garbage_share"] = share(b.junkExamples)
        stats["control_share"] = share(b.controlExamples)
        stats["replacement_share"] = share(b.replacementExamples)
        stats["mojibake_share"] = share(b.mojibakeExamples)

        // Label and length distributions against the pooled reference.
        let enough = refExamples >= max(policy.referenceMinExamples, 1)
        let tooSmall = "reference holds \(refExamples) examples, fewer than reference_min_examples \(policy.referenceMinExamples)"
        var refLabels: [String: Int] = [:]
        var refLength = [Int](repeating: 0, count: LengthBuckets.count)
        for s in window {
            for (l, c) in s.labelCounts { refLabels[l, default: 0] += c }
            for (i, c) in s.lengthHist.enumerated() where i < refLength.count { refLength[i] += c }
        }
        var linf: Double? = nil, ljs: Double? = nil, newShare: Double? = nil, lenJS: Double? = nil
        var newCount: Int? = nil
        if enough && n > 0 {
            let mine = b.labelCountMap
            let all = Set(mine.keys).union(refLabels.keys)
            var pb: [Double] = [], pr: [Double] = []
            for l in all {
                pb.append(Double(mine[l] ?? 0) / Double(n))
                pr.append(Double(refLabels[l] ?? 0) / Double(refExamples))
            }
            linf = zip(pb, pr).map { abs($0 - $1) }.max() ?? 0
            ljs = jsDistance(pb, pr)
            let k = mine.filter { r.labelsEver[$0.key] == nil }.reduce(0) { $0 + $1.value }
            newCount = k
            newShare = Double(k) / Double(n)
            let rl = refLength.map { Double($0) / Double(max(refLength.reduce(0, +), 1)) }
            let bl = b.lengthHist.map { Double($0) / Double(n) }
            lenJS = jsDistance(bl, rl)
        }
        stats["label_linf"] = linf
        stats["label_js"] = ljs
        stats["new_label_share"] = newShare
        stats["length_js"] = lenJS
        add("label_linf", value: linf, n: n, skipped: enough ? nil : tooSmall)
        add("label_js", value: ljs, n: n, skipped: enough ? nil : tooSmall)
        add("new_labels", value: newShare, n: n, count: newCount, skipped: enough ? nil : tooSmall)

        // OOV and canary: the deployed model on a sample, against the reference's values.
        if let m = model {
            stats["sample_examples"] = Double(m.sampled)
            stats["oov_rate"] = m.oovRate
            stats["canary_loss"] = m.canaryLoss
            stats["canary_examples"] = Double(m.canaryExamples)
            stats["label_signal"] = m.labelSignal
            stats["label_z"] = m.labelZ
            stats["label_chance"] = m.labelChance
        }
        let oovRef = pooled(window, value: "oov_rate", weight: "sample_examples")
        let lossRef = pooled(window, value: "canary_loss", weight: "canary_examples")
        stats["oov_ref"] = oovRef.inputs > 0 ? oovRef.mean : nil
        stats["canary_ref"] = lossRef.inputs > 0 ? lossRef.mean : nil
        let noModel = "no deployed model"
        func fewRef(_ k: Int) -> String { "\(k) reference inputs with a value, fewer than model_min_reference \(policy.modelMinReference)" }
        if let m = model, let rate = m.oovRate, oovRef.inputs >= policy.modelMinReference {
            stats["oov_increase"] = rate - oovRef.mean
            add("oov", value: rate - oovRef.mean, n: m.sampled)
        } else {
            add("oov", value: nil, n: model?.sampled ?? 0, skipped: model == nil ? noModel : fewRef(oovRef.inputs))
        }
        add("length_js", value: lenJS, n: n, skipped: enough ? nil : tooSmall)
        // Truncation: examples of at most three tokens (buckets 0-2), against the reference's share.
        let shortMine = b.lengthHist.prefix(3).reduce(0, +)
        let refTotal = refLength.reduce(0, +)
        var shortIncrease: Double? = nil
        if enough && n > 0 && refTotal > 0 {
            shortIncrease = Double(shortMine) / Double(n) - Double(refLength.prefix(3).reduce(0, +)) / Double(refTotal)
        }
        stats["short_share"] = n > 0 ? Double(shortMine) / Double(n) : nil
        stats["short_increase"] = shortIncrease
        add("truncated", value: shortIncrease, n: n, count: shortMine, skipped: enough ? nil : tooSmall)

        // Duplicates: the batch's hash sample against the recent inputs' samples. Only hashes
        // <= every sample's limit are comparable (all of them for inputs under 16384 examples).
        var limit = hashes.limit
        for h in r.hashSets { limit = min(limit, h.limit) }
        let checkable = hashes.values.filter { $0 <= limit }
        var dup = 0
        if !r.hashSets.isEmpty {
            for h in checkable where r.hashSets.contains(where: { binarySearch($0.values, h) }) { dup += 1 }
            let v = checkable.isEmpty ? 0 : Double(dup) / Double(checkable.count)
            stats["duplicate_share"] = v
            stats["duplicate_checked"] = Double(checkable.count)
            add("duplicates", value: v, n: checkable.count, count: dup)
        } else {
            add("duplicates", value: nil, n: 0, skipped: "no accepted input yet")
        }
        add("garbage", value: share(b.junkExamples), n: n, count: b.junkExamples)
        add("mojibake", value: share(b.mojibakeExamples), n: n, count: b.mojibakeExamples)

        if let m = model, let loss = m.canaryLoss, lossRef.inputs >= policy.modelMinReference, lossRef.mean > 0 {
            stats["canary_ratio"] = loss / lossRef.mean
            add("canary", value: loss / lossRef.mean, n: m.canaryExamples)
        } else {
            add("canary", value: nil, n: model?.canaryExamples ?? 0,
                skipped: model == nil ? noModel : (model!.canaryLoss == nil ? "no example with a label the model knows" : fewRef(lossRef.inputs)))
        }
        let signalRef = pooled(window, value: "label_signal", weight: "canary_examples")
        stats["label_signal_ref"] = signalRef.inputs > 0 ? signalRef.mean : nil
        if let m = model, let sig = m.labelSignal, signalRef.inputs >= policy.modelMinReference,
           signalRef.mean <= policy.signalReferenceMax {
            add("label_signal", value: sig, n: m.canaryExamples)
        } else {
            let why: String
            if model == nil { why = noModel }
            else if model!.labelSignal == nil { why = "fewer than 2 examples with a label the model knows" }
            else if signalRef.inputs < policy.modelMinReference { why = fewRef(signalRef.inputs) }
            else {
                why = "the deployed model barely separates labels on the reference (label_signal \(JSONOut.number(signalRef.mean, digits: 3)) > signal_reference_max \(JSONOut.number(policy.signalReferenceMax)))"
            }
            add("label_signal", value: nil, n: model?.canaryExamples ?? 0, skipped: why)
        }
        // The same question as a permutation test, under the same gate.
        if let m = model, let p = m.labelChance, signalRef.inputs >= policy.modelMinReference, signalRef.mean <= policy.signalReferenceMax {
            add("label_chance", value: p, n: m.canaryExamples)
        } else {
            add("label_chance", value: nil, n: model?.canaryExamples ?? 0,
                skipped: model == nil ? noModel : model!.labelChance == nil ? "fewer than 3 examples with a label the model knows, or no variance"
                    : "as label_signal: \(out.last?.skipped ?? "not judged")")
        }
        // The flood: labels given to texts the model does not see them in.
        if enough, let m = model, let f = m.labelFlood(refCount: { refLabels[$0] ?? 0 }, refExamples: refExamples,
                                                       minReference: policy.floodMinReference) {
            stats["label_flood"] = f.value
            stats["recognised_examples"] = Double(m.recognised)
            add("label_flood", value: f.value, n: m.recognised, count: f.count)
        } else {
            add("label_flood", value: nil, n: model?.recognised ?? 0,
                skipped: model == nil ? noModel : !enough ? tooSmall : "no sampled example with a known label and at least half its tokens known")
        }
        for (k, v) in stats { stats[k] = round6(v) }
        return out
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
