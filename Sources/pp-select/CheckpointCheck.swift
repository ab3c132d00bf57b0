// The one place pp-select verifies a checkpoint before deploying it: a full Shared
// Checkpoint load (magic, version, checksum, every section). A defect is a `.corrupt`
// PPError naming the file; nothing is deployed.

import Shared
import TextModel

func verifyCheckpoint(_ path: String) throws {
    // The inference load checks exactly what the full one does (CheckpointLoad.swift), without
    // building the trainer's table.
    _ = try Checkpoint.load(path: path, mode: .inference)
}
