#!/usr/bin/env python3
"""bench/bench.py: the comparisons of `make bench` (issue 4), driven by bench/run.sh.

Perpetuum's tools (from $PP_BIN) against fastText, Vowpal Wabbit, PyTorch and zstd, on the
same data, the same tokens and the same hyperparameters, 2 threads. Each comparison
alternates its commands (A B A B ...) BENCH_REPS times and reports the median ratio and the
spread (min..max) of the per-round ratios, so that a noisy shared machine moves both sides.

Data: every *.jsonl[.zst] of $BENCH_DATA (default: the repo's demo/data), oldest 80% of the
files ("weeks", by name) and newest 20% ingested by pp-ingest with a 10% holdout; the tokens
are exported with `pp-ingest cat`, so every tool sees identical tokens and the same
train/test split. The training set is repeated (each copy shuffled with its own seed) until
one pass holds at least BENCH_MIN_TOKENS tokens; those copies are ingested again so that
pp-train reads exactly what the references read.

Not here: no assertion on targets (a missed target is printed as MISS, the run still
succeeds), and no Perpetuum code: this only runs the built tools.
Exit status: 0 when every comparison ran or was skipped, 1 when a built tool failed.
Python standard library only: it runs without bench/venv (quick mode skips the references).
"""

import datetime
import glob
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def env_num(name, default, kind=int):
    v = os.environ.get(name, "")
    return kind(v) if v else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
PP_BIN = os.environ.get("PP_BIN", "")
DATA = os.path.abspath(os.environ.get("BENCH_DATA") or os.path.join(REPO, "demo", "data"))
WORK = os.path.abspath(os.environ.get("BENCH_WORK") or os.path.join(HERE, "work"))
REPS = env_num("BENCH_REPS", 1 if QUICK else 3)
PASSES = env_num("BENCH_PASSES", 5)
MIN_TOKENS = env_num("BENCH_MIN_TOKENS", 0 if QUICK else 5_000_000)
LR = env_num("BENCH_LR", 0.5, float)
LR_HIDDEN = env_num("BENCH_LR_HIDDEN", LR, float)
TORCH_LRS = os.environ.get("BENCH_TORCH_LRS", "0.02,0.05,0.1")
ONLY = {s for s in os.environ.get("BENCH_ONLY", "").split(",") if s}
REF_PY = os.environ.get("BENCH_PYTHON") or os.path.join(HERE, "venv", "bin", "python")
OUT = os.environ.get("BENCH_OUT") or (os.path.join(WORK, "quick.json") if QUICK
                                      else os.path.join(HERE, "results", "latest.json"))
THREADS, DIM, HIDDEN, DROPOUT, NGRAMS = 2, 100, 256, 0.2, 2
# Quick mode exercises every step at a small scale: its figures mean nothing.
BUCKET = env_num("BENCH_BUCKET", 100_000 if QUICK else 2_000_000)
HOLDOUT = 0.1
ACC_NOISE = 0.005          # the least "within noise" margin for accuracy targets (see row())
INGEST_MIN_BYTES = 4_000_000 if QUICK else 48_000_000
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
LOGS = os.path.join(WORK, "logs")


def say(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Skip(Exception):
    """A side that cannot run here (tool not built, reference not installed)."""


class Fail(Exception):
    """A built tool that failed: reported, and the run exits 1 at the end."""


# ----------------------------------------------------------------------------------------
# Running and timing commands

class Ran:
    def __init__(self, rc, seconds, rss_kb, out, err_path):
        self.rc, self.seconds, self.rss_kb, self.out, self.err_path = rc, seconds, rss_kb, out, err_path

    def err_tail(self):
        try:
            with open(self.err_path, errors="replace") as f:
                lines = [l.strip() for l in f if l.strip() and not l.startswith(("\tCommand", "Command"))]
            errs = [l for l in lines if "error" in l.lower() or "fail" in l.lower()]
            return (errs or lines or [""])[-1]
        except OSError:
            return ""

    def json(self):
        """The last JSON object line of stdout."""
        for line in reversed((self.out or "").splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise Fail(f"no JSON on stdout (stderr: {self.err_tail()})")


_seq = [0]


def run(name, cmd, stdin=None, stdout=None, env=None, shell=False):
    """Runs `cmd`, timing its wall clock (and its peak RSS through GNU time when present)."""
    _seq[0] += 1
    base = os.path.join(LOGS, f"{_seq[0]:03d}-{name}")
    if shell:
        cmd = ["bash", "-c", cmd]
    full = ([GNU_TIME, "-v", "-o", base + ".time"] if GNU_TIME else []) + cmd
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.PIPE
    try:
        with open(base + ".err", "wb") as ferr:
            t0 = time.perf_counter()
            p = subprocess.run(full, stdin=fin, stdout=fout, stderr=ferr, env=env)
            secs = time.perf_counter() - t0
    finally:
        if stdin:
            fin.close()
        if stdout:
            fout.close()
    rss = None
    if GNU_TIME:
        try:
            with open(base + ".time") as f:
                m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
                rss = int(m.group(1)) if m else None
        except OSError:
            pass
    out = p.stdout.decode("utf-8", "replace") if p.stdout is not None else None
    return Ran(p.returncode, secs, rss, out, base + ".err")


NOT_BUILT = {}


def pp(tool, args, name, ok=(0,), **kw):
    """Runs a Perpetuum tool; exit 69 (EX_UNAVAILABLE) means 'not built yet' -> Skip."""
    if tool in NOT_BUILT:
        raise Skip(NOT_BUILT[tool])
    exe = os.path.join(PP_BIN, tool)
    if not os.access(exe, os.X_OK):
        NOT_BUILT[tool] = f"{tool} not built yet (no {exe})"
        raise Skip(NOT_BUILT[tool])
    r = run(name, [exe] + [str(a) for a in args], **kw)
    if r.rc == 69:
        why = r.err_tail()
        reason = f"{tool} not built yet" + (f": {why}" if why and "not built yet" not in why else "")
        if why and "not built" not in why:
            raise Skip(reason)          # a feature of a built tool: don't give up on the tool
        NOT_BUILT[tool] = reason
        raise Skip(reason)
    if r.rc == 64 and placeholder(exe):
        NOT_BUILT[tool] = f"{tool} not built yet"
        raise Skip(NOT_BUILT[tool])
    if r.rc not in ok:
        raise Fail(f"{tool} {' '.join(str(a) for a in args[:2])}... exited {r.rc}: {r.err_tail()}")
    return r


def placeholder(exe):
    """The skeleton's placeholder tools say "Not built yet" in their --help."""
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    return "not built yet" in (r.stdout + r.stderr).lower()


REF_OK = {}


def ref_has(module):
    if module not in REF_OK:
        if not os.access(REF_PY, os.X_OK):
            REF_OK[module] = f"{module} not installed (no bench/venv: run bench/setup.sh)"
        else:
            r = subprocess.run([REF_PY, "-c", f"import {module}"], capture_output=True)
            REF_OK[module] = True if r.returncode == 0 else f"{module} does not import in bench/venv"
    if REF_OK[module] is not True:
        raise Skip(REF_OK[module])


def ref(module, script, args, name, **kw):
    ref_has(module)
    r = run(name, [REF_PY, os.path.join(HERE, script)] + [str(a) for a in args], **kw)
    if r.rc != 0:
        raise Fail(f"{script} {args[0]} exited {r.rc}: {r.err_tail()}")
    return r


def tool_run(name, shell_cmd):
    r = run(name, shell_cmd, shell=True)
    if r.rc != 0:
        raise Fail(f"`{shell_cmd}` exited {r.rc}: {r.err_tail()}")
    return r


# ----------------------------------------------------------------------------------------
# Data preparation

def read_ft(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for l in lines:
            f.write(l + "\n")


def count_tokens(lines):
    return sum(l.count(" ") for l in lines)   # "__label__X a b c": 3 spaces, 3 tokens


def raw_lines(path):
    if path.endswith(".zst"):
        data = subprocess.run(["zstd", "-dcq", path], check=True, capture_output=True).stdout
    else:
        with open(path, "rb") as f:
            data = f.read()
    return data.decode("utf-8", "replace").splitlines()


# Only used while pp-ingest is not built: an approximation of docs/tokenizer.md (runs of
# letters, digits, marks and '_', lower-cased) so the reference side can be developed. The
# result is flagged in the JSON; the Perpetuum side is skipped then anyway.
TOKEN_RE = re.compile(r"[\w\u0300-\u036f]+")


def fallback_split(files):
    train, test = [], []
    for path in files:
        for line in raw_lines(path):
            if not line.strip():
                continue
            rec = json.loads(line)
            toks = TOKEN_RE.findall(rec["text"].lower())
            ft = " ".join([f"__label__{rec['label']}"] + toks)
            key = hashlib.sha1((rec.get("id") or rec["text"]).encode()).digest()
            (test if key[0] < 256 * HOLDOUT else train).append(ft)
    return train, test


class Data:
    """Paths and counts of everything the comparisons read (see the module comment)."""


def ingest(root, files, holdout, name):
    # --no-checks: the bench ingests repeated copies on purpose (the batch checks would
    # quarantine them as duplicates); the statistics are still measured, so speed is comparable.
    pp("pp-ingest", ["--root", root, "--holdout", holdout, "--settle", 0, "--no-checks"] + files, name)


def export(root, what, out, name):
    """`pp-ingest cat`: the fastText lines of a folder of shards."""
    pp("pp-ingest", ["cat", "--root", root, what], name, stdout=out)
    return read_ft(out)


def copy_shards(src_dirs, dst):
    os.makedirs(dst, exist_ok=True)
    for d in src_dirs:
        for p in glob.glob(os.path.join(d, "*.pps")):
            shutil.copy2(p, dst)


def repeat_into_root(lines, copies, stem, root, d):
    """`copies` shuffled copies of `lines` as fastText files, ingested into `root` (no
    holdout), then exported again: the returned lines are what pp-train will read."""
    inputs = os.path.join(d, stem + "-in")
    os.makedirs(inputs, exist_ok=True)
    files = []
    base = 1_600_000_000
    for i in range(copies):
        shuffled = list(lines)
        random.Random(i).shuffle(shuffled)
        p = os.path.join(inputs, f"{stem}-{i:03d}.txt")
        write_lines(p, shuffled)
        os.utime(p, (base + 60 * i, base + 60 * i))   # shard names sort by input mtime
        files.append(p)
    ingest(root, files, 0, f"ingest-{stem}")
    out = export(root, os.path.join(root, "shards"), os.path.join(d, stem + ".ft"), f"cat-{stem}")
    if len(out) != copies * len(lines):
        say(f"data: {stem}: pp-ingest dropped {copies * len(lines) - len(out)} of {copies * len(lines)} examples "
            "as repeats within an input (the same text in two weeks); every tool reads what it kept")
    shutil.rmtree(inputs, ignore_errors=True)
    return out


def to_vw(lines, label_index, path):
    with open(path, "w", encoding="utf-8") as f:
        for l in lines:
            lab, _, text = l.partition(" ")
            f.write(f"{label_index[lab[9:]]} | {text}\n")


def prepare():
    files = sorted(os.path.join(DATA, n) for n in os.listdir(DATA)
                   if re.search(r"\.jsonl(\.zst)?$", n) and not n.startswith("."))
    if len(files) < 2:
        sys.exit(f"bench: {DATA}: need at least two *.jsonl[.zst] files (weeks)")
    d = os.path.join(WORK, "data")
    ingest_exe = os.path.join(PP_BIN, "pp-ingest")
    key = hashlib.sha256(json.dumps([
        2, files, [os.path.getsize(f) for f in files], MIN_TOKENS, QUICK, INGEST_MIN_BYTES,
        os.path.getmtime(ingest_exe) if os.path.exists(ingest_exe) else 0]).encode()).hexdigest()
    stamp = os.path.join(d, "prepared.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            info = json.load(f)
        if info.get("key") == key:
            say(f"data: reusing {d} (same inputs and pp-ingest)")
            return finish_data(d, info)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    n_old = max(1, min(len(files) - 1, round(0.8 * len(files))))
    old, new = files[:n_old], files[n_old:]
    say(f"data: {len(files)} files from {DATA}: {len(old)} older, {len(new)} newest")
    info = {"key": key, "files": len(files), "old_files": len(old), "new_files": len(new),
            "source": DATA}
    try:
        for tag, group in (("old", old), ("new", new)):
            root = os.path.join(d, "root-" + tag)
            ingest(root, group, HOLDOUT, f"ingest-{tag}")
            export(root, os.path.join(root, "shards"), os.path.join(d, f"{tag}_train.ft"), f"cat-{tag}-train")
            export(root, os.path.join(root, "holdout"), os.path.join(d, f"{tag}_test.ft"), f"cat-{tag}-test")
        info["tokens_from"] = "pp-ingest cat"
    except Skip as e:
        say(f"data: {e}; tokenizing with the Python fallback (references only)")
        info["tokens_from"] = "python fallback tokenizer (pp-ingest not built)"
        for tag, group in (("old", old), ("new", new)):
            tr, te = fallback_split(group)
            write_lines(os.path.join(d, f"{tag}_train.ft"), tr)
            write_lines(os.path.join(d, f"{tag}_test.ft"), te)
    old_train = read_ft(os.path.join(d, "old_train.ft"))
    new_train = read_ft(os.path.join(d, "new_train.ft"))
    old_test = read_ft(os.path.join(d, "old_test.ft"))
    new_test = read_ft(os.path.join(d, "new_test.ft"))
    train, test = old_train + new_train, old_test + new_test
    write_lines(os.path.join(d, "test.ft"), test)
    write_lines(os.path.join(d, "new_test.ft"), new_test)
    tokens = count_tokens(train)
    copies = max(1, math.ceil(MIN_TOKENS / max(1, tokens)))
    test_tokens = count_tokens(test)
    test_copies = max(1, math.ceil(max(MIN_TOKENS, 1) / max(1, test_tokens))) if not QUICK else 1
    info.update(train_examples=len(train), train_tokens=tokens, test_examples=len(test),
                new_test_examples=len(new_test), copies=copies, test_copies=test_copies)
    say(f"data: {len(train)} training examples ({tokens} tokens) x {copies} copies; "
        f"{len(test)} held out ({len(new_test)} from the newest weeks)")

    pp_ok = info["tokens_from"] == "pp-ingest cat"
    if pp_ok:
        copy_shards([os.path.join(d, "root-old", "holdout"), os.path.join(d, "root-new", "holdout")],
                    os.path.join(d, "test_pps"))
        copy_shards([os.path.join(d, "root-new", "holdout")], os.path.join(d, "new_test_pps"))
        rep = repeat_into_root(train, copies, "rep", os.path.join(d, "root-rep"), d)
        cold = repeat_into_root(old_train, copies, "cold", os.path.join(d, "root-cold"), d)
        cnew = repeat_into_root(new_train, copies, "cnew", os.path.join(d, "root-cnew"), d)
        trep = repeat_into_root(test, test_copies, "testrep", os.path.join(d, "root-testrep"), d)
        ingest(os.path.join(d, "root-tiny"), files[:1], 0, "ingest-tiny")
    else:
        def rep_lines(lines, k):
            out = []
            for i in range(k):
                s = list(lines)
                random.Random(i).shuffle(s)
                out += s
            return out
        rep, cold, cnew, trep = (rep_lines(train, copies), rep_lines(old_train, copies),
                                 rep_lines(new_train, copies), rep_lines(test, test_copies))
        for stem, lines in (("rep", rep), ("cold", cold), ("cnew", cnew), ("testrep", trep)):
            write_lines(os.path.join(d, stem + ".ft"), lines)
    write_lines(os.path.join(d, "call.ft"), cold + cnew)
    write_lines(os.path.join(d, "testrep.txt"), [l.partition(" ")[2] for l in trep])
    labels = sorted({l.partition(" ")[0][9:] for l in train + test})
    index = {lab: i + 1 for i, lab in enumerate(labels)}
    for stem, lines in (("rep", rep), ("test", test), ("cold", cold), ("cnew", cnew),
                        ("new_test", new_test)):
        to_vw(lines, index, os.path.join(d, stem + ".vw"))
    info.update(labels=len(labels), rep_examples=len(rep), rep_tokens=count_tokens(rep),
                cold_tokens=count_tokens(cold), cnew_tokens=count_tokens(cnew),
                call_tokens=count_tokens(cold + cnew), testrep_examples=len(trep))

    # Ingest input: the raw files, decompressed and concatenated (repeated to a size that
    # measures throughput rather than start-up).
    raw = b""
    for f in files:
        raw += ("\n".join(raw_lines(f)) + "\n").encode()
    reps = max(1, math.ceil(INGEST_MIN_BYTES / max(1, len(raw))))
    with open(os.path.join(d, "ingest-master.jsonl"), "wb") as f:
        for _ in range(reps):
            f.write(raw)
    info["ingest_bytes"] = reps * len(raw)
    with open(stamp, "w") as f:
        json.dump(info, f, indent=1)
    return finish_data(d, info)


def finish_data(d, info):
    D = Data()
    D.dir, D.info = d, info
    D.pp_data = info["tokens_from"] == "pp-ingest cat"
    for k in ("rep", "cold", "cnew", "testrep", "call", "test", "new_test"):
        setattr(D, k + "_ft", os.path.join(d, k + ".ft"))
    for k in ("rep", "test", "cold", "cnew", "new_test"):
        setattr(D, k + "_vw", os.path.join(d, k + ".vw"))
    D.testrep_txt = os.path.join(d, "testrep.txt")
    D.root_rep, D.root_cold, D.root_cnew, D.root_testrep, D.root_tiny = (
        os.path.join(d, "root-" + s) for s in ("rep", "cold", "cnew", "testrep", "tiny"))
    D.test_pps, D.new_test_pps = os.path.join(d, "test_pps"), os.path.join(d, "new_test_pps")
    D.ingest_master = os.path.join(d, "ingest-master.jsonl")
    return D


# ----------------------------------------------------------------------------------------
# Comparisons. Each returns a list of table rows (dicts); figures go into the JSON too.

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Side:
    """One side of a comparison across rounds: its results, or why it did not run."""

    def __init__(self, name):
        self.name, self.runs, self.status, self.reason = name, [], "ok", ""

    def attempt(self, fn, *args):
        if self.status != "ok":
            return None
        try:
            res = fn(*args)
            self.runs.append(res)
            return res
        except Skip as e:
            self.status, self.reason = "skip", str(e)
        except Fail as e:
            self.status, self.reason = "fail", str(e)
            FAILS.append(f"{self.name}: {e}")
        return None

    def med(self, key):
        return median([r.get(key) for r in self.runs])

    def summary(self):
        return {"name": self.name, "status": self.status, "reason": self.reason, "runs": self.runs}


FAILS = []


def ratios(a, b, key, invert=False):
    """Per-round ratios a/b of `key` (rounds where both sides ran)."""
    out = []
    for ra, rb in zip(a.runs, b.runs):
        x, y = ra.get(key), rb.get(key)
        if x and y:
            out.append(y / x if invert else x / y)
    return out


def row(cid, what, unit, a, b, key, target, better="higher", acc_key="accuracy", ratio_of=None,
        acc_target=True, note=""):
    """A table row comparing side a (Perpetuum) with side b (the reference) on `key`."""
    rs = ratio_of if ratio_of is not None else ratios(a, b, key)
    r = {"id": cid, "what": what, "unit": unit, "perpetuum": a.med(key), "reference": b.med(key),
         "reference_name": b.name, "ratio": median(rs), "ratio_min": min(rs) if rs else None,
         "ratio_max": max(rs) if rs else None, "rounds": len(rs), "target": target,
         "better": better, "acc_perpetuum": a.med(acc_key) if acc_key else None,
         "acc_reference": b.med(acc_key) if acc_key else None,
         "status_perpetuum": a.status, "reason_perpetuum": a.reason,
         "status_reference": b.status, "reason_reference": b.reason, "note": note,
         "acc_examples": b.med("examples") if acc_key else None,
         "runs_perpetuum": a.runs, "runs_reference": b.runs}
    miss = []
    if target is not None and r["ratio"] is not None:
        if (better == "higher" and r["ratio"] < target) or (better == "lower" and r["ratio"] > target):
            miss.append("speed" if unit != "MB peak" else "memory")
    if acc_key and acc_target and r["acc_perpetuum"] is not None and r["acc_reference"] is not None:
        # "Within noise": one standard error of the reference's accuracy on this test set
        # (binomial), at least ACC_NOISE. The demo's test set is small (~330 examples).
        if accuracy_missed(r, r["acc_examples"]):
            miss.append("accuracy")
    r["miss"] = miss
    return r


def accuracy_missed(r, n):
    p = r["acc_reference"]
    tol = max(ACC_NOISE, math.sqrt(p * (1 - p) / n)) if n else ACC_NOISE
    r["acc_tolerance"] = tol
    return r["acc_perpetuum"] < p - tol


def pp_eval_acc(ckpt, root, data, name):
    j = pp("pp-eval", [ckpt, "--root", root, "--data", data, "--no-store"], name).json()
    return j.get("accuracy"), j.get("examples")


def train_flags(minn=0, maxn=0, hidden=0, lr=None):
    f = ["--passes", PASSES, "--dim", DIM, "--word-ngrams", NGRAMS, "--minn", minn, "--maxn", maxn,
         "--bucket", BUCKET, "--min-count", 1, "--lr", lr if lr is not None else LR, "--threads", THREADS]
    if hidden:
        f += ["--hidden", hidden, "--dropout", DROPOUT]
    return f


def pp_train(root, run_name, flags, name, init=None):
    shutil.rmtree(os.path.join(root, "runs", run_name), ignore_errors=True)
    args = ["--root", root, "--run", run_name, "--once"] + (["--init", init] if init else []) + flags
    r = pp("pp-train", args, name)
    lines = [l for l in r.out.splitlines() if l.strip()]
    if not lines:
        raise Fail(f"pp-train printed no checkpoint path (stderr: {r.err_tail()})")
    return r, lines[-1].strip()


def drop_run(root, run_name, keep=None):
    """Removes a run's checkpoints (2M-row tables add up) unless it is kept for later steps."""
    if run_name != keep:
        shutil.rmtree(os.path.join(root, "runs", run_name), ignore_errors=True)


STATE = {}   # artefacts later comparisons reuse: last linear checkpoint, fastText model


def c1_linear(D, minn, maxn, tag):
    tokens = D.info["rep_tokens"] * PASSES
    ppside, ft = Side("pp-train"), Side("fastText")

    def a(i):
        run_name = f"lin-{tag}-{i}"
        r, ckpt = pp_train(D.root_rep, run_name, train_flags(minn, maxn), f"train-{tag}-{i}")
        acc, n = pp_eval_acc(ckpt, D.root_rep, D.test_pps, f"eval-{tag}-{i}")
        res = {"seconds": r.seconds, "tokens_per_second": tokens / r.seconds, "accuracy": acc,
               "examples": n, "rss_mb": r.rss_kb / 1024 if r.rss_kb else None,
               "checkpoint_write_seconds": (ckpt_write_log(r.err_path) or [None])[0]}
        if tag == "w2":
            STATE["ckpt"], STATE["ckpt_root"] = ckpt, D.root_rep
            if i > 0:
                drop_run(D.root_rep, f"lin-{tag}-{i - 1}")
        else:
            drop_run(D.root_rep, run_name)
        return res

    def b(i):
        model = os.path.join(WORK, f"ft-{tag}-{i}.bin")
        r = ref("fasttext", "ref_fasttext.py", [
            "train", "--input", D.rep_ft, "--output", model, "--dim", DIM, "--word-ngrams", NGRAMS,
            "--minn", minn, "--maxn", maxn, "--bucket", BUCKET, "--lr", LR, "--epoch", PASSES,
            "--thread", THREADS], f"fasttext-{tag}-{i}")
        j = ref("fasttext", "ref_fasttext.py", ["accuracy", "--model", model, "--input", D.test_ft],
                f"fasttext-acc-{tag}-{i}").json()
        res = {"seconds": r.seconds, "tokens_per_second": tokens / r.seconds,
               "accuracy": j["accuracy"], "examples": j["examples"],
               "rss_mb": r.rss_kb / 1024 if r.rss_kb else None,
               "train_seconds_in_process": r.json()["train_seconds"]}
        if tag == "w2":
            STATE["ft_model"] = model
        else:
            os.remove(model)
        return res

    for i in range(REPS):
        ppside.attempt(a, i)
        ft.attempt(b, i)
    what = "linear, words+bigrams" if tag == "w2" else "linear, char 3..6-grams"
    rows = [row(f"1{'a' if tag == 'w2' else 'b'}", what, "tokens/s", ppside, ft,
                "tokens_per_second", 1.5)]
    if tag == "w2":
        vw = Side("Vowpal Wabbit")

        def c(_):
            model = os.path.join(WORK, "vw-rep.vw")
            r = ref("vowpalwabbit", "ref_vw.py", ["train", "--data", D.rep_vw, "--model", model,
                                                  "--oaa", D.info["labels"], "--passes", PASSES,
                                                  "--ngram", NGRAMS], "vw-train")
            j = ref("vowpalwabbit", "ref_vw.py", ["test", "--model", model, "--data", D.test_vw],
                    "vw-test").json()
            os.remove(model)
            return {"seconds": r.seconds, "tokens_per_second": tokens / r.seconds,
                    "accuracy": j["accuracy"], "examples": j["examples"]}
        vw.attempt(c, 0)
        rows.append(row("1a", "linear w+b, accuracy vs VW --oaa", "tokens/s", ppside, vw,
                        "tokens_per_second", None,
                        note="VW: bigrams, 2^24 weights, its own adaptive updates; one run"))
        STATE["rss"] = (ppside, ft)
    return rows


def c2_hidden(D):
    tokens = D.info["rep_tokens"] * PASSES
    ppside, tr = Side("pp-train"), Side("PyTorch")
    pilot = {}

    def a(i):
        run_name = f"hid-{i}"
        r, ckpt = pp_train(D.root_rep, run_name, train_flags(hidden=HIDDEN, lr=LR_HIDDEN), f"train-hid-{i}")
        acc, n = pp_eval_acc(ckpt, D.root_rep, D.test_pps, f"eval-hid-{i}")
        drop_run(D.root_rep, run_name)
        return {"seconds": r.seconds, "tokens_per_second": tokens / r.seconds, "accuracy": acc,
                "examples": n}

    def b(i):
        if not pilot and QUICK:
            pilot.update(batch=64, lr=0.05, tried=[])
        if not pilot:
            say("PyTorch: choosing batch size and learning rate (one pass on a quarter of the data each)")
            pilot.update(ref("torch", "ref_torch.py", ["pilot", "--train", D.rep_ft, "--test", D.test_ft,
                                                       "--lrs", TORCH_LRS, "--threads", THREADS,
                                                       "--batches", "16,64,256", "--bucket", BUCKET],
                             "torch-pilot").json())
            say(f"PyTorch: batch {pilot['batch']}, lr {pilot['lr']:.3g}")
        r = ref("torch", "ref_torch.py", ["train", "--train", D.rep_ft, "--test", D.test_ft,
                                          "--batch", pilot["batch"], "--lr", pilot["lr"],
                                          "--epoch", PASSES, "--threads", THREADS, "--dim", DIM,
                                          "--hidden", HIDDEN, "--dropout", DROPOUT,
                                          "--bucket", BUCKET], f"torch-{i}")
        j = r.json()
        return {"seconds": j["train_seconds"], "process_seconds": r.seconds,
                "tokens_per_second": tokens / j["train_seconds"], "accuracy": j["accuracy"],
                "examples": j["examples"], "batch": j["batch"], "lr": j["lr"]}

    for i in range(REPS):
        ppside.attempt(a, i)
        tr.attempt(b, i)
    r = row("2", f"hidden {HIDDEN}+ReLU+dropout {DROPOUT}", "tokens/s", ppside, tr,
            "tokens_per_second", 3.0,
            note="PyTorch timed on its training loop only (no data loading)")
    r["pilot"] = pilot
    return [r]


def c3_continuation(D):
    ppside, ft, vw = Side("pp-train --init"), Side("fastText retrain"), Side("VW -i")
    base = {}

    def a(i):
        if "ckpt" not in base:
            say("continuation: training pp-train on the older weeks (untimed)")
            _, base["ckpt"] = pp_train(D.root_cold, "cold", train_flags(), "train-cold")
        run_name = f"cont-{i}"
        r, ckpt = pp_train(D.root_cnew, run_name, train_flags(), f"train-cont-{i}", init=base["ckpt"])
        acc, n = pp_eval_acc(ckpt, D.root_cnew, D.new_test_pps, f"eval-cont-{i}")
        drop_run(D.root_cnew, run_name)
        return {"seconds": r.seconds, "accuracy": acc, "examples": n}

    def b(i):
        model = os.path.join(WORK, "ft-all.bin")
        r = ref("fasttext", "ref_fasttext.py", [
            "train", "--input", D.call_ft, "--output", model, "--dim", DIM, "--word-ngrams", NGRAMS,
            "--minn", 0, "--maxn", 0, "--bucket", BUCKET, "--lr", LR, "--epoch", PASSES,
            "--thread", THREADS], f"fasttext-all-{i}")
        j = ref("fasttext", "ref_fasttext.py", ["accuracy", "--model", model, "--input", D.new_test_ft],
                f"fasttext-acc-all-{i}").json()
        os.remove(model)
        return {"seconds": r.seconds, "accuracy": j["accuracy"], "examples": j["examples"]}

    def c(i):
        old = os.path.join(WORK, "vw-old.vw")
        if "vw" not in base:
            say("continuation: training VW on the older weeks (untimed)")
            ref("vowpalwabbit", "ref_vw.py", ["train", "--data", D.cold_vw, "--model", old,
                                              "--oaa", D.info["labels"], "--passes", PASSES,
                                              "--ngram", NGRAMS], "vw-old")
            base["vw"] = old
        model = os.path.join(WORK, "vw-cont.vw")
        r = ref("vowpalwabbit", "ref_vw.py", ["train", "--data", D.cnew_vw, "--model", model,
                                              "--init", old, "--passes", PASSES], f"vw-cont-{i}")
        j = ref("vowpalwabbit", "ref_vw.py", ["test", "--model", model, "--data", D.new_test_vw],
                f"vw-cont-test-{i}").json()
        return {"seconds": r.seconds, "accuracy": j["accuracy"], "examples": j["examples"]}

    for i in range(REPS):
        ppside.attempt(a, i)
        ft.attempt(b, i)
        vw.attempt(c, i)
    return [row("3", "continue on newest 20% of weeks", "seconds", ppside, ft, "seconds", 0.25,
                better="lower", note="accuracy on the newest weeks' holdout"),
            row("3", "continue, vs VW -i (same new data)", "seconds", ppside, vw, "seconds", None,
                better="lower")]


def c4_eval(D):
    ev, fte, pr, ftp = Side("pp-eval"), Side("fastText test"), Side("pp-eval predict"), Side("fastText predict")
    n = D.info["testrep_examples"]
    if "ckpt" not in STATE:
        for s in (ev, pr):
            s.status, s.reason = "skip", "no pp-train checkpoint from comparison 1a"
    if "ft_model" not in STATE:
        for s in (fte, ftp):
            s.status, s.reason = "skip", "no fastText model from comparison 1a"

    def a(i):
        r = pp("pp-eval", [STATE["ckpt"], "--root", STATE["ckpt_root"], "--no-store",
                           "--data", os.path.join(D.root_testrep, "shards")], f"eval-speed-{i}")
        j = r.json()
        if j.get("examples") != n:
            say(f"warning: pp-eval counted {j.get('examples')} examples, expected {n}")
        return {"seconds": r.seconds, "examples_per_second": n / r.seconds,
                "eval_seconds_reported": j.get("seconds")}

    def b(i):
        r = ref("fasttext", "ref_fasttext.py", ["test", "--model", STATE["ft_model"], "--input", D.testrep_ft],
                f"fasttext-test-{i}")
        return {"seconds": r.seconds, "examples_per_second": n / r.seconds}

    def c(i):
        out = os.path.join(WORK, "predict.out")
        r = pp("pp-eval", ["predict", STATE["ckpt"], "-k", 1], f"predict-{i}", stdin=D.testrep_txt, stdout=out)
        got = sum(1 for _ in open(out, "rb"))
        if got != n:
            raise Fail(f"pp-eval predict printed {got} lines for {n} inputs")
        return {"seconds": r.seconds, "examples_per_second": n / r.seconds}

    def d(i):
        out = os.path.join(WORK, "predict-ft.out")
        r = ref("fasttext", "ref_fasttext.py", ["predict", "--model", STATE["ft_model"]],
                f"fasttext-predict-{i}", stdin=D.testrep_txt, stdout=out)
        return {"seconds": r.seconds, "examples_per_second": n / r.seconds}

    for i in range(REPS):
        ev.attempt(a, i)
        fte.attempt(b, i)
        pr.attempt(c, i)
        ftp.attempt(d, i)
    note = f"{n} examples, whole process (load + read + score)"
    return [row("4a", "eval (score a test set)", "examples/s", ev, fte, "examples_per_second", 1.0,
                acc_key=None, note=note),
            row("4b", "predict (text lines on stdin)", "examples/s", pr, ftp, "examples_per_second", 1.0,
                acc_key=None, note=note)]


def c5_ingest(D):
    ing, zs = Side("pp-ingest"), Side("zstd -3 -T1")
    nbytes = os.path.getsize(D.ingest_master)
    src = os.path.join(WORK, "ingest-input.jsonl")
    mb = nbytes / 1e6
    subprocess.run(["cat", D.ingest_master], stdout=subprocess.DEVNULL)   # warm the page cache

    def a(i):
        root = os.path.join(WORK, "ingest-root")
        shutil.rmtree(root, ignore_errors=True)
        if not os.path.exists(src):
            os.link(D.ingest_master, src)
        r = pp("pp-ingest", ["--root", root, "--holdout", HOLDOUT, "--settle", 0, src], f"ingest-speed-{i}")
        shutil.rmtree(root, ignore_errors=True)
        return {"seconds": r.seconds, "mb_per_second": mb / r.seconds}

    def b(i):
        out = os.path.join(WORK, "ingest-zstd.zst")
        r = tool_run(f"zstd3-{i}", f"zstd -3 -T1 -q -f '{D.ingest_master}' -o '{out}' && sync '{out}'")
        os.remove(out)
        return {"seconds": r.seconds, "mb_per_second": mb / r.seconds}

    for i in range(REPS):
        ing.attempt(a, i)
        zs.attempt(b, i)
    if os.path.exists(src):
        os.remove(src)
    return [row("5", f"ingest {mb:.0f} MB of JSON Lines", "MB/s", ing, zs, "mb_per_second", 0.5,
                acc_key=None, note="both write their output durably (fsync)")]


def ckpt_write_log(err_path):
    """(seconds, bytes) from pp-train's last `checkpoint written ... bytes=N ... seconds=S` log
    line: its own timing of serialising, compressing and publishing (fsync) a checkpoint."""
    found = None
    with open(err_path, errors="replace") as f:
        for line in f:
            if "checkpoint written" in line:
                sec = re.search(r"\bseconds=\"?([0-9.]+)", line)
                nb = re.search(r"\bbytes=\"?([0-9]+)", line)
                if sec:
                    found = (float(sec.group(1)), int(nb.group(1)) if nb else None)
    return found


def raw_size(ckpt):
    p = subprocess.run(["zstd", "-dcq", ckpt], capture_output=True)
    return len(p.stdout) if p.returncode == 0 else None


def c6_checkpoint(D):
    """Write: pp-train --init (the 1a checkpoint) --once --passes 1 on a one-file root writes a
    checkpoint as large as 1a's; its log gives the write time. Read: pp-eval of the 1a
    checkpoint on one small shard; load time = wall - its reported scoring seconds."""
    wr, zw, rd, zr = Side("pp checkpoint write"), Side("zstd -1 -T2"), Side("pp checkpoint read"), Side("zstd -d")
    raw = os.path.join(WORK, "ckpt-raw.bin")
    base = STATE.get("ckpt")
    raw_bytes = None
    if base is None:
        for x in (wr, zw, rd, zr):
            x.status, x.reason = "skip", "no pp-train checkpoint from comparison 1a"
    else:
        with open(base, "rb") as f:
            magic = f.read(4)
        if magic == b"\x28\xb5\x2f\xfd":
            with open(raw, "wb") as out:
                subprocess.run(["zstd", "-dcq", base], stdout=out, check=True)
            raw_bytes = os.path.getsize(raw)
        else:
            for x in (zw, zr):
                x.status, x.reason = "skip", "the checkpoint is not one zstd frame"
    if not D.pp_data:
        wr.status, wr.reason = "skip", "pp-ingest not built yet"
    one = sorted(glob.glob(os.path.join(D.test_pps, "*.pps")))[:1]

    def a_write(i):
        run_name = f"ckpt-{i}"
        flags = train_flags()
        flags[flags.index("--passes") + 1] = 1
        r, ckpt = pp_train(D.root_tiny, run_name, flags, f"ckpt-write-{i}", init=base)
        got = ckpt_write_log(r.err_path)
        if not got:
            raise Skip("pp-train logs no 'checkpoint written ... seconds=S' line")
        nraw = raw_size(ckpt)
        drop_run(D.root_tiny, run_name)
        return {"seconds": got[0], "mb_per_second": nraw / 1e6 / got[0], "raw_bytes": nraw,
                "file_bytes": got[1], "process_seconds": r.seconds}

    def b_write(i):
        out = raw + ".zst"
        r = tool_run(f"zstd1-{i}", f"zstd -1 -T2 -q -f '{raw}' -o '{out}' && sync '{out}'")
        return {"seconds": r.seconds, "mb_per_second": raw_bytes / 1e6 / r.seconds,
                "compressed_bytes": os.path.getsize(out)}

    def a_read(i):
        r = pp("pp-eval", [base, "--root", STATE["ckpt_root"], "--data", one[0], "--no-store"], f"ckpt-read-{i}")
        secs = r.seconds - float(r.json().get("seconds") or 0)
        return {"seconds": secs, "mb_per_second": raw_bytes / 1e6 / secs, "process_seconds": r.seconds}

    def b_read(i):
        r = tool_run(f"unzstd-{i}", f"zstd -d -q -c '{raw}.zst' > /dev/null")
        return {"seconds": r.seconds, "mb_per_second": raw_bytes / 1e6 / r.seconds}

    pr = Side("pp-eval predict")

    def first_answer(model):
        """Seconds from starting `pp-eval predict MODEL` to its first answer (load included)."""
        exe = os.path.join(PP_BIN, "pp-eval")
        t0 = time.monotonic()
        p = subprocess.Popen([exe, "predict", model], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        p.stdin.write(b"fix a crash when the index is empty\n")
        p.stdin.flush()
        first = p.stdout.readline()
        secs = time.monotonic() - t0
        p.stdin.close()
        p.stdout.read()
        if p.wait() != 0 or not first.startswith(b"{"):
            raise Fail(f"pp-eval predict {os.path.basename(model)} exited {p.returncode}, first line {first[:80]!r}")
        return secs

    def a_predict(i):
        return {"seconds": first_answer(base)}

    dw, ex = Side("pp delta write"), Side("pp-eval export")
    weeks = sorted(glob.glob(os.path.join(DATA, "*.jsonl")) + glob.glob(os.path.join(DATA, "*.jsonl.zst")))

    def a_delta(i):
        """A trickle's checkpoint: the run of `a_write` (a full checkpoint of the 1a model in a
        run's folder), then one more small week ingested and `pp-train --once`: a delta of it."""
        if not weeks:
            raise Skip(f"no *.jsonl[.zst] in {DATA}")
        root = os.path.join(WORK, "root-delta")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(os.path.join(root, "inbox"))
        shutil.copytree(os.path.join(D.root_tiny, "shards"), os.path.join(root, "shards"), copy_function=os.link)
        flags = train_flags()
        flags[flags.index("--passes") + 1] = 1
        pp_train(root, "delta", flags, f"delta-full-{i}", init=base)
        week = weeks[-1]
        shutil.copyfile(week, os.path.join(root, "inbox", os.path.basename(week)))
        os.utime(os.path.join(root, "inbox", os.path.basename(week)), (time.time() - 3600,) * 2)
        pp("pp-ingest", ["--root", root, "--holdout", "0", "--no-checks"], f"delta-ingest-{i}", ok=(0, 1))
        once = [f for j, f in enumerate(flags) if f != "--passes" and (j == 0 or flags[j - 1] != "--passes")]
        args = ["--root", root, "--run", "delta", "--once"] + once
        r = pp("pp-train", args, f"delta-{i}")
        got = ckpt_write_log(r.err_path)
        kind = ""
        with open(r.err_path, errors="replace") as f:
            kind = "delta" if any("checkpoint written" in l and "kind=\"delta" in l for l in f) else "full"
        shutil.rmtree(root, ignore_errors=True)
        if not got:
            raise Skip("pp-train logs no 'checkpoint written ... seconds=S' line")
        if kind != "delta":
            raise Fail("the checkpoint after one more week was not a delta")
        return {"seconds": got[0], "bytes": got[1], "week": os.path.basename(week)}

    def a_export(i):
        """`pp-eval export` of the 1a checkpoint at 16 bits: its size, and predict's first
        answer from it (as 6e from the checkpoint)."""
        out = os.path.join(WORK, "export-16.ppm")
        r = pp("pp-eval", ["export", base, out], f"export-{i}")
        size = os.path.getsize(out)
        try:
            secs = first_answer(out)
        finally:
            os.remove(out)
        return {"mb": size / 1e6, "checkpoint_mb": os.path.getsize(base) / 1e6, "export_seconds": r.seconds,
                "predict_first_seconds": secs}

    if raw_bytes:
        subprocess.run(["cat", base], stdout=subprocess.DEVNULL)
        for i in range(REPS):
            wr.attempt(a_write, i)
            zw.attempt(b_write, i)
            rd.attempt(a_read, i)
            zr.attempt(b_read, i)
            pr.attempt(a_predict, i)
            dw.attempt(a_delta, i)
            ex.attempt(a_export, i)
    for p in (raw, raw + ".zst"):
        if os.path.exists(p):
            os.remove(p)
    size = f"{raw_bytes / 1e6:.0f} MB raw" if raw_bytes else f"{BUCKET / 1e6:g}M x {DIM}"
    rows = [row("6a", f"checkpoint write ({size})", "MB/s", wr, zw, "mb_per_second", 0.8, acc_key=None,
                note="pp-train's own log timing (serialise + compress + fsync + rename); zstd + sync"),
            row("6b", "checkpoint read", "MB/s", rd, zr, "mb_per_second", 0.5, acc_key=None,
                note="pp-eval wall minus its scoring time, one small shard")]
    # Loads per tool, whole processes (start-up and load included), against zstd -d's process
    # on the same checkpoint: pp-eval scoring one small shard, and predict's first answer.
    ev = Side("pp-eval CKPT")
    ev.status, ev.reason = rd.status, rd.reason
    ev.runs = [{"seconds": r["process_seconds"]} for r in rd.runs]
    for cid, what, side, note in (
            ("6d", "pp-eval CKPT, one small shard", ev, "whole process: start, load, score, JSON"),
            ("6e", "predict: first answer", pr, "pp-eval predict CKPT: start to the first JSON line")):
        r = row(cid, what, "seconds", side, zr, "seconds", None, better="lower", acc_key=None, note=note)
        r["target_text"] = "reported"
        rows.append(r)
    # A trickle's hourly checkpoint (a delta) against the full write of 6a, in the same round.
    r = row("6f", "delta checkpoint, one more week", "seconds", dw, wr, "seconds", None, better="lower", acc_key=None,
            note="pp-train --once after one small week: a delta of the run's full checkpoint (its log timing) vs 6a's full write")
    r["target_text"] = "reported"
    r["delta_bytes"] = dw.med("bytes")
    rows.append(r)
    ckb = Side("checkpoint file")
    ckb.status, ckb.reason = ex.status, ex.reason
    ckb.runs = [{"mb": x["checkpoint_mb"]} for x in ex.runs]
    r = row("6g", "serving export, 16 bits", "MB", ex, ckb, "mb", None, better="lower", acc_key=None,
            note="pp-eval export CKPT (16-bit rows, no optimiser state) vs the checkpoint file; predict's first answer from it in the runs")
    r["target_text"] = "reported"
    r["export_predict_first_seconds"] = ex.med("predict_first_seconds")
    rows.append(r)
    ov = Side("share of 1 h")
    if wr.runs:
        ov.runs = [{"percent": 100 * r["seconds"] / 3600} for r in wr.runs]
    else:
        ov.status, ov.reason = (wr.status if wr.status != "ok" else "skip"), wr.reason
    r = row("6c", "checkpoint overhead per hour", "% of 1 h", ov, Side("-"), "percent", None, acc_key=None,
            note="write seconds / 3600 (one checkpoint an hour)")
    r["target_text"] = "<= 2%"
    r["status_reference"] = "n/a"
    if r["perpetuum"] is not None and r["perpetuum"] > 2.0:
        r["miss"] = ["overhead"]
    rows.append(r)
    if base:
        rows[0]["checkpoint_file_bytes"] = os.path.getsize(base)
        rows[0]["raw_bytes"] = raw_bytes
        rows[0]["dense_equivalent_bytes"] = BUCKET * DIM * 4
    return rows


def c7_rss(D):
    ppside, ft = STATE.get("rss", (Side("pp-train"), Side("fastText")))
    a, b = Side("pp-train"), Side("fastText")
    a.status, a.reason, b.status, b.reason = ppside.status, ppside.reason, ft.status, ft.reason
    a.runs = [{"mb": r.get("rss_mb")} for r in ppside.runs]
    b.runs = [{"mb": r.get("rss_mb")} for r in ft.runs]
    if not GNU_TIME:
        a.status = b.status = "skip"
        a.reason = b.reason = "no /usr/bin/time (bench/setup.sh installs it)"
        a.runs, b.runs = [], []
    return [row("7", f"peak RSS, {BUCKET / 1e6:g}M x {DIM} table (1a runs)", "MB peak", a, b, "mb", 1.1,
                better="lower", ratio_of=ratios(a, b, "mb"), acc_key=None,
                note="fastText measured as its Python process")]


# ----------------------------------------------------------------------------------------
# Report

def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit in ("tokens/s", "examples/s"):
        return f"{v / 1e6:.2f}M" if v >= 1e5 else f"{v / 1e3:.1f}k"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def side_text(r, which):
    status = r[f"status_{which}"]
    if status == "skip":
        return "SKIP"
    if status == "fail":
        return "FAIL"
    if status == "n/a":
        return "-"
    return fmt(r[which if which == "reference" else "perpetuum"], r["unit"])


def table(rows):
    head = ["#", "comparison", "unit", "Perpetuum", "reference", "", "ratio (min..max)", "target",
            "acc PP", "acc ref", "MISS"]
    body = []
    for r in rows:
        ratio = "-"
        if r["ratio"] is not None:
            ratio = f"{r['ratio']:.2f}x"
            if r["rounds"] > 1:
                ratio += f" ({r['ratio_min']:.2f}..{r['ratio_max']:.2f})"
        tgt = r.get("target_text") or ("-" if r["target"] is None else
                                        f"{'>=' if r['better'] == 'higher' else '<='} {r['target']}x")
        acc = lambda v: "-" if v is None else f"{v:.4f}"
        miss = "MISS " + ",".join(r["miss"]) if r["miss"] else ""
        body.append([r["id"], r["what"], r["unit"], side_text(r, "perpetuum"), side_text(r, "reference"),
                     r["reference_name"], ratio, tgt, acc(r["acc_perpetuum"]), acc(r["acc_reference"]), miss])
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(b, widths)).rstrip())
    notes = []
    for r in rows:
        for which in ("perpetuum", "reference"):
            if r[f"status_{which}"] not in ("ok", "n/a"):
                label = "Perpetuum" if which == "perpetuum" else r["reference_name"]
                notes.append(f"{r['id']} {label}: {r[f'status_{which}'].upper()} ({r[f'reason_{which}']})")
    seen = set()
    notes = [n for n in notes if not (n in seen or seen.add(n))]
    return "\n".join(lines + ([""] + notes if notes else []))


def machine():
    m = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
         "kernel": platform.release(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model name":
                m["cpu"] = v.strip()
            if k.strip() == "Hypervisor vendor":
                m["hypervisor"] = v.strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            m["memory_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        m["load_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    return m


def versions():
    v = {"python": platform.python_version()}
    try:
        v["perpetuum_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                               capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    v["zstd"] = subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout.strip()
    if os.access(REF_PY, os.X_OK):
        r = subprocess.run([REF_PY, "-c", "import json, importlib.metadata as m\n"
                            "out = {}\nfor p in ('fasttext-wheel', 'vowpalwabbit', 'torch', 'numpy'):\n"
                            "    try: out[p] = m.version(p)\n    except Exception: out[p] = None\n"
                            "print(json.dumps(out))"], capture_output=True, text=True)
        if r.returncode == 0:
            v.update(json.loads(r.stdout))
    return v


def build():
    """What the binaries under test were compiled for (`pp-train --version`, issue 20): a build
    without a target CPU trains ~3.5x slower, so every figure must say which build made it."""
    try:
        r = subprocess.run([os.path.join(PP_BIN, "pp-train"), "--version"], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    except OSError:
        return None


def save(doc):
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, OUT)


def report(path):
    """Prints the table of a results JSON again (e.g. for bench/README.md)."""
    with open(path) as f:
        doc = json.load(f)
    for r in doc["rows"]:
        if r.get("acc_perpetuum") is not None and r.get("acc_reference") is not None and "acc_examples" not in r:
            # results written before rows carried their test-set size
            n = doc["data"]["new_test_examples" if r["id"] == "3" else "test_examples"]
            miss = [m for m in r["miss"] if m != "accuracy"]
            if accuracy_missed(r, n):
                miss.append("accuracy")
            r["miss"] = miss
    print(header(doc))
    print(table(doc["rows"]))


def header(doc):
    d = doc["data"]
    return (f"Perpetuum bench, {doc['date']}, {doc['machine']['cpu']}, {doc['machine']['cores']} cores"
            f"{' (quick)' if doc['quick'] else ''}; data {doc['config']['data']}: {d['rep_tokens']} training "
            f"tokens a pass x {doc['config']['passes']} passes, {doc['config']['reps']} round(s), "
            f"{d['test_examples']} test examples" + (f"; {doc['build']}" if doc.get("build") else ""))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        return report(sys.argv[2])
    if not PP_BIN:
        sys.exit("bench: PP_BIN is not set (run through `make bench` or bench/run.sh)")
    os.makedirs(LOGS, exist_ok=True)
    for p in glob.glob(os.path.join(LOGS, "*")):
        os.remove(p)
    started = time.time()
    doc = {"schema": 1, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "quick": QUICK, "machine": machine(), "versions": versions(), "build": build(),
           "config": {"data": os.path.relpath(DATA, REPO) if DATA.startswith(REPO) else os.path.basename(DATA),
                      "reps": REPS, "passes": PASSES, "min_tokens": MIN_TOKENS, "lr": LR,
                      "lr_hidden": LR_HIDDEN, "torch_lrs_tried": TORCH_LRS, "dim": DIM,
                      "word_ngrams": NGRAMS, "bucket": BUCKET, "hidden": HIDDEN, "dropout": DROPOUT,
                      "threads": THREADS, "holdout": HOLDOUT, "accuracy_noise": ACC_NOISE},
           "rows": []}
    say(f"{'quick' if QUICK else 'full'} run: {REPS} round(s), {PASSES} passes, data {DATA}")
    say(f"binaries: {doc['build'] or 'pp-train --version failed (built before issue 20?)'}")
    D = prepare()
    doc["data"] = {k: v for k, v in D.info.items() if k not in ("key", "source")}
    steps = [("1a", lambda: c1_linear(D, 0, 0, "w2")), ("1b", lambda: c1_linear(D, 3, 6, "char")),
             ("2", lambda: c2_hidden(D)), ("3", lambda: c3_continuation(D)), ("4", lambda: c4_eval(D)),
             ("5", lambda: c5_ingest(D)), ("6", lambda: c6_checkpoint(D)), ("7", lambda: c7_rss(D))]
    for cid, fn in steps:
        if ONLY and cid not in ONLY and cid[0] not in ONLY:
            continue
        say(f"comparison {cid} ...")
        t0 = time.time()
        rows = fn()
        for r in rows:
            r["wall_seconds"] = round(time.time() - t0, 1)
        doc["rows"] += rows
        doc["elapsed_seconds"] = round(time.time() - started, 1)
        doc["fails"] = FAILS
        save(doc)
        say(f"comparison {cid}: {time.time() - t0:.0f} s")
    print(header(doc))
    print(table(doc["rows"]))
    print(f"\n{len(doc['rows'])} rows in {doc['elapsed_seconds']:.0f} s; figures in {os.path.relpath(OUT, REPO)}")
    if FAILS:
        for f in FAILS:
            say(f"FAIL {f}")
        sys.exit(1)


if __name__ == "__main__":
    main()
