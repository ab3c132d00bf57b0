// pp-ingest's work: find the inputs, stream each one through InputParser into bounded shard
// parts, decide (accepted / partial / rejected / duplicate), then publish durably and only
// then move the input out of inbox/ (CONTRACT rules 1-3, docs/formats.md).
//
// Crash safety, step by step (a kill -9 anywhere, then a re-run, ends in the same state):
//  1. While reading, each full part is compressed into a dot-named temp file in shards/ or
//     holdout/ (`.ingest-PID-...`, invisible to readers, no fsync). A crash leaves only
//     temps, which the next run deletes under the lock; the input is still in inbox/.
//  2. At the end of the input its SHA-256 and part counts are known. Each part becomes
//     `<stamp>-<sha16>-<part>.pps` (header frame + the temp's records frame) through
//     FileIO.publish (tmp, fsync, rename, fsync dir). The names depend only on the input's
//     content and mtime, so a re-run after a crash mid-way computes the same names, skips
//     the parts already there and publishes the rest.
//  3. Only then the input moves to archive/ (or is deleted): a re-run after a crash before
//     the move finds all its parts and just completes the move ("duplicate").
// A rejected input: its reason file is published first, then the input moves to
// quarantine/; a crash in between re-rejects it on the next run (same verdict, same name).
//
// Not here: the line formats and their checks (TextModel/InputParser.swift), the shard layout
// (Shared/Shard.swift, ShardFrames.swift), argument parsing (Command.swift).

import Logging
import Shared
import TextModel
#if canImport(Glibc)
import Glibc
#endif

final class Ingester {
    struct Config {
        var root: Root
        var delete: Bool
        var settle: Double
        var holdout: Double
        var maxBad: Double
        var maxTextBytes: Int
        var shardExamples: Int
        var noWait: Bool
        /// false (--no-checks): measure and record, quarantine nothing.
        var checks: Bool = true
        /// `pp-ingest release`: the batch checks and --max-bad do not gate (a person looked).
        var releasing: Bool = false
        /// --dry-run: measure and print the verdict; publish, move and record nothing.
        var dryRun: Bool = false
    }

    /// A part is cut at this many record bytes even before `shardExamples`, so memory stays
    /// bounded whatever the texts' sizes (two parts are open at a time: train and holdout).
    static let shardRecordBytes = 64 << 20
    /// Bad lines printed on stderr and kept in NAME.reason.json per input.
    static let shownBadLines = 20
    static let tool = "pp-ingest"

    let cfg: Config
    let root: Root
    let log: Logger
    /// PP_INGEST_CRASH_AT (tests only): SIGKILL ourselves at that point, to prove recovery.
    let crashAt: String?
    /// sha16 -> root-relative paths of the shards and holdout parts carrying it.
    private var index: [String: Set<String>] = [:]

    private var processed = 0
    private var rejected = 0
    private var quarantined = 0
    /// Set by run(): the policy's ingest section, the reference, the deployed model.
    private var policy = IngestPolicy()
    private var reference: Reference!
    private var deployed: (model: Model, checkpoint: String)?? = nil
    private var counters = IngestCounters()
    private var lastOutcomes: [CheckOutcome] = []
    private var lastStats: [String: Double] = [:]
    /// Statuses of this run's inputs (for the metrics).
    private var runStatuses: [String: Int] = [:]
    /// Per input: what `release` needs to know (status, published shards).
    private(set) var results: [(status: String, shards: [String])] = []
    private var refused = 0
    private var missing = 0
    private var ioErrors = 0

    init(_ cfg: Config) {
        self.cfg = cfg
        self.root = cfg.root
        self.log = Log.make(Ingester.tool)
        if let v = getenv("PP_INGEST_CRASH_AT") { crashAt = String(cString: v) } else { crashAt = nil }
    }

    struct Input {
        /// What to open ("-" for stdin).
        var path: String
        /// How outputs and messages name it.
        var display: String
        /// Base name (archive/, quarantine/, shard headers).
        var name: String
        /// In ROOT/inbox/: moved out when done. Else read in place and left alone.
        var inInbox: Bool
        /// The stamp of its shard names: mtime of a file, else the time of this run.
        var time: Double
        /// Found by the inbox scan (not named): taken only once settled (--settle).
        var scanned = false
        /// The file that was opened and read (inbox inputs): moved out only if the name still
        /// refers to it.
        var fileID: FileID? = nil
    }

    // MARK: - The run

    /// Processes `files` (or the settled files of inbox/), or, for `pp-ingest release`, the
    /// `prepared` inputs. Returns the exit status.
    func run(files: [String], prepared: [Input]? = nil) -> Int32 {
        do { try root.ensureLayout() } catch let e as PPError {
            Log.fail(Ingester.tool, e.message); return e.status.rawValue
        } catch { Log.fail(Ingester.tool, "\(error)"); return ExitStatus.software.rawValue }

        let lockPath = root.lock("ingest")
        let lock: FileLock
        do {
            if FileLock.isHeld(lockPath) {
                if cfg.noWait {
                    Log.fail(Ingester.tool, "\(lockPath): another pp-ingest is running on this root (--no-wait)")
                    return ExitStatus.locked.rawValue
                }
                log.notice("waiting for lock", metadata: ["lock": "\(lockPath)"])
            }
            lock = try FileLock(path: lockPath, wait: !cfg.noWait)
        } catch let e as PPError {
            Log.fail(Ingester.tool, e.message); return e.status.rawValue
        } catch { Log.fail(Ingester.tool, "\(error)"); return ExitStatus.software.rawValue }
        defer { lock.release() }

        do {
            policy = try IngestPolicy.load(root: root)
        } catch let e as PPError {
            Log.fail(Ingester.tool, e.message); return e.status.rawValue
        } catch { Log.fail(Ingester.tool, "\(error)"); return ExitStatus.software.rawValue }

        let t0 = Clock.monotonic()
        do {
            try removeStaleTemps()
            try buildIndex()
            reference = try Reference(root: root, policy: policy)
            counters = IngestCounters.load(root)
            let inputs = try prepared ?? collect(files)
            pausePoint("listed")
            for input in inputs { try process(input) }
            if !cfg.dryRun {
                try counters.save(root)
                try writeMetrics(seconds: Clock.monotonic() - t0)
            }
        } catch let e as PPError {
            Log.fail(Ingester.tool, e.message)
            return e.status == .software ? e.status.rawValue : ExitStatus.ioError.rawValue
        } catch {
            Log.fail(Ingester.tool, "\(error)")
            return ExitStatus.software.rawValue
        }

        if ioErrors > 0 { return ExitStatus.ioError.rawValue }
        if missing > 0 { return ExitStatus.noInput.rawValue }
        if rejected > 0 || refused > 0 || quarantined > 0 { return ExitStatus.partial.rawValue }
        if processed == 0 {
            log.info("nothing to do", metadata: ["inbox": "\(root.inbox)"])
            return ExitStatus.nothingToDo.rawValue
        }
        return ExitStatus.ok.rawValue
    }

    // MARK: - Finding the inputs

    private func collect(_ files: [String]) throws -> [Input] {
        let now = Clock.now()
        var out: [Input] = []
        if files.isEmpty {
            // Only names here: each file is opened and checked in process() (Inbox.open), so
            // what is checked is what is read.
            for raw in try Inbox.rawNames(root.inbox) {
                guard let name = String(validating: raw, as: UTF8.self) else {
                    try quarantineBadName(raw)
                    continue
                }
                let path = root.inbox + "/" + name
                out.append(Input(path: path, display: path, name: name, inInbox: true, time: now, scanned: true))
            }
            return out
        }
        let inboxReal = realPath(root.inbox)
        for arg in files {
            if arg == "-" {
                out.append(Input(path: "-", display: "stdin", name: "stdin", inInbox: false, time: now))
                continue
            }
            guard let lst = FileIO.lstatOrNil(arg) else {
                missing += 1
                emitProblem(arg, status: "error", "no such file")
                continue
            }
            let (dir, name) = FileIO.split(arg)
            let inInbox = inboxReal != nil && realPath(dir) == inboxReal
            var st = lst
            if (lst.st_mode & S_IFMT) == S_IFLNK {
                if inInbox {
                    refuse(arg, "symbolic link in inbox/ refused; left in place")
                    continue
                }
                guard stat(arg, &st) == 0 else {
                    missing += 1
                    emitProblem(arg, status: "error", "dangling symbolic link")
                    continue
                }
            }
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR { refuse(arg, "is a directory"); continue }
            if inInbox && type != S_IFREG { refuse(arg, "not a regular file; left in place"); continue }
            let mtime = type == S_IFREG ? Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9 : now
            out.append(Input(path: arg, display: arg, name: name, inInbox: inInbox, time: mtime))
        }
        return out
    }

    private func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    private func refuse(_ path: String, _ why: String) {
        refused += 1
        emitProblem(path, status: "refused", why)
    }

    private func emitProblem(_ path: String, status: String, _ why: String) {
        log.error("\(path): \(why)")
        var j = JSONOut()
        j.add("file", path)
        j.add("status", status)
        j.add("error", why)
        emit(j)
    }

    private func emit(_ j: JSONOut) { try? Stdout.line(j.closed) }

    // MARK: - State folder housekeeping

    /// Names starting with "." in `dir` (FileIO.list hides them).
    private func dotNames(_ dir: String) -> [String] {
        ((try? FileIO.entries(dir)) ?? nil)?.filter { $0.hasPrefix(".") } ?? []
    }

    /// Deletes what a killed pp-ingest left behind: part temps and FileIO.publish temps in
    /// the folders only pp-ingest writes. Safe because we hold the ingest lock.
    private func removeStaleTemps() throws {
        for dir in [root.shards, root.holdout, root.quarantine] {
            for name in dotNames(dir) where name.hasPrefix(".ingest-") || name.contains(".tmp.") {
                log.info("removing a temp file left by an interrupted run", metadata: ["file": "\(dir)/\(name)"])
                try FileIO.removeDurably(dir + "/" + name)
            }
        }
        // Folders other tools write too (metrics/) or that hold FileIO.publish temps only:
        // only temps whose writer is dead (Temps.swift).
        Temps.sweep([Reference.dir(root), root.quarantine + "/holdout", root.quarantine + "/stats", root.archive, root.metrics], log: log)
    }

    /// Indexes the shard names (ShardName) in shards/, holdout/ and quarantine/ by input.
    private func buildIndex() throws {
        // Quarantined shards count too: an input whose shards were taken out is not ingested
        // again by sending it again (it is a duplicate until someone releases it).
        for (dir, rel) in [(root.shards, "shards"), (root.holdout, "holdout"), (root.quarantine, "quarantine")] {
            for name in try FileIO.list(dir) {
                if let s = ShardName(name) { index[s.sha16, default: []].insert(rel + "/" + name) }
            }
        }
    }

    /// `name`, or `name.1`, `name.2`, ... : the first that does not exist in `dir`.
    private func freeName(_ dir: String, _ name: String) -> String {
        if !FileIO.exists(dir + "/" + name) { return name }
        var k = 1
        while FileIO.exists(dir + "/\(name).\(k)") { k += 1 }
        return "\(name).\(k)"
    }

    /// PP_INGEST_PAUSE_AT (tests only): at that point, create ROOT/.pause-POINT and wait
    /// (up to 120 s) until it is removed, so a test can change inbox/ at a chosen moment.
    private func pausePoint(_ point: String) {
        guard let v = getenv("PP_INGEST_PAUSE_AT"), String(cString: v) == point else { return }
        let flag = root.path + "/.pause-" + point
        try? FileIO.publish("", to: flag)
        let t0 = Clock.monotonic()
        while FileIO.exists(flag) && Clock.monotonic() - t0 < 120 { usleep(10_000) }
    }

    private func crashPoint(_ point: String) {
        if crashAt == point {
            log.warning("PP_INGEST_CRASH_AT=\(point): killing myself (test hook)")
            kill(getpid(), SIGKILL)
        }
    }

    // MARK: - One input

    /// Thrown through the parser's callbacks when writing to the state folder fails, so it
    /// is not mistaken for a defect of the input.
    private struct StateFailure: Error { let error: PPError }

    /// Opens an inbox input and decides whether to take it now (Inbox.open: a regular file,
    /// no symlink followed, a FIFO never waited for): settled (scanned inputs) and held open
    /// for writing by no process (OpenFiles, like fuser). Returns the open descriptor and the
    /// input with the file's mtime, or nil when it is left (refused, gone, or for later).
    private func take(_ input: Input) -> (fd: Int32, input: Input)? {
        switch Inbox.open(input.path) {
        case .gone:
            return nil
        case .refused(let why):
            refuse(input.display, why)
            return nil
        case .file(let fd, let st):
            var input = input
            input.time = Inbox.mtime(st)
            input.fileID = FileID(st)
            let now = Clock.now()
            if input.scanned && now - input.time < cfg.settle {
                close(fd)
                log.info("not settled yet, left for the next run",
                         metadata: ["file": "\(input.display)", "age_s": "\(Int(max(0, now - input.time)))", "settle_s": "\(cfg.settle)"])
                return nil
            }
            let writers = OpenFiles.holders(of: FileID(st), writing: true)
            if !writers.isEmpty {
                close(fd)
                log.notice("still open for writing, left for the next run (deliver by writing .NAME.tmp, then renaming it to NAME)",
                           metadata: ["file": "\(input.display)", "writers": "\(writers.map(\.description).joined(separator: ","))"])
                return nil
            }
            return (fd, input)
        }
    }

    /// An inbox name that is not valid UTF-8 cannot be named in shards, reasons and records:
    /// the file moves to quarantine/ under a readable name (Inbox.safeName, bytes as %HH)
    /// with NAME.reason.json giving the original bytes in hex. Anything but a regular file is
    /// refused and left, like other non-regular entries.
    private func quarantineBadName(_ raw: [UInt8]) throws {
        let shown = root.inbox + "/" + LogText.escape(bytes: raw)
        guard let st = Inbox.lstatRaw(raw, in: root.inbox) else { return }   // gone meanwhile
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            refuse(shown, "file name is not valid UTF-8, and not a regular file; left in place")
            return
        }
        let reason = "file name is not valid UTF-8"
        quarantined += 1
        var movedTo: String? = nil
        if !cfg.dryRun {
            let q = freeName(root.quarantine, Inbox.safeName(raw))
            var j = JSONOut()
            j.add("schema", 1)
            j.add("file", q)
            j.add("status", "quarantined")
            j.add("check", "file_name")
            j.add("reason", reason + "; renamed to \(q) (the original name's bytes are in name_hex)")
            j.add("name_hex", raw.map { b -> String in let h = String(b, radix: 16); return h.count < 2 ? "0" + h : h }.joined())
            j.add("bytes", Int(st.st_size))
            j.add("quarantined_at", Clock.iso(Clock.now()))
            j.add("release", "rename it to a UTF-8 name in inbox/ (mv quarantine/\(q) inbox/NEWNAME)")
            try FileIO.publish(j.closed + "\n", to: root.quarantine + "/" + q + ".reason.json")
            try Inbox.moveRaw(raw, in: root.inbox, to: root.quarantine + "/" + q)
            movedTo = root.quarantine + "/" + q
        }
        log.error("\(shown): quarantined: \(reason)", metadata: ["moved_to": "\(movedTo ?? "-")"])
        var j = JSONOut()
        j.add("file", shown)
        j.add("status", "quarantined")
        j.add("reason", reason)
        j.add("moved_to", movedTo)
        if cfg.dryRun { j.add("dry_run", raw: "true") }
        emit(j)
        counters.inputs["quarantined", default: 0] += 1
        runStatuses["quarantined", default: 0] += 1
    }

    /// One input, start to end: `readInput` parses it into parts, `rejection` refuses an input
    /// without usable content, `check` runs the batch checks, `quarantine` takes it out on
    /// damage, else `publish` writes its parts and stats sidecar and `dispose` archives or
    /// deletes it. One JSON line on stdout in every case (`report`).
    private func process(_ input: Input) throws {
        var input = input
        var opened: Int32? = nil
        if input.inInbox {
            guard let t = take(input) else { return }
            opened = t.fd
            input = t.input
        }
        let t0 = Clock.monotonic()
        processed += 1
        let train = PartBuilder(split: "train", dir: root.shards, maxExamples: cfg.shardExamples, maxBytes: Ingester.shardRecordBytes)
        let hold = PartBuilder(split: "holdout", dir: root.holdout, maxExamples: cfg.shardExamples, maxBytes: Ingester.shardRecordBytes)
        defer { train.discard(); hold.discard() }
        guard let r = try readInput(input, fd: opened, train: train, hold: hold) else { return }
        var report = JSONOut()
        report.add("file", input.display)

        if let reason = rejection(r) {
            train.discard(); hold.discard()
            rejected += 1
            var movedTo: String? = nil
            if input.inInbox && !cfg.dryRun {
                movedTo = try quarantineInput(input, reasonJSON(input, r.summary, reason, r.firstBad))
            }
            log.error("\(input.display): rejected: \(reason)", metadata: ["moved_to": "\(movedTo ?? "-")"])
            finishReport(&report, "rejected", r.summary, train: 0, holdout: 0, shards: [], movedTo: movedTo, deleted: false, t0: t0)
            report.add("reason", reason)
            emit(report)
            record("rejected", [])
            return
        }

        let c = check(r)
        if cfg.dryRun {
            let would = !c.isNew ? "duplicate" : c.quarantines ? "quarantined" : (r.summary.badLines > 0 ? "partial" : "accepted")
            finishReport(&report, would, r.summary, train: 0, holdout: 0, shards: [], movedTo: nil, deleted: false, t0: t0)
            report.add("dry_run", raw: "true")
            addStats(&report, c.measured, c.outcomes, c.window)
            emit(report)
            runStatuses[would, default: 0] += 1
            results.append((would, []))
            return
        }
        if c.quarantines {
            train.discard(); hold.discard()
            quarantined += 1
            let t = c.tripped[0]
            let reason = "check \(t.check): value \(JSONOut.number(t.value ?? 0)) exceeds threshold \(JSONOut.number(t.threshold ?? 0)) (n \(t.n), reference \(c.window.inputs) inputs, \(c.window.examples) examples)"
            var movedTo: String? = nil
            if input.inInbox {
                movedTo = try quarantineInput(input, quarantineJSON(input, r.summary, tripped: c.tripped, outcomes: c.outcomes,
                                                                    stats: c.measured, window: c.window, model: c.model))
            }
            log.error("\(input.display): quarantined: \(reason)", metadata: ["moved_to": "\(movedTo ?? "-")",
                      "tripped": "\(c.tripped.map(\.check).joined(separator: ","))"])
            finishReport(&report, "quarantined", r.summary, train: 0, holdout: 0, shards: [], movedTo: movedTo, deleted: false, t0: t0)
            report.add("reason", reason)
            addStats(&report, c.measured, c.outcomes, c.window)
            emit(report)
            record("quarantined", [])
            return
        }

        let (status, published) = try publish(input, r, c, train: train, hold: hold)
        let (movedTo, deleted) = try dispose(input)
        let trainN = status == "duplicate" ? 0 : train.total
        let holdN = status == "duplicate" ? 0 : hold.total
        let secs = Clock.monotonic() - t0
        log.info("\(input.display): \(status)", metadata: [
            "examples": "\(r.summary.examples)", "train": "\(trainN)", "holdout": "\(holdN)", "bad": "\(r.summary.badLines)",
            "duplicates": "\(r.summary.duplicates)", "shards": "\(published.count)",
            "MB_per_s": "\(JSONOut.number(Double(r.summary.bytes) / 1e6 / max(secs, 1e-9), digits: 1))"])
        finishReport(&report, status, r.summary, train: trainN, holdout: holdN, shards: published, movedTo: movedTo, deleted: deleted, t0: t0)
        addStats(&report, c.measured, c.outcomes, c.window)
        emit(report)
        if status != "duplicate" { counters.examples += r.summary.examples; counters.bytes += r.summary.bytes }
        record(status, published)
    }

    /// What reading an input gave: its examples went into the part builders as they came.
    private struct Read {
        var summary: InputSummary
        let stats: BatchStats
        let firstBad: [(error: InputLineError, excerpt: String)]
        /// Why the input cannot be read as text (corrupt compression, ...), or nil.
        let unreadable: String?
        var sha16: String { String(summary.sha256.prefix(16)) }
    }

    /// Parses the input (the descriptor `fd` when `take` opened it, else its path) into the
    /// part builders, measuring the batch statistics on the way. nil when it could not be read
    /// (an I/O error: reported, the input left in place); a corrupt input reads as
    /// `unreadable`. A failure to write the parts (the state folder) throws.
    private func readInput(_ input: Input, fd: Int32?, train: PartBuilder, hold: PartBuilder) throws -> Read? {
        var readerTook = false
        defer { if let fd, !readerTook { close(fd) } }
        let parser = InputParser(options: InputOptions(maxTextBytes: cfg.maxTextBytes))
        let stats = BatchStats(sampleSize: deployedModel() != nil ? policy.sampleExamples : 0)
        var firstBad: [(error: InputLineError, excerpt: String)] = []
        var summary = InputSummary()
        var unreadable: String? = nil
        do {
            let reader: ChunkReader
            if let fd { readerTook = true; reader = try ChunkReader(fd: fd, path: input.path) } else { reader = try ChunkReader(path: input.path) }
            let fraction = cfg.holdout
            summary = try parser.parse(reader, example: { e in
                stats.observe(e)
                do {
                    if HoldoutSplit.isHoldout(tokenHash: e.tokenHash, fraction: fraction) { try hold.append(e) }
                    else { try train.append(e) }
                } catch let err as PPError { throw StateFailure(error: err) }
            }, bad: { e, raw in
                if firstBad.count < Ingester.shownBadLines {
                    firstBad.append((e, InputLineError.excerpt(raw)))
                    log.warning("\(input.display):\(e.line): \(e.detail) [\(e.reason.rawValue)]")
                }
            })
        } catch let s as StateFailure {
            throw s.error
        } catch let e as PPError where e.status == .corrupt {
            unreadable = e.message
        } catch let e as PPError {
            ioErrors += 1
            log.error("\(input.display): cannot read: \(e.message); left in place")
            emitProblem(input.display, status: "error", "cannot read: \(e.message)")
            return nil
        }
        if summary.badLines > Ingester.shownBadLines {
            let counts = summary.bad.sorted { $0.key < $1.key }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: " ")
            log.warning("\(input.display): \(summary.badLines - Ingester.shownBadLines) more bad lines not shown (\(counts))")
        }
        return Read(summary: summary, stats: stats, firstBad: firstBad, unreadable: unreadable)
    }

    /// Why an input is rejected whole (nothing usable, too many bad lines), or nil.
    private func rejection(_ r: Read) -> String? {
        let s = r.summary
        if let u = r.unreadable { return "unreadable input: \(u)" }
        if s.contentLines == 0 { return "empty input: no lines" }
        if s.examples == 0 { return "no good line (\(s.badLines) bad of \(s.contentLines))" }
        if s.badShare > cfg.maxBad && !cfg.releasing {
            return "bad-line share \(JSONOut.number(s.badShare * 100, digits: 2))% exceeds --max-bad \(JSONOut.number(cfg.maxBad * 100, digits: 2))%"
        }
        return nil
    }

    /// The batch checks' verdict on one input (Checks.swift).
    private struct Checked {
        let isNew: Bool
        let hashSample: (values: [UInt64], limit: UInt64)
        let model: ModelView?
        let outcomes: [CheckOutcome]
        /// The damage checks that tripped (only damage quarantines; a change check beyond its
        /// threshold is recorded as "changed").
        let tripped: [CheckOutcome]
        let measured: [String: Double]
        let window: ReferenceWindow
        /// Quarantine it: new content, damage found, and checks and quarantine switched on.
        let quarantines: Bool
    }

    /// Runs the batch checks: always measured and recorded; they gate only new content (an
    /// input already ingested was accepted before, or is being completed).
    private func check(_ r: Read) -> Checked {
        let isNew = (index[r.sha16] ?? []).isEmpty
        let hashSample = r.stats.hashes.finish()
        var modelView: ModelView? = nil
        if let d = deployedModel() {
            modelView = ModelView.measure(d.model, checkpoint: d.checkpoint, labels: r.stats.labels, sample: r.stats.finishSample())
        }
        var measured: [String: Double] = [:]
        let outcomes = Checks.evaluate(r.stats, hashes: hashSample, model: modelView, reference: reference, policy: policy, stats: &measured)
        let tripped = outcomes.filter(\.quarantines)
        lastOutcomes = outcomes
        lastStats = measured
        if isNew { for t in outcomes where t.tripped { counters.checksTripped[t.check, default: 0] += 1 } }
        return Checked(isNew: isNew, hashSample: hashSample, model: modelView, outcomes: outcomes, tripped: tripped,
                       measured: measured, window: reference.window,
                       quarantines: isNew && !tripped.isEmpty && policy.quarantine && cfg.checks && !cfg.releasing)
    }

    /// Moves an inbox input to quarantine/ beside its reason (the reason first: a crash
    /// between leaves the reason and the input still in inbox/). Returns where it went.
    private func quarantineInput(_ input: Input, _ reasonJSON: String) throws -> String {
        let q = freeName(root.quarantine, input.name)
        try FileIO.publish(reasonJSON, to: root.quarantine + "/" + q + ".reason.json")
        crashPoint("after-reason")
        try FileIO.moveDurably(input.path, root.quarantine + "/" + q)
        return root.quarantine + "/" + q
    }

    /// Seals and publishes the input's parts under their names (those not there yet: a
    /// duplicate publishes nothing, an interrupted ingest is completed), then the stats
    /// sidecar. Returns the status ("accepted", "partial", "duplicate") and the paths written.
    private func publish(_ input: Input, _ r: Read, _ c: Checked, train: PartBuilder, hold: PartBuilder) throws -> (String, [String]) {
        let summary = r.summary, sha16 = r.sha16
        let stamp = Clock.stamp(input.time)
        try train.seal()
        try hold.seal()
        let now = Clock.iso(Clock.now())
        struct Planned { let builder: PartBuilder; let part: Int; let rel: String; var path: String }
        var planned: [Planned] = []
        for (b, rel) in [(hold, "holdout"), (train, "shards")] {
            for i in 0..<b.sealed.count {
                let name = ShardName(stamp: stamp, sha16: sha16, part: i).file
                planned.append(Planned(builder: b, part: i, rel: rel + "/" + name, path: root.path + "/" + rel + "/" + name))
            }
        }
        let ours = Set(planned.map(\.rel))
        let existing = index[sha16] ?? []
        var toPublish: [Planned] = []
        var status = summary.badLines > 0 ? "partial" : "accepted"
        var ownNames = true
        if existing.isEmpty {
            toPublish = planned
        } else if ours.isSubset(of: existing) {
            status = "duplicate"
            log.notice("\(input.display): already ingested (same SHA-256), nothing new to publish", metadata: ["sha256": "\(summary.sha256)"])
        } else if existing.isSubset(of: ours) && consistent(existing, planned.map { ($0.rel, $0.builder.split, $0.part, $0.builder.sealed.count, $0.builder.sealed[$0.part].header.examples) }) {
            toPublish = planned.filter { !existing.contains($0.rel) }
            log.notice("\(input.display): completing an interrupted ingest",
                       metadata: ["present": "\(existing.count)", "missing": "\(toPublish.count)"])
        } else {
            // The same content under other names: another file with these bytes (other mtime,
            // so other stamp), or an earlier run with other --shard-examples/--holdout.
            status = "duplicate"
            ownNames = false
            log.notice("\(input.display): already ingested (same SHA-256) as other shards; nothing new to publish",
                       metadata: ["sha256": "\(summary.sha256)", "existing": "\(existing.sorted().joined(separator: ","))"])
        }

        crashPoint("before-publish")
        var published: [String] = []
        for p in toPublish {
            let s = p.builder.sealed[p.part]
            var h = s.header
            h.sourceName = input.name
            h.sourceSHA256 = summary.sha256
            h.sourceBytes = summary.bytes
            h.part = p.part
            h.parts = p.builder.sealed.count
            h.ingestedAt = now
            var hs = c.measured
            hs["input_lines"] = Double(summary.lines)
            hs["input_bad_lines"] = Double(summary.badLines)
            hs["input_duplicates"] = Double(summary.duplicates)
            hs["holdout_fraction"] = cfg.holdout
            h.stats = hs
            try publishPart(header: try ShardWriter.headerFrame(h, recordBytes: s.recordBytes, level: 1), records: s.tmp, to: p.path)
            unlink(s.tmp)
            index[sha16, default: []].insert(p.rel)
            published.append(p.path)
            if published.count == 1 { crashPoint("after-first-shard") }
        }
        crashPoint("after-shards")

        // The stats sidecar (the reference of later inputs): for new content, and when
        // completing an interrupted ingest whose sidecar was not written yet.
        let prefix = ShardName(stamp: stamp, sha16: sha16, part: 0).input
        if ownNames && !reference.has(prefix) {
            let st = r.stats
            let side = StatsSidecar(name: prefix, sourceName: input.name, sourceSHA256: summary.sha256, ingestedAt: now,
                                    status: cfg.releasing ? "released" : "accepted", examples: st.examples, tokens: st.tokens,
                                    labelCounts: st.labelCountMap, lengthHist: st.lengthHist,
                                    hashCount: c.hashSample.values.count, hashLimit: String(c.hashSample.limit, radix: 16),
                                    stats: c.measured, checks: c.outcomes, reference: c.window)
            try reference.add(side, hashes: c.hashSample.values)
            crashPoint("after-sidecar")
        }
        return (status, published)
    }

    /// An ingested inbox input goes to archive/ (or is deleted with --delete). Returns where
    /// it went and whether it was deleted.
    private func dispose(_ input: Input) throws -> (movedTo: String?, deleted: Bool) {
        guard input.inInbox else { return (nil, false) }
        if let id = input.fileID, FileID.of(input.path) != id {
            // Renamed over while we read it (a producer delivering a new version under the
            // same name): what we ingested is gone from inbox/, the new file is left for the
            // next run, never deleted or archived unread.
            log.notice("\(input.display): replaced by another file while being read; the new one is left for the next run")
            return (nil, false)
        }
        if cfg.delete {
            try FileIO.removeDurably(input.path)
            return (nil, true)
        }
        let a = freeName(root.archive, input.name)
        try FileIO.moveDurably(input.path, root.archive + "/" + a)
        return (root.archive + "/" + a, false)
    }

    private func record(_ status: String, _ shards: [String]) {
        counters.inputs[status, default: 0] += 1
        runStatuses[status, default: 0] += 1
        results.append((status, shards))
    }

    /// The deployed model (loaded once per run), or nil when none is deployed or it cannot be
    /// read (the canary and OOV checks then say "no deployed model"; ingest goes on).
    private func deployedModel() -> (model: Model, checkpoint: String)? {
        if let d = deployed { return d }
        var result: (model: Model, checkpoint: String)? = nil
        if FileIO.lstatOrNil(root.deployed) != nil {
            do {
                let target = realPath(root.deployed) ?? root.deployed
                let c = try Checkpoint.load(path: target, mode: .inference, averaged: true)   // what it deploys
                let name = target.hasPrefix(root.path + "/") ? String(target.dropFirst(root.path.count + 1)) : target
                result = (c.model, name)
                log.info("canary: deployed model loaded", metadata: ["checkpoint": "\(name)", "labels": "\(c.model.labels.count)"])
            } catch let e as PPError {
                log.warning("canary: cannot load the deployed model, canary and OOV checks skipped: \(e.message)")
            } catch {
                log.warning("canary: cannot load the deployed model, canary and OOV checks skipped: \(error)")
            }
        }
        deployed = .some(result)
        return result
    }

    private func addStats(_ j: inout JSONOut, _ measured: [String: Double], _ outcomes: [CheckOutcome], _ w: ReferenceWindow) {
        j.add("stats", raw: JSONOut.numbers(measured))
        j.add("checks", raw: JSONOut.checks(outcomes))
        j.add("tripped", outcomes.filter(\.quarantines).map(\.check))
        j.add("changed", outcomes.filter { $0.tripped && !$0.quarantines }.map(\.check))
        j.add("reference", raw: JSONOut.window(w))
    }

    /// FileIO.publish for a shard whose records frame is already in the file `records`:
    /// writes `.NAME.tmp.PID` = header frame + a kernel-side copy of `records`
    /// (sendfile(2), read/write where unsupported), fsyncs it, renames it to `path`,
    /// and fsyncs the folder.
    private func publishPart(header: [UInt8], records: String, to path: String) throws {
        try FileIO.publish(to: path) { out, tmp in
            try header.withUnsafeBytes { try FileIO.writeAll(out, $0, path: tmp) }
            let src = open(records, O_RDONLY | O_CLOEXEC)
            if src < 0 { throw PPError.io(records, "open", errno: errno) }
            defer { close(src) }
            var kernelCopy = true
            while kernelCopy {
                let n = sendfile(out, src, nil, 1 << 30)
                if n == 0 { break }
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == ENOSYS || errno == EINVAL { kernelCopy = false; break }
                    throw PPError.io(tmp, "sendfile", errno: errno)
                }
            }
            if !kernelCopy {
                var buf = [UInt8](repeating: 0, count: 1 << 20)
                while true {
                    let n = buf.withUnsafeMutableBytes { b in read(src, b.baseAddress!, b.count) }
                    if n < 0 { if errno == EINTR { continue }; throw PPError.io(records, "read", errno: errno) }
                    if n == 0 { break }
                    try buf.withUnsafeBytes { try FileIO.writeAll(out, UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: tmp) }
                }
            }
        }
    }

    /// True when every existing shard of this input is the part we would write under that
    /// name (same split, part number, part count and example count): then the missing ones
    /// complete the set. Anything else means other options made them; we do not mix.
    private func consistent(_ existing: Set<String>, _ planned: [(rel: String, split: String, part: Int, parts: Int, examples: Int)]) -> Bool {
        let byRel = Dictionary(uniqueKeysWithValues: planned.map { ($0.rel, $0) })
        for rel in existing {
            guard let p = byRel[rel] else { return false }
            guard let shard = try? Shard(path: root.path + "/" + rel) else { return false }
            let h = shard.header
            if h.split != p.split || h.part != p.part || h.parts != p.parts || h.examples != p.examples { return false }
        }
        return true
    }

    private func finishReport(_ j: inout JSONOut, _ status: String, _ s: InputSummary, train: Int, holdout: Int,
                              shards: [String], movedTo: String?, deleted: Bool, t0: Double) {
        j.add("status", status)
        j.add("lines", s.lines)
        j.add("blank_lines", s.blankLines)
        j.add("examples", s.examples)
        j.add("bad_lines", s.badLines)
        j.add("bad", raw: JSONOut.counts(Dictionary(uniqueKeysWithValues: s.bad.map { ($0.key.rawValue, $0.value) })))
        j.add("duplicates", s.duplicates)
        j.add("train_examples", train)
        j.add("holdout_examples", holdout)
        j.add("shards", shards)
        j.add("sha256", s.sha256.isEmpty ? nil : s.sha256)
        j.add("bytes", s.bytes)
        j.add("moved_to", movedTo)
        j.add("deleted", raw: deleted ? "true" : "false")
        j.add("seconds", Clock.monotonic() - t0, digits: 3)
    }

    /// quarantine/NAME.reason.json for a batch that tripped a check: the first tripped check's
    /// name, value and threshold at the top (the `check`/`value`/`threshold` keys every
    /// reason file has), then every check, every measured value and the reference window.
    private func quarantineJSON(_ input: Input, _ s: InputSummary, tripped: [CheckOutcome], outcomes: [CheckOutcome],
                                stats: [String: Double], window: ReferenceWindow, model: ModelView?) -> String {
        let t = tripped[0]
        var j = JSONOut()
        j.add("schema", 1)
        j.add("file", input.name)
        j.add("status", "quarantined")
        j.add("check", t.check)
        j.add("value", t.value ?? 0)
        j.add("threshold", t.threshold ?? 0)
        j.add("n", t.n)
        j.add("reason", "check \(t.check): value \(JSONOut.number(t.value ?? 0)) exceeds threshold \(JSONOut.number(t.threshold ?? 0))")
        j.add("tripped", tripped.map(\.check))
        j.add("reference", raw: JSONOut.window(window))
        j.add("checks", raw: JSONOut.checks(outcomes))
        j.add("stats", raw: JSONOut.numbers(stats))
        j.add("model", model?.checkpoint)
        j.add("sha256", s.sha256)
        j.add("bytes", s.bytes)
        j.add("lines", s.lines)
        j.add("examples", s.examples)
        j.add("bad_lines", s.badLines)
        j.add("quarantined_at", Clock.iso(Clock.now()))
        j.add("release", "pp-ingest release \(input.name)")
        return j.closed + "\n"
    }

    private func writeMetrics(seconds: Double) throws {
        var m = Metrics()
        IngestMetrics.fill(&m, root: root, counters: counters, run: runStatuses, seconds: seconds,
                           last: lastOutcomes, lastStats: lastStats, policy: policy)
        try m.publish(root: root, name: "ingest")
    }

    private func reasonJSON(_ input: Input, _ s: InputSummary, _ reason: String,
                            _ firstBad: [(error: InputLineError, excerpt: String)]) -> String {
        var j = JSONOut()
        j.add("schema", 1)
        j.add("file", input.name)
        j.add("status", "rejected")
        j.add("reason", reason)
        j.add("sha256", s.sha256.isEmpty ? nil : s.sha256)
        j.add("bytes", s.bytes)
        j.add("lines", s.lines)
        j.add("blank_lines", s.blankLines)
        j.add("examples", s.examples)
        j.add("duplicates", s.duplicates)
        j.add("bad_lines", s.badLines)
        j.add("bad_share", s.badShare)
        j.add("bad", raw: JSONOut.counts(Dictionary(uniqueKeysWithValues: s.bad.map { ($0.key.rawValue, $0.value) })))
        let lines = firstBad.map { b -> String in
            var o = JSONOut()
            o.add("line", b.error.line)
            o.add("reason", b.error.reason.rawValue)
            o.add("detail", b.error.detail)
            o.add("excerpt", b.excerpt)
            return o.closed
        }
        j.add("first_bad", raw: "[" + lines.joined(separator: ",") + "]")
        var t = JSONOut()
        t.add("max_bad", cfg.maxBad)
        t.add("max_text_bytes", cfg.maxTextBytes)
        t.add("max_label_bytes", InputOptions.maxLabelBytes)
        t.add("max_line_bytes", InputOptions(maxTextBytes: cfg.maxTextBytes).maxLineBytes)
        j.add("thresholds", raw: t.closed)
        j.add("rejected_at", Clock.iso(Clock.now()))
        return j.closed + "\n"
    }
}

/// The parts of one split (train or holdout) of one input: examples accumulate in a
/// ShardWriter; a full writer is compressed into a dot-named temp file and forgotten, so at
/// most one part per split is in memory.
final class PartBuilder {
    struct Sealed {
        let tmp: String
        /// Counts, labels and ts range filled in; source, part and time are set at publish.
        let header: ShardHeader
        let recordBytes: Int
    }

    let split: String
    let dir: String
    let maxExamples: Int
    let maxBytes: Int
    private var writer = ShardWriter()
    private(set) var sealed: [Sealed] = []
    private(set) var total = 0
    private var lastLabelBytes: [UInt8] = []
    private var lastLabel = ""

    init(split: String, dir: String, maxExamples: Int, maxBytes: Int) {
        self.split = split; self.dir = dir; self.maxExamples = maxExamples; self.maxBytes = maxBytes
    }

    func append(_ e: InputExample) throws {
        if lastLabelBytes.count != e.label.count || !lastLabelBytes.withUnsafeBytes({ memcmp($0.baseAddress!, e.label.baseAddress!, e.label.count) == 0 }) {
            lastLabelBytes = Array(e.label)
            lastLabel = e.labelString
        }
        writer.append(label: lastLabel, ts: e.ts, tokenBytes: e.tokens, tokenCount: e.tokenCount)
        total += 1
        if writer.examples >= maxExamples || writer.records.count >= maxBytes { try seal() }
    }

    /// Compresses the open part into its temp file (no fsync: a temp only matters until
    /// the published copy is fsynced).
    func seal() throws {
        guard writer.examples > 0 else { return }
        let tmp = dir + "/.ingest-\(getpid())-\(split)-\(sealed.count).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw PPError.io(tmp, "create", errno: errno) }
        defer { close(fd) }
        try writer.writeRecordsFrame(level: 1) { try FileIO.writeAll(fd, $0, path: tmp) }
        let template = ShardHeader(split: split, examples: 0, tokens: 0, labels: [], labelCounts: [], sourceName: "",
                                   sourceSHA256: "", sourceBytes: 0, part: sealed.count, parts: 0, ingestedAt: "",
                                   tsMin: nil, tsMax: nil)
        sealed.append(Sealed(tmp: tmp, header: writer.filled(template), recordBytes: writer.records.count))
        writer = ShardWriter()
    }

    /// Removes the temps not published yet and forgets everything.
    func discard() {
        for s in sealed { unlink(s.tmp) }
        sealed.removeAll()
        writer = ShardWriter()
    }
}
