// The averaged weights (issue 19): an exponential moving average of the model's weights, kept
// beside the training weights by the trainer, written into checkpoints as the optional "AVGW"
// section, and used instead of the training weights by whatever deploys a checkpoint (pp-eval
// scoring and predict, pp-ingest's canary). It is not the optimiser (Trainer.swift) and does
// not change what the trainer learns: the training weights go on exactly as without it.
//
// Why: a fixed learning rate keeps mini-batch noise in the weights; an average of recent
// weights removes most of it (Polyak-Ruppert averaging) without the rate ever decaying, so a
// perpetual trainer can keep following drift while deploying a quieter model. The average must
// keep up with drift too: it forgets with a half-life counted in trained examples (the knob
// `average`, Knobs.swift's neighbour in ModelConfig.swift): an example trained H examples ago
// weighs half as much as the newest one.
//
// Sparse and lazy, so untouched rows cost nothing: each input row's average carries the clock
// (trained examples) at which it was last brought up to date. Between two updates of a row its
// weights w did not change, so its average at clock t is closed-form:
//     avg(t) = w + d^(t - s) (avg(s) - w),      d = 2^(-1/H)
// The trainer applies that just before it changes a row (`touch`), and readers apply it once
// at the checkpoint's clock (`fold`). The dense layers change with every example; their average
// is brought up to date at every merge of the workers' copies (every ~1024 examples per
// worker), taking the midpoint of the weights before and after the round as the weights held
// during it.
//
// Warm-up: the average starts H examples after it was switched on (`start`); until then it
// equals the weights. Otherwise a fresh run's average would drag the untrained start (zero
// rows) along for several half-lives: on a 1,800-example fixture with H = 1,000 the
// averaged model's held-out accuracy fell from 0.67 to 0.57 without a warm-up.

import Shared
#if canImport(Glibc)
import Glibc
#endif

/// The running average of a model's weights (input rows and dense layers).
@usableFromInline package final class WeightAverage: @unchecked Sendable {
    // Hogwild, as RowTable: workers update rows' averages without locks, like the rows.
    /// Half-life in trained examples (> 0).
    @usableFromInline package var halfLife: Double { didSet { rate = Float(1 / halfLife) } }
    /// 1 / halfLife, for `decay`.
    @usableFromInline private(set) var rate: Float
    /// Per input row: [mark: 2 floats' room for a UInt64][average: dim floats][padding]. mark 0
    /// = the row's average was never started (it equals the row's weights); otherwise the row's
    /// average was last brought up to date at clock mark - 1. Anonymous memory, zero until
    /// written (RowTable's mapping), so rows never touched cost nothing.
    @usableFromInline package let table: RowTable
    @usableFromInline package let dim: Int
    /// The dense layers' average (DenseLayers.flat's layout) and the clock + 1 of its last
    /// update (0: not started).
    @usableFromInline package var dense: [Float]
    @usableFromInline package var denseMark: UInt64
    /// The clock from which rows are averaged (switched on + H); before it the average
    /// equals the weights.
    @usableFromInline package var start: Int

    package init(rows: Int, dim: Int, halfLife: Double, dense: [Float], clock: Int) {
        self.halfLife = halfLife
        rate = Float(1 / halfLife)
        self.dim = dim
        start = clock + Int(halfLife.rounded(.up))
        // RowTable(dim: dim + 1) has stride >= dim + 2: the mark takes the first two floats.
        table = RowTable(rows: rows, dim: dim + 1)
        self.dense = dense
        denseMark = UInt64(clock) + 1
    }

    /// d^n for n examples: 2^(-n/H).
    @inlinable @inline(__always) package func decay(_ n: Int) -> Float { exp2f(-Float(n) * rate) }

    @inlinable @inline(__always) package func mark(_ i: Int) -> UInt64 {
        UnsafeRawPointer(table.row(i)).load(as: UInt64.self)
    }
    @inlinable @inline(__always) package func setMark(_ i: Int, _ m: UInt64) {
        UnsafeMutableRawPointer(table.row(i)).storeBytes(of: m, as: UInt64.self)
    }
    @inlinable @inline(__always) package func average(_ i: Int) -> UnsafeMutablePointer<Float> { table.row(i) + 2 }

    /// Brings row i's average up to `clock` with its current weights `w` (about to change).
    @inlinable @inline(__always) package func touch(_ i: Int, _ w: UnsafePointer<Float>, clock: Int) {
        if clock < start { return }
        let m = mark(i), now = UInt64(clock) + 1
        if m == now { return }
        let a = average(i)
        if m == 0 || m > now {
            a.update(from: w, count: dim)
        } else {
            Vec.blend(a, w, decay(Int(now - m)), dim)
        }
        setMark(i, now)
    }

    /// Starts row i's average afresh (a vocabulary slot given to a new word).
    @inlinable @inline(__always) package func reset(_ i: Int) { setMark(i, 0) }

    /// The dense layers after a round of training: `before` held until the round, `after`
    /// after it; the round's weights are taken as their midpoint. New output rows (labels
    /// added since the last call) start at their weights.
    package func updateDense(before: [Float], after: [Float], clock: Int) {
        if dense.count < after.count { dense.append(contentsOf: after[dense.count...]) }
        let now = UInt64(clock) + 1
        guard clock > start, denseMark != 0, denseMark < now, before.count == after.count else {
            dense = after
            denseMark = now
            return
        }
        let f = decay(Int(now - denseMark))
        var mid = before
        for i in 0..<mid.count { mid[i] = 0.5 * (before[i] + after[i]) }
        dense.withUnsafeMutableBufferPointer { a in
            mid.withUnsafeBufferPointer { m in Vec.blend(a.baseAddress!, m.baseAddress!, f, min(a.count, m.count)) }
        }
        denseMark = now
    }

    /// Rows whose average was started (mark != 0), in increasing order.
    package func startedRows() -> [Int] {
        var out = [Int]()
        for i in 0..<table.rows where mark(i) != 0 { out.append(i) }
        return out
    }
}

extension Vec {
    /// a = f a + (1 - f) w  (= w + f (a - w)): an exponential average's step.
    @inlinable @inline(__always)
    package static func blend(_ a: UnsafeMutablePointer<Float>, _ w: UnsafePointer<Float>, _ f: Float, _ n: Int) {
        var i = 0
        let ra = UnsafeMutableRawPointer(a), rw = UnsafeRawPointer(w)
        let vf = SIMD16<Float>(repeating: f)
        while i + 16 <= n {
            let x = ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            let y = rw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            ra.storeBytes(of: y.addingProduct(vf, x - y), toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i < n { a[i] = w[i] + f * (a[i] - w[i]); i += 1 }
    }
}

// MARK: The checkpoint section
//
//   "AVGW"  averaged weights (optional; written when the `average` knob is on, after TRNR):
//           f64 half-life (examples), u64 clock T (= TRNR's examples trained), u64 start
//           (the clock from which rows are averaged: the warm-up's end), u64 rows,
//           u32 dim, u64 started rows R, R x u32 row index (strictly increasing, < rows),
//           R x u64 mark (1...T+1: the clock + 1 of the row's last update), R x dim floats
//           (the averages); u64 dense count n (= DENS's), u64 dense mark (1...T+1), n floats.
// A reader brings every average up to T (`fold`); rows not listed average to their weights.
// Checkpoints written before the section existed have none and load as before (no average).

extension WeightAverage {
    package static let tag = "AVGW"

    /// The section (tag, length, payload) for a trainer at `clock`, as its length in bytes and
    /// a producer that feeds it in pieces (Checkpoint.streamCompress): the averages go
    /// straight from the table, with no table-sized copy.
    package func section(clock: Int) -> (count: Int, produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
        let rows = startedRows()
        var head = ByteWriter(capacity: 64)
        head.bytes(Array(WeightAverage.tag.utf8))
        let payload = 8 + 8 + 8 + 8 + 4 + 8 + rows.count * (4 + 8 + dim * 4) + 8 + 8 + dense.count * 4
        head.u64(UInt64(payload))
        head.u64(halfLife.bitPattern)
        head.u64(UInt64(clock))
        head.u64(UInt64(start))
        head.u64(UInt64(table.rows)); head.u32(UInt32(dim)); head.u64(UInt64(rows.count))
        let index = rows.map { UInt32($0).littleEndian }
        let marks = rows.map { mark($0).littleEndian }
        var tail = ByteWriter(capacity: 16 + dense.count * 4)
        tail.u64(UInt64(dense.count)); tail.u64(denseMark)
        tail.floats(dense)
        let total = head.buf.count + payload - (8 + 8 + 8 + 8 + 4 + 8)
        return (total, { feed in
            try head.buf.withUnsafeBytes { try feed($0) }
            try index.withUnsafeBytes { try feed($0) }
            try marks.withUnsafeBytes { try feed($0) }
            for i in rows { try feed(UnsafeRawBufferPointer(start: self.average(i), count: self.dim * 4)) }
            try tail.buf.withUnsafeBytes { try feed($0) }
        })
    }

    /// What a section holds, checked against the model it belongs to. The averages stay in
    /// the checkpoint's bytes (`averagesAt`, rows.count x dim floats) until used.
    package struct Parsed {
        var halfLife: Double
        var clock: Int
        var start: Int
        var rows: [Int]
        var marks: [UInt64]
        var averagesAt: Int
        var dense: [Float]
        var denseMark: UInt64
    }

    /// Reads and checks the section's payload: every count against the bytes left before
    /// anything is allocated, sizes against the model, row indices strictly increasing and
    /// inside the table, marks within the clock, every float finite.
    static func read(_ r: inout ByteReader, rows tableRows: Int, dim: Int, denseCount: Int, examples: Int) throws -> Parsed {
        let hl = Double(bitPattern: try r.u64())
        guard hl.isFinite, hl >= 1, hl <= Knobs.maxAverage else {
            throw r.fail("AVGW: half-life \(hl) out of range (1...\(Int64(Knobs.maxAverage)) examples)")
        }
        let clock = try r.count("AVGW clock")
        guard clock == examples else { throw r.fail("AVGW: clock \(clock), the trainer has trained \(examples) examples") }
        let start = try r.count("AVGW start")
        let rows = try r.count("AVGW rows"), d = Int(try r.u32())
        guard rows == tableRows, d == dim else { throw r.fail("AVGW: table \(rows) x \(d), the model's is \(tableRows) x \(dim)") }
        let n = try r.count("AVGW started rows")
        guard n <= rows else { throw r.fail("AVGW: \(n) started rows of \(rows)") }
        try r.fits(n, of: 4 + 8 + dim * 4, "AVGW started rows")
        var index = [Int](repeating: 0, count: n)
        var prev = -1
        for k in 0..<n {
            let i = Int(try r.u32())
            guard i > prev, i < rows else { throw r.fail("AVGW: row index \(i) after \(prev) (must increase, below \(rows))") }
            index[k] = i; prev = i
        }
        var marks = [UInt64](repeating: 0, count: n)
        let top = UInt64(clock) + 1
        for k in 0..<n {
            let m = try r.u64()
            guard m >= 1, m <= top else { throw r.fail("AVGW: row \(index[k]) mark \(m) outside 1...\(top)") }
            marks[k] = m
        }
        let at = r.pos
        try r.need(n * dim * 4)
        for j in 0..<(n * dim) where !r.bytes.loadUnaligned(fromByteOffset: at + 4 * j, as: Float.self).isFinite {
            throw r.fail("AVGW: non-finite average (row \(index[j / dim]))")
        }
        r.pos += n * dim * 4
        let nd = try r.count("AVGW dense count")
        guard nd == denseCount else { throw r.fail("AVGW: \(nd) dense averages for \(denseCount) dense weights") }
        let dm = try r.u64()
        guard dm >= 1, dm <= top else { throw r.fail("AVGW: dense mark \(dm) outside 1...\(top)") }
        let dense = try r.floats(nd)
        guard dense.allSatisfy({ $0.isFinite }) else { throw r.fail("AVGW: non-finite dense average") }
        try r.expectEnd(tag)
        return Parsed(halfLife: hl, clock: clock, start: start, rows: index, marks: marks, averagesAt: at, dense: dense, denseMark: dm)
    }

    /// The trainer's state from a parsed section (`bytes`: the checkpoint's, as parsed).
    package convenience init(_ p: Parsed, bytes: UnsafeRawBufferPointer, rows: Int, dim: Int) {
        self.init(rows: rows, dim: dim, halfLife: p.halfLife, dense: p.dense, clock: 0)
        denseMark = p.denseMark
        start = p.start
        for (k, i) in p.rows.enumerated() {
            setMark(i, p.marks[k])
            UnsafeMutableRawPointer(average(i)).copyMemory(from: bytes.baseAddress! + p.averagesAt + k * dim * 4, byteCount: dim * 4)
        }
    }

    /// Replaces the model's weights by their averages at the section's clock: what a
    /// deployed checkpoint predicts with.
    package static func fold(_ p: Parsed, bytes: UnsafeRawBufferPointer, into model: Model) {
        let dim = model.config.dim, t = model.table
        let top = UInt64(p.clock) + 1
        func decay(_ n: UInt64) -> Float { Float(exp2(-Double(n) / p.halfLife)) }
        var tmp = [Float](repeating: 0, count: dim)
        tmp.withUnsafeMutableBufferPointer { b in
            let a = b.baseAddress!
            for (k, i) in p.rows.enumerated() {
                // avg(T) = w + d^(T - s) (avg(s) - w), stored into the row.
                let w = t.row(i)
                UnsafeMutableRawPointer(a).copyMemory(from: bytes.baseAddress! + p.averagesAt + k * dim * 4, byteCount: dim * 4)
                Vec.blend(a, w, decay(top - p.marks[k]), dim)
                w.update(from: a, count: dim)
            }
        }
        var dense = p.dense
        model.dense.flat.withUnsafeBufferPointer { w in
            dense.withUnsafeMutableBufferPointer { a in Vec.blend(a.baseAddress!, w.baseAddress!, decay(top - p.denseMark), a.count) }
        }
        model.dense.flat = dense
    }
}
