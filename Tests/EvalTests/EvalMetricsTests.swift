import XCTest
@testable import Shared
@testable import TextModel

/// Metrics against values computed by hand on a five-example set (see the comments).
final class EvalMetricsTests: XCTestCase {
    // Labels A=0, B=1, C=2; pred 3 = a label the eval set does not have.
    //  #  truth pred p_true p_top top5
    //  1  A     A    .8     .8    yes
    //  2  A     B    .3     .6    yes
    //  3  B     B    .9     .9    yes
    //  4  C     A    .1     .7    yes
    //  5  C     -    .2     .5    no
    static let outcomes = [
        ExampleOutcome(truth: 0, pred: 0, pTrue: 0.8, pTop: 0.8, top5: true),
        ExampleOutcome(truth: 0, pred: 1, pTrue: 0.3, pTop: 0.6, top5: true),
        ExampleOutcome(truth: 1, pred: 1, pTrue: 0.9, pTop: 0.9, top5: true),
        ExampleOutcome(truth: 2, pred: 0, pTrue: 0.1, pTop: 0.7, top5: true),
        ExampleOutcome(truth: 2, pred: 3, pTrue: 0.2, pTop: 0.5, top5: false),
    ]

    func testHandComputed() {
        var acc = MetricsAccumulator(labelCount: 3)
        for o in Self.outcomes { acc.add(o) }
        let m = acc.finish(labels: ["A", "B", "C"])
        XCTAssertEqual(m.examples, 5)
        XCTAssertEqual(m.accuracy, 0.4, accuracy: 1e-12)                 // 2 of 5
        XCTAssertEqual(m.top5Accuracy, 0.8, accuracy: 1e-12)             // 4 of 5
        // A: P 1/2 (ex 1 of 1,4), R 1/2 -> F1 .5; B: P 1/2, R 1 -> 2/3; C: never predicted -> 0
        XCTAssertEqual(m.labels["A"], LabelMetrics(precision: 0.5, recall: 0.5, f1: 0.5, support: 2))
        XCTAssertEqual(m.labels["B"]!.precision, 0.5, accuracy: 1e-12)
        XCTAssertEqual(m.labels["B"]!.recall, 1, accuracy: 1e-12)
        XCTAssertEqual(m.labels["B"]!.f1, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(m.labels["C"], LabelMetrics(precision: 0, recall: 0, f1: 0, support: 2))
        XCTAssertEqual(m.macroF1, (0.5 + 2.0 / 3.0 + 0) / 3, accuracy: 1e-12)          // 7/18
        let weighted: Double = (2 * 0.5 + 2.0 / 3.0) / 5   // C's F1 is 0: 1/3
        XCTAssertEqual(m.weightedF1, weighted, accuracy: 1e-12)
        let logs: [Double] = [log(0.8), log(0.3), log(0.9), log(0.1), log(0.2)]
        let ll = -logs.reduce(0, +) / 5   // 1.08890
        XCTAssertEqual(m.logLoss, ll, accuracy: 1e-6)
        // Every confidence falls in its own bin of 15: ECE = mean |correct - confidence|
        // = (.2 + .6 + .1 + .7 + .5) / 5 = .42
        XCTAssertEqual(m.ece, 0.42, accuracy: 1e-6)
    }

    func testSameBinAveragesBeforeTheGap() {
        // Two examples in one bin: confidences .62 and .64, one right: |1/2 - .63| = .13.
        var acc = MetricsAccumulator(labelCount: 2)
        acc.add(ExampleOutcome(truth: 0, pred: 0, pTrue: 0.62, pTop: 0.62, top5: true))
        acc.add(ExampleOutcome(truth: 1, pred: 0, pTrue: 0.36, pTop: 0.64, top5: true))
        XCTAssertEqual(acc.finish(labels: ["a", "b"]).ece, 0.13, accuracy: 1e-6)
    }

    func testUnknownLabelLogLossIsClipped() {
        var acc = MetricsAccumulator(labelCount: 1)
        acc.add(ExampleOutcome(truth: 0, pred: 1, pTrue: 0, pTop: 1, top5: false))
        XCTAssertEqual(acc.value("log_loss"), -log(1e-15), accuracy: 1e-9)
    }

    func testWeightsEqualRepeats() {
        var a = MetricsAccumulator(labelCount: 3), b = a
        for o in Self.outcomes { a.add(o, weight: 2) }
        for o in Self.outcomes { b.add(o); b.add(o) }
        var ma = a.finish(labels: ["A", "B", "C"]), mb = b.finish(labels: ["A", "B", "C"])
        XCTAssertEqual(ma.logLoss, mb.logLoss, accuracy: 1e-12)   // w*log(p) vs log(p)+log(p): rounding
        ma.logLoss = 0; mb.logLoss = 0
        XCTAssertEqual(ma, mb)
        a.reset()
        XCTAssertEqual(a.count, 0)
        for o in Self.outcomes { a.add(o) }
        XCTAssertEqual(a.value("macro_f1"), 7.0 / 18.0, accuracy: 1e-12)
    }
}
