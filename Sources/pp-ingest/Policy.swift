// The "ingest" section of ROOT/policy.json (docs/formats.md, "policy.json"): the thresholds
// of pp-ingest's batch checks and the size of its reference window. The file is optional (a
// missing file or section means the documented defaults); pp-ingest reads only its own
// section and ignores the others (pp-train's, pp-select's). An unknown key in the section is
// an error naming the file and the key, so a typo never silently leaves a default in force.
// Not here: what each check measures (Checks.swift).

import Foundation
import Shared
import TextModel

struct IngestPolicy: Equatable {
    /// One check's threshold: it trips when value > max + width / sqrt(n) and the count of
    /// examples behind the value is at least minCount (n = the examples the value is computed
    /// on). The width term widens the threshold for small batches, whose statistics are noisy.
    /// Issue 14: `hard` checks detect damage (a trip quarantines), the others change (a trip
    /// is recorded in "changed" and never quarantines). With `madK`, the base of the threshold
    /// comes from the stream: median + madK x 1.4826 x MAD of the check's own values on the
    /// reference inputs, kept within [max, cap]; without it (`"mad_k": null`: pinned) the
    /// base is `max`.
    struct Limit: Equatable {
        var max: Double
        var width: Double
        var minCount: Int = 0
        var hard: Bool = false
        var madK: Double? = nil
        var cap: Double? = nil
        func threshold(n: Int) -> Double { max + width / Double(Swift.max(n, 1)).squareRoot() }
        /// The threshold for n examples given the check's values on the reference inputs, and
        /// whether the base came from them (at least minInputs values, above the floor).
        func threshold(n: Int, reference: [Double], minInputs: Int) -> (Double, Bool) {
            let w = width / Double(Swift.max(n, 1)).squareRoot()
            guard let k = madK, reference.count >= Swift.max(minInputs, 1) else { return (max + w, false) }
            let m = IngestPolicy.median(reference)
            let mad = IngestPolicy.median(reference.map { abs($0 - m) })
            var base = Swift.max(max, m + k * 1.4826 * mad)
            if let c = cap { base = Swift.min(base, Swift.max(c, max)) }
            return (base + w, base > max)
        }
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        if s.isEmpty { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// false: measure and record everything, quarantine nothing.
    var quarantine = true
    /// The distribution reference: the most recently accepted inputs (by shard-name order).
    var referenceInputs = 26
    /// Reference checks are skipped while the reference holds fewer examples than this.
    var referenceMinExamples = 200
    /// Inputs whose example hashes the duplicate check compares with.
    var duplicateInputs = 156
    /// A trickle (inputs arriving more often than `poolMaxWait`, by the median gap of the
    /// recent ones): the reference window grows past `referenceInputs` until it holds
    /// `referenceMinExamples` examples, reading at most this many sidecars.
    var referenceMaxInputs = 1000
    /// A trickle's inputs of fewer examples than this are held in inbox/ and judged together
    /// as one pool (docs/formats.md, "Trickles"); 0 judges every input alone.
    var poolMinExamples = 50
    /// ... for at most this many seconds after the oldest of them landed (its mtime): then
    /// the pool is judged with what it holds. Also the gap that makes a stream a trickle.
    var poolMaxWait = 21600.0
    /// Examples (a uniform sample of each input) the deployed model scores for the canary
    /// and the OOV rate.
    var sampleExamples = 5000
    /// The canary and OOV checks need this many reference inputs with a value.
    var modelMinReference = 3
    /// label_signal is checked only while the deployed model separates labels on the
    /// reference (its pooled label_signal there is at most this): a model that cannot tell
    /// labels apart on clean data cannot tell a shuffled batch either.
    var signalReferenceMax = 0.85
    /// A stream-derived threshold needs the check's value on this many reference inputs.
    var derivedMinInputs = 8
    /// label_flood judges only labels with at least this many examples in the reference: a
    /// label the model has barely seen is one it cannot predict, so its burst says nothing
    /// about the texts (clean bursts of such labels stopped 2023-W13 of the demo and
    /// util-linux 2009-W10; docs/formats.md).
    var floodMinReference = 5
    /// Per check: its limit, or nil when switched off (`"name": null` in the file).
    var checks: [String: Limit?] = IngestPolicy.defaultChecks

    /// Calibrated on the 130 clean weeks of demo/data (tools/false-positives.sh) and on the
    /// spoiled weeks of tools/spoil.py; docs/formats.md gives the reasoning per check.
    /// The change checks keep their issue-7 constants (they only report). The damage checks'
    /// constants are floors under a stream-derived base (mad_k), up to cap. Issue 14 on the
    /// two shipped streams (README.md, "Spoiled data"): duplicates' floor 0.6 (util-linux's
    /// stable-branch cherry-picks repeat 45-67% of a small week's messages; a re-sent week is
    /// ~100%); label_signal judges only 30 or more scored examples (clean util-linux weeks of
    /// 3-25 examples reached 1.03-1.65 with a stale model) and is pinned (0.9 + 0.2/sqrt(n):
    /// derived from the stream, its base sat at the cap and caught half as many shuffled
    /// weeks); label_flood's cap 0.5 and width 0.9 (clean topic bursts reached 0.50-0.83 at 18-62
    /// examples, 90% floods 0.53-0.99: the two overlap; cap 0.45 / width 0.7 stopped 1.3% and 2%
    /// of the clean weeks of util-linux and git, docs/formats.md).
    static let defaultChecks: [String: Limit?] = [
        "label_linf": Limit(max: 0.35, width: 1.2),
        "label_js": Limit(max: 0.60, width: 1.5),
        "new_labels": Limit(max: 0.50, width: 1.0, minCount: 5),
        "oov": Limit(max: 0.10, width: 0.3),
        "length_js": Limit(max: 0.50, width: 0.8),
        "duplicates": Limit(max: 0.60, width: 0.5, minCount: 3, hard: true, madK: 6, cap: 0.8),
        "garbage": Limit(max: 0.02, width: 0.0, minCount: 2, hard: true, madK: 6, cap: 0.2),
        "mojibake": Limit(max: 0.001, width: 0.0, minCount: 1, hard: true, madK: 6, cap: 0.1),
        "canary": Limit(max: 1.7, width: 2.5),
        "label_signal": Limit(max: 0.90, width: 0.2, minCount: 30, hard: true),
        // Issue 14: z < 1.5 (1 - Phi(1.5) = 0.0668), 30+ scored examples, pinned: a shuffled
        // batch's value is about uniform, so this catches ~93% of shuffled batches the gate
        // lets it judge; no clean week of the three streams' measured ranges went past it
        // that no other check stopped (docs/formats.md).
        "label_chance": Limit(max: 0.0668, width: 0, minCount: 30, hard: true),
        "label_flood": Limit(max: 0.25, width: 0.9, minCount: 4, hard: true, madK: 4, cap: 0.5),
        "truncated": Limit(max: 0.45, width: 0.6, minCount: 2, hard: true, madK: 6, cap: 0.7),
    ]
    static let checkNames = ["label_linf", "label_js", "new_labels", "oov", "length_js", "duplicates", "garbage", "mojibake",
                             "canary", "label_signal", "label_chance", "label_flood", "truncated"]
    /// Where each check's value is recorded in the stats (sidecars): the reference values of
    /// a stream-derived threshold.
    static let statKey = ["new_labels": "new_label_share", "oov": "oov_increase", "duplicates": "duplicate_share",
                          "garbage": "garbage_share", "mojibake": "mojibake_share", "canary": "canary_ratio",
                          "truncated": "short_increase"]

    func limit(_ name: String) -> Limit? { checks[name] ?? nil }

    /// Reads ROOT/policy.json's "ingest" section; defaults for whatever it does not set.
    static func load(root: Root) throws -> IngestPolicy {
        let path = root.path + "/policy.json"
        guard FileIO.exists(path) else { return IngestPolicy() }
        let bytes = try FileIO.readAll(path)
        return try parse(bytes, path: path)
    }


    static func parse(_ bytes: [UInt8], path: String) throws -> IngestPolicy {
        func bad(_ why: String) -> PPError { PPError("\(path): \(why)", status: .corrupt) }
        let top: JSONValue
        do { top = try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) } catch {
            throw bad("not valid JSON")
        }
        guard case .object(let sections) = top else { throw bad("not a JSON object") }
        var p = IngestPolicy()
        guard let secValue = sections["ingest"] else { return p }
        guard case .object(let sec) = secValue else { throw bad("\"ingest\" is not an object") }

        for (key, v) in sec {
            let f = JSONField(path: path, key: "ingest." + key, value: v)
            switch key {
            case "quarantine": p.quarantine = try f.bool()
            case "reference_inputs": p.referenceInputs = try f.count(min: 1)
            case "reference_min_examples": p.referenceMinExamples = try f.count(min: 0)
            case "duplicate_inputs": p.duplicateInputs = try f.count(min: 0)
            case "reference_max_inputs": p.referenceMaxInputs = try f.count(min: 1)
            case "pool_min_examples": p.poolMinExamples = try f.count(min: 0)
            case "pool_max_wait":
                p.poolMaxWait = try f.number()
                guard p.poolMaxWait >= 0, p.poolMaxWait.isFinite else { throw f.fail("must be a number of seconds >= 0") }
            case "sample_examples": p.sampleExamples = try f.count(min: 1)
            case "model_min_reference": p.modelMinReference = try f.count(min: 1)
            case "signal_reference_max": p.signalReferenceMax = try f.number()
            case "derived_min_inputs": p.derivedMinInputs = try f.count(min: 1)
            case "flood_min_reference": p.floodMinReference = try f.count(min: 0)
            case "checks":
                guard case .object(let cs) = v else { throw f.fail("expected an object") }
                for (name, cv) in cs {
                    guard checkNames.contains(name) else {
                        throw bad("unknown key ingest.checks.\(name) (checks: \(checkNames.joined(separator: ", ")))")
                    }
                    if case .null = cv { p.checks[name] = .some(nil); continue }
                    guard case .object(let o) = cv else { throw bad("ingest.checks.\(name): expected an object or null") }
                    let start = (p.checks[name] ?? nil) ?? (defaultChecks[name] ?? nil) ?? Limit(max: 0, width: 0)
                    p.checks[name] = .some(try limit(name, o, from: start, path: path))
                }
            default:
                throw bad("unknown key ingest.\(key) (keys: quarantine, reference_inputs, reference_min_examples, duplicate_inputs, reference_max_inputs, pool_min_examples, pool_max_wait, sample_examples, model_min_reference, signal_reference_max, derived_min_inputs, flood_min_reference, checks)")
            }
        }
        return p
    }

    /// One check's `ingest.checks.NAME` object over `start` (its current or default limit).
    static func limit(_ name: String, _ o: [String: JSONValue], from start: Limit, path: String) throws -> Limit {
        var l = start
        for (k, x) in o {
            let f = JSONField(path: path, key: "ingest.checks.\(name).\(k)", value: x)
            switch k {
            case "max": l.max = try f.number()
            case "width":
                l.width = try f.number()
                guard l.width >= 0 else { throw f.fail("must be >= 0") }
            case "min_count": l.minCount = try f.count(min: 0)
            case "hard": l.hard = try f.bool()
            case "mad_k":
                if case .null = x { l.madK = nil; break }
                let k = try f.number()
                guard k >= 0 else { throw f.fail("must be >= 0 or null") }
                l.madK = k
            case "cap":
                if case .null = x { l.cap = nil; break }
                l.cap = try f.number()
            default: throw PPError("\(path): unknown key ingest.checks.\(name).\(k) (keys: max, width, min_count, hard, mad_k, cap)", status: .corrupt)
            }
        }
        return l
    }
}
