import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training
@testable import pp_select

/// Issue 19, part 2: retention and delta checkpoints. A checkpoint that is the base of a
/// kept delta (kept because it is deployed, its run's newest, or in rewound/) is never
/// deleted; its bytes count as freed only once all its deltas go. Deltas form chains (each
/// the base of the next), so a kept delta keeps its whole chain down to the full checkpoint,
/// and a chain goes from its newest link down.
extension SelectionTests {
    func testRetentionKeepsTheBaseOfEveryKeptDelta() throws {
        let dir = try TestSupport.tempDir("retention-delta")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = Root(dir)
        try root.ensureLayout()
        try FileIO.makeDirectories(root.checkpoints(run: "main"))
        // Six real checkpoints, a full one every 3: 1 full, 2 a delta of 1, 3 of 2; 4 full,
        // 5 a delta of 4, 6 of 5.
        var c = ModelConfig()
        c.dim = 8; c.bucket = 5000; c.vocabCapacity = 40; c.minCount = 2; c.threads = 1
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
        let files = (1...6).map { "ckpt-2026010\($0)T000000Z-00000000000\($0).ppc" }
        var kinds: [Bool] = []
        for (i, f) in files.enumerated() {
            var b = Batch()
            for k in 0..<30 { b.append(label: "l\(k % 3)", tokens: ["w\(k % 3)", "x\(i)-\(k % 5)"]) }
            _ = try t.train(b)
            let m = CheckpointMeta(run: "main", createdAt: "2026-01-0\(i + 1)T00:00:00Z", step: i + 1, tokens: 0, config: c, knobs: Knobs())
            let bytes = try t.checkpointBytes(meta: m, policy: DeltaPolicy(fullEvery: 3, maxFraction: 100))
            kinds.append(t.pendingCheckpointIsDelta == true)
            try FileIO.publish(bytes, to: root.checkpoints(run: "main") + "/" + f)
            t.checkpointPublished(as: "main/" + f)
        }
        XCTAssertEqual(kinds, [false, true, true, false, true, true])
        let rel = files.map { "runs/main/checkpoints/" + $0 }
        XCTAssertEqual(try Checkpoint.readHeadBase(path: absolutePath(root, rel[2])), "main/" + files[1])
        let s = selector(root)
        // Nothing deployed, no budget left: 6 (the newest) stays, so 5 and 4 (its chain) stay;
        // the chain 1-2-3 goes from its newest link down, one pass each.
        XCTAssertEqual(try XCTUnwrap(try s.retention(keepDays: nil, keepBytes: 1)).deleted, [rel[2], rel[1], rel[0]])
        // The budget met by deleting the newest links alone: their bases are not touched.
        let size = { (i: Int) in Int64(FileIO.lstatOrNil(self.absolutePath(root, rel[i]))!.st_size) }
        let all = (0..<6).map(size).reduce(0, +)
        XCTAssertEqual(try XCTUnwrap(try s.retention(keepDays: nil, keepBytes: all - size(1) - size(2))).deleted, [rel[2], rel[1]])
        // 2 (a delta of 1) deployed: 1 stays too, and 3 may go.
        try deploy(s, files[1])
        let rec = try XCTUnwrap(try s.retention(keepDays: nil, keepBytes: 1))
        XCTAssertEqual(rec.deleted, [rel[2]])
        XCTAssertTrue(rec.reason.contains("base of a kept delta"), rec.reason)
        try s.commit(rec)
        XCTAssertEqual(try FileIO.list(root.checkpoints(run: "main")), [files[0], files[1], files[3], files[4], files[5]])
        for i in [1, 5] {
            XCTAssertNoThrow(try Checkpoint.load(path: absolutePath(root, rel[i]), mode: .inference))
        }
        // Age-based retention follows the same rule.
        XCTAssertNil(try s.retention(keepDays: 1))
        // A delta moved to rewound/ (by `pp-train rewind`) keeps its chain as well: with 6
        // moved there and a newer full checkpoint 7, nothing may go (2 is deployed and keeps
        // 1; 6 in rewound/ keeps 5 and 4).
        let seventh = "ckpt-20260107T000000Z-000000000007.ppc"
        let m7 = CheckpointMeta(run: "main", createdAt: "2026-01-07T00:00:00Z", step: 7, tokens: 0, config: c, knobs: Knobs())
        try FileIO.publish(try t.checkpointBytes(meta: m7), to: root.checkpoints(run: "main") + "/" + seventh)
        try FileIO.makeDirectories(root.rewound(run: "main"))
        try FileIO.moveDurably(absolutePath(root, rel[5]), root.rewound(run: "main") + "/" + files[5])
        XCTAssertNil(try s.retention(keepDays: nil, keepBytes: 1))
        XCTAssertNoThrow(try Checkpoint.load(path: root.rewound(run: "main") + "/" + files[5], mode: .inference))
    }

    func absolutePath(_ root: Root, _ rel: String) -> String { root.path + "/" + rel }
}
