// One JSON value, strictly typed, for the small hand-checked files people edit: control.json
// (pp-train) and policy.json's sections (pp-ingest, pp-train, pp-select). JSONDecoder tells a
// boolean from a number, so `"pause": 1` is refused rather than read as true. Each reader
// matches the cases it accepts and names the file, key and expected type otherwise. Nesting
// is bounded by JSONDecoder's own depth limit. It is not a general JSON library: the formats
// the tools write are Codable structs (EvalFormat, ModelConfig) or hand-written lines.

import Foundation

public enum JSONValue: Decodable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

/// One key of a hand-edited file, read as the type the key needs; an error names the file
/// and the key as the person wrote it (`policy.json: train.guard_window: expected a whole
/// number >= 1`), status `.corrupt`. Used by the policy.json readers of pp-ingest and pp-train.
public struct JSONField {
    /// The file, for messages.
    public let path: String
    /// The key as messages name it, with its section: "ingest.reference_inputs".
    public let key: String
    public let value: JSONValue

    public init(path: String, key: String, value: JSONValue) { self.path = path; self.key = key; self.value = value }

    public func fail(_ why: String) -> PPError { PPError("\(path): \(key): \(why)", status: .corrupt) }

    /// A finite number.
    public func number() throws -> Double {
        guard case .number(let x) = value, x.isFinite else { throw fail("expected a number") }
        return x
    }

    /// A whole number from `min` to 10^9.
    public func count(min: Int) throws -> Int {
        let x = try number()
        guard x == x.rounded(), x >= Double(min), x <= 1e9 else { throw fail("expected a whole number >= \(min)") }
        return Int(x)
    }

    public func bool() throws -> Bool {
        guard case .bool(let b) = value else { throw fail("expected true or false") }
        return b
    }
}
