#!/usr/bin/env python3
"""bench/drift.py: `make drift` (issue 12). What continuous training is worth on a real,
drifting stream: a prequential ("test, then train") replay of a folder of weekly JSON Lines
files through the real tools, run the way production runs them, beside the references.

    drift.py --stream-dir DIR --name NAME --period 2023-2025 --bin PP_BIN
             [--quick] [--work DIR] [--out FILE] [--plot FILE] [--seed N]

The stream: one file per ISO week, `YYYY-Www.jsonl` or `.jsonl.zst`, one record a line:
{"text", "label", "ts"?, "id"?} (the shape of data/git and data/util-linux). PERIOD is the
evaluation period, ISO years `Y1-Y2` (or `Y`); every week before it is warm-up.

Perpetuum (the real tools, the shipped units' flags, a simulated clock):
  * time: $PP_CLOCK_FILE (docs/operations.md, "Simulated clock"); one week of data is one
    week of the stream's own time. Week w's file lands in inbox/ one hour after the week
    ends (its mtime then), pp-ingest runs (the inbox path unit), the pp-train daemon
    (defaults: rescan, replay share, max passes; it gets SIGHUP, which rescans at once, as
    its own 60 s rescan would within the simulated hour) trains until idle and writes its
    checkpoint, pp-eval --pending --new runs (the checkpoints path unit), and pp-select runs once
    per simulated day at 03:00 (its daily timer), seven times a week, empty weeks included.
    Retention: as the shipped units configure it (systemd/pp-select.service).
  * warm-up: every warm-up week's file lands at once (each with its own week's mtime, so
    shards sort by week), one pp-ingest run, the daemon trains them all, pp-eval, pp-select:
    the model a team starts from. --quick keeps only the last 26 warm-up weeks.
  * before week w is delivered, each of its records is scored with `pp-eval predict` by
    P-dep: the checkpoint `deployed` points to (what users get), and
    P-new: the newest checkpoint of the run (no gate, no lag).
References, in a second process on the same weeks and records (bench/venv: fastText,
Vowpal Wabbit), on Perpetuum's tokens (a port of docs/tokenizer.md, tested against
`pp-ingest cat` in bench/test_drift.py):
    B1: fastText retrained from scratch every week on all data up to w-2 (one week of lag);
        lr and epochs chosen on the warm-up only (train on all but its last 26 weeks,
        validate on those);
    O:  the same retrain on all data up to w-1 (zero lag);
    F:  frozen: B1's model for the first week of the period, never updated;
    V:  Vowpal Wabbit online (--oaa K --ngram 2 -b 24), one pass in time order, test then
        learn each week (K: the labels of the whole stream).
Output: progress on stderr, a table on stdout, --out (JSON) and --plot (SVG).
Exit status: 0 done, 1 a tool failed or the harness broke an invariant, 64 usage.
"""

import argparse
import calendar
import datetime
import fcntl
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
STRATEGIES = ["P-dep", "P-new", "B1", "O", "F", "V"]
REFS = ["B1", "O", "F", "V"]
# The pp-train unit's PP_TRAIN_FLAGS in the replay: the defaults but for the hash buckets.
# With the default 2M buckets (and char n-grams) a checkpoint of these streams is 100-260 MB,
# and loading it in each tool makes one replayed week cost 20-40 s (issue 19): the replay
# would take hours. 200k buckets is what a team would set for a stream of a few thousand
# examples a year; the references get the same bucket count.
DEFAULT_TRAIN_FLAGS = "--bucket 200000"
# pp-select as systemd/pp-select.service runs it (its retention budget).
SELECT_FLAGS = ["--keep-bytes", "20G"]
# --guards off (the "off" configuration of tools/spoil-replay.py).
GUARDS_OFF = {"ingest": {"quarantine": False}, "train": {"guard": False}, "select": {"guard": False}}
DAY = 86400
WEEK = 7 * DAY
DELIVER_AFTER = 3600          # a week's file lands one hour after the week ends
SELECT_AT = 3 * 3600          # pp-select's daily run, 03:00 of each simulated day
TICKS = os.sysconf("SC_CLK_TCK")


def say(msg):
    print(msg, file=sys.stderr, flush=True)


class HarnessError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# Weeks, the stream, the schedule (pure functions: bench/test_drift.py pins them down)

WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})\.jsonl(\.zst)?$")


def week_start(week):
    """Unix seconds of Monday 00:00 UTC of ISO week "YYYY-Www"."""
    y, w = int(week[:4]), int(week[6:8])
    d = datetime.datetime.fromisocalendar(y, w, 1).replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp())


def week_name(t):
    y, w, _ = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isocalendar()
    return f"{y:04d}-W{w:02d}"


def calendar_weeks(first, last):
    """Every ISO week from `first` to `last` inclusive, empty ones too."""
    out, t = [], week_start(first)
    while t <= week_start(last):
        out.append(week_name(t))
        t += WEEK
    return out


def parse_period(s):
    m = re.fullmatch(r"(\d{4})(?:-(\d{4}))?", s)
    if not m:
        raise ValueError(f"--period {s}: expected YEAR or YEAR-YEAR")
    a, b = int(m.group(1)), int(m.group(2) or m.group(1))
    if b < a:
        raise ValueError(f"--period {s}: the second year is before the first")
    return a, b


def list_stream(d):
    """{week: path} of the weekly files in d; other names are refused loudly."""
    out = {}
    for name in sorted(os.listdir(d)):
        if name.startswith(".") or name.lower().startswith("readme"):
            continue
        m = WEEK_RE.match(name)
        if not m:
            raise HarnessError(f"{d}/{name}: not a weekly file (YYYY-Www.jsonl or .jsonl.zst)")
        wk = f"{m.group(1)}-W{m.group(2)}"
        if wk in out:
            raise HarnessError(f"{d}: week {wk} appears twice ({os.path.basename(out[wk])}, {name})")
        out[wk] = os.path.join(d, name)
    if not out:
        raise HarnessError(f"{d}: no weekly files")
    return out


def read_week(path):
    if path.endswith(".zst"):
        raw = subprocess.run(["zstd", "-dcq", path], check=True, capture_output=True).stdout
    else:
        with open(path, "rb") as f:
            raw = f.read()
    recs = []
    for i, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            text, label = r["text"], r["label"]
        except (ValueError, KeyError, TypeError) as e:
            raise HarnessError(f"{path}:{i}: not a record with text and label ({e})")
        recs.append({"text": text, "label": str(label)})
    return recs


def split_weeks(weeks, period):
    """(warm-up weeks, evaluation calendar weeks) for the ISO years in `period`."""
    a, b = period
    warm = [w for w in weeks if int(w[:4]) < a]
    inside = [w for w in weeks if a <= int(w[:4]) <= b]
    if not inside:
        raise HarnessError(f"no weekly file in the period {a}-{b}")
    if not warm:
        raise HarnessError(f"no warm-up week before {a}: the period must not start the stream")
    return warm, calendar_weeks(inside[0], inside[-1])


def train_through(strategy, w_index, first_eval_index):
    """The last calendar-week index a strategy's model has trained on when it scores the week
    of index w_index (indices count calendar weeks from the stream's first week). Every
    value is < w_index: no record is scored by a model that trained on it."""
    if strategy in ("P-dep", "P-new", "O", "V"):
        return w_index - 1
    if strategy == "B1":
        return w_index - 2
    if strategy == "F":
        return first_eval_index - 2
    raise ValueError(strategy)


# ---------------------------------------------------------------------------------------
# Perpetuum's tokens for the references (docs/tokenizer.md)

_ASCII_TOKEN = re.compile(r"[A-Za-z0-9_]+")
MAX_TOKEN_BYTES = 100


def _cut(tok):
    b = tok.encode("utf-8")
    if len(b) <= MAX_TOKEN_BYTES:
        return tok
    return b[:MAX_TOKEN_BYTES].decode("utf-8", "ignore")


def tokenize(text):
    """Tokens as TextModel/Tokenizer.swift makes them: maximal runs of letters, marks, numbers
    and connector punctuation, lower-cased one scalar at a time, cut to 100 bytes."""
    if text.isascii():
        return [t[:MAX_TOKEN_BYTES] for t in _ASCII_TOKEN.findall(text.lower())]
    out, cur = [], []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LMN" or cat == "Pc":
            cur.append(ch if ch.isascii() and not ch.isupper() else ch.lower())
        elif cur:
            out.append(_cut("".join(cur)))
            cur = []
    if cur:
        out.append(_cut("".join(cur)))
    return out


# ---------------------------------------------------------------------------------------
# Scores

class Tally:
    """Correct counts and per-label confusion counts of one strategy, by week."""

    def __init__(self):
        self.weeks = {}   # week -> [n, correct, {label: [tp, fp, fn]}]

    def add(self, week, gold, pred):
        n, c, lab = self.weeks.setdefault(week, [0, 0, {}])
        ok = gold == pred
        self.weeks[week][0] += 1
        self.weeks[week][1] += ok
        if ok:
            lab.setdefault(gold, [0, 0, 0])[0] += 1
        else:
            lab.setdefault(gold, [0, 0, 0])[2] += 1
            if pred is not None:
                lab.setdefault(pred, [0, 0, 0])[1] += 1

    def summary(self, weeks):
        n = c = 0
        lab = {}
        for w in weeks:
            if w not in self.weeks:
                continue
            wn, wc, wl = self.weeks[w]
            n += wn
            c += wc
            for k, v in wl.items():
                t = lab.setdefault(k, [0, 0, 0])
                for i in range(3):
                    t[i] += v[i]
        return {"examples": n, "accuracy": c / n if n else None, "macro_f1": macro_f1(lab) if n else None}


def macro_f1(lab):
    """Mean F1 over every label that is true or predicted at least once."""
    f1s = []
    for tp, fp, fn in lab.values():
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1s) / len(f1s) if f1s else 0.0


def error_reduction(errs, ns, base, s, rng, rounds=1000):
    """1 - err_s/err_base over the weeks, with a 95% interval from a bootstrap over weeks.
    errs[strategy][i] and ns[i] are the errors and examples of scored week i."""
    def rer(idx):
        eb = sum(errs[base][i] for i in idx)
        es = sum(errs[s][i] for i in idx)
        return 1 - es / eb if eb else 0.0
    k = len(ns)
    point = rer(range(k))
    draws = sorted(rer([rng.randrange(k) for _ in range(k)]) for _ in range(rounds))
    return point, draws[int(0.025 * rounds)], draws[min(rounds - 1, int(0.975 * rounds))]


# ---------------------------------------------------------------------------------------
# Running the tools, with their CPU time

class Tools:
    """The built tools, run on one state folder under the simulated clock. Every run's CPU
    (user + system, all threads, from wait4) is added to its tool's account."""

    def __init__(self, bin_dir, root, clock_file, logs):
        self.bin, self.root, self.clock_file, self.logs = bin_dir, root, clock_file, logs
        self.cpu = {}
        self.runs = {}
        self.seq = 0
        self.env = dict(os.environ, PP_ROOT=root, PP_CLOCK_FILE=clock_file)
        self.now = None
        self.train_flags = []

    def set_clock(self, t):
        tmp = self.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{t:.3f}\n")
        os.replace(tmp, self.clock_file)
        self.now = t

    def run(self, account, args, ok=(0,), stdin_path=None):
        """Runs a tool to completion; returns (exit status, stdout text)."""
        self.seq += 1
        base = os.path.join(self.logs, f"{self.seq:05d}-{account}")
        fin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        with open(base + ".out", "wb") as fout, open(base + ".err", "wb") as ferr:
            p = subprocess.Popen([os.path.join(self.bin, args[0])] + args[1:], stdin=fin, stdout=fout,
                                 stderr=ferr, env=self.env)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
        if stdin_path:
            fin.close()
        self.cpu[account] = self.cpu.get(account, 0.0) + ru.ru_utime + ru.ru_stime
        self.runs[account] = self.runs.get(account, 0) + 1
        with open(base + ".out", encoding="utf-8", errors="replace") as f:
            out = f.read()
        if p.returncode not in ok:
            with open(base + ".err", encoding="utf-8", errors="replace") as f:
                tail = "".join(f.readlines()[-8:])
            raise HarnessError(f"{' '.join(args[:3])}: exit {p.returncode} (log {base}.err):\n{tail}")
        return p.returncode, out


class Daemon:
    """The pp-train daemon of one run, started as the unit pp-train@RUN starts it (no flags:
    PP_TRAIN_FLAGS is empty)."""

    def __init__(self, tools, run="main"):
        self.t = tools
        self.run = run
        tag = "" if run == "main" else "-" + run
        self.err = open(os.path.join(tools.logs, f"pp-train-daemon{tag}.err"), "wb")
        self.out = open(os.path.join(tools.logs, f"pp-train-daemon{tag}.out"), "wb")
        self.p = subprocess.Popen([os.path.join(tools.bin, "pp-train"), "--run", run] + tools.train_flags, stdin=subprocess.DEVNULL,
                                  stdout=self.out, stderr=self.err, env=tools.env)
        self.status_path = os.path.join(tools.root, "runs", run, "status.json")
        # Its signal handlers are installed before its first status.json: until then a
        # SIGHUP would kill it.
        deadline = time.monotonic() + 600
        while (self.status() or {}).get("pid") != self.p.pid:
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"the pp-train daemon did not start (exit {self.p.returncode}, log {self.err.name})")
            time.sleep(0.02)

    def cpu(self):
        """CPU seconds so far (all threads), from /proc."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def status(self):
        try:
            with open(self.status_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def settle(self, expect_shards, timeout=900, checkpoint=True):
        """SIGHUP (rescan now), then waits until the daemon has trained every shard in
        `expect_shards` (or marked it suspect) and is idle; with `checkpoint`, also until it
        has checkpointed all of it. An idle trainer checkpoints its unsaved work
        --checkpoint-every after its first unsaved batch (status.json `checkpoint_due`): the
        simulated clock moves on to that moment, as the real one would before the next
        event of the replay, and the daemon is woken."""
        self.p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        # Short polls first: most settles take a few milliseconds, and a run of 26,000 batches
        # (production-sim at 5 minutes) would otherwise spend hours asleep here.
        pause = 0.002
        time.sleep(pause)
        while True:
            if self.p.poll() is not None:
                raise HarnessError(f"the pp-train daemon exited with {self.p.returncode} (log {self.err.name})")
            st = self.status()
            if st and st.get("state") == "idle" and st.get("pending_shards") == 0 and st.get("step") is not None:
                ck = st.get("last_checkpoint") or ""
                m = re.search(r"-(\d{12})\.ppc$", ck)
                clean = (m and int(m.group(1)) == st["step"]) or (not ck and st["step"] == 0)
                # A run that adopted another run's checkpoint (a population's exploit step)
                # and has trained nothing since has nothing unsaved.
                clean = clean or (st.get("adopted") and "unsaved_since" not in st)
                newest = st.get("newest_shard") or ""
                sus = suspect_names(self.t.root)
                seen = all(s <= newest or s in sus for s in expect_shards)
                if seen and (clean or not checkpoint):
                    return st
                due = st.get("checkpoint_due")
                if seen and due:
                    t = calendar.timegm(time.strptime(due, "%Y-%m-%dT%H:%M:%SZ")) + 1
                    if self.t.now is None or t > self.t.now:
                        self.t.set_clock(t)
                        self.p.send_signal(signal.SIGHUP)
            if time.monotonic() > deadline:
                raise HarnessError(f"the pp-train daemon did not settle in {timeout} s (status {st})")
            pause = min(0.05, pause * 2)
            time.sleep(pause)

    def stop(self):
        cpu = self.cpu()
        self.p.send_signal(signal.SIGTERM)
        _, status, ru = os.wait4(self.p.pid, 0)
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.err.close()
        self.out.close()
        return max(cpu, ru.ru_utime + ru.ru_stime)


def parse_dropout_schedule(spec):
    """--dropout-schedule D0:N0 -> (D0, N0)."""
    try:
        d0, n0 = spec.split(":")
        d0, n0 = float(d0), float(n0)
    except ValueError:
        raise HarnessError(f"--dropout-schedule {spec}: expected D0:N0, e.g. 0.4:5000")
    if not (0 <= d0 < 1) or n0 <= 0:
        raise HarnessError(f"--dropout-schedule {spec}: D0 in [0, 1), N0 > 0")
    return d0, n0


def population_lrs(spec):
    """--population N (lr 0.1, 0.2, 0.4, ...: doubling from 0.1) or LR1,LR2,..."""
    if "," not in spec and spec.isdigit():
        n = int(spec)
        if not 2 <= n <= 8:
            raise HarnessError(f"--population {spec}: 2 to 8 runs")
        return [round(0.1 * 2 ** i, 6) for i in range(n)]
    lrs = [float(x) for x in spec.split(",")]
    if len(lrs) < 2:
        raise HarnessError(f"--population {spec}: at least two learning rates")
    return lrs


def suspect_names(root):
    names = set()
    runs = os.path.join(root, "runs")
    for run in os.listdir(runs) if os.path.isdir(runs) else []:
        try:
            with open(os.path.join(runs, run, "suspects.json")) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        for s in doc.get("shards", []):
            names.add(s.get("name"))
    return names


def stamp_time(stamp):
    """Unix seconds of a file-name stamp, YYYYMMDDTHHMMSSZ."""
    return int(datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())


def checkpoint_time(path):
    """Unix seconds of a checkpoint's creation, from its name (ckpt-YYYYMMDDTHHMMSSZ-STEP.ppc)."""
    m = re.search(r"ckpt-(\d{8}T\d{6}Z)-\d+\.ppc$", path)
    return stamp_time(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------
# The Perpetuum side

class Perpetuum:
    def __init__(self, args, work):
        self.root = os.path.join(work, "root")
        self.logs = os.path.join(work, "logs")
        for d in (self.root, self.logs):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        os.makedirs(os.path.join(self.root, "inbox"))
        self.tools = Tools(os.path.abspath(args.bin), self.root, os.path.join(work, "clock"), self.logs)
        self.tools.train_flags = args.train_flags.split()
        self.ingest = {"accepted": 0, "quarantined": 0, "other": 0, "quarantined_weeks": [], "warmup_quarantined": 0}
        self.daemons = []
        # A population (issue 16): runs p1..pN with these learning rates, stepped daily by
        # `pp-select population` after pp-select, as pp-select.service's ExecStartPost does.
        spec = getattr(args, "population", None)
        self.population = population_lrs(spec) if spec else None
        self.runs = [f"p{i + 1}" for i in range(len(self.population))] if self.population else ["main"]
        self.seed = getattr(args, "seed", 1)
        # A dropout schedule (issue 16): dropout = D0 x sqrt(N0 / (N0 + n)), n the training
        # examples ingested so far, set with `pp-train set` before each week is trained (the
        # runtime knob a person would turn), so it falls as data accumulates.
        sched = getattr(args, "dropout_schedule", None)
        self.dropout_schedule = parse_dropout_schedule(sched) if sched else None
        self.train_examples = 0
        self.dropout_now = None
        self.scratch = os.path.join(work, "scratch")
        os.makedirs(self.scratch, exist_ok=True)
        self.selections_at_start = 0

    def deliver(self, files, at):
        """Drops week files into inbox/ (mtime: the time each landed) and runs pp-ingest at `at`."""
        for week, path, landed in files:
            dst = os.path.join(self.root, "inbox", os.path.basename(path))
            shutil.copyfile(path, dst)
            os.utime(dst, (landed, landed))
        self.tools.set_clock(at)
        rc, out = self.tools.run("pp-ingest", ["pp-ingest"], ok=(0, 1, 2))
        shards = []
        quarantined = []
        for line in out.splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            st = rec.get("status")
            name = os.path.basename(rec.get("file", ""))
            if st in ("accepted", "partial"):
                self.ingest["accepted"] += 1
                self.train_examples += int(rec.get("train_examples", 0))
                shards += [os.path.basename(s) for s in rec.get("shards", []) if "/shards/" in s]
            elif st in ("quarantined", "rejected"):
                quarantined.append(name)
            else:
                self.ingest["other"] += 1
        return shards, quarantined

    def start(self, warm, files, first_eval):
        """The warm-up: every warm-up week at once, trained, evaluated, selected."""
        landed = [(w, files[w], week_start(w) + WEEK + DELIVER_AFTER - 60) for w in warm]
        at = week_start(first_eval) + DELIVER_AFTER
        shards, quarantined = self.deliver(landed, at)
        self.ingest["warmup_quarantined"] = len(quarantined)
        say(f"  warm-up: {len(warm)} weeks ingested ({len(quarantined)} quarantined), training...")
        if self.population:
            # population.json, then its first step (init lines: each run's control.json gets
            # its knobs) before the trainers start, as in production.
            with open(os.path.join(self.root, "population.json"), "w") as f:
                json.dump({"runs": {r: {"lr": lr} for r, lr in zip(self.runs, self.population)}, "seed": self.seed}, f)
            self.tools.run("pp-select", ["pp-select", "population"], ok=(0, 2))
        self.schedule_dropout()
        self.daemons = [Daemon(self.tools, r) for r in self.runs]
        for d in self.daemons:
            d.settle(shards, timeout=3600)
        self.tools.run("pp-eval", ["pp-eval", "--pending", "--new"], ok=(0, 2))
        self.selections_at_start = len(self.selections())
        self.days(week_start(first_eval))
        self.warmup_cpu = dict(self.tools.cpu)
        self.warmup_cpu["pp-train"] = self.train_cpu()
        self.tools.cpu = {}
        self.train_cpu_at_start = self.train_cpu()

    def schedule_dropout(self):
        """With --dropout-schedule: each run's dropout for the data seen so far (control.json,
        read by a trainer at the SIGHUP that follows, or at its start)."""
        if not self.dropout_schedule:
            return
        d0, n0 = self.dropout_schedule
        d = round(d0 * math.sqrt(n0 / (n0 + self.train_examples)), 3)
        if d == self.dropout_now:
            return
        if not self.daemons:
            # Before the trainers start (the warm-up), the flag: a new run takes its knobs
            # from its flags, so a control.json written before it would not be in force.
            flags = self.tools.train_flags
            i = flags.index("--dropout") if "--dropout" in flags else -1
            self.tools.train_flags = (flags[:i] + flags[i + 2:] if i >= 0 else flags) + ["--dropout", str(d)]
        for r in self.runs:
            self.tools.run("pp-train-set", ["pp-train", "set", "--run", r, f"dropout={d}"])
        self.dropout_now = d

    def train_cpu(self):
        return sum(d.cpu() for d in self.daemons)

    def stop(self):
        """Stops every trainer still running (after a harness error)."""
        for d in self.daemons:
            if d.p.poll() is None:
                d.stop()

    def week(self, week, path, has_data):
        """Delivers `week` (if it has data), then the trainer, pp-eval and a week of daily selections."""
        end = week_start(week) + WEEK
        if has_data:
            shards, quarantined = self.deliver([(week, path, end + DELIVER_AFTER - 60)], end + DELIVER_AFTER)
            if quarantined:
                self.ingest["quarantined"] += 1
                self.ingest["quarantined_weeks"].append(week)
            if shards:
                self.schedule_dropout()
                # Every trainer hears of the week at the same simulated time (as the units'
                # rescans would), before any settle moves the clock on to a checkpoint time.
                for d in self.daemons:
                    d.p.send_signal(signal.SIGHUP)
                for d in self.daemons:
                    d.settle(shards)
                self.tools.run("pp-eval", ["pp-eval", "--pending", "--new"], ok=(0, 2))
        self.days(end)

    def days(self, monday):
        """pp-select's daily runs of the week starting at `monday`; then the clock stands at the
        next week's delivery time, when that week is scored."""
        for d in range(7):
            # Never backwards: a settle may have moved the clock past 03:00 of the first day
            # (several runs checkpointing one after the other).
            self.tools.set_clock(max(monday + d * DAY + SELECT_AT, self.tools.now or 0))
            # As pp-select.service: its ExecStartPre scores the deployed checkpoint and the
            # candidates on the current eval set, then pp-select compares them.
            self.tools.run("pp-eval", ["pp-eval", "--pending"], ok=(0, 1, 2))
            self.tools.run("pp-select", ["pp-select"] + SELECT_FLAGS, ok=(0, 1, 2))
            if self.population:
                self.tools.run("pp-select", ["pp-select", "population"], ok=(0, 2))
        self.tools.set_clock(monday + WEEK + DELIVER_AFTER)

    def models(self):
        dep = os.path.join(self.root, "deployed")
        deployed = os.path.realpath(dep) if os.path.islink(dep) else None
        # The newest checkpoint of any run (names sort by time, then step).
        newest = None
        for run in self.runs:
            ck = os.path.join(self.root, "runs", run, "checkpoints")
            names = sorted(n for n in os.listdir(ck) if n.endswith(".ppc") and not n.startswith(".")) if os.path.isdir(ck) else []
            if names and (newest is None or names[-1] > os.path.basename(newest)):
                newest = os.path.join(ck, names[-1])
        return deployed, newest

    def predict(self, ckpt, texts_path, n, account):
        if ckpt is None:
            return [None] * n
        _, out = self.tools.run(account, ["pp-eval", "predict", ckpt, "-k", "1"], stdin_path=texts_path)
        labels = [json.loads(l).get("label") for l in out.splitlines() if l.strip()]
        if len(labels) != n:
            raise HarnessError(f"pp-eval predict {ckpt}: {len(labels)} answers for {n} texts")
        return labels

    def score(self, week, recs):
        """Labels of week `week`'s records by the deployed and the newest checkpoint, before
        the week is delivered. Checks first that no shard of this week exists yet."""
        start = week_start(week)
        for d in ("inbox", "archive", "quarantine", "shards", "holdout"):
            full = os.path.join(self.root, d)
            for n in os.listdir(full) if os.path.isdir(full) else []:
                m = re.match(r"(\d{8}T\d{6}Z)-", n)
                t = stamp_time(m.group(1)) if m else None
                # A shard's name carries the time its file landed, one hour after its week.
                if n.startswith(week) or (t is not None and t - DELIVER_AFTER >= start):
                    raise HarnessError(f"{d}/{n} holds data of week {week} or later before the week was scored")
        texts = os.path.join(self.scratch, "texts.jsonl")
        with open(texts, "w") as f:
            for r in recs:
                f.write(json.dumps({"text": r["text"]}) + "\n")
        deployed, newest = self.models()
        for ck in (deployed, newest):
            if ck and checkpoint_time(ck) is not None and checkpoint_time(ck) > self.tools.now:
                raise HarnessError(f"{ck} is newer than the simulated now")
        pn = self.predict(newest, texts, len(recs), "score")
        pd = pn if deployed == newest else self.predict(deployed, texts, len(recs), "score")
        age = (self.tools.now - checkpoint_time(deployed)) / DAY if deployed else None
        return pd, pn, age, deployed, newest

    def selections(self):
        p = os.path.join(self.root, "selections.jsonl")
        if not os.path.exists(p):
            return []
        with open(p) as f:
            return [json.loads(l) for l in f if l.strip()]

    def finish(self):
        train_cpu = self.train_cpu() - self.train_cpu_at_start
        for d in self.daemons:
            d.stop()
        sels = self.selections()[self.selections_at_start:]
        promotions = sum(1 for s in sels if s.get("decision") in ("promote", "promoted", "deploy", "rollback"))
        decisions = {}
        for s in sels:
            decisions[s.get("decision")] = decisions.get(s.get("decision"), 0) + 1
        sus = suspect_names(self.root)
        cpu = dict(self.tools.cpu)
        cpu["pp-train"] = train_cpu
        pop = None
        if self.population:
            with open(os.path.join(self.root, "population.jsonl")) as f:
                journal = [json.loads(l) for l in f if l.strip()]
            knobs = {}
            for e in journal:
                if e.get("action") in ("init", "exploit"):
                    knobs[e["run"]] = e["knobs"]["lr"]
            pop = {"runs": self.runs, "lrs": self.population, "exploits": sum(1 for e in journal if e.get("action") == "exploit"),
                   "keeps": sum(1 for e in journal if e.get("action") == "keep"), "final_lr": knobs}
        return {"population": pop, "dropout_final": self.dropout_now, "train_examples_ingested": self.train_examples,
                "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
                "warmup_cpu_seconds": {k: round(v, 3) for k, v in self.warmup_cpu.items()},
                "promotions": promotions, "decisions": decisions, "suspect_shards": len(sus),
                "ingest": self.ingest, "runs": self.tools.runs}


# ---------------------------------------------------------------------------------------
# The references (a second process, in bench/venv)

_REF_TASK = {}


def _ref_task(k):
    """One weekly retrain (in a forked worker, or in the reference process itself): the model
    trained from scratch on every week <= k, its predictions for the weeks that use it, and
    the CPU seconds of its training."""
    t = _REF_TASK
    path = os.path.join(t["work"], f"train-{k}.ft")
    t["ft_file"](path, k)
    m, c = t["ft_train"](path, t["lr"], t["ep"])
    os.remove(path)
    return k, c, [((s, j), t["ft_predict"](m, j)) for s, j in t["uses"][k]]


def ref_worker(spec_path):
    """Runs B1/O/F/V week by week; writes one JSON line per scored week to spec's `out`."""
    import fasttext
    from vowpalwabbit import pyvw
    with open(spec_path) as f:
        spec = json.load(f)
    weeks = spec["weeks"]            # calendar weeks, warm-up first; [week, path or None]
    first_eval = spec["first_eval"]
    work = spec["work"]
    out = open(spec["out"], "a")
    rng_seed = spec["seed"]
    parent = spec.get("parent")

    def orphaned():
        # The harness died: stop, rather than write into the files of its next run.
        return parent is not None and os.getppid() != parent

    toks = {}
    labels = []
    for i, (w, path) in enumerate(weeks):
        if path is None:
            continue
        recs = read_week(path)
        toks[i] = [(r["label"], " ".join(tokenize(r["text"]))) for r in recs]
        for lab, _ in toks[i]:
            if lab not in labels:
                labels.append(lab)
    index = {lab: k + 1 for k, lab in enumerate(labels)}

    def ft_file(path, upto, start=0):
        with open(path, "w") as f:
            for i in range(start, upto + 1):
                for lab, t in toks.get(i, []):
                    f.write(f"__label__{lab} {t}\n")

    def ft_train(path, lr, epoch):
        t0 = time.process_time()
        m = fasttext.train_supervised(path, lr=lr, epoch=epoch, wordNgrams=2, dim=100, minCount=1, thread=1,
                                      bucket=spec.get("bucket", 2_000_000), seed=rng_seed, verbose=0)
        return m, time.process_time() - t0

    def ft_predict(m, i):
        got = m.predict([t for _, t in toks.get(i, [])], k=1)[0]
        return [g[0][len("__label__"):] if g else None for g in got]

    # lr and epochs from the warm-up only: train on all but its last 26 weeks, validate there.
    warm_last = first_eval - 1
    val_from = max(1, warm_last - 25)
    grid = spec.get("grid") or ([(0.5, 5)] if spec["quick"] else [(lr, ep) for ep in (5, 10) for lr in (0.1, 0.25, 0.5, 1.0)])
    tune = os.path.join(work, "tune.ft")
    ft_file(tune, val_from - 1)
    best, scores = None, []
    for lr, ep in grid:
        m, _ = ft_train(tune, lr, ep)
        ok = n = 0
        for i in range(val_from, warm_last + 1):
            for (lab, _), p in zip(toks.get(i, []), ft_predict(m, i)):
                ok += lab == p
                n += 1
        acc = ok / n if n else 0
        scores.append({"lr": lr, "epoch": ep, "accuracy": round(acc, 4)})
        if best is None or acc > best[0]:
            best = (acc, lr, ep)
    _, LR, EP = best
    print(json.dumps({"tuning": scores, "chosen": {"lr": LR, "epoch": EP}}), file=out, flush=True)

    # V: learn the warm-up once, in time order.
    vw = pyvw.Workspace(f"--oaa {len(labels)} --ngram 2 -b 24 --quiet")
    for i in range(0, first_eval):
        for lab, t in toks.get(i, []):
            vw.learn(f"{index[lab]} | {t}")

    # The weekly retrain: model k is trained from scratch on every week <= k. A week without
    # data gives the same model as the week before it (no retrain, no CPU). The retrains are
    # independent of each other, so `jobs` processes (forked: they share the tokens) train
    # them side by side, in order, each single-threaded with the same seed (deterministic,
    # whatever `jobs` is); each returns its predictions and the CPU its training took.
    cpu = {"B1": 0.0, "O": 0.0, "F": 0.0, "V": 0.0}

    def key(k):
        while k > 0 and not toks.get(k):
            k -= 1
        return k

    frozen_k = key(train_through("F", first_eval, first_eval))
    ft_file(os.path.join(work, "frozen.ft"), frozen_k)
    frozen, cpu["F"] = ft_train(os.path.join(work, "frozen.ft"), LR, EP)
    scored = [i for i in range(first_eval, len(weeks)) if toks.get(i)]
    uses = {}   # model index -> [(strategy, week index)]
    for i in scored:
        for s in ("B1", "O"):
            uses.setdefault(key(train_through(s, i, first_eval)), []).append((s, i))
    order = sorted(uses)
    _REF_TASK.update(toks=toks, uses=uses, work=work, ft_file=ft_file, ft_train=ft_train, ft_predict=ft_predict, lr=LR, ep=EP)
    jobs = max(1, int(spec.get("jobs", 1)))
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 and len(order) > 1 else None
    done_models = pool.imap(_ref_task, order) if pool else map(_ref_task, order)
    preds = {}        # week index -> {strategy: labels}
    charged = set()
    next_model = 0
    try:
        for i in range(first_eval, len(weeks)):
            if orphaned():
                return
            w = weeks[i][0]
            has = bool(toks.get(i))
            row = {"week": w}
            if has:
                # Wait for the models this week needs (they come in order of k).
                need = max(key(train_through(s, i, first_eval)) for s in ("B1", "O"))
                while next_model < len(order) and order[next_model] <= need:
                    k, model_cpu, got = next(done_models)
                    for (s, j), answers in got:
                        preds.setdefault(j, {})[s] = answers
                        if (s, k) not in charged:
                            charged.add((s, k))
                            cpu[s] += model_cpu
                    next_model += 1
                gold = [lab for lab, _ in toks[i]]
                p = dict(preds.pop(i))
                p["F"] = ft_predict(frozen, i)
                pv = []
                for lab, t in toks[i]:
                    k = vw.predict(f"| {t}")
                    pv.append(labels[int(k) - 1] if 1 <= int(k) <= len(labels) else None)
                p["V"] = pv
                row.update({"gold": gold, "pred": p})
            t0 = time.process_time()
            for lab, t in toks.get(i, []):
                vw.learn(f"{index[lab]} | {t}")
            cpu["V"] += time.process_time() - t0
            row["cpu"] = {k: round(v, 4) for k, v in cpu.items()}
            print(json.dumps(row), file=out, flush=True)
    finally:
        if pool:
            pool.terminate()
    vw.finish()
    print(json.dumps({"done": True, "cpu": cpu, "labels": len(labels)}), file=out, flush=True)


# ---------------------------------------------------------------------------------------
# The replay

def fmt_dur(s):
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stream-dir")
    ap.add_argument("--name")
    ap.add_argument("--period", default="2023-2025")
    ap.add_argument("--bin", default=os.environ.get("PP_BIN", ""))
    ap.add_argument("--quick", action="store_true", help="4 weeks of the period, 26 weeks of warm-up: the shape, not the numbers")
    ap.add_argument("--work")
    ap.add_argument("--out")
    ap.add_argument("--plot")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-flags", default=DEFAULT_TRAIN_FLAGS,
                    help="PP_TRAIN_FLAGS of the pp-train unit for this replay (default: %(default)s)")
    ap.add_argument("--bucket", type=int, default=None, help="fastText's bucket count for B1/O/F (default: --bucket of --train-flags, else 2000000)")
    ap.add_argument("--ref-jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="processes for the weekly fastText retrains, each single-threaded (default: %(default)s)")
    ap.add_argument("--guards", choices=("on", "off"), default="on",
                    help="off: policy.json turns every guard off (pp-ingest quarantines nothing, pp-train's guard and "
                         "pp-select's lineage guard off), to measure what the guards cost on clean data (issue 14)")
    ap.add_argument("--predictions", help="also write each scored week's labels and P-dep/P-new predictions here (JSON Lines; tools/knob-study.py)")
    ap.add_argument("--no-refs", action="store_true",
                    help="Perpetuum only (a probe of PP_TRAIN_FLAGS, issue 16): no references, no result files; P-dep and P-new on stdout")
    ap.add_argument("--population", help="N or LR1,LR2,...: a population of runs p1..pN with these learning rates (N: 0.1, 0.2, 0.4, ...; issue 16), "
                    "stepped daily by `pp-select population`; P-new is then the newest checkpoint of any run")
    ap.add_argument("--dropout-schedule", metavar="D0:N0",
                    help="dropout D0 x sqrt(N0 / (N0 + n)) with n the training examples ingested so far, set with `pp-train set` "
                         "before each week is trained (issue 16; with a --hidden layer in --train-flags)")
    ap.add_argument("--ref-worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ref_worker:
        ref_worker(a.ref_worker)
        return 0
    if not a.stream_dir or not a.bin:
        ap.error("--stream-dir and --bin (or $PP_BIN) are needed")
    name = a.name or os.path.basename(os.path.normpath(a.stream_dir))
    if name.endswith("-stream"):
        name = name[: -len("-stream")]
    try:
        period = parse_period(a.period)
    except ValueError as e:
        ap.error(str(e))
    work = os.path.abspath(a.work or os.path.join(HERE, "work", f"drift-{name}"))
    out_path = a.out or os.path.join(HERE, "results" if not a.quick else "work", f"drift-{name}.json")
    plot_path = a.plot or os.path.splitext(out_path)[0] + ".svg"
    os.makedirs(work, exist_ok=True)
    # One replay per work folder at a time: two would train the references on each other's files.
    lock = open(os.path.join(work, "lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise HarnessError(f"{work} is in use by another make drift replay")
    t_start = time.monotonic()
    commit = git_commit()   # now: the binaries were built from the tree as it is at the start

    sdir = a.stream_dir
    if os.path.isdir(os.path.join(sdir, "stream")):
        sdir = os.path.join(sdir, "stream")
    files = list_stream(sdir)
    warm, period_weeks = split_weeks(sorted(files), period)
    if a.quick:
        warm = warm[-26:]
        period_weeks = period_weeks[:4]
    first_eval = period_weeks[0]
    calendar = calendar_weeks(warm[0], period_weeks[-1])
    first_eval_index = calendar.index(first_eval)
    warm_set = set(warm)
    cal_spec = [[w, files.get(w) if (w in warm_set or w in period_weeks) else None] for w in calendar]
    say(f"drift {name}: {len(warm)} warm-up weeks ({warm[0]}..{warm[-1]}), period {first_eval}..{period_weeks[-1]} "
        f"({sum(1 for w in period_weeks if w in files)} weeks with data); work {work}")

    # References in a second process (bench/venv's python has fastText and VW).
    ref_out = os.path.join(work, "refs.jsonl")
    if os.path.exists(ref_out):
        os.remove(ref_out)
    ref_dir = os.path.join(work, "refs")
    os.makedirs(ref_dir, exist_ok=True)
    bucket = a.bucket
    if bucket is None:
        fl = a.train_flags.split()
        bucket = int(fl[fl.index("--bucket") + 1]) if "--bucket" in fl else 2_000_000
    spec = {"weeks": cal_spec, "first_eval": first_eval_index, "work": ref_dir, "out": ref_out, "seed": a.seed, "quick": a.quick,
            "bucket": bucket, "parent": os.getpid(), "jobs": a.ref_jobs}
    with open(os.path.join(work, "refs.spec.json"), "w") as f:
        json.dump(spec, f)
    ref_err = open(os.path.join(work, "refs.err"), "wb")
    ref = None if a.no_refs else subprocess.Popen([sys.executable, os.path.abspath(__file__), "--ref-worker", os.path.join(work, "refs.spec.json")],
                           stdout=ref_err, stderr=ref_err)

    pp = Perpetuum(a, work)
    if a.guards == "off":
        with open(os.path.join(pp.root, "policy.json"), "w") as f:
            json.dump(GUARDS_OFF, f)
    tally = {s: Tally() for s in STRATEGIES}
    pred_out = open(a.predictions, "w") if a.predictions else None
    ages = []
    weekly = []
    rc = 0
    try:
        say(f"  warm-up through the tools ({len(warm)} weeks at once)")
        pp.start(warm, files, first_eval)
        say(f"  warm-up done in {fmt_dur(time.monotonic() - t_start)}")
        t_period = time.monotonic()
        scored = 0
        total = sum(1 for w in period_weeks if w in files)
        for w in period_weeks:
            has = w in files
            if has:
                recs = read_week(files[w])
                if recs:
                    pd, pn, age, dep, new = pp.score(w, recs)
                    for r, x, y in zip(recs, pd, pn):
                        tally["P-dep"].add(w, r["label"], x)
                        tally["P-new"].add(w, r["label"], y)
                    if pred_out:
                        pred_out.write(json.dumps({"week": w, "gold": [r["label"] for r in recs], "P-dep": pd, "P-new": pn}) + "\n")
                        pred_out.flush()
                    ages.append(age)
                    weekly.append({"week": w, "examples": len(recs), "deployed": os.path.basename(dep) if dep else None,
                                   "deployed_run": dep.split(os.sep)[-3] if dep else None,
                                   "newest": os.path.basename(new) if new else None,
                                   "deployed_age_days": round(age, 2) if age is not None else None})
                    scored += 1
            pp.week(w, files.get(w), has)
            if has:
                el = time.monotonic() - t_period
                left = el / max(1, scored) * (total - scored)
                d, n = tally["P-dep"].summary([w for w in period_weeks]), tally["P-new"].summary(period_weeks)
                ref_acc = ref_running(ref_out, period_weeks)
                refs = " ".join(f"{k} {v:.3f}" for k, v in ref_acc.items())
                if ref is not None:
                    refs = f"refs {ref_weeks_done(ref_out)}/{len(period_weeks)} weeks" + (": " + refs if refs else "")
                say(f"  {name} {w} ({scored}/{total}) P-dep {d['accuracy'] or 0:.3f} P-new {n['accuracy'] or 0:.3f}"
                    f"{' | ' + refs if refs else ''} | {fmt_dur(time.monotonic() - t_start)} elapsed, ~{fmt_dur(left)} left")
        perp = pp.finish()
    except HarnessError as e:
        say(f"drift: {e}")
        pp.stop()
        if ref:
            ref.kill()
        return 1
    if ref is None:
        d, n = tally["P-dep"].summary(period_weeks), tally["P-new"].summary(period_weeks)
        print(json.dumps({"stream": name, "period": a.period, "train_flags": a.train_flags, "guards": a.guards, "P-dep": d, "P-new": n,
                          "cpu_seconds": perp["cpu_seconds"], "promotions": perp["promotions"], "population": perp["population"],
                          "dropout_final": perp["dropout_final"], "train_examples_ingested": perp["train_examples_ingested"],
                          "deployed_runs": {r: sum(1 for x in weekly if x.get("deployed_run") == r) for r in pp.runs},
                          "seconds": round(time.monotonic() - t_start, 1)}), flush=True)
        return 0
    say(f"  Perpetuum side done in {fmt_dur(time.monotonic() - t_start)}; waiting for the references")
    # The references may still be retraining (git's are the long pole): say how far they are.
    t_wait, done_at_wait = time.monotonic(), ref_weeks_done(ref_out)
    while True:
        try:
            ref.wait(timeout=60)
            break
        except subprocess.TimeoutExpired:
            done = ref_weeks_done(ref_out)
            rate = (done - done_at_wait) / max(1e-9, time.monotonic() - t_wait)
            left = (len(period_weeks) - done) / rate if rate > 0 else None
            say(f"  {name} references: {done}/{len(period_weeks)} weeks | {fmt_dur(time.monotonic() - t_start)} elapsed"
                + (f", ~{fmt_dur(left)} left" if left is not None else ""))
    ref_err.close()
    if ref.returncode != 0:
        say(f"drift: the reference process failed (exit {ref.returncode}); see {os.path.join(work, 'refs.err')}")
        return 1
    tuning, ref_cpu, nlabels = None, None, None
    with open(ref_out) as f:
        for line in f:
            row = json.loads(line)
            if "tuning" in row:
                tuning = row
            elif row.get("done"):
                ref_cpu, nlabels = row["cpu"], row["labels"]
            elif "gold" in row:
                for s in REFS:
                    for g, p in zip(row["gold"], row["pred"][s]):
                        tally[s].add(row["week"], g, p)
    result = report(name, a, period, warm, period_weeks, files, tally, ages, weekly, perp, ref_cpu, tuning, nlabels,
                    time.monotonic() - t_start, a.seed, commit)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out_path)
    print(table(result), flush=True)
    plot(result, plot_path)
    check_shape(result, plot_path)
    say(f"drift {name}: wrote {out_path} and {plot_path} in {fmt_dur(time.monotonic() - t_start)}")
    return rc


def ref_weeks_done(path):
    """Calendar weeks of the period the reference process has finished (rows in its output)."""
    try:
        with open(path) as f:
            return sum(1 for line in f if line.startswith('{"week"'))
    except OSError:
        return 0


def ref_running(path, weeks):
    """Running accuracies of the references so far (for the progress line)."""
    c, n = {s: 0 for s in REFS}, 0
    try:
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if "gold" not in row:
                    continue
                n += len(row["gold"])
                for s in REFS:
                    c[s] += sum(g == p for g, p in zip(row["gold"], row["pred"][s]))
    except (OSError, ValueError):
        return {}
    return {s: c[s] / n for s in REFS} if n else {}


def report(name, a, period, warm, period_weeks, files, tally, ages, weekly, perp, ref_cpu, tuning, nlabels, secs, seed, commit):
    scored = [w for w in period_weeks if w in tally["P-dep"].weeks]
    years = sorted({w[:4] for w in scored})
    rng = random.Random(seed)
    errs = {s: [tally[s].weeks[w][0] - tally[s].weeks[w][1] for w in scored] for s in STRATEGIES}
    ns = [tally["P-dep"].weeks[w][0] for w in scored]
    for s in STRATEGIES:
        if [tally[s].weeks[w][0] for w in scored] != ns:
            raise HarnessError(f"{s} scored other records than P-dep")
    strategies = {}
    cpu_train = {"P-dep": perp["cpu_seconds"].get("pp-train", 0.0), "P-new": perp["cpu_seconds"].get("pp-train", 0.0)}
    for s in REFS:
        cpu_train[s] = ref_cpu.get(s) if ref_cpu else None
    for s in STRATEGIES:
        whole = tally[s].summary(scored)
        rer = error_reduction(errs, ns, "B1", s, rng)
        strategies[s] = {
            "accuracy": whole["accuracy"], "macro_f1": whole["macro_f1"],
            "per_year": {y: tally[s].summary([w for w in scored if w[:4] == y]) for y in years},
            "error_reduction_vs_B1": {"value": rer[0], "ci95": [rer[1], rer[2]]},
            "train_cpu_seconds": cpu_train[s],
        }
    for row in weekly:
        w = row["week"]
        row["accuracy"] = {s: tally[s].weeks[w][1] / tally[s].weeks[w][0] for s in STRATEGIES}
    pipeline = sum(perp["cpu_seconds"].get(k, 0.0) for k in ("pp-ingest", "pp-train", "pp-eval", "pp-select"))
    valid_ages = [x for x in ages if x is not None]
    return {
        "schema": 1, "stream": name, "period": f"{period[0]}-{period[1]}", "quick": bool(a.quick),
        "warmup_weeks": [warm[0], warm[-1], len(warm)], "period_weeks": [period_weeks[0], period_weeks[-1], len(period_weeks)],
        "scored_weeks": len(scored), "examples": sum(ns), "labels_in_stream": nlabels,
        "strategies": strategies,
        "perpetuum": dict(perp, pipeline_cpu_seconds=round(pipeline, 3),
                          deployed_age_days_mean=sum(valid_ages) / len(valid_ages) if valid_ages else None,
                          clean_weeks_quarantined=perp["ingest"]["quarantined"],
                          flags=f"pp-train {a.train_flags} (PP_TRAIN_FLAGS); pp-ingest, pp-eval --pending --new, pp-eval --pending + pp-select as the units run them",
                          guards=a.guards),
        "fasttext": tuning, "weekly": weekly, "seconds": round(secs, 1), "machine": machine(),
        "commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def check_shape(r, plot_path):
    """The harness's self-check of its output (make drift-quick asserts it in CI): every
    strategy scored the same records, every figure is present and in range."""
    def fail(msg):
        raise HarnessError(f"output shape: {msg}")
    for k in ("schema", "stream", "period", "strategies", "perpetuum", "weekly", "examples", "scored_weeks"):
        if k not in r:
            fail(f"no {k}")
    if r["scored_weeks"] < 1 or len(r["weekly"]) != r["scored_weeks"] or r["examples"] != sum(w["examples"] for w in r["weekly"]):
        fail("weekly rows do not add up")
    for s in STRATEGIES:
        v = r["strategies"].get(s) or fail(f"no strategy {s}")
        for m in ("accuracy", "macro_f1"):
            if not (isinstance(v[m], float) and 0 <= v[m] <= 1):
                fail(f"{s}.{m} = {v[m]!r}")
        e = v["error_reduction_vs_B1"]
        if not (e["ci95"][0] <= e["value"] + 1e-9 and e["value"] <= e["ci95"][1] + 1e-9):
            fail(f"{s}: error reduction {e['value']} outside its interval {e['ci95']}")
        if not v["per_year"]:
            fail(f"{s}: no per-year figures")
        if v["train_cpu_seconds"] is None or v["train_cpu_seconds"] < 0:
            fail(f"{s}: training CPU {v['train_cpu_seconds']!r}")
    p = r["perpetuum"]
    for tool in ("pp-ingest", "pp-train", "pp-eval", "pp-select"):
        if not p["cpu_seconds"].get(tool, 0) > 0:
            fail(f"no CPU accounted to {tool}")
    for k in ("promotions", "suspect_shards", "clean_weeks_quarantined", "deployed_age_days_mean"):
        if not isinstance(p.get(k), (int, float)):
            fail(f"perpetuum.{k} = {p.get(k)!r}")
    for w in r["weekly"]:
        if set(w["accuracy"]) != set(STRATEGIES):
            fail(f"week {w['week']}: strategies {sorted(w['accuracy'])}")
    if not (os.path.isfile(plot_path) and os.path.getsize(plot_path) > 1000):
        fail(f"no plot at {plot_path}")


def machine():
    m = {"cores": os.cpu_count()}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model name":
                m["cpu"] = v.strip()
    except OSError:
        pass
    return m


def git_commit():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


def table(r):
    """The table printed on stdout (also used by bench/drift.sh for README snippets)."""
    s = r["strategies"]
    p = r["perpetuum"]
    lines = [f"drift {r['stream']}, period {r['period']} ({r['scored_weeks']} weeks, {r['examples']} examples), "
             f"commit {r['commit']}, {r['date']}{' QUICK (shape only)' if r['quick'] else ''}",
             f"{'strategy':<8} {'accuracy':>8} {'macro-F1':>8} {'err. reduction vs B1 [95% CI]':>30} {'train CPU s':>11}  per year (accuracy)"]
    for k in STRATEGIES:
        v = s[k]
        e = v["error_reduction_vs_B1"]
        cpu = v["train_cpu_seconds"]
        py = " ".join(f"{y}:{d['accuracy']:.3f}" for y, d in v["per_year"].items() if d["accuracy"] is not None)
        lines.append(f"{k:<8} {v['accuracy']:>8.4f} {v['macro_f1']:>8.4f} {e['value']:>+12.3f} [{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}]"
                     f" {cpu if cpu is None else round(cpu, 1):>11}  {py}")
    cpu = p["cpu_seconds"]
    lines.append(f"Perpetuum: CPU s pp-ingest {cpu.get('pp-ingest', 0):.1f}, pp-train {cpu.get('pp-train', 0):.1f}, "
                 f"pp-eval {cpu.get('pp-eval', 0):.1f}, pp-select {cpu.get('pp-select', 0):.1f} (pipeline {p['pipeline_cpu_seconds']:.1f}; "
                 f"scoring P-dep/P-new {cpu.get('score', 0):.1f}); clean weeks quarantined {p['clean_weeks_quarantined']}"
                 f" (+{p['ingest']['warmup_quarantined']} in warm-up); suspect shards {p['suspect_shards']}; promotions {p['promotions']}; "
                 f"deployed model mean age {p['deployed_age_days_mean'] or 0:.1f} days")
    b1 = s["B1"]["train_cpu_seconds"]
    if b1:
        lines.append(f"training CPU: B1 {b1:.1f} s = {b1 / max(1e-9, cpu.get('pp-train', 0)):.0f}x pp-train, "
                     f"{b1 / max(1e-9, p['pipeline_cpu_seconds']):.1f}x the whole pipeline")
    return "\n".join(lines)


def plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    weeks = r["weekly"]
    xs = [datetime.datetime.fromisocalendar(int(w["week"][:4]), int(w["week"][6:8]), 1) for w in weeks]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for s in STRATEGIES:
        ys = []
        for i in range(len(weeks)):
            win = weeks[max(0, i - 7): i + 1]
            n = sum(w["examples"] for w in win)
            ys.append(sum(w["accuracy"][s] * w["examples"] for w in win) / n)
        ax.plot(xs, ys, label=f"{s} ({r['strategies'][s]['accuracy']:.3f})", linewidth=2 if s.startswith("P") else 1.2)
    ax.set_ylabel("accuracy, rolling 8 weeks")
    ax.set_title(f"drift {r['stream']}: prequential accuracy, period {r['period']} (commit {r['commit']})")
    ax.legend(loc="lower left", ncol=3, fontsize=9)
    ax.grid(alpha=0.3)
    ax2.plot(xs, [w["deployed_age_days"] for w in weeks], color="black")
    ax2.set_ylabel("deployed age (days)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    try:
        rc = main()
    except HarnessError as e:
        say(f"drift: {e}")
        rc = 1
    sys.exit(rc)
