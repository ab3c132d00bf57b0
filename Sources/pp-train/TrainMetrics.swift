// metrics/pp-train-RUN.prom (Prometheus textfile, issue 6): what a trainer is doing, for
// node_exporter's textfile collector. Published with every status.json refresh, from the
// same numbers, atomically (Shared/Metrics; StatusReporter publishes it). One file per run, every sample labelled with
// the run, so several trainers never write the same file. Names and meanings are listed in
// docs/formats.md ("pp-train metrics"). This file only shapes the numbers.

import Foundation
import Shared
import TextModel

enum TrainMetrics {
    static let states = RunState.allCases.filter { $0 != .starting }.map(\.rawValue)

    static func fileName(run: String) -> String { "pp-train-" + run }

    static func render(status d: StatusDoc, lastCheckpointTime: Double?, now: Double) -> Metrics {
        let run = [("run", d.run)]
        var m = Metrics()
        m.add("perpetuum_train_up", d.state == RunState.stopped.rawValue ? 0 : 1,
              help: "1 while a pp-train process trains or waits for the run, 0 once it stopped.", labels: run)
        for st in states {
            m.add("perpetuum_train_state", d.state == st ? 1 : 0, help: "The trainer's state (1 for the current one).",
                  labels: run + [("state", st)])
        }
        m.add("perpetuum_train_step", d.step, help: "Examples trained since the run was created (replays included).", labels: run)
        m.add("perpetuum_train_tokens", d.tokens, help: "Tokens trained since the run was created.", labels: run)
        m.add("perpetuum_train_examples_per_second", d.examplesPerS, help: "Training throughput over the last status interval.", labels: run)
        m.add("perpetuum_train_tokens_per_second", d.tokensPerS, help: "Training throughput in tokens over the last status interval.", labels: run)
        if let l = d.loss {
            m.add("perpetuum_train_loss", l, help: "Moving average of the per-example training loss (nats).", labels: run)
        }
        m.add("perpetuum_train_lr", d.knobs.lr, help: "Learning rate knob in force.", labels: run)
        m.add("perpetuum_train_dropout", d.knobs.dropout, help: "Dropout knob in force.", labels: run)
        m.add("perpetuum_train_paused", d.knobs.pause ? 1 : 0, help: "1 when control.json says pause=true.", labels: run)
        m.add("perpetuum_train_vocabulary_size", d.vocabularySize, help: "Words with their own embedding row.", labels: run)
        m.add("perpetuum_train_labels", d.labels, help: "Labels the model knows.", labels: run)
        m.add("perpetuum_train_shards", d.shards, help: "Shards in the training pool (suspects excluded).", labels: run)
        m.add("perpetuum_train_pending_shards", d.pendingShards, help: "Shards in the pool not yet read once.", labels: run)
        if let t = lastCheckpointTime {
            m.add("perpetuum_train_last_checkpoint_timestamp_seconds", t.rounded(),
                  help: "When the run's newest checkpoint this trainer wrote or resumed was written (Unix time).", labels: run)
            m.add("perpetuum_train_last_checkpoint_age_seconds", max(0, now - t).rounded(),
                  help: "Seconds since that checkpoint was written.", labels: run)
        }
        m.add("perpetuum_train_suspect_shards", d.suspects, help: "Shards in runs/RUN/suspects.json, never trained on again.", labels: run)
        m.add("perpetuum_train_guard_trips_total", d.guardTrips, kind: .counter,
              help: "Shards the loss guard stopped since this trainer started.", labels: run)
        m.add("perpetuum_train_guard_spikes_total", d.guardSpikes, kind: .counter,
              help: "Loss spikes on new shards recorded as change (trained on) since this trainer started.", labels: run)
        if let l = d.lastShardLoss {
            m.add("perpetuum_train_last_shard_loss", l, help: "Loss of the last new shard the guard judged (nats).", labels: run)
        }
        if let t = d.guardThreshold {
            m.add("perpetuum_train_guard_threshold", t, help: "Loss above which the guard stops the next new shard (nats).", labels: run)
        }
        m.add("perpetuum_train_last_update_timestamp_seconds", now.rounded(), help: "When this file was written (Unix time).", labels: run)
        return m
    }
}
