// The "train" section of ROOT/policy.json (docs/formats.md, "policy.json"): the thresholds
// of pp-train's shard guard. The file is written by people and shared by the tools, one
// section per tool; pp-train reads only "train" and ignores the others. A missing file or
// section means the documented defaults; an unknown key or a bad value in "train" is an
// error naming the file and the key (a typo must not silently leave a default in force).
// This file knows the format and its validation, not what the guard does with it (Guard).

import Foundation
import Shared
import TextModel

struct TrainPolicy: Equatable {
    /// Judge each new shard's loss at all (false: no spike and no NaN verdicts).
    var guardEnabled = true
    /// How many recently accepted shards form the reference range.
    var guardWindow = 20
    /// No spike verdict before this many shards were accepted (a fresh run has no range yet).
    var guardMinHistory = 5
    /// Shards with fewer new examples are not judged for spikes (their loss is noise).
    var guardMinExamples = 10
    /// A shard trips when its loss exceeds both ratio x the reference median and the
    /// median + margin (nats).
    var guardRatio = 2.5
    var guardMargin = 1.0
    /// ... and the median + guard_mad_k robust deviations (1.4826 x the median absolute
    /// deviation) of the reference losses: a stream whose loss moves a lot widens its range.
    var guardMadK = 8.0
    /// A loss spike is a change (recorded, trained on); it marks the shard suspect only with a
    /// label signal above guard_signal_max + guard_signal_width / sqrt(n) (Guard.swift).
    var guardSignalMax = 0.9
    var guardSignalWidth = 0.5
    /// The signal judges only while the median signal of the recent shards is at most this.
    var guardSignalReferenceMax = 0.85
    /// New examples per shard scored for the label signal (0: not measured).
    var guardSignalExamples = 2000
    /// true: the old rule, a loss spike alone marks the shard suspect.
    var guardSpikeAlone = false
    /// Probation (issue 14): a spike without a damage verdict is trained on with its revert
    /// point kept, and undone when the model that learned it predicts the following
    /// guard_probation_examples new examples significantly worse than the model before it
    /// (Guard.swift). false: a spike is only recorded, as before.
    var guardProbation = true
    var guardProbationExamples = 100

    static let keys = ["guard", "guard_window", "guard_min_history", "guard_min_examples", "guard_ratio", "guard_margin",
                       "guard_mad_k", "guard_signal_max", "guard_signal_width", "guard_signal_reference_max",
                       "guard_signal_examples", "guard_spike_alone", "guard_probation", "guard_probation_examples"]

    /// The loss above which a shard is a spike, given the reference losses (nil: not enough history).
    func threshold(reference: [Double]) -> (median: Double, threshold: Double)? {
        guard reference.count >= max(1, guardMinHistory) else { return nil }
        let m = TrainPolicy.median(reference)
        let mad = TrainPolicy.median(reference.map { abs($0 - m) })
        return (m, max(guardRatio * m, m + guardMargin, m + guardMadK * 1.4826 * mad))
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        let n = s.count
        if n == 0 { return .nan }
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }

    /// Reads ROOT/policy.json; the defaults when it or its "train" section is missing.
    static func load(root: Root) throws -> TrainPolicy {
        let path = root.path + "/policy.json"
        guard FileIO.exists(path) else { return TrainPolicy() }
        return try parse(try FileIO.readAll(path), path: path)
    }

    static func parse(_ bytes: [UInt8], path: String) throws -> TrainPolicy {
        func bad(_ why: String) -> PPError { PPError("\(path): \(why)", status: .corrupt) }
        let doc: [String: JSONValue]
        do { doc = try JSONDecoder().decode([String: JSONValue].self, from: Data(bytes)) } catch {
            throw bad("expected a JSON object with one section per tool (\"ingest\", \"train\", \"select\")")
        }
        guard let raw = doc["train"] else { return TrainPolicy() }
        guard case .object(let sec) = raw else { throw bad("train: expected an object") }
        var p = TrainPolicy()
        for (k, v) in sec.sorted(by: { $0.key < $1.key }) {
            let f = JSONField(path: path, key: "train." + k, value: v)
            switch k {
            case "guard": p.guardEnabled = try f.bool()
            case "guard_window": p.guardWindow = try f.count(min: 1)
            case "guard_min_history": p.guardMinHistory = try f.count(min: 1)
            case "guard_min_examples": p.guardMinExamples = try f.count(min: 1)
            case "guard_ratio":
                let x = try f.number()
                guard x >= 1 else { throw f.fail("expected a number >= 1") }
                p.guardRatio = x
            case "guard_margin", "guard_mad_k", "guard_signal_max", "guard_signal_width", "guard_signal_reference_max":
                let x = try f.number()
                guard x >= 0 else { throw f.fail("expected a number >= 0") }
                switch k {
                case "guard_margin": p.guardMargin = x
                case "guard_mad_k": p.guardMadK = x
                case "guard_signal_max": p.guardSignalMax = x
                case "guard_signal_width": p.guardSignalWidth = x
                default: p.guardSignalReferenceMax = x
                }
            case "guard_signal_examples": p.guardSignalExamples = try f.count(min: 0)
            case "guard_spike_alone": p.guardSpikeAlone = try f.bool()
            case "guard_probation": p.guardProbation = try f.bool()
            case "guard_probation_examples": p.guardProbationExamples = try f.count(min: 1)
            default:
                throw bad("train.\(k): unknown key (known: \(keys.joined(separator: ", ")))")
            }
        }
        if p.guardMinHistory > p.guardWindow {
            throw bad("train.guard_min_history (\(p.guardMinHistory)) is larger than train.guard_window (\(p.guardWindow))")
        }
        return p
    }

}
