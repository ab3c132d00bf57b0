#!/usr/bin/env bash
# bench/setup.sh: installs what `make bench` compares against, into bench/venv (git-ignored):
# fastText, Vowpal Wabbit, PyTorch (CPU build) and numpy at the versions pinned in
# bench/requirements.txt, plus GNU time (peak RSS) from Debian's packages.
# It is not run by `make bench-quick`, which needs no network: quick mode skips the reference
# tools that are missing. Re-running is cheap: a stamp in the venv records what was installed.
#
# PyTorch: PyPI's default Linux wheel pulls ~3 GB of nvidia-* packages. We install the CPU
# build (`torch==VERSION+cpu`, found through pip's configured find-links/indexes) with
# --no-deps, then its small pure-Python dependencies from requirements.txt, and check that
# `import torch` works on the CPU alone. Where no +cpu wheel can be found, we try the plain
# wheel with --no-deps; if that cannot import without CUDA, the bench skips the PyTorch
# comparison and says why.
#
# `bench/setup.sh drift` installs only what `make drift` needs (bench/requirements-drift.txt:
# fastText, Vowpal Wabbit, matplotlib; no PyTorch), into the same venv, with its own stamp.
set -euo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" = drift ]; then
    VENV=venv
    STAMP="$VENV/.drift-setup"
    want="$(sha256sum requirements-drift.txt | cut -c1-16)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "bench/setup.sh: creating bench/$VENV" >&2
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    echo "bench/setup.sh: installing the drift references and matplotlib (bench/requirements-drift.txt)" >&2
    "$VENV/bin/pip" install -q -r requirements-drift.txt
    "$VENV/bin/python" -c 'import fasttext, vowpalwabbit, matplotlib' \
        || { echo "bench/setup.sh: fasttext/vowpalwabbit/matplotlib do not import" >&2; exit 1; }
    echo "$want" > "$STAMP"
    exit 0
fi

TORCH_VERSION=2.13.0
VENV=venv
PY=${PYTHON:-python3}
STAMP="$VENV/.bench-setup"
want="$(sha256sum requirements.txt | cut -c1-16) torch=$TORCH_VERSION"

SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ ! -x /usr/bin/time ]; then
    echo "bench/setup.sh: installing GNU time (peak RSS)" >&2
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq time
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "bench/setup.sh: creating bench/$VENV" >&2
    "$PY" -m venv "$VENV"
fi
echo "bench/setup.sh: installing pinned reference tools (bench/requirements.txt)" >&2
"$VENV/bin/pip" install -q -r requirements.txt

torch_ok() {
    "$VENV/bin/python" -c 'import torch; assert not torch.cuda.is_available(); torch.ones(2).sum()' \
        >/dev/null 2>&1
}
if ! torch_ok || [ "$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" != "$TORCH_VERSION" ]; then
    echo "bench/setup.sh: installing torch $TORCH_VERSION (CPU build, --no-deps)" >&2
    if ! "$VENV/bin/pip" install -q --no-deps "torch==$TORCH_VERSION+cpu"; then
        echo "bench/setup.sh: no torch $TORCH_VERSION+cpu wheel reachable; trying the plain wheel" >&2
        "$VENV/bin/pip" install -q --no-deps "torch==$TORCH_VERSION" || true
    fi
fi
if torch_ok; then
    echo "bench/setup.sh: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') imports on the CPU" >&2
else
    echo "bench/setup.sh: torch does not import without CUDA here; the PyTorch comparison will be skipped" >&2
fi

"$VENV/bin/python" -c 'import fasttext, vowpalwabbit, numpy' \
    || { echo "bench/setup.sh: fasttext/vowpalwabbit/numpy do not import" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "bench/setup.sh: ready" >&2
