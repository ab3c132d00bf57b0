#!/usr/bin/env python3
"""bench/ref_vw.py: the Vowpal Wabbit side of `make bench`, through the vowpalwabbit wheel
(its `Workspace.run_parser()` runs VW's own command-line driver over a file, as `vw -d` does).
Runs in bench/venv. Not a general VW front end.

  train --data F.vw --model OUT.vw --oaa N [--init IN.vw] [--passes P] [--ngram 2] [--bits 24]
  test  --model M.vw --data F.vw        top-1 accuracy over every line

F.vw lines are `LABEL_INDEX | tok tok ...` (bench.py writes them from the same tokens the
other tools get; tokens never contain ':' or '|'). Multi-pass training uses VW's cache and
turns off its own 10% holdout, so it trains on the same examples as the others. `--init`
continues a model (`-i`): VW saves its optimiser state by default (save_resume).
Each step prints one JSON line on stdout.
"""
import argparse
import json
import os
import time

from vowpalwabbit import pyvw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["train", "test"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--init")
    ap.add_argument("--oaa", type=int)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--ngram", type=int, default=2)
    ap.add_argument("--bits", type=int, default=24)
    a = ap.parse_args()

    t0 = time.perf_counter()
    if a.step == "train":
        cache = a.model + ".cache"
        args = ["--quiet", "-d", a.data, "-f", a.model, "--passes", str(a.passes),
                "--cache_file", cache, "-k", "--holdout_off"]
        if a.init:
            args += ["-i", a.init]          # model options (oaa, ngram, bits) come from it
        else:
            args += ["--oaa", str(a.oaa), "--ngram", str(a.ngram), "-b", str(a.bits)]
        vw = pyvw.Workspace(" ".join(args))
        vw.run_parser()
        vw.finish()
        if os.path.exists(cache):
            os.remove(cache)
        print(json.dumps({"train_seconds": time.perf_counter() - t0}))
    else:
        preds = a.model + ".preds"
        vw = pyvw.Workspace(f"--quiet -t -i {a.model} -d {a.data} -p {preds}")
        vw.run_parser()
        vw.finish()
        with open(a.data) as f:
            gold = [line.split(" ", 1)[0] for line in f]
        with open(preds) as f:
            got = [line.split()[0] if line.strip() else "" for line in f]
        os.remove(preds)
        correct = sum(1 for g, p in zip(gold, got) if float(g) == float(p or -1))
        print(json.dumps({"examples": len(gold), "accuracy": correct / max(1, len(gold)),
                          "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
