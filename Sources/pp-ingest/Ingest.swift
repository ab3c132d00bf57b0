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
// (Shared/Shard.swift, ShardFrames.swift), argument parsing (Command.swift). Beside this file:
// IngestInputs (finding and taking the inputs), PartBuilder (the parts as they are read),
// IngestState (index, temps, publishing a part, test hooks),
// IngestReport (the stdout line and reason files), Quarantine (quarantine and release),
// IngestPool (a trickle's small inputs, judged together).

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
    var index: [String: Set<String>] = [:]

    var processed = 0
    var rejected = 0
    var quarantined = 0
    /// Set by run(): the policy's ingest section, the reference, the deployed model.
    var policy = IngestPolicy()
    var reference: Reference!
    var deployed: (model: Model, checkpoint: String)?? = nil
    var counters = IngestCounters()
    var lastOutcomes: [CheckOutcome] = []
    var lastStats: [String: Double] = [:]
    /// Statuses of this run's inputs (for the metrics).
    var runStatuses: [String: Int] = [:]
    /// Per input: what `release` needs to know (status, published shards).
    private(set) var results: [(status: String, shards: [String])] = []
    var refused = 0
    var missing = 0
    var ioErrors = 0
    /// This stream is a trickle (its recent inputs came less than pool_max_wait apart): small
    /// inputs are held and judged together, the reference reaches back to enough examples.
    var trickle = false
    /// The small inputs of a trickle read this run, waiting for their pool (judgePool).
    var held: [(input: Input, read: Read)] = []

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
            let inputs = try prepared ?? collect(files)
            pausePoint("listed")
            // The index of what was ingested and the rolling reference are read only when
            // there is something to ingest: both list folders that grow with the history
            // (shards/, stats/), and the inbox unit and timer run pp-ingest on an empty inbox
            // far more often than on a full one (0.3 s of CPU a no-op run after 54 days of the
            // 5-minute production-sim).
            if !inputs.isEmpty {
                try buildIndex()
                reference = try Reference(root: root, policy: policy)
                trickle = policy.poolMinExamples > 0 && (reference.medianGap.map { $0 < policy.poolMaxWait } ?? false)
            }
            counters = IngestCounters.load(root)
            for input in inputs { try process(input) }
            try judgePool()
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

    // MARK: - Output (the inputs are found in IngestInputs.swift, the reports built in
    // IngestReport.swift)

    func emitProblem(_ path: String, status: String, _ why: String) {
        log.error("\(path): \(why)")
        var j = JSONOut()
        j.add("file", path)
        j.add("status", status)
        j.add("error", why)
        j.emit()
    }

    // MARK: - One input

    /// Thrown through the parser's callbacks when writing to the state folder fails, so it
    /// is not mistaken for a defect of the input.
    struct StateFailure: Error { let error: PPError }

    /// One input, start to end: `readInput` parses it into parts, `rejection` refuses an input
    /// without usable content, `check` runs the batch checks, `quarantine` takes it out on
    /// damage, else `publish` writes its parts and stats sidecar and `dispose` archives or
    /// deletes it. One JSON line on stdout in every case (`report`).
    func process(_ input: Input, pool: Pool? = nil) throws {
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
            try reject(input, r, reason: reason, report: &report, t0: t0)
            return
        }

        let c: Checked
        if let pool {
            // A member of a judged pool: the pool's verdict, if this is the content judged.
            guard pool.sha256[input.path] == r.summary.sha256 else {
                log.notice("\(input.display): changed since its pool was judged; left for the next run")
                processed -= 1
                return
            }
            c = pool.checked.forMember(isNew: isNew(r), blamed: pool.blamed?.contains(input.path) ?? true)
        } else if holds(input, r) {
            held.append((input, r))
            processed -= 1
            return
        } else {
            c = check(stats: r.stats, isNew: isNew(r))
        }
        if cfg.dryRun {
            let would = !c.isNew ? "duplicate" : c.quarantines ? "quarantined" : (r.summary.badLines > 0 ? "partial" : "accepted")
            finishReport(&report, would, r.summary, train: 0, holdout: 0, shards: [], movedTo: nil, deleted: false, t0: t0)
            report.add("dry_run", raw: "true")
            addStats(&report, c)
            report.emit()
            runStatuses[would, default: 0] += 1
            results.append((would, []))
            return
        }
        if c.quarantines {
            train.discard(); hold.discard()
            try quarantine(input, r, c, report: &report, t0: t0)
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
        addStats(&report, c)
        report.emit()
        if status != "duplicate" { counters.examples += r.summary.examples; counters.bytes += r.summary.bytes }
        record(status, published)
    }

    /// What reading an input gave: its examples went into the part builders as they came.
    struct Read {
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
    func readInput(_ input: Input, fd: Int32?, train: PartBuilder, hold: PartBuilder) throws -> Read? {
        var readerTook = false
        defer { if let fd, !readerTook { close(fd) } }
        let parser = InputParser(options: InputOptions(maxTextBytes: cfg.maxTextBytes))
        // The canary's sample is kept when a model is deployed; the model itself is loaded
        // only when a batch is judged (a trickle's waiting inputs never need it).
        let stats = BatchStats(sampleSize: canarySample)
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
    func rejection(_ r: Read) -> String? {
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
    struct Checked {
        let isNew: Bool
        let hashSample: (values: [UInt64], limit: UInt64)
        let model: ModelView?
        let outcomes: [CheckOutcome]
        /// The damage checks that tripped (only damage quarantines; a change check beyond its
        /// threshold is recorded as "changed").
        let tripped: [CheckOutcome]
        var measured: [String: Double]
        let window: ReferenceWindow
        /// Quarantine it: new content, damage found, and checks and quarantine switched on.
        let quarantines: Bool
        /// The trickle's inputs judged together with this one (nil: judged alone).
        var pool: PoolInfo? = nil
    }

    /// Content not ingested before (no shard carries its SHA-256).
    func isNew(_ r: Read) -> Bool { (index[r.sha16] ?? []).isEmpty }

    /// Examples a batch keeps for the canary: `sample_examples` while a model is deployed.
    var canarySample: Int { FileIO.lstatOrNil(root.deployed) != nil ? policy.sampleExamples : 0 }

    /// Runs the batch checks: always measured and recorded; they gate only new content (an
    /// input already ingested was accepted before, or is being completed).
    func check(stats: BatchStats, isNew: Bool) -> Checked {
        let hashSample = stats.hashes.finish()
        var modelView: ModelView? = nil
        if let d = deployedModel() {
            modelView = ModelView.measure(d.model, checkpoint: d.checkpoint, labels: stats.labels, sample: stats.finishSample())
        }
        // A trickle's reference reaches back until it holds reference_min_examples examples.
        let window = trickle ? reference.window(minExamples: policy.referenceMinExamples, maxInputs: policy.referenceMaxInputs)
                             : reference.recent
        // ... and its duplicate check through reference_max_inputs inputs (a trickle's 156 newest
        // inputs are half a day).
        let dups = trickle ? reference.duplicateSets(inputs: policy.referenceMaxInputs) : reference.hashSets
        var measured: [String: Double] = [:]
        let outcomes = Checks.evaluate(stats, hashes: hashSample, model: modelView, reference: reference, window: window,
                                       duplicateSets: dups, policy: policy, stats: &measured)
        let tripped = outcomes.filter(\.quarantines)
        lastOutcomes = outcomes
        lastStats = measured
        if isNew { for t in outcomes where t.tripped { counters.checksTripped[t.check, default: 0] += 1 } }
        return Checked(isNew: isNew, hashSample: hashSample, model: modelView, outcomes: outcomes, tripped: tripped,
                       measured: measured, window: Reference.describe(window, duplicateInputs: dups.count),
                       quarantines: isNew && !tripped.isEmpty && policy.quarantine && cfg.checks && !cfg.releasing)
    }

    /// Refuses an input whole (`rejection`): to quarantine/ with its reason (not in a dry run).
    func reject(_ input: Input, _ r: Read, reason: String, report: inout JSONOut, t0: Double) throws {
        rejected += 1
        var movedTo: String? = nil
        if input.inInbox && !cfg.dryRun {
            movedTo = try quarantineInput(input, reasonJSON(input, r.summary, reason, r.firstBad))
        }
        log.error("\(input.display): rejected: \(reason)", metadata: ["moved_to": "\(movedTo ?? "-")"])
        finishReport(&report, "rejected", r.summary, train: 0, holdout: 0, shards: [], movedTo: movedTo, deleted: false, t0: t0)
        report.add("reason", reason)
        report.emit()
        record("rejected", [])
    }

    /// Takes out an input a damage check tripped on: to quarantine/ with the checks' evidence;
    /// the first tripped check names the reason.
    func quarantine(_ input: Input, _ r: Read, _ c: Checked, report: inout JSONOut, t0: Double) throws {
        quarantined += 1
        let t = c.tripped[0]
        var reason = "check \(t.check): value \(JSONOut.number(t.value ?? 0)) exceeds threshold \(JSONOut.number(t.threshold ?? 0)) (n \(t.n), reference \(c.window.inputs) inputs, \(c.window.examples) examples)"
        if let p = c.pool { reason += "; judged in a pool of \(p.inputs.count) inputs, \(p.examples) examples" }
        var movedTo: String? = nil
        if input.inInbox {
            movedTo = try quarantineInput(input, quarantineJSON(input, r.summary, c))
        }
        log.error("\(input.display): quarantined: \(reason)", metadata: ["moved_to": "\(movedTo ?? "-")",
                  "tripped": "\(c.tripped.map(\.check).joined(separator: ","))"])
        finishReport(&report, "quarantined", r.summary, train: 0, holdout: 0, shards: [], movedTo: movedTo, deleted: false, t0: t0)
        report.add("reason", reason)
        addStats(&report, c)
        report.emit()
        record("quarantined", [])
    }

    /// Moves an inbox input to quarantine/ beside its reason (the reason first: a crash
    /// between leaves the reason and the input still in inbox/). Returns where it went.
    func quarantineInput(_ input: Input, _ reasonJSON: String) throws -> String {
        let q = freeName(root.quarantine, input.name)
        try FileIO.publish(reasonJSON, to: root.quarantine + "/" + q + ".reason.json")
        crashPoint("after-reason")
        try FileIO.moveDurably(input.path, root.quarantine + "/" + q)
        return root.quarantine + "/" + q
    }

    /// A part of the input to publish under its name (relative to the root: "shards/NAME").
    struct Planned { let builder: PartBuilder; let part: Int; let rel: String; var path: String }

    /// Which sealed parts to publish: all of them for new content, none for a duplicate, the
    /// missing ones when completing an interrupted ingest. Returns them with the input's
    /// status and whether its shards carry this input's own names.
    func plan(_ input: Input, _ summary: InputSummary, stamp: String, train: PartBuilder, hold: PartBuilder) -> ([Planned], String, Bool) {
        let sha16 = String(summary.sha256.prefix(16))
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
        return (toPublish, status, ownNames)
    }

    /// Seals and publishes the input's parts under their names (those not there yet: a
    /// duplicate publishes nothing, an interrupted ingest is completed), then the stats
    /// sidecar. Returns the status ("accepted", "partial", "duplicate") and the paths written.
    func publish(_ input: Input, _ r: Read, _ c: Checked, train: PartBuilder, hold: PartBuilder) throws -> (String, [String]) {
        let summary = r.summary, sha16 = r.sha16
        let stamp = Clock.stamp(input.time)
        try train.seal()
        try hold.seal()
        let now = Clock.iso(Clock.now())
        let (toPublish, status, ownNames) = plan(input, summary, stamp: stamp, train: train, hold: hold)

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
            // A pool's member keeps its own examples' hashes (the pool's are its verdict's).
            let hashSample = c.pool == nil ? c.hashSample : st.hashes.finish()
            let side = StatsSidecar(name: prefix, sourceName: input.name, sourceSHA256: summary.sha256, ingestedAt: now,
                                    status: cfg.releasing ? "released" : "accepted", examples: st.examples, tokens: st.tokens,
                                    labelCounts: st.labelCountMap, lengthHist: st.lengthHist,
                                    hashCount: hashSample.values.count, hashLimit: String(hashSample.limit, radix: 16),
                                    stats: c.measured, checks: c.outcomes, reference: c.window)
            try reference.add(side, hashes: hashSample.values)
            crashPoint("after-sidecar")
        }
        return (status, published)
    }

    /// An ingested inbox input goes to archive/ (or is deleted with --delete). Returns where
    /// it went and whether it was deleted.
    func dispose(_ input: Input) throws -> (movedTo: String?, deleted: Bool) {
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

    func record(_ status: String, _ shards: [String]) {
        counters.inputs[status, default: 0] += 1
        runStatuses[status, default: 0] += 1
        results.append((status, shards))
    }

    /// The deployed model (loaded once per run), or nil when none is deployed or it cannot be
    /// read (the canary and OOV checks then say "no deployed model"; ingest goes on).
    func deployedModel() -> (model: Model, checkpoint: String)? {
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

    func writeMetrics(seconds: Double) throws {
        var m = Metrics()
        IngestMetrics.fill(&m, root: root, counters: counters, run: runStatuses, seconds: seconds,
                           last: lastOutcomes, lastStats: lastStats, policy: policy)
        try m.publish(root: root, name: "ingest")
    }

}
