// The trainer's loop: decides when to train, on what (DataFeed), and what signals mean; it
// owns the trained state (the trainer, its step and tokens, the data feed) and is the only
// one to replace it (restore: a revert, a NaN reload, an adoption). Its collaborators own
// their own state and say what to do:
//   CheckpointWriter   the chain (parent, lineage, knob changes, last good), the cadence, the write
//   Recovery           the shard guard, suspects, probation, the NaN streak: Stops and Actions
//   KnobControl        control.json (knobs, adopt requests), the knob-change log
//   StatusReporter     status.json, metrics, the systemd status line
// TrainLoop+State replaces the state (revert, NaN reload, adopting another run's checkpoint);
// TrainSettings.swift has the settings, the cadence and the states. The model maths and the
// checkpoint file format belong to the libraries (Training's Trainer, TextModel's
// Checkpoint); the loop only calls them.

import Foundation
import Logging
import Shared
import TextModel
import Training

final class TrainLoop {
    let s: TrainSettings
    let log: Logger
    let signals: Signals

    /// The model being trained. Its knobs are the run's knobs (one copy: `knobs` reads them,
    /// `applyKnobs` changes them, `replaceTrainer` carries them over to a rebuilt trainer).
    private(set) var trainer: Trainer
    let config: ModelConfig
    var knobs: Knobs { trainer.knobs }
    var step: Int
    var tokens: Int
    let feed: DataFeed
    let start: StartPoint

    let checkpoints: CheckpointWriter
    let recovery: Recovery
    let control: KnobControl
    let reporter: StatusReporter

    var state = RunState.starting
    var mode: DataFeed.Mode?
    var lossAvg: Double?
    /// Testing only (docs/operations.md): $PP_TRAIN_TEST_NAN_SHARDS, comma-separated shard
    /// names whose new examples make the batch loss NaN, as a diverging model would; no
    /// data can do that to this model with sane knobs, and the NaN path must be tested.
    let faultNaN: Set<String> = Set((ProcessInfo.processInfo.environment["PP_TRAIN_TEST_NAN_SHARDS"] ?? "")
        .split(separator: ",").map(String.init))
    /// systemd keep-alive (WatchdogSec=); ticked every batch and every idle wake-up.
    let watchdog = Notify.Watchdog()

    init(settings: TrainSettings, log: Logger, signals: Signals) throws {
        s = settings
        self.log = log
        self.signals = signals
        let root = settings.root
        control = KnobControl(path: root.control(run: s.run), log: log)

        // A new model's default rate depends on its shape and on whether a static multi-pass
        // job creates it (Knobs.defaultLR(hidden:multiPass:)); a run that resumes keeps its
        // checkpoint's knobs.
        let initialKnobs = settings.flagged(Knobs(lr: Knobs.defaultLR(hidden: (settings.flags.hidden ?? 0) > 0,
                                                                      multiPass: settings.flags.multiPass)))
        // A fresh run takes its knobs from control.json if someone set them before the start.
        let existingControl = control.read()
        let freshKnobs = settings.flagged(existingControl?.applied(to: initialKnobs) ?? initialKnobs)

        let policy = try TrainPolicy.load(root: root)
        let suspects = try SuspectList.load(root: root, run: s.run)
        start = try Start.resolve(root: root, run: s.run, initPath: s.initPath, flags: s.flags, knobs: freshKnobs,
                                  suspects: suspects.names, log: log)
        trainer = start.trainer
        trainer.knobs = start.knobs
        config = start.config
        step = start.step
        tokens = start.tokens
        feed = DataFeed(dir: root.shards, cursor: start.cursor, seed: start.config.seed, replay: s.replay,
                        maxPasses: s.maxPasses, excluded: suspects.names, log: log)
        checkpoints = CheckpointWriter(run: s.run, dir: root.checkpoints(run: s.run), cadence: s.cadence, deltas: s.deltas, log: log,
                                       parent: start.parent, lastGood: start.path, step: start.step)
        recovery = Recovery(root: root, run: s.run, policy: policy, suspects: suspects, guardState: start.guardState, log: log)
        reporter = StatusReporter(root: root, run: s.run, log: log, step: step, tokens: tokens)

        // Knobs: explicit --lr/--dropout act like `pp-train set` at start; otherwise
        // control.json (if any) applies. control.json is then rewritten to agree, so the
        // periodic re-read does not undo a flag.
        applyKnobs(settings.flagged(existingControl?.applied(to: knobs) ?? knobs), source: "start")
        try control.agree(existingControl, with: knobs)
        // A population step (or a person) asked this run to continue another checkpoint:
        // done at start too, so a restart between the request and the next checkpoint still
        // carries it out (and one after it does not repeat it: the state descends from it).
        adoptIfAsked(control.newAdoption(existingControl))
    }

    // MARK: the trained state

    /// Swaps in a trainer rebuilt from a checkpoint or from scratch (revert, NaN recovery):
    /// the run's knobs stay in force, whatever the checkpoint recorded.
    func replaceTrainer(_ t: Trainer) {
        t.knobs = trainer.knobs
        trainer = t
    }

    // MARK: knobs

    func applyKnobs(_ new: Knobs, source: String) {
        let changes = control.changes(from: knobs, to: new, step: step, source: source)
        if changes.isEmpty { return }
        // A fresh model has no earlier checkpoint to differ from: nothing to record.
        if start.kind != "fresh" || step > 0 || source != "start" { checkpoints.record(changes) }
        if new.lr != knobs.lr || new.dropout != knobs.dropout { recovery.knobsChanged() }
        trainer.knobs = new
    }

    /// control.json again (every 2 s, SIGHUP): an adoption asked for, then the knobs.
    /// control.json's knobs and `adopt` request; `force`: parse it even if it looks unchanged.
    func readControl(force: Bool = false) {
        guard let c = control.read(force: force) else { return }
        adoptIfAsked(control.newAdoption(c))
        applyKnobs(c.applied(to: knobs), source: "control.json")
    }

    // MARK: checkpoints and status

    /// The state's checkpoint meta (the writer adds the chain's parent, lineage and knob changes).
    var checkpointMeta: CheckpointMeta {
        var meta = CheckpointMeta(run: s.run, createdAt: Clock.iso(Clock.now()), step: step, tokens: tokens, config: config, knobs: knobs)
        meta.cursor = feed.cursor
        meta.guardState = recovery.guardian.state
        return meta
    }

    @discardableResult
    func writeCheckpoint(reason: String) throws -> String { try checkpoints.write(trainer, meta: checkpointMeta, reason: reason) }
    func tryCheckpoint(reason: String) { checkpoints.tryWrite(trainer, meta: checkpointMeta, reason: reason) }
    var dirty: Bool { checkpoints.dirty(at: step) }

    /// Publishes status.json and the metrics; `periodic`: only when something in them changed
    /// or the heartbeat is due (StatusReporter).
    func writeStatus(periodic: Bool = false) {
        let rate = reporter.rates(step: step, tokens: tokens)
        let g = recovery, unsaved = checkpoints.unsavedStatus(at: step)
        let doc = StatusDoc(run: s.run, pid: getpid(), state: state.rawValue, mode: state == .training ? mode?.rawValue : nil,
                            step: step, tokens: tokens, examplesPerS: rate.examples, tokensPerS: rate.tokens,
                            loss: lossAvg, knobs: knobs, vocabularySize: trainer.model.vocabulary.size,
                            labels: trainer.model.labels.count, shards: feed.pool.count, pendingShards: feed.pendingShards,
                            newestShard: feed.newestShard, lastCheckpoint: checkpoints.lastWritten,
                            startedFrom: start.parent ?? start.kind, startedAt: reporter.startedAt, updatedAt: Clock.iso(Clock.now()),
                            suspects: g.suspects.shards.count, guardTrips: g.trips, lastGuardTrip: g.lastTrip, guardSpikes: g.spikes,
                            lastShardLoss: g.lastShardLoss, guardThreshold: g.guardian.currentThreshold,
                            judging: g.guardian.state.judging?.shard, probation: g.guardian.state.probation?.shard,
                            probationConfirmed: g.confirmed, probationUndone: g.undone,
                            unsavedSince: unsaved.since, checkpointDue: unsaved.due,
                            adopted: control.adopted?.id, adoptedAt: control.adopted?.at)
        reporter.publish(doc, checkpoint: checkpoints.lastWritten ?? (start.kind == "resume" ? start.path : nil), ifChanged: periodic)
    }

    // MARK: training

    enum BatchOutcome { case trained, empty, nan, tripped }

    func trainBatch(_ mode: DataFeed.Mode) throws -> BatchOutcome {
        var batch = Batch()
        let n = feed.fill(&batch, size: s.batch, mode: mode, slotBase: step)
        let info = feed.lastFill
        checkpoints.touched(feed.takeTouched())
        if n == 0 { return .empty }
        let guarded = mode == .new && recovery.policy.guardEnabled ? info.newShard : nil
        // Probation: the first batch of a later new shard, scored before the model trains on it.
        if let sh = guarded, recovery.policy.guardProbation, let p = recovery.guardian.state.probation, p.shard != sh.name,
           recovery.guardian.state.judging?.shard != sh.name, !info.newIndices.isEmpty,
           let stopped = recovery.judgeProbation(batch: batch, indices: info.newIndices, current: trainer.model, lastGood: checkpoints.lastGood) {
            try stopShard(stopped)
            return .tripped
        }
        // The label signal: the new examples scored by the model before this batch's update.
        if let sh = guarded, !info.newIndices.isEmpty {
            recovery.guardian.measure(shard: sh.name, batch: batch, indices: info.newIndices, model: trainer.model)
        }
        var loss = Double.nan
        do {
            let r = try trainer.train(batch)
            loss = r.loss
            if let sh = info.newShard, faultNaN.contains(sh.name) { loss = .nan }
            if loss.isFinite { step += r.examples; tokens += r.tokens } else { log.error("loss is \(loss) at step \(step)") }
        } catch let e as PPError {
            log.error("training step failed at step \(step): \(e.message)")
        }
        guard loss.isFinite else {
            if let sh = guarded { try stopShard(Recovery.Stop(shard: sh, reason: "non-finite loss", loss: loss)); return .tripped }
            return .nan
        }
        lossAvg = lossAvg.map { 0.98 * $0 + 0.02 * loss } ?? loss
        recovery.finiteBatch()
        if mode == .new, let sh = info.newShard {
            recovery.guardian.add(shard: sh.name, batchLoss: loss, examples: info.newExamples)
            if info.completed, let v = recovery.guardian.finish(), let stopped = recovery.act(on: v, shard: sh, step: step) {
                try stopShard(stopped)
                return .tripped
            }
        }
        return .trained
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
            if let j = recovery.guardian.state.judging, !feed.pool.contains(j.shard) {
                log.notice("guard: the shard being judged left the pool; its examples trained so far stay (pp-train rewind undoes them)", metadata: ["shard": "\(j.shard)"])
                recovery.guardian.state.judging = nil
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
        state = .training
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
                if step == start.step && checkpoints.lastGood == start.path {
                    state = .stopped; writeStatus()
                    if recovery.trips > 0 {
                        log.error("the guard stopped \(recovery.trips) shard(s) and nothing else was pending: no checkpoint written")
                        return .partial
                    }
                    log.notice("nothing to do: the pending shards hold no readable examples")
                    return .nothingToDo
                }
                state = .stopped
                try writeCheckpoint(reason: "once")
                writeStatus()
                if recovery.trips > 0 { log.error("the guard stopped \(recovery.trips) shard(s); the checkpoint was trained without them") }
                return recovery.trips > 0 ? .partial : .ok
            case .nan:
                log.error("no checkpoint written (--once)")
                state = .stopped; writeStatus()
                return .partial
            }
            if recovery.halted {
                log.error("halted after non-finite losses: no checkpoint written (--once)")
                state = .stopped; writeStatus()
                return .partial
            }
            if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
        }
        state = .stopped
        if dirty { try writeCheckpoint(reason: "signal") }
        writeStatus()
        return .ok
    }

    // MARK: daemon

    /// What to do next: paused (control.json), halted (NaN), training on new shards, replaying
    /// older ones, or idle.
    func nextState() -> (RunState, DataFeed.Mode?) {
        if knobs.pause { return (.paused, nil) }
        if recovery.halted { return (.halted, nil) }
        if feed.hasNew { return (.training, .new) }
        if feed.canReplay { return (.training, .replay) }
        return (.idle, nil)
    }

    func logState() {
        let why: String
        switch state {
        case .idle: why = "idle: all data read \(s.maxPasses) times, waiting for new shards"
        case .paused: why = "paused (control.json pause=true)"
        case .halted: why = "halted after repeated NaN losses"
        default: why = state.rawValue
        }
        log.info("\(why)", metadata: ["step": "\(step)", "mode": "\(mode?.rawValue ?? "-")"])
    }

    /// SIGTERM/SIGINT: the final checkpoint (when anything was trained since the last), the
    /// last status, exit 0. A failed final write is logged and thrown (exit 74).
    func stop(for sig: Int32) throws -> ExitStatus {
        log.notice("\(Signals.name(sig)) received: final checkpoint, then exit")
        Notify.stopping(status: "\(Signals.name(sig)): writing the final checkpoint")
        state = .stopped
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
            if let sig = signals.stopRequested { return try stop(for: sig) }
            var now = Clock.monotonic()
            if signals.takeHangup() {
                log.info("SIGHUP: re-reading control.json, policy.json and shards/")
                readControl(force: true); recovery.readPolicy(); rescan()
                nextScan = now + s.rescan; nextControl = now + 2
            }
            if now >= nextControl { readControl(); nextControl = now + 2 }
            if now >= nextScan { rescan(); nextScan = now + s.rescan }

            (state, mode) = nextState()
            if state.rawValue + (mode?.rawValue ?? "") != lastState {
                logState()
                lastState = state.rawValue + (mode?.rawValue ?? "")
                nextStatus = 0
            }

            if let m = mode {
                switch try trainBatch(m) {
                case .trained, .empty, .tripped: break
                case .nan: try recoverFromNaN()
                }
                checkpoints.noteUnsaved(at: step)
                if dirty && checkpoints.cadenceDue(at: step) && !recovery.judgingShard { tryCheckpoint(reason: "cadence \(s.cadence)") }
            } else {
                // Idle, paused or halted: make the work so far durable (idle: once the cadence
                // is due, checked at every wake-up, at least every 2 s), then sleep until the
                // next scan or control check (a signal wakes us early).
                if !recovery.halted && !recovery.judgingShard && checkpoints.idleDue(at: step, paused: state == .paused) { tryCheckpoint(reason: state.rawValue); nextStatus = 0 }
                if Clock.monotonic() >= nextStatus { writeStatus(periodic: true); nextStatus = Clock.monotonic() + 2 }
                now = Clock.monotonic()
                signals.sleep(min(nextScan, nextControl, now + (watchdog.period ?? 2)) - now)
                continue
            }
            if Clock.monotonic() >= nextStatus { writeStatus(periodic: true); nextStatus = Clock.monotonic() + 2 }
        }
    }
}
