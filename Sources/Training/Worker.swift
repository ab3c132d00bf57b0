// The SGD step: one Hogwild worker turns a mini-batch into weight updates. gather (the
// examples' mean input rows, input dropout) -> forwardBackward (the dense layers as GEMMs,
// softmax, the gradients) or, for small linear mini-batches, linearFusedStep (the same without
// GEMMs) -> the dense step (leaky AdaGrad, Optimizer.swift) -> updateRows (the input rows'
// step, scattered without locks into the shared table). Trainer.train (Trainer.swift) runs
// the workers and merges their dense copies.

import Shared
import TextModel
import CIntrinsics
import COpenBLAS
import Foundation

/// One Hogwild worker: a private copy of the dense layers and the buffers of a mini-batch.
final class Worker {
    let dim: Int, hidden: Int, inDim: Int
    let tuning: TrainerTuning
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
    /// The weight of each of `ids` when the features share a token's n-grams
    /// (Features.shareNgrams); else unused.
    let wts = FloatBuf(1 << 16)
    /// Per example of the mini-batch, what `gather` divided its sum by (1 / the number of its
    /// rows, or 1 / the sum of their weights): `updateRows` scales the row gradients with it.
    let invW = FloatBuf(Trainer.miniBatch)
    var weighted = false

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
        weighted = f.shareNgrams
        if weighted { wts.ensure(bound) }
        let out = ids.p, wo = wts.p, share = weighted
        var c = 0
        offs[0] = 0
        var b = 0
        for e in range {
            var ti = x.exTok[e]
            let toks = UnsafeRawBufferPointer(rebasing: x.bytes[x.byteOffsets[e]..<x.byteOffsets[e + 1]])
            Features.forEachToken(toks) { p, len in
                let s = x.tokSlot[ti]
                if s >= 0 {
                    out[c] = s
                    if share { wo[c] = 1 }
                    c += 1
                }
                let c0 = c
                f.forEachCharNgram(p, len) { out[c] = $0; c += 1 }
                if share && c > c0 {
                    let w = Features.ngramWeight(c - c0)
                    for i in c0..<c { wo[i] = w }
                }
                ti += 1
            }
            let c1 = c
            f.forEachWordNgram(UnsafeBufferPointer(start: x.tokHash + x.exTok[e], count: x.exTok[e + 1] - x.exTok[e])) {
                out[c] = $0; c += 1
            }
            if share { for i in c1..<c { wo[i] = 1 } }
            b += 1
            offs[b] = c
        }
    }

    init(dim: Int, hidden: Int, tuning: TrainerTuning = TrainerTuning()) {
        self.dim = dim; self.hidden = hidden; inDim = hidden > 0 ? hidden : dim
        self.tuning = tuning
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

    /// Merges the workers' private copies into the master: the master takes every worker's
    /// change (master + sum of (copy - master)), as if the workers had shared the layers like
    /// Hogwild does the rows. (Averaging the copies instead divided each worker's progress by
    /// the number of workers: TrainSpeedProbe, session 2.)
    static func merge(_ ws: ArraySlice<Worker>, into flat: inout [Float], state st: inout [Float]) {
        let k = Float(ws.count)
        func combine(_ d: inout [Float], clampAtZero: Bool, _ get: (Worker) -> UnsafeMutablePointer<Float>) {
            d.withUnsafeMutableBufferPointer { d in
                let n = d.count
                let dp = d.baseAddress!
                Vec.scale(dp, -(k - 1), n)
                for w in ws { Vec.add(dp, get(w), n) }
                if clampAtZero { for i in 0..<n where dp[i] < 0 { dp[i] = 0 } }
            }
        }
        combine(&flat, clampAtZero: false) { $0.params.p }
        combine(&st, clampAtZero: true) { $0.state.p }
    }

    /// Forward and backward for examples `range` (at most miniBatch): fills `grad` (dense
    /// layers, summed over the examples) and `dH` (gradient w.r.t. each example's mean input
    /// vector, before dropout). Returns the summed loss. Parameters are not changed.
    /// h[b] = mean of example b's rows (then input dropout, mask kept in mask0). The rows are
    /// asked for `tuning.prefetchAhead` ahead (RowTable.prefetch): this loop is bound by
    /// memory latency, and the misses of several rows then overlap.
    func gather(range: Range<Int>, ids: UnsafePointer<Int32>, offsets: UnsafePointer<Int>, table: RowTable, dropout: Float,
                weights: UnsafePointer<Float>? = nil) {
        let B = range.count, dim = self.dim
        let H = h.p
        let idEnd = offsets[range.upperBound]
        let ahead = tuning.prefetchAhead
        for j in offsets[range.lowerBound]..<min(idEnd, offsets[range.lowerBound] + ahead) { table.prefetch(Int(ids[j])) }
        for b in 0..<B {
            let e = range.lowerBound + b
            let hb = H + b * dim
            hb.update(repeating: 0, count: dim)
            let s = offsets[e], t = offsets[e + 1]
            var j = s
            if let weights {
                var total: Float = 0
                while j < t {
                    if j + ahead < idEnd { table.prefetch(Int(ids[j + ahead])) }
                    Vec.axpy(hb, weights[j], table.row(Int(ids[j])), dim)
                    total += weights[j]
                    j += 1
                }
                invW.p[b] = total > 0 ? 1 / total : 0
            } else {
                while j < t {
                    if j + ahead < idEnd { table.prefetch(Int(ids[j + ahead])) }
                    Vec.add(hb, table.row(Int(ids[j])), dim)
                    j += 1
                }
                invW.p[b] = t > s ? 1 / Float(t - s) : 0
            }
            if t > s { Vec.scale(hb, invW.p[b], dim) }
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
        let beta = tuning.beta, eps = Optimizer.eps
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
                         labels ys: UnsafePointer<Int32>, table: RowTable, dropout: Float,
                         weights: UnsafePointer<Float>? = nil) -> Double {
        let B = range.count, dim = self.dim, hid = hidden, inDim = self.inDim, L = labels
        let H = h.p, P = p.p, f = params.p, g = grad.p
        gather(range: range, ids: ids, offsets: offsets, table: table, dropout: dropout, weights: weights)
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
             table: table, lr: lr, dropout: dropout, average: average, clock: clock, weights: weighted ? UnsafePointer(wts.p) : nil)
    }

    func step(range: Range<Int>, ids: UnsafePointer<Int32>, offsets: UnsafePointer<Int>,
              labels ys: UnsafePointer<Int32>, table: RowTable, lr: Float, dropout: Float,
              average: WeightAverage? = nil, clock: Int = 0, weights: UnsafePointer<Float>? = nil) -> Double {
        let dim = self.dim
        let loss: Double
        if hidden == 0 && range.count <= tuning.fusedMaxBatch {
            gather(range: range, ids: ids, offsets: offsets, table: table, dropout: dropout, weights: weights)
            loss = linearFusedStep(range: range, labels: ys, lr: lr, dropout: dropout)
            updateRows(range: range, ids: ids, offsets: offsets, table: table, lr: lr, average: average, clock: clock, weights: weights)
            return loss
        }
        loss = forwardBackward(range: range, ids: ids, offsets: offsets, labels: ys, table: table, dropout: dropout, weights: weights)
        // Behind a hidden layer, each layer's step shrinks with the number of inputs it sums
        // (see Optimizer); the linear model's output layer takes lr as it is.
        let n1 = hidden * (dim + 1)
        if n1 > 0 {
            Vec.adagradStep(params.p, state.p, grad.p, n1, lr: lr * Optimizer.fanInScale(dim),
                            beta: tuning.beta, eps: Optimizer.eps)
            Vec.adagradStep(params.p + n1, state.p + n1, grad.p + n1, size - n1, lr: lr * Optimizer.fanInScale(inDim),
                            beta: tuning.beta, eps: Optimizer.eps)
        } else {
            Vec.adagradStep(params.p, state.p, grad.p, size, lr: lr, beta: tuning.beta, eps: Optimizer.eps)
        }
        updateRows(range: range, ids: ids, offsets: offsets, table: table, lr: lr, average: average, clock: clock, weights: weights)
        return loss
    }

    /// The input rows' step (leaky AdaGrad, one accumulator per row) from dH.
    func updateRows(range: Range<Int>, ids: UnsafePointer<Int32>, offsets: UnsafePointer<Int>, table: RowTable, lr: Float,
                    average: WeightAverage? = nil, clock: Int = 0, weights: UnsafePointer<Float>? = nil) {
        let dim = self.dim
        let beta = tuning.beta, eps = Optimizer.eps
        let changed = self.changed
        for b in 0..<range.count {
            let e = range.lowerBound + b
            let s = offsets[e], t = offsets[e + 1]
            if t == s { continue }
            let inv = invW.p[b]   // gather's, for the same examples
            let gb = dH.p + b * dim
            // The row gradient is gb * inv (times the row's weight); its mean square feeds
            // each row's accumulator.
            let ms = Vec.sumSquares(gb, dim) * inv * inv / Float(dim)
            var j = s
            if let a = average { for k in s..<min(t, s + tuning.prefetchAhead) { a.table.prefetch(Int(ids[k])) } }
            while j < t {
                let row = table.row(Int(ids[j]))
                if let a = average {
                    // the average's rows are not in cache (the gather read only the weights)
                    if j + tuning.prefetchAhead < t { a.table.prefetch(Int(ids[j + tuning.prefetchAhead])) }
                    a.touch(Int(ids[j]), row, clock: clock)
                }
                changed?.insert(Int(ids[j]))
                let wj: Float = weights?[j] ?? 1
                let v = beta * row[dim] + ms * wj * wj    // row[dim] is the row's accumulator
                row[dim] = v
                Vec.axpy(row, -lr * inv * wj / (pp_sqrt(v) + eps), gb, dim)
                j += 1
            }
        }
    }
}
