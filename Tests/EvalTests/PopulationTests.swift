import XCTest
import TestSupport
@testable import Shared
@testable import TextModel
@testable import pp_select

/// Issue 16, part 2: a population of runs. The real tools on a root with three runs trained
/// at different learning rates (pp-train --once), scored by pp-eval, stepped by
/// `pp-select population` on a simulated clock: the exploit/explore step (copy, perturb,
/// journal first), its reproducibility, a step interrupted after its journal line, a poisoned
/// best that is not copied, and the knobs and start point of a run after its restart coming
/// from the journal. Plus population.json as hostile input.
final class PopulationTests: XCTestCase {
    static let words = ["doc": "readme docs typo manual", "fix": "crash bug null segfault", "test": "unit test assert flaky"]
    func flags(dim: Int = 8) -> [String] {
        ["--dim", "\(dim)", "--bucket", "2000", "--minn", "0", "--maxn", "0", "--min-count", "1", "--threads", "1", "--seed", "3", "--batch", "16"]
    }
    var tiny: [String] { flags() }

    func rows(_ n: Int, from k: Int) -> [(String, Int64?, String)] {
        let labels = ["doc", "fix", "test"]
        return (0..<n).map { j in
            let i = k + j, l = labels[i % 3], w = Self.words[l]!.split(separator: " ")
            return (l, Int64(1_780_000_000 + i), "\(w[i % 4]) \(w[(i / 3) % 4]) filler\(i % 5)")
        }
    }

    struct Env {
        let dir: String
        var root: Root { Root(dir) }
        var clock: String { dir + "/clock" }
        var env: [String: String] { ["PP_CLOCK_FILE": clock, "PP_ROOT": dir] }
        func setClock(_ t: Double) throws { try FileIO.publish(Array("\(t)\n".utf8), to: clock) }
        func run(_ tool: String, _ args: [String]) throws -> TestSupport.Result { try TestSupport.run(tool, args, env: env) }
    }

    /// Three runs: p1 barely learns (lr 0.002), p2 learns fast (lr 0.5), p3 in between.
    func population(_ tag: String) throws -> Env {
        let e = Env(dir: try TestSupport.tempDir(tag))
        try e.root.ensureLayout()
        try e.setClock(1_780_000_000)
        for s in 0..<3 { try Fixture.shard(rows(60, from: s * 60), to: e.root.shards + "/2026052\(s)T000000Z-000000000000000\(s)-000.pps") }
        try Fixture.shard(rows(60, from: 1000), to: e.root.holdout + "/20260520T000000Z-00000000000000f0-000.pps")
        for (run, lr) in [("p1", "0.002"), ("p2", "0.5"), ("p3", "0.2")] {
            let r = try e.run("pp-train", ["--once", "--run", run, "--lr", lr] + tiny)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let ev = try e.run("pp-eval", ["--pending"])
        XCTAssertEqual(ev.status, 0, ev.stderr)
        XCTAssertEqual(ev.stdoutLines.count, 3, ev.stdout)
        try FileIO.publish(#"{"runs": {"p1": {"lr": 0.002}, "p2": {"lr": 0.5}, "p3": {"lr": 0.2}}, "seed": 11, "metric": "accuracy"}"#,
                           to: e.dir + "/population.json")
        return e
    }

    func entries(_ e: Env) throws -> [PopulationEntry] { try PopulationJournal.read(e.root, repair: false) }

    func newest(_ e: Env, _ run: String) throws -> String {
        try XCTUnwrap(try Root.checkpointFiles(in: e.root.checkpoints(run: run)).last.map { run + "/" + $0 })
    }

    func testExploitCopiesTheBestRunWithPerturbedKnobsJournaledFirstAndReproducibly() throws {
        let e = try population("pop-exploit")
        defer { try? FileManager.default.removeItem(atPath: e.dir) }
        let twin = Env(dir: try TestSupport.tempDir("pop-twin"))
        defer { try? FileManager.default.removeItem(atPath: twin.dir) }
        try FileManager.default.removeItem(atPath: twin.dir)
        try FileManager.default.copyItem(atPath: e.dir, toPath: twin.dir)

        var r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try entries(e)
        XCTAssertEqual(j.map(\.action), ["init", "init", "init", "exploit"], r.stdout)
        XCTAssertEqual(r.stdoutLines.count, 4, "each journal line is printed too")
        let x = j[3]
        XCTAssertEqual(x.run, "p1", "the weakest run: \(x.scores ?? [:])")
        XCTAssertEqual(x.from, try newest(e, "p2"), "copies the best run's newest checkpoint: \(x.scores ?? [:])")
        let f = try XCTUnwrap(x.factors?["lr"])
        XCTAssertTrue([0.8, 1.25].contains(f), "\(f)")
        XCTAssertEqual(try XCTUnwrap(x.knobs?.lr), 0.5 * f, accuracy: 1e-12)
        XCTAssertEqual(x.oldKnobs?.lr, 0.002)
        XCTAssertGreaterThan(x.scores!["p2"]!, x.scores!["p1"]!)
        // The act: p1's control.json carries the new knobs and the checkpoint to continue.
        let c = try XCTUnwrap(try Control.read(e.root.control(run: "p1")))
        XCTAssertEqual(c.adopt, x.from)
        XCTAssertEqual(try XCTUnwrap(c.lr), x.knobs!.lr, accuracy: 1e-12)
        let prom = String(decoding: try FileIO.readAll(e.dir + "/metrics/pp-population.prom"), as: UTF8.self)
        XCTAssertTrue(prom.contains("perpetuum_population_knob{run=\"p1\",knob=\"lr\"} \(x.knobs!.lr)"), prom)
        XCTAssertTrue(prom.contains("perpetuum_population_exploits_total 1"), prom)

        // Seeded: the same root, clock and scores give the same journal, byte for byte.
        r = try twin.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileIO.readAll(twin.dir + "/population.jsonl"), try FileIO.readAll(e.dir + "/population.jsonl"))

        // Daily: again the same day is nothing to do; a day later it decides again.
        r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(try entries(e).count, 4)
        try e.setClock(1_780_000_000 + 86_400)
        r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try entries(e).count, 5)
        let y = try XCTUnwrap(try entries(e).last)
        XCTAssertEqual(y.seq, 5)
        // p1 was restarted and has written nothing since: it has no score of its own yet.
        XCTAssertNil(y.scores?["p1"], "\(y)")
        XCTAssertEqual(Set((y.scores ?? [:]).keys), ["p2", "p3"])
        // Nothing new a day later still: the same checkpoints decide nothing (exit 2, no line)
        // once the restarted runs are out of the ranking.
        for day in 2...4 {
            try e.setClock(1_780_000_000 + Double(day) * 86_400)
            r = try e.run("pp-select", ["population"])
        }
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertLessThanOrEqual(try entries(e).count, 7)
    }

    /// "A run's knobs after a restart come from the journal": the trainer of the copied run,
    /// started after the step, continues the best run's checkpoint with the journaled knobs;
    /// started again, it does not adopt it a second time.
    func testARestartedRunTakesItsKnobsAndStartFromTheJournal() throws {
        let e = try population("pop-restart")
        defer { try? FileManager.default.removeItem(atPath: e.dir) }
        var r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let x = try XCTUnwrap(try entries(e).last)
        try Fixture.shard(rows(30, from: 400), to: e.root.shards + "/20260530T000000Z-00000000000000a1-000.pps")
        try e.setClock(1_780_000_000 + 3_600)
        r = try e.run("pp-train", ["--once", "--run", "p1"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("adopted checkpoint"), r.stderr)
        let ck = try XCTUnwrap(r.stdoutLines.last)
        let meta = try Checkpoint.readHead(path: ck).meta
        XCTAssertEqual(meta.parent, x.from)
        XCTAssertEqual(Double(meta.knobs.lr), x.knobs!.lr, accuracy: 1e-6)
        XCTAssertNil(meta.base, "the first checkpoint after adopting another run's is full")
        let st = try JSONSerialization.jsonObject(with: Data(try FileIO.readAll(e.root.status(run: "p1")))) as? [String: Any]
        XCTAssertEqual(st?["adopted"] as? String, x.from)
        // Restarted again: it descends from the adopted checkpoint, so it resumes its own.
        try Fixture.shard(rows(30, from: 500), to: e.root.shards + "/20260531T000000Z-00000000000000a2-000.pps")
        try e.setClock(1_780_000_000 + 7_200)
        r = try e.run("pp-train", ["--once", "--run", "p1"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("adopted checkpoint"), r.stderr)
        XCTAssertEqual(try Checkpoint.readHead(path: try XCTUnwrap(r.stdoutLines.last)).meta.parent, Start_parent(ck))
    }

    func Start_parent(_ path: String) -> String {
        let c = path.split(separator: "/").map(String.init)
        return c[c.count - 3] + "/" + c[c.count - 1]
    }

    /// A crash after the journal line and before control.json: the next run (even one with
    /// no decision due) writes control.json from the journal.
    func testAStepInterruptedAfterItsJournalLineIsFinishedByTheNext() throws {
        let e = try population("pop-crash")
        defer { try? FileManager.default.removeItem(atPath: e.dir) }
        var r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let x = try XCTUnwrap(try entries(e).last)
        try FileIO.publish(#"{"lr":0.002}"#, to: e.root.control(run: "p1"))   // as before the act
        r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 2, r.stderr)
        let c = try XCTUnwrap(try Control.read(e.root.control(run: "p1")))
        XCTAssertEqual(c.adopt, x.from)
        XCTAssertEqual(try XCTUnwrap(c.lr), x.knobs!.lr, accuracy: 1e-12)
    }

    /// The best run's newest checkpoint trained on a shard since marked suspect: it is not
    /// copied; the run's newest clean evaluated checkpoint stands for it.
    func testAPoisonedCheckpointIsNotCopied() throws {
        let e = try population("pop-poison")
        defer { try? FileManager.default.removeItem(atPath: e.dir) }
        let clean = try newest(e, "p2")
        let bad = "20260525T000000Z-00000000000000c1-000.pps"
        try Fixture.shard(rows(30, from: 800), to: e.root.shards + "/" + bad)
        try e.setClock(1_780_000_000 + 600)
        var r = try e.run("pp-train", ["--once", "--run", "p2"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try e.run("pp-eval", ["--pending"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let poisoned = try newest(e, "p2")
        XCTAssertNotEqual(poisoned, clean)
        var list = SuspectList()
        list.shards = [SuspectShard(name: bad, reason: "rewind", at: Clock.iso(1_780_000_000), by: "test")]
        try FileIO.publish([UInt8](try JSONEncoder().encode(list)), to: e.root.run("p2") + "/suspects.json")
        r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("not copying \(poisoned)"), r.stderr)
        let x = try XCTUnwrap(try entries(e).last)
        XCTAssertEqual(x.action, "exploit", "\(x)")
        XCTAssertEqual(x.from, clean, "the newest clean checkpoint of the best run: \(x)")
        XCTAssertEqual(x.checkpoints?["p2"], clean)
    }

    func testPopulationJSONIsCheckedAsHostileInput() {
        let ok = #"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.3, "dropout": 0.2}}, "perturb": [0.5, 2], "seed": 4, "margin": 0.01, "min_interval": "12h"}"#
        let c = try? PopulationConfig.parse(Array(ok.utf8), path: "population.json")
        XCTAssertEqual(c?.runs, ["a", "b"])
        XCTAssertEqual(c?.knobs["b"]?.dropout, 0.2)
        XCTAssertEqual(c?.minInterval, 43_200)
        let names = try? PopulationConfig.parse(Array(#"{"runs": {"lr-0.2_a": {"lr": 0.1}, "B.9": {"lr": 0.1}}}"#.utf8), path: "p.json")
        XCTAssertEqual(names?.runs, ["B.9", "lr-0.2_a"])
        for (bad, why) in [
            ("[]", "not a JSON object"),
            (#"{"runs": {"a": {"lr": 0.1}}}"#, "at least two runs"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": -1}}}"#, "runs.b.lr"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1, "dropout": 1.5}}}"#, "runs.b.dropout"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"rate": 0.1}}}"#, "runs.b"),
            (#"{"runs": {"a": {"lr": 0.1}, "x/y": {"lr": 0.1}}}"#, "not a population run name"),
            (#"{"runs": {"a": {"lr": 0.1}, ".b": {"lr": 0.1}}}"#, "not a population run name"),
            // Run names become systemd instance names: a space, a "-" first, a backslash or
            // 65 characters would need escaping there or be read as an option.
            (#"{"runs": {"a": {"lr": 0.1}, "b c": {"lr": 0.1}}}"#, "not a population run name"),
            (#"{"runs": {"a": {"lr": 0.1}, "-b": {"lr": 0.1}}}"#, "not a population run name"),
            (#"{"runs": {"a": {"lr": 0.1}, "b\\c": {"lr": 0.1}}}"#, "not a population run name"),
            ("{\"runs\": {\"a\": {\"lr\": 0.1}, \"\(String(repeating: "b", count: 65))\": {\"lr\": 0.1}}}", "not a population run name"),
            (#"{"runs": {"a": {"lr": 0.1}, "": {"lr": 0.1}}}"#, "not a population run name"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1}}, "perturb": []}"#, "perturb"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1}}, "perturb": [0]}"#, "perturb"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1}}, "seed": -1}"#, "seed"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1}}, "seed": 1.5}"#, "seed"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1}}, "metric": "speed"}"#, "metric"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1}}, "min_interval": "soon"}"#, "min_interval"),
            (#"{"runs": {"a": {"lr": 0.1}, "b": {"lr": 0.1}}, "lrs": 1}"#, "unknown key"),
        ] {
            XCTAssertThrowsError(try PopulationConfig.parse(Array(bad.utf8), path: "population.json"), bad) { err in
                let m = (err as? PPError)?.message ?? ""
                XCTAssertTrue(m.contains("population.json") && m.contains(why), "\(bad): \(m)")
            }
        }
        let many = "{\"runs\": {" + (0..<40).map { "\"r\($0)\": {\"lr\": 0.1}" }.joined(separator: ",") + "}}"
        XCTAssertThrowsError(try PopulationConfig.parse(Array(many.utf8), path: "population.json"))
    }

    /// control.json's adopt is refused when it names no checkpoint with weights, or one made
    /// with other model flags; training goes on from where it was.
    func testAdoptRefusals() throws {
        let e = try population("pop-refuse")
        defer { try? FileManager.default.removeItem(atPath: e.dir) }
        XCTAssertNotNil(Control.problem(adopt: "p2"))
        XCTAssertNotNil(Control.problem(adopt: "../x/ckpt-20260101T000000Z-000000000001.ppc"))
        XCTAssertNil(Control.problem(adopt: "p2/ckpt-20260101T000000Z-000000000001.ppc"))
        // Another model: dim 16.
        var r = try e.run("pp-train", ["--once", "--run", "wide"] + flags(dim: 16))
        XCTAssertEqual(r.status, 0, r.stderr)
        try FileIO.publish("{\"adopt\":\"\(try newest(e, "wide"))\"}", to: e.root.control(run: "p1"))
        try Fixture.shard(rows(30, from: 600), to: e.root.shards + "/20260530T000000Z-00000000000000b1-000.pps")
        r = try e.run("pp-train", ["--once", "--run", "p1"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("refused") && r.stderr.contains("other model flags"), r.stderr)
        XCTAssertEqual(try Checkpoint.readHead(path: try XCTUnwrap(r.stdoutLines.last)).meta.parent?.hasPrefix("p1/"), true)
        // Gone: a name that resolves to nothing.
        try FileIO.publish(#"{"adopt":"p2/ckpt-20200101T000000Z-000000000001.ppc"}"#, to: e.root.control(run: "p3"))
        try Fixture.shard(rows(30, from: 700), to: e.root.shards + "/20260531T000000Z-00000000000000b2-000.pps")
        r = try e.run("pp-train", ["--once", "--run", "p3"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("no checkpoint with weights"), r.stderr)
    }

    /// An exploit needs a significant gain (paired bootstrap over the per-example files), not
    /// just a higher score: one example in 40 copies nothing; 30 in 40 does.
    func testOnlyASignificantGainCopies() throws {
        let (root, evalset) = try Fixture.root("pop-signif", n: 40)
        defer { try? FileManager.default.removeItem(atPath: root.path) }
        func outcomes(correct: Int) -> [ExampleOutcome] {
            (0..<40).map { i in ExampleOutcome(truth: 0, pred: i < correct ? 0 : 1, pTrue: i < correct ? 0.9 : 0.1, pTop: 0.9, top5: true) }
        }
        let config = try PopulationConfig.parse(Array(#"{"runs": {"p1": {"lr": 0.1}, "p2": {"lr": 0.2}}, "metric": "accuracy"}"#.utf8), path: "population.json")
        let sel = Selector(root: root, dryRun: false, verify: { _ in })
        try Fixture.result(root, evalset: evalset, labels: ["a", "b"], outcomes: outcomes(correct: 20), run: "p1",
                           file: "ckpt-20261126T000001Z-000000000100.ppc", step: 100)
        try Fixture.result(root, evalset: evalset, labels: ["a", "b"], outcomes: outcomes(correct: 21), run: "p2",
                           file: "ckpt-20261126T000001Z-000000000100.ppc", step: 100)
        var p = Population(config: config, sel: sel, entries: [])
        var e = try p.decide()
        XCTAssertEqual(e.action, "keep", e.reason)
        XCTAssertTrue(e.reason.contains("not significantly better"), e.reason)
        XCTAssertLessThanOrEqual(try XCTUnwrap(e.gainInterval?.first), 0)
        try Fixture.result(root, evalset: evalset, labels: ["a", "b"], outcomes: outcomes(correct: 35), run: "p2",
                           file: "ckpt-20261126T000002Z-000000000200.ppc", step: 200)
        p = Population(config: config, sel: sel, entries: [])
        e = try p.decide()
        XCTAssertEqual(e.action, "exploit", e.reason)
        XCTAssertEqual(e.run, "p1")
        XCTAssertEqual(e.from, "p2/ckpt-20261126T000002Z-000000000200.ppc")
        XCTAssertGreaterThan(try XCTUnwrap(e.gainInterval?.first), 0)
    }

    /// Before any data: the step gives each run its knobs (init lines, control.json) and
    /// decides nothing (no eval set yet), successfully, so a fresh install can start with it.
    func testAFreshRootGetsItsInitLinesAndNoDecision() throws {
        let e = Env(dir: try TestSupport.tempDir("pop-fresh"))
        defer { try? FileManager.default.removeItem(atPath: e.dir) }
        try e.root.ensureLayout()
        try e.setClock(1_780_000_000)
        try FileIO.publish(#"{"runs": {"a": {"lr": 0.05}, "b": {"lr": 0.3, "dropout": 0.1}}}"#, to: e.dir + "/population.json")
        var r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try entries(e).map(\.action), ["init", "init"])
        XCTAssertEqual(try Control.read(e.root.control(run: "b"))?.dropout, 0.1)
        r = try e.run("pp-select", ["population"])
        XCTAssertEqual(r.status, 2, r.stderr)
        r = try e.run("pp-select", ["population", "--runs"])
        XCTAssertEqual(r.stdoutLines, ["a", "b"])
    }

    /// The production layout (docs/operations.md): the config in /etc, outside the state
    /// folder. `--runs --config` reads only the config (perpetuum.target's generator runs it
    /// at boot, before the state folder may be mounted: no root needed); `--sync` (each
    /// trainer unit's ExecStartPre) journals the init lines and writes control.json but
    /// decides nothing, even when a decision is due; the daily step reads the same file.
    func testTheConfigMayLiveOutsideTheRootAndSyncDecidesNothing() throws {
        let e = Env(dir: try TestSupport.tempDir("pop-etc"))
        defer { try? FileManager.default.removeItem(atPath: e.dir) }
        let etc = try TestSupport.tempDir("pop-etc-conf")
        defer { try? FileManager.default.removeItem(atPath: etc) }
        let conf = etc + "/population.json"
        try FileIO.publish(#"{"runs": {"p1": {"lr": 0.05}, "p2": {"lr": 0.3, "dropout": 0.1}}, "min_interval": "0s"}"#, to: conf)
        // --runs: no root at all.
        var r = try e.run("pp-select", ["population", "--runs", "--config", conf, "--root", e.dir + "/absent"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdoutLines, ["p1", "p2"])
        XCTAssertFalse(FileIO.exists(e.dir + "/absent"))
        r = try e.run("pp-select", ["population", "--runs", "--config", etc + "/none.json"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains(etc + "/none.json"), r.stderr)
        // The root's own population.json is not read when --config names another file.
        try e.root.ensureLayout()
        try e.setClock(1_780_000_000)
        try FileIO.publish(#"{"runs": {"x": {"lr": 0.1}, "y": {"lr": 0.1}}}"#, to: e.dir + "/population.json")
        r = try e.run("pp-select", ["population", "--sync", "--config", conf])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try entries(e).map(\.action), ["init", "init"])
        XCTAssertEqual(try entries(e).map(\.run), ["p1", "p2"])
        XCTAssertEqual(try Control.read(e.root.control(run: "p1"))?.lr, 0.05)
        XCTAssertEqual(try Control.read(e.root.control(run: "p2"))?.dropout, 0.1)
        // A trainer's control.json changed by hand is brought back to the journal's knobs.
        var c = try XCTUnwrap(try Control.read(e.root.control(run: "p1")))
        c.lr = 0.9
        try c.write(e.root.control(run: "p1"))
        r = try e.run("pp-select", ["population", "--sync", "--config", conf])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(try Control.read(e.root.control(run: "p1"))?.lr, 0.05)
        XCTAssertEqual(try entries(e).count, 2, "--sync journals no keep or exploit line")
        // The daily step with the same config goes on to a decision (a keep: no eval set yet).
        r = try e.run("pp-select", ["population", "--config", conf])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("no decision yet"), r.stderr)
        // Usage errors: --runs prints names only; --sync decides nothing.
        XCTAssertEqual(try e.run("pp-select", ["population", "--runs", "--sync", "--config", conf]).status, 64)
        XCTAssertEqual(try e.run("pp-select", ["population", "--sync", "--force", "--config", conf]).status, 64)
        // A corrupt config: 65, naming the file.
        try FileIO.publish(#"{"runs": {"p1": {"lr": 0.05}, "p 2": {"lr": 0.3}}}"#, to: conf)
        r = try e.run("pp-select", ["population", "--runs", "--config", conf])
        XCTAssertEqual(r.status, 65)
        XCTAssertTrue(r.stderr.contains(conf) && r.stderr.contains("not a population run name"), r.stderr)
    }

    /// A result's file name gives back its checkpoint and run (runs may hold "--"); other
    /// eval sets and other names give nothing (pp-eval's metrics choose results this way).
    func testResultNamesParseBack() {
        let e = String(repeating: "ab", count: 32), other = String(repeating: "cd", count: 32)
        let file = "ckpt-20261126T010000Z-000000000042.ppc"
        for run in ["main", "p1", "a--b"] {
            let name = EvalNames.base(checkpointFile: file, run: run, evalset: e) + ".json"
            let parts = EvalNames.resultParts(name, evalset: e)
            XCTAssertEqual(parts?.run, run)
            XCTAssertEqual(parts?.checkpoint.step, 42)
            XCTAssertNil(EvalNames.resultParts(name, evalset: other))
        }
        XCTAssertNil(EvalNames.resultParts("notes--" + String(e.prefix(16)) + ".json", evalset: e))
        XCTAssertNil(EvalNames.resultParts(EvalNames.base(checkpointFile: file, run: "main", evalset: e) + ".pex", evalset: e))
    }
}
