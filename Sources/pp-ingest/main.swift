// pp-ingest: Validate files dropped into inbox/ and publish them as tokenised shards.
// Not built yet: this placeholder only answers --help and exits with EX_UNAVAILABLE (69).

import ArgumentParser
import Shared

struct PPIngest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-ingest",
        abstract: "Validate files dropped into inbox/ and publish them as tokenised shards.",
        discussion: "Not built yet: this version only prints this help."
    )

    @OptionGroup var rootOptions: RootOptions

    func run() throws {
        Log.fail("pp-ingest", "not built yet")
        throw ExitCode(ExitStatus.unavailable.rawValue)
    }
}

PPIngest.main()
