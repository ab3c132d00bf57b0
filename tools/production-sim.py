#!/usr/bin/env python3
"""tools/production-sim.py: months of production on a compressed clock (issue 13).

    production-sim.py --bin PP_BIN [--days 90] [--ingest-every 3600] [--keep-bytes 60M]
                      [--stream-dir data/git] [--work DIR] [--out FILE] [--check]

The real tools on one state folder under a simulated clock ($PP_CLOCK_FILE, docs/operations.md)
run the way the shipped units run them: a batch of the stream lands in inbox/ every
--ingest-every seconds and pp-ingest runs (the inbox path unit); the pp-train daemon trains
it and writes its checkpoint (hourly or sooner: the daemon's interval, on the simulated
clock); pp-eval --pending --new runs after each batch (the checkpoints path unit and the
every-minute timer: each checkpoint is scored once, as it appears); pp-select --keep-bytes runs
once a day at 03:00 (its timer), retention included, after pp-eval --pending (the unit's
ExecStartPre: the deployed checkpoint and the candidates on the current eval set). The stream's records
are spread evenly over the simulated days in their own order (a real stream, squeezed).

It records, per simulated day: pp-eval's CPU seconds and runs, the results it wrote and the
examples they scored, pp-ingest's and pp-select's CPU seconds, the bytes of checkpoints
(runs/*/checkpoints), of heads and of evals/, and how many checkpoints and heads exist. `--check` asserts what issue 13 asks of a long run:
  * disk: checkpoints never take more than the budget plus one day of new checkpoints
    (retention runs daily);
  * flat evaluation work: once the holdout holds the eval window (EvalSet.holdoutWindow
    examples, or the whole holdout), the examples pp-eval scores per day in the last tenth
    of the run are at most 1.5x those of the tenth after the window filled (or after day 10),
    and pp-eval's CPU a day at most 2x;
  * the per-example files in evals/ (retention deletes those of deleted checkpoints) take at
    most twice as many bytes at the end as in that tenth;
  * a head (what retention keeps of a deleted checkpoint) takes at most twice as many bytes
    at the end as in that tenth (or 16 KiB, what the guard's window and labels fill), and
    pp-select's daily run at most twice the CPU;
  * the deployed model is never older than pp-select's --max-age (7 days) after the first week.
Exit status: 0 done (and, with --check, every assertion held), 1 an assertion failed or a
tool broke, 64 usage.
"""

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "bench"))
import drift  # noqa: E402  (the replay's tool runner and daemon driver)

DAY = 86400


def parse_bytes(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper()
    return int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s)


def folder_bytes(path, suffixes=None):
    total = n = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            if suffixes and not name.endswith(suffixes):
                continue
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
                n += 1
            except OSError:
                pass
    return total, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("PP_BIN", ""))
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--ingest-every", type=int, default=3600, help="seconds of simulated time between batches (the units: 300)")
    ap.add_argument("--keep-bytes", default="60M", help="pp-select's retention budget (the unit: 20G)")
    ap.add_argument("--stream-dir", default=os.path.join(REPO, "data", "git"))
    ap.add_argument("--train-flags", default="--bucket 20000 --dim 16 --minn 0 --maxn 0",
                    help="PP_TRAIN_FLAGS (a small model keeps the run short; default: %(default)s)")
    ap.add_argument("--holdout", default="0.3", help="pp-ingest --holdout (large, so the eval window fills within the run)")
    ap.add_argument("--max-age-days", type=float, default=7.0, help="pp-select's --max-age (default: %(default)s)")
    ap.add_argument("--work", default=os.path.join(REPO, "bench", "work", "production-sim"))
    ap.add_argument("--out")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--resume", action="store_true", help="continue the run in --work where it stopped (days.jsonl, archive/)")
    a = ap.parse_args()
    if not a.bin:
        ap.error("--bin (or $PP_BIN) is needed")
    budget = parse_bytes(a.keep_bytes)
    work = os.path.abspath(a.work)
    root, logs = os.path.join(work, "root"), os.path.join(work, "logs")
    days_path = os.path.join(work, "days.jsonl")
    if not a.resume:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(os.path.join(root, "inbox"))
        os.makedirs(logs)
    tools = drift.Tools(os.path.abspath(a.bin), root, os.path.join(work, "clock"), logs)
    tools.train_flags = a.train_flags.split()

    sdir = a.stream_dir
    if os.path.isdir(os.path.join(sdir, "stream")):
        sdir = os.path.join(sdir, "stream")
    files = drift.list_stream(sdir)
    recs = [r for w in sorted(files) for r in drift.read_week(files[w])]
    slots = a.days * DAY // a.ingest_every
    start = drift.week_start("2026-W01")
    drift.say(f"production-sim: {a.days} days, a batch every {a.ingest_every} s ({slots} batches, "
              f"{len(recs)} records of {a.stream_dir}), budget {budget} bytes; work {work}")

    t0 = time.monotonic()
    daemon = None
    days = []
    day = None   # the stats of the day that ends at the next 03:00 selection
    first = 0
    if a.resume:
        # Continue a run that stopped (a crash, a full disk, the end of a session): the state
        # folder is as the tools left it (every write is atomic); the days recorded so far are
        # in days.jsonl; the next batch is the one after the newest in archive/. The day in
        # progress when it stopped loses what it had counted (its pp-eval CPU is understated).
        with open(days_path) as f:
            days = [json.loads(l) for l in f if l.strip()]
        done_batches = [int(n[6:12]) for d in ("archive", "quarantine") for n in os.listdir(os.path.join(root, d))
                        if n.startswith("batch-") and n[6:12].isdigit()] if os.path.isdir(os.path.join(root, "archive")) else []
        first = max(done_batches, default=-1) + 1
        tools.seq = max((int(n[:5]) for n in os.listdir(logs) if n[:5].isdigit()), default=0)
        day = {"day": len(days), "eval_cpu": 0.0, "eval_runs": 0, "results": 0, "examples_scored": 0, "resumed": True}
        drift.say(f"production-sim: resuming at batch {first} of {slots} (day {len(days) + 1}), {len(days)} days recorded")
    select_at = 3 * 3600
    failures = []
    try:
        for k in range(first, slots):
            t = start + (k + 1) * a.ingest_every
            # pp-select's daily run at 03:00 comes first when it falls in this slot's span.
            sel = start + ((t - start - select_at) // DAY) * DAY + select_at
            if t - a.ingest_every < sel <= t and day is not None:
                tools.set_clock(sel)
                # pp-select.service: ExecStartPre=pp-eval --pending (the deployed checkpoint and
                # the candidates on the current eval set), then pp-select.
                before = tools.cpu.get("pp-eval", 0.0)
                _, out = tools.run("pp-eval", ["pp-eval", "--pending"], ok=(0, 1, 2))
                day["eval_cpu"] += tools.cpu.get("pp-eval", 0.0) - before
                day["eval_runs"] += 1
                count_results(day, out)
                before = tools.cpu.get("pp-select", 0.0)
                tools.run("pp-select", ["pp-select", "--keep-bytes", str(budget)], ok=(0, 1, 2))
                day["select_cpu"] = tools.cpu.get("pp-select", 0.0) - before
                ck_bytes, ck_n = folder_bytes(os.path.join(root, "runs"), (".ppc",))
                day["checkpoint_bytes"], day["checkpoints"] = ck_bytes, ck_n
                day["heads_bytes"], day["heads"] = folder_bytes(os.path.join(root, "runs"), (".head",))
                day["evals_bytes"] = folder_bytes(os.path.join(root, "evals"))[0]
                day["pex_bytes"] = folder_bytes(os.path.join(root, "evals"), (".pex",))[0]
                day["holdout_examples"] = holdout_examples(root)
                dep = os.path.join(root, "deployed")
                ct = drift.checkpoint_time(os.path.realpath(dep)) if os.path.islink(dep) else None
                day["deployed_age_days"] = round((tools.now - ct) / DAY, 3) if ct else None
                drift.say(f"  day {day['day'] + 1}/{a.days}: {ck_n} checkpoints, {ck_bytes / 1e6:.1f} MB (budget {budget / 1e6:.1f}), "
                          f"evals {day['evals_bytes'] / 1e6:.1f} MB (per-example {day['pex_bytes'] / 1e6:.1f}), "
                          f"holdout {day['holdout_examples']}, pp-eval {day['eval_cpu']:.2f} s / {day['examples_scored']} examples, "
                          f"deployed age {day['deployed_age_days']} d | {drift.fmt_dur(time.monotonic() - t0)}")
                days.append(day)
                with open(days_path, "a") as f:
                    f.write(json.dumps(day) + "\n")
                day = None
            if day is None:
                day = {"day": len(days), "eval_cpu": 0.0, "eval_runs": 0, "results": 0, "examples_scored": 0}
            batch = recs[k * len(recs) // slots:(k + 1) * len(recs) // slots]
            if batch:
                path = os.path.join(root, "inbox", f"batch-{k:06d}.jsonl")
                with open(path + ".part", "w") as f:
                    for r in batch:
                        f.write(json.dumps({"text": r["text"], "label": r["label"], "ts": t - 120}) + "\n")
                os.replace(path + ".part", path)
                os.utime(path, (t - 60, t - 60))
                tools.set_clock(t)
                before = tools.cpu.get("pp-ingest", 0.0)
                _, out = tools.run("pp-ingest", ["pp-ingest", "--holdout", a.holdout], ok=(0, 1, 2))
                day["ingest_cpu"] = day.get("ingest_cpu", 0.0) + tools.cpu.get("pp-ingest", 0.0) - before
                shards = [os.path.basename(s) for line in out.splitlines() if line.strip()
                          for s in json.loads(line).get("shards", []) if "/shards/" in s]
                if daemon is None and shards:
                    daemon = drift.Daemon(tools)
                if daemon and shards:
                    # Batches closer together than the hourly cadence: the daemon checkpoints
                    # the first time a batch arrives an hour after its first unsaved one.
                    daemon.settle(shards, checkpoint=a.ingest_every >= 3600)
                    before = tools.cpu.get("pp-eval", 0.0)
                    _, out = tools.run("pp-eval", ["pp-eval", "--pending", "--new"], ok=(0, 2))
                    day["eval_cpu"] += tools.cpu.get("pp-eval", 0.0) - before
                    day["eval_runs"] += 1
                    count_results(day, out)
        if day is not None and day["eval_runs"]:
            days.append(day)
    except drift.HarnessError as e:
        drift.say(f"production-sim: {e}")
        return 1
    finally:
        if daemon and daemon.p.poll() is None:
            daemon.stop()

    result = {"days": a.days, "ingest_every": a.ingest_every, "budget_bytes": budget, "train_flags": a.train_flags,
              "stream": a.stream_dir, "seconds": round(time.monotonic() - t0, 1), "cpu_seconds": tools.cpu,
              "runs": tools.runs, "per_day": days}
    out = a.out or os.path.join(work, "production-sim.json")
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(out + ".tmp", out)
    drift.say(f"production-sim: wrote {out} in {drift.fmt_dur(time.monotonic() - t0)}")
    if a.check:
        failures = check(result, budget, a)
        for f in failures:
            drift.say(f"production-sim: FAIL {f}")
        if not failures:
            drift.say("production-sim: every check held")
    return 1 if failures else 0


def count_results(day, out):
    """Adds pp-eval's JSON lines (one result each) to the day's results and examples scored."""
    for line in out.splitlines():
        if line.strip():
            r = json.loads(line)
            day["results"] += 1
            day["examples_scored"] += r.get("scored_examples", r.get("examples", 0))


def holdout_examples(root):
    n = 0
    h = os.path.join(root, "holdout")
    for name in sorted(os.listdir(h)) if os.path.isdir(h) else []:
        if name.endswith(".pps"):
            n += shard_examples(os.path.join(h, name))
    return n


def shard_examples(path):
    """The `examples` of a shard's header (docs/formats.md: zstd, magic, version, header length, JSON)."""
    import subprocess
    raw = subprocess.run(["zstd", "-dcq", path], capture_output=True).stdout
    if len(raw) < 16 or raw[:8] != b"PPSHARD1":
        return 0
    h = int.from_bytes(raw[12:16], "little")
    try:
        return int(json.loads(raw[16:16 + h]).get("examples", 0))
    except ValueError:
        return 0


WINDOW = 5000   # EvalSet.holdoutWindow


def check(r, budget, a):
    fails = []
    days = [d for d in r["per_day"] if "checkpoint_bytes" in d]
    per_day_new = max(1, DAY // a.ingest_every)
    biggest = max((d["checkpoint_bytes"] / max(1, d["checkpoints"]) for d in days), default=0)
    for d in days:
        if d["checkpoint_bytes"] > budget + per_day_new * biggest * 1.5:
            fails.append(f"day {d['day'] + 1}: checkpoints take {d['checkpoint_bytes']} bytes, budget {budget}")
        if d["day"] >= 7 and (d.get("deployed_age_days") is None or d["deployed_age_days"] > a.max_age_days):
            fails.append(f"day {d['day'] + 1}: deployed model {d.get('deployed_age_days')} days old")
    full = [d for d in days if d.get("holdout_examples", 0) >= WINDOW]
    base_from = full[0]["day"] if full else 10
    tenth = max(3, len(days) // 10)
    base = [d["examples_scored"] for d in days if base_from <= d["day"] < base_from + tenth]
    tail = [d["examples_scored"] for d in days[-tenth:]]
    if base and tail and days[-1]["day"] > base_from + tenth:
        b, t = sum(base) / len(base), sum(tail) / len(tail)
        if t > 1.5 * b:
            fails.append(f"evaluation work grew: {t:.0f} examples scored a day at the end vs {b:.0f} from day {base_from + 1}")
        # CPU too: the examples can stay flat while the cost of a run grows with the history
        # (each scoring run once decoded every stored result for the metrics file). 2x, not
        # 1.5x: CPU time moves with what else the machine runs.
        cb = [d["eval_cpu"] for d in days if base_from <= d["day"] < base_from + tenth]
        ct = [d["eval_cpu"] for d in days[-tenth:]]
        if sum(ct) / len(ct) > 2 * max(0.01, sum(cb) / len(cb)):
            fails.append(f"evaluation CPU grew: {sum(ct) / len(ct):.1f} s a day at the end vs {sum(cb) / len(cb):.1f} s from day {base_from + 1}")
        # What a lineage needs of a deleted checkpoint (its head) must not grow with the
        # history: heads once kept the whole data cursor (2.7 MB each by day 75 of 5-minute
        # ingests, heads/ growing with the square of the history). A head without it still
        # grows at first, as the guard's window of the last 64 shards fills (~6.5 KB) and labels
        # arrive: 16 KiB is allowed whatever the start (a 30-day run went 1.4 -> 3.1 KB).
        hb = [d["heads_bytes"] / d["heads"] for d in days if base_from <= d["day"] < base_from + tenth and d.get("heads")]
        ht = [d["heads_bytes"] / d["heads"] for d in days[-tenth:] if d.get("heads")]
        if hb and ht and sum(ht) / len(ht) > max(2 * sum(hb) / len(hb), 16384):
            fails.append(f"heads grew: {sum(ht) / len(ht):.0f} bytes a head at the end vs {sum(hb) / len(hb):.0f} from day {base_from + 1}")
        # pp-select's daily run reads the deployed chain's heads: linear in the history at a
        # few KB a head, not more.
        sb = [d["select_cpu"] for d in days if base_from <= d["day"] < base_from + tenth and "select_cpu" in d]
        st = [d["select_cpu"] for d in days[-tenth:] if "select_cpu" in d]
        if sb and st and sum(st) / len(st) > 2 * max(0.05, sum(sb) / len(sb)):
            fails.append(f"pp-select CPU grew: {sum(st) / len(st):.2f} s a run at the end vs {sum(sb) / len(sb):.2f} s from day {base_from + 1}")
        pb = [d["pex_bytes"] for d in days if base_from <= d["day"] < base_from + tenth]
        pt = [d["pex_bytes"] for d in days[-tenth:]]
        if sum(pt) / len(pt) > 2 * max(1, sum(pb) / len(pb)):
            fails.append(f"per-example files grew: {sum(pt) / len(pt):.0f} bytes at the end vs {sum(pb) / len(pb):.0f} from day {base_from + 1}")
    return fails


if __name__ == "__main__":
    sys.exit(main())
