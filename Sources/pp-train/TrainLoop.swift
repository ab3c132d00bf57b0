// The trainer's loop: decides when to train, on what (DataFeed), with which knobs
// (control.json), when to write checkpoints and status.json, and what signals mean. It owns
// the lineage (meta.parent, meta.lineage) and the knob-change record, and acts on the shard
// guard's verdicts (Guard.swift): a stopped shard is marked suspect (runs/RUN/suspects.json)
// and the trainer reverts exactly to the state before it; a shard on probation is judged
// here (judgeProbation: the revert point's model against the current one on the following
// data) and undone the same way. The model maths and the
// checkpoint file format belong to the Shared core (Trainer, Checkpoint); this file only
// calls them.

import Foundation
import Logging
import Shared
import TextModel
import Training

/// How often checkpoints are written: wall time, or examples trained.
enum Cadence: Equatable, CustomStringConvertible {
    case seconds(Double)
    case examples(Int)

    /// "50000ex", or a duration as every tool reads one (Clock.duration: "1h", "30m", "90s",
    /// "2d", "1w", plain seconds), more than zero.
    init?(parsing s: String) {
        if s.hasSuffix("ex") {
            guard let n = Int(s.dropLast(2)), n > 0 else { return nil }
            self = .examples(n)
        } else {
            guard let v = Clock.duration(s), v > 0 else { return nil }
            self = .seconds(v)
        }
    }

    var description: String {
        switch self {
        case .seconds(let s): return "\(JSONText.number(s))s"
        case .examples(let n): return "\(n)ex"
        }
    }
}

struct TrainSettings {
    var root: Root
    var run: String
    var initPath: String?
    var once: Bool
    var passes: Int?
    var batch: Int
    var rescan: Double
    var replay: Double
    var maxPasses: Int
    var cadence: Cadence
    var flags: ModelFlags
    var lr: Double?
    var dropout: Double?
    var average: Double? = nil
    /// Full checkpoints and deltas (TextModel/DeltaCheckpoint.swift; `--full-every`).
    var deltas = DeltaPolicy(fullEvery: DeltaPolicy.defaultFullEvery)
}

final class TrainLoop {
    let s: TrainSettings
    let log: Logger
    let signals: Signals
    let controlPath: String
    let statusPath: String
    let checkpointDir: String

    var trainer: Trainer
    var config: ModelConfig
    var knobs: Knobs
    var step: Int
    var tokens: Int
    let feed: DataFeed
    let start: StartPoint
    /// "RUN/FILE" of the checkpoint the next one continues; shards trained on since then.
    var parent: String?
    var lineage: [ShardRef] = []
    var lineageSet: Set<ShardRef> = []
    var pendingChanges: [KnobChange] = []
    /// The last checkpoint known good (written by us or started from); nil = fresh start.
    var lastGood: String?
    var lastCheckpointWritten: String?
    var lastCkptStep: Int
    /// When the first batch not in a checkpoint was trained: `Clock.cadence()` (for the
    /// cadence) and `Clock.now()` (for status.json); nil while everything is saved.
    var unsavedSince: (cadence: Double, wall: Double)?

    var state = "starting"
    var mode: DataFeed.Mode?
    var lossAvg: Double?
    var nanStreak = 0
    var halted = false
    var lastControlError: String?
    var shardErrors = 0

    /// policy.json's "train" section (read at start and on SIGHUP).
    var policy: TrainPolicy
    let policyPath: String
    var guardian: ShardGuard
    /// runs/RUN/suspects.json: shards never trained on again.
    var suspects: SuspectList
    /// Shards the guard stopped since this process started.
    var guardTrips = 0
    /// Loss spikes the guard recorded as change (trained on) since this process started.
    var guardSpikes = 0
    /// Probation (Guard.swift): the model at the revert point of the shard on probation,
    /// loaded when the first following example is scored; verdicts since this process started.
    var probationBaseline: (shard: String, model: Model)?
    var probationConfirmed = 0
    var probationUndone = 0
    var lastTrip: SuspectShard?
    /// The loss of the last shard the guard judged, and when (for status and metrics).
    var lastShardLoss: Double?
    /// Shards marked for a non-finite loss since the last accepted shard: a NaN on the next
    /// shard too means the knobs, not the data, are the likely cause.
    var nanTrips: [String] = []
    /// Testing only (docs/operations.md): $PP_TRAIN_TEST_NAN_SHARDS, comma-separated shard
    /// names whose new examples make the batch loss NaN, as a diverging model would; no
    /// data can do that to this model with sane knobs, and the NaN path must be tested.
    let faultNaN: Set<String> = Set((ProcessInfo.processInfo.environment["PP_TRAIN_TEST_NAN_SHARDS"] ?? "")
        .split(separator: ",").map(String.init))
    let startedAt = Clock.iso(Clock.now())
    var rateT = Clock.monotonic(), rateStep = 0, rateTokens = 0
    var examplesPerS = 0.0, tokensPerS = 0.0
    /// systemd keep-alive (WatchdogSec=); ticked every batch and every idle wake-up.
    let watchdog = Notify.Watchdog()

    init(settings: TrainSettings, log: Logger, signals: Signals) throws {
        s = settings
        self.log = log
        self.signals = signals
        let root = settings.root
        controlPath = root.control(run: s.run)
        statusPath = root.status(run: s.run)
        checkpointDir = root.checkpoints(run: s.run)

        var initialKnobs = Knobs()
        if let v = s.lr { initialKnobs.lr = v }
        if let v = s.dropout { initialKnobs.dropout = v }
        if let v = s.average { initialKnobs.average = v }
        // A fresh run takes its knobs from control.json if someone set them before the start.
        let existingControl: Control?
        do { existingControl = try Control.read(controlPath) } catch let e as PPError {
            log.error("ignoring control.json: \(e.message)")
            existingControl = nil
        }
        var freshKnobs = existingControl?.applied(to: initialKnobs) ?? initialKnobs
        if let v = s.lr { freshKnobs.lr = v }
        if let v = s.dropout { freshKnobs.dropout = v }
        if let v = s.average { freshKnobs.average = v }

        policyPath = root.path + "/policy.json"
        policy = try TrainPolicy.load(root: root)
        suspects = try SuspectList.load(root: root, run: s.run)
        start = try Start.resolve(root: root, run: s.run, initPath: s.initPath, flags: s.flags, knobs: freshKnobs,
                                  suspects: suspects.names, log: log)
        trainer = start.trainer
        config = start.config
        knobs = start.knobs
        step = start.step
        tokens = start.tokens
        parent = start.parent
        lastGood = start.path
        lastCkptStep = start.step
        feed = DataFeed(dir: root.shards, cursor: start.cursor, seed: start.config.seed, replay: s.replay,
                        maxPasses: s.maxPasses, excluded: suspects.names, log: log)
        guardian = ShardGuard(policy: policy, state: start.guardState)
        rateStep = step; rateTokens = tokens

        // Knobs: explicit --lr/--dropout act like `pp-train set` at start; otherwise
        // control.json (if any) applies. control.json is then rewritten to agree, so the
        // periodic re-read does not undo a flag.
        var target = existingControl?.applied(to: knobs) ?? knobs
        if let v = s.lr { target.lr = v }
        if let v = s.dropout { target.dropout = v }
        if let v = s.average { target.average = v }
        applyKnobs(target, source: "start")
        var ctl = existingControl ?? Control()
        ctl.lr = knobs.lr; ctl.dropout = knobs.dropout
        // `average` is written once someone uses it (a file of a run that never did keeps its
        // three keys); absent means "as it is", which then is the checkpoint's or the default.
        if ctl.average != nil || knobs.average != Knobs.defaultAverage { ctl.average = knobs.average }
        if ctl.pause == nil { ctl.pause = knobs.pause }
        if ctl != existingControl {
            try ctl.write(controlPath)
        }
        trainer.knobs = knobs
    }

    // MARK: knobs

    func applyKnobs(_ new: Knobs, source: String) {
        let changes = knobChanges(from: knobs, to: new, step: step, at: Clock.iso(Clock.now()))
        if changes.isEmpty { return }
        for c in changes {
            log.notice("knob changed", metadata: ["knob": "\(c.knob)", "old": "\(c.old)", "new": "\(c.new)", "step": "\(c.step)", "source": "\(source)"])
        }
        // A fresh model has no earlier checkpoint to differ from: nothing to record.
        if start.kind != "fresh" || step > 0 || source != "start" { pendingChanges += changes }
        if halted && (new.lr != knobs.lr || new.dropout != knobs.dropout) {
            log.notice("knobs changed: resuming after the NaN halt")
            halted = false; nanStreak = 0
        }
        knobs = new
        trainer.knobs = new
    }

    /// Re-reads policy.json (SIGHUP); a bad file is logged and the policy in force stays.
    func readPolicy() {
        do {
            let p = try TrainPolicy.load(root: s.root)
            if p != policy { log.notice("policy.json changed: new guard settings in force") }
            policy = p
            guardian.policy = p
        } catch {
            log.error("ignoring policy.json (the guard settings in force stay): \(error)")
        }
    }

    func readControl() {
        do {
            guard let c = try Control.read(controlPath) else { return }
            lastControlError = nil
            applyKnobs(c.applied(to: knobs), source: "control.json")
        } catch let e as PPError {
            if e.message != lastControlError { log.error("ignoring control.json: \(e.message)") }
            lastControlError = e.message
        } catch {
            log.error("ignoring control.json: \(error)")
        }
    }

    // MARK: status

    func writeStatus() {
        let now = Clock.monotonic()
        if now - rateT >= 0.5 {
            examplesPerS = Double(step - rateStep) / (now - rateT)
            tokensPerS = Double(tokens - rateTokens) / (now - rateT)
            if examplesPerS < 0 { examplesPerS = 0; tokensPerS = 0 }  // after a NaN reload
            rateT = now; rateStep = step; rateTokens = tokens
        }
        let doc = StatusDoc(run: s.run, pid: getpid(), state: state, mode: state == "training" ? mode?.rawValue : nil,
                            step: step, tokens: tokens, examplesPerS: examplesPerS.rounded(), tokensPerS: tokensPerS.rounded(),
                            loss: lossAvg, knobs: knobs, vocabularySize: trainer.model.vocabulary.size,
                            labels: trainer.model.labels.count, shards: feed.pool.count, pendingShards: feed.pendingShards,
                            newestShard: feed.newestShard, lastCheckpoint: lastCheckpointWritten,
                            startedFrom: start.parent ?? start.kind, startedAt: startedAt, updatedAt: Clock.iso(Clock.now()),
                            suspects: suspects.shards.count, guardTrips: guardTrips, lastGuardTrip: lastTrip, guardSpikes: guardSpikes,
                            lastShardLoss: lastShardLoss, guardThreshold: guardian.currentThreshold,
                            judging: guardian.state.judging?.shard, probation: guardian.state.probation?.shard,
                            probationConfirmed: probationConfirmed, probationUndone: probationUndone,
                            unsavedSince: unsavedStatus.since, checkpointDue: unsavedStatus.due)
        do { try doc.write(statusPath) } catch {
            log.error("cannot write status.json: \(error)")
        }
        do { try TrainMetrics.publish(loop: self, status: doc) } catch {
            log.error("cannot write metrics: \(error)")
        }
        Notify.status(statusLine)
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    var statusLine: String {
        var line = "\(state)"
        if state == "training" {
            line += " (\(mode?.rawValue ?? "-")): \(Int(examplesPerS)) ex/s"
            if let l = lossAvg { line += ", loss \(String(format: "%.4f", l))" }
            line += ","
        }
        line += " step \(step), \(feed.pendingShards) shards pending"
        if let c = lastCheckpointWritten { line += ", last checkpoint \(FileIO.split(c).name)" }
        return line
    }

    // MARK: checkpoints

    /// Writes a checkpoint of the current state and prints its path on stdout.
    @discardableResult
    func writeCheckpoint(reason: String) throws -> String {
        let t0 = Clock.monotonic()
        var meta = CheckpointMeta(run: s.run, createdAt: Clock.iso(Clock.now()), step: step, tokens: tokens, config: config, knobs: knobs)
        meta.knobChanges = pendingChanges
        meta.parent = parent
        meta.lineage = lineage
        meta.cursor = feed.cursor
        meta.guardState = guardian.state
        let bytes = try trainer.checkpointBytes(meta: meta, policy: s.deltas)
        let kind = trainer.pendingCheckpointIsDelta == true ? "delta of \(trainer.deltaBase ?? "?")" : "full"
        try FileIO.makeDirectories(checkpointDir)
        var name = ""
        while true {
            name = CheckpointName(time: Clock.now(), step: step).file
            if !FileIO.exists(checkpointDir + "/" + name) { break }
            usleep(200_000)  // same second and step as an existing one: never overwrite
        }
        let path = checkpointDir + "/" + name
        try FileIO.publish(bytes, to: path)
        trainer.checkpointPublished(as: s.run + "/" + name)
        printLine(path)
        log.info("checkpoint written", metadata: ["path": "\(path)", "step": "\(step)", "bytes": "\(bytes.count)", "kind": "\(kind)",
                                                  "seconds": "\(String(format: "%.3f", Clock.monotonic() - t0))", "reason": "\(reason)"])
        parent = s.run + "/" + name
        lineage = []; lineageSet = []
        pendingChanges = []
        lastGood = path
        lastCheckpointWritten = path
        lastCkptStep = step
        unsavedSince = nil
        return path
    }

    /// One line on stdout (Stdout.line): checkpoint paths are data for pipelines. A closed
    /// stdout only costs the line: training goes on.
    func printLine(_ line: String) {
        do { try Stdout.line(line) } catch let e as PPError {
            log.warning("cannot print the checkpoint path on stdout: \(e.message)")
        } catch { log.warning("cannot print the checkpoint path on stdout: \(error)") }
    }

    /// Trained since the last checkpoint (or since the start).
    var dirty: Bool { step != lastCkptStep }
    /// After a failed checkpoint write (disk full...), the next attempt waits until then.
    var checkpointRetryAt = 0.0

    /// Writes a checkpoint unless a recent attempt failed; failures are logged, not thrown
    /// (the daemon keeps training and tries again a minute later).
    func tryCheckpoint(reason: String) {
        if Clock.monotonic() < checkpointRetryAt { return }
        do { try writeCheckpoint(reason: reason) } catch {
            log.error("checkpoint failed, will retry in 60 s: \(error)")
            checkpointRetryAt = Clock.monotonic() + 60
        }
    }

    /// Notes when unsaved work began (called after every batch).
    func noteUnsaved() {
        if !dirty { unsavedSince = nil } else if unsavedSince == nil { unsavedSince = (Clock.cadence(), Clock.now()) }
    }

    /// The cadence counts from the first unsaved batch, not from the last checkpoint: after
    /// a long idle time the first new batch does not trigger a checkpoint of its own, and a
    /// trickle of small shards (an ingest every few minutes) gets one checkpoint per
    /// interval, not one per shard.
    func cadenceDue() -> Bool {
        noteUnsaved()
        switch s.cadence {
        case .examples(let n): return step - lastCkptStep >= n
        case .seconds(let sec):
            guard let since = unsavedSince else { return false }
            return Clock.cadence() - since.cadence >= sec
        }
    }

    /// An idle trainer checkpoints its unsaved work once the cadence is due (a duration:
    /// `--checkpoint-every` after the first unsaved batch) or at once (an example count,
    /// which cannot come due while no example is trained). Paused: at once.
    func idleCheckpointDue() -> Bool {
        guard dirty else { return false }
        if state == "paused" { return true }
        if case .examples = s.cadence { return true }
        return cadenceDue()
    }

    /// status.json's `unsaved_since` and `checkpoint_due`.
    var unsavedStatus: (since: String?, due: String?) {
        guard dirty, let u = unsavedSince else { return (nil, nil) }
        if case .seconds(let sec) = s.cadence { return (Clock.iso(u.wall), Clock.iso(u.wall + sec)) }
        return (Clock.iso(u.wall), nil)
    }

    // MARK: training

    enum BatchOutcome { case trained, empty, nan, tripped }

    /// A new shard is being judged: no checkpoint may be written now except the final one
    /// on SIGTERM (which records the judgement in progress), so that a revert never has to
    /// go back further than the last checkpoint.
    var judgingShard: Bool { policy.guardEnabled && guardian.state.judging != nil }

    func trainBatch(_ mode: DataFeed.Mode) throws -> BatchOutcome {
        var batch = Batch()
        let n = feed.fill(&batch, size: s.batch, mode: mode, slotBase: step)
        let info = feed.lastFill
        for r in feed.takeTouched() where lineageSet.insert(r).inserted { lineage.append(r) }
        if n == 0 { return .empty }
        let guarded = mode == .new && policy.guardEnabled ? info.newShard : nil
        // Probation: the first batch of a later new shard, scored before the model trains on it.
        if let sh = guarded, policy.guardProbation, let p = guardian.state.probation, p.shard != sh.name, guardian.state.judging?.shard != sh.name,
           !info.newIndices.isEmpty, try judgeProbation(batch: batch, indices: info.newIndices) {
            return .tripped
        }
        // The label signal: the new examples scored by the model before this batch's update.
        if let sh = guarded, !info.newIndices.isEmpty {
            guardian.measure(shard: sh.name, batch: batch, indices: info.newIndices, model: trainer.model)
        }
        let r: BatchResult
        do {
            r = try trainer.train(batch)
        } catch let e as PPError {
            log.error("training step failed at step \(step): \(e.message)")
            if let sh = guarded { try trip(sh, reason: "non-finite loss", loss: .nan, median: nil, threshold: nil); return .tripped }
            return .nan
        }
        var perExample = r.loss
        if let sh = info.newShard, faultNaN.contains(sh.name) { perExample = .nan }
        guard perExample.isFinite else {
            log.error("loss is \(perExample) at step \(step)")
            if let sh = guarded { try trip(sh, reason: "non-finite loss", loss: perExample, median: nil, threshold: nil); return .tripped }
            return .nan
        }
        step += r.examples
        tokens += r.tokens
        lossAvg = lossAvg.map { 0.98 * $0 + 0.02 * perExample } ?? perExample
        nanStreak = 0
        if mode == .new, let sh = info.newShard {
            guardian.add(shard: sh.name, batchLoss: perExample, examples: info.newExamples)
            if info.completed, let v = guardian.finish() {
                switch v {
                case .accepted(let loss, let judged, let median, let limit, let spike, let signal, let signalLimit):
                    lastShardLoss = loss
                    // New shards come in name order: one after the NaN-stopped shard (not
                    // one trained again after the revert) ends the streak.
                    if let last = nanTrips.last, sh.name > last { nanTrips = [] }
                    var md: Logger.Metadata = ["shard": "\(sh.name)", "loss": "\(fmt(loss))", "step": "\(step)"]
                    if let m = median { md["median"] = "\(fmt(m))" }
                    if let l = limit { md["threshold"] = "\(fmt(l))" }
                    if let g = signal { md["label_signal"] = "\(fmt(g))" }
                    if spike {
                        guardSpikes += 1
                        if let l = limit, guardian.startProbation(sh, loss: loss, threshold: l) {
                            log.notice("guard: loss spike on new data, trained on, on probation: the data that follows confirms or undoes it (pp-train rewind --before SHARD undoes it by hand)", metadata: md)
                        } else {
                            log.notice("guard: loss spike on new data, trained on (a change: the labels follow from the texts, or the signal cannot judge)", metadata: md)
                        }
                    } else if let sl = signalLimit, let l = limit, let g = signal {
                        md["signal_limit"] = "\(fmt(sl))"
                        if guardian.startProbation(sh, loss: loss, threshold: l, signal: g, signalLimit: sl) {
                            log.notice("guard: labels do not follow from the texts (label signal above its limit, no loss spike: one label given to many texts), trained on, on probation: the data that follows confirms or undoes it", metadata: md)
                        } else {
                            log.notice("guard: labels do not follow from the texts (label signal above its limit, no loss spike), trained on (another shard is on probation)", metadata: md)
                        }
                    } else {
                        log.info(judged ? "guard: shard accepted" : "guard: shard trained (not judged: too little history or too few examples)", metadata: md)
                    }
                case .damaged(let loss, let median, let limit, let signal, let signalLimit):
                    lastShardLoss = loss
                    if let g = signal, let gl = signalLimit {
                        try trip(sh, reason: "labels do not follow from the texts", loss: loss, median: median, threshold: limit,
                                 detail: "label signal \(fmt(g)) > \(fmt(gl)), loss \(fmt(loss)) > threshold \(fmt(limit))")
                    } else {
                        try trip(sh, reason: "loss spike", loss: loss, median: median, threshold: limit)
                    }
                    return .tripped
                }
            }
        }
        return .trained
    }

    func fmt(_ x: Double) -> String { String(format: "%.4f", x) }

    /// Scores the new examples at `indices` with the current model and the probation shard's
    /// revert point, and acts on the verdict (Guard.swift). true: the shard was undone (the
    /// loop reverted; this batch must not be trained).
    func judgeProbation(batch: Batch, indices: [Int]) throws -> Bool {
        guard let p = guardian.state.probation else { return false }
        if probationBaseline?.shard != p.shard {
            do {
                guard let target = try revertPoint(before: p.shard) else {
                    // No checkpoint before the shard: it came in the same first pass as all the
                    // data before it (a new run's warm-up), and the start state lacks that data
                    // too, so comparing with it would confirm anything (measured: the "before"
                    // loss was the floor, -log 1e-7, in every such case). Nothing fair to
                    // compare with: the shard stays, as before probation existed.
                    log.notice("guard: probation cannot be judged, the shard stays: no checkpoint before it to compare with (it was trained in the same pass as the data before it)",
                               metadata: ["shard": "\(p.shard)"])
                    guardian.state.probation = nil
                    return false
                }
                probationBaseline = (p.shard, try Checkpoint.load(path: target, mode: .inference).model)
            } catch {
                // Without the model before it there is nothing to compare with: the shard
                // stays (as before probation existed), and training goes on.
                log.error("guard: probation cannot be judged, the shard stays: the revert point cannot be loaded: \(error)", metadata: ["shard": "\(p.shard)"])
                guardian.state.probation = nil
                return false
            }
        }
        let before = probationBaseline!.model, after = trainer.model
        // A label a model does not know costs it the loss floor, -log(1e-7).
        func loss(_ m: Model, _ i: Int, _ probs: inout [Float]) -> Double? {
            guard let k = m.index(ofLabel: batch.labels[i]) else { return nil }
            probs.withUnsafeMutableBufferPointer { pp in batch.withTokens(i) { m.predict(tokens: $0, probs: pp) } }
            return -Foundation.log(max(Double(probs[k]), 1e-7))
        }
        let floor = -Foundation.log(1e-7)
        var pa = [Float](repeating: 0, count: max(after.labels.count, 1))
        var pb = [Float](repeating: 0, count: max(before.labels.count, 1))
        var pairs: [(after: Double, before: Double)] = []
        for i in indices {
            let a = loss(after, i, &pa), b = loss(before, i, &pb)
            if a == nil && b == nil { continue }
            pairs.append((a ?? floor, b ?? floor))
        }
        let md: Logger.Metadata = ["shard": "\(p.shard)", "spike_loss": "\(fmt(p.loss))"]
        switch guardian.scoreProbation(pairs) {
        case .pending:
            return false
        case .confirmed(let a, let b, let n, let t):
            probationConfirmed += 1
            probationBaseline = nil
            log.notice("guard: probation confirmed: the model that learned the shard predicts the data that followed as well or better (or not worse beyond noise)",
                       metadata: md.merging(["after": "\(fmt(a))", "before": "\(fmt(b))", "examples": "\(n)", "t": "\(t)"]) { x, _ in x })
            return false
        case .undo(let a, let b, let n, let t):
            probationUndone += 1
            probationBaseline = nil
            try trip(ShardRef(name: p.shard, sha256: p.sha256), reason: "probation", loss: p.loss, median: nil, threshold: p.threshold,
                     detail: "the model that learned it predicts the \(n) following examples worse: loss \(fmt(a)) > \(fmt(b)) before it (paired t \(t) > \(ShardGuard.probationT)); "
                        + (p.signal.map { g in "its labels did not follow from its texts: label signal \(fmt(g)) > \(fmt(p.signalLimit ?? 0))" }
                           ?? "it spiked at loss \(fmt(p.loss)) > threshold \(fmt(p.threshold))"))
            return true
        }
    }

    /// The guard stopped `shard`: mark it suspect, never train on it again, and go back to
    /// the state before it. A second non-finite loss right after one (no shard accepted in
    /// between) blames the knobs instead: the marks for non-finite losses are withdrawn and
    /// training halts until lr or dropout change.
    func trip(_ shard: ShardRef, reason: String, loss: Double, median: Double?, threshold: Double?, detail: String? = nil) throws {
        guardTrips += 1
        if !loss.isFinite && !nanTrips.isEmpty {
            log.critical("guard: non-finite loss again (shard \(shard.name), after \(nanTrips.joined(separator: ", "))): the knobs are the likelier cause, not the data; withdrawing those suspect marks and halting until lr or dropout change (pp-train set lr=...)")
            for name in nanTrips {
                suspects.shards.removeAll { $0.name == name && $0.reason == "non-finite loss" }
                feed.include(name)
            }
            nanTrips = []
            publishSuspects()
            try revert(before: shard)
            halted = true
            return
        }
        var mark = SuspectShard(name: shard.name, sha256: shard.sha256, reason: reason, loss: loss.isFinite ? loss : nil,
                                reference: median, step: step, at: Clock.iso(Clock.now()), by: "pp-train guard")
        if let d = detail { mark.reason = "\(reason): \(d)" }
        else if let t = threshold { mark.reason = "\(reason): loss \(fmt(loss)) > threshold \(fmt(t))" }
        suspects.mark(mark)
        lastTrip = mark
        publishSuspects()
        feed.exclude(shard.name)
        if !loss.isFinite { nanTrips.append(shard.name) }
        var md: Logger.Metadata = ["shard": "\(shard.name)", "reason": "\(reason)", "loss": "\(loss.isFinite ? fmt(loss) : "\(loss)")", "step": "\(step)"]
        if let m = median { md["median"] = "\(fmt(m))" }
        if let t = threshold { md["threshold"] = "\(fmt(t))" }
        log.error("guard: shard stopped and marked suspect; reverting to the state before it", metadata: md)
        try revert(before: shard)
    }

    func publishSuspects() {
        do { try suspects.publish(root: s.root, run: s.run) } catch {
            log.error("cannot write suspects.json (this process still skips the shard): \(error)")
        }
    }

    /// Puts the trainer back in the state it had before its first example of `shard`,
    /// exactly: the newest checkpoint on its chain that has not trained on the shard (the
    /// last one written, unless it was written mid-shard on SIGTERM) with its data cursor,
    /// so the loop re-trains the good data since then in the same order (bit-identical with
    /// --threads 1), now without the shard. Fresh model if no such checkpoint.
    func revert(before shard: ShardRef) throws {
        let t0 = Clock.monotonic()
        let lostSteps = step
        let target = try revertPoint(before: shard.name)
        probationBaseline = nil
        if let p = target {
            let ck = try Checkpoint.load(path: p)
            trainer = try Trainer(checkpoint: ck)
            step = ck.meta.step; tokens = ck.meta.tokens
            try feed.reset(to: ck.meta.cursor)
            guardian.state = ck.meta.guardState ?? GuardState()
            if p != lastGood { lastGood = p; parent = Start.parentName(p) }
        } else {
            trainer = try Trainer(config: config, knobs: knobs)
            step = 0; tokens = 0
            try feed.reset(to: Start.freshCursor(config))
            guardian.state = GuardState()
            lastGood = nil; parent = nil
        }
        trainer.knobs = knobs
        lastCkptStep = step
        lineage = []; lineageSet = []
        log.notice("reverted: the good data since then is trained again", metadata: [
            "to": "\(target ?? "fresh model")", "step": "\(step)", "examples_to_retrain": "\(lostSteps - step)",
            "seconds": "\(String(format: "%.2f", Clock.monotonic() - t0))"])
    }

    /// The newest checkpoint on the run's chain that has not trained on `shard` and has
    /// weights (nil: none, a fresh model).
    func revertPoint(before shard: String) throws -> String? {
        var target = lastGood
        while let p = target {
            let meta = try Checkpoint.readHead(path: p, cursor: true).meta
            guard let e = meta.cursor.shards.first(where: { $0.shard.name == shard }), e.passes > 0 || e.position > 0 else { break }
            guard let parentName = meta.parent else { target = nil; break }
            guard let pp = Lineage.resolveParent(parentName, root: s.root) else {
                log.error("cannot revert past \(p): its parent \(parentName) is gone; the part of \(shard) trained before it stays")
                break
            }
            target = pp
        }
        // A head has no weights (retention deleted them): go further back to one that has.
        while let p = target, p.hasSuffix(Checkpoint.headSuffix) {
            target = try Checkpoint.readHead(path: p).meta.parent.flatMap { Lineage.resolveParent($0, root: s.root) }
        }
        return target
    }

    /// After a NaN/inf loss: back to the last good checkpoint (or the start state). The data
    /// since then is skipped (the cursor stays where it is), so the same bad batch is not
    /// replayed forever; after three failures in a row training halts until the knobs change.
    func recoverFromNaN() throws {
        if let p = lastGood {
            let ck = try Checkpoint.load(path: p)
            trainer = try Trainer(checkpoint: ck)
            log.error("reloaded the last good checkpoint; data since then is skipped", metadata: ["checkpoint": "\(p)", "step": "\(ck.meta.step)", "skipped_examples": "\(step - ck.meta.step)"])
            step = ck.meta.step; tokens = ck.meta.tokens
        } else {
            trainer = try Trainer(config: config, knobs: knobs)
            log.error("reloaded the start state (a fresh model); data since then is skipped", metadata: ["skipped_examples": "\(step - start.step)"])
            step = start.step; tokens = start.tokens
        }
        trainer.knobs = knobs
        lastCkptStep = step
        lineage = []; lineageSet = []
        lossAvg = nil
        nanStreak += 1
        if nanStreak >= 3 {
            halted = true
            log.critical("3 NaN/inf losses in a row: training halted until lr or dropout change (pp-train set lr=...)")
        }
    }

    func logStart() {
        log.info("starting", metadata: ["run": "\(s.run)", "from": "\(start.kind)", "checkpoint": "\(start.path ?? "-")",
                                        "step": "\(step)", "dim": "\(config.dim)", "bucket": "\(config.bucket)",
                                        "hidden": "\(config.hidden)", "threads": "\(config.threads)",
                                        "lr": "\(knobs.lr)", "dropout": "\(knobs.dropout)", "pid": "\(getpid())"])
    }

    func rescan() {
        do {
            let (added, _) = try feed.scan()
            if !added.isEmpty { log.info("new shards", metadata: ["count": "\(added.count)", "first": "\(added.first!)"]) }
            // The shard being judged left shards/ (quarantined, deleted): nothing to judge.
            if let j = guardian.state.judging, !feed.pool.contains(j.shard) {
                log.notice("guard: the shard being judged left the pool; its examples trained so far stay (pp-train rewind undoes them)", metadata: ["shard": "\(j.shard)"])
                guardian.state.judging = nil
            }
        } catch {
            log.error("cannot scan shards/: \(error)")
        }
    }

    // MARK: --once

    func runOnce() throws -> ExitStatus {
        logStart()
        rescan()
        if knobs.pause { log.warning("control.json says pause=true; ignored by --once") }
        let mode: DataFeed.Mode
        if let p = s.passes {
            guard !feed.pool.isEmpty else { log.notice("nothing to do: no shards"); return .nothingToDo }
            feed.planPasses(p)
            mode = .passes
        } else {
            guard feed.hasNew else { log.notice("nothing to do: no new shards"); return .nothingToDo }
            mode = .new
        }
        self.mode = mode
        state = "training"
        writeStatus()
        var nextStatus = Clock.monotonic() + 2
        while true {
            if let sig = signals.stopRequested {
                log.notice("\(Signals.name(sig)) received: stopping early")
                break
            }
            switch try trainBatch(mode) {
            case .trained, .tripped: break
            case .empty:
                if step == start.step && lastGood == start.path {
                    state = "stopped"; writeStatus()
                    if guardTrips > 0 {
                        log.error("the guard stopped \(guardTrips) shard(s) and nothing else was pending: no checkpoint written")
                        return .partial
                    }
                    log.notice("nothing to do: the pending shards hold no readable examples")
                    return .nothingToDo
                }
                state = "stopped"
                try writeCheckpoint(reason: "once")
                writeStatus()
                if guardTrips > 0 { log.error("the guard stopped \(guardTrips) shard(s); the checkpoint was trained without them") }
                return guardTrips > 0 ? .partial : .ok
            case .nan:
                log.error("no checkpoint written (--once)")
                state = "stopped"; writeStatus()
                return .partial
            }
            if halted {
                log.error("halted after non-finite losses: no checkpoint written (--once)")
                state = "stopped"; writeStatus()
                return .partial
            }
            if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
        }
        state = "stopped"
        if dirty { try writeCheckpoint(reason: "signal") }
        writeStatus()
        return .ok
    }

    // MARK: daemon

    func runForever() throws -> ExitStatus {
        logStart()
        rescan()
        // The trained state is loaded and the shards listed: a Type=notify unit is now active.
        Notify.ready(status: "started from \(start.parent ?? start.kind) at step \(step)")
        var nextScan = Clock.monotonic() + s.rescan
        var nextControl = Clock.monotonic() + 2
        var nextStatus = 0.0
        var lastState = ""
        while true {
            watchdog.tick()
            if let sig = signals.stopRequested {
                log.notice("\(Signals.name(sig)) received: final checkpoint, then exit")
                Notify.stopping(status: "\(Signals.name(sig)): writing the final checkpoint")
                state = "stopped"
                if dirty {
                    do { try writeCheckpoint(reason: Signals.name(sig)) } catch {
                        log.error("final checkpoint failed: \(error)")
                        writeStatus()
                        throw error
                    }
                } else {
                    log.info("no training since the last checkpoint: nothing to write")
                }
                writeStatus()
                return .ok
            }
            var now = Clock.monotonic()
            if signals.takeHangup() {
                log.info("SIGHUP: re-reading control.json, policy.json and shards/")
                readControl(); readPolicy(); rescan()
                nextScan = now + s.rescan; nextControl = now + 2
            }
            if now >= nextControl { readControl(); nextControl = now + 2 }
            if now >= nextScan { rescan(); nextScan = now + s.rescan }

            if knobs.pause { mode = nil; state = "paused" }
            else if halted { mode = nil; state = "halted" }
            else if feed.hasNew { mode = .new; state = "training" }
            else if feed.canReplay { mode = .replay; state = "training" }
            else { mode = nil; state = "idle" }
            if state + (mode?.rawValue ?? "") != lastState {
                let why = ["training": "training", "idle": "idle: all data read \(s.maxPasses) times, waiting for new shards",
                           "paused": "paused (control.json pause=true)", "halted": "halted after repeated NaN losses"][state] ?? state
                log.info("\(why)", metadata: ["step": "\(step)", "mode": "\(mode?.rawValue ?? "-")"])
                lastState = state + (mode?.rawValue ?? "")
                nextStatus = 0
            }

            if let m = mode {
                switch try trainBatch(m) {
                case .trained, .empty, .tripped: break
                case .nan: try recoverFromNaN()
                }
                noteUnsaved()
                if dirty && cadenceDue() && !judgingShard { tryCheckpoint(reason: "cadence \(s.cadence)") }
            } else {
                // Idle, paused or halted: make the work so far durable (idle: once the cadence
                // is due, checked at every wake-up, at least every 2 s), then sleep until the
                // next scan or control check (a signal wakes us early).
                if !halted && !judgingShard && idleCheckpointDue() { tryCheckpoint(reason: state); nextStatus = 0 }
                if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
                now = Clock.monotonic()
                signals.sleep(min(nextScan, nextControl, now + (watchdog.period ?? 2)) - now)
                continue
            }
            if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
        }
    }
}
