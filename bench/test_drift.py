"""Tests of bench/drift.py's own logic (issue 12): week cut-offs (no record is ever scored by
a model that trained on it), the B1 lag, the references on a stream built so that any leak or
missing lag shows in the accuracy, CPU accounting, the scores, and the tokenizer port against
`pp-ingest cat`. Run by `make test` with bench/venv's python (fastText, VW) and $PP_BIN.

    PP_BIN=DIR bench/venv/bin/python -m unittest -v bench/test_drift.py
"""

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
spec = importlib.util.spec_from_file_location("drift", os.path.join(HERE, "drift.py"))
drift = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drift)
PP_BIN = os.environ.get("PP_BIN", "")


def have(module):
    return importlib.util.find_spec(module) is not None


class Weeks(unittest.TestCase):
    def test_calendar_weeks_cross_years_and_keep_empty_weeks(self):
        ws = drift.calendar_weeks("2020-W52", "2021-W02")
        self.assertEqual(ws, ["2020-W52", "2020-W53", "2021-W01", "2021-W02"])
        self.assertEqual(drift.week_start("2021-W01") - drift.week_start("2020-W53"), drift.WEEK)
        self.assertEqual(drift.week_name(drift.week_start("2024-W10") + 3 * drift.DAY), "2024-W10")

    def test_split_and_period(self):
        weeks = ["2021-W50", "2022-W01", "2022-W03", "2023-W01"]
        warm, per = drift.split_weeks(weeks, drift.parse_period("2022"))
        self.assertEqual(warm, ["2021-W50"])
        self.assertEqual(per, ["2022-W01", "2022-W02", "2022-W03"])
        with self.assertRaises(drift.HarnessError):
            drift.split_weeks(weeks, (2021, 2023))      # no warm-up before 2021
        with self.assertRaises(ValueError):
            drift.parse_period("2025-2023")

    def test_no_strategy_trains_on_the_week_it_scores_and_B1_lags_one_more(self):
        first = 40
        for w in range(first, first + 200):
            for s in drift.STRATEGIES:
                self.assertLess(drift.train_through(s, w, first), w, s)
            self.assertEqual(drift.train_through("B1", w, first), drift.train_through("O", w, first) - 1)
            self.assertEqual(drift.train_through("F", w, first), first - 2)
            self.assertEqual(drift.train_through("P-dep", w, first), w - 1)

    def test_list_stream_refuses_strange_names(self):
        d = tempfile.mkdtemp()
        try:
            open(os.path.join(d, "2020-W01.jsonl"), "w").close()
            open(os.path.join(d, "README.md"), "w").close()
            self.assertEqual(list(drift.list_stream(d)), ["2020-W01"])
            open(os.path.join(d, "notes.txt"), "w").close()
            with self.assertRaises(drift.HarnessError):
                drift.list_stream(d)
        finally:
            shutil.rmtree(d)


class Scores(unittest.TestCase):
    def test_tally_accuracy_and_macro_f1(self):
        t = drift.Tally()
        for g, p in [("a", "a"), ("a", "b"), ("b", "b"), ("c", None)]:
            t.add("2020-W01", g, p)
        s = t.summary(["2020-W01"])
        self.assertEqual(s["examples"], 4)
        self.assertAlmostEqual(s["accuracy"], 0.5)
        # a: tp1 fn1 -> 2/3; b: tp1 fp1 -> 2/3; c: fn1 -> 0
        self.assertAlmostEqual(s["macro_f1"], (2 / 3 + 2 / 3 + 0) / 3)

    def test_error_reduction_and_its_interval(self):
        errs = {"B1": [10, 10, 10, 10], "X": [5, 5, 5, 5]}
        v, lo, hi = drift.error_reduction(errs, [20] * 4, "B1", "X", random.Random(1), rounds=200)
        self.assertAlmostEqual(v, 0.5)
        self.assertAlmostEqual(lo, 0.5)
        self.assertAlmostEqual(hi, 0.5)
        errs = {"B1": [10, 2, 10, 2], "X": [5, 4, 5, 4]}
        v, lo, hi = drift.error_reduction(errs, [20] * 4, "B1", "X", random.Random(1), rounds=400)
        self.assertAlmostEqual(v, 1 - 18 / 24)
        self.assertLess(lo, v)
        self.assertGreater(hi, v)


class CPUAccounting(unittest.TestCase):
    def test_cpu_of_a_child_is_counted_and_its_sleep_is_not(self):
        d = tempfile.mkdtemp()
        try:
            burn = os.path.join(d, "pp-burn")
            with open(burn, "w") as f:
                f.write("#!/bin/sh\nexec %s -c 'import time, sys\nt = time.process_time()\n"
                        "while time.process_time() - t < float(sys.argv[1]): pass\ntime.sleep(float(sys.argv[2]))' \"$@\"\n"
                        % sys.executable)
            os.chmod(burn, 0o755)
            tools = drift.Tools(d, d, os.path.join(d, "clock"), d)
            tools.run("burn", ["pp-burn", "0.4", "0"])
            self.assertGreaterEqual(tools.cpu["burn"], 0.35)
            self.assertLess(tools.cpu["burn"], 2.0)
            tools.run("sleep", ["pp-burn", "0", "0.5"])
            self.assertLess(tools.cpu["sleep"], 0.2)
            with self.assertRaises(drift.HarnessError):
                tools.run("fails", ["pp-burn", "x", "0"])
        finally:
            shutil.rmtree(d)


@unittest.skipUnless(have("fasttext") and have("vowpalwabbit"), "needs bench/venv (bench/setup.sh drift)")
class References(unittest.TestCase):
    """A stream where week k holds 12 records "tk" labelled Lk and 12 records "t(k-1)"
    labelled L(k-1): a model trained through week w-1 gets half of week w right, one trained
    through w-2 none, one that saw week w itself all of them."""

    def test_lags_of_B1_O_F_and_V(self):
        d = tempfile.mkdtemp()
        try:
            weeks = drift.calendar_weeks("2021-W40", "2022-W04")
            first = weeks.index("2022-W01")
            cal = []
            for k, w in enumerate(weeks):
                p = os.path.join(d, f"{w}.jsonl")
                with open(p, "w") as f:
                    for j in range(12):
                        f.write(json.dumps({"text": f"tok{k} x{j}", "label": f"L{k}"}) + "\n")
                        if k:
                            f.write(json.dumps({"text": f"tok{k - 1} y{j}", "label": f"L{k - 1}"}) + "\n")
                cal.append([w, p])
            out = os.path.join(d, "refs.jsonl")
            runs = {}
            for jobs in (1, 2):
                out = os.path.join(d, f"refs-{jobs}.jsonl")
                spec = {"weeks": cal, "first_eval": first, "work": d, "out": out, "seed": 1, "quick": True, "grid": [[1.0, 50]],
                        "jobs": jobs}
                with open(os.path.join(d, "spec.json"), "w") as f:
                    json.dump(spec, f)
                subprocess.run([sys.executable, os.path.join(HERE, "drift.py"), "--ref-worker", os.path.join(d, "spec.json")],
                               check=True, stdout=subprocess.DEVNULL)
                with open(out) as f:
                    runs[jobs] = [json.loads(l) for l in f]
            rows = runs[1]
            # The retrains in two processes give the same predictions as in one (deterministic).
            self.assertEqual([r.get("pred") for r in runs[2]], [r.get("pred") for r in rows])
            scored = [r for r in rows if "gold" in r]
            self.assertEqual([r["week"] for r in scored], weeks[first:])
            for r in scored:
                acc = {s: sum(g == p for g, p in zip(r["gold"], r["pred"][s])) / len(r["gold"]) for s in drift.REFS}
                self.assertAlmostEqual(acc["O"], 0.5, delta=0.1, msg=r["week"])
                self.assertLess(acc["B1"], 0.1, r["week"])
                self.assertLess(acc["F"], 0.1, r["week"])
                self.assertAlmostEqual(acc["V"], 0.5, delta=0.2, msg=r["week"])
            done = rows[-1]
            self.assertTrue(done["done"])
            self.assertGreater(done["cpu"]["B1"], 0)
            self.assertGreater(done["cpu"]["V"], 0)
        finally:
            shutil.rmtree(d)


class Harness(unittest.TestCase):
    def test_scoring_refuses_a_week_already_delivered(self):
        d = tempfile.mkdtemp()
        try:
            args = types.SimpleNamespace(bin=d, train_flags="")
            pp = drift.Perpetuum(args, d)
            os.makedirs(os.path.join(pp.root, "archive"))
            open(os.path.join(pp.root, "archive", "2023-W05.jsonl.zst"), "w").close()
            with self.assertRaises(drift.HarnessError):
                pp.score("2023-W05", [{"text": "x", "label": "a"}])
            os.remove(os.path.join(pp.root, "archive", "2023-W05.jsonl.zst"))
            os.makedirs(os.path.join(pp.root, "shards"))
            landed = drift.week_start("2023-W06") + drift.DELIVER_AFTER - 60   # week 2023-W05's shard
            stamp = drift.datetime.datetime.fromtimestamp(landed, drift.datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            open(os.path.join(pp.root, "shards", f"{stamp}-abc-000.pps"), "w").close()
            with self.assertRaises(drift.HarnessError):
                pp.score("2023-W05", [{"text": "x", "label": "a"}])
        finally:
            shutil.rmtree(d)


@unittest.skipUnless(PP_BIN, "needs PP_BIN (the built tools)")
class Tokenizer(unittest.TestCase):
    def test_port_matches_pp_ingest_cat_on_real_weeks(self):
        d = tempfile.mkdtemp()
        try:
            texts = []
            for w in ("2016-W07", "2016-W08"):
                for r in drift.read_week(os.path.join(REPO, "data", "git", "stream", f"{w}.jsonl.zst")):
                    texts.append(r["text"])
            texts += ["Ünïcode ÉCOLE naïve_x Straße İstanbul ΣΑΣ 日本語テキスト a\u0301b", "x" * 130 + " é" * 3 + " " + "é" * 60]
            inp = os.path.join(d, "in.jsonl")
            with open(inp, "w") as f:
                for i, t in enumerate(texts):
                    f.write(json.dumps({"text": t, "label": f"l{i}"}) + "\n")
            root = os.path.join(d, "root")
            subprocess.run([os.path.join(PP_BIN, "pp-ingest"), "--root", root, "--holdout", "0", "--settle", "0",
                            "--no-checks", inp], check=True, capture_output=True)
            out = subprocess.run([os.path.join(PP_BIN, "pp-ingest"), "cat", "--root", root, os.path.join(root, "shards")],
                                 check=True, capture_output=True, text=True).stdout
            got = {}
            for line in out.splitlines():
                lab, _, toks = line.partition(" ")
                got[lab[len("__label__"):]] = toks
            self.assertGreater(len(got), 50)
            for i, t in enumerate(texts):
                if f"l{i}" in got:
                    self.assertEqual(" ".join(drift.tokenize(t)), got[f"l{i}"], t[:80])
        finally:
            shutil.rmtree(d)

class Population(unittest.TestCase):
    def test_population_spec(self):
        self.assertEqual(drift.population_lrs("3"), [0.1, 0.2, 0.4])
        self.assertEqual(drift.population_lrs("0.05,0.3"), [0.05, 0.3])
        for bad in ("1", "9", "0.1"):
            with self.assertRaises(drift.HarnessError):
                drift.population_lrs(bad)


if __name__ == "__main__":
    unittest.main()
