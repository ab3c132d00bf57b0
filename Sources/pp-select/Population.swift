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
        let status = try sync()
        if !force, let last = entries.last(where: \.isDecision), let t = Clock.parseISO(last.at),
           sel.now - Double(t) < config.minInterval {
            Log.make("pp-select").info("population: decided at \(last.at); the next decision is due \(Clock.iso(Double(t) + config.minInterval))")
            return status
        }
        let e: PopulationEntry
        do { e = try decide() } catch let err as PPError where err.status == .nothingToDo {
            Log.make("pp-select").info("population: no decision yet: \(err.message)")
            return status
        }
        // New evidence only: the same checkpoints as at the last decision decide nothing new
        // (a stream with weekly data would otherwise repeat the same step every day).
        if !force, let last = entries.last(where: \.isDecision), let c = e.checkpoints, !c.isEmpty, last.checkpoints == c {
            Log.make("pp-select").info("population: no run has a new evaluated checkpoint since the decision of \(last.at)")
            return status
        }
        try record(e)
        if let run = e.run, e.action == "exploit" { try makeControlAgree(run) }
        return .ok
    }

    /// The part of the step that decides nothing: an init entry for each run new to the
    /// journal, then every run's control.json made to agree with the journal. `pp-select
    /// population --sync` runs only this, before each pp-train@RUN starts (its unit's
    /// ExecStartPre), so a trainer the target starts has its population knobs from its first
    /// batch. Returns .ok when an init was journaled, .nothingToDo otherwise.
    mutating func sync() throws -> ExitStatus {
        var status = ExitStatus.nothingToDo
        for run in config.runs where !entries.contains(where: { $0.run == run }) {
            try record(PopulationEntry(seq: entries.count + 1, at: sel.stamp(), action: "init", run: run,
                                       knobs: config.knobs[run], reason: "population.json: a new run of the population"))
            status = .ok
        }
        for run in config.runs { try makeControlAgree(run) }
        return status
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
    /// knobs) when it is better by more than the margin and significantly (the paired
    /// bootstrap's interval of the gain above 0); else keep, saying why.
    func decide() throws -> PopulationEntry {
        var e = PopulationEntry(seq: entries.count + 1, at: sel.stamp(), action: "keep", metric: config.metric, seed: config.seed, reason: "")
        let evalset = try sel.currentEvalset()
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
        // A difference the eval set cannot tell from noise copies nothing: on a few hundred
        // recent examples most day-to-day gaps are one or two examples (the first `make drift`
        // trial copied a run almost every week on gaps of 1 in 200, and the knobs wandered).
        let (lo, hi) = try gainInterval(best.result, over: worst.result, seq: e.seq)
        e.gainInterval = [lo, hi]
        guard lo > 0 else {
            e.reason = "\(best.run) (\(best.score)) is not significantly better than \(worst.run) (\(worst.score)): 95% interval of the gain [\(lo), \(hi)]"
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

    struct Ranked { var run: String; var score: Double; var checkpoint: String; var result: EvalResult }

    /// The paired bootstrap's 95% interval of `a`'s gain over `b` on the config's metric and
    /// slice (Selection.bootstrap, 1000 rounds, seeded by the line's number); (0, 0) when a
    /// per-example file is missing or unreadable (nothing is copied on evidence not seen).
    func gainInterval(_ a: EvalResult, over b: EvalResult, seq: Int) throws -> (Double, Double) {
        let (slice, name) = EvalResult.splitMetric(config.metric)
        do {
            return try Selection.bootstrap(try sel.examples(a), try sel.examples(b), slice: slice, metric: name,
                                           rounds: 1000, seed: config.seed ^ UInt64(seq))
        } catch let e as PPError where e.status == .corrupt || e.status == .noInput || e.status == .software {
            Log.make("pp-select").warning("population: cannot compare \(a.checkpoint) with \(b.checkpoint) example by example: \(e.message)")
            return (0, 0)
        }
    }

    /// Each run's newest clean evaluated checkpoint on `evalset` that still has its weights,
    /// best first (ties: the run listed first in population.json). A run restarted by an
    /// exploit step counts only with a checkpoint written after it: until then it has no
    /// score of its own (its older checkpoints judge knobs it no longer has).
    func rank(evalset: String) throws -> [Ranked] {
        let byRun = Dictionary(grouping: try sel.results(evalset: evalset).filter { config.knobs[$0.run] != nil }, by: \.run)
        var out: [Ranked] = []
        for run in config.runs {
            let newestFirst = (byRun[run] ?? []).sorted { ($0.step, $0.checkpoint) > ($1.step, $1.checkpoint) }
            let restarted = entries.last { $0.run == run && $0.action == "exploit" }.flatMap { Clock.parseISO($0.at) }
            for r in newestFirst {
                if let t = restarted, let c = Clock.parseISO(r.checkpointCreatedAt), c <= t { break }
                guard let score = r.metric(config.metric), score.isFinite, FileIO.isRegularFile(sel.absolute(r.path)) else { continue }
                if let why = sel.poisonReason(sel.absolute(r.path)) {
                    Log.make("pp-select").warning("population: not copying \(r.checkpoint): \(why.text)")
                    continue
                }
                out.append(Ranked(run: run, score: score, checkpoint: r.checkpoint, result: r))
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
