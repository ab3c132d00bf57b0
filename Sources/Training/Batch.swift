// What the trainer trains on: a batch of (label, tokens) examples in the shard form, the
// result of training on it, and the growable scratch buffers of the workers (Worker.swift).

import TextModel
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

/// A batch read once before training (Trainer.read): where each example's tokens start, and
/// per token its fastText hash, vocabulary key, place in the batch's bytes, length and
/// vocabulary slot (-1: not admitted), and each example's label. It owns that memory (freed
/// with it), so the workers read plain pointers (Worker.Input).
final class BatchIndex {
    /// Tokens in the batch.
    let tokens: Int
    /// Example e's tokens are tokens exTok[e]..<exTok[e + 1] (examples + 1 entries).
    let exTok: UnsafeMutablePointer<Int>
    let tokHash: UnsafeMutablePointer<UInt32>
    let tokKey: UnsafeMutablePointer<UInt64>
    /// Where the token starts in the batch's bytes, and its length.
    let tokPos: UnsafeMutablePointer<Int32>
    let tokLen: UnsafeMutablePointer<Int32>
    let tokSlot: UnsafeMutablePointer<Int32>
    /// Per example: its label's output row.
    let labels: UnsafeMutablePointer<Int32>

    /// `exTok`: the examples' token starts, exTok[0] = 0, exTok[n] = all the tokens.
    init(exTok starts: [Int]) {
        let n = starts.count - 1
        tokens = starts[n]
        let m = max(tokens, 1)
        exTok = .allocate(capacity: n + 1)
        exTok.initialize(from: starts, count: n + 1)
        tokHash = .allocate(capacity: m); tokHash.initialize(repeating: 0, count: m)
        tokKey = .allocate(capacity: m); tokKey.initialize(repeating: 0, count: m)
        tokPos = .allocate(capacity: m); tokPos.initialize(repeating: 0, count: m)
        tokLen = .allocate(capacity: m); tokLen.initialize(repeating: 0, count: m)
        tokSlot = .allocate(capacity: m); tokSlot.initialize(repeating: -1, count: m)
        labels = .allocate(capacity: max(n, 1)); labels.initialize(repeating: 0, count: max(n, 1))
    }

    deinit {
        exTok.deallocate(); tokHash.deallocate(); tokKey.deallocate(); tokPos.deallocate()
        tokLen.deallocate(); tokSlot.deallocate(); labels.deallocate()
    }
}
