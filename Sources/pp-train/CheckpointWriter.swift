// The loop's checkpoint writer: where the trained state stands on its run's chain (the parent
// it continues, the shards and knob changes since then, the last checkpoint known good), when
// the next checkpoint is due (every --checkpoint-every of training or wall time, when idle, at
// a signal), the write itself (delta or full: Training's Trainer picks), its path on stdout,
// and the retry after a failed write. It owns that state; the loop tells it what happened
// (a batch trained, the state replaced by a revert, a NaN reload or an adoption).
import Foundation
import Logging
import Shared
import TextModel
import Training
#if canImport(Glibc)
import Glibc
#endif

final class CheckpointWriter {
    let run: String
    let dir: String
    let cadence: Cadence
    let deltas: DeltaPolicy
    let log: Logger

    /// "RUN/FILE" of the checkpoint the next one continues (nil: a fresh model).
    private(set) var parent: String?
    /// Shards trained on since that checkpoint, in first-touch order (meta.lineage).
    private(set) var lineage: [ShardRef] = []
    private var lineageSet: Set<ShardRef> = []
    /// Knob changes since that checkpoint (meta.knob_changes).
    private(set) var pendingChanges: [KnobChange] = []
    /// The last checkpoint known good (written here or started from); nil = fresh start.
    private(set) var lastGood: String?
    /// The last checkpoint this process wrote (status.json's last_checkpoint).
    private(set) var lastWritten: String?
    /// The step of the state last saved (or loaded): trained since then = dirty.
    private(set) var savedStep: Int
    /// When the first batch not in a checkpoint was trained: `Clock.cadence()` (for the
    /// cadence) and `Clock.now()` (for status.json); nil while everything is saved.
    private var unsavedSince: (cadence: Double, wall: Double)?
    /// After a failed write (disk full...), the next attempt waits until then.
    private var retryAt = 0.0

    init(run: String, dir: String, cadence: Cadence, deltas: DeltaPolicy, log: Logger, parent: String?, lastGood: String?, step: Int) {
        self.run = run; self.dir = dir; self.cadence = cadence; self.deltas = deltas; self.log = log
        self.parent = parent; self.lastGood = lastGood; savedStep = step
    }

    // MARK: what happened to the state

    /// Shards a batch read (DataFeed.takeTouched): the next checkpoint's lineage.
    func touched(_ refs: [ShardRef]) {
        for r in refs where lineageSet.insert(r).inserted { lineage.append(r) }
    }

    /// Knob changes for the next checkpoint's meta.
    func record(_ changes: [KnobChange]) { pendingChanges += changes }

    /// The state was replaced at `step`: by checkpoint `path` ("RUN/FILE" `parent`), by a
    /// fresh model, or (`.same`) by a reload of the checkpoint the chain already continues.
    /// Nothing since counts as unsaved; knob changes stay pending.
    enum Replaced { case same, checkpoint(path: String, parent: String), fresh }
    func replaced(at step: Int, by r: Replaced) {
        switch r {
        case .same: break
        case .checkpoint(let path, let p): lastGood = path; parent = p
        case .fresh: lastGood = nil; parent = nil
        }
        savedStep = step
        lineage = []; lineageSet = []
        unsavedSince = nil
    }

    // MARK: cadence

    /// Trained since the last checkpoint (or since the start).
    func dirty(at step: Int) -> Bool { step != savedStep }

    /// Notes when unsaved work began (called after every batch).
    func noteUnsaved(at step: Int) {
        if !dirty(at: step) { unsavedSince = nil } else if unsavedSince == nil { unsavedSince = (Clock.cadence(), Clock.now()) }
    }

    /// The cadence counts from the first unsaved batch, not from the last checkpoint: after
    /// a long idle time the first new batch does not trigger a checkpoint of its own, and a
    /// trickle of small shards (an ingest every few minutes) gets one checkpoint per
    /// interval, not one per shard.
    func cadenceDue(at step: Int) -> Bool {
        noteUnsaved(at: step)
        switch cadence {
        case .examples(let n): return step - savedStep >= n
        case .seconds(let sec):
            guard let since = unsavedSince else { return false }
            return Clock.cadence() - since.cadence >= sec
        }
    }

    /// An idle trainer checkpoints its unsaved work once the cadence is due (a duration:
    /// `--checkpoint-every` after the first unsaved batch) or at once (an example count,
    /// which cannot come due while no example is trained). Paused: at once.
    func idleDue(at step: Int, paused: Bool) -> Bool {
        guard dirty(at: step) else { return false }
        if paused { return true }
        if case .examples = cadence { return true }
        return cadenceDue(at: step)
    }

    /// status.json's `unsaved_since` and `checkpoint_due`.
    func unsavedStatus(at step: Int) -> (since: String?, due: String?) {
        guard dirty(at: step), let u = unsavedSince else { return (nil, nil) }
        if case .seconds(let sec) = cadence { return (Clock.iso(u.wall), Clock.iso(u.wall + sec)) }
        return (Clock.iso(u.wall), nil)
    }

    // MARK: writing

    /// Writes a checkpoint of `trainer`'s state (`meta` holds the step, knobs, cursor and
    /// guard state; the chain's parent, lineage and knob changes are added here) and prints
    /// its path on stdout.
    @discardableResult
    func write(_ trainer: Trainer, meta m: CheckpointMeta, reason: String) throws -> String {
        let t0 = Clock.monotonic()
        var meta = m
        meta.knobChanges = pendingChanges
        meta.parent = parent
        meta.lineage = lineage
        let bytes = try trainer.checkpointBytes(meta: meta, policy: deltas)
        let kind = trainer.pendingCheckpointIsDelta == true ? "delta of \(trainer.deltaBase ?? "?")" : "full"
        try FileIO.makeDirectories(dir)
        var name = ""
        while true {
            name = CheckpointName(time: Clock.now(), step: meta.step).file
            if !FileIO.exists(dir + "/" + name) { break }
            usleep(200_000)  // same second and step as an existing one: never overwrite
        }
        let path = dir + "/" + name
        try FileIO.publish(bytes, to: path)
        trainer.checkpointPublished(as: run + "/" + name)
        printLine(path)
        log.info("checkpoint written", metadata: ["path": "\(path)", "step": "\(meta.step)", "bytes": "\(bytes.count)", "kind": "\(kind)",
                                                  "seconds": "\(String(format: "%.3f", Clock.monotonic() - t0))", "reason": "\(reason)"])
        pendingChanges = []
        lastWritten = path
        replaced(at: meta.step, by: .checkpoint(path: path, parent: run + "/" + name))
        return path
    }

    /// `write`, unless a recent attempt failed; failures are logged, not thrown (the daemon
    /// keeps training and tries again a minute later).
    func tryWrite(_ trainer: Trainer, meta: CheckpointMeta, reason: String) {
        if Clock.monotonic() < retryAt { return }
        do { try write(trainer, meta: meta, reason: reason) } catch {
            log.error("checkpoint failed, will retry in 60 s: \(error)")
            retryAt = Clock.monotonic() + 60
        }
    }

    /// One line on stdout (Stdout.line): checkpoint paths are data for pipelines. A closed
    /// stdout only costs the line: training goes on.
    private func printLine(_ line: String) {
        do { try Stdout.line(line) } catch let e as PPError {
            log.warning("cannot print the checkpoint path on stdout: \(e.message)")
        } catch { log.warning("cannot print the checkpoint path on stdout: \(error)") }
    }
}
