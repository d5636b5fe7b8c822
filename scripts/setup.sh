#!/usr/bin/env bash
# Creates .venv and installs tokenizer-zoo with torch 2.14.1 / torchvision 0.29.1.
#   bash scripts/setup.sh          everything: the package, its test and demo extras, the plugins
#                                  (BSQ, vector-quantize-pytorch); what `make test` needs
#   bash scripts/setup.sh --core   the package alone: what `make train` needs
# Idempotent: does nothing when what is asked for is installed from the current project files (a full
# install serves --core too; a full one after a --core one adds the rest). Installs with uv (a `uv` on
# PATH, else uv from PyPI into .venv), given pip's settings by scripts/uv_pip.py; with pip if uv cannot
# be had. Where PYTHONDONTWRITEBYTECODE is set, uv compiles bytecode at install time, as pip does (~35 s
# on 2 cores): Python could not cache it, and every start-up would compile torch again (~10 CPU s a
# process). Elsewhere Python caches what it imports, on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    "") MODE=full ;;
    --core) MODE=core ;;
    *) echo "usage: bash scripts/setup.sh [--core]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.tokenizer-zoo-installed
WANT=$(cat pyproject.toml plugins/*/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
HAVE=$(cat "$STAMP" 2>/dev/null || true)
if [ "$HAVE" = "$WANT full" ] || [ "$HAVE" = "$WANT $MODE" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# torch / torchvision pinned in the same resolution, to the releases that lie on this machine's disk,
# so no other torch build is ever downloaded by a dependency's looser range.
PACKAGES=("torch==2.14.1" "torchvision==0.29.1")
if [ "$MODE" = core ]; then
    PACKAGES+=(-e .)
else
    PACKAGES+=(-e ".[test,demo]" -e plugins/tokenizer-zoo-bsq -e plugins/tokenizer-zoo-vqtorch)
fi
UV=$(command -v uv || true)
if [ -z "$UV" ] && $PIP install "uv>=0.5"; then
    UV=$VENV/bin/uv
fi
if [ -z "$UV" ] || ! "$VENV/bin/python" scripts/uv_pip.py "$UV" install ${PYTHONDONTWRITEBYTECODE:+--compile-bytecode} \
        --python "$VENV/bin/python" "${PACKAGES[@]}"; then
    echo "setup.sh: uv could not be installed or failed; installing with pip (slower)" >&2
    $PIP install "${PACKAGES[@]}"
fi
echo "$WANT $MODE" > "$STAMP"
