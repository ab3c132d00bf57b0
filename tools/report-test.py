#!/usr/bin/env python3
"""tools/report-test.py: pp-select report and the Grafana dashboard on a real state folder (issue 17).

    report-test.py --bin PP_BIN [--work DIR] [--weeks 16] [--keep]

Runs the real tools on --weeks weeks of demo/data under a simulated clock (PP_CLOCK_FILE,
three simulated days per step of two weeks): pp-ingest, pp-train --once, pp-eval --pending and pp-select
each step; halfway `pp-train set lr=0.1 dropout=0.1`; at three quarters a spoiled batch
(texts replaced by random bytes, tools/spoil.py), which pp-ingest quarantines (check garbage). Then:

  * `pp-select report --out WORK/report` exits 0, prints the page's path on stdout (one
    line) and writes a page with every chart of the report, each with data points;
  * docs/grafana/perpetuum.json parses, every panel has a query, and every metric a query
    names is in the metrics/*.prom files the tools just wrote, with the label values it
    selects (e.g. {metric="accuracy"}) present;
  * headless Chromium (Debian's `chromium`) opens the page: no console error, no failed load,
    every <svg class="chart"> in the rendered DOM has data-points > 0 and as many circles or
    path vertices; a screenshot is saved as WORK/report/screenshot.png. First, the same
    console check must flag a deliberately broken page (so the check can fail). Skipped,
    with a message, when chromium is not installed (CI installs it: Makefile APT_PACKAGES).

Prints TAP-style lines and a closing "report-test: N passed, N failed, N skipped".
Exit status: 0 all passed (or skipped), 1 a check failed, 64 usage.
"""

import argparse
import glob
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WEEK = 7 * 86400
STEP = 3 * 86400  # simulated time per step (two weeks of data): the deployed model stays within 7 days
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z: the simulated start

results = {"passed": 0, "failed": 0, "skipped": 0}
n = 0


def ok(msg):
    global n
    n += 1
    results["passed"] += 1
    print(f"ok {n} - {msg}", flush=True)


def notok(msg, detail=""):
    global n
    n += 1
    results["failed"] += 1
    print(f"not ok {n} - {msg}", flush=True)
    for line in str(detail).splitlines()[:40]:
        print(f"#   {line}")


def skip(msg):
    global n
    n += 1
    results["skipped"] += 1
    print(f"ok {n} - # SKIP {msg}", flush=True)


def check(cond, msg, detail=""):
    (ok if cond else (lambda m: notok(m, detail)))(msg)
    return cond


class Tools:
    def __init__(self, bindir, root, clock):
        self.bin = bindir
        self.env = dict(os.environ, PP_ROOT=root, PP_CLOCK_FILE=clock)
        self.log = open(os.path.join(os.path.dirname(root), "tools.log"), "a")

    def run(self, args, ok_codes=(0,)):
        p = subprocess.run([os.path.join(self.bin, args[0])] + args[1:], env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log.write(f"$ {' '.join(args)} -> {p.returncode}\n{p.stderr}")
        if p.returncode not in ok_codes:
            raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
        return p


def pipeline(tools, root, clock, weeks):
    files = sorted(glob.glob(os.path.join(REPO, "demo/data/*.jsonl.zst")))[:weeks]
    inbox = os.path.join(root, "inbox")
    os.makedirs(inbox, exist_ok=True)
    # The model flags of the demo; --lr only at the start (a flag given later would override
    # the knob set by `pp-train set`).
    flags = ["--dim", "50", "--minn", "3", "--maxn", "5", "--bucket", "200000", "--min-count", "2", "--threads", "2"]
    spoil_at = weeks * 3 // 4
    for i in range(0, len(files), 2):
        t = T0 + i * STEP // 2
        with open(clock + ".tmp", "w") as f:
            f.write(str(t))
        os.replace(clock + ".tmp", clock)
        batch = files[i:i + 2]
        if i == spoil_at:
            bad = os.path.join(inbox, ".spoiled-" + os.path.basename(batch[-1]))
            subprocess.run([sys.executable, os.path.join(REPO, "tools/spoil.py"), "random-bytes", batch[-1], bad, "--seed", "7"],
                           check=True, stderr=subprocess.DEVNULL)
            batch = batch[:-1] + [bad]
        for k, src in enumerate(batch):
            name = os.path.basename(src).lstrip(".")
            tmp = os.path.join(inbox, "." + name + ".copy")
            if src != tmp and not src.startswith(inbox):
                shutil.copyfile(src, tmp)
            else:
                tmp = src
            # The step's weeks land half a step apart (a weekly stream, not a trickle:
            # docs/formats.md, "Trickles").
            m = t - 3600 - (len(batch) - 1 - k) * (STEP // 2)
            os.utime(tmp, (m, m))
            os.replace(tmp, os.path.join(inbox, name))
        tools.run(["pp-ingest", "--settle", "0", "--holdout", "0.15"], ok_codes=(0, 1, 2))
        if i == len(files) // 2:
            tools.run(["pp-train", "set", "lr=0.1", "dropout=0.1", "--run", "main"])
        tools.run(["pp-train", "--once", "--run", "main"] + flags + (["--lr", "0.2"] if i == 0 else []), ok_codes=(0, 2))
        tools.run(["pp-eval", "--pending", "--recent-days", "91"], ok_codes=(0, 2))
        tools.run(["pp-select", "--since", "30d"], ok_codes=(0, 1, 2))


class DOM(html.parser.HTMLParser):
    """The charts of a page: each <svg class="chart"> with its id, data-points and drawn marks."""

    def __init__(self):
        super().__init__()
        self.charts = []
        self.cur = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "chart" in (a.get("class") or "").split():
            self.cur = {"id": a.get("id"), "points": int(a.get("data-points", "-1")), "drawn": 0}
            self.charts.append(self.cur)
        elif self.cur is not None:
            if tag == "circle":
                self.cur["drawn"] += 1
            elif tag == "path" and "series" in (a.get("class") or ""):
                self.cur["drawn"] += len(re.findall(r"[MLH]", a.get("d", "")))  # step lines: H then V per point
            elif tag == "g" and "bar" in (a.get("class") or ""):
                self.cur["drawn"] += 1
            elif tag == "rect" and self.cur["id"] == "label-f1" and a.get("fill"):
                self.cur["drawn"] += 1

    def handle_endtag(self, tag):
        if tag == "svg":
            self.cur = None


def chart_problems(charts, required):
    problems = []
    ids = [c["id"] for c in charts]
    for r in required:
        if not any(re.fullmatch(r, i or "") for i in ids):
            problems.append(f"no chart matching {r}")
    for c in charts:
        if c["points"] <= 0:
            problems.append(f"chart {c['id']}: data-points {c['points']}")
        elif c["drawn"] != c["points"]:
            problems.append(f"chart {c['id']}: data-points {c['points']} but {c['drawn']} drawn")
    return problems


REQUIRED = [r"scores-all", r"scores-recent", r"scores-old", r"deployed-age", r"train-loss-main", r"train-throughput-main",
            r"train-vocabulary-main", r"train-labels-main", r"train-knobs-main", r"data-batches", r"check-.+", r"label-f1"]


def console_errors(stderr):
    """Console errors and failed loads in chromium's --enable-logging=stderr output."""
    bad = []
    for line in stderr.splitlines():
        if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line or "error" in line.lower()):
            bad.append(line)
        elif "net::ERR_" in line or "Failed to load resource" in line or "Uncaught" in line:
            bad.append(line)
    return bad


def chromium(binary, url, extra, timeout=120):
    args = [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
            "--enable-logging=stderr", "--v=0", "--log-level=0"] + extra + [url]
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


def prom_samples(paths):
    """name -> list of label dicts, from Prometheus text files."""
    out = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
    for p in paths:
        for line in open(p):
            if line.startswith("#") or not line.strip():
                continue
            m = line_re.match(line)
            if not m:
                raise ValueError(f"{p}: not a sample: {line!r}")
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            out.setdefault(m.group(1), []).append(labels)
    return out


def grafana_problems(dash, samples):
    problems = []
    exprs = []
    panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
    if not panels:
        problems.append("no panels")
    for p in panels:
        targets = [t.get("expr", "") for t in p.get("targets", [])]
        if not targets or not all(targets):
            problems.append(f"panel {p.get('title')!r}: a target without a query")
        exprs += [(p.get("title"), e) for e in targets]
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append(("annotation " + a.get("name", "?"), a["expr"]))
    for title, e in exprs:
        names = re.findall(r"\b(perpetuum_[a-z0-9_]+)\b", e)
        if not names:
            problems.append(f"{title}: {e!r} names no perpetuum_ metric")
        for name in names:
            if name not in samples:
                problems.append(f"{title}: {name} is not in the metrics the tools wrote")
        for name, sel in re.findall(r"\b(perpetuum_[a-z0-9_]+)\{([^}]*)\}", e):
            want = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', sel))
            if name in samples and not any(all(l.get(k) == v for k, v in want.items()) for l in samples[name]):
                problems.append(f"{title}: no sample of {name} has {want}")
    return problems, len(exprs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="folder of the built pp-* tools")
    ap.add_argument("--work", default=os.path.join(REPO, ".build-test", "report-test"), help="scratch and artifacts (default: %(default)s)")
    ap.add_argument("--weeks", type=int, default=16)
    ap.add_argument("--keep", action="store_true", help="keep the state folder (the report and screenshot are always kept)")
    a = ap.parse_args()
    bindir = os.path.abspath(a.bin)
    work = os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    root = os.path.join(work, "root")
    clock = os.path.join(work, "clock")
    tools = Tools(bindir, root, clock)

    started = time.monotonic()
    try:
        pipeline(tools, root, clock, a.weeks)
        ok(f"pipeline: {a.weeks} weeks of demo/data through the real tools ({time.monotonic() - started:.0f} s)")
    except Exception as e:  # noqa: BLE001 (any failure of a tool ends the test)
        notok("pipeline", f"{e}\n(see {work}/tools.log)")
        return finish()

    # The report.
    out = os.path.join(work, "report")
    p = tools.run(["pp-select", "report", "--out", out], ok_codes=(0, 1, 2, 64, 66, 74))
    page = os.path.join(out, "index.html")
    check(p.returncode == 0 and p.stdout == page + "\n", f"pp-select report exits 0 and prints the page's path",
          f"exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr[-1500:]}")
    if not os.path.exists(page):
        notok("index.html written")
        return finish()
    size = os.path.getsize(page)
    leftovers = [f for f in os.listdir(out) if f.startswith(".")]
    check(not leftovers, f"no temp file left beside index.html ({size} bytes)", leftovers)
    text = open(page, encoding="utf-8").read()
    check("<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text,
          "the page has no script and names no network resource")
    static = DOM()
    static.feed(text)
    probs = chart_problems(static.charts, REQUIRED)
    check(not probs, f"the written page: {len(static.charts)} charts, each with data points", "\n".join(probs))
    check(re.search(r"<td>spoiled-[^<]*</td><td>quarantined</td><td>check \w+: value", text),
          "the spoiled batch is listed as held back, with the check that caught it")
    check("lr 0.2 -&gt; 0.1" in text and "dropout 0 -&gt; 0.1" in text.replace("0.0 -&gt;", "0 -&gt;"),
          "the knob changes lr 0.2 -> 0.1 and dropout 0 -> 0.1 are annotated")

    # The Grafana dashboard against the metrics the tools wrote.
    proms = sorted(glob.glob(os.path.join(root, "metrics", "*.prom")))
    try:
        samples = prom_samples(proms)
        dash = json.load(open(os.path.join(REPO, "docs/grafana/perpetuum.json")))
        probs, count = grafana_problems(dash, samples)
        check(not probs, f"docs/grafana/perpetuum.json: {count} queries, each names metrics the tools export "
              f"({len(samples)} metrics in {len(proms)} files)", "\n".join(probs))
        # The check can fail: a made-up metric is caught.
        bad = json.loads(json.dumps(dash))
        bad["panels"][1]["targets"][0]["expr"] = "perpetuum_no_such_metric"
        check(grafana_problems(bad, samples)[0], "the dashboard check flags a metric the tools do not export")
    except (OSError, ValueError) as e:
        notok("docs/grafana/perpetuum.json parses and the metrics files parse", e)

    # Headless Chromium.
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        skip("headless browser: chromium is not installed (apt-get install chromium; make test-deps installs it)")
        return finish()
    broken = os.path.join(work, "broken.html")
    with open(broken, "w") as f:
        f.write('<!DOCTYPE html><html><body><img src="missing.png"><script>console.error("boom"); nosuch();</script></body></html>')
    try:
        b = chromium(binary, "file://" + broken, ["--dump-dom"])
        check(console_errors(b.stderr), "the console check flags a page with a console error and a missing file",
              b.stderr[-2000:])
        t = time.monotonic()
        r = chromium(binary, "file://" + page, ["--dump-dom", "--window-size=1500,1200"])
        took = time.monotonic() - t
        errs = console_errors(r.stderr)
        check(r.returncode == 0 and not errs, f"chromium loads the page with no console error ({took:.1f} s)",
              "\n".join(errs) or r.stderr[-2000:])
        dom = DOM()
        dom.feed(r.stdout)
        probs = chart_problems(dom.charts, REQUIRED)
        check(dom.charts and not probs, f"the rendered DOM: {len(dom.charts)} charts, each with its data points drawn", "\n".join(probs))
        shot = os.path.join(out, "screenshot.png")
        s = chromium(binary, "file://" + page, ["--screenshot=" + shot, "--window-size=1500,4200", "--hide-scrollbars"])
        check(s.returncode == 0 and os.path.exists(shot) and os.path.getsize(shot) > 10_000,
              f"screenshot saved: {shot}", s.stderr[-1500:])
    except subprocess.TimeoutExpired as e:
        notok("chromium did not finish", e)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return finish()


def finish():
    print(f"1..{n}")
    print(f"report-test: {results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
