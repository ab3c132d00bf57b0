#!/usr/bin/env python3
"""bench/accuracy.py: the static accuracy check of `make bench` (issue 19), also run alone by
`make bench-accuracy`. It is not a speed comparison (bench.py is) and not a drift replay
(drift.py is): it asks one question on test sets large enough to answer it, "is pp-train at
its default settings as accurate as fastText's best setting and Vowpal Wabbit?", with 95%
confidence intervals.

Data sets, built at run time from what this machine's Debian packages give (nothing is
downloaded from anywhere but the configured Debian archive, nothing is stored in the repo):
  debian   every binary package apt knows (`apt-cache dumpavail`): text = its one-line
           description, label = its Section (archive-area prefix "contrib/" dropped); sections
           with fewer than 20 packages are left out, as are exact repeats of a text (the first
           package by name keeps it). ~60k examples, ~55 labels.
  wordnet  WordNet 3.0 from Debian's wordnet-base package (`apt-get download`, unpacked with
           dpkg-deb, no install): text = a synset's gloss (definition and examples), label = its
           lexicographer file (noun.animal, verb.motion, adj.all, ...; names from the
           package's lexnames(5WN) page). ~117k examples, 45 labels.
Split: an example is a test example when the first byte of SHA-1("SET:" + group key) is
below 51 (20%): the group is the Debian source package (binary packages of one source never
straddle the split) or the WordNet synset. The training examples are then shuffled with a
fixed seed (Python's random.Random(19)). Deterministic for a given apt package list; the
counts and the SHA-256 of the built files are printed and stored, so runs on different
package lists are told apart.

Every tool gets the same tokens: the texts go through `pp-ingest` (--holdout 0) and come back
as fastText lines from `pp-ingest cat` (the project's tokenizer), which fastText and VW read.
  pp-train   its defaults (words + bigrams, char 3..6-grams, dim 100, 2M buckets, min-count
             5; a model `--passes` creates takes the token sub-word weight and lr 0.1, the
             static recipe) with --once --passes P (default 5) --threads 2; more variants with
             ACC_PP_VARIANTS="name=flags;name=flags" (e.g. "lr0.3=--lr 0.3"; the stream
             defaults: "each=--subword-weight each --lr 0.2")
  fastText   its defaults (`supervised`: lr 0.1, 5 epochs, words only, dim 100, min-count 1),
             and the best setting of a small grid (lr 0.1/0.5/1.0 x word n-grams 1/2 x
             epochs 5/15 x char n-grams none/3..6) chosen on a validation split (the last 10% of
             the shuffled training examples) and retrained on all of them
  VW         --oaa N --ngram 2 -b 24, P passes (as bench.py's row 1a)
Accuracy is top-1 over every test example; the interval is Wilson's 95% score interval.

Environment: PP_BIN (required), ACC_SETS (default debian,wordnet), ACC_PASSES (5),
ACC_PP_VARIANTS, ACC_NO_REFS=1 (pp-train only), ACC_GRID=small (the 24 settings above) |
quick (lr 0.5/1.0 x bigrams x 5 epochs x char n-grams none/3..6: 4 settings, for a loaded
machine) | none, BENCH_WORK.
Output: the table on stdout; bench/results/accuracy.json (or ACC_OUT).
Exit status: 0 done (a set that cannot be built is reported and skipped), 1 a tool failed,
64 usage.
"""

import gzip
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PP_BIN = os.environ.get("PP_BIN", "")
WORK = os.path.abspath(os.path.join(os.environ.get("BENCH_WORK") or os.path.join(HERE, "work"), "accuracy"))
REF_PY = os.environ.get("BENCH_PYTHON") or os.path.join(HERE, "venv", "bin", "python")
SETS = [s for s in os.environ.get("ACC_SETS", "debian,wordnet").split(",") if s]
PASSES = int(os.environ.get("ACC_PASSES", "5"))
NO_REFS = os.environ.get("ACC_NO_REFS", "") not in ("", "0")
GRID = os.environ.get("ACC_GRID", "small")
OUT = os.environ.get("ACC_OUT") or os.path.join(HERE, "results", "accuracy.json")
THREADS = 2
TEST_CUT = 51          # first SHA-1 byte below this: test (51/256 = 19.9%)
MIN_SECTION = 20


def say(msg):
    print(f"bench-accuracy: {msg}", file=sys.stderr, flush=True)


class Fail(Exception):
    pass


def run(cmd, stdout=None, ok=(0,)):
    with open(os.path.join(WORK, "last.err"), "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.run([str(c) for c in cmd], stdout=stdout or subprocess.PIPE, stderr=err)
        secs = time.perf_counter() - t0
    if p.returncode not in ok:
        with open(os.path.join(WORK, "last.err"), errors="replace") as f:
            tail = [l.strip() for l in f if l.strip()][-3:]
        raise Fail(f"{os.path.basename(str(cmd[0]))} {' '.join(str(c) for c in cmd[1:3])}... exited {p.returncode}: {' | '.join(tail)}")
    out = p.stdout.decode("utf-8", "replace") if stdout is None else ""
    return out, secs


def last_json(out):
    for line in reversed(out.splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)
    raise Fail("no JSON line on stdout")


def wilson(k, n, z=1.959964):
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def test_key(set_name, group):
    return hashlib.sha1(f"{set_name}:{group}".encode()).digest()[0] < TEST_CUT


# ----------------------------------------------------------------------------------------
# Data sets: lists of (group, label, text)

def build_debian():
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, check=True).stdout.decode("utf-8", "replace")
    recs = []
    for stanza in out.split("\n\n"):
        f = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, _, v = line.partition(":")
                f[k] = v.strip()
        if "Package" not in f or "Section" not in f or "Description" not in f:
            continue
        section = f["Section"].split("/")[-1]
        source = f.get("Source", f["Package"]).split(" ")[0]
        recs.append((f["Package"], source, section, f["Description"]))
    recs.sort()
    seen, rows = set(), []
    for pkg, source, section, text in recs:
        if text in seen:
            continue
        seen.add(text)
        rows.append((source, section, text))
    counts = {}
    for _, s, _ in rows:
        counts[s] = counts.get(s, 0) + 1
    return [r for r in rows if counts[r[1]] >= MIN_SECTION]


def build_wordnet(d):
    deb_dir = os.path.join(d, "deb")
    os.makedirs(deb_dir, exist_ok=True)
    debs = [n for n in os.listdir(deb_dir) if n.startswith("wordnet-base_") and n.endswith(".deb")]
    if not debs:
        say("wordnet: apt-get download wordnet-base (~6.5 MB, from the configured Debian archive)")
        p = subprocess.run(["apt-get", "download", "wordnet-base"], cwd=deb_dir, capture_output=True)
        if p.returncode != 0:
            raise Fail("apt-get download wordnet-base failed: " + p.stderr.decode(errors="replace").strip().splitlines()[-1:][0]
                       if p.stderr.strip() else "apt-get download wordnet-base failed")
        debs = [n for n in os.listdir(deb_dir) if n.endswith(".deb")]
    x = os.path.join(d, "x")
    shutil.rmtree(x, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", os.path.join(deb_dir, sorted(debs)[-1]), x], check=True)
    base = None
    for root, _, files in os.walk(x):
        if "data.noun" in files:
            base = root
    if base is None:
        raise Fail("wordnet-base: no data.noun in the package")
    # The lexicographer files' names (noun.animal, ...): the table of the package's
    # lexnames(5WN) man page ("00<TAB>adj.all<TAB>all adjective clusters").
    lexnames = {}
    for root, _, files in os.walk(x):
        for n in files:
            if n.startswith("lexnames.") and n.endswith(".gz"):
                with gzip.open(os.path.join(root, n), "rt", encoding="utf-8", errors="replace") as f:
                    for line in f:
                        m = re.match(r"^(\d\d)\t(\S+)\s*\t", line)
                        if m:
                            lexnames[int(m.group(1))] = m.group(2)
    rows = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in open(os.path.join(base, "data." + pos), encoding="utf-8", errors="replace"):
            if line.startswith("  ") or "|" not in line:
                continue
            head, _, gloss = line.partition(" | ")
            p = head.split()
            lex = int(p[1])
            rows.append((f"{pos}:{p[0]}", lexnames.get(lex, f"lex{lex:02d}"), gloss.strip()))
    shutil.rmtree(x, ignore_errors=True)
    return rows


def prepare(set_name):
    d = os.path.join(WORK, set_name)
    os.makedirs(d, exist_ok=True)
    if set_name == "debian":
        rows = build_debian()
    elif set_name == "wordnet":
        rows = build_wordnet(d)
    else:
        raise Fail(f"unknown data set {set_name} (known: debian, wordnet)")
    train = [r for r in rows if not test_key(set_name, r[0])]
    test = [r for r in rows if test_key(set_name, r[0])]
    random.Random(19).shuffle(train)
    files = {}
    for tag, part in (("train", train), ("test", test)):
        path = os.path.join(d, tag + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i, (g, label, text) in enumerate(part):
                f.write(json.dumps({"id": f"{tag}-{i}", "label": label, "text": text}, ensure_ascii=False) + "\n")
        files[tag] = path
    digest = hashlib.sha256(open(files["train"], "rb").read() + open(files["test"], "rb").read()).hexdigest()[:16]
    # Tokens: through pp-ingest (no holdout, no batch checks: the test set must stay whole),
    # back as fastText lines.
    info = {"set": set_name, "sha256_16": digest}
    for tag in ("train", "test"):
        root = os.path.join(d, "root-" + tag)
        shutil.rmtree(root, ignore_errors=True)
        run([os.path.join(PP_BIN, "pp-ingest"), "--root", root, "--holdout", 0, "--settle", 0, "--no-checks", files[tag]])
        with open(os.path.join(d, tag + ".ft"), "wb") as f:
            run([os.path.join(PP_BIN, "pp-ingest"), "cat", "--root", root, os.path.join(root, "shards")], stdout=f)
        lines = [l for l in open(os.path.join(d, tag + ".ft"), encoding="utf-8") if l.strip()]
        info[tag + "_examples"] = len(lines)
        info[tag + "_tokens"] = sum(l.count(" ") for l in lines)
    labels = sorted({l.split(" ", 1)[0] for l in open(os.path.join(d, "train.ft"), encoding="utf-8")}
                    | {l.split(" ", 1)[0] for l in open(os.path.join(d, "test.ft"), encoding="utf-8")})
    info["labels"] = len(labels)
    index = {lab: i + 1 for i, lab in enumerate(labels)}
    for tag in ("train", "test"):
        with open(os.path.join(d, tag + ".ft"), encoding="utf-8") as fin, \
             open(os.path.join(d, tag + ".vw"), "w", encoding="utf-8") as fout:
            for line in fin:
                lab, _, text = line.rstrip("\n").partition(" ")
                fout.write(f"{index[lab]} | {text}\n")
    # The validation split for fastText's grid: the last 10% of the (shuffled) training lines.
    lines = open(os.path.join(d, "train.ft"), encoding="utf-8").readlines()
    cut = len(lines) - len(lines) // 10
    with open(os.path.join(d, "fit.ft"), "w", encoding="utf-8") as f:
        f.writelines(lines[:cut])
    with open(os.path.join(d, "val.ft"), "w", encoding="utf-8") as f:
        f.writelines(lines[cut:])
    info["dir"] = d
    say(f"{set_name}: {info['train_examples']} training examples ({info['train_tokens']} tokens), "
        f"{info['test_examples']} test, {info['labels']} labels, data sha256 {digest}")
    return info


# ----------------------------------------------------------------------------------------
# The learners

def pp_variants():
    out = [("defaults", [])]
    for part in os.environ.get("ACC_PP_VARIANTS", "").split(";"):
        if part.strip():
            name, _, flags = part.partition("=")
            out.append((name.strip(), flags.split()))
    return out


def pp_train(info, name, flags):
    d = info["dir"]
    root = os.path.join(d, "root-train")
    run_name = "acc-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    shutil.rmtree(os.path.join(root, "runs", run_name), ignore_errors=True)
    out, secs = run([os.path.join(PP_BIN, "pp-train"), "--root", root, "--run", run_name, "--once",
                     "--passes", PASSES, "--threads", THREADS] + flags)
    ckpt = [l for l in out.splitlines() if l.strip()][-1].strip()
    size = os.path.getsize(ckpt)
    j = last_json(run([os.path.join(PP_BIN, "pp-eval"), ckpt, "--root", root, "--data",
                       os.path.join(d, "root-test", "shards"), "--no-store"])[0])
    shutil.rmtree(os.path.join(root, "runs", run_name), ignore_errors=True)
    tokens = info["train_tokens"] * PASSES
    return {"accuracy": j["accuracy"], "examples": j["examples"], "seconds": secs,
            "tokens_per_second": tokens / secs, "checkpoint_bytes": size}


def ref(module_script, args):
    return last_json(run([REF_PY, os.path.join(HERE, module_script)] + args)[0])


def fasttext(info, s, train_file, test_file):
    model = os.path.join(WORK, "ft.bin")
    t0 = time.perf_counter()
    ref("ref_fasttext.py", ["train", "--input", train_file, "--output", model, "--dim", 100,
                            "--word-ngrams", s["ngrams"], "--minn", s["minn"], "--maxn", s["maxn"],
                            "--bucket", 2000000, "--lr", s["lr"], "--epoch", s["epoch"],
                            "--thread", THREADS])
    secs = time.perf_counter() - t0
    j = ref("ref_fasttext.py", ["accuracy", "--model", model, "--input", test_file])
    os.remove(model)
    return {"accuracy": j["accuracy"], "examples": j["examples"], "seconds": secs}


def fasttext_best(info):
    d = info["dir"]
    grid = []
    quick = GRID == "quick"
    for lr in ((0.5, 1.0) if quick else (0.1, 0.5, 1.0)):
        for ng in ((2,) if quick else (1, 2)):
            for ep in ((5,) if quick else (5, 15)):
                for mm in ((0, 0), (3, 6)):
                    grid.append({"lr": lr, "ngrams": ng, "epoch": ep, "minn": mm[0], "maxn": mm[1]})
    best, tried = None, []
    for s in grid:
        r = fasttext(info, s, os.path.join(d, "fit.ft"), os.path.join(d, "val.ft"))
        tried.append({**s, "val_accuracy": r["accuracy"]})
        if best is None or r["accuracy"] > best[1]:
            best = (s, r["accuracy"])
    say(f"{info['set']}: fastText best on validation: {best[0]} ({best[1]:.4f})")
    r = fasttext(info, best[0], os.path.join(d, "train.ft"), os.path.join(d, "test.ft"))
    r.update(setting=best[0], val_accuracy=best[1], grid=tried)
    return r


def vw(info):
    d = info["dir"]
    model = os.path.join(WORK, "vw.model")
    t0 = time.perf_counter()
    ref("ref_vw.py", ["train", "--data", os.path.join(d, "train.vw"), "--model", model, "--oaa", info["labels"],
                      "--passes", PASSES, "--ngram", 2])
    secs = time.perf_counter() - t0
    j = ref("ref_vw.py", ["test", "--model", model, "--data", os.path.join(d, "test.vw")])
    os.remove(model)
    return {"accuracy": j["accuracy"], "examples": j["examples"], "seconds": secs}


def main():
    if not PP_BIN or not os.access(os.path.join(PP_BIN, "pp-train"), os.X_OK):
        print("bench-accuracy: PP_BIN must name a folder with pp-ingest, pp-train, pp-eval (make bench-accuracy sets it)",
              file=sys.stderr)
        return 64
    os.makedirs(WORK, exist_ok=True)
    refs_ok = not NO_REFS and os.access(REF_PY, os.X_OK)
    if not refs_ok and not NO_REFS:
        say("no bench/venv: fastText and VW skipped (bench/setup.sh drift installs them)")
    results, failed = [], False
    for set_name in SETS:
        try:
            info = prepare(set_name)
        except (Fail, OSError, subprocess.CalledProcessError) as e:
            say(f"{set_name}: data set not built, skipped: {e}")
            results.append({"set": set_name, "skipped": str(e)})
            continue
        entry = {"set": set_name, "data": {k: v for k, v in info.items() if k != "dir"}, "rows": []}
        jobs = []
        for name, flags in pp_variants():
            jobs.append((f"pp-train {name}" + (f" ({' '.join(flags)})" if flags else ""),
                         lambda f=flags, n=name: pp_train(info, n, f)))
        if refs_ok:
            jobs.append(("fastText defaults (lr 0.1, 5 epochs, words)",
                         lambda: fasttext(info, {"lr": 0.1, "ngrams": 1, "epoch": 5, "minn": 0, "maxn": 0},
                                          os.path.join(info["dir"], "train.ft"), os.path.join(info["dir"], "test.ft"))))
            if GRID != "none":
                jobs.append(("fastText best of grid", lambda: fasttext_best(info)))
            jobs.append((f"VW --oaa, bigrams, {PASSES} passes", lambda: vw(info)))
        for what, fn in jobs:
            say(f"{set_name}: {what}")
            try:
                r = fn()
            except (Fail, OSError) as e:
                say(f"{set_name}: {what} failed: {e}")
                failed = True
                entry["rows"].append({"what": what, "failed": str(e)})
                continue
            k = round(r["accuracy"] * r["examples"])
            r["ci95"] = wilson(k, r["examples"])
            if "setting" in r:
                s = r["setting"]
                what += f" [lr {s['lr']}, {s['epoch']} ep, ngrams {s['ngrams']}" + \
                        (f", char {s['minn']}..{s['maxn']}" if s["maxn"] else "") + "]"
            r["what"] = what
            entry["rows"].append(r)
        results.append(entry)
    print(f"bench-accuracy, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {PASSES} passes, {THREADS} threads")
    for e in results:
        if "skipped" in e:
            print(f"\n{e['set']}: skipped ({e['skipped']})")
            continue
        dd = e["data"]
        print(f"\n{e['set']}: {dd['train_examples']} train / {dd['test_examples']} test examples, {dd['labels']} labels "
              f"(data sha256 {dd['sha256_16']})")
        print(f"  {'learner':<62} {'accuracy':>8}  {'95% CI':<15} {'train s':>8} {'tokens/s':>9}")
        for r in e["rows"]:
            if "failed" in r:
                print(f"  {r['what']:<62} FAILED: {r['failed']}")
                continue
            tps = f"{r['tokens_per_second'] / 1e6:.2f}M" if "tokens_per_second" in r else "-"
            print(f"  {r['what']:<62} {r['accuracy']:8.4f}  [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
                  f"{r['seconds']:8.1f} {tps:>9}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "passes": PASSES,
                   "results": results}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, OUT)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
