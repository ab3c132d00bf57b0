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

import Shared
import TextModel
import CIntrinsics
import COpenBLAS
import Foundation

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
    /// The settings experiments vary (Optimizer.swift); the defaults in production.
    let tuning: TrainerTuning
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
    /// "RUN/FILE" of the checkpoint the next link would continue (the last one written or
    /// loaded); nil: the next one is full.
    public private(set) var deltaBase: String?
    /// Deltas written since the last full checkpoint (a full one comes every fullEvery).
    public private(set) var deltasSinceFull = 0
    /// The depth of `deltaBase` in its chain (0: full): a link deeper than
    /// DeltaPolicy.chainLimit is written as a cumulative delta of the full one instead.
    public private(set) var chainDepth = 0
    /// Rows stored in the full checkpoint (a delta larger than a share of it is written full).
    var baseStoredRows = 0
    /// The full checkpoint at the bottom of the chain, its cursor and vocabulary, and the rows
    /// changed since it up to `deltaBase` (a cumulative delta stores these and `changed`).
    var fullName: String?
    var fullCursor: DataCursor?
    var fullVocabulary: VocabularySnapshot?
    let changedSinceFull: RowBits
    /// The data cursor of `deltaBase` (nil: unknown, a delta then stores its whole cursor):
    /// a delta stores its cursor as a patch against it (format version 3), so an hourly
    /// delta does not carry every shard the run ever saw (1.2 MB of a 2.1 MB delta after 75
    /// simulated days of 5-minute ingests).
    var baseCursor: DataCursor?
    /// The base's vocabulary, for the next delta's vocabulary patch (VocabularyPatch.swift).
    var baseVocabulary: VocabularySnapshot?
    /// What the last `checkpointBytes` encoded (a delta's depth, or nil for a full one; rows
    /// stored; the cursor and vocabulary), until it is published.
    private var pendingWrite: (depth: Int?, stored: Int, cursor: DataCursor, vocabulary: VocabularySnapshot)?

    /// A fresh trainer, seeded by config.seed.
    public init(config: ModelConfig, knobs: Knobs, tuning: TrainerTuning = TrainerTuning()) throws {
        try config.validate()
        self.tuning = tuning
        self.config = config
        self.knobs = knobs
        model = Model(config: config)
        rng = RNG(seed: config.seed)
        denseState = [Float](repeating: 0, count: model.dense.flat.count)
        changed = RowBits(rows: model.table.rows)
        changedSinceFull = RowBits(rows: model.table.rows)
        BLASSetup.singleThreaded()
    }

    /// Warm start from a checkpoint: weights, vocabulary, labels, optimiser and RNG state.
    public init(checkpoint: Checkpoint, tuning: TrainerTuning = TrainerTuning()) throws {
        try checkpoint.meta.config.validate()
        self.tuning = tuning
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
        // The loaded checkpoint is the base of the next delta (a chain): nothing changed yet.
        changed = RowBits(rows: model.table.rows)
        deltaBase = checkpoint.deltaBase
        chainDepth = checkpoint.meta.delta ?? 0
        deltasSinceFull = checkpoint.meta.sinceFull ?? chainDepth
        baseStoredRows = checkpoint.baseStoredRows
        baseCursor = checkpoint.baseCursor
        // The loaded vocabulary is the base's, for the next delta's vocabulary patch (a full
        // checkpoint's own snapshot was taken by the load, as the chain's full vocabulary).
        baseVocabulary = deltaBase == nil ? nil : (checkpoint.meta.base == nil ? checkpoint.fullVocabulary : nil) ?? model.vocabulary.snapshot()
        // What a cumulative delta needs: the chain's full checkpoint and the rows its deltas
        // stored (CheckpointLoad gathers them in a .full load).
        fullName = deltaBase == nil ? nil : checkpoint.fullName
        fullCursor = checkpoint.fullCursor
        fullVocabulary = checkpoint.fullVocabulary
        let tableRows = checkpoint.model.table.rows
        changedSinceFull = checkpoint.rowsSinceFull.map { RowBits(rows: tableRows, bitmap: $0) } ?? RowBits(rows: tableRows)
        BLASSetup.singleThreaded()
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
        return try batch.bytes.withUnsafeBytes { all in
            try batch.offsets.withUnsafeBufferPointer { offsets in
                let index = read(batch, bytes: all)
                let input = Worker.Input(bytes: all, byteOffsets: offsets.baseAddress!, tokSlot: index.tokSlot,
                                         tokHash: index.tokHash, exTok: index.exTok, labels: index.labels)
                let lossSum = try step(input, examples: n)
                examples += n
                return BatchResult(loss: lossSum / Double(n), examples: n, tokens: index.tokens)
            }
        }
    }

    /// Step 1: each token's fastText hash, vocabulary key and place, in parallel (pure); then
    /// labels and vocabulary, serially in batch order: each token's slot (-1: not admitted). A
    /// new label gets its output row, a word reaching minCount its input row. The feature
    /// rows are built by the workers (step 2).
    private func read(_ batch: Batch, bytes all: UnsafeRawBufferPointer) -> BatchIndex {
        let n = batch.count
        let parts = (n >= 64 && config.threads > 1) ? config.threads : 1
        func inParallel(_ body: (Int) -> Void) {
            if parts == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: parts, execute: body) }
        }
        // Tokens per example (space-separated runs), in parallel; then where each starts.
        var counts = [Int](repeating: 0, count: n + 1)
        counts.withUnsafeMutableBufferPointer { cp in
            let cp = cp.baseAddress!
            inParallel { w in
                for e in (n * w / parts)..<(n * (w + 1) / parts) {
                    cp[e + 1] = Features.countTokens(UnsafeRawBufferPointer(rebasing: all[batch.offsets[e]..<batch.offsets[e + 1]]))
                }
            }
        }
        for e in 0..<n { counts[e + 1] += counts[e] }
        let ix = BatchIndex(exTok: counts)
        let ntok = ix.tokens
        let hp = ix.tokHash, kp = ix.tokKey, pp = ix.tokPos, lp = ix.tokLen, ep = ix.exTok
        let base = all.baseAddress!.assumingMemoryBound(to: UInt8.self)
        inParallel { w in
            for e in (n * w / parts)..<(n * (w + 1) / parts) {
                var ti = ep[e]
                let toks = UnsafeRawBufferPointer(rebasing: all[batch.offsets[e]..<batch.offsets[e + 1]])
                Features.forEachToken(toks) { p, len in
                    (hp[ti], kp[ti]) = FeatureHash.both(p, len)
                    pp[ti] = Int32(p - base); lp[ti] = Int32(len)
                    ti += 1
                }
            }
        }
        // Serially: the vocabulary's table is probed a few tokens ahead (its misses overlap).
        for e in 0..<n {
            let l = batch.labels[e]
            ix.labels[e] = Int32(model.index(ofLabel: l) ?? addLabel(l))
        }
        let vocab = model.vocabulary
        var scratch = [Int32]()
        for ti in 0..<ntok {
            if ti + 8 < ntok { vocab.prefetch(key: kp[ti + 8]) }
            let p = base + Int(pp[ti]), len = Int(lp[ti])
            switch vocab.observe(p, len, key: kp[ti]) {
            case .known(let s): ix.tokSlot[ti] = s
            case .admitted(let s): initWordRow(s, p, len, scratch: &scratch); ix.tokSlot[ti] = s
            case .candidate: ix.tokSlot[ti] = -1
            }
        }
        return ix
    }

    /// Step 2: the batch's mini-batches through the workers (Worker.swift: features, forward,
    /// backward, the SGD step), rounds of `syncEvery` examples per worker, the dense copies
    /// merged after each round. Returns the summed loss.
    private func step(_ input: Worker.Input, examples n: Int) throws -> Double {
        let T = max(1, config.threads)
        let table = model.table, f = model.features
        while workers.count < T { workers.append(Worker(dim: config.dim, hidden: config.hidden, tuning: tuning)) }
        for w in workers where w.changed == nil { w.changed = RowBits(rows: table.rows) }
        let L = model.labels.count
        var idBound = 0
        for e in 0..<n { idBound += f.maxIds(tokens: input.exTok[e + 1] - input.exTok[e], bytes: input.byteOffsets[e + 1] - input.byteOffsets[e]) }
        let rowBytes = max(1, idBound / n) * table.stride * 4
        let B = max(config.hidden > 0 ? tuning.hiddenMinBatch : 1, min(Trainer.miniBatch, tuning.cacheBudget / rowBytes))
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
        while m0 < nmb {
            let end = min(nmb, m0 + T * perRound)
            let active = min(T, end - m0)
            for w in 0..<active { workers[w].load(model.dense.flat, state: denseState, labels: L) }
            // Mini-batches are handed out one at a time (an atomic counter), so a worker that
            // drew short texts does not wait at the end of the round for one that drew long
            // ones. One worker takes them in order.
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
        return lossSum
    }

    /// The complete checkpoint file (compressed, with checksum), ready for FileIO.publish.
    /// Fills meta.labels and meta.vocabularySize, and sets meta.config and meta.knobs to the
    /// trainer's own (a resumed trainer starts with the knobs its checkpoint records).
    public func checkpointBytes(meta: CheckpointMeta) throws -> [UInt8] {
        try checkpointBytes(meta: meta, policy: .allFull)
    }

    /// As `checkpointBytes(meta:)`, a delta when `policy` and the state allow it: a base is
    /// known (the last checkpoint published, or the one this trainer was loaded from), fewer
    /// than `fullEvery - 1` deltas were written since the last full one, and the rows it would
    /// store are at most `maxFraction` of the full checkpoint's rows. A link (base: the
    /// previous checkpoint, the rows changed since it) while the chain stays within
    /// `chainLimit`, else a cumulative delta (base: the full checkpoint, every row changed
    /// since it; depth 1). Sets meta.base, meta.delta (the depth) and meta.sinceFull.
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
        let limit = policy.maxFraction * Double(baseStoredRows)
        var rows: RowBits? = nil
        var depth: Int? = nil
        // What the delta's cursor and vocabulary patches are written against: its base's.
        var against = (cursor: baseCursor, vocabulary: baseVocabulary)
        m.base = nil
        if policy.fullEvery > 1 && sameRun && deltasSinceFull + 1 < policy.fullEvery {
            if chainDepth + 1 <= max(policy.chainLimit, 1) || fullName == nil {
                if Double(changed.count) <= limit { rows = changed; depth = chainDepth + 1; m.base = deltaBase }
            } else {
                let all = changedSinceFull.union(changed)
                if Double(all.count) <= limit {
                    rows = all; depth = 1; m.base = fullName
                    against = (fullCursor, fullVocabulary)
                }
            }
        }
        m.delta = depth
        m.sinceFull = depth == nil ? nil : deltasSinceFull + 1
        let (bytes, stored) = try Checkpoint.encode(meta: m, model: model, delta: rows,
                                                    baseCursor: against.cursor, baseVocabulary: against.vocabulary,
                                                    state: TrainerState(rng: rng, examples: examples, denseState: denseState, average: average))
        pendingWrite = (depth, stored, m.cursor, model.vocabulary.snapshot())
        return bytes
    }

    /// Whether the bytes `checkpointBytes` returned last are a delta (nil: none pending).
    public var pendingCheckpointIsDelta: Bool? { pendingWrite.map { $0.depth != nil } }

    /// The bytes `checkpointBytes` returned last are on disk as `name` ("RUN/FILE"): it
    /// becomes the base of the next delta (a chain: the next stores only the rows changed
    /// after it), and the changed rows start over.
    public func checkpointPublished(as name: String) {
        guard let p = pendingWrite else { return }
        pendingWrite = nil
        if let d = p.depth {
            deltasSinceFull += 1
            chainDepth = d
            changedSinceFull.absorb(changed)
        } else {
            deltasSinceFull = 0
            chainDepth = 0
            baseStoredRows = p.stored
            fullName = name
            fullCursor = p.cursor
            fullVocabulary = p.vocabulary
            changedSinceFull.removeAll()
        }
        deltaBase = name
        baseCursor = p.cursor
        baseVocabulary = p.vocabulary
        changed.removeAll()
    }
}
