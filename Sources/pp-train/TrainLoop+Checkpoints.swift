// When and how the loop writes checkpoints: the cadence (every --checkpoint-every of training
// or wall time, when idle, at a signal), the write itself (lineage, knob changes, delta or
// full), its path on stdout, and the retry after a failed write.
import Foundation
import Logging
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

extension TrainLoop {
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
        if state == .paused { return true }
        if case .examples = s.cadence { return true }
        return cadenceDue()
    }

    /// status.json's `unsaved_since` and `checkpoint_due`.
    var unsavedStatus: (since: String?, due: String?) {
        guard dirty, let u = unsavedSince else { return (nil, nil) }
        if case .seconds(let sec) = s.cadence { return (Clock.iso(u.wall), Clock.iso(u.wall + sec)) }
        return (Clock.iso(u.wall), nil)
    }
}
