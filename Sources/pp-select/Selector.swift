// pp-select's actions on a root: choose and promote (`select`), manual `deploy`, `rollback`,
// and retention. Each returns the decision record; `commit` prints it, moves the `deployed`
// link (FileIO.replaceSymlink: a reader sees the old target or the new one, never none) and
// then appends the record to selections.jsonl. With dryRun nothing is written.
// Checkpoint checks are injected (`verify`) so the rules can be tested without a model.
// With a PoisonGuard (the tool always has one), no checkpoint whose lineage holds a
// quarantined or suspect shard is ever deployed, and a poisoned deployed model is replaced
// (`guardDeployed`; docs/formats.md, "Never deploy poison").

import Shared
import TextModel
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
    /// Lineage checks against quarantined and suspect shards; nil skips them (tests of the
    /// other rules, on stand-in checkpoint files).
    var poisonGuard: PoisonGuard? = nil
    var now: Double = Clock.now()
    /// Where decision lines go besides selections.jsonl (stdout in the tool).
    var output: (String) throws -> Void = { _ in }
    /// What one run works out once (copies of the Selector share it).
    let memo = Memo()

    final class Memo {
        var evalset: String?
        /// Eval results decoded, by path, with the stamp of the file they were decoded from.
        var results: [String: (stamp: FileStamp, result: EvalResult)] = [:]
    }

    /// The hash of the root's current eval window, worked out once per Selector: selection,
    /// the metrics and the population step judge on the same set (and the window's shards are
    /// listed and stat'ed once, not three times).
    func currentEvalset() throws -> String {
        if let e = memo.evalset { return e }
        let e = try EvalSet.currentHoldout(root, warn: { Log.make("pp-select").warning("\($0)") }).hash
        memo.evalset = e
        return e
    }

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
        let p = FileIO.realPath(path) ?? path
        let r = FileIO.realPath(root.path) ?? root.path
        return p.hasPrefix(r + "/") ? String(p.dropFirst(r.count + 1)) : p
    }

    func stamp() -> String { Clock.iso(now) }

    // MARK: - select

    /// Every readable stored result on `evalset`; unreadable ones are reported and skipped.
    /// A result's name ends in the first 16 hex digits of its eval set (EvalNames.base), so
    /// only those files are read: evals/ keeps the results of every earlier holdout set, and
    /// decoding them all made each run grow with the history.
    func results(evalset: String) throws -> [EvalResult] {
        var out: [EvalResult] = []
        let suffix = EvalNames.resultSuffix(evalset: evalset)
        for f in try FileIO.list(root.evals) where f.hasSuffix(suffix) {
            let p = root.evals + "/" + f
            // A run asks for the same results two or three times (selection, the metrics, a
            // poison rollback); a result file is replaced whole (rename), never edited, so
            // one whose lstat is unchanged is not decoded again.
            let stamp = FileIO.lstatOrNil(p).map(FileStamp.init)
            if let stamp, let m = memo.results[p], m.stamp == stamp {
                if m.result.evalset == evalset { out.append(m.result) }
                continue
            }
            do {
                let r = try EvalResult.load(path: p)
                if let stamp { memo.results[p] = (stamp, r) }
                if r.evalset == evalset { out.append(r) }
            } catch let e as PPError {
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

    /// The order candidates are tried in: for the `noninferior` gate the newest good
    /// checkpoint is the one to deploy: each run's newest, the best of those first (with one
    /// run: its newest), then the older ones newest first; best first by the metric for
    /// `better`. Several runs (a population, issue 16) checkpoint at about the same time:
    /// "newest first" alone would deploy whichever run happened to write last.
    func candidateOrder(_ c: [EvalResult]) -> [EvalResult] {
        guard config.gate == .noninferior else { return ranked(c) }
        let newestFirst = c.sorted { a, b in
            let x = Clock.parseISO(a.checkpointCreatedAt) ?? 0, y = Clock.parseISO(b.checkpointCreatedAt) ?? 0
            if x != y { return x > y }
            if a.step != b.step { return a.step > b.step }
            return a.checkpoint > b.checkpoint
        }
        var runs = Set<String>(), heads: [EvalResult] = [], rest: [EvalResult] = []
        for r in newestFirst {
            if runs.insert(r.run).inserted { heads.append(r) } else { rest.append(r) }
        }
        return ranked(heads) + rest
    }

    /// Days since the checkpoint at `rel` was created (its result's time, else `age(ofCheckpoint:)`).
    func ageDays(_ rel: String, result: EvalResult?) -> Double? {
        let t = result.flatMap { Clock.parseISO($0.checkpointCreatedAt) }.map(Double.init) ?? Selector.age(ofCheckpoint: absolute(rel))
        return t.map { max(0, now - $0) / 86_400 }
    }

    /// Chooses among the results of the window on the current eval set; nil = nothing to do.
    /// The status is .corrupt when a candidate had to be refused.
    func select(since: Double) throws -> (DecisionRecord, ExitStatus)? {
        let evalset = try currentEvalset()
        let all = try results(evalset: evalset)
        let dep = currentDeployed()
        let depResult = dep.flatMap { d in all.first { $0.path == d } }
        // The noninferior gate moves forward only: a candidate older than the deployed one
        // (another run's, written just before it) is not "newer and at least as good".
        let depTime = depResult.flatMap { Clock.parseISO($0.checkpointCreatedAt) }
        let window = all.filter { r in
            guard r.path != dep, FileIO.exists(absolute(r.path)) else { return false }
            guard let t = Clock.parseISO(r.checkpointCreatedAt) else { return false }
            if config.gate == .noninferior, let d = depTime, t < d { return false }
            return Double(t) >= now - since
        }
        if window.isEmpty { return nil }
        var rec = keepRecord(evalset: evalset, deployed: dep, result: depResult)
        let order = candidateOrder(window)
        rec.candidates = order.map { Scored(checkpoint: $0.checkpoint, path: $0.path, step: $0.step, score: $0.metric(config.metric)) }
        let (winner, rejected, corrupt) = try firstDeployable(order)
        if !rejected.isEmpty { rec.rejected = rejected }
        let status: ExitStatus = corrupt ? .corrupt : .ok
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
        rec.oldChange = cmp.oldChange
        if cmp.promote {
            rec.decision = "promote"
            rec.deployed = w.checkpoint; rec.deployedPath = w.path
        } else if let age = rec.deployedAgeDays, age > config.maxAgeDays {
            // Never silently stale: past the maximum age, the decision says why it is kept.
            rec.reason = "deployed model is \(Selection.fmt(age)) days old, past max-age \(Selection.fmt(config.maxAgeDays)) days; kept because: " + rec.reason
            Log.make("pp-select").warning("\(rec.reason)")
        }
        return (rec, status)
    }

    /// A "keep" record of today's decision, before the candidates are looked at: the metric,
    /// the gate and its settings, what is deployed and its score and age.
    func keepRecord(evalset: String, deployed dep: String?, result depResult: EvalResult?) -> DecisionRecord {
        var rec = DecisionRecord(at: stamp(), decision: "keep", reason: "")
        rec.metric = config.metric
        rec.evalset = evalset
        rec.previous = dep.map(Selector.id); rec.previousPath = dep
        rec.deployed = rec.previous; rec.deployedPath = dep
        rec.previousScore = depResult?.metric(config.metric)
        rec.gate = config.gate.rawValue
        if config.gate == .better { rec.minGain = config.minGain } else { rec.margin = config.margin }
        rec.tolerance = config.tolerance; rec.bootstrap = config.bootstrap
        rec.deployedAgeDays = dep.flatMap { ageDays($0, result: depResult) }.map { ($0 * 1000).rounded() / 1000 }
        return rec
    }

    /// The first candidate in `order` that may be deployed: not poisoned (its lineage readable
    /// and clean) and a sound file. Returns it (nil: every one was refused), the refused ones
    /// with why, and whether a refusal was a corrupt file (exit status 65).
    func firstDeployable(_ order: [EvalResult]) throws -> (EvalResult?, [[String: String]], Bool) {
        var rejected: [[String: String]] = []
        var corrupt = false
        for c in order {
            if let why = poisonReason(absolute(c.path)) {
                Log.make("pp-select").warning("\(c.checkpoint): \(why.text) (candidate refused)")
                rejected.append(["checkpoint": c.checkpoint, "reason": why.text, "kind": why.kind])
                continue
            }
            do { try verify(absolute(c.path)); return (c, rejected, corrupt) } catch let e as PPError {
                Log.fail("pp-select", e.message + " (candidate refused)")
                rejected.append(["checkpoint": c.checkpoint, "reason": e.message, "kind": "corrupt"])
                corrupt = true
            }
        }
        return (nil, rejected, corrupt)
    }

    /// What retention may delete, oldest first: never-deployed checkpoints and old
    /// deployments (never `keep`, never a run's newest), the bytes of every checkpoint, and
    /// the deltas naming each base (TextModel/DeltaCheckpoint.swift: a base's weights are
    /// needed while any delta of it is kept; deltas moved to rewound/, never deleted since
    /// `pp-train unrewind` brings them back, keep their bases too).
    func retentionInventory(keep: Set<String>, everDeployed: Set<String>) throws
        -> ([(rel: String, time: Double, bytes: Int64)], [(rel: String, time: Double, bytes: Int64)], Int64, [String: [String]]) {
        var deletable: [(rel: String, time: Double, bytes: Int64)] = []
        var oldDeployments: [(rel: String, time: Double, bytes: Int64)] = []
        var total: Int64 = 0
        var deltasOf: [String: [String]] = [:]
        for run in try FileIO.list(root.runs) {
            let files = try root.checkpointFiles(run: run)
            for f in try Root.checkpointFiles(in: root.rewound(run: run)) {
                if let base = deltaBase(of: root.rewound(run: run) + "/" + f) {
                    deltasOf[Selector.relative(base: base), default: []].append("rewound:" + f)
                }
            }
            for (i, f) in files.enumerated() {
                let rel = EvalNames.relativeCheckpointPath(run: run, file: f)
                let bytes = Int64(FileIO.lstatOrNil(absolute(rel))?.st_size ?? 0)
                total += bytes
                if let base = deltaBase(of: absolute(rel)) { deltasOf[Selector.relative(base: base), default: []].append(rel) }
                // Names sort by time: the last is the run's newest.
                if i == files.count - 1 || keep.contains(rel) { continue }
                let entry = (rel, Selector.age(ofCheckpoint: absolute(rel)) ?? now, bytes)
                if everDeployed.contains(rel) { oldDeployments.append(entry) } else { deletable.append(entry) }
            }
        }
        deletable.sort { $0.time < $1.time }
        oldDeployments.sort { $0.time < $1.time }
        return (deletable, oldDeployments, total, deltasOf)
    }

    // MARK: - poison

    /// Why the checkpoint at `path` must not be deployed (kind "poison", or "lineage" when its
    /// chain cannot be read: unknown data counts as poisoned); nil when it may be.
    func poisonReason(_ path: String) -> (kind: String, text: String)? {
        guard let g = poisonGuard else { return nil }
        do {
            let v = try g.check(path)
            return v.clean ? nil : ("poison", v.reason)
        } catch let e as PPError {
            return ("lineage", "lineage unreadable (\(e.message))")
        } catch {
            return ("lineage", "lineage unreadable (\(error))")
        }
    }

    /// What is wrong with the deployed checkpoint `dep` for the poison guard: poisoned, or
    /// gone (moved, with the moved file's verdict); nil when it is clean or its lineage cannot
    /// be read (not a poison finding: pp-eval and the verification report that).
    func deployedProblem(_ dep: String, _ g: PoisonGuard) throws -> (problem: String, poisoned: [PoisonedShard]?)? {
        if FileIO.exists(absolute(dep)) {
            let verdict: LineageVerdict
            do { verdict = try g.check(absolute(dep)) } catch let e as PPError {
                Log.fail("pp-select", "deployed \(Selector.id(dep)): lineage unreadable (\(e.message))")
                return nil
            }
            return verdict.clean ? nil : ("is poisoned: " + verdict.reason, verdict.records)
        }
        guard let moved = Lineage.resolveParent(Selector.id(dep), root: root) else { return ("no longer exists", nil) }
        let verdict = try? g.check(moved)
        var poisoned = verdict?.records
        if poisoned?.isEmpty == true { poisoned = nil }
        return ("no longer exists at \(dep) (moved to \(relativize(moved)))" + (verdict.map { $0.clean ? "" : "; " + $0.reason } ?? ""), poisoned)
    }

    /// Layer 3's second half: when the deployed checkpoint's lineage is poisoned, replace it by
    /// the newest earlier deployment (selections.jsonl) that exists, verifies and is clean; if
    /// there is none, by the best clean verified candidate on the current eval set (any age);
    /// if there is none either, it stays deployed and the decision says so (status .corrupt).
    /// nil when nothing is deployed or the deployed checkpoint is clean. Status .partial
    /// otherwise: a decision was made, but a person should look (docs/formats.md).
    /// A deployed link whose target is gone (e.g. `pp-train rewind` moved it to rewound/, or
    /// it was deleted by hand) is replaced the same way: a reader of `deployed` would find
    /// nothing.
    func guardDeployed() throws -> (DecisionRecord, ExitStatus)? {
        guard let g = poisonGuard, let dep = currentDeployed(), let (problem, poisoned) = try deployedProblem(dep, g) else { return nil }
        Log.fail("pp-select", "deployed \(Selector.id(dep)) \(problem)")
        var rec = DecisionRecord(at: stamp(), decision: "rollback", reason: "")
        rec.previous = Selector.id(dep); rec.previousPath = dep
        rec.poisoned = poisoned
        var rejected: [[String: String]] = []
        func usable(_ rel: String) -> Bool {
            guard FileIO.exists(absolute(rel)) else {
                rejected.append(["checkpoint": Selector.id(rel), "reason": "no longer exists", "kind": "missing"]); return false
            }
            if let why = poisonReason(absolute(rel)) {
                rejected.append(["checkpoint": Selector.id(rel), "reason": why.text, "kind": why.kind]); return false
            }
            do { try verify(absolute(rel)) } catch {
                rejected.append(["checkpoint": Selector.id(rel), "reason": (error as? PPError)?.message ?? "\(error)", "kind": "corrupt"])
                return false
            }
            return true
        }
        let why = "deployed \(Selector.id(dep)) \(problem)"
        if let t = History.rollbackTargets(try History.read(root.selections), current: dep).first(where: usable) {
            rec.reason = why + "; rolled back to the newest earlier deployment without poison"
            rec.deployed = Selector.id(t); rec.deployedPath = t
        } else {
            let evalset = try? currentEvalset()
            let pool = try evalset.map { try results(evalset: $0).filter { $0.path != dep } } ?? []
            if let best = ranked(pool).first(where: { usable($0.path) }) {
                rec.decision = "promote"
                rec.reason = why + "; no earlier clean deployment, so the best clean candidate is deployed"
                rec.metric = config.metric; rec.evalset = evalset
                rec.winner = Scored(checkpoint: best.checkpoint, path: best.path, step: best.step, score: best.metric(config.metric))
                rec.deployed = best.checkpoint; rec.deployedPath = best.path
            } else {
                rec.decision = "keep"
                rec.reason = why + "; no clean checkpoint to replace it, so the link stays: deploy one by hand (pp-select --deploy) or release the shard"
                rec.deployed = rec.previous; rec.deployedPath = dep
                if !rejected.isEmpty { rec.rejected = rejected }
                return (rec, .corrupt)
            }
        }
        if !rejected.isEmpty { rec.rejected = rejected }
        return (rec, .partial)
    }

    // MARK: - deploy, rollback

    /// Manual promotion of `path` (still verified; refused when its lineage is poisoned).
    func deploy(_ path: String) throws -> DecisionRecord {
        guard FileIO.exists(path) else { throw PPError("\(path): no such checkpoint", status: .noInput) }
        if let why = poisonReason(path) {
            throw PPError("\(path): \(why.text); not deployed (pp-ingest release SHARD first if the quarantine was a mistake)",
                          status: .corrupt)
        }
        try verify(path)
        let rel = relativize(path)
        let dep = currentDeployed()
        var rec = DecisionRecord(at: stamp(), decision: "deploy", reason: dep == rel ? "manual (already deployed)" : "manual")
        rec.previous = dep.map(Selector.id); rec.previousPath = dep
        rec.deployed = Selector.id(rel); rec.deployedPath = rel
        return rec
    }

    /// Back to the checkpoint deployed before the current one (selections.jsonl); earlier
    /// deployments whose lineage is poisoned are skipped (listed in `rejected`).
    func rollback() throws -> DecisionRecord {
        let dep = currentDeployed()
        let targets = History.rollbackTargets(try History.read(root.selections), current: dep)
        guard let first = targets.first else {
            throw PPError("\(root.selections): no earlier deployment to roll back to", status: .nothingToDo)
        }
        var rejected: [[String: String]] = []
        var target: String? = nil
        for t in targets {
            guard FileIO.exists(absolute(t)) else {
                rejected.append(["checkpoint": Selector.id(t), "reason": "no longer exists", "kind": "missing"])
                continue
            }
            if let why = poisonReason(absolute(t)) {
                rejected.append(["checkpoint": Selector.id(t), "reason": why.text, "kind": why.kind])
                continue
            }
            target = t
            break
        }
        guard let target = target else {
            let all = rejected.map { "\($0["checkpoint"]!): \($0["reason"]!)" }.joined(separator: "; ")
            if rejected.count == 1, rejected[0]["kind"] == "missing" {
                throw PPError("\(absolute(first)): previous checkpoint no longer exists", status: .noInput)
            }
            throw PPError("no earlier deployment to roll back to that exists and has a clean lineage (\(all))",
                          status: rejected.contains { $0["kind"] != "missing" } ? .corrupt : .noInput)
        }
        try verify(absolute(target))
        var rec = DecisionRecord(at: stamp(), decision: "rollback",
                                 reason: rejected.isEmpty ? "manual rollback" : "manual rollback (earlier deployments with poisoned lineage skipped)")
        rec.previous = dep.map(Selector.id); rec.previousPath = dep
        rec.deployed = Selector.id(target); rec.deployedPath = target
        if !rejected.isEmpty { rec.rejected = rejected }
        return rec
    }

    // MARK: - retention

    /// The time a checkpoint was written: the stamp in its name, else its mtime.
    static func age(ofCheckpoint path: String) -> Double? {
        if let t = CheckpointName.time(of: FileIO.split(path).name) { return t }
        guard let st = FileIO.lstatOrNil(path) else { return nil }
        return Double(st.st_mtim.tv_sec)
    }

    /// The base "RUN/FILE" a delta checkpoint names (nil: a full checkpoint, or unreadable:
    /// an unreadable checkpoint protects nothing, as before). From the root's link index
    /// when the file is unchanged since a run read it.
    func deltaBase(of path: String) -> String? {
        if let l = try? LinkIndex.shared(root).link(path) { return l.base }
        return (try? Checkpoint.readHeadBase(path: path)) ?? nil
    }

    /// A base "RUN/FILE" as retention's relative checkpoint path.
    static func relative(base: String) -> String {
        let parts = base.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return base }
        return EvalNames.relativeCheckpointPath(run: String(parts[0]), file: String(parts[1]))
    }

    /// Deployments a byte budget never deletes besides the current one: the last this many
    /// (the targets of `rollback`, newest first).
    static let keepRecentDeployments = 7

    /// Retention: the checkpoints that were never deployed, are not deployed now and are not
    /// their run's newest, deleted when older than `keepDays` or, oldest first, while all
    /// checkpoints together take more than `keepBytes`. When that is not enough (the
    /// noninferior gate deploys almost every day, so "never deployed" runs out: a 90-day
    /// replay kept every daily winner and outgrew its budget, tools/production-sim.py), the
    /// budget also deletes earlier deployments, oldest first, but never the current one, the
    /// last `keepRecentDeployments` nor a run's newest. Heads are kept (runs/RUN/heads/), so
    /// every lineage stays complete; `rollback` skips targets whose weights are gone. nil when
    /// there is nothing to delete.
    func retention(keepDays: Int?, keepBytes: Int64? = nil) throws -> DecisionRecord? {
        let history = try History.read(root.selections)
        let everDeployed = History.everDeployed(history)
        var keep = Set<String>()
        if let d = currentDeployed() { keep.insert(d) }
        for r in history.reversed() where r.moved && !r.dryRun {
            if keep.count > Selector.keepRecentDeployments { break }
            if let p = r.deployedPath { keep.insert(p) }
        }
        var (deletable, oldDeployments, total, deltasOf) = try retentionInventory(keep: keep, everDeployed: everDeployed)
        var doomed: [String] = []
        var doomedSet = Set<String>()
        var why: [String] = []
        /// A base can go only once every delta of it goes (or is gone): its bytes count as
        /// freed then, not before. Passes repeat so that a base follows its last delta.
        func take(_ list: [(rel: String, time: Double, bytes: Int64)], while want: () -> Bool) -> Bool {
            var took = false, progress = true
            while progress {
                progress = false
                for d in list where want() && !doomedSet.contains(d.rel) {
                    if let ds = deltasOf[d.rel], !ds.allSatisfy(doomedSet.contains) { continue }
                    doomed.append(d.rel); doomedSet.insert(d.rel); total -= d.bytes
                    took = true; progress = true
                }
            }
            return took
        }
        if let k = keepDays {
            let limit = now - Double(k) * 86_400
            if take(deletable.filter { $0.time < limit }, while: { true }) { why.append("never deployed, older than \(k) days") }
        }
        if let budget = keepBytes, total > budget {
            if take(deletable, while: { total > budget }) { why.append("never deployed, over the budget of \(budget) bytes, oldest first") }
            if take(oldDeployments, while: { total > budget }) {
                why.append("still over the budget: deployments older than the last \(Selector.keepRecentDeployments), oldest first")
            }
        }
        if doomed.isEmpty { return nil }
        var rec = DecisionRecord(at: stamp(), decision: "retention",
                                 reason: why.joined(separator: "; ") + "; never the deployed one nor a run's newest nor the base of a kept delta; heads kept")
        rec.deployedPath = currentDeployed()
        rec.deployed = rec.deployedPath.map(Selector.id)
        rec.deleted = doomed
        return rec
    }

    /// Retention of evals/: the per-example files (`.pex`) and score caches (`.psc`) of
    /// checkpoints that no longer exist (its weights deleted by retention, or by hand). Selection compares
    /// only checkpoints it can verify, so those files are never read again; the result JSON
    /// stays as the score history. Without this, evals/ grew by a per-example file per
    /// checkpoint and eval set forever (23 MB in three simulated days of hourly checkpoints,
    /// tools/production-sim.py). Returns the names deleted (none in a dry run).
    @discardableResult
    func pruneExampleFiles() throws -> [String] {
        var gone: [String] = []
        let ext = "." + ExampleFile.fileExtension, cacheExt = "." + EvalNames.scoreCacheExtension
        for f in try FileIO.list(root.evals) {
            // "<ckpt file sans .ppc>--<RUN>--<evalset16>.pex" (EvalNames.base), and pp-eval's
            // score cache "<ckpt file sans .ppc>--<RUN>.psc"
            let parts: [String]
            if f.hasSuffix(ext) {
                parts = f.dropLast(ext.count).components(separatedBy: "--")
                guard parts.count == 3 else { continue }
            } else if f.hasSuffix(cacheExt) {
                parts = f.dropLast(cacheExt.count).components(separatedBy: "--")
                guard parts.count == 2 else { continue }
            } else { continue }
            guard !parts[0].isEmpty, !parts[1].isEmpty else { continue }
            let ckpt = absolute(EvalNames.relativeCheckpointPath(run: parts[1], file: parts[0] + "." + Checkpoint.fileExtension))
            if FileIO.exists(ckpt) { continue }
            gone.append(f)
        }
        if dryRun || gone.isEmpty { return dryRun ? [] : gone }
        for f in gone { try FileIO.removeDurably(root.evals + "/" + f) }
        Log.make("pp-select").info("retention: deleted \(gone.count) per-example files and score caches of checkpoints that are gone")
        return gone
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
        // The link first, then its record: a kill in between leaves the link ahead of the
        // journal, which the next run records (`reconcile`, Journal.swift), never a decision
        // that did not happen.
        if r.moved, let target = r.deployedPath, target != currentDeployed() {
            try FileIO.replaceSymlink(root.deployed, target: target)
            crashPoint("between-link-and-record")
        }
        try History.append(line, to: root.selections)
        if r.decision == "retention" {
            for p in r.deleted ?? [] where FileIO.exists(absolute(p)) {
                // The head first, durably: a crash in between leaves both, never neither.
                do { try Checkpoint.keepHead(of: absolute(p), root: root) } catch let e as PPError where e.status == .corrupt {
                    Log.fail("pp-select", "retention: \(e.message): deleted without its head; lineages through it are incomplete")
                }
                try FileIO.removeDurably(absolute(p))
            }
        }
    }
}

