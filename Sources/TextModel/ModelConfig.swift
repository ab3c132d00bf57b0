// The values a training run is created with (fastText's names), the knobs people may change
// while it runs, and the metadata every checkpoint carries. Shared because pp-train writes
// them, pp-eval and pp-select read them.

import Shared

/// Hyperparameters fixed when a run is created; recorded in every checkpoint.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var dim = 100
    /// Word n-grams: 1 = words only, 2 = words + bigrams (hashed into the buckets).
    public var wordNgrams = 2
    /// Character n-gram lengths (0/0 = none), hashed into the buckets.
    public var minn = 3
    public var maxn = 6
    /// Hash buckets for character and word n-grams.
    public var bucket = 2_000_000
    /// A word gets its own row after this many occurrences.
    public var minCount = 5
    /// Rows reserved for words; when full, the least recently seen word is evicted.
    public var vocabCapacity = 500_000
    /// Hidden layer width (0 = none: linear model).
    public var hidden = 0
    public var threads = 2
    public var seed: UInt64 = 1
    /// How much a token's character n-grams weigh in the example's mean (Features.swift).
    public var subwordWeight = SubwordWeight.each

    /// `each` (fastText's rule): every character n-gram row is one feature, so a word's 10-20
    /// n-grams outweigh its own row and the word n-grams. `token`: a token's k n-grams weigh
    /// 1/k each, one feature together. `token` wins 1.3-1.8 points on static multi-pass data
    /// and loses 3-5 on the weekly streams, where rare words live on their n-grams
    /// (docs/research.md, "Sub-word weight"), so `each` is the default.
    public enum SubwordWeight: String, Codable, Sendable, CaseIterable {
        case each, token
    }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case dim, minn, maxn, bucket, hidden, threads, seed
        case wordNgrams = "word_ngrams"
        case minCount = "min_count"
        case vocabCapacity = "vocab_capacity"
        case subwordWeight = "subword_weight"
    }

    /// `subword_weight` is written only when it is not `each`: checkpoints of the default
    /// rule keep the meta they always had, and those written before the key existed are `each`.
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        dim = try c.decode(Int.self, forKey: .dim)
        wordNgrams = try c.decode(Int.self, forKey: .wordNgrams)
        minn = try c.decode(Int.self, forKey: .minn)
        maxn = try c.decode(Int.self, forKey: .maxn)
        bucket = try c.decode(Int.self, forKey: .bucket)
        minCount = try c.decode(Int.self, forKey: .minCount)
        vocabCapacity = try c.decode(Int.self, forKey: .vocabCapacity)
        hidden = try c.decode(Int.self, forKey: .hidden)
        threads = try c.decode(Int.self, forKey: .threads)
        seed = try c.decode(UInt64.self, forKey: .seed)
        subwordWeight = try c.decodeIfPresent(SubwordWeight.self, forKey: .subwordWeight) ?? .each
    }

    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(dim, forKey: .dim)
        try c.encode(wordNgrams, forKey: .wordNgrams)
        try c.encode(minn, forKey: .minn)
        try c.encode(maxn, forKey: .maxn)
        try c.encode(bucket, forKey: .bucket)
        try c.encode(minCount, forKey: .minCount)
        try c.encode(vocabCapacity, forKey: .vocabCapacity)
        try c.encode(hidden, forKey: .hidden)
        try c.encode(threads, forKey: .threads)
        try c.encode(seed, forKey: .seed)
        if subwordWeight != .each { try c.encode(subwordWeight, forKey: .subwordWeight) }
    }

    /// The documented limits of a model config (docs/formats.md, "Limits"): a run cannot be
    /// created beyond them and a checkpoint declaring more is refused before anything is
    /// allocated for it. They bound what one file can make a reader allocate.
    public enum Limits {
        public static let dim = 4096
        public static let hidden = 65_536
        public static let vocabCapacity = 1 << 25
        /// vocab_capacity + bucket (rows are addressed with 31 bits).
        public static let rows = Int(Int32.max)
        /// rows x dim: the input table's floats (its mapping is reserved lazily, but
        /// 2^35 floats = 128 GiB is already more than any machine this runs on).
        public static let tableFloats = 1 << 35
        public static let wordNgrams = 16
        public static let maxn = 32
        public static let threads = 64
    }

    /// Throws PPError (usage) naming the first value outside the limits.
    public func validate() throws {
        let c = self
        func bad(_ s: String) -> PPError { PPError("model config: \(s)", status: .usage) }
        guard c.dim > 0 && c.dim <= Limits.dim else { throw bad("dim must be in 1...\(Limits.dim), got \(c.dim)") }
        guard c.bucket >= 0 else { throw bad("bucket must be >= 0") }
        guard c.bucket > 0 || (c.maxn <= 0 && c.wordNgrams <= 1) else { throw bad("bucket 0 needs maxn 0 and word_ngrams 1") }
        guard c.vocabCapacity >= 0 && c.vocabCapacity <= Limits.vocabCapacity else {
            throw bad("vocab_capacity must be in 0...\(Limits.vocabCapacity), got \(c.vocabCapacity)")
        }
        guard c.bucket <= Limits.rows - c.vocabCapacity else { throw bad("vocab_capacity + bucket must fit in 31 bits") }
        guard (c.vocabCapacity + c.bucket) * c.dim <= Limits.tableFloats else {
            throw bad("(vocab_capacity + bucket) x dim must be at most 2^35 floats, got \(c.vocabCapacity + c.bucket) x \(c.dim)")
        }
        guard c.maxn <= Limits.maxn else { throw bad("maxn must be at most \(Limits.maxn), got \(c.maxn)") }
        guard c.maxn <= 0 || (c.minn >= 1 && c.minn <= c.maxn) else { throw bad("need 1 <= minn <= maxn (or maxn 0), got \(c.minn)...\(c.maxn)") }
        guard c.wordNgrams >= 1 && c.wordNgrams <= Limits.wordNgrams else { throw bad("word_ngrams must be in 1...\(Limits.wordNgrams), got \(c.wordNgrams)") }
        guard c.hidden >= 0 && c.hidden <= Limits.hidden else { throw bad("hidden must be in 0...\(Limits.hidden), got \(c.hidden)") }
        guard c.threads >= 1 && c.threads <= Limits.threads else { throw bad("threads must be in 1...\(Limits.threads)") }
    }
}

/// What may change while a trainer runs (`pp-train set`, control.json).
public struct Knobs: Codable, Equatable, Sendable {
    public var lr: Double = Knobs.defaultLR
    public var dropout: Double = 0.0
    public var pause = false
    /// Half-life, in trained examples, of the averaged weights that checkpoints deploy
    /// (Average.swift); 0 = no average (checkpoints deploy the training weights).
    public var average: Double = Knobs.defaultAverage

    public static let defaultAverage: Double = 0
    /// The default learning rate: 0.2, the best fixed rate of the linear model on both shipped
    /// streams in `make drift`'s replay (tools/knob-study.py; docs/research.md, "Learning
    /// rate"): +1.5 points of P-dep over 0.1 on each. On static data trained for several
    /// passes 0.1 is 0.5-0.9 points better (bench/accuracy.py): `defaultMultiPassLR`.
    public static let defaultLR: Double = 0.2
    /// The default rate of a linear model a static multi-pass job (`pp-train --once --passes
    /// N`) creates: with the token sub-word weight, the static recipe (docs/research.md,
    /// "Sub-word weight"; ModelFlags.multiPass in pp-train).
    public static let defaultMultiPassLR: Double = 0.1
    /// With a hidden layer the best fixed rate is higher: 0.3-0.5 on both streams, 13-16
    /// points better than 0.1 and 3-4 better than 0.2 (docs/research.md).
    public static let defaultHiddenLR: Double = 0.4
    /// The default rate of a new model with (`hidden`) or without a hidden layer, trained
    /// continuously or by a static multi-pass job (`multiPass`; a hidden layer's rate was
    /// measured on the streams only and stays).
    public static func defaultLR(hidden: Bool, multiPass: Bool = false) -> Double {
        hidden ? defaultHiddenLR : (multiPass ? defaultMultiPassLR : defaultLR)
    }
    /// The largest half-life accepted (an average over more examples than any run trains is
    /// a frozen model).
    public static let maxAverage: Double = 1e12

    public init(lr: Double = Knobs.defaultLR, dropout: Double = 0.0, pause: Bool = false, average: Double = Knobs.defaultAverage) {
        self.lr = lr; self.dropout = dropout; self.pause = pause; self.average = average
    }

    enum CodingKeys: String, CodingKey { case lr, dropout, pause, average }

    /// `average` is absent from checkpoints and status files written before it existed: those
    /// had no average (0), whatever today's default.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lr = try c.decode(Double.self, forKey: .lr)
        dropout = try c.decode(Double.self, forKey: .dropout)
        pause = try c.decode(Bool.self, forKey: .pause)
        average = try c.decodeIfPresent(Double.self, forKey: .average) ?? 0
    }
}

extension Knobs {
    /// Why `lr` cannot be used, or nil. Checked in the precision the trainer uses (Float):
    /// a Double that is finite and > 0 may still round to 0 (4.9e-324: trains nothing), to a
    /// subnormal, or to infinity (1e39: the loss goes NaN) as a Float.
    public static func problem(lr: Double) -> String? {
        let f = Float(lr)
        return lr.isFinite && f.isFinite && f.isNormal && f > 0 ? nil
            : "lr must be a number > 0 that a 32-bit float holds (\(Float.leastNormalMagnitude)...\(Float.greatestFiniteMagnitude)), got \(lr)"
    }

    /// Why `dropout` cannot be used, or nil: in [0, 1) as a Float (0.99999999999 rounds to 1).
    public static func problem(dropout: Double) -> String? {
        let f = Float(dropout)
        return dropout.isFinite && dropout >= 0 && f >= 0 && f < 1 ? nil : "dropout must be a number in [0, 1) (as a 32-bit float), got \(dropout)"
    }

    /// The first problem of these knobs, or nil (knobs read from a checkpoint are checked
    /// like those from control.json and the command line).
    public var problem: String? { Knobs.problem(lr: lr) ?? Knobs.problem(dropout: dropout) ?? Knobs.problem(average: average) }

    /// Why `average` cannot be used, or nil: 0 (off) or a half-life in 1...maxAverage examples.
    public static func problem(average: Double) -> String? {
        average.isFinite && (average == 0 || (average >= 1 && average <= maxAverage)) ? nil
            : "average must be 0 (off) or a half-life in examples in 1...\(Int64(maxAverage)), got \(average)"
    }
}

/// One change of a knob, as recorded in checkpoints.
public struct KnobChange: Codable, Equatable, Sendable {
    public var step: Int
    public var knob: String
    public var old: String
    public var new: String
    public var at: String
    public init(step: Int, knob: String, old: String, new: String, at: String) {
        self.step = step; self.knob = knob; self.old = old; self.new = new; self.at = at
    }
}

/// A shard named by file name and content hash (SHA-256 of the shard file, hex).
public struct ShardRef: Codable, Equatable, Hashable, Sendable {
    public var name: String
    public var sha256: String
    public init(name: String, sha256: String) { self.name = name; self.sha256 = sha256 }
}

/// Where the trainer is in the data: which shards it knows, how far it got, the replay RNG.
/// Owned by pp-train's loop; opaque to everything else.
public struct ShardProgress: Codable, Equatable, Sendable {
    public var shard: ShardRef
    public var examples: Int
    /// Completed passes over this shard.
    public var passes: Int
    /// Next record to train on in the current pass.
    public var position: Int
    public init(shard: ShardRef, examples: Int, passes: Int, position: Int) {
        self.shard = shard; self.examples = examples; self.passes = passes; self.position = position
    }
}

public struct DataCursor: Codable, Equatable, Sendable {
    public var shards: [ShardProgress] = []
    public var rngState: UInt64 = 0
    public init() {}
    public init(shards: [ShardProgress], rngState: UInt64 = 0) { self.shards = shards; self.rngState = rngState }

    enum CodingKeys: String, CodingKey {
        case shards
        case rngState = "rng_state"
    }
}

/// The JSON metadata inside every checkpoint (docs/formats.md).
public struct CheckpointMeta: Codable, Equatable, Sendable {
    public var schema = 1
    public var run: String
    public var createdAt: String
    /// Examples trained on in total since the run was created (replays included).
    public var step: Int
    public var tokens: Int
    public var config: ModelConfig
    public var knobs: Knobs
    public var knobChanges: [KnobChange] = []
    /// Filled in by the trainer when it writes the checkpoint.
    public var labels: [String] = []
    public var vocabularySize = 0
    /// "RUN/FILE" of the checkpoint this one continues, nil for a fresh start.
    public var parent: String?
    /// Shards trained on since the parent, in first-seen order.
    public var lineage: [ShardRef] = []
    public var cursor = DataCursor()
    /// pp-train's shard guard (docs/operations.md): recent shard losses and the shard being
    /// judged. Absent in checkpoints written before the guard existed. Opaque to other tools.
    public var guardState: GuardState?
    /// A delta checkpoint's base, "RUN/FILE": the full checkpoint whose rows this one's INPT
    /// section completes (TextModel/DeltaCheckpoint.swift). nil for a full checkpoint.
    public var base: String?
    /// A delta's depth in its chain (1: its base is the full checkpoint, 2: a delta of a
    /// depth-1 delta, ...); nil for a full checkpoint.
    public var delta: Int?
    /// A delta's number among the checkpoints written since the full one (1, 2, ...: more than
    /// `delta` once cumulative deltas restart the chain; absent: equal to `delta`).
    public var sinceFull: Int?
    /// Set in a serving export (`pp-eval export`, TextModel/Export.swift): how its input rows
    /// are stored and which checkpoint it was made from. nil for every checkpoint pp-train writes.
    public var export: ExportInfo?

    public init(run: String, createdAt: String, step: Int, tokens: Int, config: ModelConfig, knobs: Knobs) {
        self.run = run; self.createdAt = createdAt; self.step = step; self.tokens = tokens
        self.config = config; self.knobs = knobs
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case schema, run, step, tokens, config, knobs, labels, parent, lineage, cursor, base, delta, export
        case createdAt = "created_at"
        case knobChanges = "knob_changes"
        case vocabularySize = "vocabulary_size"
        case guardState = "guard"
        case sinceFull = "since_full"
    }

    /// Every key but the data cursor's (a head's keys: Checkpoint.decodeHead).
    static let keysButCursor = Set(CodingKeys.allCases.map(\.rawValue)).subtracting([CodingKeys.cursor.rawValue])

    /// Set to true in a JSONEncoder's userInfo to leave the data cursor out of the JSON (a
    /// checkpoint of format version 2 carries it in its binary CURS section instead).
    public static let omitCursor = CodingUserInfoKey(rawValue: "pp.omitCursor")!

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        schema = try c.decode(Int.self, forKey: .schema)
        run = try c.decode(String.self, forKey: .run)
        createdAt = try c.decode(String.self, forKey: .createdAt)
        step = try c.decode(Int.self, forKey: .step)
        tokens = try c.decode(Int.self, forKey: .tokens)
        config = try c.decode(ModelConfig.self, forKey: .config)
        knobs = try c.decode(Knobs.self, forKey: .knobs)
        knobChanges = try c.decode([KnobChange].self, forKey: .knobChanges)
        labels = try c.decode([String].self, forKey: .labels)
        vocabularySize = try c.decode(Int.self, forKey: .vocabularySize)
        parent = try c.decodeIfPresent(String.self, forKey: .parent)
        lineage = try c.decode([ShardRef].self, forKey: .lineage)
        // In the JSON only in format version 1 checkpoints and in heads (Checkpoint.swift).
        cursor = try c.decodeIfPresent(DataCursor.self, forKey: .cursor) ?? DataCursor()
        guardState = try c.decodeIfPresent(GuardState.self, forKey: .guardState)
        base = try c.decodeIfPresent(String.self, forKey: .base)
        delta = try c.decodeIfPresent(Int.self, forKey: .delta)
        sinceFull = try c.decodeIfPresent(Int.self, forKey: .sinceFull)
        export = try c.decodeIfPresent(ExportInfo.self, forKey: .export)
    }

    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(schema, forKey: .schema)
        try c.encode(run, forKey: .run)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(step, forKey: .step)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(config, forKey: .config)
        try c.encode(knobs, forKey: .knobs)
        try c.encode(knobChanges, forKey: .knobChanges)
        try c.encode(labels, forKey: .labels)
        try c.encode(vocabularySize, forKey: .vocabularySize)
        try c.encodeIfPresent(parent, forKey: .parent)
        try c.encode(lineage, forKey: .lineage)
        if e.userInfo[CheckpointMeta.omitCursor] as? Bool != true { try c.encode(cursor, forKey: .cursor) }
        try c.encodeIfPresent(guardState, forKey: .guardState)
        try c.encodeIfPresent(base, forKey: .base)
        try c.encodeIfPresent(delta, forKey: .delta)
        try c.encodeIfPresent(sinceFull, forKey: .sinceFull)
        try c.encodeIfPresent(export, forKey: .export)
    }
}

/// A serving export's meta key `export` (docs/formats.md "Serving export").
public struct ExportInfo: Codable, Equatable, Sendable {
    /// Bits per stored input weight: 32 (as trained), 16 (IEEE binary16) or 8 (int8, a scale per row).
    public var bits: Int
    /// The checkpoint it was made from, as given to `pp-eval export` (its file name).
    public var from: String
    public init(bits: Int, from: String) { self.bits = bits; self.from = from }
}

/// The state of pp-train's per-shard loss guard, carried in checkpoints so that a resume
/// judges the next shard against the same recent range.
public struct GuardState: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var shard: String
        /// Mean per-example training loss over the shard's first pass (so far, for `judging`).
        public var loss: Double
        public var examples: Int
        /// The shard's label signal (pp-train Guard.swift, issue 14): the model's loss with the
        /// shard's labels over its loss with them shuffled, measured before each update on a
        /// sample of the new examples; nil when it could not be measured (older checkpoints).
        public var signal: Double?
        public init(shard: String, loss: Double, examples: Int, signal: Double? = nil) {
            self.shard = shard; self.loss = loss; self.examples = examples; self.signal = signal
        }
    }
    /// The most recently accepted shards, oldest first.
    public var recent: [Entry] = []
    /// The new shard being trained on and judged (a checkpoint written mid-shard on SIGTERM).
    public var judging: Entry?
    /// Issue 14, probation: a shard whose loss spiked without a damage verdict, trained on
    /// and judged by the data that follows it (pp-train Guard.swift). nil: none pending
    /// (also in checkpoints written before probation existed).
    public var probation: Probation?
    public init(recent: [Entry] = [], judging: Entry? = nil) { self.recent = recent; self.judging = judging }

    /// A shard on probation and the evidence gathered so far: the following new examples
    /// scored by the model that learned the shard ("after") and by the model at the revert
    /// point ("before"), each before any update on them.
    public struct Probation: Codable, Equatable, Sendable {
        public var shard: String
        public var sha256: String
        /// The shard's loss (the spike) and the threshold it went past.
        public var loss: Double
        public var threshold: Double
        /// Following examples scored, and the sums of their losses under each model and of
        /// the squared per-example differences (after - before).
        public var n = 0
        public var afterSum = 0.0
        public var beforeSum = 0.0
        public var diffSquares = 0.0
        /// Why it is on probation: nil for a loss spike; for labels that did not follow from
        /// the texts without a spike (a one-label flood trains down its own loss at once),
        /// the label signal and the limit it went past (issue 14).
        public var signal: Double? = nil
        public var signalLimit: Double? = nil
        public init(shard: String, sha256: String, loss: Double, threshold: Double, signal: Double? = nil, signalLimit: Double? = nil) {
            self.shard = shard; self.sha256 = sha256; self.loss = loss; self.threshold = threshold
            self.signal = signal; self.signalLimit = signalLimit
        }
    }
}
