import XCTest
import Foundation
import TestSupport
@testable import Shared
@testable import TextModel
@testable import Training

/// Gradients, learning and growth of the model under the trainer.
final class TrainerTests: XCTestCase {
    // MARK: Gradients

    /// Analytic gradients of the dense layers and the input rows against central finite
    /// differences of the loss, for the linear model and with a hidden layer, each with its
    /// rows averaged plainly and weighted (`subword_weight` token: Worker's `weights`).
    func testGradientsMatchFiniteDifferences() throws {
        for (hidden, weighted) in [(0, false), (6, false), (0, true), (6, true)] {
            let dim = 5, L = 4, rows = 12
            var rng = RNG(seed: 3)
            let table = RowTable(rows: rows, dim: dim)
            for r in 0..<rows { for k in 0..<dim { table.row(r)[k] = rng.uniform() * 2 - 1 } }
            var dense = DenseLayers(dim: dim, hidden: hidden)
            dense.flat = (0..<DenseLayers.size(dim: dim, hidden: hidden, labels: L)).map { _ in rng.uniform() * 2 - 1 }
            let w = Worker(dim: dim, hidden: hidden)
            w.load(dense.flat, state: [Float](repeating: 0, count: dense.flat.count), labels: L)
            // Three examples; row 2 appears twice in the second one.
            let ids: [Int32] = [0, 1, 5, 2, 2, 7, 3, 11]
            let offs = [0, 3, 6, 8]
            let ys: [Int32] = [1, 3, 0]
            let weights: [Float] = weighted ? [1, 0.25, 0.5, 1, 1.0 / 3, 0.75, 0.2, 1] : [Float](repeating: 1, count: ids.count)
            func loss() -> Double {
                weighted ? w.forwardBackward(range: 0..<3, ids: ids, offsets: offs, labels: ys, table: table, dropout: 0, weights: weights)
                    : w.forwardBackward(range: 0..<3, ids: ids, offsets: offs, labels: ys, table: table, dropout: 0)
            }
            _ = loss()
            let analytic = Array(UnsafeBufferPointer(start: w.grad.p, count: w.size))
            let dH = Array(UnsafeBufferPointer(start: w.dH.p, count: 3 * dim))
            let eps: Float = 1e-2
            func check(_ a: Double, _ num: Double, _ what: String) {
                XCTAssertEqual(a, num, accuracy: 2e-3 + 2e-2 * abs(num), "hidden \(hidden): \(what)")
            }
            for i in 0..<w.size {
                let old = w.params.p[i]
                w.params.p[i] = old + eps; let lp = loss()
                w.params.p[i] = old - eps; let lm = loss()
                w.params.p[i] = old
                check(Double(analytic[i]), (lp - lm) / Double(2 * eps), "dense[\(i)], weighted \(weighted)")
            }
            // Input rows: dL/dE[r] = sum over examples of (weight of r's places) * dH[b] / (sum of
            // the example's weights); unweighted, count(r) * dH[b] / n_b.
            for r in [0, 2, 7, 11] {
                for k in 0..<dim {
                    var a = 0.0
                    for b in 0..<3 {
                        let places = offs[b]..<offs[b + 1]
                        let c = places.filter { ids[$0] == Int32(r) }.map { Double(weights[$0]) }.reduce(0, +)
                        a += c * Double(dH[b * dim + k]) / places.map { Double(weights[$0]) }.reduce(0, +)
                    }
                    let p = table.row(r) + k
                    let old = p.pointee
                    p.pointee = old + eps; let lp = loss()
                    p.pointee = old - eps; let lm = loss()
                    p.pointee = old
                    check(a, (lp - lm) / Double(2 * eps), "row \(r)[\(k)], weighted \(weighted)")
                }
            }
        }
    }

    /// The linear model's fused output step (small mini-batches) against the GEMM path it
    /// stands in for: same loss, same new dense weights and optimiser state, same input rows,
    /// up to float summation order; with and without dropout, for 1 and 3 examples.
    func testFusedLinearStepMatchesGEMMPath() throws {
        for (count, dropout, weighted) in [(1, Float(0), false), (3, Float(0), false), (3, Float(0.3), false), (3, Float(0.3), true)] {
            let dim = 21, L = 5, rows = 12   // dim not a multiple of 8: the scalar tails run too
            var results: [(Double, [Float], [Float], [Float])] = []
            var initial: [Float] = []
            for fused in [true, false] {
                var tuning = TrainerTuning()
                tuning.fusedMaxBatch = fused ? 8 : 0
                var rng = RNG(seed: 11)
                let table = RowTable(rows: rows, dim: dim)
                for r in 0..<rows { for k in 0..<dim { table.row(r)[k] = rng.uniform() * 2 - 1 }; table.state(r).pointee = rng.uniform() }
                let flat = (0..<DenseLayers.size(dim: dim, hidden: 0, labels: L)).map { _ in rng.uniform() * 2 - 1 }
                let state = (0..<flat.count).map { _ in rng.uniform() }
                initial = flat
                let w = Worker(dim: dim, hidden: 0, tuning: tuning)
                w.load(flat, state: state, labels: L)
                w.rng = RNG(seed: 5)
                let ids: [Int32] = [0, 1, 5, 2, 2, 7, 3, 11]
                let offs = [0, 3, 6, 8]
                let ys: [Int32] = [1, 4, 0]
                var loss = 0.0
                let weights: [Float] = [1, 0.5, 0.5, 1, 0.25, 0.25, 1, 1]
                for _ in 0..<3 {   // a few steps, so each one starts from the previous update
                    loss += weights.withUnsafeBufferPointer { wp in
                        w.step(range: 0..<count, ids: ids, offsets: offs, labels: ys, table: table, lr: 0.3, dropout: dropout,
                               weights: weighted ? wp.baseAddress! : nil)
                    }
                }
                var rowsOut: [Float] = []
                for r in 0..<rows { rowsOut += Array(UnsafeBufferPointer(start: table.row(r), count: dim + 1)) }
                results.append((loss, Array(UnsafeBufferPointer(start: w.params.p, count: w.size)),
                                Array(UnsafeBufferPointer(start: w.state.p, count: w.size)), rowsOut))
            }
            let (a, b) = (results[0], results[1])
            let what = "\(count) example(s), dropout \(dropout), weighted \(weighted)"
            XCTAssertGreaterThan(zip(a.1, initial).map { abs($0 - $1) }.max() ?? 0, 1e-3, "the steps moved the weights")
            XCTAssertEqual(a.0, b.0, accuracy: 1e-5 * max(1, abs(b.0)), "loss, \(what)")
            for (name, x, y) in [("dense", a.1, b.1), ("dense state", a.2, b.2), ("input rows", a.3, b.3)] {
                XCTAssertEqual(x.count, y.count)
                let worst = zip(x, y).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-4, "\(name), \(what)")
            }
        }
    }

    // MARK: Learning

    /// (label, tokens) from the demo data, in file order.
    static func demoExamples() throws -> [(String, [UInt8])] {
        let dir = TestSupport.repoRoot + "/demo/data"
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jsonl.zst") }.sorted()
        return try names.flatMap { try readExamples(dir + "/" + $0) }
    }

    /// The (label, tokens) of a JSON Lines file (zstd-compressed when named *.zst), tokenised
    /// as pp-ingest does.
    static func readExamples(_ path: String) throws -> [(String, [UInt8])] {
        var raw = try FileIO.readAll(path)
        if path.hasSuffix(".zst") { raw = try Zstd.decompress(raw) }
        var out: [(String, [UInt8])] = []
        for line in raw.split(separator: 0x0A) where !line.isEmpty {
            guard let o = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let text = o["text"] as? String, let label = o["label"] as? String else { continue }
            var toks = [UInt8]()
            var t = text
            t.withUTF8 { _ = Tokenizer.tokenize(UnsafeRawBufferPointer($0), into: &toks) }
            out.append((label, toks))
        }
        return out
    }

    static func accuracy(_ m: Model, _ data: ArraySlice<(String, [UInt8])>) -> Double {
        var right = 0
        var probs = [Float](repeating: 0, count: m.labels.count)
        for (l, t) in data {
            t.withUnsafeBytes { tb in probs.withUnsafeMutableBufferPointer { m.predict(tokens: tb, probs: $0) } }
            let best = probs.indices.max { probs[$0] < probs[$1] }!
            if m.labels[best] == l { right += 1 }
        }
        return Double(right) / Double(data.count)
    }

    func testLearnsDemoDataAboveMajorityRate() throws {
        let all = try TrainerTests.demoExamples()
        XCTAssertGreaterThan(all.count, 1000)
        let train = all.enumerated().filter { $0.offset % 5 != 0 }.map(\.element)
        let test = all.enumerated().filter { $0.offset % 5 == 0 }.map(\.element)
        var counts: [String: Int] = [:]
        for (l, _) in test { counts[l, default: 0] += 1 }
        let majority = Double(counts.values.max()!) / Double(test.count)
        for hidden in [0, 64] {
            var c = ModelConfig.small(dim: 32, hidden: hidden, bucket: 100_000, capacity: 20_000, minCount: 2, maxn: 0)
            c.threads = 2
            let t = try Trainer(config: c, knobs: Knobs(lr: hidden > 0 ? 0.1 : 0.2, dropout: 0.1))
            for _ in 0..<(hidden > 0 ? 8 : 6) {
                var b = Batch()
                for (l, toks) in train {
                    toks.withUnsafeBytes { b.append(label: l, tokens: $0) }
                    if b.count == 500 { _ = try t.train(b); b.removeAll() }
                }
                _ = try t.train(b)
            }
            let acc = TrainerTests.accuracy(t.model, test[...])
            print("demo held-out accuracy hidden=\(hidden): \(acc) (majority \(majority))")
            XCTAssertGreaterThan(acc, majority + 0.15, "hidden \(hidden)")
        }
    }

    // MARK: Growth inside the trainer

    func testNewLabelDoesNotDisturbAndIsLearned() throws {
        let t = try Trainer(config: ModelConfig.small(minCount: 1), knobs: Knobs(lr: 0.3))
        var b = Batch()
        for i in 0..<200 {
            b.append(label: "red", tokens: ["apple", "cherry", "x\(i % 7)"])
            b.append(label: "green", tokens: ["lime", "kiwi", "x\(i % 5)"])
        }
        for _ in 0..<5 { _ = try t.train(b) }
        let probes = [["apple", "cherry"], ["lime"], ["kiwi", "x1"], ["unknown", "words"]]
        let before = probes.map { t.model.predict(tokens: $0) }
        _ = t.addLabel("blue")
        XCTAssertEqual(t.model.labels, ["red", "green", "blue"])
        for (p, old) in zip(probes, before) {
            let now = t.model.predict(tokens: p)
            XCTAssertEqual(now.count, 3)
            for k in 0..<2 { XCTAssertEqual(now[k], old[k], accuracy: 0.01, "\(p)") }
            XCTAssertLessThan(now[2], 0.01)
        }
        var nb = Batch()
        for _ in 0..<100 { nb.append(label: "blue", tokens: ["sky", "sea"]) }
        for _ in 0..<3 { _ = try t.train(nb) }
        let p = t.model.predict(tokens: ["sky", "sea"])
        XCTAssertEqual(p.indices.max { p[$0] < p[$1] }, 2, "the new label is learned: \(p)")
    }

    func testAdmittedWordRowStartsAsMeanOfItsNgramRows() throws {
        var c = ModelConfig.small(minCount: 3, minn: 3, maxn: 4)
        c.wordNgrams = 1
        let t = try Trainer(config: c, knobs: Knobs(lr: 0.5))
        var b = Batch()
        b.append(label: "a", tokens: ["zebra", "one"])
        b.append(label: "b", tokens: ["zebra", "two"])
        _ = try t.train(b)
        let m = t.model
        XCTAssertEqual(m.vocabulary.slot(of: "zebra"), -1)
        let ng = m.features.ids(tokens: ["zebra"], vocabulary: m.vocabulary)
        XCTAssertFalse(ng.isEmpty)
        var mean = [Float](repeating: 0, count: c.dim)
        for id in ng { for k in 0..<c.dim { mean[k] += m.table.row(Int(id))[k] } }
        for k in 0..<c.dim { mean[k] /= Float(ng.count) }
        XCTAssertTrue(mean.contains { $0 != 0 }, "n-gram rows were trained")
        t.knobs.lr = 0   // no update: the row stays as initialised
        var b2 = Batch()
        b2.append(label: "a", tokens: ["zebra"])
        _ = try t.train(b2)
        let s = Int(m.vocabulary.slot(of: "zebra"))
        XCTAssertGreaterThanOrEqual(s, 0, "admitted at min_count")
        for k in 0..<c.dim { XCTAssertEqual(m.table.row(s)[k], mean[k], accuracy: 1e-6) }
        // The admitted word now contributes its row plus its n-grams.
        XCTAssertEqual(m.features.ids(tokens: ["zebra"], vocabulary: m.vocabulary), [Int32(s)] + ng)
    }

    /// The trainer's features and forward pass are the model's: with lr 0 (and no word
    /// admitted or evicted meanwhile) the loss a batch reports is the cross-entropy of
    /// Model.predict on the same examples, for each
    /// `subword_weight` (and the two weightings do give different models).
    func testTrainingLossIsThePredictedLoss() throws {
        let data = Array(try Self.demoExamples().prefix(400))
        var lossBy: [ModelConfig.SubwordWeight: Double] = [:]
        for subwords in ModelConfig.SubwordWeight.allCases {
            var c = ModelConfig.small(dim: 16, capacity: 50_000, minCount: 2, minn: 3, maxn: 5)   // no eviction
            c.subwordWeight = subwords
            let t = try Trainer(config: c, knobs: Knobs(lr: 0.2))
            var b = Batch()
            for (l, toks) in data.prefix(300) { toks.withUnsafeBytes { b.append(label: l, tokens: $0) } }
            _ = try t.train(b)
            t.knobs.lr = 0
            var probe = Batch()
            let rest = data.suffix(100).filter { t.model.index(ofLabel: $0.0) != nil }
            for (l, toks) in rest { toks.withUnsafeBytes { probe.append(label: l, tokens: $0) } }
            // Once to admit the words that reach min_count in it (an example before a word's
            // admission trains without its row; predict, after, uses it), then measured.
            _ = try t.train(probe)
            let r = try t.train(probe)
            var want = 0.0
            var probs = [Float](repeating: 0, count: t.model.labels.count)
            for (l, toks) in rest {
                toks.withUnsafeBytes { tb in probs.withUnsafeMutableBufferPointer { t.model.predict(tokens: tb, probs: $0) } }
                want -= log(Double(probs[t.model.index(ofLabel: l)!]))
            }
            want /= Double(rest.count)
            XCTAssertGreaterThan(rest.count, 50)
            XCTAssertEqual(r.loss, want, accuracy: 1e-4 * want, "\(subwords)")
            lossBy[subwords] = want
        }
        XCTAssertGreaterThan(abs(lossBy[.each]! - lossBy[.token]!), 1e-3, "the weighting changes the model")
    }

    func testNonFiniteLossThrows() throws {
        let t = try Trainer(config: ModelConfig.small(), knobs: Knobs(lr: 1e30))
        var b = Batch()
        for i in 0..<200 { b.append(label: "l\(i % 3)", tokens: ["a\(i % 11)", "b", "c\(i % 4)"]) }
        XCTAssertThrowsError(try { for _ in 0..<20 { _ = try t.train(b) } }()) { e in
            XCTAssertTrue("\(e)".contains("not finite"), "\(e)")
        }
    }
}

final class BLASLibraryTests: XCTestCase {
    func testCoreTypeFromCPUFlags() {
        XCTAssertEqual(BLASLibrary.coreTypeForThisCPU(cpuinfo: "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n"), "SkylakeX")
        XCTAssertEqual(BLASLibrary.coreTypeForThisCPU(cpuinfo: "flags\t\t: fpu sse2 avx avx2 fma\n"), "Haswell")
        XCTAssertNil(BLASLibrary.coreTypeForThisCPU(cpuinfo: "flags\t\t: fpu sse2 avx\n"))
        XCTAssertNil(BLASLibrary.coreTypeForThisCPU(cpuinfo: ""))
    }

    /// The start of /proc/cpuinfo the tools read gives the answer the whole file gives.
    func testCPUInfoStartGivesTheWholeFilesAnswer() throws {
        let whole = String(decoding: try FileIO.readAll("/proc/cpuinfo"), as: UTF8.self)
        let start = try XCTUnwrap(BLASLibrary.cpuinfoStart())
        XCTAssertLessThanOrEqual(start.count, 64 << 10)
        XCTAssertTrue(String(decoding: start, as: UTF8.self).contains("flags"), "the first block holds the flags")
        XCTAssertEqual(BLASLibrary.coreTypeForThisCPU(), BLASLibrary.coreTypeForThisCPU(cpuinfo: whole))
    }
}
