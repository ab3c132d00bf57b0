// Issue 15, item 9: knobs are checked in the precision the trainer uses (Float), wherever
// they come from: `pp-train set`, control.json, --lr/--dropout, and a checkpoint's meta on
// --init or resume.

import Foundation
import Shared
import TextModel
import Training
import TestSupport
import XCTest
@testable import pp_train

final class KnobTests: XCTestCase {
    func testKnobsAreCheckedAsFloats() throws {
        // Finite and > 0 as a Double, but 0, subnormal or infinite as a Float.
        for lr in [4.9e-324, 1e-45, 1e-39, 1e39, 3.5e38, -1, 0, .nan, .infinity] {
            XCTAssertNotNil(Control.check(lr: lr), "lr \(lr)")
            var c = Control()
            XCTAssertThrowsError(try c.set("lr=\(lr)"), "lr=\(lr)") { XCTAssertEqual(($0 as? PPError)?.status, .usage) }
            XCTAssertThrowsError(try Control.parse(Array("{\"lr\":\(lr.isFinite ? "\(lr)" : "1e999")}".utf8), path: "c.json"))
        }
        for lr in [1e-30, 0.05, 1, 3.4e38] { XCTAssertNil(Control.check(lr: lr), "lr \(lr)") }
        // 0.99999999999 rounds to 1 as a Float: dropout would drop everything.
        for d in [0.99999999999, 1, -0.0000001, 1.5] { XCTAssertNotNil(Control.check(dropout: d), "dropout \(d)") }
        for d in [0, 0.5, 0.999] { XCTAssertNil(Control.check(dropout: d), "dropout \(d)") }
        XCTAssertNotNil(Knobs(lr: -1).problem)
        XCTAssertNil(Knobs(lr: 0.1, dropout: 0.2).problem)
    }

    func testAverageKnob() throws {
        // 0 (off) or a half-life of 1...10^12 trained examples, from every source.
        for bad in [0.5, -1, 1e13, .nan, .infinity] {
            XCTAssertNotNil(Knobs.problem(average: bad), "average \(bad)")
            var c = Control()
            XCTAssertThrowsError(try c.set("average=\(bad)")) { XCTAssertEqual(($0 as? PPError)?.status, .usage) }
            XCTAssertThrowsError(try Control.parse(Array("{\"average\":\(bad.isFinite ? "\(bad)" : "1e999")}".utf8), path: "c.json"))
        }
        XCTAssertThrowsError(try Control.parse(Array("{\"average\":true}".utf8), path: "c.json"))
        for good in [0.0, 1, 500, 1e12] { XCTAssertNil(Knobs.problem(average: good), "average \(good)") }
        var c = Control()
        try c.set("average=500")
        XCTAssertEqual(c.json, "{\"average\":500}\n")
        XCTAssertEqual(try Control.parse(Array(c.json.utf8), path: "c.json"), c)
        XCTAssertEqual(c.applied(to: Knobs()).average, 500)
        XCTAssertEqual(knobChanges(from: Knobs(), to: c.applied(to: Knobs()), step: 3, at: "t").map(\.knob), ["average"])
        XCTAssertNotNil(Knobs(lr: 0.1, average: 0.2).problem)
    }

    func testFlagsRefuseKnobsAFloatCannotHold() throws {
        let root = try Fix.newRoot("knobflags")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for bad in [["--lr", "4.9e-324"], ["--lr", "1e39"], ["--dropout", "0.99999999999"]] {
            let r = try TestSupport.run("pp-train", ["--root", root, "--once"] + Fix.tiny + bad)
            XCTAssertEqual(r.status, 64, "\(bad): \(r.stderr)")
        }
    }

    /// A checkpoint whose stored knobs are out of range is refused on --init (65, naming
    /// it), not trained from (lr=-1 used to mark clean shards suspect).
    func testInitRefusesACheckpointWithBadKnobs() throws {
        let root = try Fix.newRoot("knobinit")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(60, labels: ["a", "b"], seed: 1))
        var r = try TestSupport.run("pp-train", ["--root", root, "--once", "--run", "src"] + Fix.tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        let ck = try Checkpoint.load(path: r.stdoutLines[0])
        for (i, knobs) in [Knobs(lr: -1), Knobs(lr: 4.9e-324), Knobs(lr: 0.1, dropout: 1)].enumerated() {
            let t = try Trainer(checkpoint: ck)
            t.knobs = knobs   // the checkpoint records the trainer's knobs
            let bad = root + "/bad\(i).ppc"
            try FileIO.publish(try t.checkpointBytes(meta: ck.meta), to: bad)
            XCTAssertEqual(try Checkpoint.load(path: bad).meta.knobs, knobs)
            r = try TestSupport.run("pp-train", ["--root", root, "--once", "--run", "new\(i)", "--init", bad])
            XCTAssertEqual(r.status, 65, r.stderr)
            XCTAssertTrue(r.stderr.contains("bad\(i).ppc: knobs stored in the checkpoint"), r.stderr)
            XCTAssertTrue(Fix.checkpoints(root, run: "new\(i)").isEmpty)
        }
    }

    /// --checkpoint-every reads durations as every other tool does (Clock.duration), plus
    /// example counts; nothing of zero or less, nothing unreadable.
    func testCheckpointCadenceParsesDurationsAsEveryTool() {
        XCTAssertEqual(Cadence(parsing: "1h"), .seconds(3600))
        XCTAssertEqual(Cadence(parsing: "30m"), .seconds(1800))
        XCTAssertEqual(Cadence(parsing: "2d"), .seconds(172_800))
        XCTAssertEqual(Cadence(parsing: "1w"), .seconds(604_800))
        XCTAssertEqual(Cadence(parsing: "90"), .seconds(90))
        XCTAssertEqual(Cadence(parsing: "0.5s"), .seconds(0.5))
        XCTAssertEqual(Cadence(parsing: "50000ex"), .examples(50000))
        for bad in ["", "0s", "0", "-1h", "soon", "1y", "ex", "0ex", "-5ex", "1.5ex", "nanh", "infs"] {
            XCTAssertNil(Cadence(parsing: bad), bad)
        }
    }
}
