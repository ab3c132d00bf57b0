// metrics/ingest.prom (issue 6, "Metrics and logs"): what pp-ingest has done over the root's
// lifetime (counters kept in stats/counters.json, so they survive the oneshot process), what
// the state folder holds now, and the batch statistics of the last input this run measured
// with the thresholds they were held against. Names and meanings: docs/formats.md.

import Shared
import TextModel

enum IngestMetrics {
    static func count(_ dir: String, suffix: String) -> Int {
        ((try? FileIO.list(dir)) ?? []).filter { $0.hasSuffix(suffix) }.count
    }

    static func fill(_ m: inout Metrics, root: Root, counters: IngestCounters, run: [String: Int], seconds: Double,
                     last: [CheckOutcome], lastStats: [String: Double], policy: IngestPolicy) {
        let statuses = ["accepted", "partial", "duplicate", "rejected", "quarantined"]
        for s in statuses {
            m.add("perpetuum_ingest_inputs_total", counters.inputs[s] ?? 0, kind: .counter,
                  help: "Inputs processed since the root was created, by outcome.", labels: [("status", s)])
        }
        m.add("perpetuum_ingest_examples_total", counters.examples, kind: .counter, help: "Examples in accepted inputs (train and holdout).")
        m.add("perpetuum_ingest_bytes_total", counters.bytes, kind: .counter, help: "Content bytes of accepted inputs (after decompression).")
        for c in IngestPolicy.checkNames {
            m.add("perpetuum_ingest_checks_tripped_total", counters.checksTripped[c] ?? 0, kind: .counter,
                  help: "New inputs on which a batch check tripped (a damage check quarantines unless checks are off; a change check only records).", labels: [("check", c)])
        }
        m.add("perpetuum_ingest_shards", count(root.shards, suffix: "." + ShardName.fileExtension), help: "Training shards in shards/.")
        m.add("perpetuum_ingest_holdout_shards", count(root.holdout, suffix: "." + ShardName.fileExtension), help: "Holdout shards in holdout/.")
        m.add("perpetuum_ingest_quarantined", count(root.quarantine, suffix: ".reason.json"),
              help: "Reason files in quarantine/: quarantined or rejected inputs and quarantined shards.")
        for s in statuses {
            m.add("perpetuum_ingest_last_run_inputs", run[s] ?? 0, help: "Inputs of the last run, by outcome.", labels: [("status", s)])
        }
        m.add("perpetuum_ingest_last_run_seconds", seconds, help: "Wall time of the last run.")
        m.add("perpetuum_ingest_last_run_timestamp_seconds", Clock.now(), help: "When the last run ended (Unix time).")
        for c in last {
            if let v = c.value {
                m.add("perpetuum_ingest_last_check_value", v, help: "The last measured input's value per batch check.", labels: [("check", c.check)])
            }
        }
        for c in last {
            if let t = c.threshold {
                m.add("perpetuum_ingest_last_check_threshold", t, help: "The threshold that value was held against (widened for small batches).",
                      labels: [("check", c.check)])
            }
        }
        for (k, v) in lastStats.sorted(by: { $0.key < $1.key }) where v.isFinite {
            m.add("perpetuum_ingest_last_batch_stat", v, help: "The last measured input's statistics (docs/formats.md, stats keys).", labels: [("stat", k)])
        }
    }
}
