// The input formats pp-ingest accepts, parsed and validated line by line: JSON Lines
// (`{"text": ..., "label": ..., "id"?: ..., "ts"?: ...}`) and fastText lines
// (`__label__X text`), plain or zstd-compressed (ChunkReader detects which). pp-ingest and
// `pp-eval --data RAWFILE` both go through here, so a line is good or bad for the same reason
// in both. The rules are listed in docs/formats.md ("Input lines").
//
// This is a hand-written scanner over bytes (JSONDecoder runs at 60-80 MB/s; this at several
// hundred). It does not build a JSON tree: it checks the whole line's syntax, keeps the
// byte ranges of the four fields it knows, and skips every other field after checking it.
// It is not a general JSON parser and it does not decide what happens to good examples
// (holdout split, shards): that is the caller's business.

import Shared
import Crypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a line was refused. The raw values are the keys of pp-ingest's `bad` counts and of
/// `NAME.reason.json`; they never change meaning.
public enum InputBadReason: String, CaseIterable, Sendable, Comparable {
    case invalidUTF8 = "invalid_utf8"
    case lineTooLong = "line_too_long"
    case unknownFormat = "unknown_format"
    case badJSON = "bad_json"
    case missingLabel = "missing_label"
    case labelNotString = "label_not_string"
    case emptyLabel = "empty_label"
    case labelWhitespace = "label_whitespace"
    case labelTooLong = "label_too_long"
    case multipleLabels = "multiple_labels"
    case missingText = "missing_text"
    case textNotString = "text_not_string"
    case textTooLong = "text_too_long"
    case emptyText = "empty_text"
    case badID = "bad_id"
    case badTS = "bad_ts"

    public static func < (a: InputBadReason, b: InputBadReason) -> Bool { a.rawValue < b.rawValue }
}

/// One refused line: its 1-based number, the reason code and a one-line human explanation.
public struct InputLineError: Sendable, Equatable {
    public let line: Int
    public let reason: InputBadReason
    public let detail: String

    public init(line: Int, reason: InputBadReason, detail: String) {
        self.line = line; self.reason = reason; self.detail = detail
    }

    /// The first `max` bytes of a raw line as text (invalid UTF-8 shown as U+FFFD), for
    /// error reports.
    public static func excerpt(_ raw: UnsafeRawBufferPointer, max: Int = 120) -> String {
        let cut = UnsafeRawBufferPointer(rebasing: raw[0..<min(raw.count, max)])
        return String(decoding: cut, as: UTF8.self) + (raw.count > max ? "..." : "")
    }
}

/// One good example. The buffers point into the parser's memory and are valid only until
/// the parser reads the next line (i.e. during the callback): copy what you keep.
public struct InputExample {
    /// 1-based line number in the (decompressed) input.
    public let line: Int
    /// The label, valid UTF-8, 1-64 bytes, no whitespace or control characters.
    public let label: UnsafeRawBufferPointer
    /// The text after JSON unescaping (fastText: the rest of the line), valid UTF-8.
    public let text: UnsafeRawBufferPointer
    /// The normalised tokens joined by single spaces (Tokenizer; the shard form), never empty.
    public let tokens: UnsafeRawBufferPointer
    public let tokenCount: Int
    /// StableHash.xxh64 of `tokens`: decides the holdout split and duplicates.
    public let tokenHash: UInt64
    /// The `id` field (a string's content, or a number as written), when present.
    public let id: UnsafeRawBufferPointer?
    /// The `ts` field as Unix seconds, when present.
    public let ts: Int64?

    public var labelString: String { String(decoding: label, as: UTF8.self) }
    public var tokenString: String { String(decoding: tokens, as: UTF8.self) }
}

/// What one line turned out to be.
public enum InputLineOutcome {
    /// Empty or only spaces/tabs: skipped, neither good nor bad.
    case blank
    case example(InputExample)
    /// Same tokens as an earlier example of this input (the first one is kept).
    case duplicate(line: Int)
    case bad(InputLineError)
}

public struct InputOptions: Sendable {
    /// Longest text accepted, in bytes of UTF-8 after unescaping (`--max-text-bytes`).
    public var maxTextBytes: Int = 65536
    /// Drop examples whose tokens equal an earlier example's of the same input.
    public var dedupe: Bool = true
    /// Longest label accepted, in bytes (fixed by the contract).
    public static let maxLabelBytes = 64

    public init(maxTextBytes: Int = 65536, dedupe: Bool = true) {
        self.maxTextBytes = maxTextBytes
        self.dedupe = dedupe
    }

    /// A line longer than this is refused (`line_too_long`) without being held in memory:
    /// room for a text of `maxTextBytes` escaped at worst (`\u00XX`, 6 bytes per byte) is
    /// not needed for real data, so 8x the text limit plus 64 KiB for the other fields.
    public var maxLineBytes: Int { 8 * maxTextBytes + 65536 }
}

/// Counts over one input, as pp-ingest reports them.
public struct InputSummary: Sendable {
    /// Lines read (a last line without a newline counts).
    public var lines = 0
    public var blankLines = 0
    /// Good examples (after dropping duplicates).
    public var examples = 0
    public var duplicates = 0
    public var badLines = 0
    public var bad: [InputBadReason: Int] = [:]
    /// Bytes of content read (after zstd decompression).
    public var bytes = 0
    /// SHA-256 (hex) of the content (after zstd decompression); set by `parse`.
    public var sha256 = ""

    public init() {}

    /// Lines that are not blank: the denominator of the bad-line share.
    public var contentLines: Int { lines - blankLines }
    /// Bad lines over non-blank lines (0 for an input without any).
    public var badShare: Double { contentLines == 0 ? 0 : Double(badLines) / Double(contentLines) }
}

/// Parses and validates inputs line by line. One parser per input (it remembers the
/// examples it has seen, to drop duplicates); not thread-safe.
public final class InputParser {
    public let options: InputOptions
    private var textBuf = [UInt8]()
    private var labelBuf = [UInt8]()
    private var idBuf = [UInt8]()
    private var keyBuf = [UInt8]()
    /// The tokens of the current line: room for the tokens of the longest text accepted.
    private let tokenMem: UnsafeMutablePointer<UInt8>
    private var seen = Set<UInt64>()

    public init(options: InputOptions = InputOptions()) {
        self.options = options
        tokenMem = .allocate(capacity: Tokenizer.outputBound(options.maxTextBytes))
    }

    deinit { tokenMem.deallocate() }

    /// Forgets the examples seen so far (the next input starts a new batch).
    public func reset() { seen.removeAll(keepingCapacity: true) }

    // MARK: - Streaming a whole input

    /// Reads `reader` to the end, calling `example` for each good example and `bad` for each
    /// refused line (with the raw line, possibly cut, valid during the call). Returns the
    /// counts and the content's SHA-256. Memory stays bounded by `options.maxLineBytes` plus
    /// the reader's chunk, whatever the input size. Errors thrown by the reader (a truncated
    /// zstd frame, a read error) or by the callbacks propagate.
    public func parse(_ reader: ChunkReader,
                      example: (InputExample) throws -> Void,
                      bad: (InputLineError, UnsafeRawBufferPointer) throws -> Void) throws -> InputSummary {
        var summary = InputSummary()
        var sha = SHA256()
        var pending = [UInt8]()        // a line that spans chunks
        var discarding = false         // inside a line already known to be too long
        var discardedBytes = 0
        var lineNo = 0
        let maxLine = options.maxLineBytes

        func deliver(_ outcome: InputLineOutcome, raw: UnsafeRawBufferPointer) throws {
            switch outcome {
            case .blank: summary.blankLines += 1
            case .example(let e): summary.examples += 1; try example(e)
            case .duplicate: summary.duplicates += 1
            case .bad(let e):
                summary.badLines += 1
                summary.bad[e.reason, default: 0] += 1
                try bad(e, raw)
            }
        }
        func tooLong(_ raw: UnsafeRawBufferPointer, _ size: Int) throws {
            // Only the line's beginning is handed out (it is all an error report needs).
            try deliver(.bad(InputLineError(line: lineNo, reason: .lineTooLong,
                                            detail: "line longer than \(maxLine) bytes (\(size)+ bytes)")),
                        raw: UnsafeRawBufferPointer(rebasing: raw[0..<min(raw.count, 256)]))
        }

        while try reader.next({ chunk in
            sha.update(bufferPointer: chunk)
            summary.bytes += chunk.count
            guard let base = chunk.baseAddress else { return }
            let n = chunk.count
            var start = 0
            while start < n {
                guard let nl = memchr(base + start, 0x0A, n - start) else {
                    // No newline in the rest of this chunk: carry it over.
                    let rest = n - start
                    if discarding {
                        discardedBytes += rest
                    } else if pending.count + rest > maxLine {
                        discarding = true
                        discardedBytes = pending.count + rest
                        if pending.isEmpty { pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[start..<min(n, start + 256)])) }
                    } else {
                        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[start..<n]))
                    }
                    break
                }
                let end = UnsafeRawPointer(nl) - base
                lineNo += 1
                summary.lines += 1
                let piece = UnsafeRawBufferPointer(rebasing: chunk[start..<end])
                if discarding {
                    try pending.withUnsafeBytes { try tooLong($0, discardedBytes + piece.count) }
                    discarding = false
                    pending.removeAll(keepingCapacity: true)
                } else if pending.isEmpty {
                    if piece.count > maxLine { try tooLong(piece, piece.count) }
                    else { try deliver(parseLine(piece, number: lineNo), raw: piece) }
                } else if pending.count + piece.count > maxLine {
                    try pending.withUnsafeBytes { try tooLong($0, pending.count + piece.count) }
                    pending.removeAll(keepingCapacity: true)
                } else {
                    pending.append(contentsOf: piece)
                    try pending.withUnsafeBytes { whole in try deliver(parseLine(whole, number: lineNo), raw: whole) }
                    pending.removeAll(keepingCapacity: true)
                }
                start = end + 1
            }
        }) {}
        // A last line without a newline.
        if discarding || !pending.isEmpty {
            lineNo += 1
            summary.lines += 1
            if discarding {
                try pending.withUnsafeBytes { try tooLong($0, discardedBytes) }
            } else {
                try pending.withUnsafeBytes { whole in try deliver(parseLine(whole, number: lineNo), raw: whole) }
            }
        }
        summary.sha256 = sha.finalize().map { hexDigits[Int($0 >> 4)] + hexDigits[Int($0 & 15)] }.joined()
        return summary
    }

    private let hexDigits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]

    /// An input read whole into memory, for pp-eval's `--data RAWFILE` and for tests: the
    /// good examples (duplicates dropped), the counts and the first `keepErrors` errors.
    public struct Loaded {
        public var examples: [(label: String, tokens: [UInt8], ts: Int64?)] = []
        public var summary = InputSummary()
        public var errors: [InputLineError] = []
    }

    /// Parses the file at `path` ("-" = stdin, plain or zstd) into memory.
    public static func load(path: String, options: InputOptions = InputOptions(), keepErrors: Int = 20) throws -> Loaded {
        let parser = InputParser(options: options)
        let reader = try ChunkReader(path: path)
        var out = Loaded()
        var labelCache: (bytes: [UInt8], string: String) = ([], "")
        out.summary = try parser.parse(reader, example: { e in
            if !labelCache.bytes.elementsEqual(e.label) { labelCache = (Array(e.label), e.labelString) }
            out.examples.append((labelCache.string, Array(e.tokens), e.ts))
        }, bad: { e, _ in
            if out.errors.count < keepErrors { out.errors.append(e) }
        })
        return out
    }

    // MARK: - One line

    /// Parses one line (without its newline). The example's buffers are valid until the
    /// next call.
    public func parseLine(_ raw: UnsafeRawBufferPointer, number: Int) -> InputLineOutcome {
        guard var p = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return .blank }
        var n = raw.count
        if n > 0 && p[n - 1] == 0x0D { n -= 1 }                                   // CRLF
        if number == 1 && n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF { // UTF-8 BOM
            p += 3; n -= 3
        }
        var i = 0
        while i < n && (p[i] == 0x20 || p[i] == 0x09) { i += 1 }
        if i == n { return .blank }
        let line = UnsafeRawBufferPointer(start: p, count: n)
        if !Tokenizer.isValidUTF8(line) {
            return bad(number, .invalidUTF8, "invalid UTF-8 at byte \(firstInvalidUTF8(line) + 1)")
        }
        if p[i] == UInt8(ascii: "{") {
            return parseJSON(p, n, number)
        }
        if n - i >= 9 && memcmp(p + i, InputParser.labelPrefix, 9) == 0 {
            return parseFastText(p, n, from: i, number)
        }
        return bad(number, .unknownFormat, "neither a JSON object nor a fastText line (__label__X text)")
    }

    static let labelPrefix: [UInt8] = Array("__label__".utf8)

    @inline(__always) private func bad(_ line: Int, _ r: InputBadReason, _ d: String) -> InputLineOutcome {
        .bad(InputLineError(line: line, reason: r, detail: d))
    }

    private func firstInvalidUTF8(_ b: UnsafeRawBufferPointer) -> Int {
        var i = 0
        while i < b.count {
            if b[i] < 0x80 { i += 1; continue }
            let (s, len) = Tokenizer.decodeScalar(b, at: i)
            if s == nil { return i }
            i += len
        }
        return b.count
    }

    // MARK: fastText

    private func parseFastText(_ p: UnsafePointer<UInt8>, _ n: Int, from: Int, _ number: Int) -> InputLineOutcome {
        var i = from + 9
        let labelStart = i
        while i < n && p[i] != 0x20 && p[i] != 0x09 { i += 1 }
        let label = UnsafeRawBufferPointer(start: p + labelStart, count: i - labelStart)
        while i < n && (p[i] == 0x20 || p[i] == 0x09) { i += 1 }
        if n - i >= 9 && memcmp(p + i, InputParser.labelPrefix, 9) == 0 {
            return bad(number, .multipleLabels, "several labels (__label__...) on one line; this classifier takes one label per example")
        }
        let text = UnsafeRawBufferPointer(start: p + i, count: n - i)
        return finish(number, label: label, text: text, id: nil, ts: nil)
    }

    // MARK: checks common to both formats

    private func finish(_ number: Int, label: UnsafeRawBufferPointer, text: UnsafeRawBufferPointer,
                        id: UnsafeRawBufferPointer?, ts: Int64?) -> InputLineOutcome {
        if label.isEmpty { return bad(number, .emptyLabel, "empty label") }
        if label.count > InputOptions.maxLabelBytes {
            return bad(number, .labelTooLong, "label longer than \(InputOptions.maxLabelBytes) bytes (\(label.count))")
        }
        if let why = labelCharProblem(label) { return bad(number, .labelWhitespace, "label contains \(why)") }
        if text.count > options.maxTextBytes {
            return bad(number, .textTooLong, "text longer than \(options.maxTextBytes) bytes (\(text.count))")
        }
        let (written, count) = Tokenizer.tokenize(text, to: tokenMem, leadingSpace: false)
        if count == 0 { return bad(number, .emptyText, "text has no tokens (empty, or only punctuation and spaces)") }
        let tokens = UnsafeRawBufferPointer(start: tokenMem, count: written)
        let h = StableHash.xxh64(tokens)
        if options.dedupe && !seen.insert(h).inserted { return .duplicate(line: number) }
        return .example(InputExample(line: number, label: label, text: text, tokens: tokens, tokenCount: count,
                                     tokenHash: h, id: id, ts: ts))
    }

    /// nil when the label is made of visible characters only; else what is wrong with it.
    private func labelCharProblem(_ label: UnsafeRawBufferPointer) -> String? {
        var i = 0
        while i < label.count {
            let b = label[i]
            if b < 0x80 {
                if b <= 0x20 || b == 0x7F { return b == 0x20 || (b >= 0x09 && b <= 0x0D) ? "whitespace" : "a control character" }
                i += 1
                continue
            }
            let (s, len) = Tokenizer.decodeScalar(label, at: i)
            guard let sc = s else { return "invalid UTF-8" }
            if sc.properties.isWhitespace { return "whitespace (U+\(String(sc.value, radix: 16, uppercase: true)))" }
            switch sc.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator:
                return "an invisible or control character (U+\(String(sc.value, radix: 16, uppercase: true)))"
            default: break
            }
            i += len
        }
        return nil
    }

    // MARK: JSON Lines

    private struct SyntaxError: Error { let message: String }

    /// A JSON value as far as this parser cares.
    private enum Value {
        case absent
        case string(start: Int, end: Int, escaped: Bool)   // content between the quotes
        case number(start: Int, end: Int)
        case null
        case other(String)                                  // "an object", "an array", "a boolean"

        var kind: String {
            switch self {
            case .absent: return "absent"
            case .string: return "a string"
            case .number: return "a number"
            case .null: return "null"
            case .other(let k): return k
            }
        }
    }

    private func parseJSON(_ p: UnsafePointer<UInt8>, _ n: Int, _ number: Int) -> InputLineOutcome {
        var scan = JSONScanner(p: p, n: n)
        var text = Value.absent, label = Value.absent, id = Value.absent, ts = Value.absent
        do {
            try scan.object { key, value in
                switch try keyName(key, p) {
                case 1: if case .absent = text { text = value } else { throw SyntaxError(message: "duplicate key \"text\"") }
                case 2: if case .absent = label { label = value } else { throw SyntaxError(message: "duplicate key \"label\"") }
                case 3: if case .absent = id { id = value } else { throw SyntaxError(message: "duplicate key \"id\"") }
                case 4: if case .absent = ts { ts = value } else { throw SyntaxError(message: "duplicate key \"ts\"") }
                default: break
                }
            }
        } catch let e as SyntaxError {
            return bad(number, .badJSON, "broken JSON: \(e.message)")
        } catch {
            return bad(number, .badJSON, "broken JSON: \(error)")
        }
        // Fields: label first, then text, id, ts.
        let labelBytes: UnsafeRawBufferPointer
        switch label {
        case .absent: return bad(number, .missingLabel, "no \"label\" field")
        case .string(let s, let e, let esc):
            do { labelBytes = try stringBytes(p, s, e, esc, into: &labelBuf) }
            catch { return bad(number, .badJSON, "broken JSON: \((error as? SyntaxError)?.message ?? "\(error)")") }
        default: return bad(number, .labelNotString, "\"label\" is \(label.kind), not a string")
        }
        let textBytes: UnsafeRawBufferPointer
        switch text {
        case .absent: return bad(number, .missingText, "no \"text\" field")
        case .string(let s, let e, let esc):
            do { textBytes = try stringBytes(p, s, e, esc, into: &textBuf) }
            catch { return bad(number, .badJSON, "broken JSON: \((error as? SyntaxError)?.message ?? "\(error)")") }
        default: return bad(number, .textNotString, "\"text\" is \(text.kind), not a string")
        }
        var idBytes: UnsafeRawBufferPointer? = nil
        switch id {
        case .absent, .null: break
        case .string(let s, let e, let esc):
            do { idBytes = try stringBytes(p, s, e, esc, into: &idBuf) }
            catch { return bad(number, .badJSON, "broken JSON: \((error as? SyntaxError)?.message ?? "\(error)")") }
        case .number(let s, let e): idBytes = UnsafeRawBufferPointer(start: p + s, count: e - s)
        default: return bad(number, .badID, "\"id\" is \(id.kind), not a string or number")
        }
        var tsValue: Int64? = nil
        switch ts {
        case .absent, .null: break
        case .number(let s, let e):
            guard let v = parseSeconds(p, s, e) else {
                return bad(number, .badTS, "\"ts\" number out of range")
            }
            tsValue = v
        case .string(let s, let e, let esc):
            let raw: UnsafeRawBufferPointer
            do { raw = try stringBytes(p, s, e, esc, into: &keyBuf) }
            catch { return bad(number, .badJSON, "broken JSON: \((error as? SyntaxError)?.message ?? "\(error)")") }
            guard let v = Clock.parseISO(String(decoding: raw, as: UTF8.self)) else {
                return bad(number, .badTS, "\"ts\" is not an ISO-8601 time (e.g. 2024-01-31T12:00:00Z)")
            }
            tsValue = v
        default: return bad(number, .badTS, "\"ts\" is \(ts.kind), not a number of seconds or an ISO-8601 string")
        }
        return finish(number, label: labelBytes, text: textBytes, id: idBytes, ts: tsValue)
    }

    /// 1 text, 2 label, 3 id, 4 ts, 0 anything else.
    private func keyName(_ key: Value, _ p: UnsafePointer<UInt8>) throws -> Int {
        guard case .string(let s, let e, let esc) = key else { return 0 }
        let k = esc ? try stringBytes(p, s, e, true, into: &keyBuf) : UnsafeRawBufferPointer(start: p + s, count: e - s)
        switch k.count {
        case 2: return (k[0] == 0x69 && k[1] == 0x64) ? 3 : (k[0] == 0x74 && k[1] == 0x73) ? 4 : 0          // id, ts
        case 4: return (k[0] == 0x74 && k[1] == 0x65 && k[2] == 0x78 && k[3] == 0x74) ? 1 : 0               // text
        case 5: return (k[0] == 0x6C && k[1] == 0x61 && k[2] == 0x62 && k[3] == 0x65 && k[4] == 0x6C) ? 2 : 0 // label
        default: return 0
        }
    }

    /// The content of a string value: the bytes in place when it has no escapes, else the
    /// unescaped bytes in `buf`. Throws on a lone UTF-16 surrogate.
    private func stringBytes(_ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int, _ escaped: Bool,
                             into buf: inout [UInt8]) throws -> UnsafeRawBufferPointer {
        if !escaped { return UnsafeRawBufferPointer(start: p + s, count: e - s) }
        buf.removeAll(keepingCapacity: true)
        var i = s
        func hex4(_ at: Int) -> UInt32 {
            var v: UInt32 = 0
            for k in 0..<4 {
                let c = UInt32(p[at + k])
                v = v << 4 | (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10)
            }
            return v
        }
        func put(_ v: UInt32) {
            switch v {
            case 0..<0x80: buf.append(UInt8(v))
            case 0x80..<0x800: buf.append(UInt8(0xC0 | v >> 6)); buf.append(UInt8(0x80 | v & 0x3F))
            case 0x800..<0x10000:
                buf.append(UInt8(0xE0 | v >> 12)); buf.append(UInt8(0x80 | (v >> 6) & 0x3F)); buf.append(UInt8(0x80 | v & 0x3F))
            default:
                buf.append(UInt8(0xF0 | v >> 18)); buf.append(UInt8(0x80 | (v >> 12) & 0x3F))
                buf.append(UInt8(0x80 | (v >> 6) & 0x3F)); buf.append(UInt8(0x80 | v & 0x3F))
            }
        }
        while i < e {
            // Copy the run up to the next backslash in one go.
            let next = memchr(p + i, 0x5C, e - i).map { UnsafeRawPointer($0) - UnsafeRawPointer(p) } ?? e
            if next > i { buf.append(contentsOf: UnsafeRawBufferPointer(start: p + i, count: next - i)) }
            i = next
            if i >= e { break }
            let esc = p[i + 1]   // the scanner checked that every escape is complete
            i += 2
            switch esc {
            case 0x22, 0x5C, 0x2F: buf.append(esc)      // " \ /
            case 0x62: buf.append(0x08)                 // b
            case 0x66: buf.append(0x0C)                 // f
            case 0x6E: buf.append(0x0A)                 // n
            case 0x72: buf.append(0x0D)                 // r
            case 0x74: buf.append(0x09)                 // t
            default:                                    // u
                let u = hex4(i)
                i += 4
                if u >= 0xD800 && u <= 0xDBFF {
                    guard i + 6 <= e, p[i] == 0x5C, p[i + 1] == 0x75 else {
                        throw SyntaxError(message: "lone UTF-16 surrogate \\u\(String(u, radix: 16, uppercase: true)) (no low surrogate after it)")
                    }
                    let lo = hex4(i + 2)
                    guard lo >= 0xDC00 && lo <= 0xDFFF else {
                        throw SyntaxError(message: "lone UTF-16 surrogate \\u\(String(u, radix: 16, uppercase: true)) (followed by \\u\(String(lo, radix: 16, uppercase: true)))")
                    }
                    i += 6
                    put(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00))
                } else if u >= 0xDC00 && u <= 0xDFFF {
                    throw SyntaxError(message: "lone UTF-16 low surrogate \\u\(String(u, radix: 16, uppercase: true))")
                } else {
                    put(u)
                }
            }
        }
        return buf.withUnsafeBytes { $0 }   // buf is not touched until the next line
    }

    /// A JSON number as whole Unix seconds (fractions dropped toward minus infinity).
    private func parseSeconds(_ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int) -> Int64? {
        var i = s, neg = false
        if p[i] == 0x2D { neg = true; i += 1 }
        var v: Int64 = 0
        var plain = true
        while i < e {
            let c = p[i]
            guard c >= 0x30 && c <= 0x39 else { plain = false; break }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(c - 0x30))
            if o1 || o2 { plain = false; break }
            v = a
            i += 1
        }
        if plain { return neg ? -v : v }
        guard let d = Double(String(decoding: UnsafeRawBufferPointer(start: p + s, count: e - s), as: UTF8.self)),
              d.isFinite, d > -9.2e18, d < 9.2e18 else { return nil }
        return Int64(d.rounded(.down))
    }

    /// The JSON grammar (RFC 8259) over one line, without building values.
    private struct JSONScanner {
        let p: UnsafePointer<UInt8>
        let n: Int
        var i = 0
        static let maxDepth = 64

        @inline(__always) mutating func ws() {
            while i < n {
                let c = p[i]
                if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 } else { return }
            }
        }

        func here() -> String {
            if i >= n { return "at the end of the line" }
            let c = p[i]
            let shown = c >= 0x20 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
            return "at byte \(i + 1) (\(shown))"
        }

        mutating func expect(_ c: UInt8, _ what: String) throws {
            guard i < n && p[i] == c else { throw SyntaxError(message: "expected \(what) \(here())") }
            i += 1
        }

        /// The top-level object; calls `field(key, value)` for each member.
        mutating func object(_ field: (Value, Value) throws -> Void) throws {
            ws()
            try expect(0x7B, "'{'")
            ws()
            if i < n && p[i] == 0x7D { i += 1 } else {
                while true {
                    ws()
                    guard i < n && p[i] == 0x22 else { throw SyntaxError(message: "expected a key in quotes \(here())") }
                    let key = try string()
                    ws()
                    try expect(0x3A, "':' after a key")
                    ws()
                    let v = try value(depth: 1)
                    try field(key, v)
                    ws()
                    if i < n && p[i] == 0x2C { i += 1; continue }
                    if i < n && p[i] == 0x7D { i += 1; break }
                    throw SyntaxError(message: "expected ',' or '}' \(here())")
                }
            }
            ws()
            if i != n { throw SyntaxError(message: "unexpected text after the object \(here())") }
        }

        mutating func value(depth: Int) throws -> Value {
            guard i < n else { throw SyntaxError(message: "expected a value at the end of the line") }
            switch p[i] {
            case 0x22: return try string()
            case 0x7B:
                guard depth < JSONScanner.maxDepth else { throw SyntaxError(message: "nested deeper than \(JSONScanner.maxDepth) levels") }
                i += 1; ws()
                if i < n && p[i] == 0x7D { i += 1; return .other("an object") }
                while true {
                    ws()
                    guard i < n && p[i] == 0x22 else { throw SyntaxError(message: "expected a key in quotes \(here())") }
                    _ = try string()
                    ws(); try expect(0x3A, "':' after a key"); ws()
                    _ = try value(depth: depth + 1)
                    ws()
                    if i < n && p[i] == 0x2C { i += 1; continue }
                    if i < n && p[i] == 0x7D { i += 1; return .other("an object") }
                    throw SyntaxError(message: "expected ',' or '}' \(here())")
                }
            case 0x5B:
                guard depth < JSONScanner.maxDepth else { throw SyntaxError(message: "nested deeper than \(JSONScanner.maxDepth) levels") }
                i += 1; ws()
                if i < n && p[i] == 0x5D { i += 1; return .other("an array") }
                while true {
                    ws()
                    _ = try value(depth: depth + 1)
                    ws()
                    if i < n && p[i] == 0x2C { i += 1; continue }
                    if i < n && p[i] == 0x5D { i += 1; return .other("an array") }
                    throw SyntaxError(message: "expected ',' or ']' \(here())")
                }
            case 0x74: try literal("true"); return .other("a boolean")
            case 0x66: try literal("false"); return .other("a boolean")
            case 0x6E: try literal("null"); return .null
            case 0x2D, 0x30...0x39: return try numberValue()
            default: throw SyntaxError(message: "expected a value \(here())")
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let len = word.utf8CodeUnitCount
            guard i + len <= n, memcmp(p + i, word.utf8Start, len) == 0 else {
                throw SyntaxError(message: "expected \(word) \(here())")
            }
            i += len
        }

        mutating func numberValue() throws -> Value {
            let s = i
            func digits() -> Int { let b = i; while i < n && p[i] >= 0x30 && p[i] <= 0x39 { i += 1 }; return i - b }
            if p[i] == 0x2D { i += 1 }
            guard i < n, p[i] >= 0x30 && p[i] <= 0x39 else { throw SyntaxError(message: "bad number \(here())") }
            if p[i] == 0x30 { i += 1 } else { _ = digits() }
            if i < n && p[i] == 0x2E {
                i += 1
                guard digits() > 0 else { throw SyntaxError(message: "bad number: no digits after '.' \(here())") }
            }
            if i < n && (p[i] == 0x65 || p[i] == 0x45) {
                i += 1
                if i < n && (p[i] == 0x2B || p[i] == 0x2D) { i += 1 }
                guard digits() > 0 else { throw SyntaxError(message: "bad number: no digits in the exponent \(here())") }
            }
            return .number(start: s, end: i)
        }

        /// A string starting at the opening quote; checks escapes and control characters.
        mutating func string() throws -> Value {
            i += 1
            let s = i
            var escaped = false
            while true {
                // Eight bytes at a time while none is a quote, a backslash or a control byte.
                while i + 8 <= n {
                    let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                    let quote = w ^ 0x2222_2222_2222_2222, slash = w ^ 0x5C5C_5C5C_5C5C_5C5C
                    let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                    let hit = ((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | ((w &- 0x2020_2020_2020_2020) & ~w)
                    if hit & highs != 0 { break }
                    i += 8
                }
                guard i < n else { throw SyntaxError(message: "unterminated string") }
                let c = p[i]
                if c == 0x22 { let e = i; i += 1; return .string(start: s, end: e, escaped: escaped) }
                if c == 0x5C {
                    escaped = true
                    guard i + 1 < n else { throw SyntaxError(message: "unterminated string") }
                    switch p[i + 1] {
                    case 0x22, 0x5C, 0x2F, 0x62, 0x66, 0x6E, 0x72, 0x74: i += 2
                    case 0x75:
                        guard i + 6 <= n else { throw SyntaxError(message: "incomplete \\u escape \(here())") }
                        for k in 2..<6 {
                            let h = p[i + k]
                            let ok = (h >= 0x30 && h <= 0x39) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66)
                            if !ok { throw SyntaxError(message: "bad \\u escape \(here())") }
                        }
                        i += 6
                    default: throw SyntaxError(message: "invalid escape \(here())")
                    }
                    continue
                }
                if c < 0x20 { throw SyntaxError(message: "unescaped control character in a string \(here())") }
                i += 1
            }
        }
    }
}

/// The holdout split every tool agrees on: an example goes to holdout/ when the stable hash
/// of its normalised tokens falls in the first `fraction` of the hash range. The same text
/// always lands on the same side, whatever the file, the run or the machine.
public enum HoldoutSplit {
    @inline(__always)
    public static func isHoldout(tokenHash: UInt64, fraction: Double) -> Bool {
        StableHash.unit(tokenHash) < fraction
    }
}
