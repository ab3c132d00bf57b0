// The training core: turns batches of (label, tokens) into weight updates. It grows the
// vocabulary and the label set as data brings them, and writes and restores its complete
// state (checkpoints). It does not choose data, pace itself or touch files: that is
// pp-train's loop (docs/design.md, "The trainer, split in two").
//
// One train(batch):
//  1. Serially, in batch order: each example's label (a new label gets an output row,
//     `initLabelRow`), each token counted by the vocabulary (a word reaching minCount gets a
//     row, initialised as the mean of its n-gram rows), and the example's feature rows.
//  2. Mini-batches of `miniBatch` examples go through the dense layers as GEMMs (OpenBLAS,
//     one BLAS thread per worker) and scatter their gradients into the input rows.
//     `config.threads` workers share the input table without locks (Hogwild) but each keeps
//     a private copy of the dense layers (they are written by every example: shared, their
//     cache lines would ping-pong between cores); the copies are averaged every
//     `syncEvery` examples per worker. With one thread everything runs in batch order and is
//     bit-reproducible; the dropout masks come from per-batch seeds drawn from the trainer's
//     RNG, whose state is checkpointed.

import CIntrinsics
import COpenBLAS
import Foundation

/// A batch of examples in training order, tokens in the shard form.
public struct Batch {
    public private(set) var labels: [String] = []
    var offsets: [Int] = [0]
    var bytes: [UInt8] = []

    public init() {}

    public mutating func append(label: String, tokens: UnsafeRawBufferPointer) {
        labels.append(label)
        bytes.append(contentsOf: tokens)
        offsets.append(bytes.count)
    }

    public mutating func append(label: String, tokens: [String]) {
        let b = Array(tokens.joined(separator: " ").utf8)
        b.withUnsafeBytes { append(label: label, tokens: $0) }
    }

    public var count: Int { labels.count }

    /// The tokens of example `i` (shard form), for scoring it without training.
    public func withTokens<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { all in body(UnsafeRawBufferPointer(rebasing: all[offsets[i]..<offsets[i + 1]])) }
    }

    /// Tokens in the batch (space-separated runs). Counts them (O(bytes)); `train` counts
    /// them itself, in parallel.
    public var tokenCount: Int {
        var c = 0
        bytes.withUnsafeBytes { all in
            for e in 0..<count {
                c += Features.countTokens(UnsafeRawBufferPointer(rebasing: all[offsets[e]..<offsets[e + 1]]))
            }
        }
        return c
    }

    public mutating func removeAll() {
        labels.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true); offsets.append(0)
        bytes.removeAll(keepingCapacity: true)
    }
}

public struct BatchResult: Sendable {
    /// Mean cross-entropy (nats) over the batch's examples, measured before each update.
    public var loss: Double
    public var examples: Int
    public var tokens: Int
    public init(loss: Double, examples: Int, tokens: Int) { self.loss = loss; self.examples = examples; self.tokens = tokens }
}

/// Growable buffers outside Swift's arrays (no exclusivity checks, stable pointer).
final class Int32Buf {
    private(set) var p: UnsafeMutablePointer<Int32>
    private(set) var count: Int
    init(_ n: Int = 0) { count = max(n, 1); p = .allocate(capacity: count); p.initialize(repeating: 0, count: count) }
    deinit { p.deallocate() }
    /// Makes room for n values; contents are not kept.
    func ensure(_ n: Int) {
        if n <= count { return }
        p.deallocate()
        count = max(n, count * 2)
        p = .allocate(capacity: count)
        p.initialize(repeating: 0, count: count)
    }
}

final class FloatBuf {
    private(set) var p: UnsafeMutablePointer<Float>
    private(set) var count: Int
    init(_ n: Int = 0) {
        count = n
        p = .allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
    }
    deinit { p.deallocate() }
    /// Makes room for n floats; contents are not kept.
    func ensure(_ n: Int) {
        if n <= count { return }
        p.deallocate()
        p = .allocate(capacity: n)
        p.initialize(repeating: 0, count: n)
        count = n
    }
}

public final class Trainer {
    public let config: ModelConfig
    /// Applied from the next batch on.
    public var knobs: Knobs
    public let model: Model
    var rng: RNG
    /// Examples trained on by this trainer and its ancestors (checkpointed).
    public private(set) var examples = 0
    /// Largest GEMM mini-batch (examples).
    static let miniBatch = 64
    /// The mini-batch is sized so that the input rows it reads (gather) stay in cache for its
    /// scatter: the sparse part is bound by memory latency, and re-missing every row on the
    /// way back costs far more than smaller GEMMs. Small mini-batches also mean more (adaptive)
    /// steps per pass, which helped accuracy (git stream, 2 passes, bigrams: 0.35 at 64
    /// examples, 0.51 at 1-2). Bytes of rows per mini-batch (a fraction of a 512 KiB L2):
    static var cacheBudget = 64 << 10
    /// With a hidden layer the GEMMs dominate and need batches (PERF-NOTES: ~5x cheaper per
    /// example at 64 than at 1).
    static var hiddenMinBatch = 16
    /// Rows the gather asks for ahead of the one it adds (RowTable.prefetch).
    static var prefetchAhead = 4
    /// Examples per worker between two averagings of the dense copies.
    static let syncEvery = 1024
    private var workers: [Worker] = []
    /// Optimiser state per dense parameter (same layout as DenseLayers.flat); the input rows'
    /// accumulators live in the table (RowTable.state). See `Optimizer`.
    var denseState: [Float]
    /// The averaged weights (Average.swift) while the `average` knob is on, else nil.
    var average: WeightAverage?

    // Delta checkpoints (DeltaCheckpoint.swift).
    /// Rows changed since `deltaBase`: the trainer's own marks (word rows it initialises);
    /// the workers' marks (their updates) are merged in when a checkpoint is encoded.
    let changed: RowBits
    /// "RUN/FILE" of the full checkpoint a delta would complete; nil: the next one is full.
    public private(set) var deltaBase: String?
    /// Deltas written since `deltaBase`.
    public private(set) var deltasSinceBase = 0
    /// Rows stored in `deltaBase` (a delta larger than a share of it is written full).
    var baseStoredRows = 0
    /// What the last `checkpointBytes` encoded (a delta? rows stored), until it is published.
    private var pendingWrite: (delta: Bool, stored: Int)?

    /// A fresh trainer, seeded by config.seed.
    public init(config: ModelConfig, knobs: Knobs) throws {
        try Trainer.validate(config)
        self.config = config
        self.knobs = knobs
        model = Model(config: config)
        rng = RNG(seed: config.seed)
        denseState = [Float](repeating: 0, count: model.dense.flat.count)
        changed = RowBits(rows: model.table.rows)
        BLASSetup.singleThreaded()
    }

    /// Warm start from a checkpoint: weights, vocabulary, labels, optimiser and RNG state.
    public init(checkpoint: Checkpoint) throws {
        try Trainer.validate(checkpoint.meta.config)
        guard let state = checkpoint.state, checkpoint.model.packed == nil else {
            throw PPError("checkpoint of run \(checkpoint.meta.run) at step \(checkpoint.meta.step) was loaded for inference: training needs Checkpoint.load(mode: .full)", status: .software)
        }
        config = checkpoint.meta.config
        knobs = checkpoint.meta.knobs
        model = checkpoint.model
        rng = state.rng
        examples = state.examples
        denseState = state.denseState
        average = state.average
        // A delta's rows stay changed relative to its base: the next delta stores them too.
        changed = RowBits(rows: model.table.rows)
        if let rows = checkpoint.deltaRows { Checkpoint.forEachSetBit(rows) { changed.insert($0) } }
        deltaBase = checkpoint.deltaBase
        deltasSinceBase = checkpoint.meta.delta ?? 0
        baseStoredRows = checkpoint.baseStoredRows
        BLASSetup.singleThreaded()
    }

    /// The documented limits of a model config (docs/formats.md, "Limits"): a run cannot be
    /// created beyond them and a checkpoint declaring more is refused before anything is
    /// allocated for it. They bound what one file can make a reader allocate.
    public enum Limits {
        public static let dim = 4096
        public static let hidden = 65_536
        public static let vocabCapacity = 1 << 25
        /// vocab_capacity + bucket (rows are addressed with 31 bits).
        public static let rows = Int(Int32.max)
        /// rows x dim: the input table's floats (its mapping is reserved lazily, but
        /// 2^35 floats = 128 GiB is already more than any machine this runs on).
        public static let tableFloats = 1 << 35
        public static let wordNgrams = 16
        public static let maxn = 32
        public static let threads = 64
    }

    static func validate(_ c: ModelConfig) throws {
        func bad(_ s: String) -> PPError { PPError("model config: \(s)", status: .usage) }
        guard c.dim > 0 && c.dim <= Limits.dim else { throw bad("dim must be in 1...\(Limits.dim), got \(c.dim)") }
        guard c.bucket >= 0 else { throw bad("bucket must be >= 0") }
        guard c.bucket > 0 || (c.maxn <= 0 && c.wordNgrams <= 1) else { throw bad("bucket 0 needs maxn 0 and word_ngrams 1") }
        guard c.vocabCapacity >= 0 && c.vocabCapacity <= Limits.vocabCapacity else {
            throw bad("vocab_capacity must be in 0...\(Limits.vocabCapacity), got \(c.vocabCapacity)")
        }
        guard c.bucket <= Limits.rows - c.vocabCapacity else { throw bad("vocab_capacity + bucket must fit in 31 bits") }
        guard (c.vocabCapacity + c.bucket) * c.dim <= Limits.tableFloats else {
            throw bad("(vocab_capacity + bucket) x dim must be at most 2^35 floats, got \(c.vocabCapacity + c.bucket) x \(c.dim)")
        }
        guard c.maxn <= Limits.maxn else { throw bad("maxn must be at most \(Limits.maxn), got \(c.maxn)") }
        guard c.maxn <= 0 || (c.minn >= 1 && c.minn <= c.maxn) else { throw bad("need 1 <= minn <= maxn (or maxn 0), got \(c.minn)...\(c.maxn)") }
        guard c.wordNgrams >= 1 && c.wordNgrams <= Limits.wordNgrams else { throw bad("word_ngrams must be in 1...\(Limits.wordNgrams), got \(c.wordNgrams)") }
        guard c.hidden >= 0 && c.hidden <= Limits.hidden else { throw bad("hidden must be in 0...\(Limits.hidden), got \(c.hidden)") }
        guard c.threads >= 1 && c.threads <= Limits.threads else { throw bad("threads must be in 1...\(Limits.threads)") }
    }

    // MARK: Growth

    /// Output row of a new label: small random weights (so gradients can flow into the input
    /// rows from the first example) and a bias log(100 L) below the mean bias, so the new
    /// label takes about 1% / L of the probability mass and the existing predictions barely
    /// move; learning pulls the bias up as examples of the label arrive.
    func addLabel(_ l: String) -> Int {
        let d = model.dense
        let L = d.labels
        var meanBias: Float = 0
        if L > 0 {
            var s: Double = 0
            for k in 0..<L { s += Double(d.flat[d.outOffset + k * (d.inDim + 1) + d.inDim]) }
            meanBias = Float(s / Double(L)) - logf(100 * Float(L))
        }
        let a = 0.5 / Float(d.inDim).squareRoot()
        var row = [Float](repeating: 0, count: d.inDim + 1)
        for i in 0..<d.inDim { row[i] = (rng.uniform() * 2 - 1) * a }
        row[d.inDim] = meanBias
        model.dense.flat.append(contentsOf: row)
        denseState.append(contentsOf: [Float](repeating: 0, count: row.count))
        return model.appendLabel(l)
    }

    /// Hidden layer init (fresh trainer, first batch): He-uniform weights, bias 0.1 so the
    /// units are active while the input rows are still zero (a zero bias would leave ReLU
    /// with zero gradient everywhere).
    private func initHiddenIfNeeded() {
        let d = model.dense
        guard d.hidden > 0, examples == 0, d.flat[0..<d.outOffset].allSatisfy({ $0 == 0 }) else { return }
        let a = (6 / Float(d.dim)).squareRoot()
        for j in 0..<d.hidden {
            for i in 0..<d.dim { model.dense.flat[j * (d.dim + 1) + i] = (rng.uniform() * 2 - 1) * a }
            model.dense.flat[j * (d.dim + 1) + d.dim] = 0.1
        }
    }

    /// A newly admitted word's row: the mean of its character n-gram rows (zero without them).
    private func initWordRow(_ slot: Int32, _ p: UnsafePointer<UInt8>, _ n: Int, scratch: inout [Int32]) {
        scratch.removeAll(keepingCapacity: true)
        model.features.appendCharNgrams(p, n, into: &scratch)
        let t = model.table, dim = config.dim
        let row = t.row(Int(slot))
        row.update(repeating: 0, count: dim)
        for id in scratch { Vec.add(row, t.row(Int(id)), dim) }
        if !scratch.isEmpty { Vec.scale(row, 1 / Float(scratch.count), dim) }
        t.state(Int(slot)).pointee = 0
        changed.insert(Int(slot))
        average?.reset(Int(slot))
    }

    /// Starts, retunes or drops the average as the `average` knob says (a half-life of 0
    /// drops it: checkpoints then deploy the training weights).
    private func syncAverage() {
        let h = knobs.average
        guard h > 0 else { average = nil; return }
        if let a = average { a.halfLife = h; return }
        average = WeightAverage(rows: model.table.rows, dim: config.dim, halfLife: h, dense: model.dense.flat, clock: examples)
    }

    // MARK: Training

    /// Trains on the batch (config.threads workers). Adds new labels and admits new words as
    /// they come. Throws PPError when a loss is NaN/inf: the caller reloads its last checkpoint.
    public func train(_ batch: Batch) throws -> BatchResult {
        let n = batch.count
        if n == 0 { return BatchResult(loss: 0, examples: 0, tokens: 0) }
        initHiddenIfNeeded()
        syncAverage()
        // 1. Each token's fastText hash, vocabulary key and place, in parallel (pure); then
        //    labels and vocabulary, serially in batch order: each token's slot (-1: not
        //    admitted). The feature rows are built by the workers.
        let T = max(1, config.threads)
        let parts = (n >= 64 && T > 1) ? T : 1
        func inParallel(_ body: (Int) -> Void) {
            if parts == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: parts, execute: body) }
        }
        // Tokens per example (space-separated runs), in parallel; then where each starts.
        var exTok = [Int](repeating: 0, count: n + 1)
        batch.bytes.withUnsafeBytes { all in
            exTok.withUnsafeMutableBufferPointer { ep in
                let ep = ep.baseAddress!
                inParallel { w in
                    for e in (n * w / parts)..<(n * (w + 1) / parts) {
                        ep[e + 1] = Features.countTokens(UnsafeRawBufferPointer(rebasing: all[batch.offsets[e]..<batch.offsets[e + 1]]))
                    }
                }
            }
        }
        for e in 0..<n { exTok[e + 1] += exTok[e] }
        let ntok = exTok[n]
        var tokSlot = [Int32](repeating: -1, count: max(ntok, 1))
        var tokHash = [UInt32](repeating: 0, count: max(ntok, 1))
        var tokKey = [UInt64](repeating: 0, count: max(ntok, 1))
        var tokPos = [Int32](repeating: 0, count: max(ntok, 1))     // start in batch.bytes
        var tokLen = [Int32](repeating: 0, count: max(ntok, 1))
        var ys = [Int32](repeating: 0, count: n)
        var scratch = [Int32]()
        let vocab = model.vocabulary
        batch.bytes.withUnsafeBytes { all in
            tokHash.withUnsafeMutableBufferPointer { hp in
              tokKey.withUnsafeMutableBufferPointer { kp in
                tokPos.withUnsafeMutableBufferPointer { pp in
                  tokLen.withUnsafeMutableBufferPointer { lp in
                    let hp = hp.baseAddress!, kp = kp.baseAddress!, pp = pp.baseAddress!, lp = lp.baseAddress!
                    let base = all.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    inParallel { w in
                        for e in (n * w / parts)..<(n * (w + 1) / parts) {
                            var ti = exTok[e]
                            let toks = UnsafeRawBufferPointer(rebasing: all[batch.offsets[e]..<batch.offsets[e + 1]])
                            Features.forEachToken(toks) { p, len in
                                (hp[ti], kp[ti]) = FeatureHash.both(p, len)
                                pp[ti] = Int32(p - base); lp[ti] = Int32(len)
                                ti += 1
                            }
                        }
                    }
                  }
                }
              }
            }
            // Serially: the vocabulary's table is probed a few tokens ahead (its misses overlap).
            tokSlot.withUnsafeMutableBufferPointer { sp in
                tokKey.withUnsafeBufferPointer { kp in
                    let base = all.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    for e in 0..<n {
                        let l = batch.labels[e]
                        ys[e] = Int32(model.index(ofLabel: l) ?? addLabel(l))
                    }
                    for ti in 0..<ntok {
                        if ti + 8 < ntok { vocab.prefetch(key: kp[ti + 8]) }
                        let p = base + Int(tokPos[ti]), len = Int(tokLen[ti])
                        switch vocab.observe(p, len, key: kp[ti]) {
                        case .known(let s): sp[ti] = s
                        case .admitted(let s): initWordRow(s, p, len, scratch: &scratch); sp[ti] = s
                        case .candidate: sp[ti] = -1
                        }
                    }
                }
            }
        }
        // 2. Mini-batches through the workers.
        let table = model.table, f = model.features

        while workers.count < T { workers.append(Worker(dim: config.dim, hidden: config.hidden)) }
        for w in workers where w.changed == nil { w.changed = RowBits(rows: table.rows) }
        let L = model.labels.count
        var idBound = 0
        for e in 0..<n { idBound += f.maxIds(tokens: exTok[e + 1] - exTok[e], bytes: batch.offsets[e + 1] - batch.offsets[e]) }
        let rowBytes = max(1, idBound / n) * table.stride * 4
        let B = max(config.hidden > 0 ? Trainer.hiddenMinBatch : 1, min(Trainer.miniBatch, Trainer.cacheBudget / rowBytes))
        let nmb = (n + B - 1) / B
        let perRound = max(1, Trainer.syncEvery / B)
        let lr = Float(knobs.lr), dropout = Float(min(max(knobs.dropout, 0), 0.95))
        let avg = average, clock0 = examples
        for w in workers.prefix(T) {
            w.rng = RNG(seed: rng.next())
        }
        var lossSum = 0.0
        var m0 = 0
        let counterMem = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)   // its own cache line
        defer { counterMem.deallocate() }
        let counter = counterMem.bindMemory(to: Int.self, capacity: 1)
        try batch.bytes.withUnsafeBytes { all in
          try batch.offsets.withUnsafeBufferPointer { bo in
            try tokSlot.withUnsafeBufferPointer { sp in
              try tokHash.withUnsafeBufferPointer { hp in
                try exTok.withUnsafeBufferPointer { ep in
                  try ys.withUnsafeBufferPointer { yp in
                    let input = Worker.Input(bytes: all, byteOffsets: bo.baseAddress!, tokSlot: sp.baseAddress!,
                                             tokHash: hp.baseAddress!, exTok: ep.baseAddress!, labels: yp.baseAddress!)
                    while m0 < nmb {
                        let end = min(nmb, m0 + T * perRound)
                        let active = min(T, end - m0)
                        for w in 0..<active { workers[w].load(model.dense.flat, state: denseState, labels: L) }
                        // Mini-batches are handed out one at a time (an atomic counter), so
                        // a worker that drew short texts does not wait at the end of the
                        // round for one that drew long ones. One worker takes them in order.
                        counter.pointee = m0
                        let run = { (w: Int) in
                            let worker = self.workers[w]
                            while true {
                                let m = pp_fetch_add(counter, 1)
                                if m >= end { break }
                                let r = (m * B)..<min(n, (m + 1) * B)
                                worker.featurize(range: r, input, f)
                                worker.loss += worker.step(range: r, labels: input.labels, table: table, lr: lr, dropout: dropout,
                                                           average: avg, clock: clock0 + r.upperBound)
                            }
                        }
                        if active == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: active, execute: run) }
                        for w in 0..<active {
                            lossSum += workers[w].loss
                            workers[w].loss = 0
                        }
                        if !lossSum.isFinite {
                            throw PPError("loss is \(lossSum) after \(examples) examples (lr \(knobs.lr)): not finite", status: .software)
                        }
                        let before = avg != nil ? model.dense.flat : []
                        if active == 1 {
                            workers[0].store(into: &model.dense.flat, state: &denseState)
                        } else {
                            Worker.merge(workers.prefix(active), into: &model.dense.flat, state: &denseState)
                        }
                        avg?.updateDense(before: before, after: model.dense.flat, clock: clock0 + min(n, end * B))
                        m0 = end
                    }
                  }
                }
              }
            }
          }
        }
        examples += n
        return BatchResult(loss: lossSum / Double(n), examples: n, tokens: ntok)
    }

    /// The complete checkpoint file (compressed, with checksum), ready for FileIO.publish.
    /// Fills meta.labels and meta.vocabularySize, and sets meta.config and meta.knobs to the
    /// trainer's own (a resumed trainer starts with the knobs its checkpoint records).
    public func checkpointBytes(meta: CheckpointMeta) throws -> [UInt8] {
        try checkpointBytes(meta: meta, policy: .allFull)
    }

    /// As `checkpointBytes(meta:)`, a delta when `policy` and the state allow it: a base is
    /// known (the last full checkpoint published, or the one this trainer was loaded from),
    /// fewer than `fullEvery - 1` deltas were written since, and the rows changed since the
    /// base are at most `maxFraction` of the base's rows. Sets meta.base and meta.delta.
    /// Call `checkpointPublished(as:)` once the bytes are on disk.
    public func checkpointBytes(meta: CheckpointMeta, policy: DeltaPolicy) throws -> [UInt8] {
        var m = meta
        m.knobs = knobs
        m.labels = model.labels
        m.vocabularySize = model.vocabulary.size
        m.config = config
        for w in workers { if let c = w.changed { changed.absorb(c) } }
        // Only a base of the same run: a run seeded by --init from another run's (or another
        // root's) checkpoint starts with a full checkpoint of its own.
        let sameRun = deltaBase.map { $0.prefix { $0 != "/" } == m.run } ?? false
        let delta = policy.fullEvery > 1 && sameRun && deltasSinceBase + 1 < policy.fullEvery
            && Double(changed.count) <= policy.maxFraction * Double(baseStoredRows)
        m.base = delta ? deltaBase : nil
        m.delta = delta ? deltasSinceBase + 1 : nil
        let (bytes, stored) = try Checkpoint.encode(meta: m, model: model, delta: delta ? changed : nil,
                                                    state: TrainerState(rng: rng, examples: examples, denseState: denseState, average: average))
        pendingWrite = (delta, stored)
        return bytes
    }

    /// Whether the bytes `checkpointBytes` returned last are a delta (nil: none pending).
    public var pendingCheckpointIsDelta: Bool? { pendingWrite?.delta }

    /// The bytes `checkpointBytes` returned last are on disk as `name` ("RUN/FILE"): a full
    /// one becomes the base of the next deltas (and the changed rows start over).
    public func checkpointPublished(as name: String) {
        guard let p = pendingWrite else { return }
        pendingWrite = nil
        if p.delta {
            deltasSinceBase += 1
        } else {
            deltaBase = name
            deltasSinceBase = 0
            baseStoredRows = p.stored
            changed.removeAll()
        }
    }
}

/// What a checkpoint carries beyond the model so that training continues exactly.
struct TrainerState {
    var rng: RNG
    var examples: Int
    var denseState: [Float]
    /// The averaged weights, or nil (no AVGW section).
    var average: WeightAverage?
}

/// The update rule: "leaky AdaGrad", per coordinate on the dense layers and per row on the
/// input table (one accumulator per row, fed the row gradient's mean square):
///     v <- beta * v + g^2 ;  w <- w - lr * g / (sqrt(v) + eps)
/// Why: a perpetual trainer keeps its learning rate fixed, and fixed-rate plain SGD lost about
/// one accuracy point to fastText's rate decaying to zero (docs/design.md). AdaGrad's
/// per-coordinate steps win it back, but plain AdaGrad's steps decay to zero as its sums
/// grow, which would freeze a model that must follow drifting data. With beta < 1 the sum
/// forgets: early on (and for rarely seen rows, i.e. new words) it behaves like AdaGrad;
/// after ~1/(1-beta) updates of a coordinate its step settles at about lr * sqrt(1-beta),
/// never zero. The steps do not depend on the gradient's scale, which also makes the
/// zero-initialised input rows start learning at once. Measured on the git stream
/// (TrainSpeedProbe: 27.5k train / 3k held-out, dim 100, bigrams, 5 passes, lr 0.1): plain
/// fixed-rate SGD 0.363 held-out accuracy, leaky AdaGrad 0.573 (both at 64-example
/// mini-batches); with cache-sized mini-batches and 2 threads 0.643, with char 3..5-grams
/// 0.676, hidden 256 + dropout 0.2 0.635. beta 0.9999 = a memory of ~10k updates per row.
///
/// With a hidden layer, the dense layers take steps of lr / sqrt(fan-in) (`fanInScale`): a
/// scale-free step moves every weight of a unit by about lr, so the unit's output moves with
/// the number of inputs it sums; without the factor a hidden layer of 256 diverged at
/// fastText's usual lr 0.5 (one pass over the git stream in time order, 27k examples, 3k
/// held out, dim 100, bigrams: 0.185 held-out accuracy; with it 0.589; unscaled at lr 0.1:
/// 0.572). The linear model's output layer is not scaled: it helped when the same data is
/// seen many times (5 passes, char 3..6-grams: 0.683 -> 0.706) but hurt the one-pass,
/// streaming regime a perpetual trainer lives in (demo flags, lr 0.2: accuracy 0.591 ->
/// 0.450, macro-F1 0.42 -> 0.17), because rare labels learn slower. The embedding rows
/// always take lr: their step is already divided by the example's number of features.
enum Optimizer {
    @inline(__always) static func fanInScale(_ fanIn: Int) -> Float { 1 / Float(max(fanIn, 1)).squareRoot() }
    static var beta: Float = 0.9999
    static let eps: Float = 1e-8
    static var plainSGD = false
    static var mergeBySum = true
}

/// One Hogwild worker: a private copy of the dense layers and the buffers of a mini-batch.
final class Worker {
    /// Largest linear-model mini-batch that takes `linearFusedStep` instead of the GEMMs.
    static var fusedMaxBatch = 8
    let dim: Int, hidden: Int, inDim: Int
    var labels = 0
    let params = FloatBuf()     // private copy of DenseLayers.flat
    let state = FloatBuf()      // its optimiser state, same layout
    let grad = FloatBuf()       // gradient, same layout
    var rng = RNG(seed: 0)
    var loss = 0.0
    /// Input rows this worker updated since the trainer last took them (delta checkpoints).
    var changed: RowBits?
    // Mini-batch buffers (B rows each).
    let h = FloatBuf(), mask0 = FloatBuf(), z1 = FloatBuf(), a1 = FloatBuf(), mask1 = FloatBuf()
    let p = FloatBuf(), dIn = FloatBuf(), dZ1 = FloatBuf(), dH = FloatBuf()
    var size = 0
    /// The current mini-batch's feature rows: example b has ids[offs[b]..<offs[b+1]].
    let ids = Int32Buf(1 << 16)
    let offs: UnsafeMutablePointer<Int>

    /// What the serial pass of train() prepared for the whole batch.
    struct Input {
        let bytes: UnsafeRawBufferPointer        // the batch's token bytes
        let byteOffsets: UnsafePointer<Int>      // example e: bytes[byteOffsets[e]..<byteOffsets[e+1]]
        let tokSlot: UnsafePointer<Int32>        // per token: vocabulary slot or -1
        let tokHash: UnsafePointer<UInt32>       // per token: fastText hash
        let exTok: UnsafePointer<Int>            // example e: tokens exTok[e]..<exTok[e+1]
        let labels: UnsafePointer<Int32>
    }

    /// Builds the feature rows of examples `range` (Features.swift's rule, as Model.predict).
    func featurize(range: Range<Int>, _ x: Input, _ f: Features) {
        var bound = 0
        for e in range { bound += f.maxIds(tokens: x.exTok[e + 1] - x.exTok[e], bytes: x.byteOffsets[e + 1] - x.byteOffsets[e]) }
        ids.ensure(bound)
        let out = ids.p
        var c = 0
        offs[0] = 0
        var b = 0
        for e in range {
            var ti = x.exTok[e]
            let toks = UnsafeRawBufferPointer(rebasing: x.bytes[x.byteOffsets[e]..<x.byteOffsets[e + 1]])
            Features.forEachToken(toks) { p, len in
                let s = x.tokSlot[ti]
                if s >= 0 { out[c] = s; c += 1 }
                f.forEachCharNgram(p, len) { out[c] = $0; c += 1 }
                ti += 1
            }
            f.forEachWordNgram(UnsafeBufferPointer(start: x.tokHash + x.exTok[e], count: x.exTok[e + 1] - x.exTok[e])) {
                out[c] = $0; c += 1
            }
            b += 1
            offs[b] = c
        }
    }

    init(dim: Int, hidden: Int) {
        self.dim = dim; self.hidden = hidden; inDim = hidden > 0 ? hidden : dim
        let B = Trainer.miniBatch
        h.ensure(B * dim); mask0.ensure(B * dim); dH.ensure(B * dim)
        z1.ensure(B * max(hidden, 1)); a1.ensure(B * max(hidden, 1)); mask1.ensure(B * max(hidden, 1)); dZ1.ensure(B * max(hidden, 1))
        dIn.ensure(B * inDim)
        offs = .allocate(capacity: B + 1)
        offs.initialize(repeating: 0, count: B + 1)
    }

    deinit { offs.deallocate() }

    /// Copies the master dense layers in.
    func load(_ flat: [Float], state st: [Float], labels L: Int) {
        labels = L
        size = flat.count
        params.ensure(size); grad.ensure(size); state.ensure(size)
        p.ensure(Trainer.miniBatch * max(L, 1))
        flat.withUnsafeBufferPointer { params.p.update(from: $0.baseAddress!, count: size) }
        st.withUnsafeBufferPointer { state.p.update(from: $0.baseAddress!, count: size) }
    }

    func store(into flat: inout [Float], state st: inout [Float]) {
        flat.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: params.p, count: size) }
        st.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: state.p, count: size) }
    }

    /// Merges the workers' private copies into the master. `Optimizer.mergeBySum`: the
    /// master takes every worker's change (master + sum of (copy - master)), as if the
    /// workers had shared the layers like Hogwild does the rows; otherwise the copies are
    /// averaged (which divides each worker's progress by the number of workers).
    static func merge(_ ws: ArraySlice<Worker>, into flat: inout [Float], state st: inout [Float]) {
        let k = Float(ws.count)
        func combine(_ d: inout [Float], clampAtZero: Bool, _ get: (Worker) -> UnsafeMutablePointer<Float>) {
            d.withUnsafeMutableBufferPointer { d in
                let n = d.count
                let dp = d.baseAddress!
                if Optimizer.mergeBySum {
                    Vec.scale(dp, -(k - 1), n)
                    for w in ws { Vec.add(dp, get(w), n) }
                    if clampAtZero { for i in 0..<n where dp[i] < 0 { dp[i] = 0 } }
                } else {
                    dp.update(from: get(ws.first!), count: n)
                    for w in ws.dropFirst() { Vec.add(dp, get(w), n) }
                    Vec.scale(dp, 1 / k, n)
                }
            }
        }
        combine(&flat, clampAtZero: false) { $0.params.p }
        combine(&st, clampAtZero: true) { $0.state.p }
    }

    /// Forward and backward for examples `range` (at most miniBatch): fills `grad` (dense
    /// layers, summed over the examples) and `dH` (gradient w.r.t. each example's mean input
    /// vector, before dropout). Returns the summed loss. Parameters are not changed.
    /// h[b] = mean of example b's rows (then input dropout, mask kept in mask0). The rows are
    /// asked for `Trainer.prefetchAhead` ahead (RowTable.prefetch): this loop is bound by
    /// memory latency, and the misses of several rows then overlap.
    func gather(range: Range<Int>, ids: UnsafePointer<Int32>, offsets: UnsafePointer<Int>, table: RowTable, dropout: Float) {
        let B = range.count, dim = self.dim
        let H = h.p
        let idEnd = offsets[range.upperBound]
        let ahead = Trainer.prefetchAhead
        for j in offsets[range.lowerBound]..<min(idEnd, offsets[range.lowerBound] + ahead) { table.prefetch(Int(ids[j])) }
        for b in 0..<B {
            let e = range.lowerBound + b
            let hb = H + b * dim
            hb.update(repeating: 0, count: dim)
            let s = offsets[e], t = offsets[e + 1]
            var j = s
            while j < t {
                if j + ahead < idEnd { table.prefetch(Int(ids[j + ahead])) }
                Vec.add(hb, table.row(Int(ids[j])), dim)
                j += 1
            }
            if t > s { Vec.scale(hb, 1 / Float(t - s), dim) }
        }
        if dropout > 0 { applyDropout(H, mask0.p, B * dim, dropout) }
    }

    /// The linear model's output layer for a small mini-batch: forward, backward and update
    /// in one sweep over its rows (`h` already gathered). Per label, the row is read once to
    /// add its share to dH (before the update, as in forwardBackward) and updated right away
    /// (leaky AdaGrad, see Optimizer). Fills dH (input dropout mask applied); returns the
    /// summed loss. The same mathematics as forwardBackward followed by the dense update of
    /// `step`, summed in another order (so close to it, not bit-identical). Used where the
    /// GEMMs would run with m = 1..8 rows: there OpenBLAS's packing costs more than the
    /// arithmetic (sgemm and its copies were ~11% of the linear model's training time).
    func linearFusedStep(range: Range<Int>, labels ys: UnsafePointer<Int32>, lr: Float, dropout: Float) -> Double {
        let B = range.count, dim = self.dim, L = labels, ld = dim + 1
        let H = h.p, P = p.p, W = params.p, S = state.p, D = dH.p
        var loss = 0.0
        for b in 0..<B {
            let a = H + b * dim, row = P + b * L
            for k in 0..<L { row[k] = Vec.dot(W + k * ld, a, dim) + W[k * ld + dim] }
            let y = Int(ys[range.lowerBound + b])
            let zy = row[y]
            let (m, ls) = softmax(row, L)
            loss += Double(m + ls - zy)
            row[y] -= 1
        }
        D.update(repeating: 0, count: B * dim)
        let beta = Optimizer.beta, eps = Optimizer.eps
        for k in 0..<L {
            Vec.outputRowStep(W + k * ld, S + k * ld, dim, g: P + k, gStride: L, a: H, dIn: D, count: B,
                              lr: lr, beta: beta, eps: eps)
        }
        if dropout > 0 {
            let M = mask0.p
            for i in 0..<(B * dim) { D[i] *= M[i] }
        }
        return loss
    }

    func forwardBackward(range: Range<Int>, ids: UnsafePointer<Int32>, offsets: UnsafePointer<Int>,
                         labels ys: UnsafePointer<Int32>, table: RowTable, dropout: Float) -> Double {
        let B = range.count, dim = self.dim, hid = hidden, inDim = self.inDim, L = labels
        let H = h.p, P = p.p, f = params.p, g = grad.p
        gather(range: range, ids: ids, offsets: offsets, table: table, dropout: dropout)
        // Hidden layer: Z1[B x hid] = H[B x dim] W1^T + b1 ; A1 = relu(Z1) (dropout)
        var A = H
        if hid > 0 {
            let Z1 = z1.p, A1 = a1.p
            sgemm(transA: false, transB: true, m: B, n: hid, k: dim, alpha: 1, a: H, lda: dim, b: f, ldb: dim + 1,
                  beta: 0, c: Z1, ldc: hid)
            for b in 0..<B {
                for j in 0..<hid {
                    let z = Z1[b * hid + j] + f[j * (dim + 1) + dim]
                    Z1[b * hid + j] = z
                    A1[b * hid + j] = z > 0 ? z : 0
                }
            }
            if dropout > 0 { applyDropout(A1, mask1.p, B * hid, dropout) }
            A = A1
        }
        // Output: P[B x L] = A[B x inDim] W^T + b, softmax, loss; then P - onehot = G
        let W = f + hid * (dim + 1)
        sgemm(transA: false, transB: true, m: B, n: L, k: inDim, alpha: 1, a: A, lda: inDim, b: W, ldb: inDim + 1,
              beta: 0, c: P, ldc: L)
        var loss = 0.0
        for b in 0..<B {
            let row = P + b * L
            for k in 0..<L { row[k] += W[k * (inDim + 1) + inDim] }
            let y = Int(ys[range.lowerBound + b])
            let zy = row[y]
            let (m, ls) = softmax(row, L)
            loss += Double(m + ls - zy)
            row[y] -= 1
        }
        // dIn[B x inDim] = G[B x L] W[L x inDim]
        sgemm(transA: false, transB: false, m: B, n: inDim, k: L, alpha: 1, a: P, lda: L, b: W, ldb: inDim + 1,
              beta: 0, c: dIn.p, ldc: inDim)
        // dW[L x inDim] = G^T[L x B] A[B x inDim] (into the W part of grad, ld inDim+1); db = column sums of G
        let gW = g + hid * (dim + 1)
        sgemm(transA: true, transB: false, m: L, n: inDim, k: B, alpha: 1, a: P, lda: L, b: A, ldb: inDim,
              beta: 0, c: gW, ldc: inDim + 1)
        for k in 0..<L {
            var s: Float = 0
            for b in 0..<B { s += P[b * L + k] }
            gW[k * (inDim + 1) + inDim] = s
        }
        if hid > 0 {
            // dZ1 = dIn * mask1 * relu'(Z1); dH[B x dim] = dZ1 W1 ; dW1 = dZ1^T H ; db1 = colsum dZ1
            let DZ = dZ1.p, Z1 = z1.p, M1 = mask1.p, DI = dIn.p
            for i in 0..<(B * hid) {
                let m: Float = dropout > 0 ? M1[i] : 1
                DZ[i] = Z1[i] > 0 ? DI[i] * m : 0
            }
            sgemm(transA: false, transB: false, m: B, n: dim, k: hid, alpha: 1, a: DZ, lda: hid, b: f, ldb: dim + 1,
                  beta: 0, c: dH.p, ldc: dim)
            sgemm(transA: true, transB: false, m: hid, n: dim, k: B, alpha: 1, a: DZ, lda: hid, b: H, ldb: dim,
                  beta: 0, c: g, ldc: dim + 1)
            for j in 0..<hid {
                var s: Float = 0
                for b in 0..<B { s += DZ[b * hid + j] }
                g[j * (dim + 1) + dim] = s
            }
        } else {
            dH.p.update(from: dIn.p, count: B * dim)
        }
        if dropout > 0 {
            let D = dH.p, M = mask0.p
            for i in 0..<(B * dim) { D[i] *= M[i] }
        }
        return loss
    }

    /// Inverted dropout: zero with probability q, else scale by 1/(1-q); the mask is kept.
    @inline(__always)
    private func applyDropout(_ x: UnsafeMutablePointer<Float>, _ mask: UnsafeMutablePointer<Float>, _ n: Int, _ q: Float) {
        let keep = 1 / (1 - q)
        for i in 0..<n {
            let m: Float = rng.uniform() < q ? 0 : keep
            mask[i] = m
            x[i] *= m
        }
    }

    /// One SGD step on a mini-batch: forward, backward, update the private dense copy and
    /// the shared input rows. Returns the summed loss.
    /// One step on the examples `range` of the batch whose features `featurize` built.
    /// `average`/`clock`: the running average (if any) and the trainer's clock after this
    /// mini-batch; rows are brought up to date in it just before they change.
    func step(range: Range<Int>, labels: UnsafePointer<Int32>, table: RowTable, lr: Float, dropout: Float,
              average: WeightAverage? = nil, clock: Int = 0) -> Double {
        step(range: 0..<range.count, ids: ids.p, offsets: offs, labels: labels + range.lowerBound,
             table: table, lr: lr, dropout: dropout, average: average, clock: clock)
    }

    func step(range: Range<Int>, ids: UnsafePointer<Int32>, offsets: UnsafePointer<Int>,
              labels ys: UnsafePointer<Int32>, table: RowTable, lr: Float, dropout: Float,
              average: WeightAverage? = nil, clock: Int = 0) -> Double {
        let dim = self.dim
        let loss: Double
        if hidden == 0 && !Optimizer.plainSGD && range.count <= Worker.fusedMaxBatch {
            gather(range: range, ids: ids, offsets: offsets, table: table, dropout: dropout)
            loss = linearFusedStep(range: range, labels: ys, lr: lr, dropout: dropout)
            updateRows(range: range, ids: ids, offsets: offsets, table: table, lr: lr, average: average, clock: clock)
            return loss
        }
        loss = forwardBackward(range: range, ids: ids, offsets: offsets, labels: ys, table: table, dropout: dropout)
        if Optimizer.plainSGD {
            Vec.axpy(params.p, -lr, grad.p, size)
            for b in 0..<range.count {
                let e = range.lowerBound + b
                let s = offsets[e], t = offsets[e + 1]
                if t == s { continue }
                let a = -lr / Float(t - s)
                let gb = dH.p + b * dim
                var j = s
                while j < t {
                    changed?.insert(Int(ids[j]))
                    average?.touch(Int(ids[j]), table.row(Int(ids[j])), clock: clock)
                    Vec.axpy(table.row(Int(ids[j])), a, gb, dim); j += 1
                }
            }
            return loss
        }
        // Behind a hidden layer, each layer's step shrinks with the number of inputs it sums
        // (see Optimizer); the linear model's output layer takes lr as it is.
        let n1 = hidden * (dim + 1)
        if n1 > 0 {
            Vec.adagradStep(params.p, state.p, grad.p, n1, lr: lr * Optimizer.fanInScale(dim),
                            beta: Optimizer.beta, eps: Optimizer.eps)
            Vec.adagradStep(params.p + n1, state.p + n1, grad.p + n1, size - n1, lr: lr * Optimizer.fanInScale(inDim),
                            beta: Optimizer.beta, eps: Optimizer.eps)
        } else {
            Vec.adagradStep(params.p, state.p, grad.p, size, lr: lr, beta: Optimizer.beta, eps: Optimizer.eps)
        }
        updateRows(range: range, ids: ids, offsets: offsets, table: table, lr: lr, average: average, clock: clock)
        return loss
    }

    /// The input rows' step (leaky AdaGrad, one accumulator per row) from dH.
    func updateRows(range: Range<Int>, ids: UnsafePointer<Int32>, offsets: UnsafePointer<Int>, table: RowTable, lr: Float,
                    average: WeightAverage? = nil, clock: Int = 0) {
        let dim = self.dim
        let beta = Optimizer.beta, eps = Optimizer.eps
        let changed = self.changed
        for b in 0..<range.count {
            let e = range.lowerBound + b
            let s = offsets[e], t = offsets[e + 1]
            if t == s { continue }
            let inv = 1 / Float(t - s)
            let gb = dH.p + b * dim
            // The row gradient is gb * inv; its mean square feeds each row's accumulator.
            let ms = Vec.sumSquares(gb, dim) * inv * inv / Float(dim)
            var j = s
            if let a = average { for k in s..<min(t, s + Trainer.prefetchAhead) { a.table.prefetch(Int(ids[k])) } }
            while j < t {
                let row = table.row(Int(ids[j]))
                if let a = average {
                    // the average's rows are not in cache (the gather read only the weights)
                    if j + Trainer.prefetchAhead < t { a.table.prefetch(Int(ids[j + Trainer.prefetchAhead])) }
                    a.touch(Int(ids[j]), row, clock: clock)
                }
                changed?.insert(Int(ids[j]))
                let v = beta * row[dim] + ms    // row[dim] is the row's accumulator
                row[dim] = v
                Vec.axpy(row, -lr * inv / (pp_sqrt(v) + eps), gb, dim)
                j += 1
            }
        }
    }
}
