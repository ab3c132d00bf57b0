// `pp-eval export` through the tools (issue 19, part 2): a delta checkpoint written by
// pp-train exported at 16 bits serves `pp-eval predict` with the checkpoint's answers, is
// smaller, and pp-train refuses to resume from it; usage errors and missing files get their
// documented exit statuses.

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

final class ExportCLITests: XCTestCase {
    func testExportServesPredictionsAndCannotBeResumed() throws {
        let root = try Fix.newRoot("exportcli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        func once() throws -> String {
            let r = try TestSupport.run("pp-train", ["--root", root, "--once", "--replay", "0", "--full-every", "3"] + Fix.tiny)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try XCTUnwrap(r.stdoutLines.last)
        }
        try Fix.shard(root, Fix.shardName(1), Fix.examples(400, labels: ["a", "b", "c"], seed: 1))
        _ = try once()
        try Fix.shard(root, Fix.shardName(2), Fix.examples(5, labels: ["a", "b", "c"], seed: 2))
        let delta = try once()
        XCTAssertNotNil(try Checkpoint.readHead(path: delta).meta.base, "the second checkpoint is a delta")

        let out = root + "/model.ppm"
        var r = try TestSupport.run("pp-eval", ["export", delta, out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(r.stdoutLines.first).utf8)) as? [String: Any]
        XCTAssertEqual(line?["bits"] as? Int, 16)
        let bytes = try XCTUnwrap(line?["bytes"] as? Int), source = try XCTUnwrap(line?["source_bytes"] as? Int)
        XCTAssertLessThan(bytes, source, "the export is smaller than the delta and its base together")
        let size = { (p: String) in Int(FileIO.lstatOrNil(p)?.st_size ?? 0) }
        let base = root + "/runs/main/checkpoints/" + FileIO.split(try XCTUnwrap(try Checkpoint.readHead(path: delta).meta.base)).name
        XCTAssertEqual(source, size(delta) + size(base), "source_bytes: every file of the chain the load read")
        XCTAssertEqual(Int(FileIO.lstatOrNil(out)?.st_size ?? 0), bytes)

        let texts = Array((Fix.probes.map { $0.joined(separator: " ") } + ["a1 a2 common3", "b2 c1", "nothing known"]).joined(separator: "\n").utf8) + [0x0A]
        let fromCheckpoint = try TestSupport.run("pp-eval", ["predict", delta, "--k", "1"], stdin: texts)
        let fromExport = try TestSupport.run("pp-eval", ["predict", out, "--k", "1"], stdin: texts)
        XCTAssertEqual(fromExport.status, 0, fromExport.stderr)
        func labels(_ s: String) -> [String] {
            s.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }.compactMap { $0["label"] as? String }
        }
        XCTAssertEqual(labels(fromExport.stdout).count, Fix.probes.count + 3)
        XCTAssertEqual(labels(fromExport.stdout), labels(fromCheckpoint.stdout))

        // pp-train cannot resume from it: 65, and the message says what to resume from.
        let other = try Fix.newRoot("exportcli-init")
        defer { try? FileManager.default.removeItem(atPath: other) }
        try Fix.shard(other, Fix.shardName(1), Fix.examples(20, labels: ["a", "b"], seed: 3))
        r = try TestSupport.run("pp-train", ["--root", other, "--once", "--init", out])
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("serving export"), r.stderr)
        XCTAssertTrue(r.stderr.contains(FileIO.split(delta).name), r.stderr)

        // Usage: a checkpoint's name, a width that does not exist; a missing checkpoint.
        r = try TestSupport.run("pp-eval", ["export", delta, root + "/ckpt-20260101T000000Z-000000000001.ppc"])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-eval", ["export", "--bits", "12", delta, out])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try TestSupport.run("pp-eval", ["export", root + "/missing.ppc", out])
        XCTAssertEqual(r.status, 66, r.stderr)
    }
}
