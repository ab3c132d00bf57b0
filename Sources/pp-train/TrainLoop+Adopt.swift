// control.json's `adopt` (issue 16, a population of runs): the run continues from another
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
    // MARK: adopt (population: exploit)

    /// control.json's `adopt` (TextModel/Control.swift): continue from checkpoint `id`
    /// unless the state already descends from it. Looked at when the value changes (and at
    /// start); a refusal is logged and training goes on from where it is.
    func adoptIfAsked(_ id: String?) {
        guard let id, id != adoptSeen else { return }
        adoptSeen = id
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
        var name = parent
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
        if let bad = try Start.suspectIn(path, suspects: suspects.names, root: s.root) {
            throw PPError("its lineage contains suspect shard \(bad) of run \(s.run)", status: .corrupt)
        }
        let ck = try Checkpoint.load(path: path)
        guard ck.meta.config == config else {
            throw PPError("it was created with other model flags (\(s.flags.conflicts(with: ck.meta.config).joined(separator: ", ")))", status: .usage)
        }
        let t0 = Clock.monotonic()
        let was = step
        replaceTrainer(try Trainer(checkpoint: ck))
        step = ck.meta.step; tokens = ck.meta.tokens
        try feed.reset(to: ck.meta.cursor)
        guardian.state = ck.meta.guardState ?? GuardState()
        probationBaseline = nil
        lastGood = path; parent = id
        lastCkptStep = step
        lineage = []; lineageSet = []
        unsavedSince = nil
        lossAvg = nil
        adopted = (id, Clock.iso(Clock.now()))
        log.notice("adopted checkpoint: training continues from it", metadata: [
            "adopt": "\(id)", "step": "\(step)", "was_step": "\(was)",
            "seconds": "\(String(format: "%.2f", Clock.monotonic() - t0))"])
    }
}
