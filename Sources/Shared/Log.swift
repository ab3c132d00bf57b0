// Logging for people: one event per line on stderr, `<N>` syslog priority prefix so journald
// keeps the level, then `tool: message key=value ...`. stdout stays for data.

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
        var line = "<\(Self.priority(event.level))>\(label): \(event.message)"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) {
            let s = "\(v)"
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
        let line = "<3>\(tool): \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
