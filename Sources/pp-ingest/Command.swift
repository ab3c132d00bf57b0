// pp-ingest's command line: `pp-ingest [ingest] [options] [FILE... | -]` validates inputs and
// publishes them as shards (Ingest.swift); `pp-ingest cat` prints shards as fastText lines
// (Cat.swift). Only argument parsing and exit codes live here.

import ArgumentParser
import Shared

struct PPIngest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-ingest",
        abstract: "Validate files dropped into inbox/ and publish them as tokenised shards.",
        discussion: """
            `pp-ingest` alone runs `pp-ingest ingest` (see `pp-ingest ingest --help`). Formats, \
            outputs and exit codes: docs/formats.md.
            """,
        subcommands: [IngestCommand.self, CatCommand.self],
        defaultSubcommand: IngestCommand.self
    )
}

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Validate inputs and publish them as shards (the default subcommand).",
        discussion: """
            With no FILE, processes every settled regular file in ROOT/inbox/ (dot-names and \
            files modified within --settle seconds are left for the next run; symbolic links \
            and other non-regular files are refused and left in place). Inputs are JSON Lines \
            ({"text", "label", "id"?, "ts"?}) or fastText lines (__label__X text), plain or \
            zstd. An accepted inbox file moves to archive/ (or is deleted with --delete) only \
            after its shards are durable; a rejected one moves to quarantine/ with \
            NAME.reason.json. FILE arguments outside inbox/ and `-` (stdin) are read in place \
            and never moved.

            stdout: one JSON line per input. stderr: the log, and each bad line as \
            FILE:LINE: reason (at most 20 per input).

            EXIT STATUS: 0 every input accepted (also with some bad lines dropped, status \
            "partial") or already ingested ("duplicate"); 1 some input rejected or refused; \
            2 nothing to do; 64 usage; 66 a FILE argument does not exist; 74 I/O error \
            (state folder or an unreadable input); 75 lock held and --no-wait given.
            """
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(help: "Delete accepted inputs from inbox/ instead of moving them to archive/.")
    var delete = false

    @Option(help: ArgumentHelp("Leave inbox files modified less than this many seconds ago.", valueName: "seconds"))
    var settle: Double = 10

    @Option(help: ArgumentHelp("Share of examples split off into holdout/, by a hash of their tokens.", valueName: "fraction"))
    var holdout: Double = 0.05

    @Option(help: ArgumentHelp("Reject an input whose share of bad lines exceeds this.", valueName: "fraction"))
    var maxBad: Double = 0.01

    @Option(help: ArgumentHelp("Longest text accepted, in bytes of UTF-8.", valueName: "n"))
    var maxTextBytes: Int = 65536

    @Option(help: ArgumentHelp("Most examples per shard.", valueName: "n"))
    var shardExamples: Int = 100_000

    @Flag(help: "Exit with status 75 instead of waiting when another pp-ingest holds the lock.")
    var noWait = false

    @Argument(help: ArgumentHelp("Input files; `-` reads standard input. Default: the settled files in inbox/.", valueName: "file"))
    var files: [String] = []

    func validate() throws {
        guard settle >= 0, settle.isFinite else { throw ValidationError("--settle must be >= 0 seconds") }
        guard holdout >= 0, holdout < 1 else { throw ValidationError("--holdout must be in [0, 1)") }
        guard maxBad >= 0, maxBad <= 1 else { throw ValidationError("--max-bad must be in [0, 1]") }
        guard maxTextBytes >= 1, maxTextBytes <= 64 << 20 else { throw ValidationError("--max-text-bytes must be in 1...\(64 << 20)") }
        guard shardExamples >= 1 else { throw ValidationError("--shard-examples must be >= 1") }
        guard files.filter({ $0 == "-" }).count <= 1 else { throw ValidationError("`-` (stdin) may be given once") }
    }

    func run() throws {
        let config = Ingester.Config(root: rootOptions.resolved, delete: delete, settle: settle, holdout: holdout,
                                     maxBad: maxBad, maxTextBytes: maxTextBytes, shardExamples: shardExamples,
                                     noWait: noWait)
        let status = Ingester(config).run(files: files)
        if status != 0 { throw ExitCode(status) }
    }
}

struct CatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cat",
        abstract: "Print the examples of shards as fastText lines: __label__LABEL tok tok ...",
        discussion: """
            One line per example, in file order; a folder stands for its *.pps files in name \
            order. With --labels-only, each line is just __label__LABEL. A relative path that \
            does not exist is looked up under ROOT (so `pp-ingest cat holdout` works anywhere). \
            EXIT STATUS: 0 ok, 64 usage, 65 a corrupt shard, 66 no such shard or folder.
            """
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(help: "Print only the label of each example.")
    var labelsOnly = false

    @Argument(help: ArgumentHelp("Shard files or folders of shards.", valueName: "shard-or-dir"))
    var paths: [String]

    func validate() throws {
        if paths.isEmpty { throw ValidationError("name at least one shard or folder") }
    }

    func run() throws {
        do {
            try ShardCat(root: rootOptions.resolved, labelsOnly: labelsOnly).run(paths)
        } catch let e as PPError {
            Log.fail("pp-ingest", e.message)
            throw ExitCode(e.status.rawValue)
        }
    }
}
