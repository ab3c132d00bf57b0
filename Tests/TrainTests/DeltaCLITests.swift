// Delta checkpoints through the tools (issue 19, part 2): pp-train --once writes a full
// checkpoint, then a chain of deltas (each of the checkpoint before) while little changes, a
// full one every --full-every; a later
// --once resumes from a delta; `deployed` pointing at a delta serves `pp-eval predict`; a
// delta whose base is gone is refused with exit 65 naming the base.

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

final class DeltaCLITests: XCTestCase {
    func testOnceWritesDeltasThatResumeAndServe() throws {
        let root = try Fix.newRoot("deltacli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        func once(_ extra: [String]) throws -> String {
            let r = try TestSupport.run("pp-train", ["--root", root, "--once", "--replay", "0", "--full-every", "3"] + Fix.tiny + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try XCTUnwrap(r.stdoutLines.last)
        }
        // A first shard with the whole vocabulary, then a trickle of small ones.
        try Fix.shard(root, Fix.shardName(1), Fix.examples(400, labels: ["a", "b", "c"], seed: 1))
        var paths = [try once([])]
        for k in 2...5 {
            try Fix.shard(root, Fix.shardName(k), Fix.examples(3, labels: ["a", "b", "c"], seed: UInt64(k)))
            paths.append(try once([]))
        }
        let metas = try paths.map { try Checkpoint.readHead(path: $0).meta }
        let name = { (p: String) in "main/" + FileIO.split(p).name }
        XCTAssertEqual(metas.map(\.base), [nil, name(paths[0]), name(paths[1]), nil, name(paths[3])])
        XCTAssertEqual(metas.map(\.delta), [nil, 1, 2, nil, 1])
        let sizes = paths.map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }
        XCTAssertLessThan(sizes[1] * 2, sizes[0], "a delta of 3 examples is far smaller than the full checkpoint: \(sizes)")
        // Each --once resumed from the previous checkpoint (a delta for runs 3 and 5); the
        // chain loads in both modes, predicts the same, and carries the whole cursor.
        let full = try Checkpoint.load(path: paths[4])
        let inf = try Checkpoint.load(path: paths[4], mode: .inference)
        for p in Fix.probes { XCTAssertEqual(full.model.predict(tokens: p), inf.model.predict(tokens: p)) }
        XCTAssertEqual(full.meta.cursor.shards.count, 5)

        // `deployed` -> a delta: pp-eval predict serves it.
        try FileManager.default.createSymbolicLink(atPath: root + "/deployed", withDestinationPath: paths[2])
        var r = try TestSupport.run("pp-eval", ["predict", root + "/deployed", "--k", "1"], stdin: Array("a1 a2 common3\n".utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdoutLines.count, 1, r.stdout)
        // The full checkpoint under its chain gone: exit 65, and the message names it.
        try FileManager.default.removeItem(atPath: paths[0])
        r = try TestSupport.run("pp-eval", ["predict", root + "/deployed", "--k", "1"], stdin: Array("a1\n".utf8))
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("its base checkpoint \(name(paths[0])) is missing"), r.stderr)
        // pp-train is not affected: it resumes from 5, a delta of 4, and goes on with the chain.
        try Fix.shard(root, Fix.shardName(6), Fix.examples(3, labels: ["a", "b", "c"], seed: 6))
        let next = try once([])
        XCTAssertEqual(try Checkpoint.readHead(path: next).meta.base, name(paths[4]))
        XCTAssertEqual(try Checkpoint.readHead(path: next).meta.delta, 2)
    }
}
