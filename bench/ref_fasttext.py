#!/usr/bin/env python3
"""bench/ref_fasttext.py: the fastText side of `make bench`, through the fasttext-wheel
bindings (the same C++ code as the `fasttext` command; the wheel ships no command). Runs in
bench/venv. Not a general fastText front end: just the four steps the bench times.

  train   --input FT --output MODEL.bin [hyperparameters]  the timed `fasttext supervised`
  test    --model MODEL.bin --input FT                        `fasttext test` (timed for speed)
  accuracy --model MODEL.bin --input FT                       top-1 accuracy over EVERY line
  predict --model MODEL.bin < text lines                      `fasttext predict`, one label a line

Each prints one JSON line on stdout. `accuracy` counts every example, also those whose label
the model never saw (fastText's own `test` drops them, which would flatter it).
"""
import argparse
import json
import sys
import time

import fasttext

fasttext.FastText.eprint = lambda *a, **k: None  # silence the deprecation notice on load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["train", "test", "accuracy", "predict"])
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--model")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--word-ngrams", type=int, default=2)
    ap.add_argument("--minn", type=int, default=0)
    ap.add_argument("--maxn", type=int, default=0)
    ap.add_argument("--bucket", type=int, default=2000000)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--epoch", type=int, default=5)
    ap.add_argument("--thread", type=int, default=2)
    a = ap.parse_args()

    t0 = time.perf_counter()
    if a.step == "train":
        m = fasttext.train_supervised(
            input=a.input, dim=a.dim, wordNgrams=a.word_ngrams, minn=a.minn, maxn=a.maxn,
            bucket=a.bucket, lr=a.lr, epoch=a.epoch, thread=a.thread, minCount=1,
            loss="softmax", verbose=0)
        t1 = time.perf_counter()
        m.save_model(a.output)
        print(json.dumps({"train_seconds": t1 - t0, "save_seconds": time.perf_counter() - t1,
                          "labels": len(m.labels), "words": len(m.words)}))
    elif a.step == "test":
        m = fasttext.load_model(a.model)
        t1 = time.perf_counter()
        n, p1, _ = m.test(a.input)
        print(json.dumps({"examples": n, "precision_at_1": p1, "load_seconds": t1 - t0,
                          "test_seconds": time.perf_counter() - t1}))
    elif a.step == "accuracy":
        m = fasttext.load_model(a.model)
        labels, texts = [], []
        with open(a.input, encoding="utf-8") as f:
            for line in f:
                lab, _, text = line.rstrip("\n").partition(" ")
                labels.append(lab)
                texts.append(text)
        pred, _ = m.predict(texts, k=1)
        correct = sum(1 for l, p in zip(labels, pred) if p and p[0] == l)
        print(json.dumps({"examples": len(labels), "accuracy": correct / max(1, len(labels))}))
    else:  # predict
        m = fasttext.load_model(a.model)
        texts = [line.rstrip("\n") for line in sys.stdin]
        pred, _ = m.predict(texts, k=1)
        out = sys.stdout
        for p in pred:
            out.write((p[0][9:] if p else "") + "\n")  # strip "__label__"
        out.flush()


if __name__ == "__main__":
    main()
