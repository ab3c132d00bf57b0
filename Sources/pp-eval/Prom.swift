// metrics/pp-eval.prom (Prometheus textfile): after pp-eval stores results, the newest result
// of each run on that eval set, so a dashboard shows every run's current quality. Only gauges,
// rebuilt from evals/ each time (no state of its own). The results are chosen by their file
// names (EvalNames.base: checkpoint, run, eval set), so only one JSON is decoded per run: the
// 5-minute production-sim showed decoding every stored result taking over half of each run.

import Shared
import TextModel

func publishEvalMetrics(root: Root, evalset: String, lastExamplesPerSecond: Double) throws {
    var newest: [String: EvalResult] = [:]
    for (run, files) in try resultFilesByRun(root: root, evalset: evalset) {
        // Newest step first; only the first readable result on this eval set is decoded, so a
        // run costs one JSON decode however long evals/ keeps its history.
        for f in files.sorted(by: { $0.step > $1.step || ($0.step == $1.step && $0.file > $1.file) }) {
            guard let r = try? EvalResult.load(path: root.evals + "/" + f.file), r.evalset == evalset, r.run == run else { continue }
            newest[run] = r
            break
        }
    }
    var m = Metrics()
    m.add("perpetuum_eval_last_success_timestamp_seconds", Clock.now().rounded(), help: "When pp-eval last stored a result.")
    m.add("perpetuum_eval_examples_per_second", lastExamplesPerSecond, help: "Scoring speed of the last result stored.")
    for (run, r) in newest.sorted(by: { $0.key < $1.key }) {
        m.add("perpetuum_eval_step", r.step, help: "Step of each run's newest evaluated checkpoint.", labels: [("run", run)])
        for slice in ["all", "recent", "old"] {
            guard let s = r.slice(slice) else { continue }
            m.add("perpetuum_eval_examples", s.examples, help: "Examples in the slice of the current eval set.",
                  labels: [("run", run), ("slice", slice)])
            for name in SliceMetrics.names {
                m.add("perpetuum_eval_score", s.value(name) ?? 0,
                      help: "Each run's newest evaluated checkpoint on the current eval set, by slice and metric (docs/formats.md).",
                      labels: [("run", run), ("slice", slice), ("metric", name)])
            }
        }
    }
    try m.publish(root: root, name: "pp-eval")
}

/// The stored results on `evalset` by run, from their file names alone (EvalNames.resultParts).
func resultFilesByRun(root: Root, evalset: String) throws -> [String: [(file: String, step: Int)]] {
    var out: [String: [(file: String, step: Int)]] = [:]
    for f in try FileIO.list(root.evals) {
        guard let (checkpoint, run) = EvalNames.resultParts(f, evalset: evalset) else { continue }
        out[run, default: []].append((f, checkpoint.step))
    }
    return out
}
