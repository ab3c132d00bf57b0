// `pp-select report` (issue 17): one static HTML page a person reads at a glance, built from
// the state folder (ReportData.swift) with inline SVG charts (SVG.swift): what is deployed and
// how old it is against the freshness SLO, deployed vs newest checkpoint scores with every
// decision marked and why, training per run (loss, throughput, vocabulary and labels, knob
// changes), data per day (accepted, held back, suspect; each check against its threshold),
// and per-label F1 with new and fading labels. No script, no network, no file beside it:
// it opens from disk. Written with FileIO.publish (temp, fsync, rename, fsync folder).
// It is not a server nor a dashboard (docs/grafana/perpetuum.json is, over the metrics).

import ArgumentParser
import Foundation
import Shared
import TextModel

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a static HTML report of the state folder (DIR/index.html) and print its path.",
        discussion: """
        Reads evals/, selections.jsonl, the deployed link, runs/*/ (checkpoint heads, status.json, \
        suspects.json), stats/, quarantine/ and metrics/pp-select.prom; changes nothing in the root \
        (the output folder aside). One self-contained page with inline SVG charts, no scripts, no \
        network; long histories are cut to --bins envelope points per series, so a year of hourly \
        checkpoints stays a few MB. Files that cannot be read are skipped, named on stderr and in \
        the page.

        EXIT STATUS: 0 the report was written, 1 it was written but some files were skipped, 64 usage, \
        66 the root does not exist, 74 the report could not be written.
        """
    )

    @OptionGroup var rootOptions: RootOptions

    @Option(help: ArgumentHelp("Folder to write index.html into (created if missing). Default: ROOT/report.", valueName: "dir"))
    var out: String?

    @Option(name: .customLong("max-age"), help: ArgumentHelp("The freshness SLO shown against the deployed model's age (s, m, h, d, w).", valueName: "duration"))
    var maxAge = "7d"

    @Option(help: "Score to chart per slice: accuracy, top5_accuracy, macro_f1, weighted_f1, log_loss, ece.")
    var metric = "accuracy"

    @Option(help: "Envelope bins per chart series (each bin keeps its lowest and highest point).")
    var bins = 300

    func validate() throws {
        guard Clock.duration(maxAge) != nil else { throw ValidationError("--max-age: not a duration: \(maxAge)") }
        guard SliceMetrics.names.contains(metric) else { throw ValidationError("--metric: expected one of \(SliceMetrics.names.joined(separator: ", "))") }
        guard bins >= 10 && bins <= 100_000 else { throw ValidationError("--bins must be in 10...100000") }
    }

    func run() throws {
        let root = rootOptions.resolved
        guard FileIO.exists(root.path) else {
            Log.fail(tool, "\(root.path): no such state folder")
            throw ExitCode(ExitStatus.noInput.rawValue)
        }
        let dir = out ?? root.path + "/report"
        let path = dir + "/index.html"
        let started = Clock.monotonic()
        let data = try exitingOnFailure(tool, status: { $0.status == .noInput ? .noInput : .ioError }) { () -> ReportData in
            let data = try ReportData.load(root: root, now: Clock.now(), metric: metric)
            let page = ReportPage(data: data, maxAgeSeconds: Clock.duration(maxAge)!, bins: bins).html()
            try FileIO.makeDirectories(dir)
            _ = Temps.sweep([dir], log: Log.make(tool))
            try FileIO.publish(page, to: path)
            Log.make(tool).info("report written", metadata: ["path": "\(path)", "bytes": "\(page.utf8.count)",
                                                              "seconds": "\(SVG.number(Clock.monotonic() - started))"])
            return data
        }
        try emit(path)
        if !data.skipped.isEmpty { throw ExitCode(ExitStatus.partial.rawValue) }
    }
}

/// The page, from the data. Split from the command so tests can build it from made-up data.
struct ReportPage {
    var data: ReportData
    var maxAgeSeconds: Double
    var bins: Int

    static let colors = ["promote": "#2a9d3a", "deploy": "#1f6fd1", "rollback": "#d1301f", "reconcile": "#e08a00", "keep": "#9a9a9a"]
    static let palette = ["#1f6fd1", "#e08a00", "#7a3fc4", "#0f9b8e", "#c4407a", "#6b6b6b"]

    func html() -> String {
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Perpetuum report: \(SVG.escape(data.rootPath))</title>
        <style>
        body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1500px;padding:12px 20px;color:#222;background:#fff}
        h1{font-size:20px;margin:4px 0}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd}h3{font-size:15px;margin:12px 0 4px}
        .grid2{display:flex;flex-wrap:wrap;gap:8px}svg.chart{border:1px solid #eee;background:#fff;max-width:100%;height:auto}
        svg .t{font-size:13px;font-weight:600;fill:#222}svg .ax{font-size:10px;fill:#555}svg .empty{font-size:13px;fill:#999}
        svg .plot{fill:#fcfcfc;stroke:#ddd}svg .grid{stroke:#eee}svg .series{fill:none;stroke-width:1.6}svg .dash{stroke-dasharray:5 3}
        svg .rule{stroke-dasharray:6 3;stroke-width:1.2}svg .mark{stroke-width:1;opacity:.75}
        table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #e3e3e3;padding:2px 7px;text-align:left;vertical-align:top;font-size:13px}
        th{background:#f6f6f6}.ok{color:#2a9d3a;font-weight:600}.bad{color:#d1301f;font-weight:600}.muted{color:#777}
        .key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
        </style></head><body>
        <h1>Perpetuum: \(SVG.escape(data.rootPath))</h1>
        <p class="muted">Written \(Clock.iso(data.now)) by pp-select report. Hover a mark or a bar for its details.</p>

        """
        h += summary()
        h += scores()
        h += age()
        h += decisionsTable()
        h += training()
        h += dataSection()
        h += labels()
        if !data.skipped.isEmpty {
            h += "<h2>Files skipped</h2><ul>" + data.skipped.prefix(100).map { "<li>\(SVG.escape($0))</li>" }.joined()
            if data.skipped.count > 100 { h += "<li>… and \(data.skipped.count - 100) more</li>" }
            h += "</ul>"
        }
        return h + "</body></html>\n"
    }

    // MARK: summary

    func checkpointTime(_ path: String) -> Double? {
        CheckpointName.time(of: FileIO.split(path).name)
    }

    func duration(_ s: Double) -> String {
        if s < 120 { return "\(Int(s.rounded())) s" }
        if s < 7200 { return SVG.number(s / 60) + " min" }
        if s < 3 * 86_400 { return SVG.number(s / 3600) + " h" }
        return SVG.number(s / 86_400) + " days"
    }

    func summary() -> String {
        var rows: [(String, String)] = []
        if let dep = data.deployedPath {
            rows.append(("deployed", SVG.escape(Selector.id(dep))))
            if let c = checkpointTime(dep) {
                let age = data.now - c
                let ok = age <= maxAgeSeconds
                rows.append(("deployed model age", "\(duration(age)) <span class=\"\(ok ? "ok" : "bad")\">\(ok ? "within" : "PAST") the freshness SLO of \(duration(maxAgeSeconds))</span>"))
            }
            if let n = data.newestInput {
                rows.append(("newest input in it", "\(Clock.iso(n)) (\(duration(max(0, data.now - n))) ago)"))
            }
            if let r = data.deployedResult {
                rows.append(("its scores (\(SVG.escape(data.metric)))",
                             ["all", "recent", "old"].compactMap { s in r.slice(s).flatMap { $0.value(data.metric) }.map { "\(s) \(SVG.number($0))" } }.joined(separator: " · ")
                             + " <span class=\"muted\">(eval set \(SVG.escape(String(r.evalset.prefix(16)))), \(r.all.examples) examples)</span>"))
            }
        } else {
            rows.append(("deployed", "<span class=\"bad\">nothing deployed</span>"))
        }
        let real = data.decisions.filter { !$0.dryRun }
        if let last = real.last(where: { $0.decision != "retention" }) {
            rows.append(("last decision", "\(SVG.escape(last.at)) <b>\(SVG.escape(last.decision))</b>: \(SVG.escape(last.reason))"))
        }
        var kinds: [String: Int] = [:]
        for d in real { kinds[d.decision, default: 0] += 1 }
        rows.append(("decisions", kinds.isEmpty ? "none" : kinds.keys.sorted().map { "\($0) \(kinds[$0]!)" }.joined(separator: " · ")))
        var st: [String: Int] = [:]
        for b in data.batches { st[b.status, default: 0] += 1 }
        let suspects = data.runs.reduce(0) { $0 + $1.suspects.count }
        rows.append(("inputs", (st.keys.sorted().map { "\($0) \(st[$0]!)" } + ["suspect shards \(suspects)"]).joined(separator: " · ")))
        rows.append(("checkpoints", data.runs.map { "\(SVG.escape($0.name)) \($0.checkpoints.count) (newest step \($0.checkpoints.last?.step ?? 0))" }.joined(separator: " · ")))
        if !data.skipped.isEmpty { rows.append(("files skipped", "<span class=\"bad\">\(data.skipped.count)</span> (listed at the end)")) }
        return "<table>" + rows.map { "<tr><th>\($0.0)</th><td>\($0.1)</td></tr>" }.joined() + "</table>\n"
    }

    // MARK: scores

    /// Decision marks for the time charts: keeps short and grey, the rest tall with the reason.
    func decisionMarkers() -> [LineChart.Marker] {
        data.decisions.filter { !$0.dryRun && $0.decision != "retention" }.compactMap { d in
            guard let t = Clock.parseISO(d.at) else { return nil }
            let keep = d.decision == "keep"
            var label = "\(d.at) \(d.decision)"
            if let dep = d.deployed, !keep { label += " \(dep)" }
            label += ": " + (d.reason.count > 200 ? String(d.reason.prefix(199)) + "…" : d.reason)
            return LineChart.Marker(x: Double(t), label: label, color: ReportPage.colors[d.decision] ?? "#444", short: keep)
        }
    }

    /// The deployed checkpoint's score on each decision's eval set, as a step line.
    func deployedSeries(slice: String) -> [(x: Double, y: Double)] {
        var byKey: [String: Double] = [:]
        for s in data.scores { if let v = s.values[slice] { byKey[s.path + " " + s.evalset] = v } }
        var pts: [(x: Double, y: Double)] = []
        for d in data.decisions where !d.dryRun && d.decision != "retention" {
            guard let t = Clock.parseISO(d.at), let dep = d.deployedPath ?? d.previousPath, let es = d.evalset,
                  let v = byKey[dep + " " + es] else { continue }
            pts.append((Double(t), v))
        }
        return pts
    }

    func scores() -> String {
        var h = "<h2>Scores: deployed vs newest checkpoint</h2>"
        h += "<p class=\"key muted\">\(data.metric) on the holdout at each checkpoint's first evaluation (newest), and the deployed checkpoint's score on each decision's eval set. Marks:"
        for k in ["promote", "deploy", "rollback", "reconcile", "keep"] { h += "<span style=\"background:\(ReportPage.colors[k]!)\"></span>\(k)" }
        h += " (hover for the reason).</p><div class=\"grid2\">"
        let markers = decisionMarkers()
        let runs = Array(Set(data.scores.map(\.run))).sorted()
        let higher = SliceMetrics.higherIsBetter(data.metric)
        for slice in ["all", "recent", "old"] {
            var chart = LineChart(id: "scores-\(slice)", title: "\(slice): \(data.metric)\(higher ? "" : " (lower is better)")")
            for (i, run) in runs.enumerated() {
                // Each checkpoint's first evaluation: its score when it was the newest.
                var first: [String: ReportData.Score] = [:]
                for s in data.scores where s.run == run && s.values[slice] != nil {
                    if let f = first[s.path], f.evaluated <= s.evaluated { continue }
                    first[s.path] = s
                }
                let pts = first.values.map { (x: $0.created, y: $0.values[slice]!) }
                chart.series.append(.init(name: "newest \(run)", points: Downsample.envelope(pts, bins: bins),
                                          color: ReportPage.palette[(i + 1) % ReportPage.palette.count]))
            }
            chart.series.append(.init(name: "deployed", points: Downsample.envelope(deployedSeries(slice: slice), bins: bins),
                                      color: "#2a9d3a", style: .step))
            chart.markers = markers
            if ["accuracy", "top5_accuracy", "macro_f1", "weighted_f1"].contains(data.metric) { chart.yDomain = (0, 1) }
            h += chart.render()
        }
        return h + "</div>\n"
    }

    // MARK: age

    func age() -> String {
        // At each decision: the age of what was deployed just before it and just after it;
        // between decisions the age grows linearly; the last point is now.
        var pts: [(x: Double, y: Double)] = []
        var current: Double? = nil   // creation time of the deployed checkpoint
        for d in data.decisions where !d.dryRun && d.decision != "retention" {
            guard let t = Clock.parseISO(d.at).map(Double.init) else { continue }
            if let c = current { pts.append((t, t - c)) }
            if let p = d.deployedPath ?? d.previousPath, let c = checkpointTime(p) {
                current = c
                pts.append((t, t - c))
            }
        }
        if let dep = data.deployedPath, let c = checkpointTime(dep) { pts.append((data.now, data.now - c)) }
        let maxY = max(pts.map(\.y).max() ?? 0, maxAgeSeconds)
        let (unit, div): (String, Double) = maxY < 2 * 3600 ? ("minutes", 60) : maxY < 3 * 86_400 ? ("hours", 3600) : ("days", 86_400)
        var chart = LineChart(id: "deployed-age", title: "Deployed model age (\(unit)) and the freshness SLO")
        chart.yLabel = unit
        chart.series = [.init(name: "age", points: Downsample.envelope(pts.map { ($0.x, $0.y / div) }, bins: bins), color: "#1f6fd1")]
        chart.rules = [.init(y: maxAgeSeconds / div, label: "SLO max-age \(duration(maxAgeSeconds))", color: "#d1301f")]
        chart.markers = decisionMarkers().filter { !$0.short }
        return "<h2>Freshness</h2>" + chart.render() + "\n"
    }

    func decisionsTable() -> String {
        let real = data.decisions.filter { !$0.dryRun }
        var h = "<h3>Last decisions</h3>"
        guard !real.isEmpty else { return h + "<p class=\"muted\">No decision yet (selections.jsonl).</p>" }
        h += "<table><tr><th>at</th><th>decision</th><th>deployed after</th><th>gain</th><th>why</th></tr>"
        for d in real.suffix(20).reversed() {
            let color = ReportPage.colors[d.decision].map { " style=\"color:\($0)\"" } ?? ""
            h += "<tr><td>\(SVG.escape(d.at))</td><td\(color)><b>\(SVG.escape(d.decision))</b></td><td>\(SVG.escape(d.deployed ?? "-"))</td>"
            h += "<td>\(d.gain.map { SVG.number($0) } ?? "")</td><td>\(SVG.escape(d.reason))</td></tr>"
        }
        return h + "</table>" + (real.count > 20 ? "<p class=\"muted\">\(real.count - 20) earlier decisions in selections.jsonl.</p>" : "") + "\n"
    }

    // MARK: training

    func training() -> String {
        var h = "<h2>Training</h2>"
        if data.runs.isEmpty { return h + "<p class=\"muted\">No run in runs/.</p>" }
        for run in data.runs {
            let id = run.name.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) ? String($0) : "_" }.joined()
            h += "<h3>Run \(SVG.escape(run.name))</h3>"
            if !run.status.isEmpty {
                h += "<table><tr>" + run.status.map { "<th>\(SVG.escape($0.0))</th>" }.joined() + "</tr><tr>"
                h += run.status.map { "<td>\(SVG.escape($0.1))</td>" }.joined() + "</tr></table>"
            }
            let knobMarks = run.knobs.map { k in
                LineChart.Marker(x: k.time, label: "\(Clock.iso(k.time)) step \(k.step): \(k.knob) \(k.old) -> \(k.new)", color: "#7a3fc4")
            }
            h += "<div class=\"grid2\">"
            var loss = LineChart(id: "train-loss-\(id)", title: "New-shard training loss (pp-train guard), knob changes marked")
            loss.series = [.init(name: "loss", points: Downsample.envelope(run.shardLoss.map { ($0.time, $0.loss) }, bins: bins), color: "#c4407a", style: .dots)]
            loss.markers = knobMarks
            h += loss.render()
            var tp = LineChart(id: "train-throughput-\(id)", title: "Throughput between checkpoints (examples/s)")
            var rate: [(x: Double, y: Double)] = []
            for (a, b) in zip(run.checkpoints, run.checkpoints.dropFirst()) where b.time > a.time && b.step >= a.step {
                rate.append((b.time, Double(b.step - a.step) / (b.time - a.time)))
            }
            tp.series = [.init(name: "examples/s", points: Downsample.envelope(rate, bins: bins), color: "#0f9b8e")]
            tp.markers = knobMarks
            h += tp.render()
            var vocab = LineChart(id: "train-vocabulary-\(id)", title: "Vocabulary size")
            vocab.series = [.init(name: "words", points: Downsample.envelope(run.checkpoints.map { ($0.time, Double($0.vocabulary)) }, bins: bins), color: "#1f6fd1")]
            h += vocab.render()
            var labels = LineChart(id: "train-labels-\(id)", title: "Labels known")
            labels.series = [.init(name: "labels", points: Downsample.envelope(run.checkpoints.map { ($0.time, Double($0.labels)) }, bins: bins), color: "#e08a00", style: .step)]
            h += labels.render()
            var knobs = LineChart(id: "train-knobs-\(id)", title: "Knobs: lr and dropout in each checkpoint")
            knobs.series = [.init(name: "lr", points: Downsample.envelope(run.checkpoints.map { ($0.time, $0.lr) }, bins: bins), color: "#7a3fc4", style: .step),
                            .init(name: "dropout", points: Downsample.envelope(run.checkpoints.map { ($0.time, $0.dropout) }, bins: bins), color: "#6b6b6b", style: .step, dashed: true)]
            knobs.markers = knobMarks
            h += knobs.render() + "</div>"
            if !run.knobs.isEmpty {
                h += "<table><tr><th>at</th><th>step</th><th>knob</th><th>change</th></tr>"
                for k in run.knobs.suffix(20) { h += "<tr><td>\(Clock.iso(k.time))</td><td>\(k.step)</td><td>\(SVG.escape(k.knob))</td><td>\(SVG.escape(k.old)) → \(SVG.escape(k.new))</td></tr>" }
                h += "</table>"
            }
        }
        return h + "\n"
    }

    // MARK: data

    func dataSection() -> String {
        var h = "<h2>Data</h2>"
        var events: [(t: Double, kind: Int, note: String)] = []  // 0 accepted, 1 held back, 2 suspect
        for b in data.batches {
            let held = b.status == "quarantined" || b.status == "rejected"
            events.append((b.time, held ? 1 : 0, held ? "\(b.name): \(b.reason ?? b.status)" : ""))
        }
        for r in data.runs { for s in r.suspects { events.append((Clock.parseISO(s.at).map(Double.init) ?? .nan, 2, "\(s.name) (run \(r.name)): \(s.reason)")) } }
        events = events.filter { $0.t.isFinite }
        if let lo = events.map(\.t).min(), let hi = events.map(\.t).max() {
            let b = TimeBuckets(lo: lo, hi: hi)
            var values = [[Double]](repeating: [Double](repeating: 0, count: b.count), count: 3)
            var notes = [[String]](repeating: [], count: b.count)
            for e in events {
                guard let i = b.index(e.t) else { continue }
                values[e.kind][i] += 1
                if !e.note.isEmpty && notes[i].count < 5 { notes[i].append(e.note.count > 160 ? String(e.note.prefix(159)) + "…" : e.note) }
            }
            let chart = BarChart(id: "data-batches", title: "Inputs per \(b.name): accepted, held back (quarantined or rejected), suspect shards",
                                 buckets: b.starts, bucketLabel: b.name,
                                 categories: [.init(name: "accepted", color: "#2a9d3a"), .init(name: "held back", color: "#d1301f"), .init(name: "suspect", color: "#e08a00")],
                                 values: values, notes: notes.map { $0.joined(separator: "\n") })
            h += chart.render()
        } else {
            h += BarChart(id: "data-batches", title: "Inputs", buckets: [], bucketLabel: "day", categories: [], values: []).render()
        }
        let held = data.batches.filter { $0.status == "quarantined" || $0.status == "rejected" }
        let suspects = data.runs.flatMap { r in r.suspects.map { (r.name, $0) } }
        if !held.isEmpty || !suspects.isEmpty {
            h += "<h3>Held back</h3><table><tr><th>at</th><th>input or shard</th><th>status</th><th>why</th></tr>"
            for b in held.suffix(30).reversed() { h += "<tr><td>\(Clock.iso(b.time))</td><td>\(SVG.escape(b.name))</td><td>\(SVG.escape(b.status))</td><td>\(SVG.escape(b.reason ?? ""))</td></tr>" }
            for (r, s) in suspects.suffix(30).reversed() { h += "<tr><td>\(SVG.escape(s.at))</td><td>\(SVG.escape(s.name))</td><td>suspect (run \(SVG.escape(r)))</td><td>\(SVG.escape(s.reason))</td></tr>" }
            h += "</table>"
        }
        // Each check's value against its threshold, per input.
        var names = Set<String>()
        for b in data.batches { for (n, c) in b.checks where c.value != nil { names.insert(n) } }
        h += "<h3>Batch checks: value vs threshold</h3>"
        if names.isEmpty { return h + "<p class=\"muted\">No check has a value yet (stats/, quarantine/).</p>\n" }
        h += "<div class=\"grid2\">"
        for n in names.sorted() {
            var v: [(x: Double, y: Double)] = [], t: [(x: Double, y: Double)] = [], tripped: [(x: Double, y: Double)] = []
            for b in data.batches {
                guard let c = b.checks[n] else { continue }
                if let x = c.value { v.append((b.time, x)); if c.tripped { tripped.append((b.time, x)) } }
                if let x = c.threshold { t.append((b.time, x)) }
            }
            var chart = LineChart(id: "check-\(n)", title: "check \(n)", width: 476, height: 190)
            chart.series = [.init(name: "value", points: Downsample.envelope(v, bins: bins), color: "#1f6fd1"),
                            .init(name: "threshold", points: Downsample.envelope(t, bins: bins), color: "#d1301f", dashed: true)]
            if !tripped.isEmpty { chart.series.append(.init(name: "tripped", points: Downsample.envelope(tripped, bins: bins), color: "#d1301f", style: .dots)) }
            h += chart.render()
        }
        let silent = Set(data.batches.flatMap { $0.checks.keys }).subtracting(names)
        h += "</div>"
        if !silent.isEmpty { h += "<p class=\"muted\">Never measured (skipped on every input): \(SVG.escape(silent.sorted().joined(separator: ", "))).</p>" }
        return h + "\n"
    }

    // MARK: labels

    /// Labels first seen in the newest quarter of accepted inputs (new), and labels seen
    /// before it but not in it (fading), from the stats/ sidecars' label counts.
    static func newAndFading(_ batches: [ReportData.Batch]) -> (new: [(String, Double)], fading: [(String, Double)]) {
        let acc = batches.filter { !$0.labelCounts.isEmpty }
        guard acc.count >= 4 else { return ([], []) }
        let cut = acc.count - max(1, acc.count / 4)
        var first: [String: Double] = [:], last: [String: Double] = [:]
        var recent = Set<String>()
        for (i, b) in acc.enumerated() {
            for (l, n) in b.labelCounts where n > 0 {
                if first[l] == nil { first[l] = b.time }
                last[l] = b.time
                if i >= cut { recent.insert(l) }
            }
        }
        let boundary = acc[cut].time
        let new = first.filter { $0.value >= boundary }.map { ($0.key, $0.value) }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }
        let fading = last.filter { !recent.contains($0.key) }.map { ($0.key, $0.value) }.sorted { ($0.1, $0.0) > ($1.1, $1.0) }
        return (new, fading)
    }

    func labels() -> String {
        var h = "<h2>Labels</h2>"
        if let r = data.deployedResult {
            let sorted = r.all.labels.sorted { ($1.value.support, $0.key) < ($0.value.support, $1.key) }
            let shown = sorted.prefix(60)
            let items = shown.map { (l, m) in
                HBarChart.Item(label: l, value: m.f1, note: "F1 \(SVG.number(m.f1)), precision \(SVG.number(m.precision)), recall \(SVG.number(m.recall)), support \(m.support)",
                               color: m.f1 >= 0.5 ? "#1f6fd1" : "#d1301f")
            }
            h += HBarChart(id: "label-f1", title: "Per-label F1 of the deployed model (\(Selector.id(data.deployedPath ?? r.path))), by support", items: Array(items)).render()
            if sorted.count > shown.count { h += "<p class=\"muted\">\(sorted.count - shown.count) labels with less support not shown.</p>" }
        } else {
            h += HBarChart(id: "label-f1", title: "Per-label F1 of the deployed model", items: []).render()
        }
        let (new, fading) = ReportPage.newAndFading(data.batches)
        h += "<h3>New and fading labels</h3><table><tr><th>new (first seen in the newest quarter of inputs)</th><th>fading (not seen in it)</th></tr><tr><td>"
        h += new.isEmpty ? "none" : new.prefix(40).map { "\(SVG.escape($0.0)) <span class=\"muted\">\(Clock.iso($0.1).prefix(10))</span>" }.joined(separator: "<br>")
        h += "</td><td>"
        h += fading.isEmpty ? "none" : fading.prefix(40).map { "\(SVG.escape($0.0)) <span class=\"muted\">last \(Clock.iso($0.1).prefix(10))</span>" }.joined(separator: "<br>")
        return h + "</td></tr></table>\n"
    }
}
