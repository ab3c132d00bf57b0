// The loop's report: status.json, the metrics file and the line `systemctl status` shows,
// written every few seconds and on every change of state (StatusFile.swift has the format).
import Foundation
import Logging
import Shared
import TextModel
import Training
#if canImport(Glibc)
import Glibc
#endif

extension TrainLoop {
    // MARK: status

    func writeStatus() {
        let now = Clock.monotonic()
        if now - rateT >= 0.5 {
            examplesPerS = Double(step - rateStep) / (now - rateT)
            tokensPerS = Double(tokens - rateTokens) / (now - rateT)
            if examplesPerS < 0 { examplesPerS = 0; tokensPerS = 0 }  // after a NaN reload
            rateT = now; rateStep = step; rateTokens = tokens
        }
        let doc = StatusDoc(run: s.run, pid: getpid(), state: state.rawValue, mode: state == .training ? mode?.rawValue : nil,
                            step: step, tokens: tokens, examplesPerS: examplesPerS.rounded(), tokensPerS: tokensPerS.rounded(),
                            loss: lossAvg, knobs: knobs, vocabularySize: trainer.model.vocabulary.size,
                            labels: trainer.model.labels.count, shards: feed.pool.count, pendingShards: feed.pendingShards,
                            newestShard: feed.newestShard, lastCheckpoint: lastCheckpointWritten,
                            startedFrom: start.parent ?? start.kind, startedAt: startedAt, updatedAt: Clock.iso(Clock.now()),
                            suspects: suspects.shards.count, guardTrips: guardTrips, lastGuardTrip: lastTrip, guardSpikes: guardSpikes,
                            lastShardLoss: lastShardLoss, guardThreshold: guardian.currentThreshold,
                            judging: guardian.state.judging?.shard, probation: guardian.state.probation?.shard,
                            probationConfirmed: probationConfirmed, probationUndone: probationUndone,
                            unsavedSince: unsavedStatus.since, checkpointDue: unsavedStatus.due,
                            adopted: adopted?.id, adoptedAt: adopted?.at)
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
        var line = state.rawValue
        if state == .training {
            line += " (\(mode?.rawValue ?? "-")): \(Int(examplesPerS)) ex/s"
            if let l = lossAvg { line += ", loss \(String(format: "%.4f", l))" }
            line += ","
        }
        line += " step \(step), \(feed.pendingShards) shards pending"
        if let c = lastCheckpointWritten { line += ", last checkpoint \(FileIO.split(c).name)" }
        return line
    }
}
