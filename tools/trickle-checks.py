#!/usr/bin/env python3
"""tools/trickle-checks.py: pp-ingest's checks on a trickle (issue 14; docs/formats.md, "Trickles").

    trickle-checks.py --bin PP_BIN [--stream-dir data/git/stream] [--first 2009-W01]
                      [--warm 52] [--weeks 26] [--every 300] [--spoil-every 150]
                      [--spoil-records 200] [--kinds K1,K2,...] [--deploy-every 4]
                      [--pool-min-examples N] [--work DIR] [--out FILE]

A real stream delivered the way a production producer trickles it: the --warm weeks before
--first arrive as weekly inputs (the reference and a deployed model: `pp-train --once`, then
`pp-select --deploy`), then the --weeks weeks from --first arrive in inputs of 1-3 records,
one every --every seconds of simulated time ($PP_CLOCK_FILE), each followed by a pp-ingest
run (the inbox path unit and its 5-minute timer). Every --deploy-every weeks of the
stream's data the model is retrained on what came in and deployed again (`pp-train --once`,
`pp-select --deploy`: a model a few weeks of data stale, as tools/false-positives.sh keeps
it; the simulated clock runs faster than the data, so a daily step would leave it months
stale). Every --spoil-every inputs, a stretch of --spoil-records records of the trickle
arrives spoiled instead (tools/spoil.py's --kinds in turn; `resend` sends again records sent
2-3 stretches earlier), spread over the same small inputs: each alone too small to tell.

Prints and writes (--out, JSON) per kind of spoil the inputs and records stopped; per pool
(wholly clean, wholly one kind of spoil, or mixed: a stretch's edges, whose clean inputs share
the pool's verdict) how many were stopped; pools judged, and how many had the reference checks
skipped. Exit status 0, 1 a tool broke, 64 usage.
"""

import argparse
import collections
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import spoil  # noqa: E402

WEEK = 7 * 86400
KINDS = ["shuffle-labels", "one-label", "random-bytes", "first-word", "resend", "binary"]


def records(path):
    raw = subprocess.run(["zstd", "-dc", "--", path], check=True, stdout=subprocess.PIPE).stdout
    return [l for l in raw.decode("utf-8").splitlines() if l.strip()]


def week_time(name):
    """The Sunday before ISO week `name` (YYYY-Www...), in Unix seconds."""
    import datetime
    y, w = name[:8].split("-W")
    d = datetime.datetime.fromisocalendar(int(y), int(w), 1).replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp()) - 86400


class Run:
    def __init__(self, a):
        self.a = a
        self.root = os.path.join(a.work, "root")
        self.clock = os.path.join(a.work, "clock")
        shutil.rmtree(a.work, ignore_errors=True)
        os.makedirs(os.path.join(self.root, "inbox"))
        if a.pool_min_examples is not None:
            with open(os.path.join(self.root, "policy.json"), "w") as f:
                json.dump({"ingest": {"pool_min_examples": a.pool_min_examples}}, f)
        self.env = dict(os.environ, PP_ROOT=self.root, PP_CLOCK_FILE=self.clock)
        self.lines = []   # every pp-ingest JSON line
        self.cpu = 0.0

    def set_clock(self, t):
        with open(self.clock + ".tmp", "w") as f:
            f.write(f"{t:.3f}\n")
        os.replace(self.clock + ".tmp", self.clock)

    def tool(self, args, ok=(0,)):
        p = subprocess.run([os.path.join(self.a.bin, args[0])] + args[1:], env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode not in ok:
            raise SystemExit(f"trickle-checks: {' '.join(args)}: exit {p.returncode}\n{p.stderr[-2000:]}")
        return p.stdout

    def drop(self, name, data, t):
        tmp = os.path.join(self.root, "inbox", "." + name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.utime(tmp, (t, t))
        os.replace(tmp, os.path.join(self.root, "inbox", name))

    def ingest(self):
        t0 = time.process_time()
        r0 = os.times()
        out = self.tool(["pp-ingest", "--settle", "0"], ok=(0, 1, 2))
        r1 = os.times()
        self.cpu += (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
        for l in out.splitlines():
            if l.strip():
                self.lines.append(json.loads(l))

    def deploy(self):
        out = self.tool(["pp-train", "--once", "--threads", "1"] + self.a.train_flags.split(), ok=(0, 2)).strip()
        if out:
            self.tool(["pp-select", "--deploy", out.splitlines()[-1]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("PP_BIN", ""))
    ap.add_argument("--stream-dir", default=os.path.join(REPO, "data", "git", "stream"))
    ap.add_argument("--first", default="2009-W01", help="the first week of the trickle")
    ap.add_argument("--warm", type=int, default=52, help="weeks before --first, ingested weekly (default %(default)s)")
    ap.add_argument("--weeks", type=int, default=26, help="weeks of the stream trickled (default %(default)s)")
    ap.add_argument("--every", type=int, default=300, help="simulated seconds between inputs")
    ap.add_argument("--spoil-every", type=int, default=150, help="inputs between spoiled stretches (0: none)")
    ap.add_argument("--spoil-records", type=int, default=200, help="records in a spoiled stretch (default %(default)s: four pools)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="the spoils, in turn (default %(default)s)")
    ap.add_argument("--deploy-every", type=int, default=4, help="weeks of data between deployments (default %(default)s)")
    ap.add_argument("--pool-min-examples", type=int, help="policy.json ingest.pool_min_examples (0: judge every input alone)")
    ap.add_argument("--train-flags", default="--bucket 200000", help="pp-train flags of the daily model")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=os.path.join(REPO, "bench", "work", "trickle-checks"))
    ap.add_argument("--out")
    a = ap.parse_args()
    if not a.bin or not os.path.exists(os.path.join(a.bin, "pp-ingest")):
        ap.error("--bin: a folder with the pp-* tools")
    a.bin = os.path.abspath(a.bin)
    files = sorted(glob.glob(os.path.join(a.stream_dir, "*.jsonl.zst")))
    names = [os.path.basename(f) for f in files]
    start = next((i for i, n in enumerate(names) if n >= a.first), None)
    if start is None or start < 1:
        ap.error(f"--first {a.first}: no such week after the first of {a.stream_dir}")
    warm = files[max(0, start - a.warm):start]
    trickled = files[start:start + a.weeks]
    rng = random.Random(a.seed)
    kinds = [x for x in a.kinds.split(",") if x]
    if not kinds or any(x not in KINDS for x in kinds):
        ap.error(f"--kinds: a comma-separated list of {', '.join(KINDS)}")
    r = Run(a)
    t0 = time.monotonic()

    # Warm-up: weekly inputs, a deployed model.
    for f in warm:
        t = week_time(os.path.basename(f))
        r.set_clock(t + 3600)
        with open(f, "rb") as src:
            r.drop(os.path.basename(f), src.read(), t)
        r.ingest()
    r.deploy()

    # The trickle: 1-3 records an input, a spoiled stretch now and then.
    recs, week_of = [], []
    for wi, f in enumerate(trickled):
        for l in records(f):
            recs.append(l)
            week_of.append(wi)
    next_deploy = a.deploy_every
    t = week_time(os.path.basename(trickled[0]))
    sent = []          # every clean record sent so far (for resend)
    kind_of = {}       # input name -> spoil kind (absent: clean)
    records_of = {}    # input name -> records in it
    i = j = k = 0
    next_spoil = a.spoil_every
    while i < len(recs):
        if a.spoil_every and j == next_spoil:
            kind = kinds[k % len(kinds)]
            k += 1
            next_spoil += a.spoil_every
            if kind == "resend":
                seg = sent[max(0, len(sent) - 3 * a.spoil_records):][:a.spoil_records] or recs[i:i + a.spoil_records]
            else:
                seg = recs[i:i + a.spoil_records]
                i += len(seg)
            raw = "".join(l + "\n" for l in seg).encode("utf-8")
            if kind == "binary":
                bad = [spoil.spoil("binary", raw[p:p + 200], seed=a.seed + p) for p in range(0, len(raw), 600)]
            else:
                out = spoil.spoil(kind, raw, seed=a.seed + j).decode("utf-8").splitlines()
                bad, p = [], 0
                while p < len(out):
                    n = rng.randint(1, 3)
                    bad.append(("".join(l + "\n" for l in out[p:p + n])).encode("utf-8"))
                    p += n
            for data in bad:
                name = f"in-{j:06d}.jsonl"
                kind_of[name] = kind
                records_of[name] = data.count(b"\n")
                t += a.every
                r.set_clock(t + 1)
                r.drop(name, data, t)
                r.ingest()
                j += 1
            continue
        n = rng.randint(1, 3)
        chunk = recs[i:i + n]
        i += len(chunk)
        sent.extend(chunk)
        name = f"in-{j:06d}.jsonl"
        records_of[name] = len(chunk)
        t += a.every
        r.set_clock(t + 1)
        r.drop(name, "".join(l + "\n" for l in chunk).encode("utf-8"), t)
        r.ingest()
        j += 1
        if i < len(recs) and week_of[i] >= next_deploy:
            next_deploy += a.deploy_every
            r.set_clock(t + 2)
            r.deploy()
    # What still waits is judged once its pool's wait is over.
    t += 7 * 3600
    r.set_clock(t)
    r.ingest()

    # The verdicts: the last line per input (a waiting input gets a line each run).
    final = {}
    pools = {}
    for l in r.lines:
        name = os.path.basename(l.get("file", ""))
        if name in records_of:
            final[name] = l
            p = l.get("pool")
            if p and l.get("status") != "waiting":
                pools[tuple(p["inputs"])] = l
    stopped = lambda l: l.get("status") in ("quarantined", "rejected")
    by_kind = collections.defaultdict(lambda: {"inputs": 0, "stopped": 0, "records": 0, "records_stopped": 0})
    for name, recs_n in records_of.items():
        l = final.get(name, {})
        kd = by_kind[kind_of.get(name, "clean")]
        kd["inputs"] += 1
        kd["records"] += recs_n
        if stopped(l):
            kd["stopped"] += 1
            kd["records_stopped"] += recs_n
    # Per pool: wholly clean, wholly one kind of spoil, or mixed (a stretch's edges).
    by_pool = collections.defaultdict(lambda: {"pools": 0, "stopped": 0, "clean_inputs": 0})
    for p, l in pools.items():
        kinds = {kind_of.get(x, "clean") for x in p}
        key = kinds.pop() if len(kinds) == 1 else "mixed"
        d = by_pool[key]
        d["pools"] += 1
        d["stopped"] += 1 if stopped(l) else 0
        d["clean_inputs"] += sum(1 for x in p if x not in kind_of)
    skipped = sum(1 for l in pools.values() if (l.get("checks") or {}).get("label_linf", {}).get("skipped"))
    tripped = collections.Counter(c for l in pools.values() for c in (l.get("tripped") or []))
    clean_pools_stopped = [list(p) for p, l in pools.items() if stopped(l) and all(x not in kind_of for x in p)]
    result = {
        "stream": a.stream_dir, "first": os.path.basename(trickled[0])[:8], "weeks": len(trickled), "every_s": a.every,
        "inputs": len(records_of), "pools": len(pools), "pools_reference_skipped": skipped,
        "pool_examples_median": sorted(l["pool"]["examples"] for l in pools.values())[len(pools) // 2] if pools else None,
        "by_kind": by_kind, "by_pool": by_pool, "tripped": tripped, "clean_pools_stopped": clean_pools_stopped,
        "ingest_cpu_s": round(r.cpu, 1), "seconds": round(time.monotonic() - t0, 1),
    }
    print(f"trickle-checks: {result['stream']} from {result['first']}, {result['weeks']} weeks, an input every {a.every} s: "
          f"{result['inputs']} inputs, {result['pools']} pools judged (median {result['pool_examples_median']} examples), "
          f"reference checks skipped in {skipped}; pp-ingest CPU {result['ingest_cpu_s']} s")
    for kind in ["clean"] + KINDS:
        if kind in by_kind:
            d = by_kind[kind]
            print(f"  {kind:15s} inputs stopped {d['stopped']:5d} / {d['inputs']:5d}   records {d['records_stopped']:5d} / {d['records']:5d}")
    for key in ["clean"] + KINDS + ["mixed"]:
        if key in by_pool:
            d = by_pool[key]
            print(f"  pools {key:15s} stopped {d['stopped']:3d} / {d['pools']:3d}" + (f"   (clean inputs in them: {d['clean_inputs']})" if key == "mixed" else ""))
    print(f"  tripped (pools): {dict(tripped)}")
    print(f"  clean pools stopped: {len(clean_pools_stopped)}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
