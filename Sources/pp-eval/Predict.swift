// `pp-eval predict`: text lines, or JSON Lines with a "text" field, on stdin; one JSON line per
// input on stdout: {"label":L,"prob":P,"top":[{"label":L,"prob":P},...]}. Streaming: every
// complete line read so far is answered before the next read(2) blocks, so it works at the
// end of an endless pipe. A line that is not valid JSON (when it starts with '{') gets
// {"line":N,"error":"..."} so output lines stay aligned with input lines.
// This file does not score eval sets (Scorer.swift) or load checkpoints (CheckpointAccess.swift).

import Foundation
import Shared
import TextModel

final class PredictStream {
    let model: Predictor
    let k: Int
    let labelJSON: [[UInt8]]          // each label as a JSON string literal, made once
    var probs: [Float]
    var order: [Int]                  // top-k scratch
    var tokens: [UInt8] = []
    var out: [UInt8] = []
    var lineNo = 0
    var errors = 0

    init(model: Predictor, k: Int) {
        self.model = model
        self.k = max(1, min(k, max(model.labels.count, 1)))
        labelJSON = model.labels.map { Array(jsonString($0).utf8) }
        probs = [Float](repeating: 0, count: max(model.labels.count, 1))
        order = [Int](repeating: 0, count: self.k)
        tokens.reserveCapacity(1 << 12)
        out.reserveCapacity(1 << 16)
    }

    /// Reads `fd` to its end, writing answers to `outFD` after each read.
    func run(input fd: Int32, output outFD: Int32) throws {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        var carry: [UInt8] = []
        while true {
            // read(2), retried on EINTR.
            var n = -1
            while n < 0 {
                n = buf.withUnsafeMutableBytes { b in read(fd, b.baseAddress!, b.count) }
                if n < 0 && errno != EINTR { throw PPError.io("stdin", "read", errno: errno) }
            }
            if n == 0 { break }
            try buf.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                var start = 0
                for i in 0..<n where chunk[i] == 0x0A {
                    if carry.isEmpty {
                        try line(UnsafeRawBufferPointer(rebasing: chunk[start..<i]))
                    } else {
                        carry.append(contentsOf: chunk[start..<i])
                        try carry.withUnsafeBytes { try line($0) }
                        carry.removeAll(keepingCapacity: true)
                    }
                    start = i + 1
                }
                carry.append(contentsOf: chunk[start..<n])
            }
            try flush(outFD)
        }
        if !carry.isEmpty { try carry.withUnsafeBytes { try line($0) } }
        try flush(outFD)
    }

    func flush(_ fd: Int32) throws {
        if out.isEmpty { return }
        try out.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: "stdout") }
        out.removeAll(keepingCapacity: true)
    }

    /// Answers one input line (without its newline; a trailing CR is dropped).
    func line(_ l: UnsafeRawBufferPointer) throws {
        lineNo += 1
        var text = l
        if let last = text.last, last == 0x0D { text = UnsafeRawBufferPointer(rebasing: text[0..<(text.count - 1)]) }
        var i = 0
        while i < text.count && (text[i] == 0x20 || text[i] == 0x09) { i += 1 }
        tokens.removeAll(keepingCapacity: true)
        if i < text.count && text[i] == UInt8(ascii: "{") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(text)) as? [String: Any],
                  let s = obj["text"] as? String else {
                errors += 1
                out.append(contentsOf: Array("{\"line\":\(lineNo),\"error\":\"not a JSON object with a string \\\"text\\\"\"}\n".utf8))
                return
            }
            var s2 = s
            s2.withUTF8 { _ = Tokenizer.tokenize(UnsafeRawBufferPointer($0), into: &tokens) }
        } else {
            Tokenizer.tokenize(text, into: &tokens)
        }
        answer()
    }

    func answer() {
        let n = model.labels.count
        if n == 0 {
            out.append(contentsOf: Array("{\"label\":null,\"prob\":0,\"top\":[]}\n".utf8))
            return
        }
        probs.withUnsafeMutableBufferPointer { pb in
            tokens.withUnsafeBytes { model.predict(tokens: $0, probs: UnsafeMutableBufferPointer(rebasing: pb[0..<n])) }
            // Top-k by insertion into a small sorted list (k is small); ties keep the lower index.
            var filled = 0
            for j in 0..<n {
                let p = pb[j]
                if filled == k && p <= pb[order[k - 1]] { continue }
                var pos = filled == k ? k - 1 : filled
                if filled < k { filled += 1 }
                while pos > 0 && pb[order[pos - 1]] < p { order[pos] = order[pos - 1]; pos -= 1 }
                order[pos] = j
            }
            out.append(contentsOf: Array("{\"label\":".utf8))
            out.append(contentsOf: labelJSON[order[0]])
            out.append(contentsOf: Array(",\"prob\":\(pb[order[0]]),\"top\":[".utf8))
            for r in 0..<filled {
                if r > 0 { out.append(0x2C) }
                out.append(contentsOf: Array("{\"label\":".utf8))
                out.append(contentsOf: labelJSON[order[r]])
                out.append(contentsOf: Array(",\"prob\":\(pb[order[r]])}".utf8))
            }
            out.append(contentsOf: Array("]}\n".utf8))
        }
    }
}

/// A JSON string literal for `s` (quotes, backslashes and control characters escaped).
func jsonString(_ s: String) -> String { JSONString.quote(s) }
