// Prometheus metrics for node_exporter's textfile collector: each tool collects a few numbers
// in a `Metrics` value and publishes it as `ROOT/metrics/NAME.prom` (text exposition format
// 0.0.4), atomically through FileIO.publish, so the collector never reads half a file.
//
// The format, as the collector parses it: optional `# HELP name text` and `# TYPE name kind`
// lines, then the family's samples `name{label="value",...} number`, one per line; each family
// appears once and contiguously; the file ends with a newline. Textfile metrics carry no
// timestamps (the collector refuses them), so none are written.
//
// Names are the caller's constants (a bad one is a programming error and traps); label values
// and help texts are escaped here. Not a client library: no registry, no HTTP, no histograms.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct Metrics {
    public enum Kind: String, Sendable {
        case gauge, counter, untyped
    }

    struct Family {
        var name: String
        var kind: Kind
        var help: String
        var samples: [(labels: [(String, String)], value: Double)]
    }

    private var families: [Family] = []
    private var index: [String: Int] = [:]

    public init() {}

    /// Adds one sample. Samples of the same family (same name) are kept together whatever
    /// order they are added in; the first call's kind and help are the family's.
    /// A counter's name should end in `_total`; units go in the name (`_seconds`, `_bytes`).
    public mutating func add(_ name: String, _ value: Double, kind: Kind = .gauge, help: String,
                             labels: [(String, String)] = []) {
        precondition(Metrics.isValidMetricName(name), "invalid metric name \(name)")
        for (k, _) in labels {
            precondition(Metrics.isValidLabelName(k), "invalid label name \(k) on \(name)")
        }
        precondition(Set(labels.map { $0.0 }).count == labels.count, "repeated label on \(name)")
        if let i = index[name] {
            precondition(families[i].kind == kind, "metric \(name) added as \(families[i].kind) and \(kind)")
            families[i].samples.append((labels, value))
        } else {
            index[name] = families.count
            families.append(Family(name: name, kind: kind, help: help, samples: [(labels, value)]))
        }
    }

    public mutating func add(_ name: String, _ value: Int, kind: Kind = .gauge, help: String,
                             labels: [(String, String)] = []) {
        add(name, Double(value), kind: kind, help: help, labels: labels)
    }

    public var isEmpty: Bool { families.isEmpty }

    /// The file's text.
    public func render() -> String {
        var out = ""
        for f in families {
            out += "# HELP \(f.name) \(Metrics.escapeHelp(f.help))\n"
            out += "# TYPE \(f.name) \(f.kind.rawValue)\n"
            for s in f.samples {
                out += f.name
                if !s.labels.isEmpty {
                    out += "{" + s.labels.map { "\($0.0)=\"\(Metrics.escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
                }
                out += " " + Metrics.format(s.value) + "\n"
            }
        }
        return out
    }

    /// Publishes the metrics as `ROOT/metrics/NAME.prom` (NAME is usually the tool's name),
    /// creating the folder if needed. The file is replaced whole: readers see the old one or
    /// the new one. Not durable (FileIO.publish): a metrics file is a view its tool replaces at
    /// its next run or status refresh, and after a power loss the previous one is as good.
    public func publish(root: Root, name: String) throws {
        precondition(!name.isEmpty && !name.contains("/") && !name.hasPrefix("."), "bad metrics file name \(name)")
        try FileIO.makeDirectories(root.metrics)
        try FileIO.publish(render(), to: root.metrics + "/" + name + ".prom", mode: 0o644, durable: false)
    }

    // MARK: - Format rules

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    public static func isValidMetricName(_ s: String) -> Bool {
        guard let first = s.utf8.first, isAlpha(first) || first == UInt8(ascii: "_") || first == UInt8(ascii: ":") else { return false }
        return s.utf8.allSatisfy { isAlpha($0) || isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":") }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, and not starting with `__` (reserved by Prometheus).
    public static func isValidLabelName(_ s: String) -> Bool {
        guard let first = s.utf8.first, isAlpha(first) || first == UInt8(ascii: "_") else { return false }
        if s.hasPrefix("__") { return false }
        return s.utf8.allSatisfy { isAlpha($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
    }

    /// Label values escape backslash, double quote and newline.
    static func escapeLabelValue(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// HELP texts escape backslash and newline.
    static func escapeHelp(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Go's ParseFloat reads what this writes: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    private static func isAlpha(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
}
