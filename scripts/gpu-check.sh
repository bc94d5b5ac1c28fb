#!/usr/bin/env bash
# One prepared run of everything that only a GPU machine can check (docs/suites.md, "A GPU check"):
# the CUDA and bf16 paths of training and evaluation, the per-GPU pool, the two cost profiles and,
# with two GPUs or more, multi-process training (DDP, FSDP) and lm-eval's data parallelism.  Writes
# one JSON of what passed and what it measured, step by step (a run cut short keeps what it did).
#
#   bash scripts/gpu-check.sh [OUT_DIR]        # default: $OUT, else results/local/gpu-check
#
# A bare machine with torch/transformers/peft but without the rest: put the missing wheels in
# .whl/ first (scripts/gpu-check-wheels.sh downloads them); they are installed into /tmp/site.
# Data: $PRT_BENCH_DATA, else ../shared/data (the smoke suite's Fashion-MNIST, gsm8k's test rows).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-results/local/gpu-check}}
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu-check: installing .whl/ failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
exec "$PY" scripts/gpu_check.py --out "$out" --budget-s "${GPU_CHECK_BUDGET_S:-540}"
