// Replacing the trained state, the loop's alone: a revert before a shard the guard stopped
// (Recovery decides, the loop goes back), a reload after a non-finite loss, and an adoption:
// control.json's `adopt` (issue 16, a population of runs), the run continues from another
// checkpoint, usually the best run's newest, as pp-select's population step asks (exploit).
// Done once per request: a state that already descends from the checkpoint (it adopted it and
// checkpointed since, then restarted) keeps going. Like a revert, but forward to another run's
// state instead of back along its own chain.

import Foundation
import Logging
import Shared
import TextModel
import Training

extension TrainLoop {
    // MARK: revert, NaN reload

    /// Replaces the trained state with checkpoint `ck`, or with a fresh model (nil) at the
    /// start of the data: weights, step, data cursor, guard state; `chain` says what the next
    /// checkpoint continues (CheckpointWriter.Replaced).
    func restore(_ ck: Checkpoint?, chain: CheckpointWriter.Replaced) throws {
        if let ck {
            replaceTrainer(try Trainer(checkpoint: ck))
            step = ck.meta.step; tokens = ck.meta.tokens
            try feed.reset(to: ck.meta.cursor)
            recovery.restored(ck.meta.guardState)
        } else {
            replaceTrainer(try Trainer(config: config, knobs: knobs))
            step = 0; tokens = 0
            try feed.reset(to: Start.freshCursor(config))
            recovery.restored(nil)
        }
        checkpoints.replaced(at: step, by: chain)
    }

    /// The guard stopped a shard: Recovery marks it (or halts); the loop goes back to the
    /// state before it, exactly: the newest checkpoint on its chain that has not trained on
    /// it, with its data cursor, so the good data since then is trained again in the same
    /// order (bit-identical with --threads 1), now without the shard. A fresh model if no
    /// such checkpoint.
    func stopShard(_ stop: Recovery.Stop) throws {
        let action = recovery.stop(stop, step: step)
        for name in action.include { feed.include(name) }
        if !action.halt { feed.exclude(stop.shard.name) }
        let t0 = Clock.monotonic()
        let lostSteps = step
        let target = try recovery.revertPoint(before: action.before.name, from: checkpoints.lastGood)
        if let p = target {
            try restore(try Checkpoint.load(path: p), chain: p == checkpoints.lastGood ? .same : .checkpoint(path: p, parent: Start.parentName(p)))
        } else {
            try restore(nil, chain: .fresh)
        }
        log.notice("reverted: the good data since then is trained again", metadata: [
            "to": "\(target ?? "fresh model")", "step": "\(step)", "examples_to_retrain": "\(lostSteps - step)",
            "seconds": "\(String(format: "%.2f", Clock.monotonic() - t0))"])
    }

    /// After a NaN/inf loss: back to the last good checkpoint (or the start state). The data
    /// since then is skipped (the cursor stays where it is), so the same bad batch is not
    /// replayed forever; after three failures in a row training halts until the knobs change.
    func recoverFromNaN() throws {
        if let p = checkpoints.lastGood {
            let ck = try Checkpoint.load(path: p)
            replaceTrainer(try Trainer(checkpoint: ck))
            log.error("reloaded the last good checkpoint; data since then is skipped", metadata: ["checkpoint": "\(p)", "step": "\(ck.meta.step)", "skipped_examples": "\(step - ck.meta.step)"])
            step = ck.meta.step; tokens = ck.meta.tokens
        } else {
            replaceTrainer(try Trainer(config: config, knobs: knobs))
            log.error("reloaded the start state (a fresh model); data since then is skipped", metadata: ["skipped_examples": "\(step - start.step)"])
            step = start.step; tokens = start.tokens
        }
        checkpoints.replaced(at: step, by: .same)
        lossAvg = nil
        recovery.nanReloaded()
    }

    // MARK: adopt (population: exploit)

    /// control.json's `adopt` (TextModel/Control.swift): continue from checkpoint `id`
    /// unless the state already descends from it. Looked at when the value changes (and at
    /// start); a refusal is logged and training goes on from where it is.
    func adoptIfAsked(_ id: String?) {
        guard let id else { return }
        if descends(from: id) {
            log.info("control.json adopt: already continues that checkpoint", metadata: ["adopt": "\(id)"])
            return
        }
        do { try adopt(id) } catch let e as PPError {
            log.error("control.json adopt \(id) refused: \(e.message); training goes on from where it is")
        } catch {
            log.error("control.json adopt \(id) refused: \(error); training goes on from where it is")
        }
    }

    /// Whether the current state continues checkpoint `id` ("RUN/FILE"): it is the last
    /// checkpoint or one of its ancestors. The walk reads heads only and stops at the first
    /// ancestor older than `id` (by name stamp), so it is short however long the run.
    func descends(from id: String) -> Bool {
        let limit = CheckpointName(id).flatMap(\.time) ?? 0
        var name = checkpoints.parent
        var hops = 0
        while let n = name, hops < 1_000_000 {
            if n == id { return true }
            guard let path = Lineage.resolveParent(n, root: s.root), let l = try? Lineage.link(path) else { return false }
            if let t = Clock.parseISO(l.createdAt), Double(t) < limit { return false }
            name = l.parent
            hops += 1
        }
        return false
    }

    /// Replaces the state with checkpoint `id`'s (weights, optimiser state, step, data
    /// cursor, guard state), as a restart with `--init id` would; the run's knobs stay (the
    /// caller applies control.json's next). The next checkpoint names `id` as its parent and
    /// is full (a delta's base is always of its own run).
    func adopt(_ id: String) throws {
        guard let path = Lineage.resolveParent(id, root: s.root), !path.hasSuffix(Checkpoint.headSuffix) else {
            throw PPError("no checkpoint with weights named \(id) under \(s.root.runs)", status: .noInput)
        }
        if let bad = try Start.suspectIn(path, suspects: recovery.suspects.names, root: s.root) {
            throw PPError("its lineage contains suspect shard \(bad) of run \(s.run)", status: .corrupt)
        }
        let ck = try Checkpoint.load(path: path)
        guard ck.meta.config == config else {
            throw PPError("it was created with other model flags (\(s.flags.conflicts(with: ck.meta.config).joined(separator: ", ")))", status: .usage)
        }
        let t0 = Clock.monotonic()
        let was = step
        try restore(ck, chain: .checkpoint(path: path, parent: id))
        lossAvg = nil
        control.adopted = (id, Clock.iso(Clock.now()))
        log.notice("adopted checkpoint: training continues from it", metadata: [
            "adopt": "\(id)", "step": "\(step)", "was_step": "\(was)",
            "seconds": "\(String(format: "%.2f", Clock.monotonic() - t0))"])
    }
}
