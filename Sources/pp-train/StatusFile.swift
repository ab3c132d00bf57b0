// status.json: what a trainer is doing now, for people and monitoring. Replaced whole every
// few seconds (FileIO.publish) and on every change of state. The keys are listed in
// docs/operations.md ("pp-train"). This file only shapes the document.

import Foundation
import Shared
import TextModel

struct StatusDoc: Codable, Equatable {
    var schema = 1
    var run: String
    var pid: Int32
    /// starting, training, idle, paused, halted, stopped
    var state: String
    /// new (new shards with replay share), replay (idle replay), passes (--once --passes); nil when not training
    var mode: String?
    var step: Int
    var tokens: Int
    var examplesPerS: Double
    var tokensPerS: Double
    /// Moving average of the per-example training loss (nil before the first batch).
    var loss: Double?
    var knobs: Knobs
    var vocabularySize: Int
    var labels: Int
    var shards: Int
    var pendingShards: Int
    var newestShard: String?
    var lastCheckpoint: String?
    var startedFrom: String?
    var startedAt: String
    var updatedAt: String
    /// Shards in runs/RUN/suspects.json (never trained on again).
    var suspects = 0
    /// Shards the guard stopped since this process started, and the last one.
    var guardTrips = 0
    var lastGuardTrip: SuspectShard?
    /// Loss spikes recorded as change (trained on, not stopped) since this process started.
    var guardSpikes = 0
    /// The loss of the last new shard judged, the threshold the next one is held to (absent:
    /// no range yet, or the guard is off), and the new shard being judged now.
    var lastShardLoss: Double?
    var guardThreshold: Double?
    var judging: String?
    /// The shard on probation (Guard.swift), and the probation verdicts since this process
    /// started.
    var probation: String?
    var probationConfirmed = 0
    var probationUndone = 0
    /// Work not in a checkpoint yet: when its first batch was trained, and when an idle
    /// trainer checkpoints it (`--checkpoint-every` after that; absent for an example
    /// cadence, which checkpoints as soon as the trainer is idle). Absent when all is saved.
    var unsavedSince: String?
    var checkpointDue: String?
    /// The last checkpoint this process adopted (control.json `adopt`) and when; absent when none.
    var adopted: String?
    var adoptedAt: String?

    enum CodingKeys: String, CodingKey {
        case schema, run, pid, state, mode, step, tokens, loss, knobs, labels, shards
        case examplesPerS = "examples_per_s"
        case tokensPerS = "tokens_per_s"
        case vocabularySize = "vocabulary_size"
        case pendingShards = "pending_shards"
        case newestShard = "newest_shard"
        case lastCheckpoint = "last_checkpoint"
        case startedFrom = "started_from"
        case startedAt = "started_at"
        case updatedAt = "updated_at"
        case suspects
        case guardTrips = "guard_trips"
        case guardSpikes = "guard_spikes"
        case lastGuardTrip = "last_guard_trip"
        case lastShardLoss = "last_shard_loss"
        case guardThreshold = "guard_threshold"
        case judging, probation
        case probationConfirmed = "probation_confirmed"
        case probationUndone = "probation_undone"
        case unsavedSince = "unsaved_since"
        case checkpointDue = "checkpoint_due"
        case adopted
        case adoptedAt = "adopted_at"
    }

    func write(_ path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var bytes = [UInt8](try enc.encode(self))
        bytes.append(0x0A)
        // Not durable (FileIO.publish): the trainer replaces it within seconds while it runs
        // and at its start after a crash; a folder fsync per refresh was a quarter of a
        // trickle-fed trainer's CPU in the drift replay.
        try FileIO.publish(bytes, to: path, durable: false)
    }
}
