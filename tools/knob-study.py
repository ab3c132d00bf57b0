#!/usr/bin/env python3
"""tools/knob-study.py: the learning-rate and dropout study of issue 16, reproducible by one
command. Each grid point is a `make drift` replay of one shipped stream, Perpetuum side only
(`bench/drift.py --no-refs`: the real tools, the units' schedule, a simulated clock) with the
point's PP_TRAIN_FLAGS, scored by:

  * P-new and P-dep accuracy over the period (as `make drift`);
  * adaptation speed: P-new's accuracy on a label's examples in the 4 weeks after the label
    first becomes frequent in the period (at least FREQ examples in a trailing 4-week window
    after at most 1 in the 26 weeks before), pooled over every such label;
  * minibatch noise: the share of eval-set examples on which consecutive checkpoints (by step)
    predict different labels, over every pair scored on the same eval set (their per-example
    `.pex` files), and the standard deviation of their accuracy differences.

    python3 tools/knob-study.py --bin .build/release [--grid lr] [--streams git,util-linux]
                                [--out docs/research/knobs.json] [--quick]

Grids: `lr` (linear model, lr 0.02 .. 1.0), `lr-hidden` (hidden 64, dropout 0.2, same lrs),
`dropout` (hidden 64, lr 0.4: fixed 0 / 0.1 / 0.2 / 0.4), `dropout-schedule` (the same, dropout
0.5 x sqrt(5000 / (5000 + n)) with n the training examples so far, set at runtime), `replay`
(replay share 0 / 0.5 at 5 passes, 1 / 20 passes at share 0.2), `dropout-lr0.1` (the first,
hidden 64 at lr 0.1: 0 / 0.2 / 0.5). Every finished point is saved to --out at
once and skipped when the study runs again, so a long grid can be run in parts. Progress on
stderr; a Markdown table of every point in --out on stdout.
"""
import argparse
import glob
import json
import shutil
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_FLAGS = "--bucket 200000"
LRS = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
GRIDS = {
    "lr": [(f"lr={lr}", f"--lr {lr}") for lr in LRS],
    "lr-hidden": [(f"hidden64 dropout0.2 lr={lr}", f"--hidden 64 --dropout 0.2 --lr {lr}") for lr in LRS],
    "dropout-lr0.1": [(f"hidden64 lr=0.1 dropout={d}", f"--hidden 64 --lr 0.1 --dropout {d}") for d in (0.0, 0.2, 0.5)],
    # At the hidden layer's default lr (Knobs.defaultHiddenLR), fixed values and a schedule
    # that falls with the data seen (drift.py --dropout-schedule D0:N0, set at runtime).
    "dropout": [(f"hidden64 lr=0.4 dropout={d}", f"--hidden 64 --lr 0.4 --dropout {d}") for d in (0.0, 0.1, 0.2, 0.4)],
    "dropout-schedule": [("hidden64 lr=0.4 dropout=0.5*sqrt(5000/(5000+n))", "--hidden 64 --lr 0.4 --dropout 0.5",
                          ["--dropout-schedule", "0.5:5000"])],
    # Freshness against forgetting: the share of each batch replayed from older shards and
    # the passes over each shard before the trainer idles (defaults 0.2 and 5).
    "replay": [(f"lr=0.2 replay={r} passes={m}", f"--lr 0.2 --replay {r} --max-passes {m}")
               for r, m in ((0.0, 5), (0.5, 5), (0.2, 1), (0.2, 20))],
}
FREQ = 5


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def adaptation(pred_path):
    """P-new's accuracy on each newly frequent label's examples in the 4 weeks after it
    became frequent; returns (accuracy pooled, examples, labels)."""
    weeks = [json.loads(l) for l in open(pred_path) if l.strip()]
    hits = n = 0
    labels = set()
    seen = {}   # label -> list of (week index, count)
    for i, w in enumerate(weeks):
        for g in w["gold"]:
            seen.setdefault(g, {}).setdefault(i, 0)
            seen[g][i] += 1
    for lab, counts in seen.items():
        for i in range(len(weeks)):
            window = sum(counts.get(j, 0) for j in range(max(0, i - 3), i + 1))
            before = sum(counts.get(j, 0) for j in range(max(0, i - 29), max(0, i - 3)))
            if window >= FREQ and before <= 1 and i >= 4:
                labels.add(lab)
                for j in range(i + 1, min(len(weeks), i + 5)):
                    for g, p in zip(weeks[j]["gold"], weeks[j]["P-new"]):
                        if g == lab:
                            n += 1
                            hits += (p == g)
                break
    return (hits / n if n else None), n, sorted(labels)


def read_pex(path):
    raw = subprocess.run(["zstd", "-dcq", path], capture_output=True, check=True).stdout
    if raw[:8] != b"PPEVEX01":
        raise ValueError(f"{path}: not a per-example file")
    h = int.from_bytes(raw[12:16], "little")
    head = json.loads(raw[16:16 + h])
    n = head["examples"]
    o = 16 + h
    truth = [int.from_bytes(raw[o + 4 * i:o + 4 * i + 4], "little") for i in range(n)]
    o += 4 * n
    pred = [int.from_bytes(raw[o + 4 * i:o + 4 * i + 4], "little") for i in range(n)]
    return truth, pred


def noise(root):
    """Disagreement of consecutive checkpoints on a shared eval set, and the spread of their
    accuracy differences."""
    by_set = {}
    for f in glob.glob(os.path.join(root, "evals", "*.json")):
        try:
            r = json.load(open(f))
        except (OSError, ValueError):
            continue
        pex = os.path.join(os.path.dirname(f), r.get("examples_file") or "")
        if r.get("evalset") and os.path.isfile(pex):
            by_set.setdefault(r["evalset"], []).append((r.get("step", 0), pex, r.get("accuracy")))
    dis, diffs, pairs = [], [], 0
    for rows in by_set.values():
        rows.sort()
        for (s1, p1, a1), (s2, p2, a2) in zip(rows, rows[1:]):
            if s1 == s2:
                continue
            t1, q1 = read_pex(p1)
            t2, q2 = read_pex(p2)
            if t1 != t2 or not t1:
                continue
            dis.append(sum(1 for x, y in zip(q1, q2) if x != y) / len(q1))
            if a1 is not None and a2 is not None:
                diffs.append(a2 - a1)
            pairs += 1
    return (statistics.mean(dis) if dis else None,
            statistics.pstdev(diffs) if len(diffs) > 1 else None, pairs)


def run_point(a, stream, name, flags, work, drift_args=()):
    os.makedirs(work, exist_ok=True)
    pred = os.path.join(work, "predictions.jsonl")
    cmd = [sys.executable, os.path.join(REPO, "bench", "drift.py"), "--no-refs",
           "--stream-dir", os.path.join(REPO, "data", stream, "stream"), "--name", stream,
           "--period", a.period, "--bin", os.path.abspath(a.bin), "--work", work,
           "--train-flags", f"{BASE_FLAGS} {flags}", "--predictions", pred]
    if a.quick:
        cmd.append("--quick")
    cmd += list(drift_args)
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{stream} {name}: drift.py exited {p.returncode}: {p.stderr[-1500:]}")
    res = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
    acc, n, labels = adaptation(pred)
    dis, spread, pairs = noise(os.path.join(work, "root"))
    return {"stream": stream, "point": name, "train_flags": f"{BASE_FLAGS} {flags}", "period": a.period, "quick": a.quick,
            "P-new": res["P-new"]["accuracy"], "P-dep": res["P-dep"]["accuracy"],
            "adaptation_accuracy": acc, "adaptation_examples": n, "adaptation_labels": labels,
            "consecutive_disagreement": dis, "consecutive_accuracy_spread": spread, "consecutive_pairs": pairs,
            "cpu_seconds": res.get("cpu_seconds"), "promotions": res.get("promotions"), "drift_args": list(drift_args),
            "dropout_final": res.get("dropout_final"), "train_examples_ingested": res.get("train_examples_ingested"),
            "seconds": round(time.monotonic() - t, 1)}


def plot_bars(points, path):
    """The non-lr grids (dropout, the dropout schedule, replay and passes): P-dep and the
    consecutive checkpoints' disagreement per point, a panel per measure, a bar per stream."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in points if not r["quick"] and ("dropout" in r["point"] and "lr=0.4" in r["point"] or "replay=" in r["point"])]
    names = []
    for r in pts:
        if r["point"] not in names:
            names.append(r["point"])
    names.sort(key=lambda n: (0 if "dropout=" in n and "sqrt" not in n else 1 if "sqrt" in n else 2, n))
    streams = sorted({r["stream"] for r in pts})
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    for ax, (key, title) in zip(axes, [("P-dep", "P-dep accuracy"), ("consecutive_disagreement", "disagreement of consecutive checkpoints")]):
        width = 0.8 / max(1, len(streams))
        for k, st in enumerate(streams):
            ys = [next((r[key] for r in pts if r["stream"] == st and r["point"] == n), float("nan")) for n in names]
            ax.bar([i + k * width for i in range(len(names))], ys, width, label=st)
        ax.set_xticks([i + width * (len(streams) - 1) / 2 for i in range(len(names))])
        ax.set_xticklabels([n.replace("hidden64 lr=0.4 ", "h64 ").replace("lr=0.2 ", "") for n in names], rotation=35, ha="right", fontsize=8)
        ax.set_title(title)
        if key == "P-dep":
            lo = min((r[key] for r in pts), default=0.4)
            ax.set_ylim(max(0, lo - 0.08), None)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Dropout (hidden 64, lr 0.4), a dropout schedule, replay share and passes: make drift replays 2023-2025")
    fig.tight_layout()
    fig.savefig(path)


def plot(points, path):
    """P-new, P-dep, adaptation and disagreement against lr, one panel per measure, a line
    per stream and model (linear; hidden 64 with dropout 0.2)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def lr_of(r):
        for part in r["point"].split():
            if part.startswith("lr="):
                return float(part[3:])
        return None

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    measures = [("P-new", "P-new accuracy"), ("P-dep", "P-dep accuracy"),
                ("adaptation_accuracy", "adaptation (newly frequent labels)"),
                ("consecutive_disagreement", "consecutive checkpoints disagree")]
    series = {}
    for r in points:
        if r.get("quick") or lr_of(r) is None:
            continue
        kind = "hidden" if "hidden" in r["point"] else "linear"
        series.setdefault((r["stream"], kind), []).append(r)
    for (stream, kind), rows in sorted(series.items()):
        rows.sort(key=lr_of)
        for ax, (key, title) in zip(axes, measures):
            xs = [lr_of(r) for r in rows if r.get(key) is not None]
            ys = [r[key] for r in rows if r.get(key) is not None]
            ax.plot(xs, ys, marker="o", linestyle="-" if kind == "linear" else "--", label=f"{stream} {kind}")
    for ax, (_, title) in zip(axes, measures):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (fixed)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    say(f"knob-study: wrote {path}")


def fmt(x, d=3):
    return "-" if x is None else f"{x:.{d}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("PP_BIN", os.path.join(REPO, ".build", "release")))
    ap.add_argument("--grid", default="lr", help="comma-separated: " + ", ".join(GRIDS))
    ap.add_argument("--streams", default="git,util-linux")
    ap.add_argument("--period", default="2023-2025")
    ap.add_argument("--quick", action="store_true", help="drift.py --quick (the shape, not the numbers)")
    ap.add_argument("--work", default=os.path.join(REPO, "bench", "work", "knob-study"))
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "research", "knobs.json"))
    ap.add_argument("--also", action="append", default=[], help="more result files to include in the table and plot")
    ap.add_argument("--plot", help="an SVG or PNG of the lr grids (needs matplotlib: bench/venv/bin/python)")
    ap.add_argument("--plot-bars", help="an SVG or PNG of the dropout, schedule and replay grids (needs matplotlib)")
    ap.add_argument("--no-run", action="store_true", help="only print the table (and --plot) of what is recorded")
    ap.add_argument("--keep-work", action="store_true", help="keep each point's replay folder (about 4 GB) after its figures are saved")
    a = ap.parse_args()
    done = []
    if os.path.exists(a.out):
        done = json.load(open(a.out))["points"]
    if a.no_run:
        a.grid = ""
    extra = [r for f in a.also for r in json.load(open(f))["points"]]
    have = {(r["stream"], r["point"], r["period"], r["quick"]) for r in done}
    for grid in [g for g in a.grid.split(",") if g]:
        for name, flags, *more in GRIDS[grid]:
            for stream in a.streams.split(","):
                if (stream, name, a.period, a.quick) in have:
                    continue
                say(f"knob-study: {stream} {name} ...")
                work = os.path.join(a.work, stream, name.replace(" ", "_").replace("=", ""))
                r = run_point(a, stream, name, flags, work, more[0] if more else ())
                say(f"  P-new {fmt(r['P-new'])} P-dep {fmt(r['P-dep'])} adaptation {fmt(r['adaptation_accuracy'])} "
                    f"({r['adaptation_examples']} ex) disagreement {fmt(r['consecutive_disagreement'])} in {r['seconds']:.0f} s")
                done.append(r)
                have.add((stream, name, a.period, a.quick))
                os.makedirs(os.path.dirname(a.out), exist_ok=True)
                with open(a.out + ".tmp", "w") as f:
                    json.dump({"points": done}, f, indent=1)
                    f.write("\n")
                os.replace(a.out + ".tmp", a.out)
                # A point's replay leaves ~4 GB of checkpoints; what the study needs of it is
                # saved above (a full grid once filled the disk).
                if not a.keep_work:
                    shutil.rmtree(work, ignore_errors=True)
    done = done + [r for r in extra if (r["stream"], r["point"], r["period"], r["quick"]) not in have]
    if a.plot:
        plot(done, a.plot)
    if a.plot_bars:
        plot_bars(done, a.plot_bars)
    print("| stream | point | P-new | P-dep | adaptation (examples) | consecutive disagreement | accuracy spread | pairs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(done, key=lambda r: (r["stream"], r["point"])):
        print(f"| {r['stream']}{' (quick)' if r['quick'] else ''} | {r['point']} | {fmt(r['P-new'])} | {fmt(r['P-dep'])} | "
              f"{fmt(r['adaptation_accuracy'])} ({r['adaptation_examples']}) | {fmt(r['consecutive_disagreement'])} | "
              f"{fmt(r['consecutive_accuracy_spread'])} | {r['consecutive_pairs']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
