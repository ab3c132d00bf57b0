// The one place pp-select verifies a checkpoint before deploying it: a full Shared
// Checkpoint load (magic, version, checksum, every section). A defect is a `.corrupt`
// PPError naming the file; nothing is deployed.

import Shared

func verifyCheckpoint(_ path: String) throws {
    _ = try Checkpoint.load(path: path)
}
