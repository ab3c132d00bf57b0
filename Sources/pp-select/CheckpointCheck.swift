// The one place pp-select verifies a checkpoint before deploying it (Shared Checkpoint:
// magic, version, checksum). Not built yet: the core's Checkpoint has not landed, so the
// check reports EX_UNAVAILABLE (69) and nothing is deployed; the decision rules are built
// and tested with injected checks (Tests/EvalTests).

import Shared

func verifyCheckpoint(_ path: String) throws {
    throw PPError("\(path): verifying checkpoints is not built yet (waiting for Shared Checkpoint)", status: .unavailable)
}
