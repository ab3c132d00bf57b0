// The loop's reporter: status.json, the metrics file (TrainMetrics) and the line `systemctl
// status` shows, published from one StatusDoc the loop fills in (StatusFile.swift has the
// format): every few seconds while anything in it changes, on every change of state, and
// otherwise once a minute as a heartbeat. It owns the throughput measurement (examples and
// tokens a second since the last report).
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
    /// The last document published (its `updated_at` blanked) and when (monotonic seconds).
    private var last: (doc: StatusDoc, at: Double)?
    /// Seconds between publications of an unchanged document (`updated_at` and the metrics'
    /// checkpoint age move on). Each publication writes and fsyncs two files (0.4 ms of CPU
    /// on an idle machine, ~5 ms beside a drift replay's other tools; without the folders'
    /// fsyncs since session 18, FileIO.publish's `durable`): every 2 s, it was half of an
    /// idle trainer's CPU (docs/operations.md, "status.json").
    static let heartbeat: Double = 60

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
    /// With `ifChanged`, a document equal to the last one (but for `updated_at`) is skipped
    /// until the heartbeat is due.
    func publish(_ doc: StatusDoc, checkpoint: String?, ifChanged: Bool = false) {
        var key = doc
        key.updatedAt = ""
        let now = Clock.monotonic()
        if ifChanged, let l = last, l.doc == key, now - l.at < StatusReporter.heartbeat { return }
        last = (key, now)
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
