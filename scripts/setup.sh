#!/usr/bin/env bash
# Create or refresh the local virtualenv with everything prt-bench needs.
# Idempotent: a second run installs nothing unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}   # the local CPU wheel on the build machines
EXTRAS=${EXTRAS:-test,ray}

quiet_pip() {
  # The build machines' pip config names local indexes that do not exist; drop that noise.
  "$VENV/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
stamp="$VENV/.prt-bench-setup"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  echo "setting up $VENV (a few minutes the first time)"
  # torch first and pinned, so that nothing below pulls a different build of it.
  "$VENV/bin/python" -c "import torch" 2>/dev/null || quiet_pip "$TORCH_SPEC"
  quiet_pip -e ".[$EXTRAS]"
  "$VENV/bin/python" scripts/fix_torchvision.py
  touch "$stamp"
fi
