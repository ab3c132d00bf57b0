// Logging for people: one event per line on stderr, `<N>` syslog priority prefix so journald
// keeps the level, then `tool: message key=value ...`. stdout stays for data.
// One event is one line whatever it carries: control characters in the message and in
// metadata values (a file name with a newline and `<0>`, say) are escaped here, centrally
// (LogText.escape), so no input can forge a journal line or its level (issue 15).

import Logging
#if canImport(Glibc)
import Glibc
#endif

public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) {
        self.label = label
        if let v = getenv("PP_LOG_LEVEL"), let s = String(validatingCString: v), let l = Logger.Level(rawValue: s) {
            logLevel = l
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    public func log(event: LogEvent) {
        var line = "<\(Self.priority(event.level))>\(label): \(LogText.escape("\(event.message)"))"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) {
            let s = LogText.escape("\(v)")
            line += s.contains(" ") || s.isEmpty ? " \(k)=\"\(s)\"" : " \(k)=\(s)"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { b in
            var off = 0
            while off < b.count {
                let n = write(2, b.baseAddress! + off, b.count - off)
                if n < 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }
}

public enum Log {
    /// Installs the stderr handler once per process and returns a logger for `tool`.
    public static func make(_ tool: String) -> Logger {
        bootstrapOnce
        return Logger(label: tool)
    }

    private static let bootstrapOnce: Void = {
        LoggingSystem.bootstrap { StderrLogHandler(label: $0) }
    }()

    /// Prints one expected-error line (`tool: message`) with an error priority prefix.
    public static func fail(_ tool: String, _ message: String) {
        let line = "<3>\(tool): \(LogText.escape(message))\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}

/// Text made safe for a one-line log record.
public enum LogText {
    /// `s` with every control character (C0, DEL, C1: Unicode general category Cc) and the
    /// line and paragraph separators U+2028/U+2029 written as an escape: `\n`, `\r`, `\t`,
    /// else `\xHH` (`\u{HHHH}` above 0xFF). Everything else, backslashes included, is kept.
    public static func escape(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: needsEscape) else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for u in s.unicodeScalars {
            guard needsEscape(u) else { out.unicodeScalars.append(u); continue }
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let hex = String(u.value, radix: 16, uppercase: true)
                out += u.value <= 0xFF ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{" + hex + "}"
            }
        }
        return out
    }

    /// The bytes of a file name that may not be UTF-8, as text for logs and JSON: valid UTF-8
    /// is kept (control characters escaped as in `escape`), each byte of an invalid sequence
    /// becomes `\xHH`.
    public static func escape(bytes: [UInt8]) -> String {
        if let s = String(validating: bytes, as: UTF8.self) { return escape(s) }
        return mapUTF8(bytes, text: escape, byte: { "\\x" + hex2($0) })
    }

    /// Walks `bytes` as UTF-8: each well-formed sequence whose first byte `keep` accepts goes
    /// through `text`, every other byte through `byte` (the one walk behind `escape(bytes:)`
    /// and pp-ingest's quarantine names).
    public static func mapUTF8(_ bytes: [UInt8], keep: (UInt8) -> Bool = { _ in true },
                               text: (String) -> String, byte: (UInt8) -> String) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let n = keep(bytes[i]) ? validSequenceLength(bytes, at: i) : 0
            if n > 0 {
                out += text(String(decoding: bytes[i..<(i + n)], as: UTF8.self))
                i += n
            } else {
                out += byte(bytes[i])
                i += 1
            }
        }
        return out
    }

    /// Two upper-case hex digits.
    public static func hex2(_ b: UInt8) -> String {
        let hex = String(b, radix: 16, uppercase: true)
        return hex.count < 2 ? "0" + hex : hex
    }

    /// Length of the well-formed UTF-8 sequence starting at `i`, 0 if there is none.
    public static func validSequenceLength(_ b: [UInt8], at i: Int) -> Int {
        let c = b[i]
        let n: Int
        switch c {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: n = 2
        case 0xE0...0xEF: n = 3
        case 0xF0...0xF4: n = 4
        default: return 0
        }
        guard i + n <= b.count else { return 0 }
        return String(validating: b[i..<(i + n)], as: UTF8.self) != nil ? n : 0
    }

    static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (u.value >= 0x7F && u.value <= 0x9F) || u.value == 0x2028 || u.value == 0x2029
    }
}
