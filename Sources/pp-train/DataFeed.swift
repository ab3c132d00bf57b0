// What the trainer eats next: the pool of shards in shards/, the data cursor (how far each
// shard has been read, how many passes, the replay RNG) and the batches cut from them.
//
// Order of the data:
// - New shards (never fully read) come first, in file-name order (names sort by arrival).
//   Within a shard, each pass visits the records in a shuffled order that is a pure function
//   of (seed, shard hash, pass number), so the cursor only needs the position.
// - A `replay` share of every batch comes from older shards (read at least once), spread
//   evenly over the batch. The replay source is one old shard at a time, read in its own
//   shuffled order until its pass ends; then the seeded RNG (state in the cursor) picks the
//   next one, weighted by example count, so every old example is equally likely.
// - With no new data left, whole batches replay old shards that have had fewer than
//   `maxPasses` passes; after that the feed reports that it is idle.
// - `--once --passes N` instead walks every shard N times in name order, without replay.
// - A batch in `new` mode carries new examples of one shard only (it ends where the next new
//   shard would begin), so the loop can charge the batch's loss to that shard (its guard).
// - Excluded shards (the run's suspects) are never in the pool nor the cursor, as if they
//   had never been in shards/.
// At most two shards are decompressed in memory at any time (the new one and the replay
// one); memory does not grow with the amount of data seen. The cursor's state is a pure
// function of the examples handed out, so a resume from a checkpoint continues exactly.
// This file does not train and does not know about checkpoints or knobs.

import Crypto
import Foundation
import Logging
import Shared
import TextModel
import Training

/// One shard decompressed in memory with its record offsets and the order of the current pass.
final class OpenShard {
    let name: String
    let sha256: String
    let shard: Shard
    /// Byte offset of each record in `shard.payload`.
    let offsets: [Int]
    private(set) var orderPass = -1
    private(set) var order: [UInt32] = []

    init(name: String, sha256: String, shard: Shard) {
        self.name = name; self.sha256 = sha256; self.shard = shard
        offsets = shard.recordOffsets()
    }

    var examples: Int { offsets.count }

    /// The record visiting order of pass `pass`: a Fisher-Yates shuffle seeded by the run's
    /// seed, the shard's hash and the pass number.
    func ensureOrder(pass: Int, seed: UInt64) {
        if orderPass == pass { return }
        var rng = SplitMix64(state: seed ^ (UInt64(sha256.prefix(16), radix: 16) ?? 0) ^ (UInt64(pass) &* 0xD1B5_4A32_D192_ED03))
        var o = (0..<UInt32(offsets.count)).map { $0 }
        if o.count > 1 {
            for i in stride(from: o.count - 1, to: 0, by: -1) {
                let j = Int(rng.below(UInt64(i + 1)))
                o.swapAt(i, j)
            }
        }
        order = o
        orderPass = pass
    }

    /// Calls `body(label, tokens, tokenCount)` for record `index` (in file order).
    func withRecord<R>(_ index: Int, _ body: (String, UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try shard.withRecord(at: offsets[index]) { li, _, tokens in try body(shard.header.labels[li], tokens) }
    }
}

final class DataFeed {
    enum Mode: String { case new, replay, passes }

    let dir: String
    let seed: UInt64
    let replay: Double
    let maxPasses: Int
    let log: Logger
    /// Progress of every shard opened so far that is still in shards/, sorted by name.
    private(set) var cursor: DataCursor
    /// Names of the *.pps files in shards/ at the last scan, sorted.
    private(set) var pool: [String] = []
    /// Shards that could not be read; skipped until the process restarts.
    private var bad: Set<String> = []
    /// Shards never to train on (the run's suspect list); kept out of the pool and the cursor.
    private(set) var excluded: Set<String> = []
    /// shards/ as it was at the last listing (FileWatch).
    private var watch = FileWatch()
    /// Listings of shards/ so far (scans that did not skip it; for tests).
    private(set) var listings = 0
    /// The shards in memory, most recently used last (at most `cacheSize`).
    private var cache: [OpenShard] = []
    private let cacheSize = 2
    /// Shards touched since the caller last took them (`takeTouched`), first-seen order.
    private var touched: [ShardRef] = []
    private var touchedSet: Set<ShardRef> = []

    init(dir: String, cursor: DataCursor, seed: UInt64, replay: Double, maxPasses: Int, excluded: Set<String> = [], log: Logger) {
        self.dir = dir; self.seed = seed; self.replay = replay; self.maxPasses = maxPasses; self.log = log
        self.excluded = excluded
        var c = cursor
        c.shards.sort { $0.shard.name < $1.shard.name }
        self.cursor = c
    }

    /// Never trains on `name` again: out of the pool, the cursor and memory at once.
    func exclude(_ name: String) {
        excluded.insert(name)
        newIdx = 0; replayCache = nil; passIdx = 0
        pool.removeAll { $0 == name }
        cursor.shards.removeAll { $0.shard.name == name }
        cache.removeAll { $0.name == name }
    }

    /// Trains on `name` again (a suspect mark withdrawn); it rejoins the pool at the next scan.
    func include(_ name: String) {
        excluded.remove(name)
        watch.forget()
    }

    /// Goes back to an earlier cursor (the state a checkpoint recorded), then re-lists
    /// shards/ so that shards deleted or excluded since leave it again.
    func reset(to c: DataCursor) throws {
        var c = c
        c.shards.sort { $0.shard.name < $1.shard.name }
        cursor = c
        lastIndex = 0
        // An open shard is only ever used through its cursor entry, which `open` creates
        // when it reads the file: start over with none in memory.
        cache.removeAll()
        _ = takeTouched()
        try scan(force: true)
    }

    // MARK: scanning

    /// Re-lists shards/. Shards whose file is gone leave the pool and the cursor; new names
    /// join the pool (they are read, hashed and checked when first needed).
    /// Returns the names added and removed. Without `force`, a folder whose inode and times
    /// are those of the last listing (FileStamp) is not listed again: nothing was added or
    /// removed. Listing a folder of a few thousand shards and diffing it against the pool,
    /// once a minute and at every SIGHUP, was a tenth of a trickle-fed trainer's CPU.
    @discardableResult
    func scan(force: Bool = false) throws -> (added: [String], removed: [String]) {
        let look = watch.look(dir)
        if !force && look.unchanged { return ([], []) }
        watch.read(look)   // the listing below comes after the look
        listings += 1
        let names = try FileIO.list(dir).filter { $0.hasSuffix("." + Shard.fileExtension) }
        let now = Set(names), before = Set(pool)
        let added = names.filter { !before.contains($0) && !bad.contains($0) && !excluded.contains($0) }
        var removed = pool.filter { !now.contains($0) }
        // Cursor entries can outlive the pool on a resume (the shard was deleted meanwhile).
        for p in cursor.shards where !now.contains(p.shard.name) && !removed.contains(p.shard.name) {
            removed.append(p.shard.name)
        }
        for p in cursor.shards where excluded.contains(p.shard.name) && now.contains(p.shard.name) {
            log.notice("suspect shard left the cursor", metadata: ["shard": "\(p.shard.name)"])
        }
        cursor.shards.removeAll { !now.contains($0.shard.name) || excluded.contains($0.shard.name) }
        cache.removeAll { !now.contains($0.name) || excluded.contains($0.name) }
        bad = bad.intersection(now)
        pool = names.filter { !bad.contains($0) && !excluded.contains($0) }
        for n in removed { log.info("shard left the pool", metadata: ["shard": "\(n)"]) }
        newIdx = 0; replayCache = nil
        return (added, removed)
    }

    private func progressIndex(_ name: String) -> Int? {
        // Hot path: the same shard as last time.
        if lastIndex < cursor.shards.count && cursor.shards[lastIndex].shard.name == name { return lastIndex }
        // cursor.shards is sorted by name: binary search.
        var lo = 0, hi = cursor.shards.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if cursor.shards[mid].shard.name < name { lo = mid + 1 } else { hi = mid }
        }
        if lo < cursor.shards.count && cursor.shards[lo].shard.name == name { lastIndex = lo; return lo }
        return nil
    }
    private var lastIndex = 0

    /// The first shard in name order that has not been read through once. `newIdx` only
    /// moves forward between scans (everything before it has been read once).
    private func firstNew() -> String? {
        while newIdx < pool.count {
            let n = pool[newIdx]
            guard let i = progressIndex(n) else { return n }
            if cursor.shards[i].passes == 0 { return n }
            newIdx += 1
        }
        return nil
    }
    private var newIdx = 0

    /// True when some shard in the pool has not been read through once.
    var hasNew: Bool { firstNew() != nil }

    /// Shards that may serve as replay sources: read at least once, not empty, and (for idle
    /// replay) with fewer than maxPasses passes.
    private func replayCandidates(idle: Bool) -> [Int] {
        cursor.shards.indices.filter { isReplaySource(cursor.shards[$0], idle: idle) }
    }
    private func isReplaySource(_ p: ShardProgress, idle: Bool) -> Bool {
        p.passes >= 1 && p.examples > 0 && (!idle || p.passes < maxPasses)
    }

    /// True when idle replay has work: an old shard with fewer than maxPasses passes (asked
    /// at every turn of the loop: no list built).
    var canReplay: Bool { cursor.shards.contains { isReplaySource($0, idle: true) } }

    /// Shards in the pool not yet read through once: none before `newIdx` (firstNew moves it
    /// past the shards read), so a status refresh does not look up every shard of the pool.
    var pendingShards: Int {
        guard firstNew() != nil else { return 0 }
        return pool[newIdx...].reduce(0) { acc, n in
            guard let i = progressIndex(n) else { return acc + 1 }
            return acc + (cursor.shards[i].passes == 0 ? 1 : 0)
        }
    }

    var newestShard: String? { pool.last }

    /// Shards decompressed in memory right now (never more than 2).
    var openShards: Int { cache.count }

    // MARK: opening shards

    /// The open shard `name`, reading, hashing and checking it if it is not in memory.
    /// Returns nil (and drops it from the pool) when it cannot be read.
    private func open(_ name: String) -> OpenShard? {
        if let s = cache.last, s.name == name { return s }
        if let k = cache.firstIndex(where: { $0.name == name }) {
            let s = cache.remove(at: k)
            cache.append(s)
            return s
        }
        let path = dir + "/" + name
        let s: OpenShard
        do {
            let bytes = try FileIO.readAll(path)
            let sha = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            s = OpenShard(name: name, sha256: sha, shard: try Shard(path: path, fileBytes: bytes, stats: false))
        } catch let e as PPError {
            if case .ioError = e.status, !FileIO.exists(path) {
                log.info("shard vanished before it was read", metadata: ["shard": "\(name)"])
            } else {
                log.error("skipping unreadable shard: \(e.message)")
            }
            dropFromPool(name)
            return nil
        } catch {
            log.error("skipping unreadable shard: \(path): \(error)")
            dropFromPool(name)
            return nil
        }
        if let i = progressIndex(name) {
            if cursor.shards[i].shard.sha256 != s.sha256 || cursor.shards[i].examples != s.examples {
                // Shards are immutable; a changed file under the same name is new data.
                log.warning("shard changed since it was last read; starting it over", metadata: ["shard": "\(name)"])
                cursor.shards[i] = ShardProgress(shard: ShardRef(name: name, sha256: s.sha256), examples: s.examples, passes: 0, position: 0)
            }
        } else {
            let p = ShardProgress(shard: ShardRef(name: name, sha256: s.sha256), examples: s.examples, passes: 0, position: 0)
            let at = cursor.shards.firstIndex { $0.shard.name > name } ?? cursor.shards.count
            cursor.shards.insert(p, at: at)
        }
        cache.append(s)
        if cache.count > cacheSize { cache.removeFirst() }
        return s
    }

    private func dropFromPool(_ name: String) {
        bad.insert(name)
        newIdx = 0; replayCache = nil; passIdx = 0
        pool.removeAll { $0 == name }
        cursor.shards.removeAll { $0.shard.name == name }
        cache.removeAll { $0.name == name }
    }

    // MARK: batches

    /// The replay source. The rule is a pure function of the cursor (so a resume picks the
    /// same): the first candidate in mid-pass, else one drawn by the RNG weighted by example
    /// count. `replayCache` remembers the answer while it provably still holds (same mode,
    /// no scan since, the shard still in mid-pass), so the rule is not re-evaluated for
    /// every example. nil when there is no candidate.
    private func replaySource(idle: Bool) -> String? {
        if let c = replayCache, c.idle == idle, let i = progressIndex(c.name), cursor.shards[i].position > 0 {
            return c.name
        }
        replayCache = nil
        let cands = replayCandidates(idle: idle)
        if cands.isEmpty { return nil }
        if let i = cands.first(where: { cursor.shards[$0].position > 0 }) {
            replayCache = (cursor.shards[i].shard.name, idle)
            return cursor.shards[i].shard.name
        }
        let total = cands.reduce(0) { $0 + cursor.shards[$1].examples }
        var rng = SplitMix64(state: cursor.rngState)
        var r = Int(rng.below(UInt64(total)))
        cursor.rngState = rng.state
        for i in cands {
            r -= cursor.shards[i].examples
            if r < 0 { return cursor.shards[i].shard.name }
        }
        return cursor.shards[cands.last!].shard.name
    }
    private var replayCache: (name: String, idle: Bool)?

    /// What the last `fill` took from new data: the one new shard, how many of its examples,
    /// and whether its first pass ended in this batch.
    struct FillInfo {
        var newShard: ShardRef?
        var newExamples = 0
        /// Where the new shard's examples sit in the batch (the guard scores them).
        var newIndices: [Int] = []
        var completed = false
    }
    private(set) var lastFill = FillInfo()

    /// Fills `batch` with up to `size` examples in `mode`:
    /// - `.new`: new data with the replay share; stops early when new data runs out.
    /// - `.replay`: old shards below maxPasses only; stops early when none is left.
    /// - `.passes`: the plan made by `planPasses`; stops early when it is complete.
    /// Returns the number of examples appended.
    /// `slotBase` numbers the examples globally (the caller passes its step count, which a
    /// checkpoint restores), so the replay share is exact over any window, whatever the
    /// batch size, and a resume spreads it exactly as before.
    func fill(_ batch: inout Batch, size: Int, mode: Mode, slotBase: Int) -> Int {
        var n = 0
        lastFill = FillInfo()
        while n < size {
            let before = batch.count
            switch mode {
            case .new:
                // Slot k is a replay slot when floor((k+1)r) > floor(kr): an even spread.
                let k = Double(slotBase + n)
                let isReplay = replay > 0 && ((k + 1) * replay).rounded(.down) > (k * replay).rounded(.down)
                if isReplay, let old = replaySource(idle: false) {
                    take(old, into: &batch)
                } else {
                    guard let name = firstNew() else { return n }
                    // One new shard per batch: its loss is that shard's.
                    if let cur = lastFill.newShard, cur.name != name { return n }
                    let had = batch.count
                    take(name, into: &batch)
                    if batch.count > had, let i = progressIndex(name) {
                        lastFill.newShard = cursor.shards[i].shard
                        lastFill.newExamples += 1
                        lastFill.newIndices.append(had)
                        lastFill.completed = cursor.shards[i].passes >= 1
                    }
                }
            case .replay:
                guard let old = replaySource(idle: true) else { return n }
                take(old, into: &batch)
            case .passes:
                guard let name = nextInPlan() else { return n }
                take(name, into: &batch)
            }
            if batch.count > before { n += 1 }
        }
        return n
    }

    /// Appends the next example of shard `name` (by its cursor position) to `batch` and
    /// advances the cursor. Appends nothing when the shard is empty or cannot be read (it
    /// is then dropped from the pool).
    private func take(_ name: String, into batch: inout Batch) {
        guard let s = open(name), let i = progressIndex(name) else { return }
        var p = cursor.shards[i]
        if p.examples == 0 {
            p.passes += 1; p.position = 0
            cursor.shards[i] = p
            return
        }
        s.ensureOrder(pass: p.passes, seed: seed)
        let rec = Int(s.order[p.position])
        s.withRecord(rec) { label, tokens in batch.append(label: label, tokens: tokens) }
        p.position += 1
        if p.position == p.examples { p.passes += 1; p.position = 0 }
        cursor.shards[i] = p
        if name != lastTouched {
            lastTouched = name
            if touchedSet.insert(p.shard).inserted { touched.append(p.shard) }
        }
    }
    private var lastTouched = ""

    // MARK: --passes

    /// Prepares `--once --passes N`: N rounds over every shard in the pool, in name order; a
    /// partial pass left by earlier training is abandoned (that shard starts a fresh one).
    func planPasses(_ passes: Int) {
        passStart = [:]
        for name in pool {
            if let k = progressIndex(name) {
                if cursor.shards[k].position > 0 { cursor.shards[k].passes += 1; cursor.shards[k].position = 0 }
                passStart[name] = cursor.shards[k].passes
            } else {
                passStart[name] = 0
            }
        }
        passRounds = passes; passRound = 1; passIdx = 0
    }
    private var passStart: [String: Int] = [:]
    private var passRounds = 0, passRound = 1, passIdx = 0

    /// The shard to read next under the --passes plan, nil when the plan is complete.
    private func nextInPlan() -> String? {
        while passRound <= passRounds {
            while passIdx < pool.count {
                let name = pool[passIdx]
                if let start = passStart[name] {
                    let done = progressIndex(name).map { cursor.shards[$0].passes } ?? 0
                    if done < start + passRound { return name }
                }
                passIdx += 1
            }
            passRound += 1; passIdx = 0
        }
        return nil
    }

    /// The shards touched since the last call, in first-seen order (for the lineage).
    func takeTouched() -> [ShardRef] {
        let t = touched
        touched = []; touchedSet = []; lastTouched = ""
        return t
    }
}
