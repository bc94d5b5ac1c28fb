"""Reward arithmetic (a suite's `merges:`): the schema refuses bad sets before any cell, task
arithmetic adds task vectors exactly, and a tiny merge set runs end to end into the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from prt_bench.io import REPO_ROOT
from prt_bench.suite.schema import SuiteError, load_suite

SMOKE = yaml.safe_load((REPO_ROOT / "suites" / "smoke.yaml").read_text())


def merge_suite(tmp_path: Path, merges, second_data: Path | None = None) -> dict:
    """The smoke suite's language section with a second task (the same lm-eval task, other training data)."""
    lm = json.loads(json.dumps(SMOKE["lm"]))
    lm["tasks"]["gsm8k"]["train_data"] = {"path": "suites/data/smoke_sft.jsonl"}
    lm["tasks"]["gsm8k_b"] = {**lm["tasks"]["gsm8k"], "train_data": {"path": str(second_data or REPO_ROOT / "suites"
                                                                                   / "data" / "smoke_sft.jsonl")}}
    del lm["train"]["data"]
    lm["methods"] = ["zeroshot", "prt"]
    lm.pop("lam_sweep", None)  # the merge cells alone
    lm["merges"] = merges
    return {"name": "merge-smoke", "seeds": [0], "lm": lm, "vision": SMOKE["vision"]}


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "merge-smoke.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


GOOD = {"name": "ab", "tasks": ["gsm8k", "gsm8k_b"], "source": "tiny-llama-s",
        "targets": ["tiny-llama-s", "tiny-llama-m"], "weights": [[1.0, 1.0], [0.5, 0.5]]}


@pytest.mark.parametrize("change, message", [
    ({"weights": [[1.0]]}, "each entry is 2 finite numbers"),
    ({"weights": [[1.0, float("nan")]]}, "each entry is 2 finite numbers"),
    ({"weights": [[1.0, "x"]]}, "each entry is 2 finite numbers"),
    ({"tasks": ["gsm8k", "mmlu"]}, "'mmlu' is not a task of this section"),
    ({"tasks": ["gsm8k", "fashion_mnist"]}, "'fashion_mnist' is a task of the vision section"),
    ({"tasks": ["gsm8k"]}, "at least two different tasks"),
    ({"source": "tiny-llama-xl"}, "unknown base 'tiny-llama-xl'"),
    ({"targets": ["tiny-vit-s"]}, "unknown base 'tiny-vit-s'"),
    ({"methods": ["prt", "ties"]}, "a non-empty list of prt, eft, task_arithmetic, ft_multitask"),
    ({"rewards": ["a"]}, "unknown key 'rewards'"),
])
def test_a_bad_merge_set_is_named(tmp_path, change, message):
    with pytest.raises(SuiteError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_suite(write(tmp_path, merge_suite(tmp_path, [{**GOOD, **change}])))


def test_merges_in_a_modality_without_reward_arithmetic_are_refused(tmp_path):
    doc = merge_suite(tmp_path, [GOOD])
    doc["vision"]["merges"] = [GOOD]
    with pytest.raises(SuiteError, match="vision modality has no reward arithmetic"):
        load_suite(write(tmp_path, doc))


def test_task_arithmetic_adds_the_weighted_task_vectors_exactly(tmp_path):
    from safetensors.torch import load_file

    from prt_bench.lm.merge import task_arithmetic
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    tok = byte_level_tokenizer()
    base, ft1, ft2 = (build_tiny_lm(tmp_path / n, "llama", tok, seed=s, hidden=16, layers=1) for n, s in
                      (("base", 0), ("ft1", 1), ("ft2", 2)))
    out = task_arithmetic(base, [ft1, ft2], [0.5, -1.0], tmp_path / "merged")
    theta = [load_file(str(p / "model.safetensors")) for p in (base, ft1, ft2, out)]
    for k in theta[0]:
        torch.testing.assert_close(theta[3][k], theta[0][k] + 0.5 * (theta[1][k] - theta[0][k])
                                   - (theta[2][k] - theta[0][k]))
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    other = build_tiny_lm(tmp_path / "wide", "llama", tok, seed=0, hidden=32, layers=1)
    with pytest.raises(ValueError, match="needs one architecture"):
        task_arithmetic(base, [other], [1.0], tmp_path / "bad")


def test_a_merge_set_runs_end_to_end_into_the_report(tmp_path):
    """Rewards of two tasks summed on two targets, EFT sums, task arithmetic and multi-task FT:
    every cell runs; the single reward at weight 1 gives the matrix's PRT cell bit for bit; the
    report has the merging page and the claim with its numbers."""
    from prt_bench.report.build import build_report
    from prt_bench.suite.plan import expand
    from prt_bench.suite.runner import RunOptions, run_suite

    rows = [json.loads(x) for x in (REPO_ROOT / "suites" / "data" / "smoke_sft.jsonl").read_text().splitlines()]
    second = tmp_path / "second.jsonl"
    second.write_text("".join(json.dumps({**r, "response": r["response"].upper()}) + "\n" for r in rows))
    doc = merge_suite(tmp_path, [{**GOOD, "weights": [[1.0, 1.0]]}], second)
    del doc["vision"]
    path = write(tmp_path, doc)
    cells = expand(load_suite(path))
    methods = {c.method for c in cells if c.kind == "eval"}
    assert methods == {"zeroshot", "prt", "merge_prt", "merge_eft", "merge_ta", "merge_ft"}
    assert all(c.target == "tiny-llama-s" for c in cells if c.method == "merge_ta")  # the source's own weights only
    summary = run_suite(path, RunOptions(results=tmp_path / "results", runs=tmp_path / "runs", cache=tmp_path / "cache",
                                         gpus=[], report=False, progress=False, profile=False))
    assert summary.failed == {}
    cells_dir = tmp_path / "results" / "merge-smoke" / "cells"
    records = {p.stem: json.loads(p.read_text()) for p in cells_dir.glob("*.json")}
    evals = [r for r in records.values() if r["kind"] == "eval"]

    def one(**kw):
        (hit,) = [r for r in evals if all((r.get(k) if k in r else r["config"].get(k)) == v for k, v in kw.items())]
        return hit

    single = one(method="merge_prt", target="tiny-llama-m", task="gsm8k",
                 merge={"set": "ab", "tasks": ["gsm8k", "gsm8k_b"], "weights": [1.0, 0.0]})
    matrix = one(method="prt", target="tiny-llama-m", task="gsm8k")
    assert single["config"]["trained"] == {"reward0": matrix["config"]["trained"]["reward"]}
    assert single["results"] == matrix["results"] and single["samples"]["sha256"] == matrix["samples"]["sha256"]
    both = one(method="merge_prt", target="tiny-llama-m", task="gsm8k",
               merge={"set": "ab", "tasks": ["gsm8k", "gsm8k_b"], "weights": [1.0, 1.0]})
    assert set(both["config"]["trained"]) == {"reward0", "reward1"}
    assert set(both["environment"]["models"]) >= {"target", "reward0", "reward1"}
    train_multi = [r for r in records.values() if r["kind"] == "train" and isinstance(r["config"]["data"], list)]
    assert {r["target"] for r in train_multi} == {"tiny-llama-s", "tiny-llama-m"}

    pdf = build_report(tmp_path / "results" / "merge-smoke", tmp_path / "report.pdf")
    md = pdf.with_suffix(".md").read_text()
    assert "## Reward arithmetic: ab" in md and "PRT, rewards summed, w=1,1" in md and "task arithmetic" in md
    assert "Summed rewards keep ≥ 80% of each single reward's gain (ab)" in md
    assert "gsm8k on tiny-llama-m: base" in md  # the claim's numbers, whatever they are
    shutil.rmtree(tmp_path / "runs")
