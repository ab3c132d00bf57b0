// The trainer's loop: decides when to train, on what (DataFeed), with which knobs
// (control.json), when to write checkpoints and status.json, and what signals mean. It owns
// the lineage (meta.parent, meta.lineage) and the knob-change record, and acts on the shard
// guard's verdicts (Guard.swift): a stopped shard is marked suspect (runs/RUN/suspects.json)
// and the trainer reverts exactly to the state before it; a shard on probation is judged
// here (judgeProbation: the revert point's model against the current one on the following
// data) and undone the same way. The model maths and the checkpoint file format belong to
// the libraries (Training's Trainer, TextModel's Checkpoint); the loop only calls them.
// Its parts: this file (settings, state, the loop itself: --once and the daemon, one batch),
// TrainLoop+Knobs (control.json, policy.json), TrainLoop+Checkpoints (cadence and writing),
// TrainLoop+Recovery (probation, guard trips, revert, NaN), TrainLoop+Status (status.json).

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
    var deltas = DeltaPolicy(fullEvery: DeltaPolicy.defaultFullEvery, chainLimit: DeltaPolicy.defaultChainLimit)

    /// `k` with the knob flags given (--lr, --dropout, --average) in force: a flag overrides
    /// control.json and the checkpoint, like `pp-train set` at the start.
    func flagged(_ k: Knobs) -> Knobs {
        var k = k
        if let v = lr { k.lr = v }
        if let v = dropout { k.dropout = v }
        if let v = average { k.average = v }
        return k
    }
}

/// What the loop is doing: status.json's "state" and the metrics' state gauge.
enum RunState: String, CaseIterable {
    case starting, training, idle, paused, halted, stopped
}

final class TrainLoop {
    let s: TrainSettings
    let log: Logger
    let signals: Signals
    let controlPath: String
    let statusPath: String
    let checkpointDir: String

    /// The model being trained. Its knobs are the run's knobs (one copy: `knobs` reads them,
    /// `applyKnobs` changes them, `replaceTrainer` carries them over to a rebuilt trainer).
    private(set) var trainer: Trainer
    var config: ModelConfig
    var knobs: Knobs { trainer.knobs }
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

    var state = RunState.starting
    var mode: DataFeed.Mode?
    var lossAvg: Double?
    var nanStreak = 0
    var halted = false
    var lastControlError: String?
    /// control.json's last `adopt` value looked at; the last adoption, id and when (status.json).
    var adoptSeen: String?
    var adopted: (id: String, at: String)?
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
    /// After a failed checkpoint write (disk full...), the next attempt waits until then.
    var checkpointRetryAt = 0.0
    let watchdog = Notify.Watchdog()

    init(settings: TrainSettings, log: Logger, signals: Signals) throws {
        s = settings
        self.log = log
        self.signals = signals
        let root = settings.root
        controlPath = root.control(run: s.run)
        statusPath = root.status(run: s.run)
        checkpointDir = root.checkpoints(run: s.run)

        // A new model's default rate depends on its shape (Knobs.defaultLR(hidden:)); a run
        // that resumes keeps its checkpoint's knobs.
        let initialKnobs = settings.flagged(Knobs(lr: Knobs.defaultLR(hidden: (settings.flags.hidden ?? 0) > 0)))
        // A fresh run takes its knobs from control.json if someone set them before the start.
        let existingControl: Control?
        do { existingControl = try Control.read(controlPath) } catch let e as PPError {
            log.error("ignoring control.json: \(e.message)")
            existingControl = nil
        }
        let freshKnobs = settings.flagged(existingControl?.applied(to: initialKnobs) ?? initialKnobs)

        policyPath = root.path + "/policy.json"
        policy = try TrainPolicy.load(root: root)
        suspects = try SuspectList.load(root: root, run: s.run)
        start = try Start.resolve(root: root, run: s.run, initPath: s.initPath, flags: s.flags, knobs: freshKnobs,
                                  suspects: suspects.names, log: log)
        trainer = start.trainer
        trainer.knobs = start.knobs
        config = start.config
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
        applyKnobs(settings.flagged(existingControl?.applied(to: knobs) ?? knobs), source: "start")
        var ctl = existingControl ?? Control()
        ctl.lr = knobs.lr; ctl.dropout = knobs.dropout
        // `average` is written once someone uses it (a file of a run that never did keeps its
        // three keys); absent means "as it is", which then is the checkpoint's or the default.
        if ctl.average != nil || knobs.average != Knobs.defaultAverage { ctl.average = knobs.average }
        if ctl.pause == nil { ctl.pause = knobs.pause }
        if ctl != existingControl {
            try ctl.write(controlPath)
        }
        // A population step (or a person) asked this run to continue another checkpoint:
        // done at start too, so a restart between the request and the next checkpoint still
        // carries it out (and one after it does not repeat it: the state descends from it).
        adoptIfAsked(existingControl?.adopt)
    }

    /// Swaps in a trainer rebuilt from a checkpoint or from scratch (revert, NaN recovery):
    /// the run's knobs stay in force, whatever the checkpoint recorded.
    func replaceTrainer(_ t: Trainer) {
        t.knobs = trainer.knobs
        trainer = t
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
            if info.completed, let v = guardian.finish(), try act(on: v, shard: sh) { return .tripped }
        }
        return .trained
    }

    func fmt(_ x: Double) -> String { String(format: "%.4f", x) }

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
                if step == start.step && lastGood == start.path {
                    state = .stopped; writeStatus()
                    if guardTrips > 0 {
                        log.error("the guard stopped \(guardTrips) shard(s) and nothing else was pending: no checkpoint written")
                        return .partial
                    }
                    log.notice("nothing to do: the pending shards hold no readable examples")
                    return .nothingToDo
                }
                state = .stopped
                try writeCheckpoint(reason: "once")
                writeStatus()
                if guardTrips > 0 { log.error("the guard stopped \(guardTrips) shard(s); the checkpoint was trained without them") }
                return guardTrips > 0 ? .partial : .ok
            case .nan:
                log.error("no checkpoint written (--once)")
                state = .stopped; writeStatus()
                return .partial
            }
            if halted {
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
        if halted { return (.halted, nil) }
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
                readControl(); readPolicy(); rescan()
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
                noteUnsaved()
                if dirty && cadenceDue() && !judgingShard { tryCheckpoint(reason: "cadence \(s.cadence)") }
            } else {
                // Idle, paused or halted: make the work so far durable (idle: once the cadence
                // is due, checked at every wake-up, at least every 2 s), then sleep until the
                // next scan or control check (a signal wakes us early).
                if !halted && !judgingShard && idleCheckpointDue() { tryCheckpoint(reason: state.rawValue); nextStatus = 0 }
                if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
                now = Clock.monotonic()
                signals.sleep(min(nextScan, nextControl, now + (watchdog.period ?? 2)) - now)
                continue
            }
            if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
        }
    }
}
