// pp-ingest's memory of what it accepted: one small stats sidecar per accepted input in
// ROOT/stats/ (docs/formats.md, "stats/"), written with FileIO.publish, and the rolling
// reference built from the newest of them. Reading the reference costs a few small files
// per run, never the shards themselves.
//
//   stats/<stamp>-<sha16>.json     the input's statistics (label counts, length histogram,
//                                  the measured values and check results)
//   stats/<stamp>-<sha16>.hashes   the bottom-k sample of its example hashes (u64 LE, sorted)
//   stats/labels.json              every label ever accepted, with counts (a cache: rebuilt
//                                  from the sidecars when missing)
//   stats/counters.json            cumulative counts for metrics/ingest.prom
//
// The .hashes file is published before the .json (the .json is the commit point: a .hashes
// without its .json is ignored). `pp-ingest quarantine` moves an input's sidecars to
// quarantine/stats/, so quarantined data leaves the reference; `release` moves them back.
// Not here: what is measured (BatchStats.swift), the verdicts (Checks.swift).

import Foundation
import Shared
import TextModel

struct StatsSidecar: Codable {
    var schema = 1
    /// `<stamp>-<sha16>`: the shared prefix of the input's shard names.
    var name: String
    var sourceName: String
    var sourceSHA256: String
    var ingestedAt: String
    /// "accepted", or "released" when a person re-admitted it (`pp-ingest release`).
    var status: String
    var examples: Int
    var tokens: Int
    var labelCounts: [String: Int]
    var lengthHist: [Int]
    var hashCount: Int
    /// Hex; every example hash <= this is in the .hashes file ("ffffffffffffffff" = all).
    var hashLimit: String
    /// The measured values (docs/formats.md lists the keys).
    var stats: [String: Double]
    var checks: [CheckOutcome]
    var reference: ReferenceWindow

    enum CodingKeys: String, CodingKey {
        case schema, name, status, examples, tokens, stats, checks, reference
        case sourceName = "source_name", sourceSHA256 = "source_sha256", ingestedAt = "ingested_at"
        case labelCounts = "label_counts", lengthHist = "length_hist", hashCount = "hash_count", hashLimit = "hash_limit"
    }
}

/// Which accepted inputs a batch was compared with.
struct ReferenceWindow: Codable, Equatable {
    var inputs: Int
    var examples: Int
    var first: String?
    var last: String?
    var duplicateInputs: Int

    enum CodingKeys: String, CodingKey {
        case inputs, examples, first, last
        case duplicateInputs = "duplicate_inputs"
    }
}

final class Reference {
    let dir: String
    let policy: IngestPolicy
    /// The newest `referenceInputs` sidecars, oldest first.
    private(set) var recent: [StatsSidecar] = []
    /// The newest `duplicateInputs` hash samples, oldest first.
    private(set) var hashSets: [(name: String, values: [UInt64], limit: UInt64)] = []
    /// Every label ever accepted, with its example count.
    private(set) var labelsEver: [String: Int] = [:]
    /// The sidecar names found at load, sorted, and the sidecars older than `recent` read so
    /// far (newest first): a trickle's window reaches back through them (`window(minExamples:)`).
    private var names: [String] = []
    private var older: [StatsSidecar] = []
    /// The index in `names` of the next older sidecar to read (-1: none left).
    private var olderNext = -1
    /// Hash samples read beyond `hashSets` for a trickle's duplicate check, by sidecar name.
    private var olderHashes: [String: (name: String, values: [UInt64], limit: UInt64)] = [:]

    init(root: Root, policy: IngestPolicy) throws {
        self.dir = Reference.dir(root)
        self.policy = policy
        try FileIO.makeDirectories(dir)
        let names = try FileIO.list(dir).filter { $0.hasSuffix(".json") && $0 != "labels.json" && $0 != "counters.json" }.sorted()
        let keep = max(policy.referenceInputs, policy.duplicateInputs)
        for name in names.suffix(keep) {
            let base = String(name.dropLast(5))
            let sidecar: StatsSidecar
            do { sidecar = try Reference.read(dir + "/" + name) } catch {
                Log.make(Ingester.tool).warning("\(dir)/\(name): unreadable stats sidecar, left out of the reference (\(error))")
                continue
            }
            recent.append(sidecar)
            if let h = try? Reference.readHashes(dir + "/" + base + ".hashes") {
                hashSets.append((base, h, UInt64(sidecar.hashLimit, radix: 16) ?? 0))
            }
        }
        trim()
        self.names = names
        // Reaching back continues below the oldest sidecar read here (trim moved those beyond
        // `recent` into `older`).
        if let oldest = older.last ?? recent.first, let i = names.firstIndex(of: oldest.name + ".json") { olderNext = i - 1 }
        else { olderNext = names.count - 1 }
        let labelsPath = dir + "/labels.json"
        if let bytes = try? FileIO.readAll(labelsPath), let l = try? JSONDecoder().decode(LabelsFile.self, from: Data(bytes)) {
            labelsEver = l.labels
        } else {
            // Rebuild from every sidecar (first run with statistics, or a lost cache).
            for name in names where !recent.contains(where: { $0.name + ".json" == name }) {
                if let s = try? Reference.read(dir + "/" + name) { for (l, c) in s.labelCounts { labelsEver[l, default: 0] += c } }
            }
            for s in recent { for (l, c) in s.labelCounts { labelsEver[l, default: 0] += c } }
        }
    }

    static func dir(_ root: Root) -> String { root.path + "/stats" }

    struct LabelsFile: Codable { var schema = 1; var labels: [String: Int] }

    static func read(_ path: String) throws -> StatsSidecar {
        try JSONDecoder().decode(StatsSidecar.self, from: Data(try FileIO.readAll(path)))
    }

    static func readHashes(_ path: String) throws -> [UInt64] {
        let b = try FileIO.readAll(path)
        guard b.count % 8 == 0 else { throw PPError.corrupt(path, "size \(b.count) is not a multiple of 8") }
        return b.withUnsafeBytes { p in (0..<(b.count / 8)).map { UInt64(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) } }
    }

    private func trim() {
        if recent.count > policy.referenceInputs {
            let out = recent.prefix(recent.count - policy.referenceInputs)
            older.insert(contentsOf: out.reversed(), at: 0)
            recent.removeFirst(out.count)
        }
        if hashSets.count > policy.duplicateInputs { hashSets.removeFirst(hashSets.count - policy.duplicateInputs) }
    }

    var window: ReferenceWindow { Reference.describe(recent, duplicateInputs: hashSets.count) }

    static func describe(_ w: [StatsSidecar], duplicateInputs: Int) -> ReferenceWindow {
        ReferenceWindow(inputs: w.count, examples: w.reduce(0) { $0 + $1.examples },
                        first: w.first?.name, last: w.last?.name, duplicateInputs: duplicateInputs)
    }

    /// The newest accepted inputs, oldest first: `recent`, reaching further back while they
    /// hold fewer than `minExamples` examples, up to `maxInputs` inputs (a trickle's inputs
    /// hold an example or two each: 26 of them are no reference). Older sidecars are read
    /// from disk only when needed, once.
    func window(minExamples: Int, maxInputs: Int) -> [StatsSidecar] {
        var examples = recent.reduce(0) { $0 + $1.examples }
        var back: [StatsSidecar] = []
        while examples < minExamples && recent.count + back.count < maxInputs, let s = olderSidecar(back.count) {
            back.append(s)
            examples += s.examples
        }
        return back.reversed() + recent
    }

    /// The hash samples of the newest `inputs` accepted inputs, oldest first: `hashSets`,
    /// reaching further back through older sidecars (a trickle's 156 newest inputs are half a
    /// day; a re-sent day must be found too). Read from disk only when needed, once.
    func duplicateSets(inputs: Int) -> [(name: String, values: [UInt64], limit: UInt64)] {
        guard inputs > hashSets.count else { return hashSets }
        let have = Set(hashSets.map(\.name))
        var back: [(name: String, values: [UInt64], limit: UInt64)] = []
        var i = 0
        while hashSets.count + back.count < inputs, let s = olderSidecar(i) {
            i += 1
            if have.contains(s.name) { continue }
            if let h = olderHashes[s.name] { back.append(h); continue }
            guard let values = try? Reference.readHashes(dir + "/" + s.name + ".hashes") else { continue }
            let h = (name: s.name, values: values, limit: UInt64(s.hashLimit, radix: 16) ?? 0)
            olderHashes[s.name] = h
            back.append(h)
        }
        return back.reversed() + hashSets
    }

    /// The i-th sidecar older than `recent` (0: the newest of them), read from disk on first use.
    private func olderSidecar(_ i: Int) -> StatsSidecar? {
        while older.count <= i {
            guard let s = readOlder() else { return nil }
            older.append(s)
        }
        return older[i]
    }

    /// The next older sidecar on disk (unreadable ones skipped with a warning), or nil.
    private func readOlder() -> StatsSidecar? {
        while olderNext >= 0 {
            let name = names[olderNext]
            olderNext -= 1
            do { return try Reference.read(dir + "/" + name) } catch {
                Log.make(Ingester.tool).warning("\(dir)/\(name): unreadable stats sidecar, left out of the reference (\(error))")
            }
        }
        return nil
    }

    /// The median gap in seconds between the arrivals (the stamps of their names: the input
    /// files' mtimes) of the newest `referenceInputs` accepted inputs, or nil with fewer than
    /// 4 of them: how often this stream's inputs come.
    var medianGap: Double? {
        let times = recent.compactMap { s in s.name.split(separator: "-").first.flatMap { Clock.parseStamp($0) } }.sorted()
        guard times.count >= 4 else { return nil }
        return IngestPolicy.median(zip(times.dropFirst(), times).map { $0 - $1 })
    }

    /// Publishes an accepted input's sidecars (hashes first, then the JSON) and adds it to the
    /// in-memory reference, so the next input of this run is compared with it too.
    func add(_ s: StatsSidecar, hashes: [UInt64]) throws {
        var raw = [UInt8](repeating: 0, count: hashes.count * 8)
        raw.withUnsafeMutableBytes { p in for (i, h) in hashes.enumerated() { p.storeBytes(of: h.littleEndian, toByteOffset: i * 8, as: UInt64.self) } }
        try FileIO.publish(raw, to: dir + "/" + s.name + ".hashes")
        try FileIO.publish(Reference.encode(s), to: dir + "/" + s.name + ".json")
        recent.append(s)
        hashSets.append((s.name, hashes, UInt64(s.hashLimit, radix: 16) ?? 0))
        trim()
        for (l, c) in s.labelCounts { labelsEver[l, default: 0] += c }
        try FileIO.publish(Reference.encodeJSON(LabelsFile(labels: labelsEver)), to: dir + "/labels.json")
    }

    static func encode(_ s: StatsSidecar) throws -> String { try encodeJSON(s) }

    static func encodeJSON<T: Encodable>(_ v: T) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(v), as: UTF8.self) + "\n"
    }

    /// The sidecar of the input whose shards start with `prefix`, if any.
    func has(_ prefix: String) -> Bool { FileIO.exists(dir + "/" + prefix + ".json") }
}

/// Cumulative counts over the root's lifetime, for metrics/ingest.prom (Prometheus counters
/// must not reset when a oneshot run ends). Written once per run; a crash loses at most that
/// run's increments.
struct IngestCounters: Codable {
    var schema = 1
    var inputs: [String: Int] = [:]
    var examples = 0
    var bytes = 0
    var checksTripped: [String: Int] = [:]

    enum CodingKeys: String, CodingKey {
        case schema, inputs, examples, bytes
        case checksTripped = "checks_tripped"
    }

    static func path(_ root: Root) -> String { Reference.dir(root) + "/counters.json" }

    static func load(_ root: Root) -> IngestCounters {
        guard let b = try? FileIO.readAll(path(root)), let c = try? JSONDecoder().decode(IngestCounters.self, from: Data(b)) else {
            return IngestCounters()
        }
        return c
    }

    func save(_ root: Root) throws {
        try FileIO.makeDirectories(Reference.dir(root))
        try FileIO.publish(Reference.encodeJSON(self), to: IngestCounters.path(root))
    }
}
