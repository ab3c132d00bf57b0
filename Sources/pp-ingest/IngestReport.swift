// What pp-ingest says about one input: its JSON line on stdout (finishReport, addStats) and
// the reason file beside a rejected or quarantined input (reasonJSON, quarantineJSON).

import Foundation
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

extension Ingester {
    func addStats(_ j: inout JSONOut, _ c: Checked) {
        j.add("stats", raw: JSONOut.numbers(c.measured))
        j.add("checks", raw: JSONOut.checks(c.outcomes))
        j.add("tripped", c.outcomes.filter(\.quarantines).map(\.check))
        j.add("changed", c.outcomes.filter { $0.tripped && !$0.quarantines }.map(\.check))
        j.add("reference", raw: JSONOut.window(c.window))
        if let p = c.pool { j.add("pool", raw: poolJSON(p)) }
    }

    /// {"inputs": [...], "examples": N, "judged": "full"|"waited"}: the trickle's inputs
    /// judged together.
    func poolJSON(_ p: PoolInfo) -> String {
        var o = JSONOut()
        o.add("inputs", p.inputs)
        o.add("examples", p.examples)
        o.add("judged", p.why)
        return o.closed
    }

    func finishReport(_ j: inout JSONOut, _ status: String, _ s: InputSummary, train: Int, holdout: Int,
                              shards: [String], movedTo: String?, deleted: Bool, t0: Double) {
        j.add("status", status)
        j.add("lines", s.lines)
        j.add("blank_lines", s.blankLines)
        j.add("examples", s.examples)
        j.add("bad_lines", s.badLines)
        j.add("bad", raw: JSONOut.counts(Dictionary(uniqueKeysWithValues: s.bad.map { ($0.key.rawValue, $0.value) })))
        j.add("duplicates", s.duplicates)
        j.add("train_examples", train)
        j.add("holdout_examples", holdout)
        j.add("shards", shards)
        j.add("sha256", s.sha256.isEmpty ? nil : s.sha256)
        j.add("bytes", s.bytes)
        j.add("moved_to", movedTo)
        j.add("deleted", raw: deleted ? "true" : "false")
        j.add("seconds", Clock.monotonic() - t0, digits: 3)
    }

    /// quarantine/NAME.reason.json for a batch that tripped a check: the first tripped check's
    /// name, value and threshold at the top (the `check`/`value`/`threshold` keys every
    /// reason file has), then every check, every measured value and the reference window.
    func quarantineJSON(_ input: Input, _ s: InputSummary, _ c: Checked) -> String {
        let (tripped, outcomes, stats, window, model) = (c.tripped, c.outcomes, c.measured, c.window, c.model)
        let t = tripped[0]
        var j = JSONOut()
        j.add("schema", 1)
        j.add("file", input.name)
        j.add("status", "quarantined")
        j.add("check", t.check)
        j.add("value", t.value ?? 0)
        j.add("threshold", t.threshold ?? 0)
        j.add("n", t.n)
        j.add("reason", "check \(t.check): value \(JSONOut.number(t.value ?? 0)) exceeds threshold \(JSONOut.number(t.threshold ?? 0))")
        j.add("tripped", tripped.map(\.check))
        j.add("reference", raw: JSONOut.window(window))
        j.add("checks", raw: JSONOut.checks(outcomes))
        j.add("stats", raw: JSONOut.numbers(stats))
        j.add("model", model?.checkpoint)
        j.add("sha256", s.sha256)
        j.add("bytes", s.bytes)
        j.add("lines", s.lines)
        j.add("examples", s.examples)
        j.add("bad_lines", s.badLines)
        j.add("quarantined_at", Clock.iso(Clock.now()))
        if let p = c.pool {
            j.add("pool", raw: poolJSON(p))
            j.add("release", "pp-ingest release \(input.name) (judged with the other inputs of its pool: release each that should train)")
        } else {
            j.add("release", "pp-ingest release \(input.name)")
        }
        return j.closed + "\n"
    }

    func reasonJSON(_ input: Input, _ s: InputSummary, _ reason: String,
                            _ firstBad: [(error: InputLineError, excerpt: String)]) -> String {
        var j = JSONOut()
        j.add("schema", 1)
        j.add("file", input.name)
        j.add("status", "rejected")
        j.add("reason", reason)
        j.add("sha256", s.sha256.isEmpty ? nil : s.sha256)
        j.add("bytes", s.bytes)
        j.add("lines", s.lines)
        j.add("blank_lines", s.blankLines)
        j.add("examples", s.examples)
        j.add("duplicates", s.duplicates)
        j.add("bad_lines", s.badLines)
        j.add("bad_share", s.badShare)
        j.add("bad", raw: JSONOut.counts(Dictionary(uniqueKeysWithValues: s.bad.map { ($0.key.rawValue, $0.value) })))
        let lines = firstBad.map { b -> String in
            var o = JSONOut()
            o.add("line", b.error.line)
            o.add("reason", b.error.reason.rawValue)
            o.add("detail", b.error.detail)
            o.add("excerpt", b.excerpt)
            return o.closed
        }
        j.add("first_bad", raw: "[" + lines.joined(separator: ",") + "]")
        var t = JSONOut()
        t.add("max_bad", cfg.maxBad)
        t.add("max_text_bytes", cfg.maxTextBytes)
        t.add("max_label_bytes", InputOptions.maxLabelBytes)
        t.add("max_line_bytes", InputOptions(maxTextBytes: cfg.maxTextBytes).maxLineBytes)
        j.add("thresholds", raw: t.closed)
        j.add("rejected_at", Clock.iso(Clock.now()))
        return j.closed + "\n"
    }
}
