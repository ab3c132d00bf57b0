// The loop's reporter: status.json, the metrics file (TrainMetrics) and the line `systemctl
// status` shows, published every few seconds and on every change of state from one
// StatusDoc the loop fills in (StatusFile.swift has the format). It owns the throughput
// measurement (examples and tokens a second since the last report).
import Foundation
import Logging
import Shared
import TextModel
import Training
#if canImport(Glibc)
import Glibc
#endif

final class StatusReporter {
    let root: Root
    let run: String
    let path: String
    let log: Logger
    let startedAt = Clock.iso(Clock.now())
    private var rateT = Clock.monotonic(), rateStep: Int, rateTokens: Int
    private var examplesPerS = 0.0, tokensPerS = 0.0

    init(root: Root, run: String, log: Logger, step: Int, tokens: Int) {
        self.root = root; self.run = run; self.log = log
        path = root.status(run: run)
        rateStep = step; rateTokens = tokens
    }

    /// Examples and tokens a second, measured over at least half a second.
    func rates(step: Int, tokens: Int) -> (examples: Double, tokens: Double) {
        let now = Clock.monotonic()
        if now - rateT >= 0.5 {
            examplesPerS = Double(step - rateStep) / (now - rateT)
            tokensPerS = Double(tokens - rateTokens) / (now - rateT)
            if examplesPerS < 0 { examplesPerS = 0; tokensPerS = 0 }  // after a NaN reload
            rateT = now; rateStep = step; rateTokens = tokens
        }
        return (examplesPerS.rounded(), tokensPerS.rounded())
    }

    /// Publishes `doc` as status.json and metrics, and its line to systemd. `checkpoint`:
    /// the newest checkpoint this trainer wrote or resumed (its time goes to the metrics).
    /// Failures are logged: training goes on.
    func publish(_ doc: StatusDoc, checkpoint: String?) {
        do { try doc.write(path) } catch {
            log.error("cannot write status.json: \(error)")
        }
        var t: Double?
        if let p = checkpoint, let st = FileIO.lstatOrNil(p) {
            t = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        }
        do {
            try TrainMetrics.render(status: doc, lastCheckpointTime: t, now: Clock.now()).publish(root: root, name: TrainMetrics.fileName(run: run))
        } catch {
            log.error("cannot write metrics: \(error)")
        }
        Notify.status(StatusReporter.line(doc))
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    static func line(_ d: StatusDoc) -> String {
        var line = d.state
        if let mode = d.mode {
            line += " (\(mode)): \(Int(d.examplesPerS)) ex/s"
            if let l = d.loss { line += ", loss \(String(format: "%.4f", l))" }
            line += ","
        }
        line += " step \(d.step), \(d.pendingShards) shards pending"
        if let c = d.lastCheckpoint { line += ", last checkpoint \(FileIO.split(c).name)" }
        return line
    }
}
