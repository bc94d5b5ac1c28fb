"""`prt-bench run` on the smoke suite (tiny models built on the fly): a full run, resuming,
SIGKILL in the middle, determinism, Ray giving what the local executor gives, and the cost
profile the run writes for the report."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prt_bench.io import REPO_ROOT, read_json
from prt_bench.io import PROFILE_SCHEMA
from prt_bench.report.results import load_results
from prt_bench.suite import modalities
from prt_bench.suite.plan import expand
from prt_bench.suite.runner import RunOptions, run_suite, select
from prt_bench.suite.schema import load_suite
from prt_bench.suite.store import TABLE_COLUMNS

# Small slices of the matrix (with the training they need) for runs compared against the full one.
LM_PRT_SLICE = "eval lm * prt *alpha=0 seed=*"
VISION_PRT_SLICE = "eval vision * prt *-> *alpha=0 seed=*"
# FT and EFT in vision: two training and three evaluation cells.
SIGKILL_SLICE = "* vision *ft*"


def options(root: Path, **kw) -> RunOptions:
    kw.setdefault("profile", False)  # measured by the reference run (and the tests of the profile) only
    return RunOptions(results=root / "results", runs=root / "runs", cache=kw.pop("cache", root / "cache"),
                      gpus=[], report=False, progress=False, **kw)


def profiles_of(root: Path) -> dict[str, dict]:
    return {p.stem: read_json(p) for p in sorted((root / "results" / "smoke" / "profile").glob("*.json"))}


def copy_of_reference(root: Path, dest: Path) -> dict[str, dict]:
    """The reference run's results and checkpoints copied to `dest`; returns its records."""
    shutil.copytree(root / "results", dest / "results")
    shutil.copytree(root / "runs", dest / "runs")
    return cells_of(dest)


def cells_of(root: Path) -> dict[str, dict]:
    return {p.stem: read_json(p) for p in sorted((root / "results" / "smoke" / "cells").glob("*.json"))}


def outcome(record: dict) -> dict:
    """What must be identical between runs: everything but timings and environment."""
    return {k: v for k, v in record.items() if k not in ("timing", "environment", "output")}


@pytest.fixture(scope="module")
def cache(smoke_run) -> Path:
    return smoke_run[2]


@pytest.fixture(scope="module")
def reference(smoke_run) -> tuple[Path, object]:
    """The smoke suite run once for the session (tests/conftest.py); tests that change results copy it."""
    return smoke_run[0], smoke_run[1]


def test_full_run_stores_one_record_per_cell_and_the_table(reference):
    root, summary = reference
    expected = {c.cell_id for c in expand(load_suite("smoke"))}
    assert summary.failed == {}
    assert set(cells_of(root)) == expected == set(summary.ran)
    records = cells_of(root).values()
    assert {r["method"] for r in records if r["kind"] == "eval"} == {
        "zeroshot", "ft_source", "ft_target", "prt", "eft", "reward_only"}
    for r in records:
        assert r["schema"] == "prt-bench/cell/1" and r["status"] == "done" and r["config_hash"] == r["cell_id"]
        assert r["timing"]["wall_s"] > 0 and r["timing"]["peak_mem_mb"] > 0
        assert r["timing"]["cpu_s"] > 0  # the process's CPU seconds, every thread
        assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["timing"]["finished_at"])  # when, in UTC
        assert r["environment"]["packages"]["torch"]
        if r["kind"] == "eval":
            assert isinstance(r["results"][r["task"]][r["primary_metric"]], float)
    table = (root / "results" / "smoke" / "table.csv").read_text().splitlines()
    assert table[0].split(",") == TABLE_COLUMNS
    evaluated = {r["cell_id"] for r in records if r["kind"] == "eval"}
    assert {line.split(",")[0] for line in table[1:]} == evaluated


def test_language_reward_only_decodes_the_reward_checkpoint_alone(reference):
    """reward_only (Figs. 6-7's second curve) greedily decodes softmax(r): the reward's own
    logits, no base.  Checked against transformers' generate() on the reward checkpoint."""
    import torch
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prt_bench.suite import samples

    root, _ = reference
    records = cells_of(root)
    cell = next(r for r in records.values() if r["kind"] == "eval" and r["modality"] == "lm"
                and r["method"] == "reward_only")
    prt_cell = next(r for r in records.values() if r["kind"] == "eval" and r["modality"] == "lm"
                    and r["method"] == "prt" and r["source"] == cell["source"])
    reward = root / "runs" / "smoke" / cell["config"]["trained"]["reward"]
    assert cell["config"]["trained"] == prt_cell["config"]["trained"]  # the reward PRT carries
    task_name = cell["config"]["task_config"]["lm_eval_task"]
    task = TaskManager(include_path=str(REPO_ROOT / "tasks"), include_defaults=False).load([task_name])["tasks"][task_name]
    docs = list(task.test_docs())
    until = task.config.generation_kwargs["until"]
    tokenizer = AutoTokenizer.from_pretrained(reward)
    model = AutoModelForCausalLM.from_pretrained(reward).eval()
    _, rows = samples.read(root / "results" / "smoke", cell)
    assert rows
    for row in rows:
        ids = tokenizer(task.doc_to_text(docs[row["doc_id"]]), return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, do_sample=False, max_new_tokens=cell["config"]["task_config"]["max_gen_toks"],
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:])
        for stop in until:
            text = text.split(stop)[0]
        assert row["resps"][0][0] == text


def test_diagnosis_reads_the_run_and_its_margins_explain_each_choice(reference, cache):
    """`prt-bench diagnose lm`: per-group scores are the stored metrics, the distances start at 0
    for the source, and at every first divergence the method's own combination preferred the
    token it wrote (base + correction < 0); documents that changed since the run are refused."""
    from prt_bench.lm.diagnose import DEPARTURES, _check_alignment, diagnose, divergence, load_run, markdown

    root, _ = reference
    run = load_run("smoke", root / "results", root / "runs", cache)
    found = diagnose(run, n_train=4)
    stored = {(r["method"], r["source"], r["target"]): r["results"][r["task"]][r["primary_metric"]]
              for r in cells_of(root).values() if r["kind"] == "eval" and r["modality"] == "lm"
              and r["alpha"] == 0 and r["config"].get("lam", 1) == 1}
    assert {(r["method"], r["source"], r["target"]) for r in found["split"]} <= set(stored)
    for row in found["split"]:
        assert row["all"] == pytest.approx(stored[(row["method"], row["source"], row["target"])])
    split = {(r["method"], r["source"], r["target"]): r["all"] for r in found["split"]}
    for row in found["departures"]:  # every problem in one place, the right ones as the stored metric
        assert sum(row[k] for k in DEPARTURES) == pytest.approx(1)
        assert row["right"] == pytest.approx(split[(row["method"], row["source"], row["target"])])
    distance = {row["target"]: row for row in found["distance"]}
    assert distance["tiny-llama-s"]["KL(source || target)"] == pytest.approx(0, abs=1e-6)
    assert distance["tiny-llama-m"]["KL(source || target)"] > 0
    assert {d["method"] for d in found["divergence"]} == {"prt", "eft"}
    events = [e for d in found["divergence"] for e in d["events"]]
    assert events
    for e in events:
        assert e["gold"] != e["made"] and e["base"] + e["correction"] < 0
    # the knowledge a transfer does not pass on: PRT wrong on the target where the target's own FT is right
    assert [(d["target"], d["among"]) for d in found["missed"]] == [("tiny-llama-m", "missed")]
    for d in found["missed"]:
        prt = run.scores(next(c for c in run.cells if c.method == "prt" and (c.source, c.target) == ("tiny-llama-s",
                                                                                                   d["target"])))
        ft = run.scores(run.cell("ft_target", d["target"]))
        assert d["lost"] == sum(1 for i, v in prt.items() if v < 1 and ft.get(i, 0.0) >= 1)
        for e in d["events"]:
            assert prt[e["doc"]] < 1 <= ft[e["doc"]] and e["base"] + e["correction"] < 0
    with pytest.raises(ValueError, match="among"):
        divergence(run, "tiny-llama-s", "tiny-llama-m", among="won")
    # an answer that stopped early (its response a prefix of the gold one: the stop sequence is left
    # out) is found where the stop the method prefers most leaves the gold, not passed over
    d = next(d for d in found["divergence"] if d["events"])
    doc = d["events"][0]["doc"]
    cell = next(c for c in run.cells if (c.method, c.source, c.target) == (d["method"], d["source"], d["target"]))
    strict = run.metric.split(",")[1]
    row = next(r for r in run.rows(cell) if int(r["doc_id"]) == doc and r["filter"] == strict)
    gold = run.targets[doc]
    row["resps"] = [[gold]]  # as if it were right: an answer the same as the gold one is passed over
    passed = divergence(run, d["source"], d["target"], d["method"])
    row["resps"] = [[gold[:gold.index(" ", 2)]]]  # the gold answer's first word, then a stop
    again = divergence(run, d["source"], d["target"], d["method"])
    stops = [e for e in again["events"] if e["doc"] == doc]
    assert len(again["events"]) + again["skipped"] == len(passed["events"]) + passed["skipped"] + 1
    if stops:  # else the method prefers the gold token there: not what it generated, and counted as skipped
        e = stops[0]
        assert e["where"].endswith(": stops early") and e["base"] + e["correction"] < 0
        tok = run.tokenizer
        firsts = {tok.decode(tok.encode(t, add_special_tokens=False)[:1]) for t in run.stops}
        assert e["made"] in firsts | {tok.eos_token}
    # the stops are the task's own (tasks/gsm8k_local: no blank line among them, unlike mini_gsm's)
    assert run.lm_task == "gsm8k_local_zeroshot" and run.stops == ("Question:", "</s>", "<|im_end|>")
    card = {(r["base"], r["precondition"].split()[0]): r for r in found["world card"]}
    p2 = card[("tiny-llama-m", "P2")]  # FT of the bigger base against FT of the source, paired on the same items
    assert p2["role"] == "bigger" and p2["holds"] is (float(p2["measured"].split("[")[1].split(",")[0]) > 0)
    page = markdown(found)
    assert all(f"## {k}." in page for k in (0, 1, 3, 4, "4b"))
    run.prompts[0] += " (edited)"
    with pytest.raises(ValueError, match="prompt hashes differ"):
        _check_alignment(run)


def test_diagnosis_reads_the_stop_sequences_of_the_task_s_config():
    from types import SimpleNamespace

    from prt_bench.lm.diagnose import _until

    def task(kwargs):
        return SimpleNamespace(config=SimpleNamespace(generation_kwargs=kwargs))

    assert _until(task({"until": ["Question:", "\n\n", ""], "max_gen_toks": 96})) == ("Question:", "\n\n")
    assert _until(task({"until": "Question:"})) == ("Question:",)
    assert _until(task({"max_gen_toks": 8})) == () == _until(task(None))


def test_vision_diagnosis_pairs_prt_with_its_own_reward_and_target_image_by_image(reference):
    """`prt-bench diagnose vision`: one row per swapped PRT cell at the trained λ (the λ sweep's
    cells left out), each paired with the reward-only cell of the same α and the target alone."""
    from prt_bench.suite import samples
    from prt_bench.vision.diagnose import agreement

    root, _ = reference
    results = root / "results" / "smoke"
    rows = agreement(results)
    evals = [r for r in cells_of(root).values() if r["kind"] == "eval" and r["modality"] == "vision"]
    main = [r for r in evals if r["method"] == "prt" and r["source"] != r["target"] and r["config"]["lam"] == 1.0]
    assert sorted((r["alpha"], r["target"]) for r in rows) == sorted((r["alpha"], r["target"]) for r in main)
    assert {r["alpha"] for r in rows} == {0.0, 0.1}

    def preds(record):
        return [row["pred"] for row in sorted(samples.read(results, record)[1], key=lambda row: row["i"])]

    for row in rows:
        prt = next(r for r in main if r["alpha"] == row["alpha"])
        reward = next(r for r in evals if r["method"] == "reward_only" and r["alpha"] == row["alpha"])
        alone = next(r for r in evals if r["method"] == "zeroshot" and r["target"] == row["target"])
        p, r, t = preds(prt), preds(reward), preds(alone)
        assert row["PRT = reward alone"] == pytest.approx(sum(a == b for a, b in zip(p, r)) / len(p))
        assert row["PRT = target alone"] == pytest.approx(sum(a == b for a, b in zip(p, t)) / len(p))
        assert row["reward and target disagree"] == pytest.approx(sum(a != b for a, b in zip(r, t)) / len(p))
    from prt_bench.report.results import load_results
    from prt_bench.vision.diagnose import per_class

    classes = {(c["method"], c["target"]): c for c in per_class(load_results(results))}
    confidence = {(c["method"], c["target"]): c for c in per_class(load_results(results), "logp_true")}
    with pytest.raises(ValueError, match="measure"):
        per_class(load_results(results), "acc5")
    for r in evals:  # the per-class accuracies weighted by each class's images give the stored acc1
        if r["alpha"] == 0 and r["config"]["lam"] == 1.0:
            _, rows_ = samples.read(results, r)
            row = classes[(r["method"], r["target"])]
            weighted = sum(row[f"class {c}"] * sum(x["label"] == c for x in rows_) for c in {x["label"] for x in rows_})
            assert weighted / len(rows_) == pytest.approx(r["results"][r["task"]]["acc1,none"])
            # the same with the true label's log-probability: weighted, it is minus the stored NLL
            row = confidence[(r["method"], r["target"])]
            weighted = sum(row[f"class {c}"] * sum(x["label"] == c for x in rows_) for c in {x["label"] for x in rows_})
            assert -weighted / len(rows_) == pytest.approx(r["results"][r["task"]]["nll,none"])


def test_head_spread_reads_the_cosines_between_class_embeddings():
    import torch

    from prt_bench.vision.heads import head_spread

    # three unit class embeddings: 0 and 1 close (cos 0.8), 2 orthogonal to both
    head = torch.tensor([[1.0, 0.8, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 1.0]])
    spread = head_spread(head, ["a", "b", "c"])
    assert spread["closest pair"] == "a / b" and spread["closest cosine"] == pytest.approx(0.8)
    assert spread["mean cosine"] == pytest.approx(0.8 / 3)
    with pytest.raises(ValueError, match="two classes"):
        head_spread(torch.ones(4, 1), ["a"])
    with pytest.raises(ValueError, match="a name for each"):
        head_spread(head, ["a", "b"])


def test_diagnosis_measures_each_suite_bases_zero_shot_head(reference, cache):
    """`prt-bench diagnose vision --suite`: one row per base and task, from the head the base's
    evaluation uses (the task's class names and prompts)."""
    import torch

    from prt_bench.suite.resolve import resolve_base
    from prt_bench.suite.schema import load_suite
    from prt_bench.vision.bases import load_base
    from prt_bench.vision.datasets.registry import get_spec
    from prt_bench.vision.diagnose import heads
    from prt_bench.vision.heads import zero_shot_head

    rows = heads("smoke", cache)
    section = load_suite("smoke").sections["vision"]
    assert [(r["task"], r["base"]) for r in rows] == [(t, b) for b in section.bases for t in section.tasks]
    data = get_spec("fashion_mnist")
    for row in rows:
        base = load_base(resolve_base("vision", section.bases[row["base"]], cache))
        head = zero_shot_head(base.model, base.tokenizer, data.classnames, data.templates)
        cos = head.T @ head
        n = len(data.classnames)
        assert row["mean cosine"] == pytest.approx(float((cos.sum() - n) / (n * (n - 1))), abs=1e-5)
        first, second = row["closest pair"].split(" / ")
        i, j = data.classnames.index(first), data.classnames.index(second)
        assert row["closest cosine"] == pytest.approx(float(cos[i, j]), abs=1e-6)
        assert row["closest cosine"] == pytest.approx(float((cos - 3 * torch.eye(n)).max()), abs=1e-6)


def test_world_card_measures_each_precondition_from_the_records(reference):
    """The world card on a run: P3 is PRT(s→t) − reward only(s) at the main α, the same-base row
    PRT(s→s) − FT(s), both from the stored accuracies, and "holds" follows the thresholds."""
    from prt_bench.report.card import P3_MARGIN, SAME_BASE_TOL, world_card
    from prt_bench.report.results import Items, load_results
    from prt_bench.report.tables import Lookup

    root, _ = reference
    res = load_results(root / "results" / "smoke")
    card = world_card(Lookup(res.agg, Items(res)), "fashion_mnist")
    acc = {}
    for r in cells_of(root).values():
        if r["kind"] == "eval" and r["modality"] == "vision" and r["alpha"] == 0 and r["config"].get("lam", 1) == 1:
            acc[(r["method"], r["source"], r["target"])] = r["results"][r["task"]]["acc1,none"]
    rows = {(r["base"], r["precondition"].split(":")[0]): r for r in card}
    diff = lambda row: float(row["measured"].split("=")[1].split("[")[0])  # noqa: E731
    p3 = rows[("tiny-vit-m", "P3 the target's knowledge matters")]
    expected = acc[("prt", "tiny-vit-s", "tiny-vit-m")] - acc[("reward_only", "tiny-vit-s", "tiny-vit-s")]
    assert diff(p3) == pytest.approx(expected, abs=5e-4)
    assert p3["holds"] is (diff(p3) >= P3_MARGIN)
    same = rows[("tiny-vit-s", f"PRT on its own base, mean within {SAME_BASE_TOL:g} of FT")]
    assert diff(same) == pytest.approx(acc[("prt", "tiny-vit-s", "tiny-vit-s")] - acc[("ft_source", "tiny-vit-s", "tiny-vit-s")],
                                       abs=5e-4)
    assert same["holds"] is (abs(diff(same)) <= SAME_BASE_TOL)
    assert rows[("tiny-vit-m", "room for P3")]["holds"] is None


def test_world_card_reads_each_vision_bases_head_from_its_zero_shot_cell(reference, cache):
    """A vision zero-shot cell records its base's head spread beside its per-sample rows (no other
    cell does), and the card's head row is that record, decided at HEAD_COSINE: the same numbers
    `diagnose vision --suite` computes from the base itself."""
    from prt_bench.report.card import world_card
    from prt_bench.report.results import Items, load_results
    from prt_bench.report.tables import Lookup
    from prt_bench.suite import samples
    from prt_bench.vision.diagnose import heads
    from prt_bench.vision.heads import HEAD_COSINE

    root, _ = reference
    for record in cells_of(root).values():
        if record["kind"] == "eval" and record["modality"] == "vision":
            header, _ = samples.read(root / "results" / "smoke", record)
            assert ("head" in header) is (record["method"] == "zeroshot"), record["method"]
    res = load_results(root / "results" / "smoke")
    card = [r for r in world_card(Lookup(res.agg, Items(res)), "fashion_mnist")
            if r["precondition"].startswith("a sound zero-shot head")]
    expected = {r["base"]: r for r in heads("smoke", cache)}
    assert sorted(r["base"] for r in card) == sorted(expected)
    for row in card:
        spread = expected[row["base"]]
        assert row["measured"] == (f"{spread['mean cosine']:.3f} (closest: {spread['closest pair']}, "
                                   f"{spread['closest cosine']:.3f})")
        assert row["holds"] is (spread["mean cosine"] <= HEAD_COSINE)
    # a language task's zero-shot cells record no head: no such row
    assert not any(r["precondition"].startswith("a sound zero-shot head")
                   for r in world_card(Lookup(res.agg, Items(res)), "gsm8k"))


def test_a_knowledge_probe_is_every_base_alone_and_gives_the_cards_p1(reference, cache):
    """A task with ``probe_of`` (smoke: mini_gsm_probe of gsm8k) has a zero-shot cell of every base
    and no other; each item is right exactly when every token of its calculation is the base's
    greedy choice after the prompt and the gold answer up to it (checked here with transformers);
    the card of the probed task has the P1 rows from those cells, and the report's tasks skip it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prt_bench.mini.lm.tasks import load_probe_dataset
    from prt_bench.report.card import P1_FLOOR, world_card
    from prt_bench.report.results import Items, load_results
    from prt_bench.report.tables import Lookup
    from prt_bench.suite import samples
    from prt_bench.suite.resolve import build_tiny

    root, _ = reference
    records = cells_of(root).values()
    probe = [r for r in records if r.get("task") == "mini_gsm_probe"]
    assert sorted((r["kind"], r["method"], r["target"]) for r in probe) == [
        ("eval", "zeroshot", "tiny-llama-m"), ("eval", "zeroshot", "tiny-llama-s")]
    items = load_probe_dataset("mini_gsm")["test"]
    for record in probe:
        _, rows = samples.read(root / "results" / "smoke", record)
        assert len(rows) == 4
        spec = record["config"]["target"]["tiny"]
        path = build_tiny("lm", spec, cache)
        tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
        for row in rows:
            item = items[row["doc_id"]]
            head = tok(item["context"])["input_ids"]
            whole = tok(item["context"] + " " + item["calculation"])["input_ids"]
            with torch.no_grad():
                greedy = model(torch.tensor([whole])).logits[0, len(head) - 1:-1].argmax(-1).tolist()
            assert row["acc"] == int(greedy == whole[len(head):])
        assert record["results"]["mini_gsm_probe"]["acc,none"] == pytest.approx(sum(r["acc"] for r in rows) / 4)

    res = load_results(root / "results" / "smoke")
    lk = Lookup(res.agg, Items(res))
    assert ("lm", "mini_gsm_probe") not in lk.tasks() and lk.probes("gsm8k") == ["mini_gsm_probe"]
    card = {(r["base"], r["precondition"]): r for r in world_card(lk, "gsm8k")}
    alone = {r["target"]: r["results"]["mini_gsm_probe"]["acc,none"] for r in probe}
    for base, value in alone.items():
        row = card[(base, f"P1 knows alone: mini_gsm_probe > {P1_FLOOR:g}")]
        assert row["measured"].startswith(f"{value:.3f}") and row["holds"] is (value > P1_FLOOR)
    more = card[("tiny-llama-m", "P1 knows more than the source: mini_gsm_probe")]
    assert float(more["measured"].split("=")[1].split("[")[0]) == pytest.approx(
        alone["tiny-llama-m"] - alone["tiny-llama-s"], abs=5e-4)
    # with a probe, "knows more alone" is P1's row: the task itself, 0 alone on every base, is not read
    assert not [key for key in card if key[1] == "knows more alone than the source"]
    # the claim "bigger/newer targets score higher" compares what the bases alone know on the probe
    from prt_bench.report.claims import check_claims

    (bigger,) = [c for c in check_claims(lk) if c.title == "Bigger/newer targets score higher"]
    (check,) = [text for _, text in bigger.checks if text.startswith("gsm8k (upscaling)")]
    assert float(check.split(" on mini_gsm_probe: Δ = ")[1].split(" ")[0]) == pytest.approx(
        alone["tiny-llama-m"] - alone["tiny-llama-s"], abs=5e-4)


def test_every_metric_comes_back_from_the_per_sample_records_and_tampering_is_caught(reference, tmp_path):
    from prt_bench.suite import samples

    root, _ = reference
    results = root / "results" / "smoke"
    problems = samples.rescore_folder(results)
    evaluated = {c for c, r in cells_of(root).items() if r["kind"] == "eval"}
    assert set(problems) == evaluated and all(p == [] for p in problems.values())
    records = cells_of(root)
    lm = next(r for r in records.values() if r["kind"] == "eval" and r["modality"] == "lm")
    vision = next(r for r in records.values() if r["kind"] == "eval" and r["modality"] == "vision")
    header, rows = samples.read(results, lm)
    assert {"doc_id", "prompt_hash", "target", "resps", "filtered_resps"} <= set(rows[0])
    assert len({r["doc_id"] for r in rows}) == lm["results"][lm["task"]]["n_samples"]
    _, images = samples.read(results, vision)
    assert {"label", "pred", "top5", "logp_true"} <= set(images[0])

    copy = tmp_path / "smoke"
    shutil.copytree(results, copy)
    # one image's prediction changed: the file no longer has the hash its record names
    header, rows = samples.read(copy, vision)
    rows[0] = {**rows[0], "pred": (rows[0]["pred"] + 1) % header["classes"]}
    samples_file = samples.samples_path(copy, vision["cell_id"])
    samples_file.write_bytes(samples.encode({k: v for k, v in header.items() if k != "schema"}, rows))
    # a metric edited in a record (its samples intact) no longer comes back
    edited = dict(lm, results={lm["task"]: {**lm["results"][lm["task"]], lm["primary_metric"]: 0.123}})
    (copy / "cells" / f"{lm['cell_id']}.json").write_text(json.dumps(edited))
    problems = samples.rescore_folder(copy)
    assert "the samples changed after the run" in problems[vision["cell_id"]][0]
    assert problems[lm["cell_id"]] == [f"{lm['primary_metric']}: recorded 0.123, recomputed "
                                       f"{lm['results'][lm['task']][lm['primary_metric']]!r}"]
    assert sum(bool(p) for p in problems.values()) == 2


def test_rerun_does_nothing(reference):
    root, _ = reference
    before = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*/*.json")}
    assert any(p.parent.name == "profile" for p in before)
    again = run_suite("smoke", options(root, cache=root / "unused-cache", profile=True))
    assert again.ran == [] and again.failed == {} and again.already_done == again.total and again.profiles == []
    assert {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*/*.json")} == before
    assert not (root / "unused-cache").exists(), "a rerun with nothing to do builds no base"


def test_rerun_after_a_lost_checkpoint_retrains_only_what_pending_cells_need(reference, tmp_path):
    root, _ = reference
    records = copy_of_reference(root, tmp_path)
    target = next(r for r in records.values() if r["kind"] == "eval" and r["method"] == "prt"
                  and r["modality"] == "vision" and r["alpha"] == 0.0)
    reward = target["config"]["trained"]["reward"]
    (tmp_path / "results" / "smoke" / "cells" / f"{target['cell_id']}.json").unlink()
    shutil.rmtree(tmp_path / "runs" / "smoke" / reward)
    summary = run_suite("smoke", options(tmp_path, cache=root.parent / "unused"))
    assert sorted(summary.ran) == sorted([reward, target["cell_id"]])
    assert outcome(cells_of(tmp_path)[target["cell_id"]]) == outcome(target)


def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(reference, cache, tmp_path):
    root, _ = reference
    cmd = [sys.executable, "-m", "prt_bench.cli", "run", "--suite", "smoke", "--results", str(tmp_path / "results"),
           "--runs", str(tmp_path / "runs"), "--cache", str(cache), "--gpus", "none", "--no-report",
           "--no-progress", "--no-profile", "--only", SIGKILL_SLICE]
    cells_dir = tmp_path / "results" / "smoke" / "cells"
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(cells_dir.glob("*.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    interrupted = set(cells_of(tmp_path))
    vision = {c.cell_id for c in select(expand(load_suite("smoke")), SIGKILL_SLICE)}
    assert 2 <= len(interrupted) < len(vision) == 5

    summary = run_suite("smoke", options(tmp_path, cache=cache, only=SIGKILL_SLICE))
    assert summary.failed == {} and set(summary.ran) == vision - interrupted
    resumed, uninterrupted = cells_of(tmp_path), cells_of(root)
    assert set(resumed) == vision
    assert {k: outcome(v) for k, v in resumed.items()} == {k: outcome(uninterrupted[k]) for k in vision}
    table = (tmp_path / "results" / "smoke" / "table.csv").read_text().splitlines()[1:]
    assert len(table) == len(set(table)), "no row may be duplicated"
    assert not list((tmp_path / "runs" / "smoke").glob(".*.tmp")), "abandoned temporary folders are removed"
    assert not (tmp_path / "results" / "smoke" / "profile").exists(), "--no-profile measures nothing"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_runner_leaves_no_cpu_worker_behind(cache, tmp_path, sig):
    cmd = [sys.executable, "-m", "prt_bench.cli", "run", "--suite", "smoke", "--results", str(tmp_path / "results"),
           "--runs", str(tmp_path / "runs"), "--cache", str(cache), "--gpus", "none", "--no-report",
           "--no-progress", "--no-profile", "--workers", "2", "--only", SIGKILL_SLICE]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        workers: list[int] = []
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            children = _children(proc.pid)  # the pool's workers and multiprocessing's resource tracker
            workers = [p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2 and proc.poll() is None, "the run ended before its workers could be seen"
        time.sleep(1.0)  # the workers are in their cells
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in children), f"processes of the run still running after {sig.name}"
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode != 0
        assert not (tmp_path / "results" / "smoke" / ".run.holder.json").exists(), "the lock's holder file is removed"


def test_same_seed_gives_identical_metrics(reference, cache, tmp_path):
    root, _ = reference
    run_suite("smoke", options(tmp_path, cache=cache, only=LM_PRT_SLICE))
    again = cells_of(tmp_path)
    assert len(again) == 2  # the reward and its evaluation
    assert {k: outcome(v) for k, v in again.items()} == {k: outcome(cells_of(root)[k]) for k in again}


class KillFirstCellOnce:
    """Watches a run's cell logs and SIGKILLs the process running the first cell once, as soon as
    its log names it (a worker lost in the middle of a cell); ``killed``: (cell id, pid) or None."""

    def __init__(self, logs: Path):
        import threading

        self.logs, self.killed, self.stop = logs, None, threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            for log in self.logs.glob("*.log") if self.logs.is_dir() else []:
                first = log.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
                if first.startswith("# cell ") and " pid " in first:
                    pid = int(first.split(" pid ")[1].split()[0])
                    if pid != os.getpid():
                        os.kill(pid, signal.SIGKILL)
                        self.killed = (log.stem, pid)
                        return
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def assert_retried_after_kill(watcher: KillFirstCellOnce, root: Path) -> None:
    assert watcher.killed is not None, "the cell ended before it could be killed"
    cell_id, pid = watcher.killed
    header = (root / "runs" / "smoke" / "logs" / f"{cell_id}.log").read_text().split("\n", 1)[0]
    assert f"pid {pid} " not in header  # the log is the retry's, from another process


# torchrun, accelerate and Ray open ports on this machine: such tests run one at a time under xdist
@pytest.mark.xdist_group("ports")
def test_ray_task_killed_once_is_retried_and_gives_the_results_of_the_local_executor(reference, cache, tmp_path):
    import ray

    root, _ = reference
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with KillFirstCellOnce(tmp_path / "runs" / "smoke" / "logs") as watcher:
            summary = run_suite("smoke", options(tmp_path, cache=cache, only=VISION_PRT_SLICE, executor="ray",
                                                 retries=1))
    finally:
        ray.shutdown()
    assert summary.failed == {} and len(summary.ran) == 2
    assert_retried_after_kill(watcher, tmp_path)
    on_ray = cells_of(tmp_path)
    assert {k: outcome(v) for k, v in on_ray.items()} == {k: outcome(cells_of(root)[k]) for k in on_ray}


def test_slurm_jobs_through_submitit_are_retried_after_a_kill_and_give_the_local_results(reference, cache, tmp_path):
    """--executor slurm with submitit's local executor (the same submission path, jobs run here):
    one job per cell, a job killed in the middle submitted again, the records those of the runner."""
    root, _ = reference
    with KillFirstCellOnce(tmp_path / "runs" / "smoke" / "logs") as watcher:
        summary = run_suite("smoke", options(tmp_path, cache=cache, only=LM_PRT_SLICE, executor="slurm", retries=1,
                                             slurm={"cluster": "local", "timeout_min": 10}))
    assert summary.failed == {} and len(summary.ran) == 2
    assert_retried_after_kill(watcher, tmp_path)
    assert list((tmp_path / "runs" / "smoke" / "slurm").glob("*_log.out")), "submitit's own job logs"
    on_slurm = cells_of(tmp_path)
    assert {k: outcome(v) for k, v in on_slurm.items()} == {k: outcome(cells_of(root)[k]) for k in on_slurm}


def test_training_cells_in_two_processes_give_the_evaluations_of_one(reference, cache, tmp_path):
    """--train-processes 2: the language reward trained by torchrun in two processes (DDP, gloo);
    its evaluation scores what the one-process reward scores (the weights agree to ~1e-6)."""
    root, _ = reference
    summary = run_suite("smoke", options(tmp_path, cache=cache, only=LM_PRT_SLICE, train_processes=2))
    assert summary.failed == {} and len(summary.ran) == 2
    records = cells_of(tmp_path)
    (train,) = [r for r in records.values() if r["kind"] == "train"]
    manifest = read_json(tmp_path / "runs" / "smoke" / train["cell_id"] / "prt_manifest.json")
    assert (manifest["parallel"]["strategy"], manifest["parallel"]["processes"]) == ("ddp", 2)
    (evaluation,) = [r for r in records.values() if r["kind"] == "eval"]
    assert evaluation["results"] == cells_of(root)[evaluation["cell_id"]]["results"]


def test_slurm_executor_refuses_what_it_cannot_run(tmp_path):
    from prt_bench.suite.executors import make_executor

    with pytest.raises(ValueError, match="no sbatch"):
        make_executor("slurm", slurm={"slurm_partition": "gpu"}, slurm_folder=tmp_path)
    with pytest.raises(NameError, match="not_a_parameter"):
        make_executor("slurm", slurm={"cluster": "local", "not_a_parameter": 1}, slurm_folder=tmp_path)
    with pytest.raises(ValueError, match="retries"):
        make_executor("ray", retries=-1)


def test_one_subprocess_per_gpu_gives_the_results_of_the_runner_process(reference, cache, tmp_path):
    root, _ = reference
    summary = run_suite("smoke", RunOptions(results=tmp_path / "results", runs=tmp_path / "runs", cache=cache,
                                            gpus=["0", "1"], report=False, progress=False,
                                            only="eval vision * zeroshot *"))
    assert summary.failed == {} and len(summary.ran) == 2
    logs = sorted(p.name for p in (tmp_path / "runs" / "smoke" / "logs").glob("*.log"))
    assert logs == sorted(f"{cell_id}.log" for cell_id in summary.ran)
    in_subprocesses = cells_of(tmp_path)
    assert {k: outcome(v) for k, v in in_subprocesses.items()} == {k: outcome(cells_of(root)[k]) for k in in_subprocesses}


def test_cpu_worker_processes_give_the_results_of_the_runner_process(reference, cache, tmp_path, monkeypatch):
    root, _ = reference
    monkeypatch.setenv("PRT_BENCH_THREADS", "1")  # the reference run's thread count (conftest)
    summary = run_suite("smoke", options(tmp_path, cache=cache, only=VISION_PRT_SLICE, workers=2))
    assert summary.failed == {} and len(summary.ran) == 2
    logs = sorted(p.name for p in (tmp_path / "runs" / "smoke" / "logs").glob("*.log"))
    assert logs == sorted(f"{cell_id}.log" for cell_id in summary.ran)
    in_workers = cells_of(tmp_path)
    assert {k: outcome(v) for k, v in in_workers.items()} == {k: outcome(cells_of(root)[k]) for k in in_workers}


def test_records_of_cells_no_longer_in_the_suite_are_set_aside(reference, tmp_path):
    root, _ = reference
    shutil.copytree(root / "results", tmp_path / "results")
    cells_dir = tmp_path / "results" / "smoke" / "cells"
    old = read_json(next(cells_dir.glob("*.json")))
    stale = {**old, "cell_id": "0123456789abcdef", "config_hash": "0123456789abcdef"}
    (cells_dir / "0123456789abcdef.json").write_text(__import__("json").dumps(stale))
    summary = run_suite("smoke", options(tmp_path, cache=tmp_path / "unused"))
    assert summary.ran == []
    assert (tmp_path / "results" / "smoke" / "superseded" / "0123456789abcdef.json").is_file()
    assert "0123456789abcdef" not in (tmp_path / "results" / "smoke" / "table.csv").read_text()


def test_a_complete_checkpoint_trained_outside_the_runner_is_adopted_not_retrained(reference, tmp_path):
    root, _ = reference
    records = copy_of_reference(root, tmp_path)
    target = next(r for r in records.values() if r["kind"] == "eval" and r["method"] == "ft_target"
                  and r["modality"] == "vision")
    ft = target["config"]["trained"]["ft"]
    for cell_id in (ft, target["cell_id"]):  # as if the FT model came from, e.g., an accelerate job
        (tmp_path / "results" / "smoke" / "cells" / f"{cell_id}.json").unlink()
    checkpoint = tmp_path / "runs" / "smoke" / ft
    before = {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()}
    summary = run_suite("smoke", options(tmp_path, cache=root.parent / "unused"))
    assert sorted(summary.ran) == sorted([ft, target["cell_id"]])
    assert {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()} == before
    assert outcome(cells_of(tmp_path)[target["cell_id"]]) == outcome(target)


def test_the_run_writes_a_cost_profile_of_each_modality_on_the_suites_bases(reference):
    root, summary = reference
    profiles = profiles_of(root)
    assert set(profiles) == {"lm", "vision"}
    assert sorted(summary.profiles) == sorted(root / "results" / "smoke" / "profile" / f"{m}.json" for m in profiles)
    for modality, prof in profiles.items():
        assert prof["schema"] == PROFILE_SCHEMA and prof["modality"] == modality and prof["device"] == "cpu"
        assert {r["method"] for r in prof["rows"] if r["phase"] == "train"} - {"forward", "prt_cached"} == {"ft", "prt"}
        assert prof["limits"] and prof["limits"].keys() <= prof["ratios"].keys()
        # every row measured (a per-token decode time is a difference of two medians: only its sign is noisy)
        assert all(math.isfinite(r["time_s"]) and math.isfinite(r["peak_mem_mb"]) for r in prof["rows"])
        assert all(r["time_s"] > 0 for r in prof["rows"] if r["phase"] != "decode")
        assert prof["run"]["config"]["settings"] == modalities.get(modality).profile_settings
    # the first transfer of each section: its source trains, its target decodes / classifies
    assert profiles["vision"]["run"]["bases"] == {"source": "tiny-vit-s", "target": "tiny-vit-m"}
    assert profiles["vision"]["config"]["model"] == "tiny-vit-s (source)"
    vision_infer = {r["method"]: r for r in profiles["vision"]["rows"] if r["phase"] == "inference"}
    assert set(vision_infer) == {"ft", "reward", "prt", "eft"}
    assert vision_infer["ft"]["model"] == "tiny-vit-m (target)"  # FT of the target: what a user of it would run
    assert profiles["lm"]["run"]["bases"] == {"source": "tiny-llama-s", "target": "tiny-llama-m"}
    assert profiles["lm"]["models"]["base"] == "tiny-llama-m (target)"
    assert profiles["lm"]["models"]["trainee"] == "tiny-llama-s (source)"
    assert "one subprocess per measurement" in profiles["lm"]["memory_measure"]
    assert {r["method"] for r in profiles["lm"]["rows"] if r["phase"] == "decode"} == {"base", "reward", "prt", "eft"}
    assert set(load_results(root / "results" / "smoke").profiles) == {"lm", "vision"}  # what the report reads


def test_a_profile_of_other_settings_is_measured_again_alone(reference, cache, tmp_path, monkeypatch):
    root, _ = reference
    shutil.copytree(root / "results", tmp_path / "results")
    vision_before = (tmp_path / "results" / "smoke" / "profile" / "vision.json").stat().st_mtime_ns
    lm = modalities.get("lm")
    monkeypatch.setattr(lm, "profile_settings", {**lm.profile_settings, "repeats": 2})
    summary = run_suite("smoke", options(tmp_path, cache=cache, profile=True))
    assert summary.ran == [] and summary.profiles == [tmp_path / "results" / "smoke" / "profile" / "lm.json"]
    assert profiles_of(tmp_path)["lm"]["settings"]["repeats"] == 2
    assert (tmp_path / "results" / "smoke" / "profile" / "vision.json").stat().st_mtime_ns == vision_before
