// pp-select: Pick the best evaluated checkpoint and deploy it.
// Not built yet: this placeholder only answers --help and exits with EX_UNAVAILABLE (69).

import ArgumentParser
import Shared

struct PPSelect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-select",
        abstract: "Pick the best evaluated checkpoint and deploy it.",
        discussion: "Not built yet: this version only prints this help."
    )

    @OptionGroup var rootOptions: RootOptions

    func run() throws {
        Log.fail("pp-select", "not built yet")
        throw ExitCode(ExitStatus.unavailable.rawValue)
    }
}

PPSelect.main()
