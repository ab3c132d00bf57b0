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
