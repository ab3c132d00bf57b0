// A tiny JSON object writer for pp-ingest's output line and reason files: keys stay in the
// order they are added (the order docs/formats.md lists them), strings are escaped per
// RFC 8259. Not a general encoder; nothing here parses JSON.

import Shared
import TextModel

struct JSONOut {
    private(set) var text = "{"
    private var first = true

    static func quote(_ s: String) -> String { JSONString.quote(s) }

    /// A number with at most `digits` decimals, shortest form ("0.25", "3").
    static func number(_ x: Double, digits: Int = 6) -> String {
        guard x.isFinite else { return "null" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (x * scale).rounded() / scale
        if r == r.rounded() && abs(r) < 1e15 { return String(Int64(r)) }
        return "\(r)"
    }

    private mutating func key(_ k: String) {
        text += first ? "" : ","
        first = false
        text += JSONOut.quote(k) + ":"
    }

    mutating func add(_ k: String, _ v: String) { key(k); text += JSONOut.quote(v) }
    mutating func add(_ k: String, _ v: String?) { key(k); text += v.map(JSONOut.quote) ?? "null" }
    mutating func add(_ k: String, _ v: Int) { key(k); text += String(v) }
    mutating func add(_ k: String, _ v: Double, digits: Int = 6) { key(k); text += JSONOut.number(v, digits: digits) }
    mutating func add(_ k: String, _ v: [String]) { key(k); text += "[" + v.map(JSONOut.quote).joined(separator: ",") + "]" }
    /// A value that is already JSON (a nested object or array).
    mutating func add(_ k: String, raw: String) { key(k); text += raw }

    /// {"k": n, ...} with keys sorted.
    static func counts(_ d: [String: Int]) -> String {
        "{" + d.sorted { $0.key < $1.key }.map { quote($0.key) + ":" + String($0.value) }.joined(separator: ",") + "}"
    }

    /// {"k": x, ...} with keys sorted, numbers as `number` writes them.
    static func numbers(_ d: [String: Double]) -> String {
        "{" + d.sorted { $0.key < $1.key }.map { quote($0.key) + ":" + number($0.value) }.joined(separator: ",") + "}"
    }

    /// The check outcomes as an object keyed by check name, in check order.
    static func checks(_ cs: [CheckOutcome]) -> String {
        "{" + cs.map { c -> String in
            var o = JSONOut()
            if let v = c.value { o.add("value", v) }
            if let t = c.threshold { o.add("threshold", t) }
            o.add("n", c.n)
            if let k = c.count { o.add("count", k) }
            o.add("tripped", raw: c.tripped ? "true" : "false")
            if let k = c.kind { o.add("kind", k) }
            if let d = c.derived { o.add("derived", raw: d ? "true" : "false") }
            if let s = c.skipped { o.add("skipped", s) }
            return quote(c.check) + ":" + o.closed
        }.joined(separator: ",") + "}"
    }

    static func window(_ w: ReferenceWindow) -> String {
        var o = JSONOut()
        o.add("inputs", w.inputs)
        o.add("examples", w.examples)
        o.add("first", w.first)
        o.add("last", w.last)
        o.add("duplicate_inputs", w.duplicateInputs)
        return o.closed
    }

    var closed: String { text + "}" }

    /// Prints the object as one line on stdout (a closed pipe is the reader's choice: the
    /// run goes on, its work is on disk and in the log).
    func emit() { try? Stdout.line(closed) }
}
