// control.json: the runtime knobs people set for a run (`pp-train set`, or by hand), read by
// the running trainer. The file is a flat JSON object with any of the keys
//   lr       learning rate, a number > 0 that a 32-bit float holds as a normal number
//   dropout  dropout rate, a number in [0, 1) (also as a 32-bit float)
//   pause    true stops training (the trainer keeps answering signals and writing status)
//   average  half-life, in trained examples, of the weight average checkpoints deploy
//            (0 = off: they deploy the training weights); Average.swift
//   adopt    "RUN/FILE": a checkpoint (usually another run's) the trainer continues from,
//            once: when its current state does not already descend from it, it loads that
//            checkpoint (weights, step, data cursor) and keeps training with this file's
//            knobs. pp-select's population step writes it (exploit, issue 16); a person may too.
// A missing key means "leave as it is". The file is replaced whole (FileIO.publish), never
// edited in place. This file knows the format and its validation, not when it is read.

import Foundation
import Shared

public struct Control: Equatable, Sendable {
    public var lr: Double?
    public var dropout: Double?
    public var pause: Bool?
    public var average: Double?
    /// "RUN/FILE" of the checkpoint to continue from (see the header).
    public var adopt: String?

    public static let keys = ["lr", "dropout", "pause", "average", "adopt"]

    public init(lr: Double? = nil, dropout: Double? = nil, pause: Bool? = nil, average: Double? = nil, adopt: String? = nil) {
        self.lr = lr; self.dropout = dropout; self.pause = pause; self.average = average; self.adopt = adopt
    }

    public init(knobs: Knobs) { self.init(lr: knobs.lr, dropout: knobs.dropout, pause: knobs.pause, average: knobs.average) }

    /// Checks one value; returns a reason when it is out of range (Knobs.problem: in the
    /// Float precision the trainer uses).
    public static func check(lr: Double) -> String? { Knobs.problem(lr: lr) }

    public static func check(dropout: Double) -> String? { Knobs.problem(dropout: dropout) }

    /// Applies one `KEY=VALUE` from the command line; throws a one-line reason.
    public mutating func set(_ assignment: String) throws {
        guard let eq = assignment.firstIndex(of: "=") else {
            throw PPError("\(assignment): expected KEY=VALUE (keys: \(Control.keys.joined(separator: ", ")))", status: .usage)
        }
        let key = String(assignment[..<eq]), value = String(assignment[assignment.index(after: eq)...])
        switch key {
        case "lr":
            guard let v = Double(value) else { throw PPError("lr=\(value): not a number", status: .usage) }
            if let r = Control.check(lr: v) { throw PPError("lr=\(value): \(r)", status: .usage) }
            lr = v
        case "dropout":
            guard let v = Double(value) else { throw PPError("dropout=\(value): not a number", status: .usage) }
            if let r = Control.check(dropout: v) { throw PPError("dropout=\(value): \(r)", status: .usage) }
            dropout = v
        case "average":
            guard let v = Double(value) else { throw PPError("average=\(value): not a number", status: .usage) }
            if let r = Knobs.problem(average: v) { throw PPError("average=\(value): \(r)", status: .usage) }
            average = v
        case "adopt":
            if let r = Control.problem(adopt: value) { throw PPError("adopt=\(value): \(r)", status: .usage) }
            adopt = value
        case "pause":
            switch value {
            case "true", "1", "yes", "on": pause = true
            case "false", "0", "no", "off": pause = false
            default: throw PPError("pause=\(value): expected true or false", status: .usage)
            }
        default:
            throw PPError("\(key): unknown knob (known: \(Control.keys.joined(separator: ", ")))", status: .usage)
        }
    }

    /// Parses control.json. Unknown keys are refused too: a typo ("lrate") must not be
    /// silently ignored while someone waits for it to take effect.
    public static func parse(_ bytes: [UInt8], path: String) throws -> Control {
        let d: [String: JSONValue]
        do { d = try JSONDecoder().decode([String: JSONValue].self, from: Data(bytes)) } catch {
            throw PPError("\(path): not a JSON object of knobs (\(Control.keys.joined(separator: ", ")))", status: .corrupt)
        }
        var c = Control()
        for (k, v) in d.sorted(by: { $0.key < $1.key }) {
            switch (k, v) {
            case ("lr", .number(let x)):
                if let r = check(lr: x) { throw PPError("\(path): \(r)", status: .corrupt) }
                c.lr = x
            case ("dropout", .number(let x)):
                if let r = check(dropout: x) { throw PPError("\(path): \(r)", status: .corrupt) }
                c.dropout = x
            case ("pause", .bool(let b)):
                c.pause = b
            case ("average", .number(let x)):
                if let r = Knobs.problem(average: x) { throw PPError("\(path): \(r)", status: .corrupt) }
                c.average = x
            case ("adopt", .string(let id)):
                if let r = Control.problem(adopt: id) { throw PPError("\(path): adopt: \(r)", status: .corrupt) }
                c.adopt = id
            case ("adopt", _):
                throw PPError("\(path): adopt: expected a checkpoint as \"RUN/FILE\"", status: .corrupt)
            case ("lr", _), ("dropout", _), ("average", _):
                throw PPError("\(path): \(k): expected a number", status: .corrupt)
            case ("pause", _):
                throw PPError("\(path): pause: expected true or false", status: .corrupt)
            default:
                throw PPError("\(path): \(k): unknown knob (known: \(keys.joined(separator: ", ")))", status: .corrupt)
            }
        }
        return c
    }


    /// Reads control.json; nil when it does not exist.
    public static func read(_ path: String) throws -> Control? {
        guard FileIO.exists(path) else { return nil }
        return try parse(try FileIO.readAll(path), path: path)
    }

    /// The file's text: keys in a fixed order, one line.
    public var json: String {
        var parts: [String] = []
        if let v = lr { parts.append("\"lr\":\(JSONText.number(v))") }
        if let v = dropout { parts.append("\"dropout\":\(JSONText.number(v))") }
        if let v = pause { parts.append("\"pause\":\(v)") }
        if let v = average { parts.append("\"average\":\(JSONText.number(v))") }
        if let v = adopt { parts.append("\"adopt\":\(JSONText.string(v))") }
        return "{" + parts.joined(separator: ",") + "}\n"
    }

    public func write(_ path: String) throws {
        try FileIO.makeDirectories(FileIO.split(path).dir)
        try FileIO.publish(json, to: path)
    }

    /// Why `id` cannot be an `adopt` value: it must be "RUN/FILE", RUN a plain name and FILE a
    /// checkpoint name (CheckpointName); nil when it is one.
    public static func problem(adopt id: String) -> String? {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[0].hasPrefix("."), CheckpointName(String(parts[1])) != nil else {
            return "\(id) is not a checkpoint as \"RUN/FILE\" (e.g. main/ckpt-20260101T000000Z-000000001000.ppc)"
        }
        return nil
    }

    /// The knobs after applying this file's values to `knobs`.
    public func applied(to knobs: Knobs) -> Knobs {
        var k = knobs
        if let v = lr { k.lr = v }
        if let v = dropout { k.dropout = v }
        if let v = pause { k.pause = v }
        if let v = average { k.average = v }
        return k
    }
}

