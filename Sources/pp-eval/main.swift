// pp-eval: Score a checkpoint on the holdout shards, as JSON.
// Not built yet: this placeholder only answers --help and exits with EX_UNAVAILABLE (69).

import ArgumentParser
import Shared

struct PPEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-eval",
        abstract: "Score a checkpoint on the holdout shards, as JSON.",
        discussion: "Not built yet: this version only prints this help."
    )

    @OptionGroup var rootOptions: RootOptions

    func run() throws {
        Log.fail("pp-eval", "not built yet")
        throw ExitCode(ExitStatus.unavailable.rawValue)
    }
}

PPEval.main()
