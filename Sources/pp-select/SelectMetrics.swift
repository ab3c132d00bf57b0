// metrics/pp-select.prom (Prometheus textfile, docs/formats.md "pp-select metrics"): what is
// deployed and how good and how fresh it is, and the last decision. Rebuilt after every
// pp-select run that is not a dry run (also when there was nothing to do), from the `deployed`
// link, selections.jsonl, evals/ and the deployed checkpoint's lineage; no state of its own.
//
// Freshness (issue 6): the newest input in the deployed model is the newest shard of its full
// lineage, by the stamp in the shard's name (the input file's mtime, docs/formats.md
// "Shards"). It is exported as a timestamp, so `time() - perpetuum_deployed_newest_input_timestamp_seconds`
// stays right between runs, and as the age when the file was written.

import Shared
import TextModel

extension Selector {
    /// The numbers behind the file; split from `publishMetrics` so tests can read them.
    func metrics() throws -> Metrics {
        var m = Metrics()
        m.add("perpetuum_select_last_run_timestamp_seconds", now.rounded(), help: "When pp-select last ran (not a dry run).")
        let history = try History.read(root.selections).filter { !$0.dryRun && $0.decision != "retention" }
        if let r = history.last { lastDecision(r, into: &m) }
        let guardian = try poisonGuard ?? PoisonGuard(root: root)
        // Only shard names: quarantine/ also holds reason files of inputs refused at ingest,
        // which never became shards.
        m.add("perpetuum_poisoned_shards", guardian.poison.keys.filter { $0.hasSuffix("." + Shard.fileExtension) }.count,
              help: "Shards that must never be in a deployed model (quarantined, or suspect in a run).")
        guard let dep = currentDeployed() else { return m }
        let id = EvalNames.checkpointID(path: dep)
        let run = id?.run ?? "?"
        if let id = id {
            let step = CheckpointName(id.file)?.step ?? -1
            m.add("perpetuum_deployed_step", step, help: "Step of the deployed checkpoint (from its name).", labels: [("run", run)])
        }

        try deployedScores(dep, into: &m)
        deployedLineage(dep, guardian, into: &m)
        return m
    }

    /// The last decision: when, which kind, what it refused.
    func lastDecision(_ r: DecisionRecord, into m: inout Metrics) {
        if let t = Clock.parseISO(r.at) {
            m.add("perpetuum_select_last_decision_timestamp_seconds", Double(t), help: "When pp-select last recorded a decision.")
        }
        for d in ["promote", "keep", "deploy", "rollback"] {
            m.add("perpetuum_select_last_decision", d == r.decision ? 1 : 0, help: "1 for the kind of the last decision.",
                  labels: [("decision", d)])
        }
        for kind in ["corrupt", "poison", "lineage", "missing"] {
            m.add("perpetuum_select_rejected", r.rejected?.filter { $0["kind"] == kind }.count ?? 0,
                  help: "Checkpoints the last decision refused, by why (docs/formats.md).", labels: [("kind", kind)])
        }
    }

    /// The deployed checkpoint's scores on the current eval set (pp-eval.prom has each run's
    /// newest checkpoint).
    func deployedScores(_ dep: String, into m: inout Metrics) throws {
        if let evalset = try? currentEvalset(),
           let r = try results(evalset: evalset).first(where: { $0.path == dep }) {
            if let s = r.metric(config.metric) {
                m.add("perpetuum_deployed_score", s, help: "The deployed checkpoint's score on the selection metric.",
                      labels: [("metric", config.metric)])
            }
            for slice in ["all", "recent", "old"] {
                guard let sm = r.slice(slice) else { continue }
                for name in SliceMetrics.names {
                    m.add("perpetuum_deployed_eval_score", sm.value(name) ?? 0,
                          help: "The deployed checkpoint on the current eval set, by slice and metric (docs/formats.md).",
                          labels: [("slice", slice), ("metric", name)])
                }
            }
        }
    }

    /// The deployed model's lineage: how many shards, whether it is whole, poison in it, freshness.
    func deployedLineage(_ dep: String, _ guardian: PoisonGuard, into m: inout Metrics) {
        guard let v = try? guardian.check(absolute(dep)) else {
            Log.make("pp-select").warning("deployed \(Selector.id(dep)): lineage unreadable; no freshness metric")
            return
        }
        m.add("perpetuum_deployed_lineage_shards", v.shards.count, help: "Shards in the deployed checkpoint's full lineage (as far as known).")
        m.add("perpetuum_deployed_lineage_complete", v.complete ? 1 : 0,
              help: "1 when every ancestor of the deployed checkpoint is still there (its whole lineage is known).")
        m.add("perpetuum_deployed_poisoned_shards", v.poisoned.count + v.unresolved.count,
              help: "Poisoned shards (maybe) in the deployed model's lineage: 0 unless no clean checkpoint could replace it.")
        if let newest = Selector.newestInput(v.shards) {
            m.add("perpetuum_deployed_newest_input_timestamp_seconds", newest.time,
                  help: "Input time (shard name stamp: the input file's mtime) of the newest shard in the deployed model.")
            m.add("perpetuum_deployed_newest_input_age_seconds", max(0, now - newest.time).rounded(),
                  help: "Freshness: age of the newest input in the deployed model when this file was written.")
            if let h = try? ShardHeader.read(path: root.shards + "/" + newest.shard), let ts = h.tsMax {
                m.add("perpetuum_deployed_newest_example_timestamp_seconds", Double(ts),
                      help: "Newest example time (ts_max) in that newest shard.")
            }
        }
    }

    /// The shard of a lineage with the latest name stamp ("<stamp>-<sha16>-<part>.pps").
    static func newestInput(_ shards: [ShardRef]) -> (shard: String, time: Double)? {
        var best: (String, Double)? = nil
        for s in shards {
            guard s.name.utf8.count >= 16, let t = Clock.parseStamp(s.name.prefix(16)) else { continue }
            if best == nil || t > best!.1 || (t == best!.1 && s.name > best!.0) { best = (s.name, t) }
        }
        return best
    }

    func publishMetrics() throws {
        try metrics().publish(root: root, name: "pp-select")
    }
}
