// pp-select's decision: may the newest good candidate replace what is deployed? Pure logic
// over stored eval results and their per-example files; no file is changed here.
// Two gates (docs/formats.md, "selections.jsonl"); both first require
//  1. both results on the same eval set (same hash, same recent/old slicing).
// `noninferior` (the default, issue 13: "deploy the newest checkpoint when it is at least as
// good"): the candidate is the newest one, and
//  2. it is refused only when it is worse, materially and significantly: gain = candidate -
//     deployed on the metric (sign flipped for log_loss and ece) below -margin, and the paired
//     bootstrap's 95% interval of the gain entirely below 0 (without a bootstrap, the gain
//     alone). The burden of proof is on the deployed model: on a stream the newer one has
//     trained on data that the holdout, mostly older, under-represents, and a small holdout
//     can rarely prove that two neighbouring checkpoints are within a margin of each other;
//  3. the old slice (the forgetting meter) blocks only a large, significant loss: more than
//     --old-tolerance, with its own 95% interval below 0;
//  4. a label with support >= --label-min-support blocks only when its F1 falls by more than
//     --label-block; smaller losses beyond --tolerance are reported, not blocking.
// `better` (the rule before issue 13; on a stream it keeps a stale model): the best-ranked
// candidate must gain at least --min-gain with the interval above 0, and no label nor the old
// slice may lose more than --tolerance.

import Shared
import TextModel

enum Gate: String, CaseIterable {
    case noninferior, better
}

struct SelectConfig {
    var gate = Gate.noninferior
    var metric = "recent.accuracy"
    /// noninferior: a loss larger than this, significant, refuses the candidate.
    var margin = 0.01
    /// better: the smallest gain that promotes.
    var minGain = 0.005
    /// Per-label F1 losses beyond this are reported (better: they and the old slice block).
    var tolerance = 0.02
    /// noninferior: the old slice blocks when it loses more than this, significantly.
    var oldTolerance = 0.10
    /// noninferior: a label blocks when its F1 falls by more than this.
    var labelBlock = 0.25
    var bootstrap = 1000
    var labelMinSupport = 20
    /// A deployed model older than this is flagged in every keep decision (and in the log).
    var maxAgeDays = 7.0
    var seed: UInt64 = 1

    var slice: String { EvalResult.splitMetric(metric).slice }
    var name: String { EvalResult.splitMetric(metric).name }
}

struct Comparison {
    var gain: Double
    /// 95% percentile interval of the gain; nil when the bootstrap is off.
    var ci: (lo: Double, hi: Double)?
    var labelRegressions: [Regression]
    /// Loss on the old slice, when beyond the tolerance.
    var oldRegression: Regression?
    /// Candidate - deployed on the old slice (positive = better), the forgetting meter.
    var oldChange: Double?
    var promote: Bool
    var reason: String
}

enum Selection {
    /// Orients a metric difference so that positive means the candidate is better.
    static func improvement(_ name: String, candidate: Double, deployed: Double) -> Double {
        SliceMetrics.higherIsBetter(name) ? candidate - deployed : deployed - candidate
    }

    /// Refuses to compare results that were not computed on exactly the same examples.
    static func checkComparable(_ a: EvalResult, _ b: EvalResult) throws {
        guard a.evalset == b.evalset else {
            throw PPError("\(a.checkpoint) and \(b.checkpoint) were scored on different eval sets (\(a.evalset.prefix(16)) vs \(b.evalset.prefix(16)))",
                          status: .software)
        }
        guard a.recentDays == b.recentDays, a.recentExamples == b.recentExamples else {
            throw PPError("\(a.checkpoint) and \(b.checkpoint) use different slices (recent_days \(a.recentDays) vs \(b.recentDays), "
                          + "recent_examples \(a.recentExamples.map(String.init) ?? "-") vs \(b.recentExamples.map(String.init) ?? "-"))",
                          status: .software)
        }
    }

    /// Paired bootstrap of the gain over the examples of `slice`: each round draws the
    /// slice's examples with replacement and scores both models on the same draw.
    static func bootstrap(_ cand: ExampleFile, _ dep: ExampleFile, slice: String, metric name: String,
                          rounds: Int, seed: UInt64) throws -> (lo: Double, hi: Double) {
        guard cand.evalset == dep.evalset, cand.outcomes.count == dep.outcomes.count, cand.labels == dep.labels else {
            throw PPError("per-example files are of different eval sets (\(cand.evalset.prefix(16)) vs \(dep.evalset.prefix(16)))",
                          status: .software)
        }
        let bit = EvalNames.sliceBit(slice)
        var idx: [Int] = []
        idx.reserveCapacity(cand.outcomes.count)
        for i in 0..<cand.outcomes.count where bit == 0 || cand.slices[i] & bit != 0 {
            guard cand.outcomes[i].truth == dep.outcomes[i].truth, cand.slices[i] == dep.slices[i] else {
                throw PPError("per-example files disagree on example \(i) of eval set \(cand.evalset.prefix(16))", status: .corrupt)
            }
            idx.append(i)
        }
        if idx.isEmpty { return (0, 0) }
        var rng = SplitMix64(state: seed)
        var a = MetricsAccumulator(labelCount: cand.labels.count), b = a
        var gains: [Double] = []
        gains.reserveCapacity(rounds)
        let n = idx.count
        cand.outcomes.withUnsafeBufferPointer { co in
            dep.outcomes.withUnsafeBufferPointer { dp in
                for _ in 0..<rounds {
                    a.reset(); b.reset()
                    for _ in 0..<n {
                        let i = idx[rng.belowMultiplyShift(n)]
                        a.add(co[i]); b.add(dp[i])
                    }
                    gains.append(improvement(name, candidate: a.value(name), deployed: b.value(name)))
                }
            }
        }
        gains.sort()
        func pct(_ q: Double) -> Double {
            // Nearest-rank percentile.
            let r = Int((q * Double(gains.count)).rounded(.up)) - 1
            return gains[min(max(r, 0), gains.count - 1)]
        }
        return (pct(0.025), pct(0.975))
    }

    /// Compares a candidate with the deployed checkpoint and says whether to promote.
    static func compare(candidate: EvalResult, deployed: EvalResult, config: SelectConfig,
                        examples: (EvalResult) throws -> ExampleFile) throws -> Comparison {
        switch config.gate {
        case .better: return try compareBetter(candidate: candidate, deployed: deployed, config: config, examples: examples)
        case .noninferior: return try compareNoninferior(candidate: candidate, deployed: deployed, config: config, examples: examples)
        }
    }

    /// What both gates start from: comparable results, the slice and metric asked for, the
    /// gain (positive = the candidate is better), and both slices' metrics.
    static func measured(_ candidate: EvalResult, _ deployed: EvalResult, config: SelectConfig) throws
        -> (slice: String, name: String, gain: Double, cs: SliceMetrics, ds: SliceMetrics) {
        try checkComparable(candidate, deployed)
        let slice = config.slice, name = config.name
        guard let cv = candidate.metric(config.metric), let dv = deployed.metric(config.metric),
              let cs = candidate.slice(slice), let ds = deployed.slice(slice) else {
            throw PPError("unknown metric \(config.metric)", status: .usage)
        }
        return (slice, name, improvement(name, candidate: cv, deployed: dv), cs, ds)
    }

    /// The label losses beyond `tolerance` (reported) among labels with enough support.
    static func labelRegressions(_ cs: SliceMetrics, _ ds: SliceMetrics, config: SelectConfig, beyond: Double) -> [Regression] {
        var regs: [Regression] = []
        for (label, d) in ds.labels.sorted(by: { $0.key < $1.key }) where d.support >= config.labelMinSupport {
            let c = cs.labels[label]?.f1 ?? 0
            if c < d.f1 - beyond { regs.append(Regression(label: label, deployed: d.f1, candidate: c, support: d.support)) }
        }
        return regs
    }

    /// Gate `noninferior`: rules 2-4 of the header.
    static func compareNoninferior(candidate: EvalResult, deployed: EvalResult, config: SelectConfig,
                                   examples: (EvalResult) throws -> ExampleFile) throws -> Comparison {
        let (slice, name, gain, cs, ds) = try measured(candidate, deployed, config: config)
        let reported = labelRegressions(cs, ds, config: config, beyond: config.tolerance)
        var why: [String] = []
        var ci: (lo: Double, hi: Double)? = nil
        var worse = gain < -config.margin
        if worse && config.bootstrap > 0 {
            let c = try bootstrap(try examples(candidate), try examples(deployed), slice: slice, metric: name,
                                  rounds: config.bootstrap, seed: config.seed)
            ci = c
            worse = c.hi < 0
        }
        if worse {
            why.append("worse: gain \(fmt(gain)) below -margin \(fmt(config.margin))"
                       + (ci.map { ", 95% interval [\(fmt($0.lo)), \(fmt($0.hi))] below 0" } ?? ""))
        }
        var oldChange: Double? = nil
        var oldReg: Regression? = nil
        if slice != "old", let co = candidate.old.value(name), let dO = deployed.old.value(name) {
            let d = improvement(name, candidate: co, deployed: dO)
            oldChange = d
            if d < -config.oldTolerance {
                let significant: Bool
                if config.bootstrap > 0 {
                    let c = try bootstrap(try examples(candidate), try examples(deployed), slice: "old", metric: name,
                                          rounds: config.bootstrap, seed: config.seed)
                    significant = c.hi < 0
                } else {
                    significant = true
                }
                if significant {
                    oldReg = Regression(label: "old." + name, deployed: dO, candidate: co, support: deployed.old.examples)
                    why.append("forgetting: old.\(name) \(fmt(d)), beyond old-tolerance \(fmt(config.oldTolerance)) and significant")
                }
            }
        }
        let blocking = reported.filter { $0.deployed - $0.candidate > config.labelBlock }
        if !blocking.isEmpty {
            why.append("F1 collapse beyond label-block \(fmt(config.labelBlock)) on " + blocking.map(\.label).joined(separator: ", "))
        }
        let promote = why.isEmpty
        var reason: String
        if promote {
            reason = gain == 0 ? "as good: same \(config.metric)" : "at least as good: gain \(fmt(gain)) on \(config.metric)"
            if let c = ci { reason += " (below -margin, but the 95% interval [\(fmt(c.lo)), \(fmt(c.hi))] includes 0)" }
        } else {
            reason = why.joined(separator: "; ")
        }
        if let d = oldChange { reason += "; old.\(name) \(d >= 0 ? "+" : "")\(fmt(d))" }
        if !reported.isEmpty && blocking.isEmpty { reason += "; F1 down beyond tolerance (not blocking) on " + reported.map(\.label).joined(separator: ", ") }
        return Comparison(gain: gain, ci: ci, labelRegressions: reported, oldRegression: oldReg, oldChange: oldChange,
                          promote: promote, reason: reason)
    }

    /// Gate `better`: the rule before issue 13.
    static func compareBetter(candidate: EvalResult, deployed: EvalResult, config: SelectConfig,
                              examples: (EvalResult) throws -> ExampleFile) throws -> Comparison {
        let (slice, name, gain, cs, ds) = try measured(candidate, deployed, config: config)

        let regs = labelRegressions(cs, ds, config: config, beyond: config.tolerance)
        var oldReg: Regression? = nil
        var oldChange: Double? = nil
        if slice != "old", let co = candidate.old.value(name), let dO = deployed.old.value(name) {
            oldChange = improvement(name, candidate: co, deployed: dO)
            if oldChange! < -config.tolerance {
                oldReg = Regression(label: "old." + name, deployed: dO, candidate: co, support: deployed.old.examples)
            }
        }

        var ci: (Double, Double)? = nil
        var why: [String] = []
        if gain == 0 { why.append("tie") }
        else if gain < config.minGain { why.append("gain \(fmt(gain)) below min-gain \(fmt(config.minGain))") }
        if gain >= config.minGain && config.bootstrap > 0 {
            let c = try bootstrap(try examples(candidate), try examples(deployed), slice: slice, metric: name,
                                  rounds: config.bootstrap, seed: config.seed)
            ci = c
            if c.lo <= 0 { why.append("95% interval [\(fmt(c.lo)), \(fmt(c.hi))] includes no gain") }
        }
        if !regs.isEmpty {
            why.append("F1 regression beyond tolerance on " + regs.map(\.label).joined(separator: ", "))
        }
        if let o = oldReg { why.append("\(o.label) regression \(fmt(o.candidate - o.deployed)) beyond tolerance") }
        let promote = why.isEmpty
        let reason = promote ? "better by \(fmt(gain)) on \(config.metric)" + (ci.map { ", 95% interval [\(fmt($0.0)), \(fmt($0.1))]" } ?? "")
                             : why.joined(separator: "; ")
        return Comparison(gain: gain, ci: ci, labelRegressions: regs, oldRegression: oldReg, oldChange: oldChange,
                          promote: promote, reason: reason)
    }

    static func fmt(_ x: Double) -> String {
        let r = (x * 1e6).rounded() / 1e6
        return r == 0 ? "0" : "\(r)"
    }
}
