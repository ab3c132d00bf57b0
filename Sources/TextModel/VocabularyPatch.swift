// A delta checkpoint's vocabulary as a patch against its base's (checkpoint format version 4,
// issue 19): on a trickle the whole vocabulary (slots, recency order, the candidates' counts)
// was ~78% of an hourly delta (558 KB raw of 718 KB in the 5-minute production-sim), while an
// hour changes a few slots, the front of the recency order and a few candidates' counts.
//
// The patch (VOCB of a version 4 file), against the base's vocabulary B:
//   u64 capacity, u64 size (>= B's size; slots are never freed)
//   varint S, then S x (u32 slot, u16 length, word bytes): slots whose word differs from B's
//           (new slots, and slots an eviction gave another word), increasing slot order
//   varint F, then F x u32 slot: the front of the recency order; the order is these F slots
//           followed by B's order without them. Exact because the vocabulary only ever moves a
//           slot to the front (a word seen, a word admitted into a new or evicted slot), so the
//           slots not touched since B keep B's relative order at the back.
//   varint C, then C x (u64 key, u32 count): candidates new or with another count, by key
//   varint G, then G x u64 key: B's candidates that are gone (admitted or pruned), by key
// Reading rebuilds the whole vocabulary's serialized form from B and the patch and parses it
// as a full one (Vocabulary.deserialize), so every check of a full vocabulary applies.
// Not here: when a patch is written (Checkpoint.encode, Trainer), the file layout (Checkpoint.swift).

import Shared

/// What a vocabulary patch is written against: the base's slots' keys, recency order and
/// candidates, taken when the base was written or loaded.
@usableFromInline package struct VocabularySnapshot: Sendable {
    let size: Int
    let keys: [UInt64]
    let order: [Int32]
    let candidates: [UInt64: UInt32]
}

extension Vocabulary {
    /// The recency order, most recent first.
    func recencyOrder() -> [Int32] {
        var out = [Int32]()
        out.reserveCapacity(size)
        var s = head
        while s >= 0 { out.append(s); s = next[Int(s)] }
        return out
    }

    /// The candidates (not yet admitted words) and their counts.
    func candidateCounts() -> [UInt64: UInt32] {
        var d = [UInt64: UInt32](minimumCapacity: candidates)
        for i in 0...mask where keys[i] != 0 && vals[i] < 0 { d[keys[i]] = UInt32(-vals[i]) }
        return d
    }

    package func snapshot() -> VocabularySnapshot {
        VocabularySnapshot(size: size, keys: Array(slotKey.prefix(size)), order: recencyOrder(), candidates: candidateCounts())
    }

    /// Writes the patch that turns `base` into this vocabulary (layout above).
    func serializePatch(against base: VocabularySnapshot, into out: inout ByteWriter) {
        out.u64(UInt64(capacity)); out.u64(UInt64(size))
        let changed = (0..<size).filter { $0 >= base.size || slotKey[$0] != base.keys[$0] }
        Checkpoint.varint(UInt64(changed.count), into: &out)
        for s in changed {
            out.u32(UInt32(s)); out.u16(UInt16(slotWord[s].count)); out.bytes(slotWord[s])
        }
        let front = Vocabulary.front(of: recencyOrder(), over: base.order)
        Checkpoint.varint(UInt64(front.count), into: &out)
        for s in front { out.u32(UInt32(s)) }
        let now = candidateCounts()
        let set = now.filter { base.candidates[$0.key] != $0.value }.sorted { $0.key < $1.key }
        Checkpoint.varint(UInt64(set.count), into: &out)
        for (k, c) in set { out.u64(k); out.u32(c) }
        let gone = base.candidates.keys.filter { now[$0] == nil }.sorted()
        Checkpoint.varint(UInt64(gone.count), into: &out)
        for k in gone { out.u64(k) }
    }

    /// The shortest front F of `order` such that `order` is F followed by `base` without F's
    /// slots (matching from the back; every slot `order` holds beyond `base`'s is new, so in F).
    static func front(of order: [Int32], over base: [Int32]) -> [Int32] {
        var i = order.count - 1, j = base.count - 1
        while i >= 0 && j >= 0 {
            if order[i] == base[j] { i -= 1 }
            j -= 1
        }
        return Array(order[0..<(i + 1)])
    }

    /// Reads a patch (layout above) over `base`, the base checkpoint's vocabulary; `r` is
    /// limited to the VOCB section. Every count is checked against the bytes left before
    /// anything is allocated for it.
    static func applyPatch(_ r: inout ByteReader, to base: Vocabulary, capacity: Int, minCount: Int) throws -> Vocabulary {
        guard base.capacity == capacity else { throw r.fail("vocabulary capacity \(base.capacity) of the base, config says \(capacity)") }
        var st = PatchState(base)
        try st.apply(&r, capacity: capacity)
        return try st.build(capacity: capacity, minCount: minCount, evictions: base.evictions, path: r.path)
    }

    /// Several patches in order (a chain's links, each with its file's path for errors) over
    /// `base`, the vocabulary built last: one vocabulary is built at the end, not one per link
    /// (a chain load, CheckpointLoad.loadChain).
    static func applyPatches(_ patches: [(bytes: [UInt8], path: String)], to base: Vocabulary, capacity: Int, minCount: Int) throws -> Vocabulary {
        var st = PatchState(base)
        for (bytes, path) in patches {
            try bytes.withUnsafeBytes { p in
                var r = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
                guard base.capacity == capacity else { throw r.fail("vocabulary capacity \(base.capacity) of the base, config says \(capacity)") }
                try st.apply(&r, capacity: capacity)
            }
        }
        return try st.build(capacity: capacity, minCount: minCount, evictions: base.evictions, path: patches.last?.path ?? "")
    }
}

/// A vocabulary as plain arrays while patches are applied: words by slot, the recency order,
/// the candidates' counts. Built into a Vocabulary (and checked as a full one) once.
struct PatchState {
    var words: [[UInt8]]
    var order: [Int32]
    var cands: [UInt64: UInt32]

    init(_ v: Vocabulary) {
        words = Array(v.slotWord.prefix(v.size))
        order = v.recencyOrder()
        cands = v.candidateCounts()
    }

    /// Applies one patch (layout at the top of the file); `r` is limited to its VOCB section.
    mutating func apply(_ r: inout ByteReader, capacity: Int) throws {
        let cap = try r.count("vocabulary capacity")
        guard cap == capacity else { throw r.fail("vocabulary capacity \(cap), config says \(capacity)") }
        let size = try r.count("vocabulary size")
        guard size <= capacity, size >= words.count else {
            throw r.fail("vocabulary patch size \(size): must be from the base's \(words.count) to the capacity \(capacity)")
        }
        let ns = try Checkpoint.readVarint(&r, "vocabulary patch slots")
        try r.fits(ns, of: 6, "vocabulary patch slots")
        var last = -1
        for _ in 0..<ns {
            let s = Int(try r.u32())
            guard s > last, s < size else { throw r.fail("vocabulary patch slot \(s) out of order or past the size \(size)") }
            let w = try r.bytes(Int(try r.u16()))
            if s < words.count {
                words[s] = w
            } else {
                guard s == words.count else { throw r.fail("vocabulary patch leaves slot \(words.count) without a word") }
                words.append(w)
            }
            last = s
        }
        guard words.count == size else { throw r.fail("vocabulary patch leaves slot \(words.count) without a word") }
        let nf = try Checkpoint.readVarint(&r, "vocabulary patch front")
        guard nf <= size else { throw r.fail("vocabulary patch front of \(nf) slots, size \(size)") }
        try r.fits(nf, of: 4, "vocabulary patch front")
        var inFront = [Bool](repeating: false, count: size)
        var next = [Int32]()
        next.reserveCapacity(size)
        for _ in 0..<nf {
            let s = Int(try r.u32())
            guard s < size, !inFront[s] else { throw r.fail("vocabulary patch front invalid") }
            inFront[s] = true
            next.append(Int32(s))
        }
        for s in order where !inFront[Int(s)] { next.append(s) }
        guard next.count == size else { throw r.fail("vocabulary patch order holds \(next.count) slots, size \(size)") }
        order = next
        let nc = try Checkpoint.readVarint(&r, "vocabulary patch candidates")
        try r.fits(nc, of: 12, "vocabulary patch candidates")
        for _ in 0..<nc {
            let k = try r.u64(), c = try r.u32()
            guard k != 0, c > 0, c < UInt32(Int32.max) else { throw r.fail("vocabulary candidate invalid") }
            cands[k] = c
        }
        let ng = try Checkpoint.readVarint(&r, "vocabulary patch removed candidates")
        try r.fits(ng, of: 8, "vocabulary patch removed candidates")
        for _ in 0..<ng {
            guard cands.removeValue(forKey: try r.u64()) != nil else { throw r.fail("vocabulary patch removes a candidate its base does not have") }
        }
        try r.expectEnd("VOCB")
    }

    /// The whole vocabulary, parsed as a full one (its checks: duplicates, the order).
    func build(capacity: Int, minCount: Int, evictions: Int, path: String) throws -> Vocabulary {
        var full = ByteWriter(capacity: 64 + words.reduce(0) { $0 + 6 + $1.count } + cands.count * 12)
        full.u64(UInt64(capacity)); full.u64(UInt64(words.count))
        for w in words {
            guard w.count <= Int(UInt16.max) else { throw PPError.corrupt(path, "vocabulary word too long") }
            full.u16(UInt16(w.count)); full.bytes(w)
        }
        for s in order { full.u32(UInt32(s)) }
        full.u64(UInt64(cands.count))
        for (k, c) in cands.sorted(by: { $0.key < $1.key }) { full.u64(k); full.u32(c) }
        return try full.buf.withUnsafeBytes { p in
            var fr = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
            let v = try Vocabulary.deserialize(&fr, capacity: capacity, minCount: minCount, evictions: evictions)
            try fr.expectEnd("VOCB")
            return v
        }
    }
}

extension Vocabulary {
    /// `applyPatch` on bytes (the fuzz target's entry: Fuzz/Targets/fuzz-checkpoint).
    package static func applyPatch(bytes: [UInt8], path: String, to base: Vocabulary) throws -> Vocabulary {
        try bytes.withUnsafeBytes { p in
            var r = ByteReader(bytes: p, pos: 0, end: p.count, path: path)
            return try applyPatch(&r, to: base, capacity: base.capacity, minCount: base.minCount)
        }
    }
}
