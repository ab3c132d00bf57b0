#!/usr/bin/env python3
"""tools/incremental-scoring-bound.py: how much of a weekly checkpoint's scoring could an
incremental scorer save? (issue 13, "evaluation CPU at most half of training CPU in `make
drift`").

An incremental scorer keeps, for every eval example, the sum of the embedding rows its features
gather (words, character 3-6-grams of "<word>", word bigrams: pp-train's defaults), and
re-scores a new checkpoint by re-gathering only the rows that changed since the checkpoint it
last scored (the output layer changes every time, so its labels x dim product is paid anyway).
A row changes in a week when a trained example holds one of its features. This script replays
a shipped stream and, every 5th week once 2,000 examples are seen, reports the share of the
eval window's row gathers (the newest 700 examples) that fall on rows the week's training
touched: the week's examples plus a replay draw of a quarter as many from the history (one
draw; pp-train draws again every pass, so the real share is higher: this is a lower bound on
the work left, i.e. the most an incremental scorer could save). Tokens are split on
whitespace and hashed with Python's hash into 200,000 buckets (make drift's `--bucket`):
an approximation of pp-train's tokenizer and FNV hashing, close enough for a share.

    PYTHONHASHSEED=0 python3 tools/incremental-scoring-bound.py data/util-linux/stream data/git/stream

Session 14 (2026-12-07): util-linux 0.32 of the gathers remain (mean of 161 weeks), git 0.62
(203 weeks): at best 3.1x and 1.6x less scoring, against the 4.5x and 12x the target needs
(docs/status.md, issue 13).
"""
import json
import os
import random
import statistics
import subprocess
import sys

BUCKETS = 200_000
WINDOW = 700


def features(text):
    toks = text.split()
    out = []
    for t in toks:
        out.append(hash(t) % BUCKETS)
        w = "<" + t + ">"
        for n in range(3, 7):
            for i in range(len(w) - n + 1):
                out.append(hash(w[i:i + n]) % BUCKETS)
    for a, b in zip(toks, toks[1:]):
        out.append(hash((a, b)) % BUCKETS)
    return out


def weeks_of(folder):
    for name in sorted(os.listdir(folder)):
        raw = subprocess.run(["zstd", "-dc", os.path.join(folder, name)], check=True,
                             capture_output=True).stdout.decode()
        yield [json.loads(line)["text"] for line in raw.splitlines() if line.strip()]


def bound(folder):
    random.seed(1)
    history, shares, sizes = [], [], []
    for i, week in enumerate(weeks_of(folder)):
        if len(history) > 2000 and i % 5 == 0 and week:
            trained = list(week) + random.sample(history, max(1, len(week) // 4))
            changed = set()
            for text in trained:
                changed.update(features(text))
            total = hit = 0
            for text in history[-WINDOW:]:
                f = features(text)
                total += len(f)
                hit += sum(1 for x in f if x in changed)
            shares.append(hit / total)
            sizes.append(len(week))
        history.extend(week)
    print(json.dumps({"stream": folder, "weeks": len(shares), "mean_week_examples": round(statistics.mean(sizes), 1),
                      "changed_share_mean": round(statistics.mean(shares), 3),
                      "changed_share_median": round(statistics.median(shares), 3),
                      "best_speedup": round(1 / statistics.mean(shares), 2)}))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: PYTHONHASHSEED=0 tools/incremental-scoring-bound.py STREAM_FOLDER...")
    for folder in sys.argv[1:]:
        bound(folder)
