"""Suite files: bad ones fail before any training with a message naming the problem; the
paper suites expand offline; cell ids follow the config."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from prt_bench.io import REPO_ROOT
from prt_bench.suite.plan import expand
from prt_bench.suite.runner import RunOptions, run_suite
from prt_bench.suite.schema import SuiteError, load_suite

SMOKE = yaml.safe_load((REPO_ROOT / "suites" / "smoke.yaml").read_text())


def write_suite(tmp_path: Path, doc: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def smoke(**changes) -> dict:
    doc = copy.deepcopy(SMOKE)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return doc


def run_expecting_error(tmp_path: Path, doc: dict) -> str:
    options = RunOptions(results=tmp_path / "results", runs=tmp_path / "runs", cache=tmp_path / "cache",
                         gpus=[], report=False, progress=False)
    with pytest.raises(SuiteError) as err:
        run_suite(write_suite(tmp_path, doc), options)
    assert not (tmp_path / "runs" / "smoke").exists() or not any((tmp_path / "runs" / "smoke").iterdir()) \
        or set(p.name for p in (tmp_path / "runs" / "smoke").iterdir()) <= {"logs"}
    assert not list((tmp_path / "results").rglob("*.json")), "no cell may run before the suite is checked"
    return str(err.value)


def test_unknown_top_level_key_is_named(tmp_path):
    msg = run_expecting_error(tmp_path, smoke(sedes=[0]))
    assert "unknown key 'sedes'" in msg and "bad.yaml" in msg


def test_unknown_key_in_a_transfer_is_named(tmp_path):
    doc = smoke()
    doc["lm"]["transfers"][0]["sorce"] = "x"
    msg = run_expecting_error(tmp_path, doc)
    assert "lm.transfers[0]" in msg and "unknown key 'sorce'" in msg


def test_unknown_training_option_is_named(tmp_path):
    msg = run_expecting_error(tmp_path, smoke(**{"vision.train.learning_rate": 0.1}))
    assert "vision.train" in msg and "'learning_rate'" in msg


def test_unknown_model_in_a_transfer_is_named(tmp_path):
    msg = run_expecting_error(tmp_path, smoke(**{"lm.transfers.0.target": "tiny-llama-xl"}))
    assert "unknown model 'tiny-llama-xl'" in msg and "lm.transfers[0].target" in msg


def test_unknown_open_clip_tag_is_named(tmp_path):
    doc = smoke()
    doc["vision"]["families"]["tiny-clip"]["tiny-vit-m"] = {"open_clip": "ViT-B-16:laion2b_s32b_b82k"}
    msg = run_expecting_error(tmp_path, doc)
    assert "ViT-B-16:laion2b_s32b_b82k" in msg and "tiny-vit-m" in msg


def test_unknown_method_is_named(tmp_path):
    msg = run_expecting_error(tmp_path, smoke(**{"lm.methods": ["zeroshot", "proxy"]}))
    assert "unknown method 'proxy'" in msg


def test_source_and_target_with_different_tokenizers_fail_before_training(tmp_path):
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    other = byte_level_tokenizer()
    other.add_tokens(["<|tool|>"], special_tokens=True)
    build_tiny_lm(tmp_path / "a", "llama", byte_level_tokenizer(), seed=0)
    build_tiny_lm(tmp_path / "b", "llama", other, seed=0)
    doc = smoke()
    doc["lm"]["families"]["tiny-llama"] = {"tiny-llama-s": {"path": str(tmp_path / "a")},
                                           "tiny-llama-m": {"path": str(tmp_path / "b")}}
    del doc["vision"]
    msg = run_expecting_error(tmp_path, doc)
    assert "tiny-llama-s" in msg and "tiny-llama-m" in msg and "different tokenizers" in msg


def test_source_and_target_with_different_label_sets_fail_before_training(tmp_path):
    doc = smoke(**{"vision.tasks.fashion_mnist.train_dataset": "cifar100"})
    del doc["lm"]
    msg = run_expecting_error(tmp_path, doc)
    assert "label sets differ" in msg and "cifar100" in msg and "fashion_mnist" in msg


def test_missing_language_training_data_is_named(tmp_path):
    doc = smoke(**{"lm.train.data": {"path": "suites/data/no_such_file.jsonl"}})
    del doc["vision"]
    msg = run_expecting_error(tmp_path, doc)
    assert "missing data" in msg and "no_such_file.jsonl" in msg


def test_missing_vision_data_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PRT_BENCH_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    doc = smoke()
    del doc["lm"]
    msg = run_expecting_error(tmp_path, doc)
    assert "missing data" in msg and "fashion_mnist" in msg


@pytest.mark.parametrize("name", ["paper-lm", "paper-vision", "mini", "smoke", "mini-lm-alpha", "mini-lm-ifeval",
                                  "mini-merge"])
def test_shipped_suites_expand_without_touching_a_model(name, tmp_path):
    summary = run_suite(name, RunOptions(results=tmp_path, dry_run=True, progress=False))
    assert summary.total == len(expand(load_suite(name))) > 0
    assert not list(tmp_path.rglob("*.json"))


def test_paper_suites_carry_the_papers_hyperparameters():
    vision = load_suite("paper-vision").sections["vision"]
    assert vision.train == {**vision.train, "lr": 1e-5, "batch_size": 128, "steps": 2000, "warmup": 500}
    assert vision.sweep_alphas == [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1]
    lm = load_suite("paper-lm").sections["lm"]
    assert lm.train["lr"] == 2e-5 and lm.train["epochs"] == 2
    assert lm.train["batch_size"] * lm.train["grad_accum"] == 128
    assert {"Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B", "Qwen/Qwen2-0.5B", "tiiuae/Falcon3-1B-Base",
            "meta-llama/Llama-2-7b-hf"} <= {lm.bases[s]["hf"] for s in lm.sources}


def test_a_changed_training_option_changes_only_the_cells_that_depend_on_it(tmp_path):
    before = {c.cell_id: c for c in expand(load_suite("smoke"))}
    after = {c.cell_id: c for c in expand(load_suite(write_suite(tmp_path, smoke(**{"vision.train.lr": 3e-4}))))}
    changed = [c for c in before.values() if c.cell_id not in after]
    assert changed, "a new learning rate must give new cell ids"
    # every vision cell that uses a trained model, and nothing else
    assert {c.cell_id for c in changed} == {c.cell_id for c in before.values()
                                            if c.modality == "vision" and (c.kind == "train" or c.needs)}


def test_chat_training_data_becomes_prompt_response_rows_in_the_tulu_format(tmp_path):
    import json

    from prt_bench.suite.modalities.lm import chat_dataset_jsonl

    src = tmp_path / "chat"
    src.mkdir()
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    (src / "train.jsonl").write_text(json.dumps({"messages": conversation}) + "\n")
    out = chat_dataset_jsonl(str(src), tmp_path / "cache")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"prompt": "<|user|>\nHi\n<|assistant|>\nHello\n<|user|>\n2+2?\n<|assistant|>\n", "response": "4"}]


def test_the_command_reports_a_bad_suite_and_exits_with_status_2(tmp_path):
    from typer.testing import CliRunner

    from prt_bench.cli import app

    path = write_suite(tmp_path, smoke(**{"lm.transfers.0.source": "nobody"}))
    result = CliRunner().invoke(app, ["run", "--suite", str(path), "--results", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "unknown model 'nobody'" in " ".join(result.output.split())


def test_dry_run_prints_every_cell_with_its_status(tmp_path):
    from typer.testing import CliRunner

    from prt_bench.cli import app

    result = CliRunner().invoke(app, ["run", "--suite", "paper-vision", "--dry-run", "--results", str(tmp_path)])
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if re.match(r"[0-9a-f]{16}  to run ", line)]
    assert len(lines) == len(expand(load_suite("paper-vision")))
    assert any("eval vision cub prt RN50-openai -> ViT-L-14-openai alpha=0 seed=0" in line for line in lines)


def test_an_unquoted_derived_metric_is_named(tmp_path):
    """`[a,none, b,none]` is four YAML items, not two metrics: refused before any cell runs."""
    doc = yaml.safe_load(write_suite(tmp_path, smoke()).read_text().replace(
        "      batch_size: 2\n", "      batch_size: 2\n      derived:\n        mean,none: [exact_match,strict-match, "
        "exact_match,flexible-extract]\n", 1))
    with pytest.raises(SuiteError, match="quote each"):
        load_suite(write_suite(tmp_path, doc))
    doc["lm"]["tasks"]["gsm8k"]["derived"] = {"mean,none": ["exact_match,strict-match", "exact_match,flexible-extract"]}
    assert load_suite(write_suite(tmp_path, doc)).sections["lm"].tasks["gsm8k"]["derived"]


@pytest.mark.parametrize("lam_sweep, message", [
    ({"lams": [0.5, 0.0], "transfers": [{"source": "tiny-vit-s", "target": "tiny-vit-m"}]},
     "lam_sweep.lams: λ must be a finite number > 0, got 0.0"),
    ({"lams": [float("nan")], "transfers": [{"source": "tiny-vit-s", "target": "tiny-vit-m"}]}, "finite number > 0"),
    ({"lams": ["x"], "transfers": [{"source": "tiny-vit-s", "target": "tiny-vit-m"}]}, "got 'x'"),
    ({"lams": [0.5]}, "lams given but no transfers"),
    ({"lams": [0.5], "transfers": [{"source": "tiny-vit-m", "target": "tiny-vit-s"}]}, "is not one of the transfers"),
    ({"lams": [0.5], "steps": 2, "transfers": []}, "unknown key"),
])
def test_a_bad_lam_sweep_is_named(tmp_path, lam_sweep, message):
    doc = smoke(**{"vision.lam_sweep": lam_sweep})
    with pytest.raises(SuiteError, match=re.escape(message) if "(" not in message else message):
        load_suite(write_suite(tmp_path, doc))


def test_the_lam_sweep_evaluates_the_main_reward_at_other_lams():
    cells = expand(load_suite("smoke"))
    main = [c for c in cells if c.kind == "eval" and c.modality == "vision" and c.method == "prt" and c.alpha == 0.0
            and c.lam is None and c.source != c.target]  # the swept transfer, not PRT on its own base
    swept = [c for c in cells if c.lam is not None and c.modality == "vision"]
    assert len(main) == 1 and sorted(c.lam for c in swept) == [0.5, 2.0]
    for c in swept:
        assert c.config["lam"] == c.lam and c.needs == main[0].needs and "lam=" in c.label
        assert {k: v for k, v in c.config.items() if k != "lam"} == {k: v for k, v in main[0].config.items()
                                                                        if k != "lam"}
    assert main[0].config["lam"] == 1.0  # the trained λ (train.lam unset)


@pytest.mark.parametrize("where, lam_sweep, message", [
    ("vision", {"lams": [0.5], "transfers": [{"source": "tiny-vit-s", "target": "tiny-vit-m"}], "methods": ["eft"]},
     "the vision modality has no EFT strength"),
    ("lm", {"lams": [0.5], "transfers": [{"source": "tiny-llama-s", "target": "tiny-llama-m"}], "methods": ["ft"]},
     "lam_sweep.methods: expected a non-empty list of prt, eft, got ['ft']"),
    ("lm", {"lams": [0.5], "transfers": [{"source": "tiny-llama-s", "target": "tiny-llama-m"}], "methods": []},
     "expected a non-empty list"),
])
def test_a_bad_lam_sweep_method_is_named(tmp_path, where, lam_sweep, message):
    doc = smoke(**{f"{where}.lam_sweep": lam_sweep})
    with pytest.raises(SuiteError, match=re.escape(message)):
        load_suite(write_suite(tmp_path, doc))


def test_an_eft_lam_sweep_needs_eft_among_the_methods(tmp_path):
    doc = smoke(**{"lm.methods": ["zeroshot", "ft_source", "ft_target", "prt"]})
    with pytest.raises(SuiteError, match="evaluates eft, which the section's methods leave out"):
        load_suite(write_suite(tmp_path, doc))


def test_the_lam_sweep_scales_efts_implicit_reward_as_prts_reward(tmp_path):
    cells = expand(load_suite("smoke"))
    lm = [c for c in cells if c.kind == "eval" and c.modality == "lm"]
    main = next(c for c in lm if c.method == "eft" and c.lam is None)
    swept = [c for c in lm if c.method == "eft" and c.lam is not None]
    assert [c.lam for c in swept] == [0.5] and "strength" not in main.config
    # the trained λ is 1 (train.lam unset): at λ = 0.5 the implicit reward log π_ft − log π_pt enters twice
    assert swept[0].config["strength"] == 2.0 and swept[0].needs == main.needs and "lam=0.5" in swept[0].label
    assert {k: v for k, v in swept[0].config.items() if k not in ("lam", "strength")} == {
        k: v for k, v in main.config.items() if k != "lam"}
    doc = smoke(**{"lm.lam_sweep.lams": [1.0, 0.5]})  # the trained λ again is the main EFT cell, not a second one
    again = [c for c in expand(load_suite(write_suite(tmp_path, doc))) if c.modality == "lm" and c.method == "eft"]
    assert sorted(c.cell_id for c in again) == sorted([main.cell_id, swept[0].cell_id])


@pytest.mark.parametrize("probe_of", ["gsm8k_typo", "mini_gsm_probe"])
def test_a_probe_of_no_task_of_the_section_is_named(tmp_path, probe_of):
    msg = run_expecting_error(tmp_path, smoke(**{"lm.tasks.mini_gsm_probe.probe_of": probe_of}))
    assert "lm.tasks.mini_gsm_probe.probe_of" in msg and repr(probe_of) in msg and "gsm8k" in msg


def test_a_knowledge_probe_has_every_base_alone_whatever_the_methods(tmp_path):
    """``probe_of``: the probe task's cells are the zero-shot cells of every base, even where the
    section's methods have none, and nothing else; the probed task's cells are unchanged."""
    doc = smoke(**{"lm.methods": ["ft_source", "prt", "eft"]})
    cells = expand(load_suite(write_suite(tmp_path, doc, "probe.yaml")))
    probe = sorted((c.kind, c.method, c.target) for c in cells if c.task == "mini_gsm_probe")
    assert probe == [("eval", "zeroshot", "tiny-llama-m"), ("eval", "zeroshot", "tiny-llama-s")]
    assert not any(c.method == "zeroshot" for c in cells if c.task == "gsm8k")
    without = copy.deepcopy(doc)
    del without["lm"]["tasks"]["mini_gsm_probe"]
    kept = {c.cell_id for c in expand(load_suite(write_suite(tmp_path, without, "plain.yaml")))}
    assert kept == {c.cell_id for c in cells if c.task != "mini_gsm_probe"}
