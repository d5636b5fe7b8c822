#!/usr/bin/env bash
# Creates .venv and installs tokenizer-zoo, its test and demo extras and the plugins (BSQ, vector-quantize-pytorch).
# Idempotent: does nothing when the installed set matches the current project files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.tokenizer-zoo-installed
WANT=$(cat pyproject.toml plugins/*/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# torch / torchvision first, pinned to the releases that lie on this machine's disk, so no
# other torch build is ever downloaded by a dependency's looser range.
$PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install -e ".[test,demo]" -e plugins/tokenizer-zoo-bsq -e plugins/tokenizer-zoo-vqtorch
echo "$WANT" > "$STAMP"
