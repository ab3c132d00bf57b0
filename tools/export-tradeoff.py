#!/usr/bin/env python3
"""tools/export-tradeoff.py: what `pp-eval export` trades (issue 19, part 2): for each shipped
stream, a checkpoint trained by `pp-train --once --passes 5` (default model flags) on every week of
the stream but its last --test-weeks, and its exports at 32, 16 and 8 bits: file size, accuracy on those
last weeks (the stream's own later data), log-loss, and how often the export's top label is
the checkpoint's.

    python3 tools/export-tradeoff.py --bin .build/release [--test-weeks 26] [--passes 5] [--work DIR] [--out FILE]

Prints a Markdown table on stdout (progress on stderr) and writes --out as JSON.
"""
import argparse, json, os, shutil, subprocess, sys, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, stdin=None):
    p = subprocess.run(args, input=stdin, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"export-tradeoff: {' '.join(args)} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    return p.stdout.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("PP_BIN", os.path.join(REPO, ".build", "release")))
    ap.add_argument("--test-weeks", type=int, default=26)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(REPO, "bench", "work", "export-tradeoff"))
    ap.add_argument("--out")
    ap.add_argument("--streams", default="git,util-linux")
    a = ap.parse_args()
    tool = lambda name: os.path.join(os.path.abspath(a.bin), name)
    rows = []
    for name in a.streams.split(","):
        sdir = os.path.join(REPO, "data", name, "stream")
        weeks = sorted(f for f in os.listdir(sdir) if f.endswith((".jsonl", ".jsonl.zst")))
        train, test = weeks[:-a.test_weeks], weeks[-a.test_weeks:]
        root = os.path.join(os.path.abspath(a.work), name)
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(os.path.join(root, "inbox"))
        t0 = time.time() - (len(train) + 2) * 604800   # every file settled, in week order
        for i, w in enumerate(train):
            dst = os.path.join(root, "inbox", w)
            shutil.copyfile(os.path.join(sdir, w), dst)
            os.utime(dst, (t0 + i * 604800, t0 + i * 604800))
        print(f"{name}: {len(train)} weeks to train on, {len(test)} to test on", file=sys.stderr)
        # pp-ingest takes a bounded number of files a run: run it until the inbox is empty.
        for _ in range(100):
            if not any(not f.startswith(".") for f in os.listdir(os.path.join(root, "inbox"))):
                break
            subprocess.run([tool("pp-ingest"), "--root", root, "--holdout", "0"], capture_output=True)
        t = time.monotonic()
        ck = run([tool("pp-train"), "--root", root, "--once", "--passes", str(a.passes)]).strip().splitlines()[-1]
        print(f"  trained in {time.monotonic() - t:.0f} s: {ck}", file=sys.stderr)
        # The test weeks, as raw input files scored with --data, and as texts for predict.
        tdir = os.path.join(root, "test")
        os.makedirs(tdir)
        texts, gold = [], []
        for w in test:
            shutil.copyfile(os.path.join(sdir, w), os.path.join(tdir, w))
            raw = subprocess.run(["zstd", "-dc", os.path.join(sdir, w)], capture_output=True).stdout if w.endswith(".zst") \
                else open(os.path.join(sdir, w), "rb").read()
            for line in raw.decode().splitlines():
                if line.strip():
                    r = json.loads(line)
                    texts.append(json.dumps({"text": r["text"]}))
                    gold.append(r["label"])
        stdin = ("\n".join(texts) + "\n").encode()
        models = [("checkpoint", 32, ck)]
        for bits in (32, 16, 8):
            out = os.path.join(root, f"model-{bits}.ppm")
            run([tool("pp-eval"), "export", "--bits", str(bits), ck, out])
            models.append(("export", bits, out))
        ref = None
        for kind, bits, path in models:
            data = [x for f in sorted(os.listdir(tdir)) for x in ("--data", os.path.join(tdir, f))]
            res = json.loads(run([tool("pp-eval"), "--root", root, path, "--no-store"] + data).strip().splitlines()[-1])
            t = time.monotonic()
            labels = [json.loads(l)["label"] for l in run([tool("pp-eval"), "predict", path, "-k", "1"], stdin).splitlines() if l.strip()]
            secs = time.monotonic() - t
            if ref is None:
                ref = labels
            size = os.path.getsize(path)
            row = {"stream": name, "model": kind, "bits": bits, "bytes": size,
                   "accuracy": res.get("accuracy"), "log_loss": res.get("log_loss"), "examples": res.get("examples"),
                   "agree_top1": sum(1 for x, y in zip(ref, labels) if x == y) / max(1, len(ref)),
                   "predict_seconds": round(secs, 3)}
            rows.append(row)
            print(f"  {kind} {bits}: {size / 1e6:.1f} MB accuracy {row['accuracy']:.4f} agree {row['agree_top1']:.4f}", file=sys.stderr)
    print("| stream | file | bits | MB | accuracy | log-loss | same top label as the checkpoint | `pp-eval predict` s (load + all) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stream']} | {r['model']} | {r['bits']} | {r['bytes'] / 1e6:.1f} | {r['accuracy']:.4f} | {r['log_loss']:.4f} | "
              f"{100 * r['agree_top1']:.2f}% | {r['predict_seconds']:.2f} |")
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            json.dump({"test_weeks": a.test_weeks, "rows": rows}, f, indent=1)
        os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
