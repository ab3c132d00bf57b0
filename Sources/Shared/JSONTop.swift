// JSONTop: members of a JSON object picked out of its text without decoding the rest.

/// Picks members out of a JSON object without building the rest: `only(keys, of: bytes)` is
/// the object's members whose key is in `keys`, as the bytes of a new JSON object (values
/// copied verbatim). It walks the text once, tracking strings (with escapes) and nesting; it
/// does not validate values, so its output still goes through JSONDecoder, and it returns
/// nil for anything it does not understand (then the caller decodes the whole text). Keys
/// with escapes are never matched. Used where a small part of a large object is needed
/// (checkpoint metas, whose data cursor grows with the run).
public enum JSONTop {
    public static func only(_ keys: Set<String>, of text: ArraySlice<UInt8>) -> [UInt8]? {
        text.withUnsafeBufferPointer { b -> [UInt8]? in
            let n = b.count
            var i = 0
            func ws() { while i < n, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
            /// Skips a string starting at b[i] == '"'; false when it does not end.
            func string() -> Bool {
                i += 1
                while i < n {
                    if b[i] == 0x5C { i += 2; continue }
                    if b[i] == 0x22 { i += 1; return true }
                    i += 1
                }
                return false
            }
            /// Skips one value (any JSON value, not validated); false when the text ends first.
            func value() -> Bool {
                guard i < n else { return false }
                if b[i] == 0x22 { return string() }
                if b[i] == 0x7B || b[i] == 0x5B {
                    var depth = 0
                    while i < n {
                        switch b[i] {
                        case 0x22: if !string() { return false }; continue
                        case 0x7B, 0x5B: depth += 1
                        case 0x7D, 0x5D:
                            depth -= 1
                            if depth == 0 { i += 1; return true }
                        default: break
                        }
                        i += 1
                    }
                    return false
                }
                // A number, true, false or null: up to the next delimiter.
                let start = i
                while i < n, b[i] != 0x2C, b[i] != 0x7D, b[i] != 0x5D, b[i] != 0x20, b[i] != 0x0A, b[i] != 0x0D, b[i] != 0x09 { i += 1 }
                return i > start
            }
            var out: [UInt8] = [0x7B]
            ws()
            guard i < n, b[i] == 0x7B else { return nil }
            i += 1
            ws()
            if i < n, b[i] == 0x7D { return [0x7B, 0x7D] }
            while i < n {
                ws()
                guard i < n, b[i] == 0x22 else { return nil }
                let keyStart = i
                guard string() else { return nil }
                let key = keyStart + 1 < i - 1 ? String(decoding: UnsafeBufferPointer(rebasing: b[(keyStart + 1)..<(i - 1)]), as: UTF8.self) : ""
                ws()
                guard i < n, b[i] == 0x3A else { return nil }
                i += 1
                ws()
                guard value() else { return nil }
                if keys.contains(key) {
                    if out.count > 1 { out.append(0x2C) }
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: b[keyStart..<i]))
                }
                ws()
                guard i < n else { return nil }
                if b[i] == 0x2C { i += 1; continue }
                if b[i] == 0x7D { out.append(0x7D); return out }
                return nil
            }
            return nil
        }
    }
}
