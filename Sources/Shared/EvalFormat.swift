// The eval result formats pp-eval writes and pp-select reads (docs/formats.md, "Eval result"):
//  - evals/<ckpt file sans .ppc>--<RUN>--<evalset16>.json, one flat JSON object, "schema": 1;
//  - beside it, <same>.pex: the per-example outcomes in the eval set's fixed example order,
//    so pp-select can run a paired bootstrap over examples. One zstd frame around:
//
//   offset  size  field
//   0       8     magic "PPEVEX01"
//   8       4     version (u32 LE) = 1
//   12      4     header length H (u32 LE)
//   16      H     header: UTF-8 JSON {"schema":1,"evalset":HEX,"examples":N,"labels":[...]}
//   16+H    4N    truth, u32 LE each (index into labels)
//           4N    pred, u32 LE each (index into labels; labels.count = a label not in the set)
//           4N    p_true, f32 LE each
//           4N    p_top, f32 LE each
//           N     flags, u8 each: bit 0 recent slice, bit 1 old slice, bit 2 top-5 hit
//   ...     8     end magic "PPEVEND1"
//
// This file only encodes, decodes and names these files; pp-eval computes them.

import Foundation

/// A coding key made from any string, so flat objects can be written field by field.
public struct JSONKey: CodingKey, Hashable {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ s: String) { stringValue = s }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { return nil }
}

extension SliceMetrics: Codable {
    /// Writes the slice's keys into `c` (top level for the whole set, nested for slices).
    public func encodeFields(into c: inout KeyedEncodingContainer<JSONKey>) throws {
        try c.encode(examples, forKey: JSONKey("examples"))
        try c.encode(accuracy, forKey: JSONKey("accuracy"))
        try c.encode(top5Accuracy, forKey: JSONKey("top5_accuracy"))
        try c.encode(macroF1, forKey: JSONKey("macro_f1"))
        try c.encode(weightedF1, forKey: JSONKey("weighted_f1"))
        try c.encode(logLoss, forKey: JSONKey("log_loss"))
        try c.encode(ece, forKey: JSONKey("ece"))
        try c.encode(labels, forKey: JSONKey("labels"))
    }

    public init(fields c: KeyedDecodingContainer<JSONKey>) throws {
        examples = try c.decode(Int.self, forKey: JSONKey("examples"))
        accuracy = try c.decode(Double.self, forKey: JSONKey("accuracy"))
        top5Accuracy = try c.decode(Double.self, forKey: JSONKey("top5_accuracy"))
        macroF1 = try c.decode(Double.self, forKey: JSONKey("macro_f1"))
        weightedF1 = try c.decode(Double.self, forKey: JSONKey("weighted_f1"))
        logLoss = try c.decode(Double.self, forKey: JSONKey("log_loss"))
        ece = try c.decode(Double.self, forKey: JSONKey("ece"))
        labels = try c.decode([String: LabelMetrics].self, forKey: JSONKey("labels"))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try encodeFields(into: &c)
    }

    public init(from decoder: Decoder) throws {
        try self.init(fields: try decoder.container(keyedBy: JSONKey.self))
    }
}

/// One stored eval result. The whole-set metrics sit at the top level (`.macro_f1`), the
/// slices under `recent` and `old` (`.recent.macro_f1`).
public struct EvalResult: Equatable, Sendable {
    public static let schema = 1
    public var schema = EvalResult.schema
    /// "RUN/FILE", the form CheckpointMeta.parent uses.
    public var checkpoint: String
    public var run: String
    /// The checkpoint's path relative to the root ("runs/RUN/checkpoints/FILE"), or absolute
    /// when it lies outside the root.
    public var path: String
    public var step: Int
    public var checkpointCreatedAt: String
    public var evaluatedAt: String
    /// SHA-256 (hex) of exactly what was scored (docs/formats.md, "Eval set").
    public var evalset: String
    /// "holdout", or the --data argument.
    public var evalsetSource: String
    public var evalsetFiles: Int
    public var recentDays: Int
    /// When set, the slices were cut by count (pp-eval --recent-examples, the default): the
    /// newest and the oldest this many examples; `recentDays` is then 0.
    public var recentExamples: Int? = nil
    /// Slice bounds, ISO-8601 UTC: recent = examples at or after `recentFrom`, old = at or
    /// before `oldTo`.
    public var recentFrom: String
    public var oldTo: String
    public var seconds: Double
    public var examplesPerSecond: Double
    /// How many of the set's examples went through the model for this result (the rest came
    /// from pp-eval's per-shard score cache); absent in results written before the cache.
    /// `seconds` and `examplesPerSecond` describe these.
    public var scoredExamples: Int? = nil
    /// Name of the per-example file beside this one (same folder).
    public var examplesFile: String
    public var all: SliceMetrics
    public var recent: SliceMetrics
    public var old: SliceMetrics

    public init(checkpoint: String, run: String, path: String, step: Int, checkpointCreatedAt: String,
                evaluatedAt: String, evalset: String, evalsetSource: String, evalsetFiles: Int, recentDays: Int,
                recentFrom: String, oldTo: String, seconds: Double, examplesPerSecond: Double, examplesFile: String,
                all: SliceMetrics, recent: SliceMetrics, old: SliceMetrics) {
        self.checkpoint = checkpoint; self.run = run; self.path = path; self.step = step
        self.checkpointCreatedAt = checkpointCreatedAt; self.evaluatedAt = evaluatedAt
        self.evalset = evalset; self.evalsetSource = evalsetSource; self.evalsetFiles = evalsetFiles
        self.recentDays = recentDays; self.recentFrom = recentFrom; self.oldTo = oldTo
        self.seconds = seconds; self.examplesPerSecond = examplesPerSecond; self.examplesFile = examplesFile
        self.all = all; self.recent = recent; self.old = old
    }

    /// The value of a metric path: "macro_f1" or "all.macro_f1" (whole set), "recent.X", "old.X".
    public func metric(_ path: String) -> Double? {
        let (slice, name) = EvalResult.splitMetric(path)
        switch slice {
        case "all": return all.value(name)
        case "recent": return recent.value(name)
        case "old": return old.value(name)
        default: return nil
        }
    }

    public func slice(_ name: String) -> SliceMetrics? {
        switch name { case "all": return all; case "recent": return recent; case "old": return old; default: return nil }
    }

    /// ("recent", "macro_f1") from "recent.macro_f1"; a bare name is the whole set ("all").
    public static func splitMetric(_ path: String) -> (slice: String, name: String) {
        if let dot = path.firstIndex(of: ".") {
            return (String(path[..<dot]), String(path[path.index(after: dot)...]))
        }
        return ("all", path)
    }

    /// True when `path` names a known slice and metric.
    public static func isValidMetric(_ path: String) -> Bool {
        let (s, n) = splitMetric(path)
        return ["all", "recent", "old"].contains(s) && SliceMetrics.names.contains(n)
    }

    /// The JSON text, keys sorted, no newline.
    public func json() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }

    /// Reads a stored result; a defect is a `.corrupt` PPError naming the file.
    public static func load(path: String) throws -> EvalResult {
        let bytes = try FileIO.readAll(path)
        do { return try JSONDecoder().decode(EvalResult.self, from: Data(bytes)) } catch {
            throw PPError.corrupt(path, "not an eval result (\(error))")
        }
    }
}

extension EvalResult: Codable {
    static let fixedKeys = ["schema", "checkpoint", "run", "path", "step", "checkpoint_created_at", "evaluated_at",
                            "evalset", "evalset_source", "evalset_files", "recent_days", "recent_examples", "recent_from", "old_to",
                            "seconds", "examples_per_second", "scored_examples", "examples_file", "recent", "old"]

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.encode(schema, forKey: JSONKey("schema"))
        try c.encode(checkpoint, forKey: JSONKey("checkpoint"))
        try c.encode(run, forKey: JSONKey("run"))
        try c.encode(path, forKey: JSONKey("path"))
        try c.encode(step, forKey: JSONKey("step"))
        try c.encode(checkpointCreatedAt, forKey: JSONKey("checkpoint_created_at"))
        try c.encode(evaluatedAt, forKey: JSONKey("evaluated_at"))
        try c.encode(evalset, forKey: JSONKey("evalset"))
        try c.encode(evalsetSource, forKey: JSONKey("evalset_source"))
        try c.encode(evalsetFiles, forKey: JSONKey("evalset_files"))
        try c.encode(recentDays, forKey: JSONKey("recent_days"))
        if let n = recentExamples { try c.encode(n, forKey: JSONKey("recent_examples")) }
        try c.encode(recentFrom, forKey: JSONKey("recent_from"))
        try c.encode(oldTo, forKey: JSONKey("old_to"))
        try c.encode(seconds, forKey: JSONKey("seconds"))
        try c.encode(examplesPerSecond, forKey: JSONKey("examples_per_second"))
        if let n = scoredExamples { try c.encode(n, forKey: JSONKey("scored_examples")) }
        try c.encode(examplesFile, forKey: JSONKey("examples_file"))
        try all.encodeFields(into: &c)
        try c.encode(recent, forKey: JSONKey("recent"))
        try c.encode(old, forKey: JSONKey("old"))
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        schema = try c.decode(Int.self, forKey: JSONKey("schema"))
        guard schema == EvalResult.schema else {
            throw DecodingError.dataCorruptedError(forKey: JSONKey("schema"), in: c,
                                                   debugDescription: "eval schema \(schema), this build reads \(EvalResult.schema)")
        }
        checkpoint = try c.decode(String.self, forKey: JSONKey("checkpoint"))
        run = try c.decode(String.self, forKey: JSONKey("run"))
        path = try c.decode(String.self, forKey: JSONKey("path"))
        step = try c.decode(Int.self, forKey: JSONKey("step"))
        checkpointCreatedAt = try c.decode(String.self, forKey: JSONKey("checkpoint_created_at"))
        evaluatedAt = try c.decode(String.self, forKey: JSONKey("evaluated_at"))
        evalset = try c.decode(String.self, forKey: JSONKey("evalset"))
        evalsetSource = try c.decode(String.self, forKey: JSONKey("evalset_source"))
        evalsetFiles = try c.decode(Int.self, forKey: JSONKey("evalset_files"))
        recentDays = try c.decode(Int.self, forKey: JSONKey("recent_days"))
        recentExamples = try c.decodeIfPresent(Int.self, forKey: JSONKey("recent_examples"))
        recentFrom = try c.decode(String.self, forKey: JSONKey("recent_from"))
        oldTo = try c.decode(String.self, forKey: JSONKey("old_to"))
        seconds = try c.decode(Double.self, forKey: JSONKey("seconds"))
        examplesPerSecond = try c.decode(Double.self, forKey: JSONKey("examples_per_second"))
        scoredExamples = try c.decodeIfPresent(Int.self, forKey: JSONKey("scored_examples"))
        examplesFile = try c.decode(String.self, forKey: JSONKey("examples_file"))
        all = try SliceMetrics(fields: c)
        recent = try c.decode(SliceMetrics.self, forKey: JSONKey("recent"))
        old = try c.decode(SliceMetrics.self, forKey: JSONKey("old"))
    }
}

/// Bits of the per-example flags byte.
public enum ExampleFlag {
    public static let recent: UInt8 = 1
    public static let old: UInt8 = 2
    public static let top5: UInt8 = 4
}

/// The per-example file (`.pex`): outcomes in the eval set's example order.
public struct ExampleFile: Equatable, Sendable {
    public static let magic: [UInt8] = Array("PPEVEX01".utf8)
    public static let endMagic: [UInt8] = Array("PPEVEND1".utf8)
    public static let version = 1
    public static let fileExtension = "pex"

    struct Header: Codable { var schema: Int; var evalset: String; var examples: Int; var labels: [String] }

    public var evalset: String
    public var labels: [String]
    public var outcomes: [ExampleOutcome]
    /// recent/old bits per example (ExampleFlag); top-5 lives in `outcomes`.
    public var slices: [UInt8]

    public init(evalset: String, labels: [String], outcomes: [ExampleOutcome], slices: [UInt8]) {
        precondition(outcomes.count == slices.count)
        self.evalset = evalset; self.labels = labels; self.outcomes = outcomes; self.slices = slices
    }

    /// The compressed file bytes.
    public func bytes() throws -> [UInt8] {
        let n = outcomes.count
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let h = [UInt8](try enc.encode(Header(schema: 1, evalset: evalset, examples: n, labels: labels)))
        var out = [UInt8]()
        out.reserveCapacity(32 + h.count + 17 * n)
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out.append(contentsOf: Self.magic)
        le(UInt32(Self.version)); le(UInt32(h.count))
        out.append(contentsOf: h)
        for o in outcomes { le(o.truth) }
        for o in outcomes { le(o.pred) }
        for o in outcomes { le(o.pTrue.bitPattern) }
        for o in outcomes { le(o.pTop.bitPattern) }
        for i in 0..<n { out.append(slices[i] | (outcomes[i].top5 ? ExampleFlag.top5 : 0)) }
        out.append(contentsOf: Self.endMagic)
        return try Zstd.compress(out, level: 3)
    }

    public static func load(path: String) throws -> ExampleFile {
        try ExampleFile(path: path, fileBytes: try FileIO.readAll(path))
    }

    public init(path: String, fileBytes: [UInt8]) throws {
        let p: [UInt8]
        do { p = try Zstd.decompress(fileBytes) } catch let e as PPError {
            throw PPError.corrupt(path, "not a readable per-example file (\(e.message))")
        }
        func u32(_ o: Int) -> UInt32 { p.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian } }
        guard p.count >= 24, Array(p[0..<8]) == Self.magic else { throw PPError.corrupt(path, "bad magic (not a per-example file)") }
        guard Int(u32(8)) == Self.version else { throw PPError.corrupt(path, "per-example format version \(u32(8)), this build reads \(Self.version)") }
        let hl = Int(u32(12))
        guard 16 + hl <= p.count else { throw PPError.corrupt(path, "truncated header") }
        let h: Header
        do { h = try JSONDecoder().decode(Header.self, from: Data(p[16..<(16 + hl)])) } catch {
            throw PPError.corrupt(path, "unreadable header: \(error)")
        }
        let n = h.examples
        let start = 16 + hl
        guard n >= 0, start + 17 * n + 8 == p.count else { throw PPError.corrupt(path, "size does not match \(n) examples") }
        guard Array(p[(start + 17 * n)...]) == Self.endMagic else { throw PPError.corrupt(path, "bad end magic") }
        var outcomes = [ExampleOutcome]()
        outcomes.reserveCapacity(n)
        var slices = [UInt8](repeating: 0, count: n)
        let labelCount = UInt32(h.labels.count)
        try p.withUnsafeBytes { b in
            for i in 0..<n {
                let t = b.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self).littleEndian
                let pr = b.loadUnaligned(fromByteOffset: start + 4 * (n + i), as: UInt32.self).littleEndian
                let pt = Float(bitPattern: b.loadUnaligned(fromByteOffset: start + 4 * (2 * n + i), as: UInt32.self).littleEndian)
                let pp = Float(bitPattern: b.loadUnaligned(fromByteOffset: start + 4 * (3 * n + i), as: UInt32.self).littleEndian)
                let f = b[start + 16 * n + i]
                guard t < labelCount, pr <= labelCount else { throw PPError.corrupt(path, "example \(i): label index out of range") }
                outcomes.append(ExampleOutcome(truth: t, pred: pr, pTrue: pt, pTop: pp, top5: f & ExampleFlag.top5 != 0))
                slices[i] = f & (ExampleFlag.recent | ExampleFlag.old)
            }
        }
        self.evalset = h.evalset
        self.labels = h.labels
        self.outcomes = outcomes
        self.slices = slices
    }

    /// Metrics of one slice ("all", "recent", "old"), computed as pp-eval computed them.
    public func metrics(slice: String) -> SliceMetrics {
        var acc = MetricsAccumulator(labelCount: labels.count)
        let bit = EvalNames.sliceBit(slice)
        for i in 0..<outcomes.count where bit == 0 || slices[i] & bit != 0 { acc.add(outcomes[i]) }
        return acc.finish(labels: labels)
    }
}

/// File names of the state folder's eval and checkpoint entries.
public enum EvalNames {
    /// 0 for "all" (every example), else the flag bit of the slice.
    public static func sliceBit(_ slice: String) -> UInt8 {
        switch slice { case "recent": return ExampleFlag.recent; case "old": return ExampleFlag.old; default: return 0 }
    }

    /// "<ckpt file sans .ppc>--<RUN>--<first 16 hex of evalset>"; `.json` and `.pex` follow.
    public static func base(checkpointFile: String, run: String, evalset: String) -> String {
        checkpointStem(checkpointFile, run: run) + "--" + String(evalset.prefix(16))
    }

    /// The checkpoint stem of a stored result's file name, "<stem>--<evalset16>.json" as
    /// `base` builds it; nil for any other name.
    public static func resultStem(_ fileName: String) -> String? {
        guard fileName.hasSuffix(".json"), let r = fileName.range(of: "--", options: .backwards) else { return nil }
        let stem = String(fileName[..<r.lowerBound])
        return stem.isEmpty ? nil : stem
    }

    /// The end of the file name of every stored result on `evalset`: "--<evalset16>.json".
    public static func resultSuffix(evalset: String) -> String { "--" + String(evalset.prefix(16)) + ".json" }

    /// The checkpoint and run of a stored result's file name on `evalset` (`base` + ".json"),
    /// from the name alone; nil for any other name. A checkpoint's file name holds no "--", so
    /// the first "--" ends it and the run (which may hold "--") runs to the suffix.
    public static func resultParts(_ fileName: String, evalset: String) -> (checkpoint: CheckpointName, run: String)? {
        let suffix = resultSuffix(evalset: evalset)
        guard fileName.hasSuffix(suffix) else { return nil }
        let stem = fileName.dropLast(suffix.count)
        guard let sep = stem.range(of: "--"),
              let name = CheckpointName(String(stem[..<sep.lowerBound]) + "." + CheckpointName.fileExtension) else { return nil }
        let run = String(stem[sep.upperBound...])
        return run.isEmpty ? nil : (name, run)
    }

    /// "<ckpt file sans .ppc>--<RUN>": the part every file of a checkpoint's in evals/ starts with.
    public static func checkpointStem(_ checkpointFile: String, run: String) -> String {
        var f = checkpointFile
        if f.hasSuffix("." + CheckpointName.fileExtension) { f.removeLast(CheckpointName.fileExtension.count + 1) }
        return f + "--" + run
    }

    /// (RUN, FILE) of a checkpoint path ending in "runs/RUN/checkpoints/FILE"; nil otherwise.
    public static func checkpointID(path: String) -> (run: String, file: String)? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard parts.count >= 4, parts[parts.count - 2] == "checkpoints", parts[parts.count - 4] == "runs" else { return nil }
        return (parts[parts.count - 3], parts[parts.count - 1])
    }

    /// pp-eval's per-shard score cache, "<ckpt file sans .ppc>--<RUN>.psc", one per checkpoint
    /// (pp-eval's ScoreCache.swift has the format; pp-select only deletes these with their
    /// checkpoint).
    public static let scoreCacheExtension = "psc"
    public static func scoreCache(checkpointFile: String, run: String) -> String {
        checkpointStem(checkpointFile, run: run) + "." + scoreCacheExtension
    }

    public static func relativeCheckpointPath(run: String, file: String) -> String {
        "runs/" + run + "/checkpoints/" + file
    }
}
