#!/usr/bin/env python3
"""tools/crash-soak.py: the pipeline under random SIGKILLs (issue 15).

    crash-soak.py --bin PP_BIN [--kills 200] [--stream-dir data/util-linux] [--work DIR] [--seed N]

Weekly files of a stream are dropped into inbox/ (temp name, rename) while the real tools run
on one state folder: the pp-train daemon (restarted whenever it dies, as Restart=on-failure
does), and pp-ingest, pp-eval --pending and pp-select in turn as the units start them. Every
few tenths of a second to few seconds one tool is killed with SIGKILL: the daemon, or a
oneshot at a random moment of its run. After --kills kills, the kills stop, the pipeline is
run to rest (inbox empty, every shard trained, every checkpoint evaluated, a selection made)
and these are checked:
  * no input lost or doubled: every dropped file is, by SHA-256, in exactly one place
    (archive/ or quarantine/), nothing is left in inbox/;
  * every archived input's shards are complete: parts 0..parts-1 of each split exactly once;
    no shard of a quarantined input;
  * nothing trained twice or missed: with --replay 0 --max-passes 1 the newest checkpoint's
    step is the number of examples in shards/ (less the shards pp-train marked suspect);
  * every visible file is valid: shards and checkpoints decompress with their checksums and
    carry their magic, every *.json parses, every selections.jsonl line parses;
  * deployed (if any) resolves to a checkpoint inside the root that exists;
  * resume is exact: the rested root's shards are trained again in two fresh roots, once by a
    daemon left alone and once by one killed with SIGKILL --resume-kills times, each at a
    random moment after its next checkpoint (restarted each time); every checkpoint step
    both wrote must hold the same weights, vocabulary, optimiser and trainer state, cursor and
    average, byte for byte (the sections after the meta, which holds times and paths). While shards still arrive the
    batches depend on timing, so this runs on a fixed set of shards.
Exit status: 0 every check held, 1 a check failed.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_FLAGS = ["--dim", "16", "--bucket", "20000", "--minn", "0", "--maxn", "0", "--threads", "1",
               "--replay", "0", "--max-passes", "1", "--checkpoint-every", "3000ex", "--rescan", "1"]
ONESHOTS = {"pp-ingest": (["--settle", "0"], (0, 1, 2)), "pp-eval": (["--pending"], (0, 1, 2)),
            "pp-select": ([], (0, 1, 2))}


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def unzstd(path):
    r = subprocess.run(["zstd", "-dcq", path], capture_output=True)
    return r.stdout if r.returncode == 0 else None


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def week_time(name):
    """The Sunday before ISO week YYYY-Www of a file name, in Unix seconds (None: no week)."""
    import datetime
    import re
    m = re.match(r"(\d{4})-W(\d{2})", name)
    if not m:
        return None
    d = datetime.datetime.fromisocalendar(int(m.group(1)), int(m.group(2)), 1).replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp()) - 86400


class Soak:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.work = os.path.abspath(a.work)
        shutil.rmtree(self.work, ignore_errors=True)
        self.root = os.path.join(self.work, "root")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(os.path.join(self.root, "inbox"))
        os.makedirs(self.logs)
        self.env = dict(os.environ, PP_ROOT=self.root)
        self.env.pop("PP_CLOCK_FILE", None)
        self.kills = {}
        self.runs = {}
        self.failures = []
        self.daemon = None
        self.est = {t: 0.3 for t in ONESHOTS}
        self.seq = 0

    def log(self, tag):
        self.seq += 1
        return open(os.path.join(self.logs, f"{self.seq:05d}-{tag}.err"), "wb")

    def ensure_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            return
        if self.daemon:
            self.runs["pp-train"] = self.runs.get("pp-train", 0) + 1
        self.daemon = subprocess.Popen([os.path.join(self.a.bin, "pp-train"), "--run", "main"] + TRAIN_FLAGS,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=self.log("pp-train"), env=self.env)
        self.daemon_started = time.monotonic()

    def kill_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait()
            self.kills["pp-train"] = self.kills.get("pp-train", 0) + 1

    def oneshot(self, tool, kill_it):
        args, ok = ONESHOTS[tool]
        t0 = time.monotonic()
        p = subprocess.Popen([os.path.join(self.a.bin, tool)] + args, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=self.log(tool), env=self.env)
        if kill_it:
            time.sleep(self.rng.uniform(0, self.est[tool]))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                self.kills[tool] = self.kills.get(tool, 0) + 1
        rc = p.wait()
        self.runs[tool] = self.runs.get(tool, 0) + 1
        if rc >= 0 and not kill_it:
            self.est[tool] = 0.7 * self.est[tool] + 0.3 * (time.monotonic() - t0)
        if rc >= 0 and rc not in ok:
            self.failures.append(f"{tool} exited {rc} (log {self.logs}/{self.seq:05d}-{tool}.err)")
        return rc

    def drop(self, src):
        name = os.path.basename(src)
        inbox = os.path.join(self.root, "inbox")
        tmp = os.path.join(inbox, "." + name + ".tmp")
        shutil.copyfile(src, tmp)
        # A weekly file lands with its week's time (as a weekly export would): files dropped
        # seconds apart with the time of the copy would make pp-ingest take the stream for a
        # trickle and hold its small weeks for their pool (docs/formats.md, "Trickles").
        t = week_time(name)
        t = time.time() - 60 if t is None else t
        os.utime(tmp, (t, t))
        os.replace(tmp, os.path.join(inbox, name))
        return sha(src)

    def run(self):
        sdir = self.a.stream_dir
        if os.path.isdir(os.path.join(sdir, "stream")):
            sdir = os.path.join(sdir, "stream")
        files = sorted(os.path.join(sdir, f) for f in os.listdir(sdir) if f.endswith((".jsonl", ".jsonl.zst")))
        self.dropped = []
        nextfile = 0
        t0 = time.monotonic()
        next_daemon_kill = time.monotonic() + self.rng.uniform(0.5, 4)
        total = lambda: sum(self.kills.values())
        while total() < self.a.kills:
            self.ensure_daemon()
            if nextfile < len(files) and len(os.listdir(os.path.join(self.root, "inbox"))) < 3:
                for _ in range(self.rng.randint(1, 3)):
                    if nextfile < len(files):
                        self.dropped.append(self.drop(files[nextfile]))
                        nextfile += 1
            tool = self.rng.choice(list(ONESHOTS))
            self.oneshot(tool, kill_it=self.rng.random() < 0.5)
            if time.monotonic() >= next_daemon_kill:
                self.kill_daemon()
                next_daemon_kill = time.monotonic() + self.rng.uniform(0.5, 4)
            if total() and total() % 20 == 0:
                say(f"crash-soak: {total()} kills {self.kills}, {nextfile} files dropped, {time.monotonic() - t0:.0f} s")
        say(f"crash-soak: {total()} kills done in {time.monotonic() - t0:.0f} s; running the pipeline to rest")
        self.rest()
        self.check()
        self.resume = self.resume_check()
        self.result = {"kills": self.kills, "runs": self.runs, "files_dropped": len(self.dropped),
                       "seconds": round(time.monotonic() - t0, 1), "resume": self.resume, "failures": self.failures}
        with open(os.path.join(self.work, "crash-soak.json"), "w") as f:
            json.dump(self.result, f, indent=1)
        return 0 if not self.failures else 1

    def status(self):
        return run_status(self.root)

    def rest(self):
        for _ in range(20):
            self.oneshot("pp-ingest", False)
            if not [n for n in os.listdir(os.path.join(self.root, "inbox")) if not n.startswith(".")]:
                break
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            self.ensure_daemon()
            st = self.status()
            # SIGHUP (rescan now) only once its handlers are in: before its first status.json
            # names it, the signal would kill it.
            if st and st.get("pid") == self.daemon.pid:
                self.daemon.send_signal(signal.SIGHUP)
            # At rest only once the daemon has seen every shard on disk (a status written
            # before its last rescan says idle too: that race ended an unloaded run early).
            names = sorted(n for n in os.listdir(os.path.join(self.root, "shards")) if n.endswith(".pps") and not n.startswith("."))
            seen_all = not names or (st and st.get("newest_shard") == names[-1]
                                     and (st.get("shards") or 0) + (st.get("suspects") or 0) >= len(names))
            if st and seen_all and st.get("state") == "idle" and st.get("pending_shards") == 0 and st.get("pid") == self.daemon.pid:
                ck = st.get("last_checkpoint") or ""
                if ck.endswith(f"-{st['step']:012d}.ppc"):
                    break
            time.sleep(0.5)
        else:
            self.failures.append(f"the daemon did not come to rest (status {self.status()})")
        self.daemon.send_signal(signal.SIGTERM)
        self.daemon.wait()
        self.oneshot("pp-eval", False)
        self.oneshot("pp-select", False)

    def resume_check(self):
        """Resume exactness (see the top of this file). Returns what was compared."""
        ref, cut = ResumeCheck(self, "resume-ref"), ResumeCheck(self, "resume-kill")
        ref.to_rest()
        kills = 0
        while kills < self.a.resume_kills:
            # Kill at a random moment after the daemon's next checkpoint: every kill then lands
            # mid-training, however fast the build trains.
            before = len(cut.checkpoints())
            cut.start()
            until = time.monotonic() + 60
            while time.monotonic() < until and cut.daemon.poll() is None and len(cut.checkpoints()) <= before:
                time.sleep(0.005)
            time.sleep(self.rng.uniform(0, 0.005))
            st = cut.status()
            if cut.daemon.poll() is None:
                cut.daemon.send_signal(signal.SIGKILL)
                cut.daemon.wait()
                kills += 1
            if st and st.get("state") == "idle" and st.get("pending_shards") == 0:
                break   # nothing left to interrupt
        cut.to_rest()
        a, b = ref.checkpoints(), cut.checkpoints()
        common = sorted(set(a) & set(b))
        if not a or not b or max(a) != max(b):
            self.failures.append(f"resume check: final steps differ (uninterrupted {max(a) if a else None}, killed {max(b) if b else None})")
        for step in sorted(set(b) - set(a)):
            self.failures.append(f"resume check: the killed run wrote step {step}, the uninterrupted one did not")
        for step in common:
            x, y = sections(a[step]), sections(b[step])
            if x is None or y is None:
                self.failures.append(f"resume check: step {step}: unreadable checkpoint")
            elif x != y:
                diff = sorted(t for t in set(x) | set(y) if x.get(t) != y.get(t))
                self.failures.append(f"resume check: step {step}: sections {diff} differ after {kills} kill(s)")
        say(f"crash-soak: resume check: {kills} kill(s) of the daemon, {len(common)} checkpoints compared "
            f"(steps up to {max(common) if common else 0})")
        return {"kills": kills, "checkpoints_compared": len(common), "final_step": max(common) if common else 0}

    def check(self):
        r = self.root
        fail = self.failures.append
        left = [n for n in os.listdir(os.path.join(r, "inbox")) if not n.startswith(".")]
        if left:
            fail(f"inbox not empty at rest: {left[:5]}")
        places = {}
        for d in ("archive", "quarantine"):
            p = os.path.join(r, d)
            for n in sorted(os.listdir(p)) if os.path.isdir(p) else []:
                fp = os.path.join(p, n)
                if n.startswith(".") or n.endswith(".reason.json") or not os.path.isfile(fp):
                    continue
                places.setdefault(sha(fp), []).append(d + "/" + n)
        for h in set(self.dropped):
            want = self.dropped.count(h)
            got = len(places.get(h, []))
            if got != want:
                fail(f"input {h[:16]}: dropped {want} time(s), found {got} time(s): {places.get(h)}")
        quarantined = {h[:16] for h, ps in places.items() if any(p.startswith("quarantine/") for p in ps)}
        # Shards: valid, complete per input and split.
        parts = {}
        examples_train = {}
        for split in ("shards", "holdout"):
            p = os.path.join(r, split)
            for n in sorted(os.listdir(p)) if os.path.isdir(p) else []:
                if n.startswith(".") or not n.endswith(".pps"):
                    continue
                raw = unzstd(os.path.join(p, n))
                if raw is None or raw[:8] != b"PPSHARD1" or raw[-8:] != b"PPSHEND1":
                    fail(f"{split}/{n}: not a valid shard")
                    continue
                hl = int.from_bytes(raw[12:16], "little")
                hdr = json.loads(raw[16:16 + hl])
                key = (split, n.split("-")[1])
                parts.setdefault(key, []).append((hdr["part"], hdr["parts"]))
                if split == "shards":
                    examples_train[n] = hdr["examples"]
                if n.split("-")[1] in quarantined:
                    fail(f"{split}/{n}: a shard of a quarantined input")
        for key, ps in parts.items():
            nparts = {q for _, q in ps}
            if len(nparts) != 1 or sorted(x for x, _ in ps) != list(range(nparts.pop())):
                fail(f"input {key[1]} {key[0]}: parts {sorted(ps)}")
        # Checkpoints valid; the newest one's step = examples of the trained shards.
        ckdir = os.path.join(r, "runs", "main", "checkpoints")
        cks = sorted(n for n in os.listdir(ckdir) if n.endswith(".ppc") and not n.startswith(".")) if os.path.isdir(ckdir) else []
        newest = None
        for n in cks:
            raw = unzstd(os.path.join(ckdir, n))
            if raw is None or raw[:8] != b"PPCKPT01" or raw[-8:] != b"PPCKEND1":
                fail(f"checkpoint {n}: not valid")
                continue
            ml = int.from_bytes(raw[12:16], "little")
            meta = json.loads(raw[16:16 + ml])
            if newest is None or meta["step"] >= newest["step"]:
                newest = meta
        suspects = set()
        try:
            with open(os.path.join(r, "runs", "main", "suspects.json")) as f:
                suspects = {s["name"] for s in json.load(f).get("shards", [])}
        except OSError:
            pass
        want = sum(v for n, v in examples_train.items() if n not in suspects)
        if newest is None:
            fail("no checkpoint at all")
        elif newest["step"] != want:
            fail(f"newest checkpoint step {newest['step']} != {want} examples in shards/ (less {len(suspects)} suspect)")
        self.trained = newest["step"] if newest else 0
        self.shards = len(examples_train)
        # JSON files and the journal.
        for dp, _, names in os.walk(r):
            for n in names:
                if n.startswith("."):
                    continue
                fp = os.path.join(dp, n)
                if n.endswith(".json"):
                    try:
                        with open(fp) as f:
                            json.load(f)
                    except ValueError as e:
                        fail(f"{os.path.relpath(fp, r)}: not JSON ({e})")
        sel = os.path.join(r, "selections.jsonl")
        if os.path.exists(sel):
            with open(sel) as f:
                for i, line in enumerate(f, 1):
                    try:
                        json.loads(line)
                    except ValueError:
                        fail(f"selections.jsonl line {i}: not JSON")
        dep = os.path.join(r, "deployed")
        if os.path.lexists(dep):
            target = os.path.realpath(dep)
            if not target.startswith(os.path.realpath(r) + "/") or not os.path.isfile(target):
                fail(f"deployed -> {os.readlink(dep)}: not a checkpoint in the root")
        say(f"crash-soak: {self.shards} shards, {self.trained} examples trained, {len(cks)} checkpoints, "
            f"deployed {os.readlink(dep) if os.path.lexists(dep) else '-'}")


def run_status(root):
    """runs/main/status.json of `root`, or None while there is none (or it is being replaced)."""
    try:
        with open(os.path.join(root, "runs", "main", "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def sections(path):
    """The sections of a checkpoint after its meta: {tag: payload} (docs/formats.md), or None."""
    raw = unzstd(path)
    if raw is None or raw[:8] != b"PPCKPT01" or raw[-8:] != b"PPCKEND1":
        return None
    pos = 16 + int.from_bytes(raw[12:16], "little")
    out = {}
    while pos < len(raw) - 8:
        tag, n = raw[pos:pos + 4].decode("ascii", "replace"), int.from_bytes(raw[pos + 4:pos + 12], "little")
        out[tag] = raw[pos + 12:pos + 12 + n]
        pos += 12 + n
    return out


class ResumeCheck:
    """Trains the same shards in a fresh root without kills and in one with SIGKILLs, and
    compares the checkpoints both wrote at the same step (Soak.resume_check)."""

    # Small batches and a short cadence: many checkpoints to compare and to be killed between.
    FLAGS = [f for f in TRAIN_FLAGS if f not in ("--checkpoint-every", "3000ex")] + [
        "--checkpoint-every", "40ex", "--batch", "16", "--full-every", "1"]

    def __init__(self, soak, name):
        self.soak = soak
        self.root = os.path.join(soak.work, name)
        os.makedirs(os.path.join(self.root, "shards"))
        src = os.path.join(soak.root, "shards")
        for n in os.listdir(src):
            if n.endswith(".pps") and not n.startswith("."):
                os.link(os.path.join(src, n), os.path.join(self.root, "shards", n))
        self.env = dict(os.environ, PP_ROOT=self.root)
        self.env.pop("PP_CLOCK_FILE", None)
        self.daemon = None

    def start(self):
        self.daemon = subprocess.Popen([os.path.join(self.soak.a.bin, "pp-train"), "--run", "main"] + self.FLAGS,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=self.soak.log("resume-" + os.path.basename(self.root)), env=self.env)

    def status(self):
        return run_status(self.root)

    def to_rest(self, deadline_s=600):
        """Runs the daemon until it has trained every shard and checkpointed it, then SIGTERM."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.daemon is None or self.daemon.poll() is not None:
                self.start()
            st = self.status()
            # At rest: idle with nothing pending, and its step checkpointed (by this daemon or,
            # after a restart with nothing left to train, by the one before).
            if st and st.get("pid") == self.daemon.pid and st.get("state") == "idle" and st.get("pending_shards") == 0:
                if max(self.checkpoints(), default=-1) == st["step"]:
                    break
            time.sleep(0.3)
        else:
            self.soak.failures.append(f"resume check: the daemon in {self.root} did not come to rest")
        self.daemon.send_signal(signal.SIGTERM)
        self.daemon.wait()

    def checkpoints(self):
        d = os.path.join(self.root, "runs", "main", "checkpoints")
        out = {}
        for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if n.startswith("ckpt-") and n.endswith(".ppc"):
                out[int(n[:-4].rsplit("-", 1)[1])] = os.path.join(d, n)
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("PP_BIN", ""))
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--stream-dir", default=os.path.join(REPO, "data", "util-linux"))
    ap.add_argument("--work", default=os.path.join(REPO, "bench", "work", "crash-soak"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resume-kills", type=int, default=5, help="SIGKILLs of the daemon in the resume check")
    a = ap.parse_args()
    if not a.bin:
        ap.error("--bin (or $PP_BIN) is needed")
    a.bin = os.path.abspath(a.bin)
    s = Soak(a)
    try:
        rc = s.run()
    finally:
        if s.daemon and s.daemon.poll() is None:
            s.daemon.kill()
    say(f"crash-soak: kills {s.kills}, runs {s.runs}")
    for f in s.failures:
        say(f"crash-soak: FAIL {f}")
    if rc == 0:
        say("crash-soak: every check held")
    return rc


if __name__ == "__main__":
    sys.exit(main())
