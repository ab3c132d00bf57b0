// A population of runs (issue 16, part 2): several runs train side by side on the same shards,
// each with its own knobs; once a day `pp-select population` ranks them on the same eval set
// and restarts the weakest from the best run's newest checkpoint with the knobs perturbed
// (exploit and explore, as in population-based training).
//
//   ROOT/population.json   the config a person writes (PopulationConfig, docs/formats.md)
//   ROOT/population.jsonl  the journal: one line per init, exploit or keep (PopulationEntry),
//                          appended and fsynced *before* the step acts
//   runs/RUN/control.json  how the step acts: the run's knobs and `adopt` (the checkpoint the
//                          trainer continues from; TextModel/Control.swift), written after
//                          the journal line, so a crash in between is finished from the
//                          journal at the next run (every run makes control.json agree with
//                          the run's last journal line)
//
// Decisions are seeded (config seed and the entry's sequence number), so the same journal,
// scores and config give the same choices and factors. A checkpoint whose lineage holds a
// poisoned shard (the poison guard, as for deployment) or that is gone is never copied: the
// run's newest clean evaluated checkpoint stands for it, and a run with none is not ranked.

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
            guard !name.isEmpty, name.utf8.count <= 100, !name.hasPrefix("."), !name.contains("/") else {
                throw PPError.corrupt(path, "runs: \(JSONText.string(name)) is not a run name (a plain file name)")
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

    /// The root's population.json; nil when there is none (no population).
    static func load(root: Root) throws -> PopulationConfig? {
        let path = root.path + "/population.json"
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
    var evalset: String?
    var seed: UInt64?
    var reason: String

    enum CodingKeys: String, CodingKey {
        case schema, seq, at, action, run, from, knobs, factors, scores, checkpoints, metric, evalset, seed, reason
        case oldKnobs = "old_knobs"
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
        let bytes = try FileIO.readAll(p, regularOnly: true)
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        var out: [PopulationEntry] = []
        let dec = JSONDecoder()
        for (i, line) in lines.enumerated() where !line.isEmpty {
            guard let e = try? dec.decode(PopulationEntry.self, from: Data(line)) else {
                // A torn last line (no newline after it) that a dry run may not cut: not an entry yet.
                if !repair && i == lines.count - 1 { continue }
                throw PPError.corrupt(p, "line \(i + 1): not a population entry")
            }
            out.append(e)
        }
        return out
    }
}

/// The population step over one root (`pp-select population`).
struct Population {
    let config: PopulationConfig
    var sel: Selector
    var entries: [PopulationEntry]
    /// Where entry lines go besides the journal (stdout in the tool).
    var output: (String) throws -> Void = { _ in }

    var dryRun: Bool { sel.dryRun }
    var root: Root { sel.root }

    /// The knobs of `run` now: its last init or exploit entry, else population.json's.
    func knobs(_ run: String) -> PopulationKnobs? {
        entries.last { $0.run == run && $0.knobs != nil && ($0.action == "init" || $0.action == "exploit") }?.knobs
            ?? config.knobs[run]
    }

    /// Journals and acts: init entries for new runs, control.json brought in line with the
    /// journal, then (at most once per min_interval, unless `force`) the day's decision.
    /// Returns .ok when a decision or an init was made, .nothingToDo otherwise.
    mutating func step(force: Bool) throws -> ExitStatus {
        var status = ExitStatus.nothingToDo
        for run in config.runs where !entries.contains(where: { $0.run == run }) {
            try record(PopulationEntry(seq: entries.count + 1, at: sel.stamp(), action: "init", run: run,
                                       knobs: config.knobs[run], reason: "population.json: a new run of the population"))
            status = .ok
        }
        for run in config.runs { try makeControlAgree(run) }
        if !force, let last = entries.last(where: \.isDecision), let t = Clock.parseISO(last.at),
           sel.now - Double(t) < config.minInterval {
            Log.make("pp-select").info("population: decided at \(last.at); the next decision is due \(Clock.iso(Double(t) + config.minInterval))")
            return status
        }
        let e = try decide()
        try record(e)
        if let run = e.run, e.action == "exploit" { try makeControlAgree(run) }
        return .ok
    }

    /// Appends `e` to the journal (durably, before anything acts on it) and prints it.
    mutating func record(_ e: PopulationEntry) throws {
        if !dryRun { try History.append(e.line, to: PopulationJournal.path(root)) }
        entries.append(e)
        try output(e.line)
    }

    /// Writes runs/RUN/control.json when its knobs (or `adopt`) differ from the run's last
    /// journal entry: the journal is the truth, control.json how the trainer hears it.
    func makeControlAgree(_ run: String) throws {
        guard let k = knobs(run) else { return }
        let path = root.control(run: run)
        var c: Control
        do { c = try Control.read(path) ?? Control() } catch let e as PPError {
            Log.make("pp-select").warning("population: \(e.message); rewriting it from the journal")
            c = Control()
        }
        var want = c
        want.lr = k.lr
        if let d = k.dropout { want.dropout = d }
        if let from = entries.last(where: { $0.run == run && $0.action == "exploit" })?.from { want.adopt = from }
        guard want != c else { return }
        if dryRun { return }
        try FileIO.makeDirectories(root.run(run))
        try want.write(path)
        Log.make("pp-select").notice("population: \(path) now says lr \(k.lr)\(k.dropout.map { ", dropout \($0)" } ?? "")\(want.adopt.map { ", adopt \($0)" } ?? "")")
    }

    /// The day's decision: rank the runs, then copy the best into the weakest (with perturbed
    /// knobs) when it is better by more than the margin; else keep.
    func decide() throws -> PopulationEntry {
        var e = PopulationEntry(seq: entries.count + 1, at: sel.stamp(), action: "keep", metric: config.metric, seed: config.seed, reason: "")
        let evalset = try EvalSet.currentHoldout(root, warn: { Log.make("pp-select").warning("\($0)") }).hash
        e.evalset = evalset
        let ranked = try rank(evalset: evalset)
        e.scores = Dictionary(uniqueKeysWithValues: ranked.map { ($0.run, $0.score) })
        e.checkpoints = Dictionary(uniqueKeysWithValues: ranked.map { ($0.run, $0.checkpoint) })
        guard ranked.count >= 2, let best = ranked.first, let worst = ranked.last else {
            e.reason = "fewer than two runs have a clean evaluated checkpoint on eval set \(evalset.prefix(16))"
            return e
        }
        let gap = abs(best.score - worst.score)
        guard gap > config.margin, best.run != worst.run else {
            e.reason = "the runs are within the margin (\(worst.run) \(worst.score) vs \(best.run) \(best.score), margin \(config.margin))"
            return e
        }
        e.action = "exploit"
        e.run = worst.run
        e.from = best.checkpoint
        e.oldKnobs = knobs(worst.run)
        let from = knobs(best.run) ?? PopulationKnobs(lr: Knobs().lr)
        (e.knobs, e.factors) = explore(from, seq: e.seq)
        e.reason = "\(worst.run) (\(worst.score)) continues \(best.checkpoint) of \(best.run) (\(best.score)) with its knobs perturbed"
        return e
    }

    struct Ranked { var run: String; var score: Double; var checkpoint: String }

    /// Each run's newest clean evaluated checkpoint on `evalset` that still has its weights,
    /// best first (ties: the run listed first in population.json).
    func rank(evalset: String) throws -> [Ranked] {
        let byRun = Dictionary(grouping: try sel.results(evalset: evalset).filter { config.knobs[$0.run] != nil }, by: \.run)
        var out: [Ranked] = []
        for run in config.runs {
            let newestFirst = (byRun[run] ?? []).sorted { ($0.step, $0.checkpoint) > ($1.step, $1.checkpoint) }
            for r in newestFirst {
                guard let score = r.metric(config.metric), score.isFinite, FileIO.isRegularFile(sel.absolute(r.path)) else { continue }
                if let why = sel.poisonReason(sel.absolute(r.path)) {
                    Log.make("pp-select").warning("population: not copying \(r.checkpoint): \(why.text)")
                    continue
                }
                out.append(Ranked(run: run, score: score, checkpoint: r.checkpoint))
                break
            }
        }
        let up = SliceMetrics.higherIsBetter(EvalResult.splitMetric(config.metric).name)
        let order = Dictionary(uniqueKeysWithValues: config.runs.enumerated().map { ($1, $0) })
        return out.sorted { a, b in
            if a.score != b.score { return up ? a.score > b.score : a.score < b.score }
            return order[a.run]! < order[b.run]!
        }
    }

    /// The copied run's knobs, each multiplied by a factor drawn from `perturb` (seeded by
    /// the config's seed and the entry's number), kept within the trainer's ranges.
    func explore(_ k: PopulationKnobs, seq: Int) -> (PopulationKnobs, [String: Double]) {
        var rng = SplitMix64(state: config.seed ^ (UInt64(seq) &* 0x9E37_79B9_7F4A_7C15))
        func draw() -> Double { config.perturb[Int(rng.next() % UInt64(config.perturb.count))] }
        var out = k
        var factors: [String: Double] = [:]
        let f = draw()
        factors["lr"] = f
        out.lr = min(max(k.lr * f, 1e-4), 10)
        if let d = k.dropout {
            let g = draw()
            factors["dropout"] = g
            out.dropout = min(max(d * g, 0), 0.9)
        }
        return (out, factors)
    }

    /// metrics/pp-population.prom: knobs and last scores per run, the deployed run, exploits.
    func publishMetrics() throws {
        var m = Metrics()
        let last = entries.last(where: \.isDecision)
        let deployedRun = sel.currentDeployed().map(Selector.id).flatMap { $0.split(separator: "/").first.map(String.init) }
        for run in config.runs {
            guard let k = knobs(run) else { continue }
            m.add("perpetuum_population_knob", k.lr, help: "Each population run's knobs (the journal's last word).", labels: [("run", run), ("knob", "lr")])
            if let d = k.dropout { m.add("perpetuum_population_knob", d, help: "Each population run's knobs (the journal's last word).", labels: [("run", run), ("knob", "dropout")]) }
            if let s = last?.scores?[run] {
                m.add("perpetuum_population_score", s, help: "Each run's score at the last decision (population.json's metric).", labels: [("run", run)])
            }
            m.add("perpetuum_population_deployed", deployedRun == run ? 1 : 0, help: "1 for the run whose checkpoint is deployed.", labels: [("run", run)])
        }
        m.add("perpetuum_population_exploits_total", entries.filter { $0.action == "exploit" }.count, kind: .counter,
              help: "Exploit steps in the journal (a run restarted from the best run's checkpoint).")
        if let t = last.flatMap({ Clock.parseISO($0.at) }) {
            m.add("perpetuum_population_last_decision_timestamp_seconds", Double(t), help: "When the population step last decided.")
        }
        try m.publish(root: root, name: "pp-population")
    }
}
