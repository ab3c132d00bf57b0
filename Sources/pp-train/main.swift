// pp-train: Train continuously on the shards, writing checkpoints.
// Not built yet: this placeholder only answers --help and exits with EX_UNAVAILABLE (69).

import ArgumentParser
import Shared

struct PPTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-train",
        abstract: "Train continuously on the shards, writing checkpoints.",
        discussion: "Not built yet: this version only prints this help."
    )

    @OptionGroup var rootOptions: RootOptions

    func run() throws {
        Log.fail("pp-train", "not built yet")
        throw ExitCode(ExitStatus.unavailable.rawValue)
    }
}

PPTrain.main()
