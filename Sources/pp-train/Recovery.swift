// The loop's recovery desk: what happens when a shard goes wrong (docs/operations.md,
// "pp-train"). It owns the guard (Guard.swift: the numbers and the verdicts), the run's
// suspect list, the probation baseline, the NaN streak and the counters status.json reports,
// and it decides: a verdict or a probation score becomes a `Stop` (a shard to mark suspect),
// a Stop becomes a mark and an `Action` (revert before the shard, or halt because the knobs,
// not the data, are the likelier cause), a NaN reload counts towards the halt. It finds the
// revert point on the run's chain. Replacing the trained state is the loop's
// (TrainLoop.restore): this desk never touches the trainer, the data feed or the files of
// the chain other than suspects.json.
import Foundation
import Logging
import Shared
import TextModel
import Training

final class Recovery {
    let root: Root
    let run: String
    let log: Logger

    /// policy.json's "train" section (read at start and on SIGHUP).
    private(set) var policy: TrainPolicy
    var guardian: ShardGuard
    /// runs/RUN/suspects.json: shards never trained on again.
    private(set) var suspects: SuspectList
    /// Shards the guard stopped since this process started, and the last one.
    private(set) var trips = 0
    private(set) var lastTrip: SuspectShard?
    /// Loss spikes the guard recorded as change (trained on) since this process started.
    private(set) var spikes = 0
    /// The loss of the last shard the guard judged (for status and metrics).
    private(set) var lastShardLoss: Double?
    /// Probation (Guard.swift): the model at the revert point of the shard on probation,
    /// loaded when the first following example is scored; verdicts since this process started.
    private var baseline: (shard: String, model: Model)?
    private(set) var confirmed = 0
    private(set) var undone = 0
    /// Shards marked for a non-finite loss since the last accepted shard: a NaN on the next
    /// shard too means the knobs, not the data, are the likely cause.
    private var nanTrips: [String] = []
    /// NaN reloads in a row (recoverFromNaN); three halt training until the knobs change.
    private var nanStreak = 0
    private(set) var halted = false

    /// A shard to stop: the evidence, for the suspect mark and the log.
    struct Stop {
        var shard: ShardRef
        var reason: String
        var loss: Double
        var median: Double? = nil
        var threshold: Double? = nil
        var detail: String? = nil
    }

    /// What the loop must do after a Stop: go back to the state before `before`, and (halt)
    /// stop training until lr or dropout change, training again on `include` (shards whose
    /// non-finite-loss marks were withdrawn).
    struct Action {
        var before: ShardRef
        var halt = false
        var include: [String] = []
    }

    init(root: Root, run: String, policy: TrainPolicy, suspects: SuspectList, guardState: GuardState?, log: Logger) {
        self.root = root; self.run = run; self.log = log; self.policy = policy; self.suspects = suspects
        guardian = ShardGuard(policy: policy, state: guardState)
    }

    /// A new shard is being judged: no checkpoint may be written now except the final one
    /// on SIGTERM (which records the judgement in progress), so that a revert never has to
    /// go back further than the last checkpoint.
    var judgingShard: Bool { policy.guardEnabled && guardian.state.judging != nil }

    /// The guard's state was replaced with a checkpoint's (nil: a fresh model's).
    func restored(_ state: GuardState?) {
        guardian.state = state ?? GuardState()
        baseline = nil
    }

    /// Re-reads policy.json (SIGHUP); a bad file is logged and the policy in force stays.
    func readPolicy() {
        do {
            let p = try TrainPolicy.load(root: root)
            if p != policy { log.notice("policy.json changed: new guard settings in force") }
            policy = p
            guardian.policy = p
        } catch {
            log.error("ignoring policy.json (the guard settings in force stay): \(error)")
        }
    }

    // MARK: NaN

    /// A batch trained to a finite loss.
    func finiteBatch() { nanStreak = 0 }

    /// The state was reloaded after a non-finite loss; the third in a row halts.
    func nanReloaded() {
        nanStreak += 1
        if nanStreak >= 3 {
            halted = true
            log.critical("3 NaN/inf losses in a row: training halted until lr or dropout change (pp-train set lr=...)")
        }
    }

    /// lr or dropout changed: a halt ends.
    func knobsChanged() {
        guard halted else { return }
        log.notice("knobs changed: resuming after the NaN halt")
        halted = false; nanStreak = 0
    }

    // MARK: verdicts

    /// The guard's verdict on a new shard it finished reading: accepted (a spike or a
    /// labels-do-not-follow signal puts it on probation), or damaged (a Stop).
    func act(on v: ShardGuard.Verdict, shard sh: ShardRef, step: Int) -> Stop? {
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
                spikes += 1
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
            return nil
        case .damaged(let loss, let median, let limit, let signal, let signalLimit):
            lastShardLoss = loss
            if let g = signal, let gl = signalLimit {
                return Stop(shard: sh, reason: "labels do not follow from the texts", loss: loss, median: median, threshold: limit,
                            detail: "label signal \(fmt(g)) > \(fmt(gl)), loss \(fmt(loss)) > threshold \(fmt(limit))")
            }
            return Stop(shard: sh, reason: "loss spike", loss: loss, median: median, threshold: limit)
        }
    }

    /// Scores the new examples at `indices` with `current` (the model now) and the probation
    /// shard's revert point (found from `lastGood` on the chain, loaded once), and says
    /// whether the shard must be undone.
    func judgeProbation(batch: Batch, indices: [Int], current after: Model, lastGood: String?) -> Stop? {
        guard let p = guardian.state.probation else { return nil }
        if baseline?.shard != p.shard {
            do {
                guard let target = try revertPoint(before: p.shard, from: lastGood) else {
                    // No checkpoint before the shard: it came in the same first pass as all the
                    // data before it (a new run's warm-up), and the start state lacks that data
                    // too, so comparing with it would confirm anything (measured: the "before"
                    // loss was the floor, -log 1e-7, in every such case). Nothing fair to
                    // compare with: the shard stays, as before probation existed.
                    log.notice("guard: probation cannot be judged, the shard stays: no checkpoint before it to compare with (it was trained in the same pass as the data before it)",
                               metadata: ["shard": "\(p.shard)"])
                    guardian.state.probation = nil
                    return nil
                }
                baseline = (p.shard, try Checkpoint.load(path: target, mode: .inference).model)
            } catch {
                // Without the model before it there is nothing to compare with: the shard
                // stays (as before probation existed), and training goes on.
                log.error("guard: probation cannot be judged, the shard stays: the revert point cannot be loaded: \(error)", metadata: ["shard": "\(p.shard)"])
                guardian.state.probation = nil
                return nil
            }
        }
        let md: Logger.Metadata = ["shard": "\(p.shard)", "spike_loss": "\(fmt(p.loss))"]
        switch guardian.scoreProbation(Recovery.lossPairs(batch: batch, indices: indices, after: after, before: baseline!.model)) {
        case .pending:
            return nil
        case .confirmed(let a, let b, let n, let t):
            confirmed += 1
            baseline = nil
            log.notice("guard: probation confirmed: the model that learned the shard predicts the data that followed as well or better (or not worse beyond noise)",
                       metadata: md.merging(["after": "\(fmt(a))", "before": "\(fmt(b))", "examples": "\(n)", "t": "\(t)"]) { x, _ in x })
            return nil
        case .undo(let a, let b, let n, let t):
            undone += 1
            baseline = nil
            return Stop(shard: ShardRef(name: p.shard, sha256: p.sha256), reason: "probation", loss: p.loss, threshold: p.threshold,
                        detail: "the model that learned it predicts the \(n) following examples worse: loss \(fmt(a)) > \(fmt(b)) before it (paired t \(t) > \(ShardGuard.probationT)); "
                            + (p.signal.map { g in "its labels did not follow from its texts: label signal \(fmt(g)) > \(fmt(p.signalLimit ?? 0))" }
                               ?? "it spiked at loss \(fmt(p.loss)) > threshold \(fmt(p.threshold))"))
        }
    }

    /// Each example's loss under the two models; a label a model does not know costs it the
    /// loss floor, -log(1e-7); examples neither knows are left out.
    static func lossPairs(batch: Batch, indices: [Int], after: Model, before: Model) -> [(after: Double, before: Double)] {
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
        return pairs
    }

    // MARK: stopping a shard

    /// Marks `stop.shard` suspect (suspects.json) and says what the loop must do: revert
    /// before it. A second non-finite loss right after one (no shard accepted in between)
    /// blames the knobs instead: the marks for non-finite losses are withdrawn (the loop
    /// trains on those shards again) and training halts until lr or dropout change.
    func stop(_ stop: Stop, step: Int) -> Action {
        trips += 1
        let shard = stop.shard, loss = stop.loss
        if !loss.isFinite && !nanTrips.isEmpty {
            log.critical("guard: non-finite loss again (shard \(shard.name), after \(nanTrips.joined(separator: ", "))): the knobs are the likelier cause, not the data; withdrawing those suspect marks and halting until lr or dropout change (pp-train set lr=...)")
            for name in nanTrips {
                suspects.shards.removeAll { $0.name == name && $0.reason == "non-finite loss" }
            }
            let withdrawn = nanTrips
            nanTrips = []
            publishSuspects()
            halted = true
            return Action(before: shard, halt: true, include: withdrawn)
        }
        var mark = SuspectShard(name: shard.name, sha256: shard.sha256, reason: stop.reason, loss: loss.isFinite ? loss : nil,
                                reference: stop.median, step: step, at: Clock.iso(Clock.now()), by: "pp-train guard")
        if let d = stop.detail { mark.reason = "\(stop.reason): \(d)" }
        else if let t = stop.threshold { mark.reason = "\(stop.reason): loss \(fmt(loss)) > threshold \(fmt(t))" }
        suspects.mark(mark)
        lastTrip = mark
        publishSuspects()
        if !loss.isFinite { nanTrips.append(shard.name) }
        var md: Logger.Metadata = ["shard": "\(shard.name)", "reason": "\(stop.reason)", "loss": "\(loss.isFinite ? fmt(loss) : "\(loss)")", "step": "\(step)"]
        if let m = stop.median { md["median"] = "\(fmt(m))" }
        if let t = stop.threshold { md["threshold"] = "\(fmt(t))" }
        log.error("guard: shard stopped and marked suspect; reverting to the state before it", metadata: md)
        return Action(before: shard)
    }

    private func publishSuspects() {
        do { try suspects.publish(root: root, run: run) } catch {
            log.error("cannot write suspects.json (this process still skips the shard): \(error)")
        }
    }

    // MARK: the revert point

    /// The newest checkpoint on the run's chain, from `lastGood` back, that has not trained
    /// on `shard` and has weights (nil: none, a fresh model). The last one written, unless it
    /// was written mid-shard on SIGTERM.
    func revertPoint(before shard: String, from lastGood: String?) throws -> String? {
        var target = lastGood
        while let p = target {
            if p.hasSuffix(Checkpoint.headSuffix) {
                // A head has no data cursor (Checkpoint.keepHead): the chain's lineage says it.
                let r = try Lineage.newestWithout(shard: shard, from: p, root: root)
                if let m = r.missingParent {
                    log.error("cannot revert past \(r.target ?? p): its parent \(m) is gone; the part of \(shard) trained before it may stay")
                }
                target = r.target
                break
            }
            let meta = try Checkpoint.readHead(path: p, cursor: true).meta
            guard let e = meta.cursor.shards.first(where: { $0.shard.name == shard }), e.passes > 0 || e.position > 0 else { break }
            guard let parentName = meta.parent else { target = nil; break }
            guard let pp = Lineage.resolveParent(parentName, root: root) else {
                log.error("cannot revert past \(p): its parent \(parentName) is gone; the part of \(shard) trained before it stays")
                break
            }
            target = pp
        }
        // A head has no weights (retention deleted them): go further back to one that has.
        while let p = target, p.hasSuffix(Checkpoint.headSuffix) {
            target = try Checkpoint.readHead(path: p).meta.parent.flatMap { Lineage.resolveParent($0, root: root) }
        }
        return target
    }

    private func fmt(_ x: Double) -> String { String(format: "%.4f", x) }
}
