// The trainer's loop: decides when to train, on what (DataFeed), with which knobs
// (control.json), when to write checkpoints and status.json, and what signals mean. It owns
// the lineage (meta.parent, meta.lineage) and the knob-change record. The model maths and
// the checkpoint file format belong to the Shared core (Trainer, Checkpoint); this file only
// calls them.

import Foundation
import Logging
import Shared

/// How often checkpoints are written: wall time, or examples trained.
enum Cadence: Equatable, CustomStringConvertible {
    case seconds(Double)
    case examples(Int)

    /// "1h", "30m", "90s", "2d", "50000ex".
    init?(parsing s: String) {
        let units: [(String, Double)] = [("ex", 0), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (u, mult) in units where s.hasSuffix(u) {
            let num = String(s.dropLast(u.count))
            if u == "ex" {
                guard let n = Int(num), n > 0 else { return nil }
                self = .examples(n); return
            }
            guard let v = Double(num), v.isFinite, v > 0 else { return nil }
            self = .seconds(v * mult); return
        }
        return nil
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
    var lastCkptTime = Clock.monotonic()

    var state = "starting"
    var mode: DataFeed.Mode?
    var lossAvg: Double?
    var nanStreak = 0
    var halted = false
    var lastControlError: String?
    var shardErrors = 0
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
        // A fresh run takes its knobs from control.json if someone set them before the start.
        let existingControl: Control?
        do { existingControl = try Control.read(controlPath) } catch let e as PPError {
            log.error("ignoring control.json: \(e.message)")
            existingControl = nil
        }
        var freshKnobs = existingControl?.applied(to: initialKnobs) ?? initialKnobs
        if let v = s.lr { freshKnobs.lr = v }
        if let v = s.dropout { freshKnobs.dropout = v }

        start = try Start.resolve(root: root, run: s.run, initPath: s.initPath, flags: s.flags, knobs: freshKnobs, log: log)
        trainer = start.trainer
        config = start.config
        knobs = start.knobs
        step = start.step
        tokens = start.tokens
        parent = start.parent
        lastGood = start.path
        lastCkptStep = start.step
        feed = DataFeed(dir: root.shards, cursor: start.cursor, seed: start.config.seed, replay: s.replay,
                        maxPasses: s.maxPasses, log: log)
        rateStep = step; rateTokens = tokens

        // Knobs: explicit --lr/--dropout act like `pp-train set` at start; otherwise
        // control.json (if any) applies. control.json is then rewritten to agree, so the
        // periodic re-read does not undo a flag.
        var target = existingControl?.applied(to: knobs) ?? knobs
        if let v = s.lr { target.lr = v }
        if let v = s.dropout { target.dropout = v }
        applyKnobs(target, source: "start")
        var ctl = existingControl ?? Control()
        ctl.lr = knobs.lr; ctl.dropout = knobs.dropout
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
                            startedFrom: start.parent ?? start.kind, startedAt: startedAt, updatedAt: Clock.iso(Clock.now()))
        do { try doc.write(statusPath) } catch {
            log.error("cannot write status.json: \(error)")
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
        let bytes = try trainer.checkpointBytes(meta: meta)
        try FileIO.makeDirectories(checkpointDir)
        var name = ""
        while true {
            name = "ckpt-\(Clock.stamp(Clock.now()))-\(pad12(step)).ppc"
            if !FileIO.exists(checkpointDir + "/" + name) { break }
            usleep(200_000)  // same second and step as an existing one: never overwrite
        }
        let path = checkpointDir + "/" + name
        try FileIO.publish(bytes, to: path)
        printLine(path)
        log.info("checkpoint written", metadata: ["path": "\(path)", "step": "\(step)", "bytes": "\(bytes.count)",
                                                  "seconds": "\(String(format: "%.2f", Clock.monotonic() - t0))", "reason": "\(reason)"])
        parent = s.run + "/" + name
        lineage = []; lineageSet = []
        pendingChanges = []
        lastGood = path
        lastCheckpointWritten = path
        lastCkptStep = step
        lastCkptTime = Clock.monotonic()
        return path
    }

    func pad12(_ n: Int) -> String {
        let d = String(n)
        return String(repeating: "0", count: max(0, 12 - d.count)) + d
    }

    /// One line on stdout, unbuffered (write(2)): checkpoint paths are data for pipelines.
    func printLine(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        bytes.withUnsafeMutableBytes { b in
            var off = 0
            while off < b.count {
                let n = write(1, b.baseAddress! + off, b.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    log.warning("cannot print the checkpoint path on stdout: \(String(cString: strerror(errno)))")
                    return
                }
                off += n
            }
        }
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

    func cadenceDue() -> Bool {
        switch s.cadence {
        case .examples(let n): return step - lastCkptStep >= n
        case .seconds(let sec): return Clock.monotonic() - lastCkptTime >= sec
        }
    }

    // MARK: training

    enum BatchOutcome { case trained, empty, nan }

    func trainBatch(_ mode: DataFeed.Mode) throws -> BatchOutcome {
        var batch = Batch()
        let n = feed.fill(&batch, size: s.batch, mode: mode, slotBase: step)
        for r in feed.takeTouched() where lineageSet.insert(r).inserted { lineage.append(r) }
        if n == 0 { return .empty }
        let r: BatchResult
        do {
            r = try trainer.train(batch)
        } catch let e as PPError {
            log.error("training step failed at step \(step): \(e.message)")
            return .nan
        }
        let perExample = r.loss
        guard perExample.isFinite else {
            log.error("loss is \(perExample) at step \(step)")
            return .nan
        }
        step += r.examples
        tokens += r.tokens
        lossAvg = lossAvg.map { 0.98 * $0 + 0.02 * perExample } ?? perExample
        nanStreak = 0
        return .trained
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
            case .trained: break
            case .empty:
                if step == start.step {
                    log.notice("nothing to do: the pending shards hold no readable examples")
                    state = "stopped"; writeStatus()
                    return .nothingToDo
                }
                state = "stopped"
                try writeCheckpoint(reason: "once")
                writeStatus()
                return .ok
            case .nan:
                log.error("no checkpoint written (--once)")
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
                log.info("SIGHUP: re-reading control.json and shards/")
                readControl(); rescan()
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
                case .trained, .empty: break
                case .nan: try recoverFromNaN()
                }
                if dirty && cadenceDue() { tryCheckpoint(reason: "cadence \(s.cadence)") }
            } else {
                // Idle, paused or halted: make the work so far durable, then sleep until the
                // next scan or control check (a signal wakes us early).
                if dirty && !halted { tryCheckpoint(reason: state) }
                if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
                now = Clock.monotonic()
                signals.sleep(min(nextScan, nextControl, now + (watchdog.period ?? 2)) - now)
                continue
            }
            if Clock.monotonic() >= nextStatus { writeStatus(); nextStatus = Clock.monotonic() + 2 }
        }
    }
}
