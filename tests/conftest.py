"""Shared fixtures: tiny Llama and Qwen2 checkpoints with one byte-level tokenizer (no hub)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The test models are tiny: one thread is faster than two contending ones, and it is
# inherited by the subprocesses that CLI tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def byte_tokenizer():
    from prt_bench.lm.tiny import byte_level_tokenizer

    return byte_level_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, byte_tokenizer):
    from prt_bench.lm.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-llama"), "llama", byte_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_llama_b(tmp_path_factory, byte_tokenizer):
    """A second Llama of another width: a 'bigger' target of the same family."""
    from prt_bench.lm.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-llama-b"), "llama", byte_tokenizer, seed=1, hidden=48, layers=3)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory, byte_tokenizer):
    """The other family, with an output layer wider than the tokenizer (as Qwen2-7B)."""
    from prt_bench.lm.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2", byte_tokenizer, seed=2, extra_vocab=8)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(root, summary, cache): the smoke suite run once, with its cost profile, into root/results and
    root/runs; shared by the runner's and the leaderboard's tests (which copy it before changing it)."""
    from prt_bench.suite.runner import RunOptions, run_suite

    root, cache = tmp_path_factory.mktemp("reference"), tmp_path_factory.mktemp("suite-cache")
    options = RunOptions(results=root / "results", runs=root / "runs", cache=cache, gpus=[], report=False,
                         progress=False, profile=True)
    return root, run_suite("smoke", options), cache
