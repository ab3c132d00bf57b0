// pp-select's actions on a root: choose and promote (`select`), manual `deploy`, `rollback`,
// and retention. Each returns the decision record; `commit` prints it, appends it to
// selections.jsonl and only then moves the `deployed` link (FileIO.replaceSymlink: a reader
// sees the old target or the new one, never none). With dryRun nothing is written.
// Checkpoint checks are injected (`verify`) so the rules can be tested without a model.

import Shared
#if canImport(Glibc)
import Glibc
#endif

struct Selector {
    let root: Root
    var config = SelectConfig()
    var dryRun = false
    /// Loads a checkpoint far enough to verify it (magic, version, checksum); throws a
    /// `.corrupt` PPError otherwise. Gets an absolute or root-joined path.
    var verify: (String) throws -> Void
    var now: Double = Clock.now()
    /// Where decision lines go besides selections.jsonl (stdout in the tool).
    var output: (String) throws -> Void = { _ in }

    /// A checkpoint path as stored in results and links (relative to the root when inside
    /// it) turned into one to open.
    func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : root.path + "/" + p }

    /// "RUN/FILE" of a relative checkpoint path.
    static func id(_ rel: String) -> String {
        if let c = EvalNames.checkpointID(path: rel) { return c.run + "/" + c.file }
        return rel
    }

    /// The target of `deployed`, relative to the root when it points inside it.
    func currentDeployed() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(root.deployed, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        buf[n] = 0
        let t = String(cString: buf)
        if t.hasPrefix(root.path + "/") { return String(t.dropFirst(root.path.count + 1)) }
        return t
    }

    /// A path given on the command line, relative to the root when it lies inside it.
    func relativize(_ path: String) -> String {
        func real(_ p: String) -> String? {
            guard let r = realpath(p, nil) else { return nil }
            defer { free(r) }
            return String(cString: r)
        }
        let p = real(path) ?? path
        let r = real(root.path) ?? root.path
        return p.hasPrefix(r + "/") ? String(p.dropFirst(r.count + 1)) : p
    }

    func stamp() -> String { Clock.iso(now) }

    // MARK: - select

    /// Every readable stored result; unreadable ones are reported and skipped.
    func results() throws -> [EvalResult] {
        var out: [EvalResult] = []
        for f in try FileIO.list(root.evals) where f.hasSuffix(".json") {
            do { out.append(try EvalResult.load(path: root.evals + "/" + f)) } catch let e as PPError {
                Log.fail("pp-select", e.message + " (skipped)")
            }
        }
        return out
    }

    func examples(_ r: EvalResult) throws -> ExampleFile {
        let f = try ExampleFile.load(path: root.evals + "/" + r.examplesFile)
        guard f.evalset == r.evalset else {
            throw PPError.corrupt(root.evals + "/" + r.examplesFile, "per-example file is of eval set \(f.evalset.prefix(16)), its result of \(r.evalset.prefix(16))")
        }
        return f
    }

    /// Orders candidates best first on the metric; ties go to the later step, then name.
    func ranked(_ c: [EvalResult]) -> [EvalResult] {
        let up = SliceMetrics.higherIsBetter(config.name)
        return c.sorted { a, b in
            let x = a.metric(config.metric) ?? 0, y = b.metric(config.metric) ?? 0
            if x != y { return up ? x > y : x < y }
            if a.step != b.step { return a.step > b.step }
            return a.checkpoint > b.checkpoint
        }
    }

    /// Chooses among the results of the window on the current eval set; nil = nothing to do.
    /// The status is .corrupt when a candidate had to be refused.
    func select(since: Double) throws -> (DecisionRecord, ExitStatus)? {
        let evalset = try EvalSet.hashShards(try EvalSet.holdoutPaths(root))
        let all = try results().filter { $0.evalset == evalset }
        let dep = currentDeployed()
        let depResult = dep.flatMap { d in all.first { $0.path == d } }
        let window = all.filter { r in
            guard r.path != dep, FileIO.exists(absolute(r.path)) else { return false }
            guard let t = Clock.parseISO(r.checkpointCreatedAt) else { return false }
            return Double(t) >= now - since
        }
        if window.isEmpty { return nil }
        var rec = DecisionRecord(at: stamp(), decision: "keep", reason: "")
        rec.metric = config.metric
        rec.evalset = evalset
        rec.previous = dep.map(Selector.id); rec.previousPath = dep
        rec.deployed = rec.previous; rec.deployedPath = dep
        rec.previousScore = depResult?.metric(config.metric)
        rec.minGain = config.minGain; rec.tolerance = config.tolerance; rec.bootstrap = config.bootstrap
        let order = ranked(window)
        rec.candidates = order.map { Scored(checkpoint: $0.checkpoint, path: $0.path, step: $0.step, score: $0.metric(config.metric)) }

        var rejected: [[String: String]] = []
        var winner: EvalResult? = nil
        for c in order {
            do { try verify(absolute(c.path)); winner = c; break } catch let e as PPError {
                Log.fail("pp-select", e.message + " (candidate refused)")
                rejected.append(["checkpoint": c.checkpoint, "reason": e.message])
            }
        }
        if !rejected.isEmpty { rec.rejected = rejected }
        let status: ExitStatus = rejected.isEmpty ? .ok : .corrupt
        guard let w = winner else {
            rec.reason = "every candidate was refused"
            return (rec, status)
        }
        rec.winner = Scored(checkpoint: w.checkpoint, path: w.path, step: w.step, score: w.metric(config.metric))
        guard let d = dep else {
            rec.decision = "promote"; rec.reason = "nothing deployed yet"
            rec.deployed = w.checkpoint; rec.deployedPath = w.path
            return (rec, status)
        }
        guard let dr = depResult else {
            rec.reason = "deployed \(Selector.id(d)) has no result on eval set \(evalset.prefix(16)) (run pp-eval --pending)"
            return (rec, status)
        }
        let cmp = try Selection.compare(candidate: w, deployed: dr, config: config, examples: examples)
        rec.gain = cmp.gain
        rec.ci = cmp.ci.map { [$0.lo, $0.hi] }
        var regs = cmp.labelRegressions
        if let o = cmp.oldRegression { regs.append(o) }
        if !regs.isEmpty { rec.regressions = regs }
        rec.reason = cmp.reason
        if cmp.promote {
            rec.decision = "promote"
            rec.deployed = w.checkpoint; rec.deployedPath = w.path
        }
        return (rec, status)
    }

    // MARK: - deploy, rollback

    /// Manual promotion of `path` (still verified).
    func deploy(_ path: String) throws -> DecisionRecord {
        guard FileIO.exists(path) else { throw PPError("\(path): no such checkpoint", status: .noInput) }
        try verify(path)
        let rel = relativize(path)
        let dep = currentDeployed()
        var rec = DecisionRecord(at: stamp(), decision: "deploy", reason: dep == rel ? "manual (already deployed)" : "manual")
        rec.previous = dep.map(Selector.id); rec.previousPath = dep
        rec.deployed = Selector.id(rel); rec.deployedPath = rel
        return rec
    }

    /// Back to the checkpoint deployed before the current one (selections.jsonl).
    func rollback() throws -> DecisionRecord {
        let dep = currentDeployed()
        guard let target = History.rollbackTarget(try History.read(root.selections), current: dep) else {
            throw PPError("\(root.selections): no earlier deployment to roll back to", status: .nothingToDo)
        }
        guard FileIO.exists(absolute(target)) else {
            throw PPError("\(absolute(target)): previous checkpoint no longer exists", status: .noInput)
        }
        try verify(absolute(target))
        var rec = DecisionRecord(at: stamp(), decision: "rollback", reason: "manual rollback")
        rec.previous = dep.map(Selector.id); rec.previousPath = dep
        rec.deployed = Selector.id(target); rec.deployedPath = target
        return rec
    }

    // MARK: - retention

    /// The time a checkpoint was written: the stamp in its name, else its mtime.
    static func age(ofCheckpoint path: String) -> Double? {
        let name = FileIO.split(path).name
        let b = Array(name.utf8)
        if name.hasPrefix("ckpt-"), b.count >= 21 {
            let s = String(decoding: b[5..<21], as: UTF8.self)   // YYYYMMDDTHHMMSSZ
            let sb = Array(s.utf8)
            let iso = String(decoding: sb[0..<4], as: UTF8.self) + "-" + String(decoding: sb[4..<6], as: UTF8.self) + "-"
                + String(decoding: sb[6..<8], as: UTF8.self) + "T" + String(decoding: sb[9..<11], as: UTF8.self) + ":"
                + String(decoding: sb[11..<13], as: UTF8.self) + ":" + String(decoding: sb[13..<15], as: UTF8.self) + "Z"
            if let t = Clock.parseISO(iso) { return Double(t) }
        }
        guard let st = FileIO.lstatOrNil(path) else { return nil }
        return Double(st.st_mtim.tv_sec)
    }

    /// Checkpoints older than `keepDays` that were never deployed, are not deployed now, and
    /// are not their run's newest. nil when there is nothing to delete.
    func retention(keepDays: Int) throws -> DecisionRecord? {
        var keep = History.everDeployed(try History.read(root.selections))
        if let d = currentDeployed() { keep.insert(d) }
        let limit = now - Double(keepDays) * 86_400
        var doomed: [String] = []
        for run in try FileIO.list(root.runs) {
            let files = try FileIO.list(root.checkpoints(run: run)).filter { $0.hasSuffix(".ppc") }
            for f in files.dropLast() {   // names sort by time: the last is the run's newest
                let rel = EvalNames.relativeCheckpointPath(run: run, file: f)
                if keep.contains(rel) { continue }
                if let t = Selector.age(ofCheckpoint: absolute(rel)), t < limit { doomed.append(rel) }
            }
        }
        if doomed.isEmpty { return nil }
        var rec = DecisionRecord(at: stamp(), decision: "retention",
                                 reason: "older than \(keepDays) days, never deployed, not a run's newest")
        rec.deployedPath = currentDeployed()
        rec.deployed = rec.deployedPath.map(Selector.id)
        rec.deleted = doomed
        return rec
    }

    // MARK: - commit

    /// Prints the decision, appends it to selections.jsonl, then acts on it (moves the link
    /// or deletes retention's files). A dry run only prints.
    func commit(_ r: DecisionRecord) throws {
        var r = r
        r.dryRun = dryRun
        let line = try r.json()
        try output(line)
        if dryRun { return }
        try History.append(line, to: root.selections)
        if r.moved, let target = r.deployedPath, target != currentDeployed() {
            try FileIO.replaceSymlink(root.deployed, target: target)
        }
        if r.decision == "retention" {
            for p in r.deleted ?? [] { try FileIO.removeDurably(absolute(p)) }
        } else {
            try publishMetrics(r)
        }
    }
}

extension Selector {
    /// metrics/pp-select.prom (Prometheus textfile): the last decision and what is deployed.
    func publishMetrics(_ r: DecisionRecord) throws {
        var m = Metrics()
        m.add("perpetuum_select_last_decision_timestamp_seconds", now.rounded(), help: "When pp-select last recorded a decision.")
        for d in ["promote", "keep", "deploy", "rollback", "retention"] {
            m.add("perpetuum_select_last_decision", d == r.decision ? 1 : 0, help: "1 for the kind of the last decision.",
                  labels: [("decision", d)])
        }
        if let c = r.rejected?.count { m.add("perpetuum_select_rejected", c, help: "Candidates refused by the last decision (corrupt).") }
        if let d = currentDeployed(), let id = EvalNames.checkpointID(path: d) {
            var f = id.file
            if f.hasSuffix(".ppc") { f.removeLast(4) }
            let step = f.split(separator: "-").last.flatMap { Int($0) } ?? -1
            m.add("perpetuum_deployed_step", step, help: "Step of the deployed checkpoint (from its name).", labels: [("run", id.run)])
        }
        if let s = r.decision == "promote" ? r.winner?.score : r.previousScore, let metric = r.metric {
            m.add("perpetuum_deployed_score", s, help: "The deployed checkpoint's score on the selection metric.", labels: [("metric", metric)])
        }
        try m.publish(root: root, name: "pp-select")
    }
}
