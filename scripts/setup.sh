#!/usr/bin/env bash
# Create or refresh the local virtualenv from the lock (requirements/cpu.lock; PRT_BENCH_LOCK
# names another, e.g. requirements/gpu.lock on a CUDA machine).  Idempotent: nothing is
# installed unless the lock, pyproject.toml or this script changed since the last run.
# Versions change only through `make lock` (scripts/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
LOCK=${PRT_BENCH_LOCK:-requirements/cpu.lock}
PY="$VENV/bin/python"
UV="$VENV/bin/uv"
[ -f "$LOCK" ] || { echo "setup: no lock file $LOCK" >&2; exit 1; }

stamp="$VENV/.prt-bench-setup"
want=$(cat "$LOCK" pyproject.toml scripts/setup.sh scripts/fix_torchvision.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want $LOCK" ]; then exit 0; fi

echo "setting up $VENV from $LOCK"
[ -x "$PY" ] || python3 -m venv "$VENV"
# uv installs the lock; it comes from the lock itself (exact version and hashes), through pip
uv_pin=$(sed -n 's/^\(uv==[^ ]*\).*/\1/p' "$LOCK")
if [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "${uv_pin#uv==}" ]; then
  uv_req=$(mktemp --suffix .txt); trap 'rm -f "$uv_req"' EXIT
  awk '/^uv==/{p=1; print; next} p && /^ /{print; next} {p=0}' "$LOCK" > "$uv_req"
  "$PY" -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$uv_req" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi
# torch's CPU wheel: the build machines' wheel folder, else PyTorch's CPU index
if [ -d /opt/wheels ]; then TORCH_SOURCE=(--find-links /opt/wheels); else
  TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match); fi
"$UV" pip sync --quiet --python "$PY" --require-hashes "${TORCH_SOURCE[@]}" "$LOCK"
"$UV" pip install --quiet --python "$PY" --no-deps --no-build-isolation -e .
"$PY" scripts/fix_torchvision.py
# fails loudly if anything installed differs from the lock
"$PY" -m prt_bench.lockfile check "$LOCK"
echo "$want $LOCK" > "$stamp"
