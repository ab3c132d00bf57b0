// pp-ingest's command line: `pp-ingest [ingest] [options] [FILE... | -]` validates inputs and
// publishes them as shards (Ingest.swift); `pp-ingest cat` prints shards as fastText lines
// (Cat.swift). Only argument parsing and exit codes live here.

import ArgumentParser
import Shared
import TextModel

struct PPIngest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-ingest",
        abstract: "Validate files dropped into inbox/ and publish them as tokenised shards.",
        discussion: """
            `pp-ingest` alone runs `pp-ingest ingest` (see `pp-ingest ingest --help`). Formats, \
            outputs and exit codes: docs/formats.md.
            """,
        version: BuildTarget.versionLine("pp-ingest"),
        subcommands: [IngestCommand.self, CatCommand.self, QuarantineCommand.self, ReleaseCommand.self],
        defaultSubcommand: IngestCommand.self
    )
}

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Validate inputs and publish them as shards (the default subcommand).",
        discussion: """
            With no FILE, processes every settled regular file in ROOT/inbox/ (dot-names, \
            files modified within --settle seconds and files a process still has open for \
            writing are left for the next run; symbolic links and other non-regular files are \
            refused and left in place; a name that is not UTF-8 is quarantined). Deliver a \
            file by writing .NAME.tmp in inbox/ and renaming it to NAME when complete: the \
            rename is atomic, the open-for-writing check only sees processes of the same \
            user. Inputs are JSON Lines \
            ({"text", "label", "id"?, "ts"?}) or fastText lines (__label__X text), plain or \
            zstd. An accepted inbox file moves to archive/ (or is deleted with --delete) only \
            after its shards are durable; a rejected one moves to quarantine/ with \
            NAME.reason.json. FILE arguments outside inbox/ and `-` (stdin) are read in place \
            and never moved.

            Every input is measured against a rolling reference of recently accepted inputs \
            (ROOT/stats/) and, when a model is deployed, against that model: label \
            distribution (L-infinity, Jensen-Shannon), never-seen labels, OOV rate, text \
            lengths, duplicates of recent inputs, garbage (control characters, U+FFFD, \
            mojibake), the canary loss and the label signal. The numbers are always \
            recorded (shard header, stats/ sidecar, the JSON line, metrics/ingest.prom). A \
            new input that trips a threshold of ROOT/policy.json ("ingest" section; \
            documented defaults when absent) is quarantined whole: nothing is published, an \
            inbox file moves to quarantine/ with NAME.reason.json naming the check, value, \
            threshold and reference window. `pp-ingest release NAME` re-admits it.

            stdout: one JSON line per input. stderr: the log, and each bad line as \
            FILE:LINE: reason (at most 20 per input).

            EXIT STATUS: 0 every input accepted (also with some bad lines dropped, status \
            "partial") or already ingested ("duplicate"); 1 some input rejected, \
            quarantined or refused; 2 nothing to do; 64 usage; 65 policy.json is invalid \
            (nothing processed); 66 a FILE argument does not exist; 74 I/O error (state \
            folder or an unreadable input); 75 lock held and --no-wait given.
            """
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(help: "Delete accepted inputs from inbox/ instead of moving them to archive/.")
    var delete = false

    @Option(help: ArgumentHelp("Leave inbox files modified less than this many seconds ago.", valueName: "seconds"))
    var settle: Double = 10

    @OptionGroup var sharding: ShardingOptions

    @Option(help: ArgumentHelp("Reject an input whose share of bad lines exceeds this.", valueName: "fraction"))
    var maxBad: Double = 0.01

    @Flag(help: "Exit with status 75 instead of waiting when another pp-ingest holds the lock.")
    var noWait = false

    @Flag(help: "Measure and record the batch statistics, but quarantine nothing (as policy.json's \"quarantine\": false).")
    var noChecks = false

    @Flag(help: "Parse and measure the inputs and print what would happen (the status key says it); publish, move and record nothing.")
    var dryRun = false

    @Argument(help: ArgumentHelp("Input files; `-` reads standard input. Default: the settled files in inbox/.", valueName: "file"))
    var files: [String] = []

    func validate() throws {
        guard settle >= 0, settle.isFinite else { throw ValidationError("--settle must be >= 0 seconds") }
        guard maxBad >= 0, maxBad <= 1 else { throw ValidationError("--max-bad must be in [0, 1]") }
        guard files.filter({ $0 == "-" }).count <= 1 else { throw ValidationError("`-` (stdin) may be given once") }
    }

    func run() throws {
        let config = Ingester.Config(root: rootOptions.resolved, delete: delete, settle: settle, holdout: sharding.holdout,
                                     maxBad: maxBad, maxTextBytes: sharding.maxTextBytes, shardExamples: sharding.shardExamples,
                                     noWait: noWait, checks: !noChecks, dryRun: dryRun)
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
        try exitingOnFailure("pp-ingest") {
            try ShardCat(root: rootOptions.resolved, labelsOnly: labelsOnly).run(paths)
        }
    }
}

/// `quarantine` and `release`: a missing name (66) and a held lock (75) keep their status;
/// any other failure is the state folder's (74).
func manualActionStatus(_ e: PPError) -> ExitStatus { e.status == .noInput || e.status == .locked ? e.status : .ioError }

struct QuarantineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine",
        abstract: "Take shards that already went in out of shards/, with a reason.",
        discussion: """
            Publishes quarantine/SHARD.reason.json (check "manual", the reason, who, when) \
            first, then moves shards/SHARD to quarantine/SHARD, the holdout parts of the same \
            input to quarantine/holdout/ and its stats sidecars to quarantine/stats/ (so it \
            leaves the reference of later batches). A shard is quarantined as long as its \
            reason file exists: pp-train skips it, pp-select refuses checkpoints whose lineage \
            holds it. Undo with `pp-ingest release SHARD`. One JSON line per shard on stdout.

            EXIT STATUS: 0 done (also when already quarantined); 64 usage or not a shard name; \
            66 no such shard; 74 I/O error; 75 lock held and --no-wait given.
            """
    )

    @OptionGroup var rootOptions: RootOptions

    @Option(help: "Why (recorded in the reason file and the log).")
    var reason: String

    @Option(help: ArgumentHelp("Who decided (default: $SUDO_USER, else $USER, else the user name).", valueName: "name"))
    var by: String?

    @Flag(help: "Exit with status 75 instead of waiting when pp-ingest holds the lock.")
    var noWait = false

    @Argument(help: ArgumentHelp("Shard names (or paths) in shards/.", valueName: "shard"))
    var shards: [String]

    func validate() throws {
        if shards.isEmpty { throw ValidationError("name at least one shard") }
        if reason.allSatisfy({ $0 == " " || $0 == "\t" }) { throw ValidationError("--reason must say why") }
    }

    func run() throws {
        let status = try exitingOnFailure("pp-ingest", status: manualActionStatus) {
            try ShardQuarantine(root: rootOptions.resolved).quarantine(shards, reason: reason, by: by ?? Who.current(), noWait: noWait)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

/// How an input is cut into shards: `pp-ingest` and `pp-ingest release` (which ingests a
/// released input) take the same options.
struct ShardingOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Share of examples split off into holdout/, by a hash of their tokens.", valueName: "fraction"))
    var holdout: Double = 0.05

    @Option(help: ArgumentHelp("Longest text accepted, in bytes of UTF-8.", valueName: "n"))
    var maxTextBytes: Int = 65536

    @Option(help: ArgumentHelp("Most examples per shard.", valueName: "n"))
    var shardExamples: Int = 100_000

    func validate() throws {
        guard holdout >= 0, holdout < 1 else { throw ValidationError("--holdout must be in [0, 1)") }
        guard maxTextBytes >= 1, maxTextBytes <= 64 << 20 else { throw ValidationError("--max-text-bytes must be in 1...\(64 << 20)") }
        guard shardExamples >= 1 else { throw ValidationError("--shard-examples must be >= 1") }
    }
}

struct ReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release",
        abstract: "Re-admit a quarantined input or shard after a person looked.",
        discussion: """
            NAME is a file in quarantine/ with a NAME.reason.json. A quarantined shard moves \
            back to shards/ (its holdout parts and stats sidecars with it). A quarantined or \
            rejected input is ingested now, with the batch checks and --max-bad not gating \
            (its statistics are still measured and recorded; bad lines are still dropped), \
            then archived; its ingest JSON line is printed first. Either way the reason file \
            becomes quarantine/NAME.released.json, which keeps the original reason and adds \
            who released it and when; the reason file is removed last.

            EXIT STATUS: 0 released (also when already released); 1 the input could not be \
            ingested (unreadable, no good line); 64 usage; 66 NAME is not quarantined; 74 I/O \
            error; 75 lock held and --no-wait given.
            """
    )

    @OptionGroup var rootOptions: RootOptions

    @Option(help: ArgumentHelp("Who decided (default: $SUDO_USER, else $USER, else the user name).", valueName: "name"))
    var by: String?

    /// For a released input: use what pp-ingest uses.
    @OptionGroup var sharding: ShardingOptions

    @Flag(help: "Exit with status 75 instead of waiting when pp-ingest holds the lock.")
    var noWait = false

    @Argument(help: ArgumentHelp("The quarantined file's name in quarantine/.", valueName: "name"))
    var name: String

    func run() throws {
        let root = rootOptions.resolved
        let cfg = Ingester.Config(root: root, delete: false, settle: 0, holdout: sharding.holdout, maxBad: 1,
                                  maxTextBytes: sharding.maxTextBytes, shardExamples: sharding.shardExamples, noWait: noWait)
        let status = try exitingOnFailure("pp-ingest", status: manualActionStatus) {
            try ShardQuarantine(root: root).release(name, by: by ?? Who.current(), options: cfg)
        }
        if status != 0 { throw ExitCode(status) }
    }
}
