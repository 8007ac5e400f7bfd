#!/usr/bin/env bash
# Idempotent set-up on a fresh Linux machine with Python 3.11: a virtualenv in .venv with
# everything installed, and the MusiCNN weights converted from the musicnn wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: 2.13.0 is the CPU build; a bare `torch` would pull GBs of CUDA.
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[dev]'
# musicnn only ships the pretrained checkpoints we convert; its own dependencies
# (TensorFlow 1.x) are not needed: our converter reads the checkpoint format directly.
python -m pip install -q --no-deps musicnn==0.1.0
mkdir -p run/weights
[ -f run/weights/msd_musicnn.pt ] || resonate convert-musicnn --out run/weights/msd_musicnn.pt
# Debian packages the tests use (promtool, prometheus, chromium + chromedriver); installs
# only what is missing.
bash infra/system_packages.sh
echo "set-up done: $(python --version), .venv ready"
