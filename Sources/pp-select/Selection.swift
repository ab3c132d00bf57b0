// pp-select's decision: is the best candidate really better than what is deployed? Pure
// logic over stored eval results and their per-example files; no file is changed here.
// Rules (docs/formats.md, "selections.jsonl"):
//  1. both results must be on the same eval set (same hash, same recent/old slicing);
//  2. gain = candidate - deployed on the metric (sign flipped for log_loss and ece) must be
//     at least --min-gain; a gain of 0 is a tie and keeps what is deployed;
//  3. a paired bootstrap over the slice's examples (same resampled examples for both) must
//     put the 95% interval of the gain above 0;
//  4. no label with support >= --label-min-support in the slice may lose more than
//     --tolerance F1, and the old slice may not lose more than --tolerance on the metric.

import Shared

struct SelectConfig {
    var metric = "recent.macro_f1"
    var minGain = 0.005
    var tolerance = 0.02
    var bootstrap = 1000
    var labelMinSupport = 20
    var seed: UInt64 = 1

    var slice: String { EvalResult.splitMetric(metric).slice }
    var name: String { EvalResult.splitMetric(metric).name }
}

struct Regression: Codable, Equatable {
    var label: String
    var deployed: Double
    var candidate: Double
    var support: Int
}

struct Comparison {
    var gain: Double
    /// 95% percentile interval of the gain; nil when the bootstrap is off.
    var ci: (lo: Double, hi: Double)?
    var labelRegressions: [Regression]
    /// Loss on the old slice, when beyond the tolerance.
    var oldRegression: Regression?
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
        guard a.recentDays == b.recentDays else {
            throw PPError("\(a.checkpoint) and \(b.checkpoint) use different slices (recent_days \(a.recentDays) vs \(b.recentDays))",
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
        try checkComparable(candidate, deployed)
        let slice = config.slice, name = config.name
        guard let cv = candidate.metric(config.metric), let dv = deployed.metric(config.metric),
              let cs = candidate.slice(slice), let ds = deployed.slice(slice) else {
            throw PPError("unknown metric \(config.metric)", status: .usage)
        }
        let gain = improvement(name, candidate: cv, deployed: dv)

        var regs: [Regression] = []
        for (label, d) in ds.labels.sorted(by: { $0.key < $1.key }) where d.support >= config.labelMinSupport {
            let c = cs.labels[label]?.f1 ?? 0
            if c < d.f1 - config.tolerance { regs.append(Regression(label: label, deployed: d.f1, candidate: c, support: d.support)) }
        }
        var oldReg: Regression? = nil
        if slice != "old", let co = candidate.old.value(name), let dO = deployed.old.value(name),
           improvement(name, candidate: co, deployed: dO) < -config.tolerance {
            oldReg = Regression(label: "old." + name, deployed: dO, candidate: co, support: deployed.old.examples)
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
        return Comparison(gain: gain, ci: ci, labelRegressions: regs, oldRegression: oldReg, promote: promote, reason: reason)
    }

    static func fmt(_ x: Double) -> String {
        let r = (x * 1e6).rounded() / 1e6
        return r == 0 ? "0" : "\(r)"
    }
}
