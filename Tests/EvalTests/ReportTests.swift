import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training
@testable import pp_select

/// pp-select report (issue 17): the SVG writer (escaping, scales, empty data, one point), the
/// downsampling that keeps a year of hourly checkpoints small, time buckets, new and fading
/// labels, and the size of the page for a made-up year.
final class ReportTests: XCTestCase {
    // MARK: SVG writer

    func testEscapeMarkupQuotesAndControlCharacters() {
        XCTAssertEqual(SVG.escape("a<b>&\"c\"'d'"), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;")
        XCTAssertEqual(SVG.escape("x\u{01}y\u{7F}z\u{85}"), "x\u{FFFD}y\u{FFFD}z\u{FFFD}")
        XCTAssertEqual(SVG.escape("tab\tnl\n"), "tab\tnl\n")
        XCTAssertEqual(SVG.escape("ünï 🙂"), "ünï 🙂")
        // A hostile label cannot close the element or open a script.
        let chart = LineChart(id: "x\"><script>", title: "</svg><script>alert(1)</script>",
                              series: [.init(name: "<b>", points: [(0, 1), (1, 2)], color: "red\" onload=\"x")])
        let svg = chart.render()
        XCTAssertFalse(svg.contains("<script"), svg)
        XCTAssertFalse(svg.contains("onload=\"x"), svg)
        XCTAssertTrue(svg.contains("&lt;/svg&gt;&lt;script&gt;"))
    }

    func testPixelAndNumberFormatting() {
        XCTAssertEqual(SVG.px(12.34), "12.3")
        XCTAssertEqual(SVG.px(12.0), "12")
        XCTAssertEqual(SVG.px(-0.01), "0")
        XCTAssertEqual(SVG.px(.nan), "0")
        XCTAssertEqual(SVG.number(0.12345), "0.123")
        XCTAssertEqual(SVG.number(1234), "1234")
        XCTAssertEqual(SVG.number(52_000), "52k")
        XCTAssertEqual(SVG.number(2_500_000), "2.5M")
        XCTAssertEqual(SVG.number(0), "0")
        XCTAssertEqual(SVG.number(.infinity), "-")
    }

    func testScaleMapsTheDomainAndWidensADegenerateOne() {
        let s = Scale(domain: (0, 10), range: (100, 200))
        XCTAssertEqual(s(0), 100); XCTAssertEqual(s(10), 200); XCTAssertEqual(s(5), 150)
        // Inverted range (y axes grow upwards).
        let y = Scale(domain: (0, 1), range: (200, 0))
        XCTAssertEqual(y(1), 0); XCTAssertEqual(y(0.25), 150)
        // One value: it lands in the middle, no division by zero.
        let one = Scale(domain: (5, 5), range: (0, 100))
        XCTAssertEqual(one(5), 50, accuracy: 1e-9)
        let zero = Scale(domain: (0, 0), range: (0, 100))
        XCTAssertEqual(zero(0), 50, accuracy: 1e-9)
        let nan = Scale(domain: (.nan, 3), range: (0, 100))
        XCTAssertTrue(nan(0.5).isFinite)
        XCTAssertEqual(Scale(domain: (0, 1), range: (0, 1)).ticks(5), [0, 0.2, 0.4, 0.6, 0.8, 1])
        XCTAssertEqual(Scale(domain: (3, 97), range: (0, 1)).niced().lo, 0)
        XCTAssertEqual(Scale(domain: (3, 97), range: (0, 1)).niced().hi, 100)
    }

    func testEmptyChartSaysNoData() {
        let svg = LineChart(id: "e", title: "empty").render()
        XCTAssertTrue(svg.contains("data-points=\"0\""))
        XCTAssertTrue(svg.contains(">no data<"))
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>"))
        let bars = BarChart(id: "b", title: "t", buckets: [0, 60], bucketLabel: "minute", categories: [.init(name: "a", color: "#000")], values: [[0, 0]]).render()
        XCTAssertTrue(bars.contains("data-points=\"0\"") && bars.contains("no data"))
        XCTAssertTrue(HBarChart(id: "h", title: "t", items: []).render().contains("data-points=\"0\""))
        // Non-finite points are not data.
        let nanOnly = LineChart(id: "n", title: "t", series: [.init(name: "s", points: [(.nan, 1), (1, .infinity)], color: "#000")]).render()
        XCTAssertTrue(nanOnly.contains("data-points=\"0\""), nanOnly)
    }

    func testOnePointIsDrawnAsADotInTheMiddle() {
        let svg = LineChart(id: "o", title: "one", series: [.init(name: "s", points: [(1_700_000_000, 0.5)], color: "#000")], width: 200, height: 100).render()
        XCTAssertTrue(svg.contains("data-points=\"1\""))
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 1)
        XCTAssertFalse(svg.contains("NaN") || svg.contains("inf"), svg)
        // Plot is x 56..188, y 26..60: the point sits in its middle.
        XCTAssertTrue(svg.contains("cx=\"122\""), svg)
    }

    func testLineSeriesPathHasOneVertexPerPoint() {
        let pts = (0..<50).map { (x: Double($0), y: Double($0 % 7)) }
        let svg = LineChart(id: "l", title: "l", xIsTime: false, series: [.init(name: "s", points: pts, color: "#000")]).render()
        XCTAssertTrue(svg.contains("data-points=\"50\""))
        guard let d = svg.range(of: "<path d=\"") else { return XCTFail(svg) }
        let path = svg[d.upperBound...].prefix { $0 != "\"" }
        XCTAssertEqual(path.filter { $0 == "M" || $0 == "L" }.count, 50)
        // Markers on the same pixel and colour are drawn once.
        var c = LineChart(id: "m", title: "m", xIsTime: false, series: [.init(name: "s", points: pts, color: "#000")])
        c.markers = (0..<100).map { _ in .init(x: 10, label: "same", color: "#f00") } + [.init(x: 20, label: "other", color: "#f00")]
        let marked = c.render()
        XCTAssertEqual(marked.components(separatedBy: "class=\"mark\"").count - 1, 2)
        // Their labels are kept (5, then a count).
        XCTAssertTrue(marked.contains("<title>same\nsame\nsame\nsame\nsame\n… and 95 more</title>"), marked)
    }

    func testBarChartStacksAndCountsBuckets() {
        let svg = BarChart(id: "b", title: "t", buckets: [0, 86_400, 172_800], bucketLabel: "day",
                           categories: [.init(name: "ok", color: "#0f0"), .init(name: "bad", color: "#f00")],
                           values: [[3, 0, 1], [1, 0, 0]], notes: ["x<y", "", ""]).render()
        XCTAssertTrue(svg.contains("data-points=\"2\""), svg)   // the empty day is not a point
        XCTAssertEqual(svg.components(separatedBy: "<rect x=").count - 1, 1 + 3 + 2)  // plot, 3 segments, 2 legend keys
        XCTAssertTrue(svg.contains("x&lt;y"))
    }

    // MARK: aggregation

    func testEnvelopeKeepsExtremesAndBoundsTheCount() {
        var pts: [(x: Double, y: Double)] = (0..<8760).map { (Double($0) * 3600, 0.5 + 0.01 * sin(Double($0))) }
        pts[4321].y = 0.05   // one bad checkpoint
        pts[777].y = 0.99
        let e = Downsample.envelope(pts.shuffled(), bins: 300)
        XCTAssertLessThanOrEqual(e.count, 602)
        XCTAssertGreaterThan(e.count, 300)
        XCTAssertTrue(e.contains { $0.y == 0.05 && $0.x == 4321 * 3600 })
        XCTAssertTrue(e.contains { $0.y == 0.99 })
        XCTAssertEqual(e.first?.x, 0)
        XCTAssertEqual(e.last?.x, 8759 * 3600)
        XCTAssertEqual(e.map(\.x), e.map(\.x).sorted())
        // Short series are kept whole; nothing, one point, non-finite.
        XCTAssertEqual(Downsample.envelope([(1, 2), (0, 1)], bins: 300).map(\.x), [0, 1])
        XCTAssertTrue(Downsample.envelope([], bins: 10).isEmpty)
        XCTAssertEqual(Downsample.envelope([(.nan, 1), (1, 1)], bins: 10).count, 1)
        // All at one x: first and last.
        XCTAssertEqual(Downsample.envelope((0..<100).map { (5, Double($0)) }, bins: 10).count, 2)
    }

    func testTimeBucketsFollowTheSpan() {
        let minutes = TimeBuckets(lo: 1_000_000, hi: 1_000_000 + 600)
        XCTAssertEqual(minutes.name, "minute")
        XCTAssertEqual(minutes.index(1_000_000 + 600), minutes.count - 1)
        let year = TimeBuckets(lo: 0, hi: 365 * 86_400)
        XCTAssertEqual(year.name, "week")
        XCTAssertLessThanOrEqual(year.count, 60)
        let days = TimeBuckets(lo: 0, hi: 45 * 86_400)
        XCTAssertEqual(days.name, "day")
        XCTAssertEqual(days.index(-1), nil)
        XCTAssertEqual(days.index(86_400 * 1.5), 1)
        XCTAssertEqual(TimeBuckets(lo: 5, hi: 5).count, 1)
    }

    func testNewAndFadingLabels() {
        func b(_ t: Double, _ labels: [String]) -> ReportData.Batch {
            .init(name: "b\(t)", time: t, status: "accepted", examples: 1, reason: nil, checks: [:],
                  labelCounts: Dictionary(uniqueKeysWithValues: labels.map { ($0, 1) }))
        }
        let batches = [b(0, ["a", "old"]), b(1, ["a", "old"]), b(2, ["a"]), b(3, ["a", "mid"]), b(4, ["a", "mid"]),
                       b(5, ["a"]), b(6, ["a", "new"]), b(7, ["a", "new"])]
        let (new, fading) = ReportPage.newAndFading(batches)
        XCTAssertEqual(new.map(\.0), ["new"])
        XCTAssertEqual(fading.map(\.0), ["mid", "old"])
        XCTAssertTrue(ReportPage.newAndFading(Array(batches.prefix(3))).new.isEmpty)
    }

    // MARK: a year

    /// A made-up year of hourly checkpoints, twice-daily decisions and hourly inputs with every
    /// check: the page stays under 3 MB and every chart has points.
    func testAYearOfHourlyCheckpointsStaysSmall() throws {
        let t0 = 1_767_225_600.0  // 2026-01-01
        let hours = 8760
        var d = ReportData(rootPath: "/var/lib/perpetuum", now: t0 + Double(hours) * 3600, metric: "accuracy")
        var run = ReportData.Run(name: "main")
        for h in 0..<hours {
            let t = t0 + Double(h) * 3600
            let file = "ckpt-\(Clock.stamp(t))-\(String(format: "%012d", h * 1000)).ppc"
            let path = "runs/main/checkpoints/" + file
            let acc = 0.6 + 0.2 * Double(h) / Double(hours) + 0.02 * sin(Double(h))
            d.scores.append(.init(checkpoint: "main/" + file, path: path, run: "main", step: h * 1000, created: t, evaluated: t + 60,
                                  evalset: String(format: "%064x", h / 12), values: ["all": acc, "recent": acc - 0.05, "old": acc + 0.03]))
            run.checkpoints.append(.init(run: "main", file: file, time: t, step: h * 1000, tokens: h * 90_000, vocabulary: 1000 + h * 10,
                                         labels: 20 + h / 200, lr: h < 4000 ? 0.2 : 0.1, dropout: h < 4000 ? 0 : 0.1))
            run.shardLoss.append((t, 1.5 - Double(h) / Double(hours), "s\(h)"))
            var checks: [String: ReportData.CheckValue] = [:]
            for c in ["label_linf", "label_js", "new_labels", "oov", "length_js", "duplicates", "garbage", "mojibake",
                      "canary", "label_signal", "label_chance", "label_flood", "truncated"] {
                checks[c] = .init(value: 0.1 + 0.05 * sin(Double(h) / 7), threshold: 0.3, tripped: h % 500 == 0)
            }
            d.batches.append(.init(name: "in-\(h).jsonl", time: t, status: h % 500 == 0 ? "quarantined" : "accepted", examples: 300,
                                   reason: h % 500 == 0 ? "check canary: value 3 exceeds threshold 2" : nil, checks: checks,
                                   labelCounts: ["l\(h / 200)": 100, "common": 200]))
            if h % 12 == 6 {
                let dep = h % 24 == 6 ? path : d.decisions.last?.deployedPath ?? path
                var r = DecisionRecord(at: Clock.iso(t + 1800), decision: h % 24 == 6 ? "promote" : "keep",
                                       reason: "at least as good: gain 0.001 on recent.accuracy; old.accuracy +0.002, a reason of the usual length")
                r.deployedPath = dep; r.deployed = "main/" + FileIO.split(dep).name; r.evalset = String(format: "%064x", h / 12)
                d.decisions.append(r)
            }
        }
        run.knobs = [.init(time: t0 + 4000 * 3600, step: 4_000_000, knob: "lr", old: "0.2", new: "0.1")]
        run.suspects = [SuspectShard(name: "x.pps", reason: "loss spike: loss 3 > threshold 1.2", at: Clock.iso(t0 + 100 * 3600), by: "pp-train guard")]
        d.runs = [run]
        d.deployedPath = d.decisions.last?.deployedPath
        let page = ReportPage(data: d, maxAgeSeconds: 7 * 86_400, bins: 300).html()
        let bytes = page.utf8.count
        print("report for a made-up year of hourly checkpoints: \(bytes) bytes")
        XCTAssertLessThan(bytes, 3 << 20)
        // Every chart but the per-label F1 (no deployed result here) has points.
        let charts = page.components(separatedBy: "<svg ").dropFirst()
        XCTAssertGreaterThan(charts.count, 15)
        for c in charts where !c.contains("id=\"label-f1\"") {
            XCTAssertFalse(c.contains("data-points=\"0\""), String(c.prefix(200)))
        }
        XCTAssertTrue(page.contains("id=\"check-canary\""))
        XCTAssertTrue(page.contains("l43"))   // a label of the last quarter is listed as new
    }
}

/// The built `pp-select report`: exit codes, stdout, atomic output, an unreadable file.
final class ReportCLITests: XCTestCase {
    func testExitCodesAndOutput() throws {
        let dir = try TestSupport.tempDir("report-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // No such root: 66, nothing on stdout.
        let missing = try TestSupport.run("pp-select", ["report", "--root", dir + "/nope", "--out", dir + "/out"])
        XCTAssertEqual(missing.status, 66, missing.stderr)
        XCTAssertEqual(missing.stdout, "")
        XCTAssertTrue(missing.stderr.contains("no such state folder"), missing.stderr)
        // Usage: 64.
        XCTAssertEqual(try TestSupport.run("pp-select", ["report", "--root", dir, "--metric", "nope"]).status, 64)
        XCTAssertEqual(try TestSupport.run("pp-select", ["report", "--root", dir, "--max-age", "soon"]).status, 64)
        // An empty root: a page whose charts say "no data"; the path on stdout; default ROOT/report.
        let root = Root(dir + "/root")
        try root.ensureLayout()
        let empty = try TestSupport.run("pp-select", ["report", "--root", root.path])
        XCTAssertEqual(empty.status, 0, empty.stderr)
        XCTAssertEqual(empty.stdout, root.path + "/report/index.html\n")
        let page = String(decoding: try FileIO.readAll(root.path + "/report/index.html"), as: UTF8.self)
        XCTAssertTrue(page.hasPrefix("<!DOCTYPE html>") && page.hasSuffix("</html>\n"))
        XCTAssertTrue(page.contains("nothing deployed"))
        XCTAssertTrue(page.contains("no data"))
        XCTAssertFalse(page.contains("<script"))
        // A dead writer's temp is swept, a live one's never; no temp is left by the run.
        let stale = root.path + "/report/.index.html.tmp.999999"
        try FileIO.publish("x", to: stale)
        // An unreadable eval result: still written, named on stderr and in the page, exit 1.
        try FileIO.publish("{\"schema\":1,\"checkpoint\":", to: root.evals + "/ckpt-20261126T000000Z-000000000001--main--0000000000000000.json")
        let bad = try TestSupport.run("pp-select", ["report", "--root", root.path, "--out", dir + "/out2"])
        XCTAssertEqual(bad.status, 1, bad.stderr)
        XCTAssertEqual(bad.stdout, dir + "/out2/index.html\n")
        XCTAssertTrue(bad.stderr.contains("ckpt-20261126T000000Z-000000000001--main--0000000000000000.json"), bad.stderr)
        let badPage = String(decoding: try FileIO.readAll(dir + "/out2/index.html"), as: UTF8.self)
        XCTAssertTrue(badPage.contains("Files skipped"))
        XCTAssertEqual(try FileIO.list(dir + "/out2"), ["index.html"])
        let again = try TestSupport.run("pp-select", ["report", "--root", root.path])
        XCTAssertEqual(again.status, 1)
        XCTAssertEqual(try FileIO.list(root.path + "/report").filter { $0.hasPrefix(".") }, [], "a dead writer's temp file was left")
    }
}
