// The batch checks of one input, step by step (Checks.evaluate runs them in order): each
// step measures its statistics, then records each check's outcome against its threshold
// (docs/formats.md, "Batch checks"; thresholds in Policy.swift).

import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

/// One input's checks in progress: the batch, the reference window pooled once, and what has
/// been measured and decided so far (Checks.evaluate calls the steps in order).
struct CheckRun {
    let b: BatchStats
    let hashes: (values: [UInt64], limit: UInt64)
    let model: ModelView?
    let r: Reference
    let policy: IngestPolicy
    let window: [StatsSidecar]
    /// The hash samples the duplicate check compares with.
    let duplicateSets: [(name: String, values: [UInt64], limit: UInt64)]
    let n: Int
    let refExamples: Int
    /// The pooled reference is large enough for the distribution checks.
    let enough: Bool
    let tooSmall: String
    var refLabels: [String: Int] = [:]
    var refLength = [Int](repeating: 0, count: LengthBuckets.count)
    var stats: [String: Double] = [:]
    var out: [CheckOutcome] = []
    /// length_js, measured with the label distances.
    var lenJS: Double? = nil
    let noModel = "no deployed model"

    init(_ b: BatchStats, hashes: (values: [UInt64], limit: UInt64), model: ModelView?, reference r: Reference,
         window: [StatsSidecar], duplicateSets: [(name: String, values: [UInt64], limit: UInt64)], policy: IngestPolicy) {
        self.b = b; self.hashes = hashes; self.model = model; self.r = r; self.policy = policy
        n = b.examples
        self.window = window
        self.duplicateSets = duplicateSets
        refExamples = window.reduce(0) { $0 + $1.examples }
        enough = refExamples >= max(policy.referenceMinExamples, 1)
        tooSmall = "reference holds \(refExamples) examples, fewer than reference_min_examples \(policy.referenceMinExamples)"
        for s in window {
            for (l, c) in s.labelCounts { refLabels[l, default: 0] += c }
            for (i, c) in s.lengthHist.enumerated() where i < refLength.count { refLength[i] += c }
        }
        stats["examples"] = Double(n)
        stats["tokens"] = Double(b.tokens)
        stats["mean_tokens"] = n > 0 ? Double(b.tokens) / Double(n) : 0
        stats["ref_inputs"] = Double(window.count)
        stats["ref_examples"] = Double(refExamples)
        // Garbage needs no reference.
        stats["garbage_share"] = share(b.junkExamples)
        stats["control_share"] = share(b.controlExamples)
        stats["replacement_share"] = share(b.replacementExamples)
        stats["mojibake_share"] = share(b.mojibakeExamples)
        if let m = model {
            stats["sample_examples"] = Double(m.sampled)
            stats["oov_rate"] = m.oovRate
            stats["canary_loss"] = m.canaryLoss
            stats["canary_examples"] = Double(m.canaryExamples)
            stats["label_signal"] = m.labelSignal
            stats["label_z"] = m.labelZ
            stats["label_chance"] = m.labelChance
        }
    }

    func share(_ k: Int) -> Double { n > 0 ? Double(k) / Double(n) : 0 }
    func fewRef(_ k: Int) -> String { "\(k) reference inputs with a value, fewer than model_min_reference \(policy.modelMinReference)" }

    /// Records one check's outcome: off in the policy, skipped (no value), or its value
    /// against its threshold (derived from the check's own values on the reference inputs).
    mutating func add(_ name: String, value: Double?, n: Int, count: Int? = nil, skipped: String? = nil) {
        guard let limit = policy.limit(name) else {
            out.append(CheckOutcome(check: name, value: value, threshold: nil, n: n, count: count, tripped: false, skipped: skipped ?? "off in policy"))
            return
        }
        let kind = limit.hard ? "damage" : "change"
        guard let v = value else {
            out.append(CheckOutcome(check: name, value: nil, threshold: nil, n: n, count: count, tripped: false, skipped: skipped, kind: kind))
            return
        }
        let key = IngestPolicy.statKey[name] ?? name
        let own = window.compactMap { $0.stats[key] }.filter(\.isFinite)
        let (t, derived) = limit.threshold(n: n, reference: own, minInputs: policy.derivedMinInputs)
        let tripped = v > t && (count ?? n) >= limit.minCount && n > 0
        out.append(CheckOutcome(check: name, value: Checks.round6(v), threshold: Checks.round6(t), n: n, count: count, tripped: tripped,
                                skipped: nil, kind: kind, derived: limit.madK == nil ? nil : derived))
    }

    /// Label and length distributions against the pooled reference: label_linf, label_js,
    /// new_labels (length_js is measured here, judged in `lengths`).
    mutating func distributions() {
        var linf: Double? = nil, ljs: Double? = nil, newShare: Double? = nil
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
            ljs = Checks.jsDistance(pb, pr)
            let k = mine.filter { r.labelsEver[$0.key] == nil }.reduce(0) { $0 + $1.value }
            newCount = k
            newShare = Double(k) / Double(n)
            let rl = refLength.map { Double($0) / Double(max(refLength.reduce(0, +), 1)) }
            let bl = b.lengthHist.map { Double($0) / Double(n) }
            lenJS = Checks.jsDistance(bl, rl)
        }
        stats["label_linf"] = linf
        stats["label_js"] = ljs
        stats["new_label_share"] = newShare
        stats["length_js"] = lenJS
        add("label_linf", value: linf, n: n, skipped: enough ? nil : tooSmall)
        add("label_js", value: ljs, n: n, skipped: enough ? nil : tooSmall)
        add("new_labels", value: newShare, n: n, count: newCount, skipped: enough ? nil : tooSmall)
    }

    /// OOV: the deployed model's out-of-vocabulary rate on a sample, against the reference's.
    mutating func outOfVocabulary() {
        let oovRef = Checks.pooled(window, value: "oov_rate", weight: "sample_examples")
        stats["oov_ref"] = oovRef.inputs > 0 ? oovRef.mean : nil
        if let m = model, let rate = m.oovRate, oovRef.inputs >= policy.modelMinReference {
            stats["oov_increase"] = rate - oovRef.mean
            add("oov", value: rate - oovRef.mean, n: m.sampled)
        } else {
            add("oov", value: nil, n: model?.sampled ?? 0, skipped: model == nil ? noModel : fewRef(oovRef.inputs))
        }
    }

    /// length_js, and truncation: examples of at most three tokens (buckets 0-2), against the
    /// reference's share.
    mutating func lengths() {
        add("length_js", value: lenJS, n: n, skipped: enough ? nil : tooSmall)
        let shortMine = b.lengthHist.prefix(3).reduce(0, +)
        let refTotal = refLength.reduce(0, +)
        var shortIncrease: Double? = nil
        if enough && n > 0 && refTotal > 0 {
            shortIncrease = Double(shortMine) / Double(n) - Double(refLength.prefix(3).reduce(0, +)) / Double(refTotal)
        }
        stats["short_share"] = n > 0 ? Double(shortMine) / Double(n) : nil
        stats["short_increase"] = shortIncrease
        add("truncated", value: shortIncrease, n: n, count: shortMine, skipped: enough ? nil : tooSmall)
    }

    /// Duplicates: the batch's hash sample against the recent inputs' samples. Only hashes
    /// <= every sample's limit are comparable (all of them for inputs under 16384 examples).
    mutating func duplicates() {
        var limit = hashes.limit
        for h in duplicateSets { limit = min(limit, h.limit) }
        let checkable = hashes.values.filter { $0 <= limit }
        guard !duplicateSets.isEmpty else {
            add("duplicates", value: nil, n: 0, skipped: "no accepted input yet")
            return
        }
        var dup = 0
        for h in checkable where duplicateSets.contains(where: { Checks.binarySearch($0.values, h) }) { dup += 1 }
        let v = checkable.isEmpty ? 0 : Double(dup) / Double(checkable.count)
        stats["duplicate_share"] = v
        stats["duplicate_checked"] = Double(checkable.count)
        add("duplicates", value: v, n: checkable.count, count: dup)
    }

    /// The texts' own signatures: garbage and mojibake shares (no reference needed).
    mutating func textSignatures() {
        add("garbage", value: share(b.junkExamples), n: n, count: b.junkExamples)
        add("mojibake", value: share(b.mojibakeExamples), n: n, count: b.mojibakeExamples)
    }

    /// Canary: the deployed model's loss on the sample, as a ratio to the reference's.
    mutating func canary() {
        let lossRef = Checks.pooled(window, value: "canary_loss", weight: "canary_examples")
        stats["canary_ref"] = lossRef.inputs > 0 ? lossRef.mean : nil
        if let m = model, let loss = m.canaryLoss, lossRef.inputs >= policy.modelMinReference, lossRef.mean > 0 {
            stats["canary_ratio"] = loss / lossRef.mean
            add("canary", value: loss / lossRef.mean, n: m.canaryExamples)
        } else {
            add("canary", value: nil, n: model?.canaryExamples ?? 0,
                skipped: model == nil ? noModel : (model!.canaryLoss == nil ? "no example with a label the model knows" : fewRef(lossRef.inputs)))
        }
    }

    /// Do the labels follow from the texts: label_signal, and the same question as a
    /// permutation test (label_chance), both only where the deployed model separates labels
    /// on the reference.
    mutating func labelSignal() {
        let signalRef = Checks.pooled(window, value: "label_signal", weight: "canary_examples")
        stats["label_signal_ref"] = signalRef.inputs > 0 ? signalRef.mean : nil
        let gated = signalRef.inputs >= policy.modelMinReference && signalRef.mean <= policy.signalReferenceMax
        if let m = model, let sig = m.labelSignal, gated {
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
        if let m = model, let p = m.labelChance, gated {
            add("label_chance", value: p, n: m.canaryExamples)
        } else {
            add("label_chance", value: nil, n: model?.canaryExamples ?? 0,
                skipped: model == nil ? noModel : model!.labelChance == nil ? "fewer than 3 examples with a label the model knows, or no variance"
                    : "as label_signal: \(out.last?.skipped ?? "not judged")")
        }
    }

    /// The flood: labels given to texts the model does not see them in.
    mutating func labelFlood() {
        let refLabels = self.refLabels
        if enough, let m = model, let f = m.labelFlood(refCount: { refLabels[$0] ?? 0 }, refExamples: refExamples,
                                                       minReference: policy.floodMinReference) {
            stats["label_flood"] = f.value
            stats["recognised_examples"] = Double(m.recognised)
            add("label_flood", value: f.value, n: m.recognised, count: f.count)
        } else {
            add("label_flood", value: nil, n: model?.recognised ?? 0,
                skipped: model == nil ? noModel : !enough ? tooSmall : "no sampled example with a known label and at least half its tokens known")
        }
    }
}
