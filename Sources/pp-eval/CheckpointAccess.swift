// The one place pp-eval loads checkpoints (Shared Checkpoint, docs/design.md "Checkpoint
// API"): a corrupt file is a `.corrupt` PPError naming it, so callers exit 65 and store
// nothing. Not built yet: the core's Checkpoint has not landed, so loading reports
// EX_UNAVAILABLE (69); everything after loading is built and tested with stand-in models.

import Shared

struct LoadedCheckpoint {
    var meta: CheckpointMeta
    var model: Predictor
}

func loadCheckpoint(_ path: String) throws -> LoadedCheckpoint {
    throw PPError("\(path): loading checkpoints is not built yet (waiting for Shared Checkpoint)", status: .unavailable)
}
