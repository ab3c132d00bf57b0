#!/usr/bin/env python3
"""tools/drift-events.py: synthetic drift events built from real weeks (issue 14). Clean
change that the spoiled-data guards must let through: every example is a real commit
message with the label its author gave it (or a consistent rename of that label).

  drift-events.py KIND SRC_DIR OUT_DIR --at WEEK [--other OTHER_DIR] [--weeks N]

Copies SRC_DIR's weekly files (YYYY-Www.jsonl.zst) up to WEEK + N weeks into OUT_DIR (as
.jsonl.zst), transformed from WEEK on; prints the names of the event weeks, one a line (the
weeks that must pass). Weeks after the event's end are copied unchanged (so the stream
goes on with the change in place where the kind says so).

  takeover   a new label taking over half of the traffic within a month: OTHER_DIR's
             commit messages (another project, its texts, all under one new label
             "newproject") are added to WEEK..WEEK+3 so that they make 1/8, 1/4, 3/8, 1/2
             of each week, and 1/2 of every later week
  rename     a label renamed: from WEEK on, the most frequent label of the previous 26 weeks
             is called "<label>-renamed"
  vocab      vocabulary turnover, a new sub-project: from WEEK on, a third of each week's
             examples are OTHER_DIR's commit messages with OTHER_DIR's own labels
             (prefixed "sub-")
  bigweek    a week five times larger than usual: WEEK holds WEEK..WEEK+4 merged (real,
             distinct messages); the four weeks after it are dropped (their content came early)

--weeks (default 12): weeks copied after WEEK. Deterministic (--seed, default 1).
"""
import argparse, collections, json, os, random, subprocess, sys


def read(path):
    raw = subprocess.run(["zstd", "-dc", "--", path], check=True, stdout=subprocess.PIPE).stdout
    return [json.loads(l) for l in raw.decode("utf-8").splitlines() if l.strip()]


def write(path, recs):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    subprocess.run(["zstd", "-q", "-f", "-3", "-o", tmp], input=data, check=True)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["takeover", "rename", "vocab", "bigweek"])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--at", required=True, help="the first event week, e.g. 2015-W10")
    ap.add_argument("--other", help="takeover, vocab: the other project's stream folder")
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    names = sorted(f for f in os.listdir(a.src) if f.endswith(".jsonl.zst"))
    starts = [i for i, f in enumerate(names) if f.startswith(a.at)]
    if not starts:
        sys.exit(f"drift-events: {a.src}: no week {a.at}")
    at = starts[0]
    if a.kind in ("takeover", "vocab") and not a.other:
        sys.exit(f"drift-events: {a.kind} needs --other")
    other = []
    if a.other:
        for f in sorted(x for x in os.listdir(a.other) if x.endswith(".jsonl.zst")):
            other.extend(read(os.path.join(a.other, f)))
        rng.shuffle(other)
    os.makedirs(a.out, exist_ok=True)
    events = []
    end = min(len(names), at + a.weeks + 1)
    skip = set()
    top = None
    if a.kind == "rename":
        c = collections.Counter(r["label"] for f in names[max(0, at - 26):at] for r in read(os.path.join(a.src, f)))
        top = c.most_common(1)[0][0]
    for i in range(end):
        if i in skip:
            continue
        recs = read(os.path.join(a.src, names[i]))
        if i >= at:
            k = i - at
            if a.kind == "takeover":
                share = min(0.5, (k + 1) / 8)
                add = max(1, round(len(recs) * share / (1 - share)))
                for _ in range(add):
                    if not other:
                        break
                    r = dict(other.pop())
                    r["label"] = "newproject"
                    recs.append(r)
                rng.shuffle(recs)
                if k < 4:
                    events.append(names[i])
            elif a.kind == "rename":
                for r in recs:
                    if r["label"] == top:
                        r["label"] = top + "-renamed"
                if k < 4:
                    events.append(names[i])
            elif a.kind == "vocab":
                add = max(1, len(recs) // 2)
                for _ in range(add):
                    if not other:
                        break
                    r = dict(other.pop())
                    r["label"] = "sub-" + r["label"]
                    recs.append(r)
                rng.shuffle(recs)
                if k < 4:
                    events.append(names[i])
            elif a.kind == "bigweek" and k == 0:
                for j in range(i + 1, min(i + 5, len(names))):
                    recs.extend(read(os.path.join(a.src, names[j])))
                    skip.add(j)
                events.append(names[i])
        write(os.path.join(a.out, names[i]), recs)
    for e in events:
        print(e)


if __name__ == "__main__":
    main()
