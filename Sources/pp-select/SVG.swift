// A small SVG chart writer for `pp-select report` (Report.swift): line charts over time or
// step, stacked bar charts over time buckets, horizontal bar charts. Text only, no scripts,
// no fonts or files fetched: the charts are inlined in one HTML page that opens from disk.
// Every chart's root element is `<svg class="chart" id=ID data-points=N ...>`, N the data
// points drawn (0: an empty chart that says "no data"), which the browser test reads.
// It is not a plotting library: no log scales, no legends outside the chart, no interaction
// beyond <title> tooltips. Numbers are written with at most 1 decimal (pixels), so a chart's
// size is about 8 bytes a point; callers downsample (ReportAggregate.swift) before drawing.

import Foundation
import Shared
import TextModel

enum SVG {
    /// Text and attribute values: & < > " ' escaped; control characters (not allowed in XML
    /// 1.0) and lone surrogates become U+FFFD.
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(u)
            default:
                if u.value < 0x20 || (u.value >= 0x7F && u.value < 0xA0) || u.value == 0xFFFE || u.value == 0xFFFF {
                    out += "\u{FFFD}"
                } else { out.unicodeScalars.append(u) }
            }
        }
        return out
    }

    /// A legend along the bottom left of a chart `height` high: for each (name, colour), a
    /// swatch `swatch` pixels tall whose top is `above` pixels over the bottom, and the name.
    static func legend(_ items: [(name: String, color: String)], left: Double, height: Double, above: Double, swatch: Double) -> String {
        var out = "", lx = left
        for (name, color) in items {
            out += "<rect x=\"\(px(lx))\" y=\"\(px(height - above))\" width=\"10\" height=\"\(px(swatch))\" fill=\"\(escape(color))\"/>"
            out += "<text x=\"\(px(lx + 13))\" y=\"\(px(height - 4))\" class=\"ax\">\(escape(name))</text>"
            lx += Double(name.count) * 6.2 + 22
        }
        return out
    }

    /// A pixel coordinate: at most one decimal, no "-0", no exponent.
    static func px(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        let r = (v * 10).rounded() / 10
        if r == r.rounded() { return String(Int(r)) }
        return String(format: "%.1f", r)
    }

    /// A value for a label: up to 3 significant decimals, thousands as k/M.
    static func number(_ v: Double) -> String {
        guard v.isFinite else { return "-" }
        let a = abs(v)
        if a >= 1e6 { return trim(String(format: "%.2f", v / 1e6)) + "M" }
        if a >= 1e4 { return trim(String(format: "%.1f", v / 1e3)) + "k" }
        if a >= 100 { return String(Int(v.rounded())) }
        if a >= 1 { return trim(String(format: "%.2f", v)) }
        if a == 0 { return "0" }
        return trim(String(format: "%.3f", v))
    }

    private static func trim(_ s: String) -> String {
        guard s.contains(".") else { return s }
        var t = s
        while t.hasSuffix("0") { t.removeLast() }
        if t.hasSuffix(".") { t.removeLast() }
        return t
    }
}

/// A linear map from a domain to a pixel range; a degenerate domain (one value, or none)
/// is widened so that its value lands in the middle.
struct Scale: Equatable {
    var lo: Double
    var hi: Double
    var from: Double
    var to: Double

    init(domain: (Double, Double), range: (Double, Double)) {
        var (a, b) = domain
        if !a.isFinite || !b.isFinite { (a, b) = (0, 1) }
        if a > b { swap(&a, &b) }
        if a == b {
            let pad = a == 0 ? 1 : abs(a) * 0.1
            a -= pad; b += pad
        }
        lo = a; hi = b; from = range.0; to = range.1
    }

    func callAsFunction(_ v: Double) -> Double {
        from + (v - lo) / (hi - lo) * (to - from)
    }

    /// About `count` round tick values inside the domain (steps of 1, 2 or 5 x 10^k).
    func ticks(_ count: Int = 5) -> [Double] {
        let span = hi - lo
        guard span > 0, count > 0 else { return [] }
        let raw = span / Double(count)
        let e = floor(log10(raw))
        let mag = pow(10, e)
        let m = [1.0, 2, 5, 10].first { $0 * mag >= raw } ?? 10
        let step = m * mag
        // k x m / 10^-e rather than a running sum: 0.6, not 0.6000000000000001.
        func tick(_ k: Double) -> Double { e < 0 ? k * m / pow(10, -e) : k * m * mag }
        var k = (lo / step).rounded(.up)
        var out: [Double] = []
        while tick(k) <= hi + step * 1e-9 && out.count < 50 {
            out.append(k == 0 ? 0 : tick(k))
            k += 1
        }
        return out
    }

    /// Widens the domain to round values at both ends (for y axes).
    func niced() -> Scale {
        let t = ticks()
        guard let f = t.first, let l = t.last, t.count >= 2 else { return self }
        let step = t[1] - t[0]
        var s = self
        s.lo = f > lo ? f - step : f
        s.hi = l < hi ? l + step : l
        return s
    }
}

/// Time axis labels: the format follows the span (minutes, hours, days).
enum TimeAxis {
    static func ticks(_ scale: Scale, count: Int = 6) -> [Double] {
        let span = scale.hi - scale.lo
        let steps: [Double] = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600,
                               86_400, 2 * 86_400, 7 * 86_400, 14 * 86_400, 30 * 86_400, 91 * 86_400, 365 * 86_400]
        let step = steps.first { span / $0 <= Double(count) } ?? 365 * 86_400
        var t = (scale.lo / step).rounded(.up) * step
        var out: [Double] = []
        while t <= scale.hi && out.count < 40 { out.append(t); t += step }
        return out
    }

    static func label(_ t: Double, span: Double) -> String {
        let iso = Clock.iso(t)  // 2026-11-26T19:45:00Z
        let c = Array(iso)
        if span <= 2 * 3600 { return String(c[11..<19]) }        // 19:45:00
        if span <= 3 * 86_400 { return String(c[5..<10]) + " " + String(c[11..<16]) }
        return String(c[0..<10])
    }
}

/// A line chart: series of (x, y) points, vertical markers (decisions, knob changes) and
/// horizontal reference lines (thresholds, SLOs).
struct LineChart {
    enum Style { case line, step, dots }
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
        var color: String
        var style: Style = .line
        var dashed = false
    }
    struct Marker {
        var x: Double
        var label: String
        var color: String
        /// Short markers sit at the bottom edge (for many routine events); tall ones span the plot.
        var short = false
    }
    struct Rule {
        var y: Double
        var label: String
        var color: String
    }

    var id: String
    var title: String
    var xIsTime = true
    var xLabel = ""
    var yLabel = ""
    var series: [Series] = []
    var markers: [Marker] = []
    var rules: [Rule] = []
    /// Fixed y domain (e.g. 0...1 for scores); nil: from the data.
    var yDomain: (Double, Double)?
    var width = 720.0
    var height = 230.0

    var pointCount: Int { series.reduce(0) { $0 + $1.points.filter { $0.x.isFinite && $0.y.isFinite }.count } }

    func render() -> String {
        let left = 56.0, right = 12.0, top = 26.0, bottom = 40.0
        let pw = width - left - right, ph = height - top - bottom
        let pts = series.flatMap { $0.points }.filter { $0.x.isFinite && $0.y.isFinite }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"\(SVG.escape(id))\" data-points=\"\(pts.count)\""
        out += " viewBox=\"0 0 \(SVG.px(width)) \(SVG.px(height))\" width=\"\(SVG.px(width))\" height=\"\(SVG.px(height))\" role=\"img\">"
        out += "<title>\(SVG.escape(title))</title>"
        out += "<text x=\"\(SVG.px(left))\" y=\"16\" class=\"t\">\(SVG.escape(title))</text>"
        out += "<rect x=\"\(SVG.px(left))\" y=\"\(SVG.px(top))\" width=\"\(SVG.px(pw))\" height=\"\(SVG.px(ph))\" class=\"plot\"/>"
        guard !pts.isEmpty else {
            out += "<text x=\"\(SVG.px(left + pw / 2))\" y=\"\(SVG.px(top + ph / 2))\" class=\"empty\" text-anchor=\"middle\">no data</text></svg>"
            return out
        }
        var xs = pts.map(\.x) + markers.map(\.x).filter(\.isFinite)
        if xs.isEmpty { xs = [0] }
        let x = Scale(domain: (xs.min()!, xs.max()!), range: (left, left + pw))
        let ys = pts.map(\.y) + rules.map(\.y).filter(\.isFinite)
        let y = yDomain.map { Scale(domain: $0, range: (top + ph, top)) }
            ?? Scale(domain: (ys.min()!, ys.max()!), range: (top + ph, top)).niced()
        // Axes: y ticks with grid lines, x ticks.
        for t in y.ticks() {
            out += "<line x1=\"\(SVG.px(left))\" x2=\"\(SVG.px(left + pw))\" y1=\"\(SVG.px(y(t)))\" y2=\"\(SVG.px(y(t)))\" class=\"grid\"/>"
            out += "<text x=\"\(SVG.px(left - 4))\" y=\"\(SVG.px(y(t) + 4))\" text-anchor=\"end\" class=\"ax\">\(SVG.number(t))</text>"
        }
        // About one label per 110 px (a date label is ~60 px wide).
        let xt = xIsTime ? TimeAxis.ticks(x, count: max(2, Int(pw / 110))) : x.ticks(max(2, Int(pw / 110)))
        for t in xt {
            let l = xIsTime ? TimeAxis.label(t, span: x.hi - x.lo) : SVG.number(t)
            out += "<text x=\"\(SVG.px(x(t)))\" y=\"\(SVG.px(top + ph + 14))\" text-anchor=\"middle\" class=\"ax\">\(SVG.escape(l))</text>"
        }
        if !xLabel.isEmpty {
            out += "<text x=\"\(SVG.px(left + pw))\" y=\"\(SVG.px(height - 4))\" text-anchor=\"end\" class=\"ax\">\(SVG.escape(xLabel))</text>"
        }
        if !yLabel.isEmpty {
            out += "<text x=\"4\" y=\"\(SVG.px(top - 4))\" class=\"ax\">\(SVG.escape(yLabel))</text>"
        }
        // Reference lines, then markers (one per pixel column and kind), then the series.
        for r in rules where r.y.isFinite {
            out += "<line x1=\"\(SVG.px(left))\" x2=\"\(SVG.px(left + pw))\" y1=\"\(SVG.px(y(r.y)))\" y2=\"\(SVG.px(y(r.y)))\" stroke=\"\(SVG.escape(r.color))\" class=\"rule\"><title>\(SVG.escape(r.label))</title></line>"
            out += "<text x=\"\(SVG.px(left + pw - 2))\" y=\"\(SVG.px(y(r.y) - 3))\" text-anchor=\"end\" class=\"ax\" fill=\"\(SVG.escape(r.color))\">\(SVG.escape(r.label))</text>"
        }
        // Markers on the same pixel column with the same look are drawn once, their labels
        // joined (at most 5, then a count).
        var order: [String] = []
        var merged: [String: (m: Marker, px: String, labels: [String], more: Int)] = [:]
        for m in markers where m.x.isFinite {
            let px = SVG.px(x(m.x))
            let key = px + m.color + (m.short ? "s" : "")
            if var e = merged[key] {
                if e.labels.count < 5 { e.labels.append(m.label) } else { e.more += 1 }
                merged[key] = e
            } else {
                order.append(key)
                merged[key] = (m, px, [m.label], 0)
            }
        }
        for key in order {
            let e = merged[key]!
            let y1 = e.m.short ? top + ph - 8 : top
            let label = e.labels.joined(separator: "\n") + (e.more > 0 ? "\n… and \(e.more) more" : "")
            out += "<line x1=\"\(e.px)\" x2=\"\(e.px)\" y1=\"\(SVG.px(y1))\" y2=\"\(SVG.px(top + ph))\" stroke=\"\(SVG.escape(e.m.color))\" class=\"mark\">"
            out += "<title>\(SVG.escape(label))</title></line>"
        }
        for s in series {
            let p = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            guard !p.isEmpty else { continue }
            let name = SVG.escape(s.name)
            if s.style == .dots || p.count == 1 {
                out += "<g fill=\"\(SVG.escape(s.color))\" class=\"dots\" data-name=\"\(name)\" data-points=\"\(p.count)\"><title>\(name)</title>"
                for q in p { out += "<circle cx=\"\(SVG.px(x(q.x)))\" cy=\"\(SVG.px(y(q.y)))\" r=\"2\"/>" }
                out += "</g>"
                continue
            }
            var d = "M\(SVG.px(x(p[0].x))),\(SVG.px(y(p[0].y)))"
            for i in 1..<p.count {
                if s.style == .step { d += "H\(SVG.px(x(p[i].x)))V\(SVG.px(y(p[i].y)))" } else {
                    d += "L\(SVG.px(x(p[i].x))),\(SVG.px(y(p[i].y)))"
                }
            }
            out += "<path d=\"\(d)\" stroke=\"\(SVG.escape(s.color))\" class=\"series\(s.dashed ? " dash" : "")\" data-name=\"\(name)\" data-points=\"\(p.count)\"><title>\(name)</title></path>"
        }
        // Legend: the series names along the bottom left.
        out += SVG.legend(series.map { ($0.name, $0.color) }, left: left, height: height, above: 10, swatch: 4)
        return out + "</svg>"
    }
}

/// Stacked bars, one per bucket (e.g. a day), with one segment per category.
struct BarChart {
    struct Category {
        var name: String
        var color: String
    }
    var id: String
    var title: String
    /// Bucket start times (x), in order.
    var buckets: [Double]
    var bucketLabel: String
    var categories: [Category]
    /// values[category][bucket]
    var values: [[Double]]
    /// A tooltip per bucket (e.g. the reasons of that day's quarantines).
    var notes: [String] = []
    var width = 720.0
    var height = 230.0

    var pointCount: Int { buckets.indices.filter { b in values.contains { $0.indices.contains(b) && $0[b] > 0 } }.count }

    func render() -> String {
        let left = 56.0, right = 12.0, top = 26.0, bottom = 40.0
        let pw = width - left - right, ph = height - top - bottom
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"\(SVG.escape(id))\" data-points=\"\(pointCount)\""
        out += " viewBox=\"0 0 \(SVG.px(width)) \(SVG.px(height))\" width=\"\(SVG.px(width))\" height=\"\(SVG.px(height))\" role=\"img\">"
        out += "<title>\(SVG.escape(title))</title>"
        out += "<text x=\"\(SVG.px(left))\" y=\"16\" class=\"t\">\(SVG.escape(title))</text>"
        out += "<rect x=\"\(SVG.px(left))\" y=\"\(SVG.px(top))\" width=\"\(SVG.px(pw))\" height=\"\(SVG.px(ph))\" class=\"plot\"/>"
        guard pointCount > 0 else {
            out += "<text x=\"\(SVG.px(left + pw / 2))\" y=\"\(SVG.px(top + ph / 2))\" class=\"empty\" text-anchor=\"middle\">no data</text></svg>"
            return out
        }
        let totals = buckets.indices.map { b in values.reduce(0.0) { $0 + ($1.indices.contains(b) ? max(0, $1[b]) : 0) } }
        let y = Scale(domain: (0, max(1, totals.max() ?? 1)), range: (top + ph, top)).niced()
        for t in y.ticks() {
            out += "<line x1=\"\(SVG.px(left))\" x2=\"\(SVG.px(left + pw))\" y1=\"\(SVG.px(y(t)))\" y2=\"\(SVG.px(y(t)))\" class=\"grid\"/>"
            out += "<text x=\"\(SVG.px(left - 4))\" y=\"\(SVG.px(y(t) + 4))\" text-anchor=\"end\" class=\"ax\">\(SVG.number(t))</text>"
        }
        let bw = pw / Double(max(1, buckets.count))
        let span = (buckets.last ?? 0) - (buckets.first ?? 0)
        let every = max(1, buckets.count / 6)
        for (i, b) in buckets.enumerated() {
            let x0 = left + Double(i) * bw
            var base = 0.0
            var g = ""
            for (c, cat) in categories.enumerated() {
                let v = values.indices.contains(c) && values[c].indices.contains(i) ? max(0, values[c][i]) : 0
                guard v > 0 else { continue }
                let yTop = y(base + v), yBot = y(base)
                g += "<rect x=\"\(SVG.px(x0 + bw * 0.1))\" y=\"\(SVG.px(yTop))\" width=\"\(SVG.px(max(0.5, bw * 0.8)))\" height=\"\(SVG.px(max(0.5, yBot - yTop)))\" fill=\"\(SVG.escape(cat.color))\"/>"
                base += v
            }
            if !g.isEmpty {
                var tip = TimeAxis.label(b, span: max(span, 4 * 86_400)) + " (\(bucketLabel)): "
                tip += categories.indices.map { c in "\(categories[c].name) \(SVG.number(values[c].indices.contains(i) ? values[c][i] : 0))" }.joined(separator: ", ")
                if notes.indices.contains(i), !notes[i].isEmpty { tip += "\n" + notes[i] }
                out += "<g class=\"bar\"><title>\(SVG.escape(tip))</title>\(g)</g>"
            }
            if i % every == 0 {
                out += "<text x=\"\(SVG.px(x0 + bw / 2))\" y=\"\(SVG.px(top + ph + 14))\" text-anchor=\"middle\" class=\"ax\">\(SVG.escape(TimeAxis.label(b, span: span)))</text>"
            }
        }
        out += "<text x=\"\(SVG.px(left + pw))\" y=\"\(SVG.px(height - 4))\" text-anchor=\"end\" class=\"ax\">per \(SVG.escape(bucketLabel))</text>"
        out += SVG.legend(categories.map { ($0.name, $0.color) }, left: left, height: height, above: 11, swatch: 6)
        return out + "</svg>"
    }
}

/// Horizontal bars with a value in 0...1 each (per-label F1), one row per item.
struct HBarChart {
    struct Item {
        var label: String
        var value: Double
        var note: String
        var color: String
    }
    var id: String
    var title: String
    var items: [Item]
    var width = 760.0

    func render() -> String {
        let row = 15.0, top = 26.0, left = 170.0, right = 60.0
        let height = top + Double(max(1, items.count)) * row + 10
        let pw = width - left - right
        let n = items.filter { $0.value.isFinite }.count
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"\(SVG.escape(id))\" data-points=\"\(n)\""
        out += " viewBox=\"0 0 \(SVG.px(width)) \(SVG.px(height))\" width=\"\(SVG.px(width))\" height=\"\(SVG.px(height))\" role=\"img\">"
        out += "<title>\(SVG.escape(title))</title><text x=\"4\" y=\"16\" class=\"t\">\(SVG.escape(title))</text>"
        guard n > 0 else {
            return out + "<text x=\"\(SVG.px(width / 2))\" y=\"\(SVG.px(top + 10))\" class=\"empty\" text-anchor=\"middle\">no data</text></svg>"
        }
        let x = Scale(domain: (0, 1), range: (left, left + pw))
        for (i, it) in items.enumerated() where it.value.isFinite {
            let yy = top + Double(i) * row
            let label = it.label.count > 26 ? String(it.label.prefix(25)) + "…" : it.label
            out += "<g><title>\(SVG.escape(it.label + ": " + it.note))</title>"
            out += "<text x=\"\(SVG.px(left - 4))\" y=\"\(SVG.px(yy + 11))\" text-anchor=\"end\" class=\"ax\">\(SVG.escape(label))</text>"
            out += "<rect x=\"\(SVG.px(left))\" y=\"\(SVG.px(yy + 2))\" width=\"\(SVG.px(max(0.5, x(min(1, max(0, it.value))) - left)))\" height=\"\(SVG.px(row - 4))\" fill=\"\(SVG.escape(it.color))\"/>"
            out += "<text x=\"\(SVG.px(x(min(1, max(0, it.value))) + 4))\" y=\"\(SVG.px(yy + 11))\" class=\"ax\">\(SVG.number(it.value))</text></g>"
        }
        return out + "</svg>"
    }
}
