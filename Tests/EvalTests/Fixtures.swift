// Tiny hand-made state folders for the eval and select tests: holdout shards, stand-in models,
// stored results built from chosen per-example outcomes.

import Foundation
import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import pp_eval

/// A stand-in model: the label whose name appears among the tokens gets `hit`, the others
/// share the rest; no such token gives a flat distribution.
final class KeywordModel: Predictor {
    let labels: [String]
    let hit: Float
    init(labels: [String], hit: Float = 0.7) { self.labels = labels; self.hit = hit }
    func predict(tokens: UnsafeRawBufferPointer, probs: UnsafeMutableBufferPointer<Float>) {
        let words = tokens.split(separator: 0x20).map { String(decoding: $0, as: UTF8.self) }
        let k = labels.firstIndex { words.contains($0) }
        for j in 0..<labels.count {
            probs[j] = k == nil ? 1 / Float(labels.count) : (j == k! ? hit : (1 - hit) / Float(labels.count - 1))
        }
    }
}

enum Fixture {
    static func header(_ split: String = "holdout") -> ShardHeader {
        ShardHeader(split: split, examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: "in.jsonl",
                    sourceSHA256: String(repeating: "0", count: 64), sourceBytes: 1, part: 0, parts: 1,
                    ingestedAt: "2026-11-26T00:00:00Z", tsMin: nil, tsMax: nil)
    }

    /// Writes a holdout shard of (label, ts, text) rows.
    static func shard(_ rows: [(String, Int64?, String)], to path: String) throws {
        var w = ShardWriter()
        for (l, ts, text) in rows { w.append(label: l, ts: ts, tokens: Tokenizer.tokens(text)) }
        try FileIO.makeDirectories(FileIO.split(path).dir)
        try FileIO.publish(try w.finish(header: header()), to: path)
    }

    /// A root with one holdout shard of `n` examples over labels a and b; returns its eval-set hash.
    static func root(_ tag: String, n: Int = 40) throws -> (Root, String) {
        let dir = try TestSupport.tempDir(tag)
        let root = Root(dir)
        try root.ensureLayout()
        try shard((0..<n).map { ($0 % 4 == 0 ? "b" : "a", Int64(1_700_000_000 + $0), "x\($0)") }, to: root.holdout + "/h-000.pps")
        return (root, try EvalSet.hashShards(try EvalSet.holdoutPaths(root)))
    }

    /// A stored result for checkpoint runs/RUN/checkpoints/FILE (a dummy file is created)
    /// whose outcomes are `outcomes`; all examples in every slice.
    @discardableResult
    static func result(_ root: Root, evalset: String, labels: [String], outcomes: [ExampleOutcome], run: String = "main",
                       file: String, step: Int, created: String = Clock.iso(Clock.now())) throws -> EvalResult {
        let flags = [UInt8](repeating: ExampleFlag.recent | ExampleFlag.old, count: outcomes.count)
        let m = Scorer.slices(outcomes, flags: flags, labels: labels)
        let base = EvalNames.base(checkpointFile: file, run: run, evalset: evalset)
        let rel = EvalNames.relativeCheckpointPath(run: run, file: file)
        try FileIO.makeDirectories(root.checkpoints(run: run))
        if !FileIO.exists(root.path + "/" + rel) { try FileIO.publish("checkpoint \(file)", to: root.path + "/" + rel) }
        let r = EvalResult(checkpoint: run + "/" + file, run: run, path: rel, step: step, checkpointCreatedAt: created,
                           evaluatedAt: created, evalset: evalset, evalsetSource: "holdout", evalsetFiles: 1, recentDays: 7,
                           recentFrom: created, oldTo: created, seconds: 0.1, examplesPerSecond: 100,
                           examplesFile: base + ".pex", all: m.all, recent: m.recent, old: m.old)
        try store(r, ExampleFile(evalset: evalset, labels: labels, outcomes: outcomes, slices: flags), root: root)
        return r
    }

    /// Outcomes for `truths` where the examples listed in `wrong` are mispredicted as `other`.
    static func outcomes(_ truths: [UInt32], wrong: Set<Int>, other: (UInt32) -> UInt32 = { $0 == 0 ? 1 : 0 }) -> [ExampleOutcome] {
        truths.enumerated().map { i, t in
            wrong.contains(i) ? ExampleOutcome(truth: t, pred: other(t), pTrue: 0.3, pTop: 0.7, top5: true)
                              : ExampleOutcome(truth: t, pred: t, pTrue: 0.8, pTop: 0.8, top5: true)
        }
    }
}
