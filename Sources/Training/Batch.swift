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
