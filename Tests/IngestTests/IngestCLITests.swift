// CLI tests of pp-ingest: the built binary on a temporary state folder, checking stdout JSON,
// exit codes, the folders, and the shards' content through `pp-ingest cat`.

import Foundation
import XCTest
import TestSupport
@testable import Shared
@testable import TextModel

class IngestTestCase: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        root = try TestSupport.tempDir("ingest")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Puts a file in ROOT/inbox with an mtime `age` seconds in the past (settled by default).
    @discardableResult
    func drop(_ name: String, _ bytes: [UInt8], age: Double = 3600, in dir: String? = nil) throws -> String {
        let d = dir ?? root + "/inbox"
        try FileIO.makeDirectories(d)
        let path = d + "/" + name
        try FileIO.publish(bytes, to: path)
        try setAge(path, age)
        return path
    }

    func setAge(_ path: String, _ age: Double) throws {
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -age)], ofItemAtPath: path)
    }

    func demo(_ week: String) throws -> [UInt8] {
        try FileIO.readAll(TestSupport.repoRoot + "/demo/data/\(week).jsonl.zst")
    }

    static let demoWeeks = (1...20).map { String(format: "2023-W%02d", $0) }

    @discardableResult
    func ingest(_ args: [String] = [], root r: String? = nil, stdin: [UInt8]? = nil, env: [String: String] = [:]) throws -> TestSupport.Result {
        try TestSupport.run("pp-ingest", ["--root", r ?? root] + args, stdin: stdin, env: env)
    }

    func reports(_ r: TestSupport.Result) -> [[String: Any]] {
        r.stdoutLines.map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? ["unparsed": $0] }
    }

    func names(_ sub: String, root r: String? = nil) -> [String] {
        (try? FileIO.list((r ?? root) + "/" + sub)) ?? []
    }

    /// All directory entries including dot-files.
    func allNames(_ sub: String, root r: String? = nil) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: (r ?? root) + "/" + sub)) ?? []).sorted()
    }

    func cat(_ args: [String], root r: String? = nil) throws -> [String] {
        let res = try TestSupport.run("pp-ingest", ["cat", "--root", r ?? root] + args)
        XCTAssertEqual(res.status, 0, res.stderr)
        return res.stdoutLines
    }

    /// The fastText lines InputParser makes of `files` (duplicates dropped per file).
    func expectedLines(_ files: [String]) throws -> [String] {
        var out: [String] = []
        for f in files {
            for e in try InputParser.load(path: f).examples {
                out.append("__label__\(e.label) " + String(decoding: e.tokens, as: UTF8.self))
            }
        }
        return out
    }
}

final class IngestCLITests: IngestTestCase {
    func testAcceptsZstdInboxFilesAndCatGivesBackTheTokens() throws {
        var sources: [String] = []
        for w in Self.demoWeeks.prefix(4) { sources.append(try drop(w + ".jsonl.zst", try demo(w))) }
        let copies = try TestSupport.tempDir("copies")
        defer { try? FileManager.default.removeItem(atPath: copies) }
        for w in Self.demoWeeks.prefix(4) { try drop(w + ".jsonl.zst", try demo(w), in: copies) }
        let r = try ingest()
        XCTAssertEqual(r.status, 0, r.stderr)
        let reps = reports(r)
        XCTAssertEqual(reps.count, 4)
        var train = 0, hold = 0
        for (rep, src) in zip(reps, sources) {
            XCTAssertEqual(rep["file"] as? String, src)
            XCTAssertEqual(rep["status"] as? String, "accepted")
            XCTAssertEqual(rep["moved_to"] as? String, root + "/archive/" + FileIO.split(src).name)
            XCTAssertEqual((rep["sha256"] as? String)?.count, 64)
            let ex = rep["examples"] as! Int, t = rep["train_examples"] as! Int, h = rep["holdout_examples"] as! Int
            XCTAssertEqual(ex, t + h)
            XCTAssertEqual(rep["lines"] as? Int, ex + (rep["duplicates"] as! Int))
            train += t; hold += h
            for s in rep["shards"] as! [String] {
                XCTAssertTrue(FileIO.exists(s), s)
                let name = FileIO.split(s).name
                XCTAssertTrue(name.contains("-" + (rep["sha256"] as! String).prefix(16) + "-"), name)
            }
        }
        XCTAssertEqual(names("inbox"), [])
        XCTAssertEqual(names("archive"), Self.demoWeeks.prefix(4).map { $0 + ".jsonl.zst" })
        let trainLines = try cat(["shards"]), holdLines = try cat(["holdout"])
        XCTAssertEqual(trainLines.count, train)
        XCTAssertEqual(holdLines.count, hold)
        let expected = try expectedLines(Self.demoWeeks.prefix(4).map { copies + "/" + $0 + ".jsonl.zst" })
        XCTAssertEqual((trainLines + holdLines).sorted(), expected.sorted())
        XCTAssertEqual(try cat(["--labels-only", root + "/shards"]), trainLines.map { String($0.split(separator: " ")[0]) })
        // Every shard header describes its input.
        for name in names("shards") {
            let h = try Shard(path: root + "/shards/" + name).header
            XCTAssertEqual(h.split, "train")
            XCTAssertTrue(name.contains(h.sourceSHA256.prefix(16)))
            XCTAssertTrue(h.sourceName.hasSuffix(".jsonl.zst"))
            XCTAssertNotNil(h.tsMin)
            XCTAssertEqual(h.labelCounts.reduce(0, +), h.examples)
        }
    }

    func testShardRoundTripExactTokensMixedFormats() throws {
        let text = """
            {"text": "Fix the Typo in README.md", "label": "doc", "ts": "2024-01-02T03:04:05Z"}
            __label__tests Add t9999-über-test for ÄÖÜ
            {"label": "refs", "text": "refs: don't \\"leak\\" memory\\nat all", "id": 7}

            __label__doc   spaces   everywhere\t
            """
        try drop("mixed.txt", Array(text.utf8))
        let r = try ingest(["--holdout", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(reports(r).first?["blank_lines"] as? Int, 1)
        XCTAssertEqual(try cat(["shards"]), [
            "__label__doc fix the typo in readme md",
            "__label__tests add t9999 über test for äöü",
            "__label__refs refs don t leak memory at all",
            "__label__doc spaces everywhere",
        ])
        let shard = try Shard(path: root + "/shards/" + names("shards")[0])
        XCTAssertEqual(shard.header.tsMin, 1704164645)
        XCTAssertEqual(shard.header.tsMax, 1704164645)
        XCTAssertEqual(shard.header.labels, ["doc", "tests", "refs"])
        XCTAssertEqual(shard.header.labelCounts, [2, 1, 1])
        XCTAssertEqual(shard.header.parts, 1)
    }

    func testFewBadLinesArePartialAndDropped() throws {
        var text = ""
        for i in 0..<300 { text += "__label__l\(i % 3) example number \(i)\n" }
        text += "{\"text\": \"no label\"}\n"
        text += "__label__a __label__b two labels\n"
        let path = try drop("few-bad.txt", Array(text.utf8))
        let r = try ingest(["--holdout", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rep = reports(r)[0]
        XCTAssertEqual(rep["status"] as? String, "partial")
        XCTAssertEqual(rep["bad_lines"] as? Int, 2)
        XCTAssertEqual(rep["bad"] as? [String: Int], ["missing_label": 1, "multiple_labels": 1])
        XCTAssertEqual(rep["examples"] as? Int, 300)
        XCTAssertTrue(r.stderr.contains("\(path):301: no \"label\" field [missing_label]"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\(path):302: "), r.stderr)
        XCTAssertEqual(try cat(["shards"]).count, 300)
    }

    func testEveryKindOfBadLineRejectsTheFile() throws {
        var lines: [[UInt8]] = []
        for i in 0..<10 { lines.append(Array("{\"text\": \"good \(i)\", \"label\": \"ok\"}".utf8)) }
        lines.append([0x7B, 0x22, 0x74, 0xFF, 0xFE, 0x22, 0x7D])                                // invalid UTF-8
        lines.append(Array(#"{"text": "broken", "label": "x""#.utf8))                            // broken JSON
        lines.append(Array(#"{"text": "no label here"}"#.utf8))                                  // missing label
        lines.append(Array(#"{"text": "numeric label", "label": 12}"#.utf8))                     // non-string label
        lines.append(Array(#"{"text": "spaced", "label": "two words"}"#.utf8))                   // whitespace in label
        lines.append(Array("{\"text\": \"long label\", \"label\": \"\(String(repeating: "L", count: 65))\"}".utf8))
        lines.append(Array("{\"text\": \"\(String(repeating: "t", count: 150))\", \"label\": \"a\"}".utf8))  // text too long
        lines.append(Array("{\"text\": \"\(String(repeating: "h", count: 80_000))\", \"label\": \"a\"}".utf8)) // huge line
        lines.append([0x00, 0x9F, 0x92, 0x96, 0x01, 0x02, 0xC0, 0xAF])                          // binary garbage
        lines.append(Array(#"{"text": "", "label": "a"}"#.utf8))                                 // empty text
        var bytes: [UInt8] = []
        for l in lines { bytes += l + [0x0A] }
        let path = try drop("bad.jsonl", bytes)
        let r = try ingest(["--max-text-bytes", "100"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let rep = reports(r)[0]
        XCTAssertEqual(rep["status"] as? String, "rejected")
        XCTAssertEqual(rep["moved_to"] as? String, root + "/quarantine/bad.jsonl")
        let expected = ["invalid_utf8": 2, "bad_json": 1, "missing_label": 1, "label_not_string": 1, "label_whitespace": 1,
                        "label_too_long": 1, "text_too_long": 1, "line_too_long": 1, "empty_text": 1]
        XCTAssertEqual(rep["bad"] as? [String: Int], expected)
        XCTAssertEqual(rep["shards"] as? [String], [])
        XCTAssertFalse(FileIO.exists(path))
        XCTAssertEqual(names("quarantine"), ["bad.jsonl", "bad.jsonl.reason.json"])
        XCTAssertEqual(try FileIO.readAll(root + "/quarantine/bad.jsonl"), bytes, "the input is kept byte for byte")
        XCTAssertEqual(names("shards") + names("holdout"), [], "a rejected input publishes nothing")
        XCTAssertEqual(allNames("shards") + allNames("holdout"), [], "and leaves no temp behind")
        let reason = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/quarantine/bad.jsonl.reason.json"))) as! [String: Any]
        XCTAssertEqual(reason["bad"] as? [String: Int], expected)
        XCTAssertEqual(reason["lines"] as? Int, 20)
        XCTAssertEqual(reason["bad_lines"] as? Int, 10)
        let first = reason["first_bad"] as! [[String: Any]]
        XCTAssertEqual(first.map { $0["line"] as! Int }, Array(11...20))
        XCTAssertEqual(first[0]["reason"] as? String, "invalid_utf8")
        XCTAssertEqual((reason["thresholds"] as? [String: Any])?["max_bad"] as? Double, 0.01)
        XCTAssertTrue((reason["reason"] as? String ?? "").contains("exceeds --max-bad"), "\(reason)")
        XCTAssertTrue(r.stderr.contains("\(path):12: broken JSON"), r.stderr)
    }

    func testBadLinesPrintedAtMost20ThenSummary() throws {
        var text = ""
        for i in 0..<50 { text += "not a valid line \(i)\n" }
        try drop("junk.txt", Array(text.utf8))
        let r = try ingest()
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr.components(separatedBy: "[unknown_format]").count - 1, 20, r.stderr)
        XCTAssertTrue(r.stderr.contains("30 more bad lines not shown (unknown_format=50)"), r.stderr)
        let reason = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(root + "/quarantine/junk.txt.reason.json"))) as! [String: Any]
        XCTAssertEqual((reason["first_bad"] as! [Any]).count, 20)
    }

    func testEmptyFileAndBinaryGarbageAreRejected() throws {
        try drop("empty.jsonl", [])
        var rng = SystemRandomNumberGenerator()
        try drop("garbage.bin", (0..<65536).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let r = try ingest()
        XCTAssertEqual(r.status, 1, r.stderr)
        let reps = reports(r)
        XCTAssertEqual(reps.map { $0["status"] as? String }, ["rejected", "rejected"])
        XCTAssertTrue((reps[0]["reason"] as? String ?? "").contains("empty"), "\(reps[0])")
        XCTAssertEqual(names("quarantine"), ["empty.jsonl", "empty.jsonl.reason.json", "garbage.bin", "garbage.bin.reason.json"])
        XCTAssertEqual(names("inbox"), [])
    }

    func testTruncatedZstdIsRejected() throws {
        let z = try demo("2023-W02")
        try drop("cut.jsonl.zst", Array(z.prefix(z.count / 2)))
        let r = try ingest()
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue((reports(r)[0]["reason"] as? String ?? "").contains("unreadable"), r.stdout)
        XCTAssertEqual(names("shards") + names("holdout"), [])
        XCTAssertEqual(names("quarantine"), ["cut.jsonl.zst", "cut.jsonl.zst.reason.json"])
    }

    func testUnsettledAndDotFilesAreLeftForLater() throws {
        try drop("fresh.txt", Array("__label__a text\n".utf8), age: 0)
        try drop(".hidden.txt", Array("__label__a text\n".utf8))
        let r = try ingest()
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertTrue(r.stderr.contains("not settled"), r.stderr)
        XCTAssertEqual(allNames("inbox"), [".hidden.txt", "fresh.txt"])
        // With --settle 0 the fresh file is taken; the dot-file never is.
        let r2 = try ingest(["--settle", "0"])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertEqual(allNames("inbox"), [".hidden.txt"])
    }

    func testSymlinkAndFolderInInboxAreRefusedAndLeft() throws {
        let target = try drop("real.txt", Array("__label__a some text\n".utf8), in: root + "/elsewhere")
        try FileIO.makeDirectories(root + "/inbox")
        XCTAssertEqual(symlink(target, root + "/inbox/link.txt"), 0)
        try FileIO.makeDirectories(root + "/inbox/subdir")
        try drop("good.txt", Array("__label__a good text\n".utf8))
        let r = try ingest()
        XCTAssertEqual(r.status, 1, r.stderr)
        let byFile = Dictionary(uniqueKeysWithValues: reports(r).map { ($0["file"] as! String, $0) })
        XCTAssertEqual(byFile[root + "/inbox/link.txt"]?["status"] as? String, "refused")
        XCTAssertTrue((byFile[root + "/inbox/link.txt"]?["error"] as? String ?? "").contains("symbolic link"))
        XCTAssertEqual(byFile[root + "/inbox/subdir"]?["status"] as? String, "refused")
        XCTAssertEqual(byFile[root + "/inbox/good.txt"]?["status"] as? String, "accepted")
        XCTAssertEqual(names("inbox"), ["link.txt", "subdir"], "refused entries stay where they are")
        XCTAssertTrue(FileIO.exists(target))
        XCTAssertEqual(names("quarantine"), [])
        XCTAssertTrue(r.stderr.contains("link.txt: symbolic link refused"), r.stderr)
    }

    func testHoldoutIsDeterministicAndDisjointAcrossFilesAndRuns() throws {
        // The same examples, cut into files differently and fed in another order, must give
        // the same holdout set; no token sequence may be on both sides.
        let weeks = Array(Self.demoWeeks.prefix(12))
        var all: [UInt8] = []
        for w in weeks { all += try Zstd.decompress(try demo(w)) }
        try drop("all.jsonl", all)
        XCTAssertEqual(try ingest().status, 0)
        let root2 = try TestSupport.tempDir("ingest2")
        defer { try? FileManager.default.removeItem(atPath: root2) }
        for w in weeks.reversed() { try drop(w + ".jsonl.zst", try demo(w), in: root2 + "/inbox") }
        let r2 = try ingest(root: root2)
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let tokens = { (lines: [String]) in Set(lines.map { String($0.drop(while: { $0 != " " })) }) }
        let hold1 = tokens(try cat(["holdout"])), hold2 = tokens(try cat(["holdout"], root: root2))
        let train1 = tokens(try cat(["shards"])), train2 = tokens(try cat(["shards"], root: root2))
        XCTAssertEqual(hold1, hold2)
        XCTAssertEqual(train1, train2)
        XCTAssertTrue(hold1.isDisjoint(with: train1))
        XCTAssertTrue(hold2.isDisjoint(with: train2))
        let share = Double(hold1.count) / Double(hold1.count + train1.count)
        XCTAssertEqual(share, 0.05, accuracy: 0.02, "holdout share \(share)")
        // A larger fraction keeps every example that was held out at 5% (monotone split).
        let root3 = try TestSupport.tempDir("ingest3")
        defer { try? FileManager.default.removeItem(atPath: root3) }
        try drop("all.jsonl", all, in: root3 + "/inbox")
        XCTAssertEqual(try ingest(["--holdout", "0.2"], root: root3).status, 0)
        XCTAssertTrue(hold1.isSubset(of: tokens(try cat(["holdout"], root: root3))))
    }

    func testManyPartsAndIdenticalInputIsADuplicate() throws {
        let z = try demo("2023-W08")
        try drop("w08.jsonl.zst", z)
        let r = try ingest(["--shard-examples", "5", "--holdout", "0.2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rep = reports(r)[0]
        let shardNames = names("shards"), holdNames = names("holdout")
        XCTAssertEqual(shardNames.count, ((rep["train_examples"] as! Int) + 4) / 5)
        XCTAssertEqual(holdNames.count, ((rep["holdout_examples"] as! Int) + 4) / 5)
        XCTAssertEqual(shardNames.last?.hasSuffix("-\(String(format: "%03d", shardNames.count - 1)).pps"), true)
        for (i, n) in shardNames.enumerated() {
            let h = try Shard(path: root + "/shards/" + n).header
            XCTAssertEqual(h.part, i)
            XCTAssertEqual(h.parts, shardNames.count)
        }
        // The same bytes under another name, later: a duplicate, nothing new, moved away.
        try drop("copy-of-w08.jsonl.zst", z, age: 100)
        let r2 = try ingest()
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertEqual(reports(r2)[0]["status"] as? String, "duplicate")
        XCTAssertEqual(reports(r2)[0]["shards"] as? [String], [])
        XCTAssertEqual(names("shards"), shardNames)
        XCTAssertEqual(names("holdout"), holdNames)
        XCTAssertEqual(names("archive"), ["copy-of-w08.jsonl.zst", "w08.jsonl.zst"])
        // An archived name is never overwritten: a different file with the same name gets a suffix.
        try drop("w08.jsonl.zst", Array("__label__a other content\n".utf8))
        XCTAssertEqual(try ingest().status, 0)
        XCTAssertEqual(names("archive"), ["copy-of-w08.jsonl.zst", "w08.jsonl.zst", "w08.jsonl.zst.1"])
    }

    func testStdinAndFilesOutsideInboxAreReadInPlace() throws {
        let r = try ingest(["-"], stdin: Array("__label__a from stdin\n{\"text\": \"json too\", \"label\": \"b\"}\n".utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(reports(r)[0]["file"] as? String, "stdin")
        XCTAssertEqual(reports(r)[0]["examples"] as? Int, 2)
        XCTAssertTrue(reports(r)[0]["moved_to"] is NSNull)
        let outside = try TestSupport.tempDir("outside")
        defer { try? FileManager.default.removeItem(atPath: outside) }
        let good = try drop("good.jsonl.zst", try demo("2023-W03"), age: 0, in: outside)
        let bad = try drop("bad.txt", Array("nothing valid here\n".utf8), in: outside)
        let r2 = try ingest([good, bad])
        XCTAssertEqual(r2.status, 1, r2.stderr)
        XCTAssertEqual(reports(r2).map { $0["status"] as? String }, ["accepted", "rejected"])
        XCTAssertTrue(FileIO.exists(good) && FileIO.exists(bad), "inputs outside inbox/ are never moved")
        XCTAssertEqual(names("quarantine"), [])
        XCTAssertEqual(names("archive"), [])
    }

    func testDeleteRemovesAcceptedInputs() throws {
        try drop("a.txt", Array("__label__a text one\n".utf8))
        try drop("b.txt", Array("garbage only\n".utf8))
        let r = try ingest(["--delete"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(reports(r)[0]["deleted"] as? Bool, true)
        XCTAssertEqual(names("inbox"), [])
        XCTAssertEqual(names("archive"), [])
        XCTAssertEqual(names("quarantine"), ["b.txt", "b.txt.reason.json"], "rejected inputs are kept even with --delete")
    }

    func testExitCodes() throws {
        XCTAssertEqual(try ingest().status, 2, "empty inbox: nothing to do")
        XCTAssertEqual(try ingest(["--holdout", "1.5"]).status, 64)
        XCTAssertEqual(try ingest(["--no-such-flag"]).status, 64)
        let missing = try ingest([root + "/does-not-exist.jsonl"])
        XCTAssertEqual(missing.status, 66, missing.stderr)
        XCTAssertEqual(reports(missing)[0]["status"] as? String, "error")
        try drop("ok.txt", Array("__label__a fine\n".utf8))
        XCTAssertEqual(try ingest().status, 0)
        try drop("nok.txt", Array("not fine\n".utf8))
        XCTAssertEqual(try ingest().status, 1)
        let c = try TestSupport.run("pp-ingest", ["cat", root + "/nothing-here"])
        XCTAssertEqual(c.status, 66)
        try FileIO.publish(Array("not a shard".utf8), to: root + "/shards/bogus.pps")
        let c2 = try TestSupport.run("pp-ingest", ["cat", root + "/shards"])
        XCTAssertEqual(c2.status, 65, c2.stderr)
        XCTAssertTrue(c2.stderr.contains("bogus.pps"), c2.stderr)
    }
}
