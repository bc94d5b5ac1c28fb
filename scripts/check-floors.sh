#!/usr/bin/env bash
# Run the test suite at the floors of pyproject.toml: every direct dependency at the lowest
# version its range allows (uv's lowest-direct resolution), torch held at the lock's CPU wheel.
# numpy and pyarrow are held at an older pair that works together (pyarrow declares no numpy
# requirement, so a lowest resolution would pair numpy 1.x with a pyarrow built for numpy 2).
# Usage: scripts/check-floors.sh [pytest args]   (a throwaway venv in $FLOORS_VENV, default /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=.venv/bin/uv
VENV=${FLOORS_VENV:-/tmp/prt-bench-floors}
held=$(mktemp --suffix .txt); lock=$(mktemp --suffix .txt); trap 'rm -f "$held" "$lock"' EXIT
printf 'torch==2.13.0+cpu\ntorchvision==0.28.0\nnumpy==1.26.4\npyarrow==17.0.0\n' > "$held"
links=(); [ -d /opt/wheels ] && links=(--find-links /opt/wheels)
"$UV" pip compile -q pyproject.toml --extra test --resolution lowest-direct --override "$held" "${links[@]}" \
  --python-version 3.11 --no-emit-package prt-bench -o "$lock"
rm -rf "$VENV" && "$UV" venv -q --python python3.11 "$VENV"
"$UV" pip sync -q --python "$VENV/bin/python" "${links[@]}" "$lock"
"$UV" pip install -q --python "$VENV/bin/python" --no-deps -e .
"$VENV/bin/python" scripts/fix_torchvision.py
grep -E '^(transformers|lm-eval|open-clip-torch|peft|accelerate|datasets|typer|pandas|safetensors)==' "$lock"
# the lock test and the Ray test (the ray extra is not installed here) do not apply to this environment
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  --deselect tests/test_reference.py::test_installed_packages_are_exactly_the_lock \
  --deselect tests/test_suite_run.py::test_ray_executor_gives_the_results_of_the_local_executor "$@"
