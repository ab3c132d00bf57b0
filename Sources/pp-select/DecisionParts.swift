// The parts of a decision record (History.swift) that other files compute: a per-label or
// old-slice regression (Selection.swift) and a poisoned shard (PoisonGuard.swift). Kept apart
// so History.swift and this file alone make selections.jsonl's parser, which the fuzz target
// Fuzz/Targets/fuzz-selections links in by symbolic links.

struct Regression: Codable, Equatable {
    var label: String
    var deployed: Double
    var candidate: Double
    var support: Int
}

/// A poisoned shard named in a decision: `certain` false when it may only be in the missing
/// part of an incomplete lineage.
struct PoisonedShard: Codable, Equatable {
    var shard: String
    var why: String
    var certain: Bool
}
