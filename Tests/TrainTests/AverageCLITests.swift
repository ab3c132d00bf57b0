// Issue 19: `pp-train --average` writes the averaged weights into its checkpoint and pp-eval
// scores with them (the deployed model), not with the training weights.

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

final class AverageCLITests: XCTestCase {
    func testEvalScoresTheAveragedWeights() throws {
        let root = try Fix.newRoot("avgcli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Every fourth label replaced: noisy labels keep fixed-rate weights moving, so the
        // average and the training weights differ measurably.
        let ex = Fix.examples(300, labels: ["a", "b", "c"], seed: 4).enumerated().map { i, e in
            (i % 4 == 0 ? ["a", "b", "c"][(i / 4) % 3] : e.0, e.1)
        }
        _ = try Fix.shard(root, Fix.shardName(1), ex)
        let r = try TestSupport.run("pp-train", ["--root", root, "--once", "--passes", "6", "--average", "200", "--lr", "1.0"] + Fix.tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        guard let ck = r.stdoutLines.last else { return XCTFail("no checkpoint: \(r.stderr)") }
        let e = try TestSupport.run("pp-eval", [ck, "--root", root, "--data", root + "/shards", "--no-store"])
        XCTAssertEqual(e.status, 0, e.stderr)
        guard let line = e.stdoutLines.last(where: { $0.hasPrefix("{") }),
              let j = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let evalLoss = j["log_loss"] as? Double else { return XCTFail("no log_loss: \(e.stdout)") }
        func meanLoss(_ m: Model) -> Double {
            var s = 0.0
            for (l, t) in ex {
                let p = m.predict(tokens: t)
                s -= log(max(Double(p[m.index(ofLabel: l)!]), 1e-15))
            }
            return s / Double(ex.count)
        }
        let averaged = meanLoss(try Checkpoint.load(path: ck, averaged: true).model)
        let training = meanLoss(try Checkpoint.load(path: ck).model)
        XCTAssertGreaterThan(abs(averaged - training), 1e-3, "the two weight sets must differ here")
        XCTAssertEqual(evalLoss, averaged, accuracy: 1e-4, "pp-eval scored the averaged weights")
    }
}
