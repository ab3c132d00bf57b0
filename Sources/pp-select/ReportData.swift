// What `pp-select report` reads from a state folder (issue 17), as plain numbers: every eval
// result (evals/*.json), every decision (selections.jsonl), each run's checkpoint heads
// (runs/RUN/checkpoints, runs/RUN/heads), status.json and suspects.json, pp-ingest's batch
// sidecars (stats/*.json) and reason files (quarantine/**.reason.json), and the freshness
// gauge of metrics/pp-select.prom. Read only, no lock: every file it reads appears whole
// (contract rule 1). A file that cannot be read or parsed is skipped and named in `skipped`
// (the report shows it, the command exits 1); nothing here writes.
// It is not the page (Report.swift) nor the charts (SVG.swift).

import Foundation
import Shared
import TextModel

struct ReportData {
    /// One eval result, reduced to what the charts use.
    struct Score {
        var checkpoint: String
        var path: String
        var run: String
        var step: Int
        var created: Double
        var evaluated: Double
        var evalset: String
        /// slice ("all", "recent", "old") -> metric value
        var values: [String: Double]
    }
    struct Checkpoint {
        var run: String
        var file: String
        var time: Double
        var step: Int
        var tokens: Int
        var vocabulary: Int
        var labels: Int
        var lr: Double
        var dropout: Double
    }
    struct KnobEvent {
        var time: Double
        var step: Int
        var knob: String
        var old: String
        var new: String
    }
    struct Run {
        var name: String
        var checkpoints: [Checkpoint] = []
        /// pp-train's guard: the mean training loss of each new shard's first pass, at the
        /// time of the first checkpoint that recorded it.
        var shardLoss: [(time: Double, loss: Double, shard: String)] = []
        var knobs: [KnobEvent] = []
        var suspects: [SuspectShard] = []
        /// status.json, as found (strings for display).
        var status: [(String, String)] = []
    }
    struct CheckValue {
        var value: Double?
        var threshold: Double?
        var tripped: Bool
    }
    /// One input pp-ingest measured: accepted (stats/ sidecar) or held back (reason file).
    struct Batch {
        var name: String
        var time: Double
        var status: String
        var examples: Int
        var reason: String?
        var checks: [String: CheckValue]
        var labelCounts: [String: Int]
    }

    var rootPath: String
    var now: Double
    var metric: String
    var scores: [Score] = []
    var decisions: [DecisionRecord] = []
    var deployedPath: String?
    /// The deployed checkpoint's newest eval result (per-label F1).
    var deployedResult: EvalResult?
    var runs: [Run] = []
    var batches: [Batch] = []
    /// metrics/pp-select.prom's perpetuum_deployed_newest_input_timestamp_seconds.
    var newestInput: Double?
    /// Files that could not be read, with why.
    var skipped: [String] = []

    init(rootPath: String, now: Double, metric: String) {
        self.rootPath = rootPath; self.now = now; self.metric = metric
    }

    /// Reads everything the report shows from `root`.
    static func load(root: Root, now: Double, metric: String) throws -> ReportData {
        var d = ReportData(rootPath: root.path, now: now, metric: metric)
        d.loadEvals(root)
        // Lines that do not parse are skipped by History with a warning naming them.
        do { d.decisions = try History.read(root.selections, full: true) } catch let e as PPError { d.skip(root.selections, e.message) } catch {
            d.skip(root.selections, "\(error)")
        }
        if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: root.deployed) { d.deployedPath = link }
        d.loadDeployedResult(root)
        for run in ((try? FileIO.list(root.runs)) ?? []).sorted() where !run.hasPrefix(".") {
            d.runs.append(d.loadRun(root, run))
        }
        d.loadBatches(root)
        if let text = try? FileIO.readAll(root.metrics + "/pp-select.prom") {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n")
            where line.hasPrefix("perpetuum_deployed_newest_input_timestamp_seconds ") {
                d.newestInput = Double(line.split(separator: " ").last ?? "")
            }
        }
        return d
    }

    mutating func skip(_ path: String, _ why: String) {
        skipped.append("\(path): \(why)")
        Log.make("pp-select").warning("report: skipped \(path): \(why)")
    }

    private mutating func loadEvals(_ root: Root) {
        let name = EvalResult.splitMetric(metric).name
        for f in ((try? FileIO.list(root.evals)) ?? []).sorted() where f.hasSuffix(".json") && !f.hasPrefix(".") {
            let path = root.evals + "/" + f
            do {
                let r = try EvalResult.load(path: path)
                var v: [String: Double] = [:]
                for s in ["all", "recent", "old"] { if let sl = r.slice(s), sl.examples > 0, let x = sl.value(name) { v[s] = x } }
                scores.append(Score(checkpoint: r.checkpoint, path: r.path, run: r.run, step: r.step,
                                    created: Clock.parseISO(r.checkpointCreatedAt).map(Double.init) ?? CheckpointName.time(of: r.checkpoint) ?? .nan,
                                    evaluated: Clock.parseISO(r.evaluatedAt).map(Double.init) ?? .nan, evalset: r.evalset, values: v))
            } catch let e as PPError { skip(path, e.message) } catch { skip(path, "\(error)") }
        }
    }

    private mutating func loadDeployedResult(_ root: Root) {
        guard let dep = deployedPath else { return }
        // The newest evaluation of the deployed checkpoint (on the newest eval set it met).
        let mine = scores.filter { $0.path == dep }.max { ($0.evaluated, $0.evalset) < ($1.evaluated, $1.evalset) }
        guard let m = mine else { return }
        let base = EvalNames.base(checkpointFile: FileIO.split(dep).name, run: m.run, evalset: m.evalset)
        deployedResult = try? EvalResult.load(path: root.evals + "/" + base + ".json")
    }

    private mutating func loadRun(_ root: Root, _ name: String) -> Run {
        var run = Run(name: name)
        var files: [(String, String)] = []
        for f in (try? root.checkpointFiles(run: name)) ?? [] {
            files.append((f, root.checkpoints(run: name) + "/" + f))
        }
        let have = Set(files.map(\.0))
        for f in (try? FileIO.list(root.heads(run: name))) ?? [] where f.hasSuffix(TextModel.Checkpoint.headSuffix) && !f.hasPrefix(".") {
            let ck = String(f.dropLast(TextModel.Checkpoint.headSuffix.count))
            if !have.contains(ck) { files.append((ck, root.heads(run: name) + "/" + f)) }
        }
        var seenShard = Set<String>(), seenKnob = Set<String>()
        for (file, path) in files.sorted(by: { $0.0 < $1.0 }) {
            let meta: CheckpointMeta
            do { meta = try TextModel.Checkpoint.readHead(path: path).meta } catch let e as PPError { skip(path, e.message); continue } catch {
                skip(path, "\(error)"); continue
            }
            let t = Clock.parseISO(meta.createdAt).map(Double.init) ?? CheckpointName.time(of: file) ?? .nan
            run.checkpoints.append(Checkpoint(run: name, file: file, time: t, step: meta.step, tokens: meta.tokens,
                                              vocabulary: meta.vocabularySize, labels: meta.labels.count,
                                              lr: meta.knobs.lr, dropout: meta.knobs.dropout))
            for e in meta.guardState?.recent ?? [] where seenShard.insert(e.shard).inserted {
                run.shardLoss.append((t, e.loss, e.shard))
            }
            for k in meta.knobChanges where seenKnob.insert("\(k.step) \(k.knob) \(k.new) \(k.at)").inserted {
                run.knobs.append(KnobEvent(time: Clock.parseISO(k.at).map(Double.init) ?? t, step: k.step, knob: k.knob, old: k.old, new: k.new))
            }
        }
        run.checkpoints.sort { ($0.time, $0.step) < ($1.time, $1.step) }
        run.shardLoss.sort { $0.time < $1.time }
        run.knobs.sort { $0.time < $1.time }
        let suspects = SuspectList.path(root: root, run: name)
        if FileIO.exists(suspects) {
            do { run.suspects = try SuspectList.load(root: root, run: name).shards } catch let e as PPError { skip(suspects, e.message) } catch {
                skip(suspects, "\(error)")
            }
        }
        let status = root.status(run: name)
        if FileIO.exists(status) {
            if let b = try? FileIO.readAll(status), let o = try? JSONSerialization.jsonObject(with: Data(b)) as? [String: Any] {
                for k in ["state", "step", "examples_per_s", "loss", "knobs", "vocabulary_size", "labels", "shards",
                          "pending_shards", "suspects", "guard_trips", "updated_at"] {
                    guard let v = o[k] else { continue }
                    run.status.append((k, ReportData.show(v)))
                }
            } else { skip(status, "not a JSON object") }
        }
        return run
    }

    /// A JSON value for a table cell.
    static func show(_ v: Any) -> String {
        switch v {
        case let d as [String: Any]: return d.keys.sorted().map { "\($0)=\(show(d[$0]!))" }.joined(separator: " ")
        case let n as NSNumber:
            if String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }  // a JSON true/false
            let x = n.doubleValue
            return x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : SVG.number(x)
        case let s as String: return s
        default: return "\(v)"
        }
    }

    private mutating func loadBatches(_ root: Root) {
        let stats = root.path + "/stats"
        for f in ((try? FileIO.list(stats)) ?? []).sorted() where f.hasSuffix(".json") && !f.hasPrefix(".")
            && f != "labels.json" && f != "counters.json" {
            if let b = batch(stats + "/" + f, sidecar: true) { batches.append(b) }
        }
        // Reason files: inputs refused or quarantined at ingest, and shards quarantined later.
        for f in ((try? FileIO.list(root.quarantine)) ?? []).sorted() where f.hasSuffix(".reason.json") && !f.hasPrefix(".") {
            if let b = batch(root.quarantine + "/" + f, sidecar: false) { batches.append(b) }
        }
        batches.sort { ($0.time, $0.name) < ($1.time, $1.name) }
    }

    /// A sidecar (checks as a list) or a reason file (checks as an object) as a Batch.
    private mutating func batch(_ path: String, sidecar: Bool) -> Batch? {
        guard let bytes = try? FileIO.readAll(path, regularOnly: true) else { skip(path, "unreadable"); return nil }
        guard bytes.count <= 16 << 20 else { skip(path, "larger than 16 MiB"); return nil }
        guard let o = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
            skip(path, "not a JSON object"); return nil
        }
        func num(_ v: Any?) -> Double? { (v as? NSNumber).map(\.doubleValue) }
        let timeKey = ["ingested_at", "quarantined_at", "rejected_at"].first { o[$0] is String }
        guard let tk = timeKey, let t = Clock.parseISO(o[tk] as! String) else { skip(path, "no time (ingested_at, quarantined_at or rejected_at)"); return nil }
        var checks: [String: CheckValue] = [:]
        if let list = o["checks"] as? [[String: Any]] {
            for c in list {
                guard let n = c["check"] as? String else { continue }
                checks[n] = CheckValue(value: num(c["value"]), threshold: num(c["threshold"]), tripped: (c["tripped"] as? Bool) ?? false)
            }
        } else if let dict = o["checks"] as? [String: Any] {
            for (n, v) in dict {
                guard let c = v as? [String: Any] else { continue }
                checks[n] = CheckValue(value: num(c["value"]), threshold: num(c["threshold"]), tripped: (c["tripped"] as? Bool) ?? false)
            }
        }
        var labels: [String: Int] = [:]
        for (k, v) in (o["label_counts"] as? [String: Any]) ?? [:] { if let n = num(v) { labels[k] = Int(n) } }
        let name = (o["source_name"] as? String) ?? (o["file"] as? String) ?? FileIO.split(path).name
        let status = (o["status"] as? String) ?? (sidecar ? "accepted" : "quarantined")
        return Batch(name: name, time: Double(t), status: status, examples: Int(num(o["examples"]) ?? 0),
                     reason: o["reason"] as? String, checks: checks, labelCounts: labels)
    }
}
