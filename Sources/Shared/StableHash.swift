// A stable 64-bit hash of bytes: XXH64 (Yann Collet's xxHash, 64-bit variant), written out
// so that the same bytes give the same value in every process, on every machine, forever.
// pp-ingest uses it to split examples between shards/ and holdout/ and to drop duplicates;
// anything that must agree with those decisions uses it too. It is NOT Swift's `Hasher`,
// which is seeded per process, and it is not a cryptographic hash (SHA-256 is for files).

public enum StableHash {
    static let p1: UInt64 = 11400714785074694791
    static let p2: UInt64 = 14029467366897019727
    static let p3: UInt64 = 1609587929392839161
    static let p4: UInt64 = 9650029242287828579
    static let p5: UInt64 = 2870177450012600261

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    /// XXH64 of `bytes` with `seed` (the reference algorithm, little-endian reads).
    public static func xxh64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let n = bytes.count
        guard let base = bytes.baseAddress else { return avalanche(seed &+ p5) }
        @inline(__always) func r64(_ o: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        @inline(__always) func r32(_ o: Int) -> UInt64 { UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        var i = 0
        var h: UInt64
        if n >= 32 {
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            while i + 32 <= n {
                v1 = round(v1, r64(i)); v2 = round(v2, r64(i + 8))
                v3 = round(v3, r64(i + 16)); v4 = round(v4, r64(i + 24))
                i += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(h, v1); h = merge(h, v2); h = merge(h, v3); h = merge(h, v4)
        } else {
            h = seed &+ p5
        }
        h = h &+ UInt64(n)
        while i + 8 <= n {
            h ^= round(0, r64(i))
            h = rotl(h, 27) &* p1 &+ p4
            i += 8
        }
        if i + 4 <= n {
            h ^= r32(i) &* p1
            h = rotl(h, 23) &* p2 &+ p3
            i += 4
        }
        while i < n {
            h ^= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) &* p5
            h = rotl(h, 11) &* p1
            i += 1
        }
        return avalanche(h)
    }

    @inline(__always) static func avalanche(_ x: UInt64) -> UInt64 {
        var h = x
        h ^= h >> 33; h = h &* p2
        h ^= h >> 29; h = h &* p3
        h ^= h >> 32
        return h
    }

    public static func xxh64(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { xxh64($0, seed: seed) }
    }

    /// Maps a hash to [0, 1) using its top 53 bits: `unit(h) < f` selects a fraction f of
    /// all hashes, the same ones every time.
    @inline(__always) public static func unit(_ h: UInt64) -> Double {
        Double(h >> 11) * 0x1p-53
    }
}
