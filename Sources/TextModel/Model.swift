// The classifier's weights and its inference: the input table (one row per admitted word and
// per hash bucket), an optional hidden layer and the output layer, and `predict`. Training
// (gradients, optimiser, threads) is in Trainer.swift; the file format in Checkpoint.swift,
// its reader (and the packed rows of a model loaded for inference) in CheckpointLoad.swift.
//
//   h  = mean of the input rows of the example's features (Features.swift)   [dim]
//   a  = relu(W1 h + b1)          when config.hidden > 0                       [hidden]
//   p  = softmax(W a + b)         (a = h for the linear model)                 [labels]
// Dropout (inverted) on h and a is applied at training time only.

import Shared
import COpenBLAS
import CIntrinsics
#if canImport(Glibc)
import Glibc
#endif

/// A float table of `rows` x `dim` in anonymous memory (mmap, MADV_HUGEPAGE: random row
/// reads are ~1.5x faster with huge pages). Pages are zero until written, so untouched rows
/// cost no memory and are exactly zero. Each row is followed by its optimiser accumulator
/// (`state`) and padding to a multiple of 4 floats: the training scatter then touches one
/// region per row instead of two far-apart ones (it is bound by memory latency).
@usableFromInline package final class RowTable: @unchecked Sendable {
    // Hogwild: the trainer's workers read and write rows without locks, on purpose. This is
    // the one place where those races live.
    @usableFromInline package let rows: Int
    @usableFromInline package let dim: Int
    /// Floats from one row to the next: dim, the accumulator, padding.
    @usableFromInline package let stride: Int
    @usableFromInline package let base: UnsafeMutablePointer<Float>
    private let bytes: Int

    package init(rows: Int, dim: Int) {
        self.rows = rows
        self.dim = dim
        stride = (dim + 1 + 3) & ~3
        bytes = max(1, rows * stride * MemoryLayout<Float>.stride)
        // mmap(2): anonymous, private, not reserved against swap up front.
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("mmap of \(bytes) bytes failed: \(String(cString: strerror(errno)))") }
        // madvise(2): transparent huge pages for this range (ignored where unsupported).
        _ = madvise(p, bytes, 14 /* MADV_HUGEPAGE */)
        base = p.bindMemory(to: Float.self, capacity: rows * stride)
    }

    deinit { munmap(base, bytes) }

    @inlinable @inline(__always) package func row(_ i: Int) -> UnsafeMutablePointer<Float> { base + i * stride }
    /// Asks the memory system for row i (all its cache lines; its accumulator too). The
    /// sparse loops are bound by memory latency: a row asked for a few rows ahead arrives
    /// while the current ones are added.
    @inlinable @inline(__always) package func prefetch(_ i: Int) {
        let p = UnsafeRawPointer(base + i * stride)
        var o = 0
        while o < stride * 4 { pp_prefetch(p + o); o += 64 }
        pp_prefetch(p + (dim * 4))
    }

    /// The row's optimiser accumulator.
    @inlinable @inline(__always) package func state(_ i: Int) -> UnsafeMutablePointer<Float> { base + i * stride + dim }
}

/// The dense layers in one flat vector, each row followed by its bias:
///   [ W1|b1 : hidden x (dim + 1) ][ W|b : labels x (inDim + 1) ]
/// so a new label appends one row at the end, and averaging copies (Hogwild sync) or
/// optimiser state are single vectors.
@usableFromInline package struct DenseLayers: Equatable {
    @usableFromInline package let dim: Int
    @usableFromInline package let hidden: Int
    /// Width of the output layer's input: hidden, or dim for the linear model.
    @usableFromInline package let inDim: Int
    @usableFromInline package var flat: [Float] = []

    package init(dim: Int, hidden: Int) {
        self.dim = dim
        self.hidden = hidden
        inDim = hidden > 0 ? hidden : dim
        flat = [Float](repeating: 0, count: hidden * (dim + 1))
    }

    @usableFromInline package var labels: Int { (flat.count - outOffset) / (inDim + 1) }
    /// Start of W|b in `flat`.
    @usableFromInline package var outOffset: Int { hidden * (dim + 1) }
    package static func size(dim: Int, hidden: Int, labels: Int) -> Int {
        hidden * (dim + 1) + labels * ((hidden > 0 ? hidden : dim) + 1)
    }
}

/// xoshiro256** (Blackman & Vigna): small, fast, and its whole state goes into checkpoints.
@usableFromInline package struct RNG: Equatable {
    @usableFromInline package var s: (UInt64, UInt64, UInt64, UInt64)

    package init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    package init(state: [UInt64]) { s = (state[0], state[1], state[2], state[3]) }
    @usableFromInline package var state: [UInt64] { [s.0, s.1, s.2, s.3] }

    @usableFromInline package static func == (a: RNG, b: RNG) -> Bool { a.state == b.state }

    @inlinable @inline(__always) package mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 bits.
    @inlinable @inline(__always) package mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }
}

public final class Model {
    public let config: ModelConfig
    public let features: Features
    public private(set) var labels: [String] = []
    private var labelIndex: [String: Int] = [:]
    public let vocabulary: Vocabulary
    /// The input rows the trainer updates (empty for a model loaded for inference).
    @usableFromInline package let table: RowTable
    /// The input rows of a model loaded for inference (Checkpoint.LoadMode), else nil.
    @usableFromInline package let packed: PackedRows?
    @usableFromInline package var dense: DenseLayers

    package init(config: ModelConfig, vocabulary: Vocabulary, table: RowTable, dense: DenseLayers, labels: [String], packed: PackedRows? = nil) {
        self.config = config
        self.features = Features(config: config)
        self.vocabulary = vocabulary
        self.table = table
        self.packed = packed
        self.dense = dense
        for l in labels { labelIndex[l] = self.labels.count; self.labels.append(l) }
    }

    /// A fresh model: no labels, no words, all input rows zero.
    package convenience init(config: ModelConfig) {
        let f = Features(config: config)
        self.init(config: config,
                  vocabulary: Vocabulary(capacity: config.vocabCapacity, minCount: config.minCount),
                  table: RowTable(rows: f.rows, dim: config.dim),
                  dense: DenseLayers(dim: config.dim, hidden: config.hidden), labels: [])
    }

    public func index(ofLabel l: String) -> Int? { labelIndex[l] }

    /// Adds a label (the trainer initialises its output row); returns its index.
    package func appendLabel(_ l: String) -> Int {
        let k = labels.count
        labels.append(l)
        labelIndex[l] = k
        return k
    }

    /// Probabilities over `labels` for one example, inference mode (no dropout).
    /// `tokens` are normalised tokens joined by single spaces (the shard form); `probs` must
    /// hold at least `labels.count` floats.
    public func predict(tokens: UnsafeRawBufferPointer, probs: UnsafeMutableBufferPointer<Float>) {
        var ids = [Int32]()
        if features.shareNgrams {
            var w = [Float]()
            features.weightedIds(tokens: tokens, vocabulary: vocabulary, into: &ids, weights: &w)
            predict(ids: ids, weights: w, probs: probs)
        } else {
            features.ids(tokens: tokens, vocabulary: vocabulary, into: &ids)
            predict(ids: ids, probs: probs)
        }
    }

    /// Convenience: the probabilities for a list of tokens.
    public func predict(tokens: [String]) -> [Float] {
        var probs = [Float](repeating: 0, count: labels.count)
        let bytes = Array(tokens.joined(separator: " ").utf8)
        bytes.withUnsafeBytes { t in probs.withUnsafeMutableBufferPointer { predict(tokens: t, probs: $0) } }
        return probs
    }

    /// The forward pass from feature rows.
    func predict(ids: [Int32], weights: [Float]? = nil, probs: UnsafeMutableBufferPointer<Float>) {
        let dim = config.dim, L = labels.count
        precondition(probs.count >= L, "probs holds \(probs.count) floats, model has \(L) labels")
        if L == 0 { return }
        var h = [Float](repeating: 0, count: dim)
        h.withUnsafeMutableBufferPointer { hb in
            let hp = hb.baseAddress!
            if let weights {   // h = sum of w_i row_i / sum of w_i (Features.weightedIds)
                var total: Float = 0
                for (i, id) in ids.enumerated() {
                    Vec.axpy(hp, weights[i], packed?.row(Int(id)) ?? UnsafePointer(table.row(Int(id))), dim)
                    total += weights[i]
                }
                if total > 0 { Vec.scale(hp, 1 / total, dim) }
                return
            }
            if let packed {
                for id in ids { Vec.add(hp, packed.row(Int(id)), dim) }
            } else {
                for id in ids { Vec.add(hp, table.row(Int(id)), dim) }
            }
            if !ids.isEmpty { Vec.scale(hp, 1 / Float(ids.count), dim) }
        }
        dense.flat.withUnsafeBufferPointer { fb in
            let f = fb.baseAddress!
            h.withUnsafeBufferPointer { hb in
                denseForward(f, input: hb.baseAddress!, probs: probs.baseAddress!, labels: L)
            }
        }
        softmax(probs.baseAddress!, L)
    }
}

extension Model {
    /// logits = W a + b with a = relu(W1 h + b1) (or a = h): one example, no dropout.
    func denseForward(_ f: UnsafePointer<Float>, input h: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>, labels L: Int) {
        let dim = dense.dim, hid = dense.hidden, inDim = dense.inDim
        var a = [Float](repeating: 0, count: inDim)
        a.withUnsafeMutableBufferPointer { ab in
            let ap = ab.baseAddress!
            if hid > 0 {
                for j in 0..<hid { ap[j] = f[j * (dim + 1) + dim] }
                // a[hid] = W1[hid x dim, ld dim+1] h + b1
                pp_blas_sgemv(Int32(hid), Int32(dim), 1, f, Int32(dim + 1), h, 1, 1, ap, 1)
                for j in 0..<hid where ap[j] < 0 { ap[j] = 0 }
            } else {
                for j in 0..<dim { ap[j] = h[j] }
            }
            let w = f + dense.outOffset
            for k in 0..<L { probs[k] = w[k * (inDim + 1) + inDim] }
            // logits[L] = W[L x inDim, ld inDim+1] a + b
            pp_blas_sgemv(Int32(L), Int32(inDim), 1, w, Int32(inDim + 1), ap, 1, 1, probs, 1)
        }
    }
}

/// In-place softmax of n logits; returns log of the normaliser relative to the max
/// (log-sum-exp = max + returned value).
@inlinable @inline(__always) @discardableResult
package func softmax(_ z: UnsafeMutablePointer<Float>, _ n: Int) -> (max: Float, logSum: Float) {
    var m = -Float.infinity
    for i in 0..<n where z[i] > m { m = z[i] }
    var s: Float = 0
    for i in 0..<n { let e = expf(z[i] - m); z[i] = e; s += e }
    let inv = 1 / s
    for i in 0..<n { z[i] *= inv }
    return (m, logf(s))
}
