// Layer 3 of the spoiled-data defence (issue 7): pp-select never deploys a checkpoint whose
// full lineage (Shared Lineage.of: meta.lineage along the meta.parent chain, read from the
// checkpoints' heads only) contains a poisoned shard: one that is quarantined
// (quarantine/NAME.reason.json) or suspect in any run (runs/RUN/suspects.json), as
// Shared Poison.shards lists them. This file judges one checkpoint; what to do about the
// verdict (refuse a candidate, roll the deployed model back) is Selector's business.
//
// An incomplete lineage (a parent file is gone, e.g. deleted by retention) hides the shards
// the missing ancestors trained on. Such a checkpoint is still accepted when no poisoned
// shard can be among them: every shard the missing part trained on was ingested before the
// missing parent was written (its name stamp; else the oldest checkpoint still in the chain,
// which is younger), so a poisoned shard ingested after that time (`ingested_at` in its
// header) cannot be there. A poisoned shard ingested before it, or whose header cannot be
// read, makes the checkpoint refused: "unknown" is treated as poisoned (docs/formats.md,
// "Never deploy poison"). policy.json's select.incomplete_lineage "refuse" drops the time
// bound: then any poisoned shard outside the known part refuses an incomplete lineage.

import Foundation
import Shared
import TextModel

/// What pp-select knows about one checkpoint's data.
struct LineageVerdict {
    /// The checkpoint as given (absolute or root-joined path).
    var path: String
    /// Every known shard of the full lineage, oldest ancestor first.
    var shards: [ShardRef]
    var complete: Bool
    var missingParent: String?
    /// Poisoned shards found in the known lineage, with why.
    var poisoned: [(shard: String, why: String)]
    /// Poisoned shards that could hide in the missing part of an incomplete lineage.
    var unresolved: [(shard: String, why: String)]

    var clean: Bool { poisoned.isEmpty && unresolved.isEmpty }

    /// One line for selections.jsonl and stderr; empty when clean.
    var reason: String {
        var parts: [String] = []
        if !poisoned.isEmpty {
            parts.append("lineage contains " + poisoned.map { "\($0.shard) (\($0.why))" }.joined(separator: ", "))
        }
        if !unresolved.isEmpty {
            parts.append("lineage incomplete (parent \(missingParent ?? "?") is missing) and may contain "
                         + unresolved.map { "\($0.shard) (\($0.why))" }.joined(separator: ", "))
        }
        return parts.joined(separator: "; ")
    }

    /// The poisoned shards as JSON-ready objects (selections.jsonl `poisoned`).
    var records: [PoisonedShard] {
        poisoned.map { PoisonedShard(shard: $0.shard, why: $0.why, certain: true) }
            + unresolved.map { PoisonedShard(shard: $0.shard, why: $0.why, certain: false) }
    }
}

struct PoisonGuard {
    let root: Root
    /// Shard name -> why (Poison.shards), read once per pp-select run.
    let poison: [String: String]
    /// policy.json select.incomplete_lineage == "refuse": no time bound, an incomplete
    /// lineage is refused whenever a poisoned shard is outside its known part.
    var refuseIncomplete = false
    /// Verdicts already reached in this run, by resolved path (the deployed checkpoint is
    /// judged by guardDeployed and again for the metrics; rollback targets are candidates too).
    private let cache: VerdictCache

    /// `links`: the root's link index (pp-select's runs share one, LinkIndex.shared); nil
    /// reads every link from its file.
    init(root: Root, refuseIncomplete: Bool = false, links: LinkIndex? = nil) throws {
        self.root = root
        self.poison = try Poison.shards(root: root)
        self.refuseIncomplete = refuseIncomplete
        self.cache = VerdictCache(index: links)
    }

    /// Judges the checkpoint at `path`. Throws (PPError .corrupt / .noInput naming the file)
    /// when a checkpoint of the chain cannot be read.
    func check(_ path: String) throws -> LineageVerdict {
        let key = FileIO.realPath(path) ?? path
        if let v = cache.verdicts[key] { return v }
        let v = try judge(path)
        cache.verdicts[key] = v
        return v
    }

    private func judge(_ path: String) throws -> LineageVerdict {
        let lin = try Lineage.of(checkpoint: path, root: root, memo: cache.links)
        var v = LineageVerdict(path: path, shards: lin.shards, complete: lin.complete, missingParent: lin.missingParent,
                               poisoned: Poison.find(in: lin, poison: poison).map { ($0.shard, $0.why) }, unresolved: [])
        if lin.complete || poison.isEmpty { return v }
        let known = Set(lin.shards.map(\.name))
        let outside = poison.filter { !known.contains($0.key) }.sorted { $0.key < $1.key }
        if outside.isEmpty { return v }
        // Everything the missing ancestors trained on was ingested before this time.
        var bound: Double? = lin.missingParent.flatMap { CheckpointName.time(of: $0) }
        if refuseIncomplete {
            v.unresolved = outside.map { ($0.key, $0.value) }
            return v
        }
        if bound == nil, let oldest = lin.chain.last,
           let t = Clock.parseISO(try cache.links.link(oldest).createdAt) {
            bound = Double(t)
        }
        for (name, why) in outside {
            // Ingested after the missing part was written: it cannot be in it.
            if let b = bound, let t = ingestedAt(shard: name), t > b { continue }
            v.unresolved.append((name, why))
        }
        return v
    }

    /// When pp-ingest wrote shard `name` (its header's ingested_at), looked up in shards/ and
    /// quarantine/; nil when neither holds a readable one.
    func ingestedAt(shard name: String) -> Double? {
        for dir in [root.shards, root.quarantine] where FileIO.exists(dir + "/" + name) {
            if let h = try? ShardHeader.read(path: dir + "/" + name), let t = Clock.parseISO(h.ingestedAt) {
                return Double(t)
            }
        }
        return nil
    }
}

/// Memory for PoisonGuard (a class, so the guard stays a value that is cheap to copy).
final class VerdictCache {
    var verdicts: [String: LineageVerdict] = [:]
    /// The heads read by this run's walks: a candidate and the deployed model share most
    /// of their chain.
    let links: Lineage.Memo
    init(index: LinkIndex?) { links = Lineage.Memo(index: index) }
}
