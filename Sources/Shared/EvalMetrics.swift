// Classification metrics from per-example outcomes, the one implementation pp-eval (scoring)
// and pp-select (paired bootstrap over the same examples) both use, so a resampled score is
// computed exactly like the stored one. Definitions are in docs/formats.md ("Eval result").
// This file does not run models or read files.

#if canImport(Glibc)
import Glibc
#endif

/// What is kept of one scored example. Labels are indices into the eval set's label table;
/// a prediction of a label the eval set does not contain is `labelCount` ("other").
public struct ExampleOutcome: Equatable, Sendable {
    public var truth: UInt32
    public var pred: UInt32
    /// The model's probability of the true label (0 when the model does not know the label).
    public var pTrue: Float
    /// The model's probability of its top-1 label (its confidence).
    public var pTop: Float
    /// The true label is among the model's 5 most probable labels.
    public var top5: Bool

    public init(truth: UInt32, pred: UInt32, pTrue: Float, pTop: Float, top5: Bool) {
        self.truth = truth; self.pred = pred; self.pTrue = pTrue; self.pTop = pTop; self.top5 = top5
    }
}

/// Precision, recall, F1 and support of one label.
public struct LabelMetrics: Codable, Equatable, Sendable {
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var support: Int
    public init(precision: Double, recall: Double, f1: Double, support: Int) {
        self.precision = precision; self.recall = recall; self.f1 = f1; self.support = support
    }
}

/// The metrics of one slice of an eval set (all, recent, old).
public struct SliceMetrics: Equatable, Sendable {
    public var examples: Int
    public var accuracy: Double
    public var top5Accuracy: Double
    public var macroF1: Double
    public var weightedF1: Double
    public var logLoss: Double
    public var ece: Double
    /// Per label of the eval set that has support in this slice.
    public var labels: [String: LabelMetrics]

    /// Metric names accepted by `value(_:)`, as they appear in the JSON.
    public static let names = ["accuracy", "top5_accuracy", "macro_f1", "weighted_f1", "log_loss", "ece"]

    /// True when a larger value is better (false for log_loss and ece).
    public static func higherIsBetter(_ name: String) -> Bool { name != "log_loss" && name != "ece" }

    public func value(_ name: String) -> Double? {
        switch name {
        case "accuracy": return accuracy
        case "top5_accuracy": return top5Accuracy
        case "macro_f1": return macroF1
        case "weighted_f1": return weightedF1
        case "log_loss": return logLoss
        case "ece": return ece
        default: return nil
        }
    }
}

/// Accumulates outcomes (each with a weight, the number of times it is counted, which the
/// bootstrap uses) and turns them into `SliceMetrics`. `reset()` reuses the storage.
public struct MetricsAccumulator {
    public static let eceBins = 15
    /// Probabilities are clipped to this before the logarithm, so an unknown label costs
    /// -ln(1e-15) = 34.5 instead of infinity.
    public static let logLossFloor: Double = 1e-15

    public let labelCount: Int
    var tp: [Double]
    var predicted: [Double]   // labelCount + 1 entries, the last for "other"
    var support: [Double]
    var n = 0.0, correct = 0.0, top5 = 0.0, logLoss = 0.0
    var binCount: [Double], binConf: [Double], binCorrect: [Double]

    public init(labelCount: Int) {
        self.labelCount = labelCount
        tp = [Double](repeating: 0, count: labelCount)
        predicted = [Double](repeating: 0, count: labelCount + 1)
        support = [Double](repeating: 0, count: labelCount)
        binCount = [Double](repeating: 0, count: Self.eceBins)
        binConf = binCount; binCorrect = binCount
    }

    public mutating func reset() {
        for i in 0..<labelCount { tp[i] = 0; predicted[i] = 0; support[i] = 0 }
        predicted[labelCount] = 0
        for b in 0..<Self.eceBins { binCount[b] = 0; binConf[b] = 0; binCorrect[b] = 0 }
        n = 0; correct = 0; top5 = 0; logLoss = 0
    }

    @inline(__always)
    public mutating func add(_ o: ExampleOutcome, weight w: Double = 1) {
        let t = Int(o.truth)
        precondition(t < labelCount, "true label index out of range")
        let p = min(Int(o.pred), labelCount)
        n += w
        support[t] += w
        predicted[p] += w
        let hit = p == t
        if hit { tp[t] += w; correct += w }
        if o.top5 { top5 += w }
        logLoss -= w * log(max(Double(o.pTrue), Self.logLossFloor))
        let conf = min(max(Double(o.pTop), 0), 1)
        let b = min(Int(conf * Double(Self.eceBins)), Self.eceBins - 1)
        binCount[b] += w
        binConf[b] += w * conf
        if hit { binCorrect[b] += w }
    }

    public var count: Double { n }

    /// The value of one metric without building the per-label table (the bootstrap's path).
    public func value(_ name: String) -> Double {
        switch name {
        case "accuracy": return n > 0 ? correct / n : 0
        case "top5_accuracy": return n > 0 ? top5 / n : 0
        case "log_loss": return n > 0 ? logLoss / n : 0
        case "ece": return ece()
        case "macro_f1": return f1s().macro
        case "weighted_f1": return f1s().weighted
        default: preconditionFailure("unknown metric \(name)")
        }
    }

    @inline(__always)
    func f1(_ l: Int) -> (p: Double, r: Double, f: Double) {
        let p = predicted[l] > 0 ? tp[l] / predicted[l] : 0
        let r = support[l] > 0 ? tp[l] / support[l] : 0
        let f = p + r > 0 ? 2 * p * r / (p + r) : 0
        return (p, r, f)
    }

    /// Macro-F1 over the labels with support in this slice; weighted-F1 weighs each by support.
    func f1s() -> (macro: Double, weighted: Double) {
        var sum = 0.0, weighted = 0.0, k = 0
        for l in 0..<labelCount where support[l] > 0 {
            let f = f1(l).f
            sum += f; weighted += f * support[l]; k += 1
        }
        return (k > 0 ? sum / Double(k) : 0, n > 0 ? weighted / n : 0)
    }

    func ece() -> Double {
        guard n > 0 else { return 0 }
        var e = 0.0
        for b in 0..<Self.eceBins where binCount[b] > 0 {
            e += abs(binCorrect[b] - binConf[b]) / n   // = (n_b/n) * |acc_b - conf_b|
        }
        return e
    }

    /// All metrics; `labels` names the eval set's label table.
    public func finish(labels: [String]) -> SliceMetrics {
        precondition(labels.count == labelCount)
        var per: [String: LabelMetrics] = [:]
        for l in 0..<labelCount where support[l] > 0 {
            let (p, r, f) = f1(l)
            per[labels[l]] = LabelMetrics(precision: p, recall: r, f1: f, support: Int(support[l]))
        }
        let (macro, weighted) = f1s()
        return SliceMetrics(examples: Int(n), accuracy: value("accuracy"), top5Accuracy: value("top5_accuracy"),
                            macroF1: macro, weightedF1: weighted, logLoss: value("log_loss"), ece: ece(), labels: per)
    }
}
