// Metrics: the text node_exporter's textfile collector reads. A strict parser of the
// Prometheus text exposition format (0.0.4), written from the format's rules
// (TestSupport/PromTextParser.swift, shared by every tool's metrics tests), checks every
// file Metrics writes; the parser itself is checked against inputs it must refuse.

import Foundation
import XCTest
@testable import Shared
import TestSupport

final class MetricsTests: XCTestCase {
    func testRenderIsStrictlyValidAndRoundTrips() throws {
        var m = Metrics()
        m.add("pp_ingest_inputs_total", 12, kind: .counter, help: "Inputs accepted.", labels: [("result", "accepted")])
        m.add("pp_train_loss", 0.4125, help: "Mean training loss over the last status period.", labels: [("run", "main")])
        m.add("pp_ingest_inputs_total", 3, kind: .counter, help: "ignored: the family's help is the first", labels: [("result", "rejected")])
        m.add("pp_train_examples_per_second", 123456.5, help: "Examples per second.\nSecond line \\ with backslash", labels: [("run", "lr=0.1 \"quoted\"\\\nx")])
        m.add("pp_freshness_seconds", Double.nan, help: "NaN until a model is deployed.")
        m.add("pp_big", 1e20, help: "Large value.")
        m.add("pp_small", -2.5e-7, help: "Small value.")
        m.add("pp_inf", Double.infinity, help: "Infinity.")
        m.add("pp_ninf", -Double.infinity, help: "Minus infinity.")
        let text = m.render()
        let samples = try PromTextParser.parse(text)
        XCTAssertEqual(samples.count, 9)
        XCTAssertEqual(samples.map(\.name), ["pp_ingest_inputs_total", "pp_ingest_inputs_total", "pp_train_loss",
                                             "pp_train_examples_per_second", "pp_freshness_seconds", "pp_big",
                                             "pp_small", "pp_inf", "pp_ninf"], "families stay contiguous")
        XCTAssertEqual(samples[1].labels, ["result": "rejected"])
        XCTAssertEqual(samples[1].value, 3)
        XCTAssertEqual(samples[3].labels, ["run": "lr=0.1 \"quoted\"\\\nx"], "label values round-trip through escaping")
        XCTAssertEqual(samples[3].value, 123456.5)
        XCTAssertTrue(samples[4].value.isNaN)
        XCTAssertEqual(samples[5].value, 1e20)
        XCTAssertEqual(samples[6].value, -2.5e-7)
        XCTAssertEqual(samples[7].value, .infinity)
        XCTAssertEqual(samples[8].value, -.infinity)
        XCTAssertTrue(text.contains("# TYPE pp_ingest_inputs_total counter\n"))
        XCTAssertTrue(text.contains("# HELP pp_ingest_inputs_total Inputs accepted.\n"))
        XCTAssertTrue(text.contains("pp_ingest_inputs_total{result=\"accepted\"} 12\n"), "integers are written without a fraction")
        XCTAssertTrue(text.contains("# HELP pp_train_examples_per_second Examples per second.\\nSecond line \\\\ with backslash\n"))
        if let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            let r = try TestSupport.run(promtool, ["check", "metrics"], stdin: Array(text.utf8))
            XCTAssertEqual(r.status, 0, "promtool: \(r.stdout) \(r.stderr)")
        }
    }

    func testParserRefusesBrokenFiles() {
        let bad = [
            "x 1",                                              // no final newline
            "x{a=\"1\"} 1 1700000000000\n",                     // timestamp
            "x{a=1} 1\n",                                       // unquoted label value
            "x{__a=\"1\"} 1\n",                                 // reserved label name
            "x{a=\"\\t\"} 1\n",                                 // unknown escape
            "x{a=\"1\",a=\"2\"} 1\n",                           // repeated label
            "1x 1\n",                                           // bad name
            "x  1\n",                                           // two spaces
            "x one\n",                                          // bad value
            "x inf\n",                                          // Swift's spelling, not Go's
            "# TYPE x gauge\nx 1\n# TYPE x gauge\n",            // second TYPE
            "x 1\n# TYPE x gauge\n",                            // TYPE after samples
            "x 1\ny 2\nx 3\n",                                  // family not contiguous
            "x 1\nx 2\n",                                       // duplicate sample
            "# TYPE x gaugee\nx 1\n",                           // unknown type
            "x 1\n\n",                                          // empty line
        ]
        for text in bad {
            XCTAssertThrowsError(try PromTextParser.parse(text), "should refuse: \(text.debugDescription)")
        }
        XCTAssertNoThrow(try PromTextParser.parse("# a comment\n# TYPE x gauge\nx{a=\"\"} -1.5e+3\nx{a=\"b\"} +Inf\n"))
    }

    func testNameRules() {
        XCTAssertTrue(Metrics.isValidMetricName("pp_train:loss_total"))
        XCTAssertFalse(Metrics.isValidMetricName(""))
        XCTAssertFalse(Metrics.isValidMetricName("9lives"))
        XCTAssertFalse(Metrics.isValidMetricName("pp-train"))
        XCTAssertTrue(Metrics.isValidLabelName("run"))
        XCTAssertFalse(Metrics.isValidLabelName("__name__"))
        XCTAssertFalse(Metrics.isValidLabelName("a:b"))
    }

    func testPublishWritesTheFileAtomically() throws {
        let dir = try TestSupport.tempDir("metrics")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        var m = Metrics()
        m.add("pp_select_deployed_score", 0.83, help: "Eval score of the deployed checkpoint.", labels: [("metric", "accuracy")])
        try m.publish(root: root, name: "pp-select")
        let path = dir + "/metrics/pp-select.prom"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(text, m.render())
        XCTAssertEqual(try PromTextParser.parse(text).first?.value, 0.83)
        // Replaced whole, no temp file left behind (the collector would read it: it is a .prom
        // only by its final name, and the temp name starts with a dot).
        var m2 = Metrics()
        m2.add("pp_select_deployed_score", 0.85, help: "Eval score of the deployed checkpoint.", labels: [("metric", "accuracy")])
        try m2.publish(root: root, name: "pp-select")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/metrics"), ["pp-select.prom"])
        XCTAssertEqual(try PromTextParser.parse(String(contentsOfFile: path, encoding: .utf8)).first?.value, 0.85)
    }
}
