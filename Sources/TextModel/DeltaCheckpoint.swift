// Delta checkpoints (issue 19, part 2): a checkpoint whose meta names a `base` ("RUN/FILE", an
// older checkpoint of the same run and model) stores in its INPT section only the input rows
// (weights and accumulator) that changed since that base, and its data cursor as a patch
// against the base's; every other section is whole. pp-train's base is its previous
// checkpoint, so deltas form a chain: full, delta 1 (of the full), delta 2 (of delta 1), ...
// (session 14; before, every delta's base was the full checkpoint and its rows accumulated).
// Levels (session 15): a link that would make the chain deeper than `chainLimit` is written
// against the full checkpoint instead, with every row changed since it (a cumulative delta,
// depth 1), and the links after it chain to it; so a load reads the full checkpoint, at most
// one cumulative delta and at most chainLimit - 1 links, while most writes stay one interval's
// rows.
// Loading a delta loads its base first, down the chain to the full checkpoint, then lays each
// link's rows over it (CheckpointLoad.swift); a chain is at most `Checkpoint.maxChain` long and
// each base's file name sorts before its delta's, so a hostile chain cannot loop. pp-train writes
// a full checkpoint every `--full-every` checkpoints (a chain of at most fullEvery - 1 deltas,
// which bounds a load) or when a link's changed rows would be more than half of the full
// one's. This file holds the pieces: which rows changed (RowBits, set by the trainer's
// updates), how a base name is found on disk, and the write policy. It is not the file layout
// (Checkpoint.swift) nor retention's rule that keeps bases (pp-select: a checkpoint goes only
// after every delta naming it, so a kept checkpoint keeps its whole chain).

import Shared
import Foundation

/// A set of input rows, one bit per row (bit i % 64 of word i / 64). Written by one thread at
/// a time: each training worker has its own, merged by the trainer between batches.
@usableFromInline package final class RowBits: @unchecked Sendable {
    @usableFromInline package let rows: Int
    @usableFromInline package let wordCount: Int
    @usableFromInline package let words: UnsafeMutablePointer<UInt64>

    package init(rows: Int) {
        self.rows = rows
        wordCount = (rows + 63) / 64
        words = .allocate(capacity: max(wordCount, 1))
        words.initialize(repeating: 0, count: max(wordCount, 1))
    }

    deinit { words.deallocate() }

    @inlinable @inline(__always) package func insert(_ i: Int) { words[i >> 6] |= UInt64(1) << UInt64(i & 63) }
    @inlinable @inline(__always) package func contains(_ i: Int) -> Bool { words[i >> 6] & (UInt64(1) << UInt64(i & 63)) != 0 }

    package func removeAll() { words.update(repeating: 0, count: max(wordCount, 1)) }

    /// Takes in `other`'s rows and empties it.
    package func absorb(_ other: RowBits) {
        precondition(other.rows == rows)
        for w in 0..<wordCount where other.words[w] != 0 {
            words[w] |= other.words[w]
            other.words[w] = 0
        }
    }

    @usableFromInline package var count: Int {
        var n = 0
        for w in 0..<wordCount { n += words[w].nonzeroBitCount }
        return n
    }

    /// The INPT section's bitmap form: ceil(rows / 8) bytes, bit i % 8 of byte i / 8.
    @usableFromInline package var bitmap: [UInt8] {
        var out = [UInt8](repeating: 0, count: (rows + 7) / 8)
        for w in 0..<wordCount where words[w] != 0 {
            var x = words[w].littleEndian
            withUnsafeBytes(of: &x) { b in
                for k in 0..<8 where w * 8 + k < out.count { out[w * 8 + k] = b[k] }
            }
        }
        return out
    }

    /// The rows of an INPT bitmap (checked by Checkpoint.checkBitmap).
    package convenience init(rows: Int, bitmap: [UInt8]) {
        self.init(rows: rows)
        Checkpoint.forEachSetBit(bitmap) { insert($0) }
    }

    /// A new set with the rows of both (neither changes).
    package func union(_ other: RowBits) -> RowBits {
        precondition(other.rows == rows)
        let u = RowBits(rows: rows)
        for w in 0..<wordCount { u.words[w] = words[w] | other.words[w] }
        return u
    }

    /// Bitmap bytes OR-ed into `into` (both INPT bitmaps of the same table).
    package static func orBitmap(_ b: [UInt8], into a: inout [UInt8]) {
        precondition(a.count == b.count)
        for i in 0..<a.count { a[i] |= b[i] }
    }
}

/// When pp-train writes a delta rather than a full checkpoint.
public struct DeltaPolicy: Sendable, Equatable {
    /// Every this many checkpoints one is full (1: all full, no deltas).
    public var fullEvery: Int
    /// A delta is written only while its rows are at most this share of the base's stored rows.
    public var maxFraction: Double
    /// The deepest a chain of deltas gets: a delta that would be deeper is written against the
    /// full checkpoint with every row changed since it (depth 1). 1: every delta cumulative;
    /// fullEvery - 1 or more: one chain from the full checkpoint (the default of this API).
    public var chainLimit: Int
    public init(fullEvery: Int, maxFraction: Double = 0.5, chainLimit: Int = 100) {
        self.fullEvery = fullEvery; self.maxFraction = maxFraction; self.chainLimit = chainLimit
    }
    /// pp-train's default `--chain-limit`: a load reads the full checkpoint and at most six
    /// deltas (one cumulative, five links).
    public static let defaultChainLimit = 6
    /// Deltas off: every checkpoint full (what `Trainer.checkpointBytes(meta:)` writes).
    public static let allFull = DeltaPolicy(fullEvery: 1)
    /// pp-train's default: a full checkpoint, then up to 23 deltas (a day of hourly ones).
    public static let defaultFullEvery = 24
    /// The most `--full-every` may be: a chain a load follows (Checkpoint.maxChain) is one
    /// shorter.
    public static let maxFullEvery = Checkpoint.maxChain + 1
}

extension Checkpoint {
    /// "RUN/FILE" for a checkpoint at .../runs/RUN/checkpoints/FILE or .../runs/RUN/rewound/FILE
    /// (symbolic links resolved): the name a delta records as its base. nil elsewhere (a
    /// checkpoint outside a run's folders cannot be a base: the next checkpoint is full).
    static func runName(ofPath path: String) -> String? {
        let real = FileIO.realPath(path) ?? path
        let (dir, file) = FileIO.split(real)
        let (runDir, kind) = FileIO.split(dir)
        guard kind == "checkpoints" || kind == "rewound" else { return nil }
        let run = FileIO.split(runDir).name
        guard !run.isEmpty, !file.isEmpty else { return nil }
        return run + "/" + file
    }

    /// The file of the base "RUN/FILE" named by the delta at `path`: FILE beside the delta
    /// (symbolic links resolved), else runs/RUN/checkpoints/FILE, else runs/RUN/rewound/FILE
    /// under the runs/ folder that holds the delta's run. RUN and FILE must be plain names.
    /// nil when none is a regular file (the caller reports the base missing). `tried`: the
    /// paths looked at, for the message.
    package static func resolveBase(_ name: String, from path: String) -> (path: String?, tried: [String]) {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && !$0.hasPrefix(".") }) else { return (nil, []) }
        let run = parts[0], file = parts[1]
        let real = FileIO.realPath(path) ?? path
        let dir = FileIO.split(real).dir
        var tried = [dir + "/" + file]
        let (runDir, kind) = FileIO.split(dir)
        if kind == "checkpoints" || kind == "rewound" {
            let runs = FileIO.split(runDir).dir
            tried += [runs + "/" + run + "/checkpoints/" + file, runs + "/" + run + "/rewound/" + file]
        }
        for p in tried where FileIO.isRegularFile(p) { return (p, tried) }
        return (nil, tried)
    }
}
