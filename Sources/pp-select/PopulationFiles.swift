// The files of a population of runs (issue 16): population.json (PopulationConfig, written by
// a person) and population.jsonl (PopulationEntry lines, the step's journal). Formats and
// validation only; the step itself is Population.swift. Linked into the fuzz target
// fuzz-selections (Fuzz/Targets), which feeds both parsers arbitrary bytes.

import Foundation
import Shared
import TextModel

/// One run's knobs in population.json and the journal.
struct PopulationKnobs: Codable, Equatable {
    var lr: Double
    var dropout: Double?
}

/// population.json: `{"runs": {"p1": {"lr": 0.1}, ...}, "perturb": [0.8, 1.25], "seed": 7,
/// "margin": 0, "metric": "recent.accuracy", "min_interval": "20h"}`; only `runs` is required.
struct PopulationConfig: Equatable {
    var runs: [String] = []
    var knobs: [String: PopulationKnobs] = [:]
    /// Each knob of the copied run is multiplied by one of these, drawn at random.
    var perturb: [Double] = [0.8, 1.25]
    var seed: UInt64 = 0
    /// The best run's score must beat the weakest's by more than this to copy it.
    var margin: Double = 0
    var metric = "recent.accuracy"
    /// Decisions at least this far apart (seconds): the step is daily, run after pp-select.
    var minInterval: Double = 20 * 3600

    static let keys = ["runs", "perturb", "seed", "margin", "metric", "min_interval"]
    static let maxRuns = 32

    /// Parses and checks the file; every error names the file and the key.
    static func parse(_ bytes: [UInt8], path: String) throws -> PopulationConfig {
        let d: [String: JSONValue]
        do { d = try JSONDecoder().decode([String: JSONValue].self, from: Data(bytes)) } catch {
            throw PPError.corrupt(path, "not a JSON object (keys: \(keys.joined(separator: ", ")))")
        }
        var c = PopulationConfig()
        for (k, v) in d.sorted(by: { $0.key < $1.key }) {
            switch k {
            case "runs": try c.parseRuns(v, path: path)
            case "perturb": c.perturb = try parsePerturb(v, path: path)
            case "seed":
                guard case .number(let x) = v, x >= 0, x < 9_007_199_254_740_992, x == x.rounded() else {
                    throw PPError.corrupt(path, "seed: expected an integer in [0, 2^53)")
                }
                c.seed = UInt64(x)
            case "margin":
                guard case .number(let x) = v, x >= 0, x <= 1 else { throw PPError.corrupt(path, "margin: expected a number in [0, 1]") }
                c.margin = x
            case "metric":
                guard case .string(let m) = v, EvalResult.isValidMetric(m) else { throw PPError.corrupt(path, "metric: not a metric pp-select knows") }
                c.metric = m
            case "min_interval":
                guard case .string(let s) = v, let x = Clock.duration(s), x >= 0 else {
                    throw PPError.corrupt(path, "min_interval: expected a duration (e.g. \"20h\")")
                }
                c.minInterval = x
            default:
                throw PPError.corrupt(path, "\(k): unknown key (known: \(keys.joined(separator: ", ")))")
            }
        }
        guard c.runs.count >= 2 else { throw PPError.corrupt(path, "runs: a population needs at least two runs") }
        return c
    }

    private mutating func parseRuns(_ v: JSONValue, path: String) throws {
        guard case .object(let o) = v, o.count <= PopulationConfig.maxRuns else {
            throw PPError.corrupt(path, "runs: expected an object of at most \(PopulationConfig.maxRuns) runs, each {\"lr\": X[, \"dropout\": Y]}")
        }
        for (name, k) in o.sorted(by: { $0.key < $1.key }) {
            guard PopulationConfig.isRunName(name) else {
                throw PPError.corrupt(path, "runs: \(JSONText.string(name)) is not a population run name (1-64 of A-Z a-z 0-9 _ . -, not starting with '.' or '-')")
            }
            guard case .object(let kv) = k, case .number(let lr)? = kv["lr"], Set(kv.keys).isSubset(of: ["lr", "dropout"]) else {
                throw PPError.corrupt(path, "runs.\(name): expected {\"lr\": X[, \"dropout\": Y]}")
            }
            if let why = Knobs.problem(lr: lr) { throw PPError.corrupt(path, "runs.\(name).lr: \(why)") }
            var dropout: Double?
            if let dv = kv["dropout"] {
                guard case .number(let x) = dv else { throw PPError.corrupt(path, "runs.\(name).dropout: expected a number") }
                if let why = Knobs.problem(dropout: x) { throw PPError.corrupt(path, "runs.\(name).dropout: \(why)") }
                dropout = x
            }
            runs.append(name)
            knobs[name] = PopulationKnobs(lr: lr, dropout: dropout)
        }
    }

    private static func parsePerturb(_ v: JSONValue, path: String) throws -> [Double] {
        guard case .array(let a) = v, (1...8).contains(a.count) else {
            throw PPError.corrupt(path, "perturb: expected 1 to 8 factors, e.g. [0.8, 1.25]")
        }
        return try a.map {
            guard case .number(let x) = $0, x > 0, x <= 10 else { throw PPError.corrupt(path, "perturb: each factor must be in (0, 10]") }
            return x
        }
    }

    /// A population's run names become systemd instance names (pp-train@RUN.service, written
    /// by the generator of perpetuum.target), folder names and metric labels: a narrower rule
    /// than pp-train's `--run` (a plain file name), so that each is the same string in all three.
    static func isRunName(_ name: String) -> Bool {
        let u = Array(name.utf8)
        guard (1...64).contains(u.count), u[0] != UInt8(ascii: "."), u[0] != UInt8(ascii: "-") else { return false }
        return u.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2E || c == 0x2D
        }
    }

    /// The default config of a root: ROOT/population.json.
    static func defaultPath(_ root: Root) -> String { root.path + "/population.json" }

    /// The population config at `path` (default: the root's population.json); nil when there
    /// is none (no population).
    static func load(path: String) throws -> PopulationConfig? {
        guard FileIO.exists(path) else { return nil }
        return try parse(try FileIO.readAll(path, regularOnly: true), path: path)
    }
}

/// One line of population.jsonl.
struct PopulationEntry: Codable, Equatable {
    var schema = 1
    /// 1, 2, ... in file order (the explore draws are seeded with it).
    var seq: Int
    var at: String
    /// "init" (a run's first knobs), "exploit" (the run continues `from` with `knobs`), "keep".
    var action: String
    var run: String?
    var from: String?
    var knobs: PopulationKnobs?
    var oldKnobs: PopulationKnobs?
    /// The factor each knob of `from`'s run was multiplied by.
    var factors: [String: Double]?
    /// Each ranked run's score on `metric` (its newest clean evaluated checkpoint).
    var scores: [String: Double]?
    var checkpoints: [String: String]?
    var metric: String?
    /// The paired bootstrap's 95% interval of the best run's gain over the weakest's.
    var gainInterval: [Double]?
    var evalset: String?
    var seed: UInt64?
    var reason: String

    enum CodingKeys: String, CodingKey {
        case schema, seq, at, action, run, from, knobs, factors, scores, checkpoints, metric, evalset, seed, reason
        case oldKnobs = "old_knobs"
        case gainInterval = "gain_interval"
    }

    var line: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? enc.encode(self)) ?? Data(), as: UTF8.self)
    }

    var isDecision: Bool { action == "exploit" || action == "keep" }
}

enum PopulationJournal {
    static func path(_ root: Root) -> String { root.path + "/population.jsonl" }

    /// Every entry; a line that is not an entry is an error naming the file and line (the
    /// knobs of a run depend on every line). A torn last line is cut first (History.repairTail).
    static func read(_ root: Root, repair: Bool) throws -> [PopulationEntry] {
        let p = path(root)
        guard FileIO.exists(p) else { return [] }
        if repair, let torn = try History.repairTail(p) {
            Log.make("pp-select").warning("\(p): cut off a torn last line (\(torn.count) bytes)")
        }
        return try parse(try FileIO.readAll(p, regularOnly: true), path: p)
    }

    /// The entries in a journal's bytes (`read`; also the fuzz target's entry). A last line
    /// without its newline (torn, and not cut: a dry run) is skipped.
    static func parse(_ bytes: [UInt8], path: String) throws -> [PopulationEntry] {
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        var out: [PopulationEntry] = []
        let dec = JSONDecoder()
        for (i, line) in lines.enumerated() where !line.isEmpty {
            guard let e = try? dec.decode(PopulationEntry.self, from: Data(line)) else {
                if i == lines.count - 1 { continue }
                throw PPError.corrupt(path, "line \(i + 1): not a population entry")
            }
            out.append(e)
        }
        return out
    }
}

