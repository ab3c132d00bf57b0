#!/usr/bin/env python3
"""Spoiled batches built from a real week (issue 7, "Proof on real data").

    tools/spoil.py KIND IN OUT [--seed N] [--label L] [--share F]

IN is a JSON Lines week (plain or .zst, e.g. demo/data/2024-W10.jsonl.zst); OUT gets the
spoiled copy (zstd-compressed when its name ends in .zst). Only python3's standard library
and the `zstd` command are used. KIND is one of:

  shuffle-labels   the labels permuted among the examples (a broken export's join)
  one-label        --share (0.9) of the examples, chosen at random, get one label (--label,
                   default the week's most frequent one)
  random-bytes     every text replaced by random bytes of its length, decoded as UTF-8 with
                   replacement (valid JSON full of U+FFFD and control characters)
  binary           the whole file replaced by random bytes (not JSON at all)
  mojibake         every text's UTF-8 read as Latin-1 and encoded again ("é" -> "Ã©");
                   ASCII-only texts are unchanged, so pick a week with non-ASCII text
  resend           the same records again, in another order (a re-export of an old week:
                   other bytes, so another SHA-256, but the same examples)
  first-word       every text cut to its first word

Deterministic for a given --seed. Used by Tests/IngestTests/SpoilTests.swift and by the
end-to-end replay (one spoiled week injected into the demo stream).
"""

import argparse
import json
import os
import random
import subprocess
import sys

KINDS = ["shuffle-labels", "one-label", "random-bytes", "binary", "mojibake", "resend", "first-word"]


def read_lines(path):
    if path.endswith(".zst"):
        raw = subprocess.run(["zstd", "-dc", "--", path], check=True, stdout=subprocess.PIPE).stdout
    else:
        with open(path, "rb") as f:
            raw = f.read()
    return raw


def write_bytes(path, data):
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + ".tmp")
    if path.endswith(".zst"):
        subprocess.run(["zstd", "-q", "-f", "-3", "-o", tmp], input=data, check=True)
    else:
        with open(tmp, "wb") as f:
            f.write(data)
    os.replace(tmp, path)   # appears complete (pp-ingest may be watching the folder)


def spoil(kind, raw, seed=1, label=None, share=0.9):
    rng = random.Random(seed)
    if kind == "binary":
        return bytes(rng.getrandbits(8) for _ in range(max(len(raw), 64)))
    recs = [json.loads(l) for l in raw.decode("utf-8").splitlines() if l.strip()]
    if not recs:
        raise SystemExit("spoil.py: the input has no records")
    if kind == "shuffle-labels":
        labels = [r["label"] for r in recs]
        rng.shuffle(labels)
        for r, l in zip(recs, labels):
            r["label"] = l
    elif kind == "one-label":
        if label is None:
            counts = {}
            for r in recs:
                counts[r["label"]] = counts.get(r["label"], 0) + 1
            label = max(sorted(counts), key=lambda k: counts[k])
        k = max(1, round(share * len(recs)))
        for i in rng.sample(range(len(recs)), k):
            recs[i]["label"] = label
    elif kind == "random-bytes":
        for r in recs:
            n = max(1, len(r["text"].encode("utf-8")))
            r["text"] = bytes(rng.getrandbits(8) for _ in range(n)).decode("utf-8", errors="replace")
    elif kind == "mojibake":
        for r in recs:
            r["text"] = r["text"].encode("utf-8").decode("latin-1")
    elif kind == "resend":
        rng.shuffle(recs)
    elif kind == "first-word":
        for r in recs:
            words = r["text"].split()
            r["text"] = words[0] if words else r["text"]
    else:
        raise SystemExit(f"spoil.py: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")


def main():
    ap = argparse.ArgumentParser(description="Build a spoiled batch from a real week.")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--label", default=None, help="one-label: the label (default: the most frequent)")
    ap.add_argument("--share", type=float, default=0.9, help="one-label: share of examples relabelled")
    a = ap.parse_args()
    if not 0 < a.share <= 1:
        ap.error("--share must be in (0, 1]")
    write_bytes(a.output, spoil(a.kind, read_lines(a.input), a.seed, a.label, a.share))


if __name__ == "__main__":
    sys.exit(main())
