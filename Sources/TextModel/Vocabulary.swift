// The growing vocabulary: which words own a row of the input table (slots 0..<capacity), and
// the occurrence counts of words that do not yet. It is not the feature rule (Features.swift)
// and holds no weights (the trainer initialises a newly admitted word's row).
//
// - A word is known by a 64-bit FNV-1a key of its bytes (FeatureHash.key64); the bytes of
//   admitted words are kept too (checkpoints carry them; lookups use the key only, a
//   collision among ~1M words has odds of ~1e-7).
// - `observe` counts one occurrence. At `minCount` occurrences the word is admitted: it takes
//   the next free slot or, when all `capacity` slots are taken, the slot of the least recently
//   seen word, which is evicted (it falls back to its n-grams, and starts counting anew).
//   Recency is a doubly-linked list over the slots, moved on every occurrence (O(1)).
// - Memory stays bounded for words never admitted: when more than `candidateLimit` candidates
//   are counted, the words seen only once are dropped and the counts of the others halved
//   (rounding down, zeros dropped), repeated until at most half the limit remain. A rare word
//   may so need more than minCount occurrences in total; a frequent one is barely delayed.
// - Lookups are an open-addressing table (linear probing, power-of-two size, load <= 1/2,
//   backward-shift deletion). Values: >= 0 is an admitted word's slot, < 0 a candidate's
//   count negated. Reads (`slot(forKey:)`) are safe from several threads while nobody calls
//   `observe`.

import Shared
import CIntrinsics

public final class Vocabulary {
    public let capacity: Int
    public let minCount: Int
    public let candidateLimit: Int

    // Raw storage (no Swift array checks on the per-token path): the table, tableSize entries.
    // Internal, not private, and @usableFromInline: `observe` and `prefetch` inline into the
    // trainer's per-token loop in another module (Training).
    @usableFromInline var keys: UnsafeMutablePointer<UInt64>
    @usableFromInline var vals: UnsafeMutablePointer<Int32>
    @usableFromInline var mask: Int
    private var used = 0
    public private(set) var candidates = 0

    /// Slots in use (0..<size); the bytes and key of the word in each.
    public private(set) var size = 0
    var slotWord: [[UInt8]] = []
    var slotKey: [UInt64] = []
    // Recency list: head = most recently seen.
    @usableFromInline let prev: UnsafeMutablePointer<Int32>
    @usableFromInline let next: UnsafeMutablePointer<Int32>
    @usableFromInline var head: Int32 = -1
    @usableFromInline var tail: Int32 = -1
    /// Words admitted and evicted so far (for status and tests).
    public private(set) var evictions = 0

    public init(capacity: Int, minCount: Int, candidateLimit: Int? = nil) {
        self.capacity = capacity
        self.minCount = max(1, minCount)
        self.candidateLimit = max(16, candidateLimit ?? max(capacity, 1 << 16))
        keys = .allocate(capacity: 1024); keys.initialize(repeating: 0, count: 1024)
        vals = .allocate(capacity: 1024); vals.initialize(repeating: 0, count: 1024)
        mask = 1023
        prev = .allocate(capacity: max(capacity, 1)); prev.initialize(repeating: -1, count: max(capacity, 1))
        next = .allocate(capacity: max(capacity, 1)); next.initialize(repeating: -1, count: max(capacity, 1))
    }

    deinit {
        keys.deallocate(); vals.deallocate(); prev.deallocate(); next.deallocate()
    }

    @inlinable @inline(__always) static func mix(_ k: UInt64) -> Int {
        Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 20)
    }

    /// Table position of `key`, or of the empty place where it would go.
    @inlinable @inline(__always) func find(_ key: UInt64) -> Int {
        let keys = self.keys, mask = self.mask
        var i = Vocabulary.mix(key) & mask
        while true {
            let k = keys[i]
            if k == key || k == 0 { return i }
            i = (i + 1) & mask
        }
    }

    /// Asks for the table entry of `key` (the first probe) ahead of `observe`.
    @inlinable @inline(__always) public func prefetch(key: UInt64) {
        let i = Vocabulary.mix(key) & mask
        pp_prefetch(keys + i); pp_prefetch(vals + i)
    }

    /// The slot of an admitted word, or -1.
    @inlinable @inline(__always)
    public func slot(forKey key: UInt64) -> Int32 {
        let i = find(key)
        return keys[i] == key && vals[i] >= 0 ? vals[i] : -1
    }

    public func slot(of word: String) -> Int32 {
        var w = word
        return w.withUTF8 { slot(forKey: FeatureHash.key64($0.baseAddress!, $0.count)) }
    }

    /// The word owning `slot` (tests, inspection).
    public func word(atSlot slot: Int) -> String { String(decoding: slotWord[slot], as: UTF8.self) }

    /// Occurrences counted so far for a word not admitted (0 when unknown or admitted).
    public func candidateCount(of word: String) -> Int {
        var w = word
        let key = w.withUTF8 { FeatureHash.key64($0.baseAddress!, $0.count) }
        let i = find(key)
        return keys[i] == key && vals[i] < 0 ? Int(-vals[i]) : 0
    }

    public enum Seen { case known(Int32), candidate, admitted(Int32) }

    /// Counts one occurrence of the word (`bytes`, `key` = FeatureHash.key64). Returns its
    /// slot when admitted (`.admitted` when this occurrence admitted it: the caller
    /// initialises the row).
    @inlinable @inline(__always)
    public func observe(_ bytes: UnsafePointer<UInt8>, _ len: Int, key: UInt64) -> Seen {
        if capacity == 0 { return .candidate }   // no word rows at all: n-grams only
        let i = find(key)
        if keys[i] == key, vals[i] >= 0 { touch(vals[i]); return .known(vals[i]) }
        return observeUnadmitted(bytes, len, key: key, at: i)
    }

    /// `observe` for a word without a slot yet: a candidate counted up (and admitted at
    /// minCount) or a new key. `i` is `find(key)`.
    @usableFromInline func observeUnadmitted(_ bytes: UnsafePointer<UInt8>, _ len: Int, key: UInt64, at i: Int) -> Seen {
        var i = i
        if keys[i] == key {
            let c = -vals[i] + 1
            if Int(c) < minCount { vals[i] = -c; return .candidate }
            // Admit: the candidate entry becomes the slot entry.
            candidates -= 1
            let s = admit(bytes, len, key: key)
            i = find(key)   // eviction may have moved entries
            vals[i] = s
            return .admitted(s)
        }
        if minCount <= 1 {
            keys[i] = key; vals[i] = 0; used += 1
            let s = admit(bytes, len, key: key)
            vals[find(key)] = s
            growIfNeeded()
            return .admitted(s)
        }
        keys[i] = key; vals[i] = -1; used += 1; candidates += 1
        if candidates > candidateLimit { prune() } else { growIfNeeded() }
        return .candidate
    }

    /// Takes a slot for a word whose table entry exists (or is about to be set by the caller).
    private func admit(_ bytes: UnsafePointer<UInt8>, _ len: Int, key: UInt64) -> Int32 {
        let s: Int32
        if size < capacity {
            s = Int32(size)
            size += 1
            slotWord.append(Array(UnsafeBufferPointer(start: bytes, count: len)))
            slotKey.append(key)
        } else {
            s = tail
            unlink(s)
            remove(slotKey[Int(s)])
            evictions += 1
            slotWord[Int(s)] = Array(UnsafeBufferPointer(start: bytes, count: len))
            slotKey[Int(s)] = key
        }
        pushFront(s)
        return s
    }

    @inlinable @inline(__always) func unlink(_ s: Int32) {
        let p = prev[Int(s)], n = next[Int(s)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        prev[Int(s)] = -1; next[Int(s)] = -1
    }

    @inlinable @inline(__always) func pushFront(_ s: Int32) {
        prev[Int(s)] = -1
        next[Int(s)] = head
        if head >= 0 { prev[Int(head)] = s }
        head = s
        if tail < 0 { tail = s }
    }

    @inlinable @inline(__always) func touch(_ s: Int32) {
        if head == s { return }
        unlink(s)
        pushFront(s)
    }

    /// Backward-shift deletion (linear probing keeps no tombstones).
    private func remove(_ key: UInt64) {
        var i = find(key)
        guard keys[i] == key else { return }
        used -= 1
        var j = i
        while true {
            j = (j + 1) & mask
            if keys[j] == 0 { break }
            let home = Vocabulary.mix(keys[j]) & mask
            // Move j back to i when its home is not cyclically in (i, j].
            let between = i <= j ? (home > i && home <= j) : (home > i || home <= j)
            if !between {
                keys[i] = keys[j]; vals[i] = vals[j]
                i = j
            }
        }
        keys[i] = 0; vals[i] = 0
    }

    private func growIfNeeded() {
        if used * 2 > mask + 1 { rebuild(size: (mask + 1) * 2) }
    }

    private func rebuild(size n: Int) {
        let oldK = keys, oldV = vals, oldN = mask + 1
        keys = .allocate(capacity: n); keys.initialize(repeating: 0, count: n)
        vals = .allocate(capacity: n); vals.initialize(repeating: 0, count: n)
        mask = n - 1
        for i in 0..<oldN where oldK[i] != 0 {
            let j = find(oldK[i])
            keys[j] = oldK[i]; vals[j] = oldV[i]
        }
        oldK.deallocate(); oldV.deallocate()
    }

    /// Drops candidates seen once and halves the others until at most half the limit remain.
    private func prune() {
        while candidates > candidateLimit / 2 {
            var kept = 0
            for i in 0...mask where keys[i] != 0 && vals[i] < 0 {
                let c = -vals[i]
                let nc = c == 1 ? 0 : c / 2
                if nc == 0 { keys[i] = 0; vals[i] = 0; used -= 1 } else { vals[i] = -nc; kept += 1 }
            }
            candidates = kept
        }
        // Deleting in place broke probe chains: rebuild at a size fitting what is left.
        var n = 1024
        while n < used * 2 { n *= 2 }
        rebuild(size: n)
    }

    func setEvictions(_ n: Int) { evictions = n }

    // MARK: Serialisation (Checkpoint.swift)

    /// Appends: u64 capacity, u64 size, per slot (u16 length, bytes), recency order head to
    /// tail (size x u32), u64 candidates, then candidates sorted by key (u64 key, u32 count).
    func serialize(into out: inout ByteWriter) {
        out.u64(UInt64(capacity)); out.u64(UInt64(size))
        for s in 0..<size {
            out.u16(UInt16(slotWord[s].count))
            out.bytes(slotWord[s])
        }
        var s = head
        while s >= 0 { out.u32(UInt32(s)); s = next[Int(s)] }
        var cands: [(UInt64, UInt32)] = []
        cands.reserveCapacity(candidates)
        for i in 0...mask where keys[i] != 0 && vals[i] < 0 { cands.append((keys[i], UInt32(-vals[i]))) }
        cands.sort { $0.0 < $1.0 }
        out.u64(UInt64(cands.count))
        for (k, c) in cands { out.u64(k); out.u32(c) }
    }

    /// Reads what `serialize` wrote; `capacity` must match the model's.
    static func deserialize(_ r: inout ByteReader, capacity: Int, minCount: Int, evictions: Int) throws -> Vocabulary {
        let cap = try r.count("vocabulary capacity")
        guard cap == capacity else { throw r.fail("vocabulary capacity \(cap), config says \(capacity)") }
        let size = try r.count("vocabulary size")
        guard size <= capacity else { throw r.fail("vocabulary size \(size) above capacity \(capacity)") }
        // Each slot takes at least 6 bytes (u16 length, u32 in the recency list).
        try r.fits(size, of: 6, "vocabulary size")
        let v = Vocabulary(capacity: capacity, minCount: minCount)
        var n = 1024
        while n < size * 2 + 2 { n *= 2 }
        v.rebuild(size: n)
        for s in 0..<size {
            let len = Int(try r.u16())
            let w = try r.bytes(len)
            let key = w.withUnsafeBufferPointer { FeatureHash.key64($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, len) }
            v.slotWord.append(w); v.slotKey.append(key)
            let i = v.find(key)
            guard v.keys[i] == 0 else { throw r.fail("vocabulary word at slot \(s) duplicated") }
            v.keys[i] = key; v.vals[i] = Int32(s); v.used += 1
            v.growIfNeeded()
        }
        v.size = size
        var order = [Int32]()
        order.reserveCapacity(size)
        var seen = [Bool](repeating: false, count: size)
        for _ in 0..<size {
            let s = Int(try r.u32())
            guard s < size, !seen[s] else { throw r.fail("vocabulary recency list invalid") }
            seen[s] = true
            order.append(Int32(s))
        }
        // Rebuild the list: push from the tail end so order[0] ends at the head.
        for s in order.reversed() { v.pushFront(s) }
        let nc = try r.count("vocabulary candidates")
        try r.fits(nc, of: 12, "vocabulary candidates")
        for _ in 0..<nc {
            let k = try r.u64(), c = try r.u32()
            guard k != 0, c > 0, c < UInt32(Int32.max) else { throw r.fail("vocabulary candidate invalid") }
            let i = v.find(k)
            guard v.keys[i] == 0 else { throw r.fail("vocabulary candidate duplicated") }
            v.keys[i] = k; v.vals[i] = -Int32(c); v.used += 1; v.candidates += 1
            v.growIfNeeded()
        }
        v.evictions = evictions
        return v
    }
}
