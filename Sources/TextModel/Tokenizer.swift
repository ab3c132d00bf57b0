// The one tokenizer every tool uses (ingest writes its output into shards; train, eval and
// predict run it on raw text). Rules, documented in docs/tokenizer.md:
//  - a token is a maximal run of letters, digits, combining marks and '_';
//  - everything else (whitespace, punctuation, symbols, control characters, invalid UTF-8)
//    separates tokens and is dropped;
//  - letters are lower-cased: ASCII by table, other scripts by Unicode's lowercase mapping;
//  - a token longer than `maxTokenBytes` is cut after its last whole scalar that fits; the
//    rest of that run is dropped.
// The output is the tokens joined by single spaces (0x20), the form shards store.

import Shared

public enum Tokenizer {
    public static let maxTokenBytes = 100

    /// For each byte: its lower-case form when it is an ASCII token byte (a-z, 0-9, '_',
    /// A-Z lowered), 0 when it is an ASCII separator, 0x80 for every non-ASCII byte.
    /// Allocated once and never freed, so the hot loop reads it through a plain pointer
    /// (a closure around the loop would make the compiler reload its state on every store).
    private static let asciiLower: UnsafePointer<UInt8> = {
        let t = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        t.initialize(repeating: 0, count: 256)
        for c in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(c)] = c }
        for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] = c }
        t[Int(UInt8(ascii: "_"))] = UInt8(ascii: "_")
        for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(c)] = c | 0x20 }
        for c in 0x80...0xFF { t[c] = 0x80 }
        return UnsafePointer(t)
    }()

    /// The most bytes `tokenize` writes for `n` input bytes (plus one leading space): a
    /// lower-case mapping grows a scalar's UTF-8 by at most 1.5x (U+0130 İ, 2 bytes, becomes
    /// i + U+0307, 3 bytes), and each token adds one space.
    public static func outputBound(_ n: Int) -> Int { 2 * n + 2 }

    /// Tokenises `text` and appends the tokens, space-separated, to `out` (after a space when
    /// `out` is not empty). Returns the number of tokens appended.
    @discardableResult
    public static func tokenize(_ text: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Int {
        let base = out.count
        let bound = outputBound(text.count)
        out.append(contentsOf: repeatElement(0, count: bound))
        let (written, count) = out.withUnsafeMutableBufferPointer { b in
            tokenize(text, to: b.baseAddress! + base, leadingSpace: base > 0)
        }
        out.removeLast(bound - written)
        return count
    }

    /// The core: writes the tokens of `text` to `dst`, which must have room for
    /// `outputBound(text.count)` bytes; with `leadingSpace`, a space goes before the first
    /// token. Returns the bytes written and the number of tokens.
    public static func tokenize(_ text: UnsafeRawBufferPointer, to dst: UnsafeMutablePointer<UInt8>,
                                leadingSpace: Bool) -> (bytes: Int, tokens: Int) {
        let n = text.count
        guard n > 0, let src = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return (0, 0) }
        let limit = outputBound(n)
        var o = 0                 // bytes written
        var count = 0
        var tokenStart = -1       // where the current token began in dst, -1 outside a token
        var full = false          // the current token reached maxTokenBytes: drop the rest of it
        var i = 0
        let low = asciiLower
        while i < n {
            var l = low[Int(src[i])]
            if l == 0 { tokenStart = -1; i += 1; continue }               // ASCII separator
            if tokenStart < 0 && (l < 0x80 || startsToken(text, i)) {
                if o > 0 || leadingSpace { dst[o] = 0x20; o += 1 }
                tokenStart = o
                full = false
                count += 1
            }
            if l < 0x80 {
                // A run of ASCII token bytes, lower-cased by the table: copied while there is
                // room in the token, then skipped to its end.
                let room = full ? 0 : maxTokenBytes - (o - tokenStart)
                let stop = min(n, i &+ room)
                while i < stop {
                    l = low[Int(src[i])]
                    if l &- 1 >= 0x7F { break }          // not 1...0x7F: not an ASCII token byte
                    dst[o] = l
                    o &+= 1
                    i &+= 1
                }
                if i == stop && i < n {
                    while i < n && low[Int(src[i])] &- 1 < 0x7F { i &+= 1; full = true }
                }
                continue
            }
            // Non-ASCII: decode one scalar (an invalid sequence separates tokens).
            let (scalar, len) = decodeScalar(text, at: i)
            guard let s = scalar, isTokenScalar(s) else { tokenStart = -1; i += len; continue }
            if s.properties.changesWhenLowercased {
                var bytes: [UInt8] = []
                for u in s.properties.lowercaseMapping.unicodeScalars { UTF8.encode(u) { bytes.append($0) } }
                // (`limit` is never reached by Unicode's mappings; it only guards dst.)
                if !full && o - tokenStart + bytes.count <= maxTokenBytes && o + bytes.count <= limit {
                    for b in bytes { dst[o] = b; o += 1 }
                } else { full = true }
            } else if !full && o - tokenStart + len <= maxTokenBytes {
                for k in 0..<len { dst[o + k] = src[i + k] }
                o += len
            } else {
                full = true
            }
            i += len
        }
        return (o, count)
    }

    /// Convenience for tests and small inputs: the tokens of `text` as Strings.
    public static func tokens(_ text: String) -> [String] {
        var out = [UInt8]()
        var s = text
        s.withUTF8 { _ = tokenize(UnsafeRawBufferPointer($0), into: &out) }
        if out.isEmpty { return [] }
        return out.split(separator: 0x20).map { String(decoding: $0, as: UTF8.self) }
    }

    /// True when the non-ASCII scalar at `i` belongs to a token (slow path, once per token).
    static func startsToken(_ t: UnsafeRawBufferPointer, _ i: Int) -> Bool {
        guard let s = decodeScalar(t, at: i).0 else { return false }
        return isTokenScalar(s)
    }

    /// Letters, marks, numbers and connector punctuation ('_' and its kin) belong to tokens.
    @inline(__always)
    static func isTokenScalar(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
             .nonspacingMark, .spacingMark, .enclosingMark,
             .decimalNumber, .letterNumber, .otherNumber, .connectorPunctuation:
            return true
        default:
            return false
        }
    }

    /// Decodes one UTF-8 scalar at `i`; returns (nil, 1) on an invalid or truncated sequence.
    @inline(__always)
    public static func decodeScalar(_ t: UnsafeRawBufferPointer, at i: Int) -> (Unicode.Scalar?, Int) {
        let b0 = UInt32(t[i])
        let n = t.count
        func cont(_ k: Int) -> UInt32? {
            guard i + k < n else { return nil }
            let b = UInt32(t[i + k])
            return (b & 0xC0) == 0x80 ? (b & 0x3F) : nil
        }
        if b0 < 0x80 { return (Unicode.Scalar(b0), 1) }
        if b0 >= 0xC2 && b0 <= 0xDF {
            guard let c1 = cont(1) else { return (nil, 1) }
            return (Unicode.Scalar(((b0 & 0x1F) << 6) | c1), 2)
        }
        if b0 >= 0xE0 && b0 <= 0xEF {
            guard let c1 = cont(1), let c2 = cont(2) else { return (nil, 1) }
            let v = ((b0 & 0x0F) << 12) | (c1 << 6) | c2
            if v < 0x800 || (v >= 0xD800 && v <= 0xDFFF) { return (nil, 1) }
            return (Unicode.Scalar(v), 3)
        }
        if b0 >= 0xF0 && b0 <= 0xF4 {
            guard let c1 = cont(1), let c2 = cont(2), let c3 = cont(3) else { return (nil, 1) }
            let v = ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3
            if v < 0x10000 || v > 0x10FFFF { return (nil, 1) }
            return (Unicode.Scalar(v), 4)
        }
        return (nil, 1)
    }

    /// True when `bytes` is valid UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
    public static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            // Fast path: 8 ASCII bytes at a time.
            if i + 8 <= n {
                let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                if w & 0x8080_8080_8080_8080 == 0 { i += 8; continue }
            }
            if bytes[i] < 0x80 { i += 1; continue }
            let (s, len) = decodeScalar(bytes, at: i)
            if s == nil { return false }
            i += len
        }
        return true
    }
}
