// The one tokenizer every tool uses (ingest writes its output into shards; train, eval and
// predict run it on raw text). Rules, documented in docs/tokenizer.md:
//  - a token is a maximal run of letters, digits, combining marks and '_';
//  - everything else (whitespace, punctuation, symbols, control characters, invalid UTF-8)
//    separates tokens and is dropped;
//  - letters are lower-cased: ASCII by table, other scripts by Unicode's lowercase mapping;
//  - a token longer than `maxTokenBytes` is cut at the last scalar boundary before it.
// The output is the tokens joined by single spaces (0x20), the form shards store.

public enum Tokenizer {
    public static let maxTokenBytes = 100

    // 0 = separator, 1 = token byte (already lower-case), 2 = upper-case ASCII, 3 = non-ASCII lead/continuation
    private static let asciiClass: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 256)
        for c in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(c)] = 1 }
        for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] = 1 }
        t[Int(UInt8(ascii: "_"))] = 1
        for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(c)] = 2 }
        for c in 0x80...0xFF { t[c] = 3 }
        return t
    }()

    /// Tokenises `text` and appends the tokens, space-separated, to `out` (after a space when
    /// `out` is not empty and ends in a token). Returns the number of tokens appended.
    @discardableResult
    public static func tokenize(_ text: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Int {
        var count = 0
        var tokenStart = -1   // index in `out` where the current token began, -1 outside a token
        let n = text.count
        var i = 0
        asciiClass.withUnsafeBufferPointer { cls in
            @inline(__always) func beginToken() {
                if tokenStart < 0 {
                    if !out.isEmpty { out.append(0x20) }
                    tokenStart = out.count
                    count += 1
                }
            }
            @inline(__always) func endToken() { tokenStart = -1 }
            while i < n {
                let b = text[i]
                switch cls[Int(b)] {
                case 1:
                    beginToken()
                    if out.count - tokenStart < maxTokenBytes { out.append(b) }
                    i += 1
                case 2:
                    beginToken()
                    if out.count - tokenStart < maxTokenBytes { out.append(b | 0x20) }
                    i += 1
                case 0:
                    endToken()
                    i += 1
                default:
                    // Non-ASCII: decode one scalar (invalid sequences separate tokens).
                    let (scalar, len) = decodeScalar(text, at: i)
                    i += len
                    guard let s = scalar, isTokenScalar(s) else { endToken(); continue }
                    beginToken()
                    let lower = s.properties.lowercaseMapping
                    let bytes = Array(lower.utf8)
                    if out.count - tokenStart + bytes.count <= maxTokenBytes { out.append(contentsOf: bytes) }
                }
            }
        }
        return count
    }

    /// Convenience for tests and small inputs: the tokens of `text` as Strings.
    public static func tokens(_ text: String) -> [String] {
        var out = [UInt8]()
        var s = text
        s.withUTF8 { _ = tokenize(UnsafeRawBufferPointer($0), into: &out) }
        if out.isEmpty { return [] }
        return out.split(separator: 0x20).map { String(decoding: $0, as: UTF8.self) }
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
