// What the loop does when a shard goes wrong: acting on the guard's verdict, judging a shard
// on probation, marking a shard suspect (a guard trip), reverting exactly to the state before
// it, and recovering from a non-finite loss (docs/operations.md, "pp-train").
import Foundation
import Logging
import Shared
import TextModel
import Training
#if canImport(Glibc)
import Glibc
#endif

extension TrainLoop {
    /// Acts on the guard's verdict on a new shard it finished reading: accepted (a spike or
    /// a labels-do-not-follow signal puts it on probation), or damaged (marked suspect and
    /// reverted: returns true).
    func act(on v: ShardGuard.Verdict, shard sh: ShardRef) throws -> Bool {
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
            return true
        }
        return false
    }

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
            replaceTrainer(try Trainer(checkpoint: ck))
            step = ck.meta.step; tokens = ck.meta.tokens
            try feed.reset(to: ck.meta.cursor)
            guardian.state = ck.meta.guardState ?? GuardState()
            if p != lastGood { lastGood = p; parent = Start.parentName(p) }
        } else {
            replaceTrainer(try Trainer(config: config, knobs: knobs))
            step = 0; tokens = 0
            try feed.reset(to: Start.freshCursor(config))
            guardian.state = GuardState()
            lastGood = nil; parent = nil
        }
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
            if p.hasSuffix(Checkpoint.headSuffix) {
                // A head has no data cursor (Checkpoint.keepHead): the chain's lineage says it.
                target = try revertPointByLineage(from: p, before: shard)
                break
            }
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

    func revertPointByLineage(from head: String, before shard: String) throws -> String? {
        let r = try Lineage.newestWithout(shard: shard, from: head, root: s.root)
        if let m = r.missingParent {
            log.error("cannot revert past \(r.target ?? head): its parent \(m) is gone; the part of \(shard) trained before it may stay")
        }
        return r.target
    }

    /// After a NaN/inf loss: back to the last good checkpoint (or the start state). The data
    /// since then is skipped (the cursor stays where it is), so the same bad batch is not
    /// replayed forever; after three failures in a row training halts until the knobs change.
    func recoverFromNaN() throws {
        if let p = lastGood {
            let ck = try Checkpoint.load(path: p)
            replaceTrainer(try Trainer(checkpoint: ck))
            log.error("reloaded the last good checkpoint; data since then is skipped", metadata: ["checkpoint": "\(p)", "step": "\(ck.meta.step)", "skipped_examples": "\(step - ck.meta.step)"])
            step = ck.meta.step; tokens = ck.meta.tokens
        } else {
            replaceTrainer(try Trainer(config: config, knobs: knobs))
            log.error("reloaded the start state (a fresh model); data since then is skipped", metadata: ["skipped_examples": "\(step - start.step)"])
            step = start.step; tokens = start.tokens
        }
        lastCkptStep = step
        lineage = []; lineageSet = []
        lossAvg = nil
        nanStreak += 1
        if nanStreak >= 3 {
            halted = true
            log.critical("3 NaN/inf losses in a row: training halted until lr or dropout change (pp-train set lr=...)")
        }
    }
}
