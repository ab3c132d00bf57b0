#!/usr/bin/env python3
"""The end-to-end measurement of issue 7: one spoiled batch injected into a replay of the
demo stream, and what it does to the *deployed* model, with the guards on and off.

    tools/spoil-replay.py [--bin DIR] [--first 2023-W01] [--weeks 48] [--spoil-at 24]
                          [--kind shuffle-labels] [--spoil-weeks 12] [--configs ...]
                          [--work DIR] [--json OUT]

For each configuration, a fresh state folder replays --weeks consecutive weeks of demo/data
from --first, one week at a time: the week lands in inbox/ (its mtime set to the week's
date, so shard names sort by week) and `pp-ingest` runs; every --every weeks `pp-train
--once`, `pp-eval --pending` and `pp-select` run, as the timers would. After week --spoil-at, one extra batch
lands: --spoil-weeks weeks taken from the END of demo/data (outside the replayed range, so
its texts are new and no duplicate check is involved), spoiled with tools/spoil.py --kind.
After every week the deployed checkpoint is scored on what users will send next: the raw
data of the --horizon weeks that follow (not ingested yet, so never trained on), with
`pp-eval --data WEEK... --no-store deployed`. Every configuration is scored on the same
weeks at the same point, so the differences between them are paired.

pp-select runs with --select-flags (default: promote on any accuracy gain on the holdout,
no bootstrap): the demo weeks hold 27 examples on average, so the holdout is too small for
the production defaults to ever promote, and the deployed model would never move.

The weeks before the injection run once (default policy) and every configuration continues
from a copy of that state folder. Configurations (policy.json in the root; see
docs/formats.md "policy.json"):
  clean       no spoiled batch: the reference curve
  clean2      the same again: the noise floor (shards carry their ingest time in the
              header, so their hashes, and with them pp-train's shuffling order, differ
              between runs; the dip of clean2 is what chance alone does)
  off         every guard off: ingest quarantines nothing, pp-train's loss guard off,
              pp-select's lineage guard off
  on          the defaults: every layer on
  ingest-off  ingest measures but quarantines nothing; pp-train's guard and pp-select on
              (shows what layers 2 and 3 do alone)
  undo        every automatic guard off, but a person notices --undo-after weeks later and
              follows docs/runbook.md: pp-ingest quarantine, pp-select (rolls the deployed
              model back), pp-train rewind --before, pp-train --once, pp-eval --pending,
              pp-select

Output: one line per configuration and step on stderr while it runs, then a table on
stdout: the deployed model's mean accuracy over the steps after the injection, its dip
against the clean run (mean and worst step), how many steps the deployed model had the
spoiled batch in its lineage; the same for the run's newest checkpoint (what training alone
did, before pp-select's comparison); and what each layer did. --json writes the raw series.
Only python3's standard library and the zstd command are used. Takes a few minutes on 2
cores with the defaults (small model: dim 30, words, bigrams and char 3-5-grams, 100k
buckets, lr 0.2, one thread).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["clean", "clean2", "off", "on", "ingest-off", "undo"]
POLICY = {
    "clean": None,
    "clean2": None,
    "on": None,
    "off": {"ingest": {"quarantine": False}, "train": {"guard": False}, "select": {"guard": False}},
    "ingest-off": {"ingest": {"quarantine": False}},
    "undo": {"ingest": {"quarantine": False}, "train": {"guard": False}},
}
HOLDOUT = "0.15"
TRAIN_FLAGS = "--dim 30 --minn 3 --maxn 5 --word-ngrams 2 --bucket 100000 --min-count 1 --lr 0.2 --threads 1 --seed 1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


SECONDS = {}   # wall time per tool, for the closing line


class Tools:
    def __init__(self, bindir, root):
        self.bin = bindir
        self.root = root

    def run(self, tool, args, ok=(0, 1, 2), stdin=None):
        # --root last: it belongs to whichever subcommand (quarantine, rewind) is named first.
        t0 = time.monotonic()
        p = subprocess.run([os.path.join(self.bin, tool)] + args + ["--root", self.root],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, input=stdin)
        key = tool + (" " + args[0] if args and not args[0].startswith("-") else "")
        SECONDS[key] = SECONDS.get(key, 0) + time.monotonic() - t0
        if p.returncode not in ok:
            raise SystemExit(f"spoil-replay: {tool} {' '.join(args)} exited {p.returncode}:\n{p.stderr.decode(errors='replace')}")
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def json_lines(self, out):
        return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def week_time(name):
    """Monday 12:00 UTC of ISO week 'YYYY-Www'."""
    y, w = name[:4], name[6:8]
    return datetime.strptime(f"{y}-W{w}-1 12", "%G-W%V-%u %H").replace(tzinfo=timezone.utc).timestamp()


def deliver(src, root, name, mtime):
    inbox = os.path.join(root, "inbox")
    tmp = os.path.join(inbox, "." + name)
    shutil.copyfile(src, tmp)
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, os.path.join(inbox, name))


def build_spoiled(weeks, kind, out, seed):
    """Concatenates `weeks` into one JSON Lines file and spoils it with tools/spoil.py."""
    plain = out + ".src.jsonl"
    with open(plain, "wb") as f:
        for w in weeks:
            f.write(subprocess.run(["zstd", "-dc", "--", w], check=True, stdout=subprocess.PIPE).stdout)
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "spoil.py"), kind, plain, out, "--seed", str(seed)], check=True)
    os.remove(plain)


def newest(root):
    """The newest checkpoint of run main (what pp-train would give pp-select next)."""
    d = os.path.join(root, "runs", "main", "checkpoints")
    files = sorted(f for f in os.listdir(d) if f.endswith(".ppc")) if os.path.isdir(d) else []
    return os.path.join(d, files[-1]) if files else None


def accuracy(t, files, dep=None):
    """The accuracy of checkpoint `dep` (default: the deployed one) on the raw weeks `files`."""
    dep = dep or os.path.join(t.root, "deployed")
    if not os.path.exists(dep):
        return None
    args = []
    for f in files:
        args += ["--data", f]
    _, out, _ = t.run("pp-eval", args + ["--no-store", dep], ok=(0,))
    return json.loads(out)["accuracy"]


def suspects(root):
    out = {}
    for f in glob.glob(os.path.join(root, "runs", "*", "suspects.json")):
        with open(f) as fh:
            for s in json.load(fh).get("shards", []):
                out[s["name"]] = s.get("reason", "")
    return out


def week(t, i, weeks, args, st):
    """Delivers week i (and the spoiled batch when it is due), then runs the four tools as the
    timers would; records the deployed model's accuracy on the next --horizon weeks."""
    w = weeks[i]
    name = os.path.basename(w)
    root = t.root
    select = ["--since", "3650d", "--metric", "all.accuracy"] + args.select_flags.split()
    deliver(w, root, name, week_time(name))
    if i == args.spoil_at and st["spoil"]:
        deliver(st["spoiled"], root, "spoiled-" + name, week_time(name) + 3600)
    _, out, _ = t.run("pp-ingest", ["--settle", "0", "--holdout", HOLDOUT])
    for r in t.json_lines(out):
        b = os.path.basename(r.get("file", ""))
        if b.startswith("spoiled-"):
            st["spoiled_ingest"] = r.get("status")
            st["spoiled_shards"] = [os.path.basename(s) for s in r.get("shards", []) if "/shards/" in s]
            st["events"].append(f"week {i}: ingest {r.get('status')}" + (f" ({r.get('reason')})" if r.get("reason") else ""))
        elif r.get("status") == "rejected":
            st["events"].append(f"week {i}: clean {b[:8]} rejected by ingest ({r.get('reason', '')[:80]})")
    if (i + 1) % args.every != 0 and i != args.weeks - 1:
        return
    t.run("pp-train", ["--once"] + args.train_flags.split(), ok=(0, 2))
    t.run("pp-eval", ["--pending", "--recent-days", "3650"])
    code, out, _ = t.run("pp-select", select, ok=(0, 1, 2))
    for d in t.json_lines(out):
        if d.get("poisoned") or any(r.get("kind") == "poison" for r in d.get("rejected") or []):
            st["events"].append(f"week {i}: pp-select {d['decision']} (exit {code})"
                                + (" of the poisoned deployed model" if d.get("poisoned") else ", poisoned candidates refused"))
    if st.get("undo_at") is not None and i >= st["undo_at"] and st["spoiled_shards"] and not st.get("undone"):
        st["undone"] = True
        # docs/runbook.md, "A bad batch got in" (no trainer runs between the weeks here).
        t.run("pp-ingest", ["quarantine"] + st["spoiled_shards"] + ["--reason", "labels shuffled (spoil-replay undo)"], ok=(0,))
        code, out, _ = t.run("pp-select", select, ok=(0, 1, 2))
        for s in st["spoiled_shards"]:
            t.run("pp-train", ["rewind", "--before", s, "--run", "main"], ok=(0,))
        t.run("pp-train", ["--once"] + args.train_flags.split(), ok=(0, 2))
        t.run("pp-eval", ["--pending", "--recent-days", "3650"])
        t.run("pp-select", select, ok=(0, 1, 2))
        st["events"].append(f"week {i}: undo by hand (pp-ingest quarantine; pp-select exit {code}; pp-train rewind; retrain)")
    nxt = weeks[i + 1:i + 1 + args.horizon]
    acc = accuracy(t, nxt)
    new = newest(root)
    acc_new = accuracy(t, nxt, new) if new else None
    depl = os.path.join(root, "deployed")
    dep = os.path.basename(os.path.realpath(depl)) if os.path.exists(depl) else "-"
    poisoned = False
    if st["spoiled_shards"] and dep != "-":
        _, out, _ = t.run("pp-eval", ["--lineage", depl], ok=(0,))
        names = {s["name"] for l in t.json_lines(out) for s in l.get("shards", [])}
        poisoned = any(s in names for s in st["spoiled_shards"])
    st["series"].append({"week": i, "name": name[:8], "deployed": dep, "accuracy": acc, "poisoned": poisoned,
                         "newest": os.path.basename(new) if new else None, "newest_accuracy": acc_new})
    log(f"{st['config']:10s} week {i:2d} {name[:8]} deployed {dep[:40]:40s} acc {acc if acc is None else round(acc, 4)}"
        f" (newest {acc_new if acc_new is None else round(acc_new, 4)})"
        + (" POISONED" if poisoned else ""))


def replay(config, args, weeks, spoiled, prefix):
    """Continues a copy of the prefix root (weeks before the injection, default policy)
    under `config`'s policy from week --spoil-at on."""
    root = os.path.join(args.work, config)
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(prefix["root"], root, symlinks=True)
    if POLICY[config] is not None:
        with open(os.path.join(root, "policy.json"), "w") as f:
            json.dump(POLICY[config], f)
    st = {"config": config, "series": list(prefix["series"]), "events": [], "spoiled_ingest": None, "spoiled_shards": [],
          "spoil": not config.startswith("clean"), "spoiled": spoiled,
          "undo_at": args.spoil_at + args.undo_after if config == "undo" else None}
    started = time.monotonic()
    t = Tools(args.bin, root)
    for i in range(args.spoil_at, args.weeks):
        week(t, i, weeks, args, st)
    sus = suspects(root)
    return {"config": config, "series": st["series"], "events": prefix["events"] + st["events"],
            "spoiled_ingest": st["spoiled_ingest"], "spoiled_shards": st["spoiled_shards"],
            "suspects": sorted(k for k in sus if k in st["spoiled_shards"]), "seconds": round(time.monotonic() - started, 1)}


def run_prefix(args, weeks):
    root = os.path.join(args.work, "prefix")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "inbox"))
    st = {"config": "prefix", "series": [], "events": [], "spoiled_shards": [], "spoil": False}
    t = Tools(args.bin, root)
    for i in range(args.spoil_at):
        week(t, i, weeks, args, st)
    return {"root": root, "series": st["series"], "events": st["events"]}


def summarize(events):
    """'week N: TEXT' lines -> 'TEXT (week N)' or 'TEXT (weeks N..M, K times)', first seen first."""
    seen = {}
    for e in events:
        wk, text = e.split(": ", 1)
        seen.setdefault(text, []).append(int(wk.split()[1]))
    return [f"{t} (week {w[0]})" if len(w) == 1 else f"{t} (weeks {w[0]}..{w[-1]}, {len(w)} times)" for t, w in seen.items()]


def main():
    ap = argparse.ArgumentParser(description="Replay the demo weeks with one spoiled batch; deployed accuracy with guards on vs off.")
    ap.add_argument("--bin", default=os.path.join(REPO, ".build", "release"), help="folder with the pp-* binaries")
    ap.add_argument("--first", default="2023-W01", help="first week replayed (demo/data name)")
    ap.add_argument("--weeks", type=int, default=48, help="weeks replayed")
    ap.add_argument("--spoil-at", type=int, default=24, help="the spoiled batch lands after this many weeks (0-based index)")
    ap.add_argument("--spoil-weeks", type=int, default=12, help="weeks of data in the spoiled batch (from the end of demo/data)")
    ap.add_argument("--kind", default="shuffle-labels", help="tools/spoil.py kind")
    ap.add_argument("--undo-after", type=int, default=2, help="undo: weeks between the injection and the person's undo")
    ap.add_argument("--every", type=int, default=2, help="train, score and select after every N weeks delivered")
    ap.add_argument("--horizon", type=int, default=6, help="score the deployed model on this many following weeks")
    ap.add_argument("--train-flags", default=TRAIN_FLAGS, help="pp-train flags for the run (one string)")
    ap.add_argument("--select-flags", default="--min-gain 0 --bootstrap 0 --tolerance 1",
                    help="extra pp-select flags (one string)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=os.path.join(REPO, "demo", "spoil-replay"), help="scratch folder (replaced)")
    ap.add_argument("--json", help="write the raw series here")
    args = ap.parse_args()
    for tool in ["pp-ingest", "pp-train", "pp-eval", "pp-select"]:
        if not os.access(os.path.join(args.bin, tool), os.X_OK):
            raise SystemExit(f"spoil-replay: {tool} not found in {args.bin} (make build, or --bin)")
    all_weeks = sorted(glob.glob(os.path.join(REPO, "demo", "data", "*.jsonl.zst")))
    names = [os.path.basename(w)[:8] for w in all_weeks]
    if args.first not in names:
        raise SystemExit(f"spoil-replay: no week {args.first} in demo/data")
    k = names.index(args.first)
    weeks = all_weeks[k:k + args.weeks + args.horizon]
    source = all_weeks[-args.spoil_weeks:]
    if k + args.weeks + args.horizon > len(all_weeks) - args.spoil_weeks:
        raise SystemExit("spoil-replay: the replayed weeks overlap the spoiled batch's source weeks; use fewer weeks")
    if not 0 <= args.spoil_at < args.weeks - 1:
        raise SystemExit("spoil-replay: --spoil-at must be inside the replayed weeks, before the last")
    os.makedirs(args.work, exist_ok=True)
    spoiled = os.path.join(args.work, "spoiled.jsonl.zst")
    build_spoiled(source, args.kind, spoiled, args.seed)
    log(f"spoil-replay: weeks {names[k]}..{os.path.basename(weeks[args.weeks - 1])[:8]}, {args.kind} batch of "
        f"{args.spoil_weeks} weeks ({names[-args.spoil_weeks]}..{names[-1]}) after week {args.spoil_at}; "
        f"each week the deployed model is scored on the next {args.horizon} weeks")

    prefix = run_prefix(args, weeks)
    results = [replay(c, args, weeks, spoiled, prefix) for c in args.configs.split(",")]

    def stats(r, key):
        """Mean accuracy after the injection, and the dip against the clean run (mean, worst step)."""
        pts = [p for p in r["series"] if p["week"] > args.spoil_at and p.get(key) is not None]
        base = {p["week"]: p[key] for p in clean["series"]} if clean else {}
        mean = sum(p[key] for p in pts) / len(pts) if pts else float("nan")
        dips = [base[p["week"]] - p[key] for p in pts if base.get(p["week"]) is not None]
        if r is clean or not dips:
            return mean, float("nan"), float("nan")
        return mean, sum(dips) / len(dips), max(dips)

    clean = next((r for r in results if r["config"] == "clean"), None)
    steps = sum(1 for p in results[0]["series"] if p["week"] > args.spoil_at)
    print(f"# tools/spoil-replay.py --first {args.first} --weeks {args.weeks} --spoil-at {args.spoil_at} "
          f"--spoil-weeks {args.spoil_weeks} --kind {args.kind} --every {args.every} --horizon {args.horizon}")
    print(f"# accuracy on the next {args.horizon} weeks, mean over the {steps} steps after the injection; "
          f"dip = clean run minus this one (mean, worst step); 'poisoned' = steps whose deployed model had the batch in its lineage")
    print(f"{'config':11s} | {'deployed':>8s} {'dip':>7s} {'worst':>7s} {'poisoned':>8s} | {'newest':>7s} {'dip':>7s} {'worst':>7s} | what happened")
    for r in results:
        dm, dd, dw = stats(r, "accuracy")
        nm, nd, nw = stats(r, "newest_accuracy")
        pw = sum(1 for p in r["series"] if p["poisoned"])
        what = []
        if not r["config"].startswith("clean"):
            what.append(f"ingest: {r['spoiled_ingest']}")
            if r["suspects"]:
                what.append(f"pp-train: {len(r['suspects'])} shard(s) suspect")
            what += summarize([e for e in r["events"] if ": ingest " not in e])
        print(f"{r['config']:11s} | {dm:8.4f} {dd:7.4f} {dw:7.4f} {pw:8d} | {nm:7.4f} {nd:7.4f} {nw:7.4f} | " + "; ".join(what))
    log("spoil-replay: seconds per tool: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(SECONDS.items(), key=lambda kv: -kv[1])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
