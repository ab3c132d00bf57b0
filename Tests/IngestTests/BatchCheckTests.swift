// pp-ingest's batch statistics without a model: the numbers are always recorded (shard
// header, stats sidecar, JSON line, metrics/ingest.prom), policy.json's "ingest" section is
// validated, and `pp-ingest quarantine SHARD` / `release SHARD` move a shard out and back
// with the reason file as the single source of truth. Plus unit tests of the measuring code.

import Foundation
import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import pp_ingest

final class BatchCheckTests: IngestTestCase {
    /// Drops `weeks` into inbox/ a week apart (the last one an hour ago) and ingests them.
    func ingestWeeks(_ weeks: [String], args: [String] = []) throws -> TestSupport.Result {
        for (i, w) in weeks.enumerated() {
            try drop(w + ".jsonl.zst", try demo(w), age: 3600 + Double(weeks.count - 1 - i) * 604_800)
        }
        return try ingest(["--settle", "0"] + args)
    }

    func testStatisticsAreRecordedEverywhere() throws {
        let r = try ingestWeeks(Array(Self.demoWeeks.prefix(12)))
        XCTAssertEqual(r.status, 0, r.stderr)
        let reps = reports(r)
        XCTAssertEqual(reps.map { $0["status"] as? String }, Array(repeating: "accepted", count: 12))
        // The first input has no reference: those checks say why.
        let first = reps[0]["checks"] as! [String: [String: Any]]
        XCTAssertNotNil(first["label_linf"]?["skipped"] as? String)
        XCTAssertEqual(first["canary"]?["skipped"] as? String, "no deployed model")
        XCTAssertNotNil(first["garbage"]?["value"])
        // Later ones have values and the reference window.
        let last = reps[11]
        let checks = last["checks"] as! [String: [String: Any]]
        for c in ["label_linf", "label_js", "new_labels", "length_js", "duplicates", "garbage", "mojibake"] {
            XCTAssertNotNil(checks[c]?["value"], c)
            XCTAssertNotNil(checks[c]?["threshold"], c)
        }
        let window = last["reference"] as! [String: Any]
        XCTAssertEqual(window["inputs"] as? Int, 11)
        let stats = last["stats"] as! [String: Double]
        XCTAssertEqual(stats["examples"], Double(last["examples"] as! Int))
        XCTAssertNotNil(stats["label_linf"])

        // Shard header and sidecar carry the same numbers.
        let shard = (last["shards"] as! [String]).last!
        let h = try Shard(path: shard).header
        XCTAssertEqual(h.stats?["label_linf"], stats["label_linf"])
        XCTAssertEqual(h.stats?["holdout_fraction"], 0.05)
        let prefix = String(FileIO.split(shard).name.dropLast(8))
        let sidecar = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/stats/\(prefix).json"))) as! [String: Any]
        XCTAssertEqual((sidecar["stats"] as! [String: Double])["label_linf"], stats["label_linf"])
        XCTAssertEqual((sidecar["label_counts"] as! [String: Int]).values.reduce(0, +), last["examples"] as? Int)
        XCTAssertEqual(try FileIO.readAll(root + "/stats/\(prefix).hashes").count, 8 * (last["examples"] as! Int))

        // Metrics: counters over the root's life, the last batch's values.
        let prom = String(decoding: try FileIO.readAll(root + "/metrics/ingest.prom"), as: UTF8.self)
        XCTAssertTrue(prom.contains("perpetuum_ingest_inputs_total{status=\"accepted\"} 12\n"), prom)
        XCTAssertTrue(prom.contains("perpetuum_ingest_last_check_value{check=\"label_linf\"} "), prom)
        XCTAssertTrue(prom.contains("# TYPE perpetuum_ingest_inputs_total counter\n"))
        let samples = try PromTextParser.parse(prom)   // strict text-format reader
        XCTAssertEqual(samples.first { $0.name == "perpetuum_ingest_shards" }?.value, Double(names("shards").count))
        // A second run adds to the counters instead of resetting them.
        XCTAssertEqual(try ingestWeeks(["2023-W13"]).status, 0)
        let prom2 = String(decoding: try FileIO.readAll(root + "/metrics/ingest.prom"), as: UTF8.self)
        XCTAssertTrue(prom2.contains("perpetuum_ingest_inputs_total{status=\"accepted\"} 13\n"), prom2)
    }

    func testAgainstTheReferenceAnOldWeekReorderedIsQuarantinedUnlessChecksAreOff() throws {
        XCTAssertEqual(try ingestWeeks(Array(Self.demoWeeks.prefix(10))).status, 0)
        // 2023-W03 with its lines in reverse order: other bytes, the same examples.
        let lines = try InputParser.load(path: TestSupport.repoRoot + "/demo/data/2023-W03.jsonl.zst").summary.examples
        XCTAssertGreaterThan(lines, 3)
        let text = try zstdDecompressed("2023-W03")
        let reversed = text.split(separator: "\n").reversed().joined(separator: "\n") + "\n"
        let file = root + "/resent.jsonl"
        try FileIO.publish(reversed, to: file)
        let dry = try ingest(["--dry-run", file])
        XCTAssertEqual(reports(dry).first?["status"] as? String, "quarantined")
        XCTAssertEqual(reports(dry).first?["dry_run"] as? Bool, true)
        let r = try ingest([file])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(reports(r).first?["tripped"] as? [String], ["duplicates"])
        let off = try ingest(["--no-checks", file])
        XCTAssertEqual(off.status, 0, off.stderr)
        XCTAssertEqual(reports(off).first?["status"] as? String, "accepted")
        XCTAssertEqual(reports(off).first?["tripped"] as? [String], ["duplicates"], "measured and recorded even when not gating")
    }

    func zstdDecompressed(_ week: String) throws -> String {
        String(decoding: try Zstd.decompress(try demo(week)), as: UTF8.self)
    }

    func testPolicyFileIsValidatedAndApplied() throws {
        try FileIO.publish(#"{"train": {"whatever": 1}, "ingest": {"checks": {"duplicates": {"maxx": 0.5}}}}"#, to: root + "/policy.json")
        try drop("a.txt", Array("__label__x hello world\n".utf8))
        var r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 65)
        XCTAssertTrue(r.stderr.contains("policy.json: unknown key ingest.checks.duplicates.maxx"), r.stderr)
        XCTAssertEqual(names("inbox"), ["a.txt"], "nothing processed under a broken policy")

        try FileIO.publish(#"{"ingest": {"reference_inputs": "many"}}"#, to: root + "/policy.json")
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 65)
        XCTAssertTrue(r.stderr.contains("ingest.reference_inputs: expected a number"), r.stderr)

        // A check switched off (null) and one made strict: garbage trips on one example.
        try FileIO.publish(#"{"select": {}, "ingest": {"checks": {"mojibake": null, "garbage": {"max": 0, "width": 0, "min_count": 1}}}}"#,
                           to: root + "/policy.json")
        try FileIO.removeDurably(root + "/inbox/a.txt")
        try drop("b.jsonl", Array(#"{"text": "caf\u00c3\u00a9 bad \u0001 control", "label": "x"}"#.utf8) + [0x0A])
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let rep = reports(r)[0]
        XCTAssertEqual(rep["tripped"] as? [String], ["garbage"])
        let mojibake = (rep["checks"] as! [String: [String: Any]])["mojibake"]!
        XCTAssertEqual(mojibake["skipped"] as? String, "off in policy")
        XCTAssertEqual((rep["stats"] as! [String: Double])["mojibake_share"], 1)
        let p = try IngestPolicy.parse(Array(#"{"ingest": {"quarantine": false}}"#.utf8), path: "p")
        XCTAssertFalse(p.quarantine)
        XCTAssertEqual(p.checks.count, IngestPolicy.checkNames.count)
    }

    func testManualQuarantineAndReleaseOfAShard() throws {
        XCTAssertEqual(try ingestWeeks(["2023-W01", "2023-W02"], args: ["--holdout", "0.3"]).status, 0)
        let shard = names("shards").last!
        let prefix = String(shard.dropLast(8))
        let holdoutBefore = names("holdout").filter { $0.hasPrefix(prefix) }
        XCTAssertFalse(holdoutBefore.isEmpty)
        var r = try TestSupport.run("pp-ingest", ["quarantine", "--root", root, "--reason", "labels look shuffled", "--by", "bob", "shards/" + shard])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(names("shards").contains(shard))
        XCTAssertTrue(names("quarantine").contains(shard))
        let reason = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/quarantine/\(shard).reason.json"))) as! [String: Any]
        XCTAssertEqual(reason["check"] as? String, "manual")
        XCTAssertEqual(reason["reason"] as? String, "labels look shuffled")
        XCTAssertEqual(reason["by"] as? String, "bob")
        XCTAssertNotNil(reason["at"] as? String)
        XCTAssertEqual(names("quarantine/holdout"), holdoutBefore)
        XCTAssertFalse(FileIO.exists(root + "/stats/\(prefix).json"), "the sidecar leaves the reference")
        XCTAssertTrue(FileIO.exists(root + "/quarantine/stats/\(prefix).json"))
        // Sending the same input again does not bring the data back.
        try drop("again.jsonl.zst", try demo("2023-W02"))
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(reports(r).first?["status"] as? String, "duplicate")
        XCTAssertFalse(names("shards").contains(shard))
        // Unknown shard: 66.
        XCTAssertEqual(try TestSupport.run("pp-ingest", ["quarantine", "--root", root, "--reason", "x", "20990101T000000Z-0123456789abcdef-000.pps"]).status, 66)

        r = try TestSupport.run("pp-ingest", ["release", "--root", root, "--by", "carol", shard])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(names("shards").contains(shard))
        XCTAssertEqual(names("holdout").filter { $0.hasPrefix(prefix) }, holdoutBefore)
        XCTAssertTrue(FileIO.exists(root + "/stats/\(prefix).json"))
        XCTAssertFalse(FileIO.exists(root + "/quarantine/\(shard).reason.json"))
        let rel = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/quarantine/\(shard).released.json"))) as! [String: Any]
        XCTAssertEqual(rel["released_by"] as? String, "carol")
        XCTAssertEqual((rel["quarantine"] as? [String: Any])?["by"] as? String, "bob")
        XCTAssertEqual(try TestSupport.run("pp-ingest", ["release", "--root", root, "nothing-here.jsonl"]).status, 66)
    }

    // MARK: - Units

    func testGarbageScanner() {
        func scan(_ s: String) -> UInt8 { var s = s; return s.withUTF8 { TextGarbage.scan(UnsafeRawBufferPointer($0)) } }
        XCTAssertEqual(scan("plain text, tabs\tand\nnewlines"), 0)
        XCTAssertEqual(scan("café naïve — “quotes” 日本語 😀"), 0)
        XCTAssertEqual(scan("bell \u{07}"), TextGarbage.control)
        XCTAssertEqual(scan("del \u{7F}"), TextGarbage.control)
        XCTAssertEqual(scan("c1 \u{85}"), TextGarbage.control)
        XCTAssertEqual(scan("bad \u{FFFD} byte"), TextGarbage.replacement)
        let moji = String(decoding: Array("café".utf8).map { UInt8($0) }, as: UTF8.self)
        XCTAssertEqual(moji, "café")
        let latin1 = String("café".utf8.map { Character(Unicode.Scalar($0)) })   // UTF-8 read as Latin-1
        XCTAssertEqual(latin1, "cafÃ©")
        XCTAssertEqual(scan(latin1), TextGarbage.mojibake)
        XCTAssertEqual(scan(String("—".utf8.map { Character(Unicode.Scalar($0)) })) & TextGarbage.mojibake, TextGarbage.mojibake)
    }

    /// Issue 14: a change check beyond its threshold is recorded in "changed" and the batch is
    /// accepted; made hard in policy.json, the same batch is quarantined.
    func testChangeIsRecordedNotQuarantinedUnlessMadeHard() throws {
        try FileIO.publish(#"{"ingest": {"reference_min_examples": 0, "checks": {"label_linf": {"max": 0, "width": 0}}}}"#,
                           to: root + "/policy.json")
        try drop("a.txt", Array("__label__x hello world\n__label__x more words\n".utf8))
        XCTAssertEqual(try ingest(["--settle", "0"]).status, 0)
        try drop("b.txt", Array("__label__y other words\n__label__y and more\n".utf8))
        var r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var rep = reports(r)[0]
        XCTAssertEqual(rep["status"] as? String, "accepted", "\(rep)")
        XCTAssertEqual(rep["tripped"] as? [String], [])
        XCTAssertTrue((rep["changed"] as? [String] ?? []).contains("label_linf"), "\(rep)")
        let linf = (rep["checks"] as! [String: [String: Any]])["label_linf"]!
        XCTAssertEqual(linf["kind"] as? String, "change")
        XCTAssertEqual(linf["tripped"] as? Bool, true)

        try FileIO.publish(#"{"ingest": {"reference_min_examples": 0, "checks": {"label_linf": {"max": 0, "width": 0, "hard": true}}}}"#,
                           to: root + "/policy.json")
        try drop("c.txt", Array("__label__z third words\n__label__z again\n".utf8))
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 1, r.stderr)
        rep = reports(r)[0]
        XCTAssertEqual(rep["status"] as? String, "quarantined", "\(rep)")
        XCTAssertEqual(rep["tripped"] as? [String], ["label_linf"])
    }

    func testKindsAndStreamDerivedThresholds() throws {
        let hard = Set(IngestPolicy.defaultChecks.filter { ($0.value?.hard) == true }.keys)
        XCTAssertEqual(hard, ["duplicates", "garbage", "mojibake", "label_signal", "label_chance", "label_flood", "truncated"])
        let lim = IngestPolicy.Limit(max: 0.3, width: 0, hard: true, madK: 4, cap: 0.6)
        // Too few reference values: the floor.
        XCTAssertEqual(lim.threshold(n: 100, reference: [0.5, 0.5], minInputs: 8).0, 0.3, accuracy: 1e-12)
        // Median 0.2, MAD 0.05: 0.2 + 4 x 1.4826 x 0.05 = 0.4965, above the floor.
        let ref = [0.15, 0.2, 0.25, 0.15, 0.2, 0.25, 0.2, 0.2, 0.15, 0.25]
        let (t, derived) = lim.threshold(n: 100, reference: ref, minInputs: 8)
        XCTAssertEqual(t, 0.2 + 4 * 1.4826 * 0.05, accuracy: 1e-9)
        XCTAssertTrue(derived)
        // A stream that drifts up cannot raise its own bar above the cap; a quiet one keeps the floor.
        XCTAssertEqual(lim.threshold(n: 100, reference: ref.map { $0 + 0.5 }, minInputs: 8).0, 0.6, accuracy: 1e-12)
        XCTAssertEqual(lim.threshold(n: 100, reference: [Double](repeating: 0.01, count: 10), minInputs: 8).0, 0.3, accuracy: 1e-12)
        // Pinned in policy.json: mad_k null.
        XCTAssertNotNil(IngestPolicy().limit("label_flood")?.madK)
        let p = try IngestPolicy.parse(Array(#"{"ingest": {"checks": {"label_flood": {"mad_k": null}, "oov": {"hard": true}}}}"#.utf8), path: "p")
        XCTAssertNil(p.limit("label_flood")?.madK)
        XCTAssertEqual(p.limit("label_flood")?.max, 0.25, "the other keys keep their defaults")
        XCTAssertEqual(p.limit("oov")?.hard, true)
        XCTAssertThrowsError(try IngestPolicy.parse(Array(#"{"ingest": {"checks": {"oov": {"hard": 1}}}}"#.utf8), path: "p"))
    }

    /// label_flood leaves out labels the reference barely holds (a clean burst of such a
    /// label quarantined demo 2023-W13: 15 of 30 examples under a label with 0 of 256 in the
    /// reference, which the model could not predict); an established label is judged.
    func testLabelFloodJudgesOnlyLabelsTheReferenceHolds() throws {
        var m = ModelView(checkpoint: "c")
        m.recognised = 10
        m.labelNames = ["a", "b"]
        m.floodCounts = [9, 1]
        m.floodProbs = [2, 8]
        let established = try XCTUnwrap(m.labelFlood(refCount: { $0 == "a" ? 50 : 150 }, refExamples: 200, minReference: 5))
        // rise 0.9 - 0.25 = 0.65, excess (9 - 2) / 10 = 0.7: the smaller.
        XCTAssertEqual(established.value, 0.65, accuracy: 1e-12)
        XCTAssertEqual(established.count, 7)
        let rare = try XCTUnwrap(m.labelFlood(refCount: { $0 == "a" ? 1 : 199 }, refExamples: 200, minReference: 5))
        XCTAssertEqual(rare.value, 0, "a: 1 example in the reference, too rare to judge; b fell")
        XCTAssertEqual(IngestPolicy().floodMinReference, 5)
        let p = try IngestPolicy.parse(Array(#"{"ingest": {"flood_min_reference": 0}}"#.utf8), path: "p")
        XCTAssertEqual(p.floodMinReference, 0)
        XCTAssertEqual(m.labelFlood(refCount: { $0 == "a" ? 1 : 199 }, refExamples: 200, minReference: p.floodMinReference)?.value ?? 0,
                       min(0.9 - 0.005, 0.7), accuracy: 1e-12)
    }

    /// label_chance's z: the mean and variance of the true labels' loss over all
    /// permutations of the labels, checked against enumerating every permutation.
    func testLabelChanceIsAPermutationTest() throws {
        // 5 examples, 3 labels; losses[i][l].
        let rows: [[Float]] = [[0.1, 2.0, 3.0], [0.2, 1.5, 2.5], [2.2, 0.3, 1.9], [1.8, 0.4, 2.6], [2.9, 2.1, 0.2]]
        let labels = [0, 0, 1, 1, 2]
        let flat = rows.flatMap { $0 }
        var sums: [Double] = []
        func permute(_ a: [Int], _ k: Int) {
            if k == a.count { sums.append((0..<a.count).reduce(0.0) { $0 + Double(rows[$1][a[$1]]) }); return }
            var a = a
            for i in k..<a.count { a.swapAt(k, i); permute(a, k + 1); a.swapAt(k, i) }
        }
        permute(labels, 0)
        let mean = sums.reduce(0, +) / Double(sums.count)
        let sd = (sums.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(sums.count)).squareRoot()
        let t = (0..<5).reduce(0.0) { $0 + Double(rows[$1][labels[$1]]) }
        let z = try XCTUnwrap(ModelView.permutationZ(losses: flat, labels: labels, labelCount: 3))
        XCTAssertEqual(z, (mean - t) / sd, accuracy: 1e-5)
        XCTAssertGreaterThan(z, 1.5, "labels that follow the texts")
        var v = ModelView(checkpoint: "c")
        v.labelZ = z
        XCTAssertLessThan(v.labelChance ?? 1, 0.0668)
        v.labelZ = 0
        XCTAssertEqual(v.labelChance ?? 0, 0.5, accuracy: 1e-12)
        XCTAssertNil(ModelView.permutationZ(losses: flat, labels: [0, 0, 0, 0, 0], labelCount: 3), "one label: nothing to shuffle")
        XCTAssertEqual(IngestPolicy().limit("label_chance")?.hard, true)
    }

    func testDistancesAndSamples() {
        XCTAssertEqual(Checks.jsDistance([1, 0], [0, 1]), 1, accuracy: 1e-12)
        XCTAssertEqual(Checks.jsDistance([0.5, 0.5], [0.5, 0.5]), 0, accuracy: 1e-12)
        XCTAssertEqual(LengthBuckets.bucket(0), 0)
        XCTAssertEqual(LengthBuckets.bucket(1), 1)
        XCTAssertEqual(LengthBuckets.bucket(3), 2)
        XCTAssertEqual(LengthBuckets.bucket(4), 3)
        var b = BottomK(k: 10)
        var all: [UInt64] = []
        for i in 0..<1000 { let v = mixHash(UInt64(i)); all.append(v); b.offer(v) }
        let (values, limit) = b.finish()
        XCTAssertEqual(values, Array(all.sorted().prefix(10)))
        XCTAssertEqual(limit, values.last)
        var small = BottomK(k: 10)
        for v in all.prefix(5) { small.offer(v) }
        XCTAssertEqual(small.finish().limit, .max)
        let lim = IngestPolicy.Limit(max: 0.3, width: 1.0)
        XCTAssertEqual(lim.threshold(n: 100), 0.4, accuracy: 1e-12)
        XCTAssertEqual(lim.threshold(n: 4), 0.8, accuracy: 1e-12)
    }
}
