// A strict reader of the Prometheus text exposition format (0.0.4) as node_exporter's
// textfile collector reads it, written from the format's rules: the tests of every tool's
// metrics/*.prom parse their files with it (moved here from SharedTests/MetricsTests.swift,
// which also checks that it refuses what it must). Not a general Prometheus client.

import Foundation
import Shared

/// A strict reader of the text exposition format: returns the samples or throws on the first
/// line that breaks a rule (with its line number).
public struct PromTextParser {
    public struct Sample: Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }
    public struct Failure: Error, CustomStringConvertible { public var description: String }

    public static func parse(_ text: String) throws -> [Sample] {
        guard text.isEmpty || text.hasSuffix("\n") else { throw Failure(description: "no newline at end of file") }
        var samples: [Sample] = []
        var typed: [String: String] = [:]       // family -> kind
        var helped: Set<String> = []
        var finished: Set<String> = []          // families whose block has ended
        var current: String? = nil
        var seen: Set<String> = []              // name + sorted labels, to refuse duplicates

        func enter(_ family: String, line: Int) throws {
            if current == family { return }
            if finished.contains(family) { throw Failure(description: "line \(line): family \(family) is not contiguous") }
            if let c = current { finished.insert(c) }
            current = family
        }

        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let n = i + 1
            let line = String(raw)
            if line.isEmpty { throw Failure(description: "line \(n): empty line") }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
                guard parts.count >= 3, parts[0] == "#", parts[1] == "HELP" || parts[1] == "TYPE" else { continue } // a plain comment
                let name = parts[2]
                guard Metrics.isValidMetricName(name) else { throw Failure(description: "line \(n): bad metric name \(name)") }
                try enter(name, line: n)
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw Failure(description: "line \(n): bad TYPE line") }
                    if typed[name] != nil { throw Failure(description: "line \(n): second TYPE for \(name)") }
                    if samples.contains(where: { $0.name == name }) { throw Failure(description: "line \(n): TYPE after samples of \(name)") }
                    typed[name] = parts[3]
                } else {
                    if helped.contains(name) { throw Failure(description: "line \(n): second HELP for \(name)") }
                    helped.insert(name)
                    let help = parts.count == 4 ? parts[3] : ""
                    try checkEscapes(help, allowed: ["\\", "n"], line: n)
                }
                continue
            }
            let s = try parseSample(line, line: n)
            try enter(s.name, line: n)
            let key = s.name + "|" + s.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            if seen.contains(key) { throw Failure(description: "line \(n): duplicate sample \(key)") }
            seen.insert(key)
            samples.append(s)
        }
        return samples
    }

    static func checkEscapes(_ s: String, allowed: Set<Character>, line: Int) throws {
        var it = s.makeIterator()
        while let c = it.next() {
            if c == "\\" {
                guard let e = it.next(), allowed.contains(e) else { throw Failure(description: "line \(line): bad escape") }
            }
        }
    }

    static func parseSample(_ line: String, line n: Int) throws -> Sample {
        let b = Array(line.unicodeScalars)
        var i = 0
        func fail(_ why: String) -> Failure { Failure(description: "line \(n): \(why): \(line)") }
        func isNameChar(_ c: Unicode.Scalar, first: Bool, colon: Bool) -> Bool {
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || (colon && c == ":") || (!first && c >= "0" && c <= "9")
        }
        var name = ""
        while i < b.count, isNameChar(b[i], first: name.isEmpty, colon: true) { name.unicodeScalars.append(b[i]); i += 1 }
        if name.isEmpty { throw fail("no metric name") }
        var labels: [String: String] = [:]
        if i < b.count, b[i] == "{" {
            i += 1
            while true {
                if i < b.count, b[i] == "}" { i += 1; break }
                var key = ""
                while i < b.count, isNameChar(b[i], first: key.isEmpty, colon: false) { key.unicodeScalars.append(b[i]); i += 1 }
                guard Metrics.isValidLabelName(key) else { throw fail("bad label name") }
                guard i + 1 < b.count, b[i] == "=", b[i + 1] == "\"" else { throw fail("expected =\" after label") }
                i += 2
                var value = ""
                while true {
                    guard i < b.count else { throw fail("unterminated label value") }
                    let c = b[i]; i += 1
                    if c == "\"" { break }
                    if c == "\\" {
                        guard i < b.count else { throw fail("dangling escape") }
                        switch b[i] {
                        case "\\": value += "\\"
                        case "\"": value += "\""
                        case "n": value += "\n"
                        default: throw fail("bad escape in label value")
                        }
                        i += 1
                    } else {
                        value.unicodeScalars.append(c)
                    }
                }
                if labels[key] != nil { throw fail("repeated label \(key)") }
                labels[key] = value
                guard i < b.count else { throw fail("unterminated label set") }
                if b[i] == "," { i += 1; continue }
                guard b[i] == "}" else { throw fail("expected , or }") }
            }
        }
        guard i < b.count, b[i] == " " else { throw fail("expected one space before the value") }
        i += 1
        let rest = String(String.UnicodeScalarView(b[i...]))
        let fields = rest.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 1 else { throw fail("timestamps are not allowed in textfile metrics") }
        let v = String(fields[0])
        let value: Double
        switch v {
        case "NaN": value = .nan
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        default:
            // Go's ParseFloat syntax: sign, digits, optional fraction and exponent.
            let ok = v.range(of: #"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"#, options: .regularExpression) != nil
            guard ok, let d = Double(v) else { throw fail("bad value \(v)") }
            value = d
        }
        return Sample(name: name, labels: labels, value: value)
    }
}
