// One JSON string escaper for the hand-written JSON lines the tools print (pp-ingest's
// output, pp-eval predict, pp-train set): RFC 8259 escapes, control characters and DEL as
// \u00XX. Not an encoder; Codable covers whole documents.

public enum JSONString {
    /// `s` as a JSON string literal, quotes included.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

/// JSON text for the hand-written lines and files: numbers and strings.
public enum JSONText {
    /// A number as JSON: shortest round-trip form, integers without ".0"; null when not finite.
    public static func number(_ v: Double) -> String {
        if !v.isFinite { return "null" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// A JSON string literal.
    public static func string(_ s: String) -> String { JSONString.quote(s) }
}
