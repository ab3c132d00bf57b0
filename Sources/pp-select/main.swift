// pp-select: deploys the best evaluated checkpoint of the window when it is really better than
// the deployed one (rules in Selection.swift and docs/formats.md, "selections.jsonl"); also
// `--deploy CKPT`, `rollback`, and retention (`--keep-days`). Every decision is one JSON line
// on stdout and in selections.jsonl. Never deploys a checkpoint whose lineage holds a
// quarantined or suspect shard, and replaces a deployed one that does (PoisonGuard.swift).
// It reads evals/, checkpoint heads, quarantine/ and runs/*/suspects.json, and writes only
// `deployed`, selections.jsonl, metrics/pp-select.prom and (retention) deletes old checkpoints.

import ArgumentParser
import Shared
import TextModel

let tool = "pp-select"

func emit(_ line: String) throws { try Stdout.line(line) }

/// "20G", "500M", "64K", "1T" (powers of 1024) or plain bytes.
func parseBytes(_ s: String) -> Int64? {
    let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var num = s, mult: Int64 = 1
    if let u = s.last, let m = units[u] { num.removeLast(); mult = m }
    guard let v = Int64(num), v >= 0, v <= Int64.max / mult else { return nil }
    return v * mult
}

/// The status to report when two parts of a run ended with `a` and `b`: a refusal (65) over a
/// replaced poisoned deployment (1) over a decision (0) over nothing to do (2).
func worse(_ a: ExitStatus, _ b: ExitStatus) -> ExitStatus {
    let rank: [ExitStatus: Int] = [.nothingToDo: 0, .ok: 1, .partial: 2]
    return (rank[a] ?? 3) >= (rank[b] ?? 3) ? a : b
}

/// The poison guard policy.json asks for (nil when its select.guard is false).
func guardFor(_ root: Root) throws -> PoisonGuard? {
    let policy = try SelectPolicy.load(root: root)
    if !policy.guardEnabled {
        Log.make(tool).warning("policy.json: select.guard is false: poisoned lineages are NOT refused")
        return nil
    }
    return try PoisonGuard(root: root, refuseIncomplete: policy.incompleteLineage == "refuse", links: LinkIndex.shared(root))
}

/// Runs `body` under the root's pp-select lock, turning a PPError into its message and status;
/// then, unless `dryRun`, saves what the run's lineage walks read to the runs' link indexes
/// (TextModel/LinkIndex.swift; a failure to save is only reported: the next run reads the
/// checkpoints' heads again).
func locked(_ root: Root, dryRun: Bool, _ body: () throws -> ExitStatus) throws {
    var status = ExitStatus.ok
    try exitingOnFailure(tool) {
        try FileIO.makeDirectories(root.locks)
        let lock = try FileLock(path: root.lock("pp-select"), wait: true)
        defer { lock.release() }
        // Temps of dead writers (Temps.swift): the link's, metrics', retention's heads, link indexes.
        Temps.sweep([root.path, root.metrics] + ((try? FileIO.list(root.runs)) ?? []).map { root.heads(run: $0) }, log: Log.make(tool))
        defer {
            if !dryRun {
                do { try LinkIndex.shared(root).save() } catch { Log.make(tool).warning("link index not saved: \((error as? PPError)?.message ?? "\(error)")") }
            }
        }
        status = try body()
    }
    if status != .ok { throw ExitCode(status.rawValue) }
}

struct PPSelect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pp-select",
        abstract: "Deploy the newest evaluated checkpoint when it is at least as good as the deployed one.",
        discussion: """
        Considers every checkpoint of the window (--since) with a result on the current holdout \
        set and compares it with the deployed checkpoint on the same eval set. Gate noninferior \
        (the default): the newest candidate is promoted unless it is worse on --metric by more than \
        --margin with a paired bootstrap's 95% interval of the gain below 0; the old slice \
        (forgetting) blocks only a loss beyond --old-tolerance that is significant, a label only an \
        F1 loss beyond --label-block (support >= --label-min-support); smaller losses are reported \
        in the decision. Gate better (the rule before): the best candidate, only when its gain is \
        at least --min-gain with the interval above 0 and no label nor the old slice loses more than \
        --tolerance. A keep decision on a deployed model older than --max-age says so.

        Never deploys poison: a checkpoint whose full lineage (pp-eval --lineage) holds a \
        quarantined shard or one listed in any run's suspects.json is refused; if the deployed \
        one has such a lineage, it is first rolled back to the newest earlier deployment without \
        poison (else the best clean candidate is deployed). See docs/formats.md, "Never deploy poison".

        Every run first verifies the deployed file (checksum, magic, end marker): one that fails \
        is rolled back to the newest earlier deployment that verifies. It also cuts a torn last \
        line off selections.jsonl and records a `reconcile` decision when the link points \
        elsewhere than the last decision says (the link is moved before its decision is written).

        EXIT STATUS: 0 a decision was made (promoted or kept), 1 the deployed checkpoint had a \
        poisoned lineage or failed verification and was replaced (see selections.jsonl; a person \
        should look), 2 nothing to do (no evaluated candidate in the window), 64 usage, 65 a \
        corrupt checkpoint was refused (the decision, if any, still stands), or the deployed \
        checkpoint is poisoned or fails verification and nothing could replace it, or --deploy \
        CKPT has a poisoned lineage, 66 no such checkpoint, 69 not built yet, 74 I/O error.
        """,
        version: BuildTarget.versionLine("pp-select"),
        subcommands: [Rollback.self, Report.self, PopulationStep.self]
    )

    @OptionGroup var rootOptions: RootOptions

    @Option(help: ArgumentHelp("Consider checkpoints created within this window (s, m, h, d, w).", valueName: "duration"))
    var since = "24h"

    @Option(help: "noninferior: deploy the newest good checkpoint when it is at least as good (within --margin); better: the best one, only when significantly better by --min-gain.")
    var gate = "noninferior"

    @Option(help: "Metric to compare on: [recent.|old.]accuracy, top5_accuracy, macro_f1, weighted_f1, log_loss, ece.")
    var metric = "recent.accuracy"

    @Option(help: "noninferior: a loss on --metric larger than this, with its 95% interval below 0, refuses the candidate.")
    var margin = 0.01

    @Option(name: .customLong("min-gain"), help: "better: smallest gain on the metric that promotes.")
    var minGain = 0.005

    @Option(help: "Per-label F1 losses beyond this are reported (better: they and an old-slice loss block).")
    var tolerance = 0.02

    @Option(name: .customLong("old-tolerance"), help: "noninferior: an old-slice loss beyond this blocks when significant.")
    var oldTolerance = 0.10

    @Option(name: .customLong("label-block"), help: "noninferior: a per-label F1 loss beyond this blocks.")
    var labelBlock = 0.25

    @Option(name: .customLong("max-age"), help: ArgumentHelp("A deployed model older than this is flagged in every keep decision (s, m, h, d, w).", valueName: "duration"))
    var maxAge = "7d"

    @Option(help: "Bootstrap rounds for the gain's 95% interval (0 = off).")
    var bootstrap = 1000

    @Option(name: .customLong("label-min-support"), help: "Labels with fewer examples in the slice are not checked for regression.")
    var labelMinSupport = 20

    @Flag(name: .customLong("dry-run"), help: "Decide and print, change nothing.")
    var dryRun = false

    @Option(name: .customLong("keep-days"), help: "Delete checkpoints older than this that were never deployed (never a run's newest); their heads are kept.")
    var keepDays: Int?

    @Option(name: .customLong("keep-bytes"), help: ArgumentHelp("Disk budget for all checkpoints (bytes, or with K, M, G, T): delete the oldest never-deployed ones (never a run's newest) beyond it; their heads are kept.", valueName: "size"))
    var keepBytes: String?

    @Option(name: .long, help: ArgumentHelp("Deploy this checkpoint by hand (still checksum-verified).", valueName: "ckpt"))
    var deploy: String?

    func validate() throws {
        guard Clock.duration(since) != nil else { throw ValidationError("--since: not a duration: \(since)") }
        guard EvalResult.isValidMetric(metric) else { throw ValidationError("--metric: unknown metric \(metric)") }
        if minGain < 0 || tolerance < 0 || margin < 0 || oldTolerance < 0 || labelBlock < 0 {
            throw ValidationError("--min-gain, --margin, --tolerance, --old-tolerance and --label-block must be >= 0")
        }
        guard Gate(rawValue: gate) != nil else { throw ValidationError("--gate: expected noninferior or better") }
        guard Clock.duration(maxAge) != nil else { throw ValidationError("--max-age: not a duration: \(maxAge)") }
        if bootstrap < 0 { throw ValidationError("--bootstrap must be >= 0") }
        if let k = keepDays, k < 0 { throw ValidationError("--keep-days must be >= 0") }
        if let b = keepBytes, parseBytes(b) == nil { throw ValidationError("--keep-bytes: not a size: \(b) (e.g. 20G, 500M, 1000000)") }
    }

    func run() throws {
        let root = rootOptions.resolved
        var sel = Selector(root: root, dryRun: dryRun, verify: verifyCheckpoint, output: emit)
        sel.config = SelectConfig(gate: Gate(rawValue: gate)!, metric: metric, margin: margin, minGain: minGain, tolerance: tolerance,
                                  oldTolerance: oldTolerance, labelBlock: labelBlock, bootstrap: bootstrap,
                                  labelMinSupport: labelMinSupport, maxAgeDays: Clock.duration(maxAge)! / 86_400)
        try locked(root, dryRun: dryRun) {
            sel.poisonGuard = try guardFor(root)
            defer { if !dryRun { do { try sel.publishMetrics() } catch { Log.fail(tool, "metrics: \(error)") } } }
            // The journal agrees with the link before anything is decided (Journal.swift).
            if let rec = try sel.startJournal() { try sel.commit(rec) }
            // Heads kept by older builds carry the data cursor (megabytes each on a long run,
            // read by every lineage walk): rewritten without it, once, before any walk.
            if !dryRun {
                for run in try FileIO.list(root.runs) {
                    let slimmed = try Checkpoint.slimHeads(run: run, root: root)
                    if !slimmed.isEmpty { Log.make(tool).notice("retention: \(slimmed.count) heads of run \(run) rewritten without their data cursor") }
                }
            }
            if let d = deploy {
                try sel.commit(try sel.deploy(d))
                return .ok
            }
            var status = ExitStatus.nothingToDo
            // A deployed file that no longer verifies is rolled back (DeployedCheck.swift).
            if let (rec, st) = try sel.checkDeployed(Checkpoint.verifyFile) {
                try sel.commit(rec)
                status = st
                if dryRun { return status }
            }
            // Poison in the deployed model first: replace it, then select as usual.
            if let (rec, st) = try sel.guardDeployed() {
                try sel.commit(rec)
                status = worse(status, st)
                if dryRun || st == .corrupt { return status }
            }
            do {
                if let (rec, st) = try sel.select(since: Clock.duration(since)!) {
                    try sel.commit(rec)
                    status = worse(status, st)
                } else {
                    Log.make(tool).info("nothing to do: no evaluated candidate in the window", metadata: ["since": "\(since)"])
                }
            } catch let e as PPError where e.status == .nothingToDo {
                Log.make(tool).info("\(e.message)")
            }
            if keepDays != nil || keepBytes != nil,
               let rec = try sel.retention(keepDays: keepDays, keepBytes: keepBytes.flatMap(parseBytes)) { try sel.commit(rec) }
            if keepDays != nil || keepBytes != nil { try sel.pruneExampleFiles() }
            return status
        }
    }
}

struct Rollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deploy again the checkpoint deployed before the current one (from selections.jsonl).",
        discussion: "Earlier deployments whose lineage holds a quarantined or suspect shard, or whose file is gone, are skipped (listed under \"rejected\"). EXIT STATUS: 0 rolled back, 2 no earlier deployment, 65 the target checkpoint is corrupt or every earlier one is poisoned, 66 it no longer exists."
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(name: .customLong("dry-run"), help: "Print the decision, change nothing.")
    var dryRun = false

    func run() throws {
        let root = rootOptions.resolved
        var sel = Selector(root: root, dryRun: dryRun, verify: verifyCheckpoint, output: emit)
        try locked(root, dryRun: dryRun) {
            sel.poisonGuard = try guardFor(root)
            if let rec = try sel.startJournal() { try sel.commit(rec) }
            try sel.commit(try sel.rollback())
            if !dryRun { try sel.publishMetrics() }
            return .ok
        }
    }
}

struct PopulationStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "population",
        abstract: "The daily exploit/explore step of a population of runs (ROOT/population.json, or --config).",
        discussion: """
        Runs once a day after pp-select (pp-select.service's ExecStartPost). Journals every step \
        in ROOT/population.jsonl before it acts: an `init` line gives a new run of the population \
        its knobs; then the runs are ranked by population.json's metric (default recent.accuracy) \
        on the current eval set, each by its newest evaluated checkpoint whose lineage is clean; \
        when the best beats the weakest by more than the margin, an `exploit` line restarts the \
        weakest from the best's checkpoint with each knob multiplied by a factor drawn from \
        `perturb` (seeded: the same journal and scores give the same choices), else a `keep` line \
        says why. It acts by writing the run's control.json (lr, dropout, adopt: the trainer \
        continues that checkpoint), and makes every run's control.json agree with the journal at \
        each run, so a step interrupted after its journal line is finished by the next. \
        Formats: docs/formats.md, "Population". In production the config is \
        /etc/perpetuum/population.json: perpetuum.target's generator starts a pp-train@RUN for \
        each of its runs (--runs), each trainer's unit runs --sync before it starts, and \
        pp-select.service runs the step (docs/operations.md, "A population of runs").

        EXIT STATUS: 0 a line was journaled, 2 nothing to do (no population config, or the last \
        decision is younger than min_interval; --force decides anyway), 64 usage, 65 a corrupt \
        population config or population.jsonl, 74 I/O error.
        """
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(name: .customLong("dry-run"), help: "Print what would be journaled, change nothing.")
    var dryRun = false

    @Flag(help: "Decide now even if the last decision is younger than min_interval.")
    var force = false

    @Option(help: ArgumentHelp("The population's config.", discussion: "Default: ROOT/population.json. The shipped units use /etc/perpetuum/population.json.", valueName: "file"))
    var config: String?

    @Flag(help: "Print the population's run names, one per line, and exit (reads only the config; perpetuum.target's generator starts a pp-train@RUN for each).")
    var runs = false

    @Flag(help: "Journal init lines for new runs and make each run's control.json agree with the journal; decide nothing (each pp-train@RUN's ExecStartPre).")
    var sync = false

    func validate() throws {
        if runs && (sync || force || dryRun) { throw ValidationError("--runs only prints the run names: no --sync, --force or --dry-run with it") }
        if sync && force { throw ValidationError("--sync decides nothing: no --force with it") }
    }

    func run() throws {
        let root = rootOptions.resolved
        let path = config ?? PopulationConfig.defaultPath(root)
        if runs {
            try exitingOnFailure(tool) {
                guard let c = try PopulationConfig.load(path: path) else { throw PPError("no \(path): no population", status: .nothingToDo) }
                for r in c.runs { try emit(r) }
            }
            return
        }
        // The config first, outside the lock: a trainer unit's --sync without a population
        // (every start of pp-train@main) must not wait for a running pp-select.
        var loaded: PopulationConfig?
        try exitingOnFailure(tool) { loaded = try PopulationConfig.load(path: path) }
        guard let config = loaded else {
            Log.make(tool).info("no \(path): no population")
            throw ExitCode(ExitStatus.nothingToDo.rawValue)
        }
        try locked(root, dryRun: dryRun) {
            var sel = Selector(root: root, dryRun: dryRun, verify: verifyCheckpoint, output: emit)
            sel.poisonGuard = try guardFor(root)
            var p = Population(config: config, sel: sel, entries: try PopulationJournal.read(root, repair: !dryRun), output: emit)
            if sync { return try p.sync() }
            let status = try p.step(force: force)
            if !dryRun { try p.publishMetrics() }
            return status
        }
    }
}

BLASLibrary.prepare()   // before any thread: OpenBLAS's environment (TextModel/BLAS.swift)
PPSelect.main()
