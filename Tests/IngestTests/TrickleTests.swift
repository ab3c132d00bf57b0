// A trickle (docs/formats.md, "Trickles"): inputs of an example or two, minutes apart. Each is
// too small to judge alone, so pp-ingest holds them in inbox/ and judges them together as
// one pool once the pool holds pool_min_examples examples (or its oldest input has waited
// pool_max_wait), against a reference that reaches back until it holds
// reference_min_examples examples. A weekly stream is never pooled (BatchCheckTests,
// SpoilTests and the crash tests run weekly inputs through the same code).

import Foundation
import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import pp_ingest

final class TrickleTests: IngestTestCase {
    /// The demo weeks' records, in order, as JSON lines.
    func records(_ weeks: ArraySlice<String>) throws -> [String] {
        try weeks.flatMap { w in
            String(decoding: try Zstd.decompress(try demo(w)), as: UTF8.self).split(separator: "\n").map(String.init)
        }
    }

    /// Drops `lines` as inputs of `per` records each, 5 minutes apart, the last `endAge`
    /// seconds ago; returns their names.
    @discardableResult
    func trickle(_ lines: [String], per: Int, endAge: Double, prefix: String) throws -> [String] {
        let chunks = stride(from: 0, to: lines.count, by: per).map { Array(lines[$0..<min($0 + per, lines.count)]) }
        var names: [String] = []
        for (i, c) in chunks.enumerated() {
            let name = String(format: "%@-%04d.jsonl", prefix, i)
            try drop(name, Array((c.joined(separator: "\n") + "\n").utf8), age: endAge + Double(chunks.count - 1 - i) * 300)
            names.append(name)
        }
        return names
    }

    func testATrickleIsHeldThenJudgedAsOnePoolAgainstAReferenceOfEnoughExamples() throws {
        let lines = try records(Self.demoWeeks[0..<20])
        XCTAssertGreaterThan(lines.count, 340)
        // The first run starts with no reference: no trickle is known yet, each input is judged
        // alone (the reference checks say why they are skipped).
        let first = try trickle(Array(lines[0..<200]), per: 1, endAge: 8 * 3600, prefix: "a")
        var r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(reports(r).count, first.count)
        XCTAssertTrue(reports(r).allSatisfy { $0["pool"] == nil || $0["pool"] is NSNull })
        // The reference reaches back past the sidecars a run reads at start (duplicate_inputs,
        // 156), oldest first, each sidecar once.
        let ref = try Reference(root: Root(root), policy: IngestPolicy())
        let back = ref.window(minExamples: 180, maxInputs: 1000)
        XCTAssertEqual(back.count, 180, "one example an input")
        XCTAssertEqual(Set(back.map(\.name)).count, back.count, "no sidecar twice")
        XCTAssertEqual(back.map(\.name), back.map(\.name).sorted())
        XCTAssertEqual(ref.window(minExamples: 10, maxInputs: 1000).count, 26, "reference_inputs when they hold enough")
        let d = ref.duplicateSets(inputs: 190)
        XCTAssertEqual(d.count, 190)
        XCTAssertEqual(Set(d.map(\.name)).count, 190)
        XCTAssertEqual(d.map(\.name), d.map(\.name).sorted())

        // Now the stream's inputs come 5 minutes apart: ten small ones wait in inbox/.
        let waiting = try trickle(Array(lines[200..<220]), per: 2, endAge: 6000, prefix: "b")
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 2, "nothing ingested while the pool fills: \(r.stdout)")
        let w = reports(r)
        XCTAssertEqual(w.map { $0["status"] as? String }, Array(repeating: "waiting", count: waiting.count))
        XCTAssertEqual(w.first?["pool_examples"] as? Int, 20)
        XCTAssertNotNil(w.first?["judged_by"] as? String)
        XCTAssertEqual(names("inbox"), waiting)
        XCTAssertEqual(names("archive").count, first.count)

        // Twenty more: 60 examples, the pool is full and judged once, for all thirty inputs.
        let more = try trickle(Array(lines[220..<260]), per: 2, endAge: 60, prefix: "c")
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let reps = reports(r)
        XCTAssertEqual(reps.count, waiting.count + more.count)
        XCTAssertTrue(reps.allSatisfy { $0["status"] as? String == "accepted" }, r.stdout)
        let pool = reps[0]["pool"] as! [String: Any]
        XCTAssertEqual(pool["inputs"] as? [String], waiting + more)
        XCTAssertEqual(pool["examples"] as? Int, 60)
        XCTAssertEqual(pool["judged"] as? String, "full")
        // Judged as 60 examples against a reference of at least reference_min_examples (200)
        // examples, reaching back past the 26 newest inputs: the distribution checks have values.
        let stats = reps[0]["stats"] as! [String: Double]
        XCTAssertEqual(stats["examples"], 60)
        XCTAssertEqual(stats["pool_inputs"], 30)
        let window = reps[0]["reference"] as! [String: Any]
        XCTAssertGreaterThanOrEqual(window["examples"] as! Int, 200)
        XCTAssertGreaterThan(window["inputs"] as! Int, 26)
        let checks = reps[0]["checks"] as! [String: [String: Any]]
        for c in ["label_linf", "length_js", "truncated", "duplicates", "garbage"] {
            XCTAssertNotNil(checks[c]?["value"], "\(c): \(checks[c] ?? [:])")
        }
        // Each input keeps its own shards, sidecar and hash sample.
        XCTAssertEqual(names("inbox"), [])
        let sidecars = names("stats").filter { $0.hasSuffix(".hashes") }
        XCTAssertEqual(sidecars.count, first.count + waiting.count + more.count)
        for s in sidecars.suffix(more.count) {
            let j = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/stats/" + s.dropLast(7) + ".json"))) as! [String: Any]
            XCTAssertEqual(try FileIO.readAll(root + "/stats/" + s).count, 8 * (j["examples"] as! Int), s)
        }

        // A spoiled stretch of the trickle (every text cut to its first word, as a broken
        // export would), each input too small to tell: the pool is quarantined whole, each
        // input with a reason naming its pool and how to release it.
        let cut = try lines[260..<330].map { l -> String in
            var o = try JSONSerialization.jsonObject(with: Data(l.utf8)) as! [String: Any]
            o["text"] = String((o["text"] as! String).split(separator: " ").first ?? "")
            return String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self)
        }
        let spoiled = try trickle(cut, per: 2, endAge: 30, prefix: "d")
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(reports(r).allSatisfy { $0["status"] as? String == "quarantined" }, r.stdout)
        XCTAssertEqual(reports(r).count, spoiled.count)
        let reason = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/quarantine/\(spoiled[3]).reason.json"))) as! [String: Any]
        XCTAssertEqual(reason["check"] as? String, "truncated")
        XCTAssertEqual((reason["pool"] as? [String: Any])?["inputs"] as? [String], spoiled)
        XCTAssertTrue((reason["release"] as? String ?? "").contains("pp-ingest release \(spoiled[3])"))
        XCTAssertEqual(names("inbox"), [])

        // A pool whose oldest input has waited pool_max_wait is judged with what it holds.
        try trickle(Array(lines[330..<336]), per: 2, endAge: 7 * 3600, prefix: "e")
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(reports(r).map { ($0["pool"] as? [String: Any])?["judged"] as? String }, ["waited", "waited", "waited"])

        // Files named on the command line are judged alone, trickle or not.
        let named = root + "/named.jsonl"
        try FileIO.publish(lines[336] + "\n", to: named)
        r = try ingest(["--settle", "0", named])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(reports(r).first?["status"] as? String, "accepted")
        XCTAssertNil(reports(r).first?["pool"] as? [String: Any])

        // Records of the first inputs sent again (a re-sent export): 180 and more inputs ago,
        // beyond duplicate_inputs (156); a trickle's duplicate check reaches back
        // reference_max_inputs inputs and stops the pool.
        let resent = try trickle(Array(lines[0..<60]), per: 2, endAge: 5, prefix: "f")
        r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 1, r.stdout)
        let f = reports(r)
        XCTAssertEqual(f.count, resent.count)
        XCTAssertTrue(f.allSatisfy { $0["status"] as? String == "quarantined" && ($0["tripped"] as? [String])?.contains("duplicates") == true }, r.stdout)
        XCTAssertGreaterThan((f[0]["reference"] as! [String: Any])["duplicate_inputs"] as! Int, 200)
    }

    /// One real message with mojibake in a pool: the texts' own checks judge each text, so
    /// only the input holding it is quarantined, not the whole pool.
    func testATextSignatureBlamesOnlyTheInputThatHoldsIt() throws {
        let lines = try records(Self.demoWeeks[0..<20])
        try trickle(Array(lines[0..<150]), per: 1, endAge: 8 * 3600, prefix: "a")
        XCTAssertEqual(try ingest(["--settle", "0"]).status, 0)
        var pool = Array(lines[150..<210])
        var o = try JSONSerialization.jsonObject(with: Data(pool[7].utf8)) as! [String: Any]
        o["text"] = (o["text"] as! String) + " caf\u{00C3}\u{00A9} na\u{00C3}\u{00AF}ve"
        pool[7] = String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self)
        let names = try trickle(pool, per: 2, endAge: 60, prefix: "b")
        let r = try ingest(["--settle", "0"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let reps = reports(r)
        XCTAssertEqual(reps.count, names.count)
        XCTAssertEqual(reps.filter { $0["status"] as? String == "quarantined" }.map { ($0["file"] as! String).split(separator: "/").last.map(String.init) }, [names[3]])
        XCTAssertEqual(reps.filter { $0["status"] as? String == "accepted" }.count, names.count - 1)
        XCTAssertEqual(reps[0]["tripped"] as? [String], ["mojibake"])
    }

    func testPoolingCanBeSwitchedOffAndIsValidated() throws {
        let lines = try records(Self.demoWeeks[0..<3])
        try trickle(Array(lines[0..<10]), per: 2, endAge: 3600, prefix: "a")
        XCTAssertEqual(try ingest(["--settle", "0"]).status, 0)
        try trickle(Array(lines[10..<14]), per: 2, endAge: 60, prefix: "b")
        try FileIO.publish(#"{"ingest": {"pool_min_examples": 0}}"#, to: root + "/policy.json")
        let r = try ingest(["--settle", "0"])
        XCTAssertEqual(reports(r).map { $0["status"] as? String }, ["accepted", "accepted"], r.stdout)
        try FileIO.publish(#"{"ingest": {"pool_max_wait": -1}}"#, to: root + "/policy.json")
        let bad = try ingest(["--settle", "0"])
        XCTAssertEqual(bad.status, 65)
        XCTAssertTrue(bad.stderr.contains("ingest.pool_max_wait"), bad.stderr)
    }

    /// A pool's statistics are those of its examples observed in one batch.
    func testAbsorbEqualsObservingEverything() throws {
        let lines = try records(Self.demoWeeks[0..<4])
        // One parser per pass: it drops an example whose tokens it has seen before.
        func observe(_ s: BatchStats, _ ls: ArraySlice<String>, _ parser: InputParser) {
            for (i, l) in ls.enumerated() {
                var l = l
                l.withUTF8 { p in
                    if case .example(let e) = parser.parseLine(UnsafeRawBufferPointer(p), number: i + 1) { s.observe(e) }
                }
            }
        }
        let whole = BatchStats(sampleSize: 16)
        observe(whole, lines[...], InputParser(options: InputOptions()))
        let pooled = BatchStats(sampleSize: 16)
        let parser = InputParser(options: InputOptions())
        for start in stride(from: 0, to: lines.count, by: 7) {
            let part = BatchStats(sampleSize: 16)
            observe(part, lines[start..<min(start + 7, lines.count)], parser)
            pooled.absorb(part)
        }
        XCTAssertGreaterThan(whole.examples, 50)
        XCTAssertEqual(pooled.examples, whole.examples)
        XCTAssertEqual(pooled.tokens, whole.tokens)
        XCTAssertEqual(pooled.labelCountMap, whole.labelCountMap)
        XCTAssertEqual(pooled.lengthHist, whole.lengthHist)
        XCTAssertEqual(pooled.junkExamples, whole.junkExamples)
        XCTAssertEqual(pooled.hashes.finish().values, whole.hashes.finish().values)
        let a = pooled.finishSample(), b = whole.finishSample()
        XCTAssertEqual(a.map(\.key), b.map(\.key))
        XCTAssertEqual(a.map { pooled.labels[$0.label] }, b.map { whole.labels[$0.label] })
        XCTAssertEqual(a.map(\.tokens), b.map(\.tokens))
    }
}
