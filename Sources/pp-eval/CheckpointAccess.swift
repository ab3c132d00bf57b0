// The one place pp-eval loads checkpoints (Shared Checkpoint, docs/design.md "Checkpoint
// API"): a corrupt file is a `.corrupt` PPError naming it, so callers exit 65 and store
// nothing; an unreadable one is `.noInput`.

import Shared
import TextModel

struct LoadedCheckpoint {
    var meta: CheckpointMeta
    var model: Predictor
}

/// Shared's Model is what pp-eval scores with; tests use stand-in predictors.
extension Model: Predictor {}

/// Loads for inference (Checkpoint.LoadMode): pp-eval never trains, so the optimiser state is
/// skipped and the input rows stay packed (no table of every possible row is faulted in).
/// The deployed weights: the averaged ones when the checkpoint has them (its AVGW section,
/// the `average` knob), else the training weights.
func loadCheckpoint(_ path: String) throws -> LoadedCheckpoint {
    let ck = try Checkpoint.load(path: path, mode: .inference, averaged: true)
    return LoadedCheckpoint(meta: ck.meta, model: ck.model)
}
