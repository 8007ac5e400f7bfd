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
# torch first and pinned. Where the CPU build of 2.13.0 lies in a local wheel folder
# (PIP_FIND_LINKS) pip takes it; otherwise PyPI serves the CUDA build, which pulls the
# nvidia-* runtime wheels too (~4.5 GB on disk, a few minutes on a fast mirror) and runs on
# CPU all the same (README, "Set-up").
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[dev]'
# musicnn only ships the pretrained checkpoints we convert; its own dependencies
# (TensorFlow 1.x) are not needed: our converter reads the checkpoint format directly.
python -m pip install -q --no-deps musicnn==0.1.0
mkdir -p run/weights
[ -f run/weights/msd_musicnn.pt ] || resonate convert-musicnn --out run/weights/msd_musicnn.pt
# Debian packages the stack and the tests use (Java 17 and Maven for the embedded Kafka,
# promtool, prometheus, chromium + chromedriver, kcat); installs only what is missing.
bash infra/system_packages.sh
# The embedded Apache Kafka broker: its runtime jars from Maven Central into the venv
# (~40 jars, ~30 MB; the version is pinned in infra/kafka/pom.xml). Skipped where they are.
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' infra/kafka/pom.xml)
if [ "${RESONATE_SKIP_SYSTEM_PACKAGES:-0}" != 1 ] && [ ! -f ".venv/kafka/libs/kafka_2.13-$kafka_version.jar" ]; then
  rm -rf .venv/kafka/libs
  mvn -B -q -f infra/kafka/pom.xml dependency:copy-dependencies -Dkafka.libs="$PWD/.venv/kafka/libs"
fi
echo "set-up done: $(python --version), .venv ready"
