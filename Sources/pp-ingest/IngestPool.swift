// A trickle's small inputs, judged together (docs/formats.md, "Trickles"; issue 14): while the
// stream's inputs come less than pool_max_wait apart, an input of fewer than pool_min_examples
// examples is read and left in inbox/ ("waiting"); the waiting inputs are judged as one batch
// once they hold pool_min_examples examples or the oldest has waited pool_max_wait, and the
// pool's verdict publishes or quarantines every input in it (each with its own shards and
// sidecar). Not here: the checks themselves (Checks.swift), one input's stages (Ingest.swift).

import Shared
import TextModel

extension Ingester.Checked {
    /// The pool's verdict as it applies to one of its inputs: only new content is gated, and
    /// only an input the verdict blames (all of them, unless only the texts' own signatures
    /// tripped: then those holding such texts).
    func forMember(isNew: Bool, blamed: Bool) -> Ingester.Checked {
        Ingester.Checked(isNew: isNew, hashSample: hashSample, model: model, outcomes: outcomes, tripped: tripped, measured: measured,
                window: window, quarantines: quarantines && isNew && blamed, pool: pool)
    }
}

extension Ingester {
    struct PoolInfo {
        /// The inputs' names (inbox/), oldest first, and their examples together.
        let inputs: [String]
        let examples: Int
        /// Why it was judged: "full" (pool_min_examples reached) or "waited" (pool_max_wait).
        let why: String
    }

    /// A judged pool: its verdict, the content each input had when it was judged, and the
    /// inputs a quarantine takes (nil: all).
    struct Pool {
        let checked: Checked
        let sha256: [String: String]
        var blamed: Set<String>? = nil
    }

    /// The checks that judge each text by itself (a garbage or mojibake text is damaged
    /// whatever the others hold): when only these trip, a pool quarantines only the inputs
    /// that hold such texts (one real commit message with mojibake stopped 27 clean inputs of
    /// its pool in the git trickle of 2009-2011).
    static let textChecks: Set<String> = ["garbage", "mojibake"]

    /// Is this a trickle's small input, to be held in inbox/ and judged with the others
    /// (docs/formats.md, "Trickles")? Only new content found by the inbox scan, while the
    /// checks gate; never in `release` or for named files.
    func holds(_ input: Input, _ r: Read) -> Bool {
        trickle && input.scanned && input.inInbox && cfg.checks && policy.quarantine && !cfg.releasing
            && r.summary.examples < policy.poolMinExamples && isNew(r)
    }

    /// The held small inputs of a trickle: judged together once they hold pool_min_examples
    /// examples, or once the oldest has waited pool_max_wait seconds; until then each stays
    /// in inbox/ with a "waiting" line. The pool's checks decide for every input in it: all
    /// are published, or all quarantined.
    func judgePool() throws {
        guard !held.isEmpty else { return }
        let members = held.sorted { ($0.input.time, $0.input.name) < ($1.input.time, $1.input.name) }
        held = []
        let examples = members.reduce(0) { $0 + $1.read.summary.examples }
        let due = members[0].input.time + policy.poolMaxWait
        if examples < policy.poolMinExamples && Clock.now() < due {
            for m in members {
                var j = JSONOut()
                j.add("file", m.input.display)
                j.add("status", "waiting")
                j.add("examples", m.read.summary.examples)
                j.add("pool_inputs", members.count)
                j.add("pool_examples", examples)
                j.add("judged_by", Clock.iso(due))
                j.add("reason", "a trickle's small input: held in inbox/ until its pool holds \(policy.poolMinExamples) examples (pool_min_examples; \(examples) now) or its oldest input has waited \(Int(policy.poolMaxWait)) s (pool_max_wait)")
                j.emit()
            }
            log.info("trickle: small inputs held for their pool", metadata: ["inputs": "\(members.count)", "examples": "\(examples)",
                     "judged_by": "\(Clock.iso(due))"])
            runStatuses["waiting", default: 0] += members.count
            return
        }
        let pooled = BatchStats(sampleSize: canarySample)
        for m in members { pooled.absorb(m.read.stats) }
        var c = check(stats: pooled, isNew: true)
        c.pool = PoolInfo(inputs: members.map(\.input.name), examples: examples, why: examples >= policy.poolMinExamples ? "full" : "waited")
        c.measured["pool_inputs"] = Double(members.count)
        c.measured["pool_examples"] = Double(examples)
        log.info("trickle: pool judged", metadata: ["inputs": "\(members.count)", "examples": "\(examples)",
                 "verdict": "\(c.quarantines ? "quarantined (" + c.tripped.map(\.check).joined(separator: ",") + ")" : "accepted")"])
        var pool = Pool(checked: c, sha256: Dictionary(members.map { ($0.input.path, $0.read.summary.sha256) }) { a, _ in a })
        let tripped = Set(c.tripped.map(\.check))
        if !tripped.isEmpty && tripped.isSubset(of: Ingester.textChecks) {
            pool.blamed = Set(members.filter { m in
                (tripped.contains("garbage") && m.read.stats.junkExamples > 0) || (tripped.contains("mojibake") && m.read.stats.mojibakeExamples > 0)
            }.map(\.input.path))
        }
        for m in members { try process(m.input, pool: pool) }
    }
}
