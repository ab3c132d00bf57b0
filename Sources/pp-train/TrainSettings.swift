// What a pp-train process was asked to do (main.swift parses and validates the flags into
// TrainSettings), how often it checkpoints (Cadence), and the states its loop reports (RunState).

import Foundation
import Shared
import TextModel
import Training

/// How often checkpoints are written: wall time, or examples trained.
enum Cadence: Equatable, CustomStringConvertible {
    case seconds(Double)
    case examples(Int)

    /// "50000ex", or a duration as every tool reads one (Clock.duration: "1h", "30m", "90s",
    /// "2d", "1w", plain seconds), more than zero.
    init?(parsing s: String) {
        if s.hasSuffix("ex") {
            guard let n = Int(s.dropLast(2)), n > 0 else { return nil }
            self = .examples(n)
        } else {
            guard let v = Clock.duration(s), v > 0 else { return nil }
            self = .seconds(v)
        }
    }

    var description: String {
        switch self {
        case .seconds(let s): return "\(JSONText.number(s))s"
        case .examples(let n): return "\(n)ex"
        }
    }
}

struct TrainSettings {
    var root: Root
    var run: String
    var initPath: String?
    var once: Bool
    var passes: Int?
    var batch: Int
    var rescan: Double
    var replay: Double
    var maxPasses: Int
    var cadence: Cadence
    var flags: ModelFlags
    var lr: Double?
    var dropout: Double?
    var average: Double? = nil
    /// Full checkpoints and deltas (TextModel/DeltaCheckpoint.swift; `--full-every`).
    var deltas = DeltaPolicy(fullEvery: DeltaPolicy.defaultFullEvery, chainLimit: DeltaPolicy.defaultChainLimit)

    /// `k` with the knob flags given (--lr, --dropout, --average) in force: a flag overrides
    /// control.json and the checkpoint, like `pp-train set` at the start.
    func flagged(_ k: Knobs) -> Knobs {
        var k = k
        if let v = lr { k.lr = v }
        if let v = dropout { k.dropout = v }
        if let v = average { k.average = v }
        return k
    }
}

/// What the loop is doing: status.json's "state" and the metrics' state gauge.
enum RunState: String, CaseIterable {
    case starting, training, idle, paused, halted, stopped
}
