"""Bad input ends in a clear error naming the problem, before anything is written: suite names
that would reach outside the results folders, NaN/inf settings, training that diverges,
weights that are NaN, and a primary metric the evaluator does not produce."""

from __future__ import annotations

import json
import math

import pytest
import torch

from prt_bench import prt
from prt_bench.suite.execute import _checked_primary
from prt_bench.suite.schema import SuiteError, parse_suite
from test_suite_validation import SMOKE, smoke

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "", "a/b", ".hidden", "~home", "a b"])
def test_a_suite_name_that_is_not_a_plain_name_is_refused(tmp_path, name):
    with pytest.raises(SuiteError, match="suite name"):
        parse_suite(smoke(name=name), tmp_path / "bad.yaml")


def test_a_plain_suite_name_is_accepted(tmp_path):
    assert parse_suite(smoke(name="my-suite_2.1"), tmp_path / "ok.yaml").name == "my-suite_2.1"


@pytest.mark.parametrize("where", ["lm.alpha", "vision.alpha"])
@pytest.mark.parametrize("value", [NAN, INF, -1.0])
def test_non_finite_or_negative_alpha_in_a_suite_is_refused(tmp_path, where, value):
    with pytest.raises(SuiteError, match="alpha must be a finite number >= 0"):
        parse_suite(smoke(**{where: value}), tmp_path / "bad.yaml")


def test_non_finite_alpha_in_a_sweep_and_lam_in_train_are_refused(tmp_path):
    doc = smoke()
    doc["vision"]["alpha_sweep"] = {"alphas": [0.0, NAN], "transfers": SMOKE["vision"]["transfers"][:1]}
    with pytest.raises(SuiteError, match="alpha_sweep.alphas: alpha must be a finite number"):
        parse_suite(doc, tmp_path / "bad.yaml")
    for lam in (NAN, INF, 0, "1"):
        with pytest.raises(SuiteError, match="train.lam: must be a finite number > 0"):
            parse_suite(smoke(**{"lm.train.lam": lam}), tmp_path / "bad.yaml")


@pytest.mark.parametrize("lam", [NAN, INF, 0.0, -1.0])
def test_the_math_refuses_a_lam_that_is_not_finite_and_positive(lam):
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        prt.prt_logprobs(x, x, lam=lam)


@pytest.mark.parametrize("alpha", [NAN, INF, -1e-3])
def test_the_loss_refuses_an_alpha_that_is_not_finite_and_non_negative(alpha):
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        prt.prt_loss(x, x, torch.tensor([0, 1]), alpha=alpha)


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q: {a}+1=", "response": f" {a + 1}"}) + "\n" for a in range(8)))
    return path


@pytest.mark.parametrize("setting", [{"alpha": NAN}, {"alpha": INF}, {"alpha": -1.0}, {"lam": NAN}, {"lam": 0.0}])
def test_train_lm_refuses_bad_alpha_and_lam_before_loading_anything(pairs, tmp_path, setting):
    from prt_bench.lm.train import train_lm

    with pytest.raises(ValueError, match="must be a finite number"):
        train_lm("prt", str(tmp_path / "no-such-base"), pairs, tmp_path / "out", **setting)
    assert not (tmp_path / "out").exists()


def test_lm_training_that_diverges_fails_and_writes_no_checkpoint(tiny_llama, pairs, tmp_path):
    from prt_bench.lm.train import train_lm

    with pytest.raises(FloatingPointError, match="training loss is (nan|inf) at step"):
        train_lm("ft", tiny_llama, pairs, tmp_path / "out", lr=1e30, max_steps=5, batch_size=4, warmup=0.0,
                 max_grad_norm=1e30, weight_decay=0.0, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("lam", ["nan", "inf", "0"])
def test_the_prt_lm_eval_model_refuses_bad_lam_before_loading_models(tmp_path, lam):
    from prt_bench.lm.lm_eval_models import PRTLM

    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        PRTLM(base=str(tmp_path / "missing-base"), reward=str(tmp_path / "missing-reward"), lam=lam)
    with pytest.raises(ValueError, match="reward_weights must be finite"):
        PRTLM(base=str(tmp_path / "b"), reward="r1;r2", reward_weights="1;nan")


@pytest.fixture(scope="module")
def vision_data():
    from prt_bench.vision.datasets import get_dataset

    return get_dataset("fashion_mnist", "train[:64]")


def test_vision_training_that_diverges_fails_and_writes_no_checkpoint(vision_data, tmp_path):
    from prt_bench.vision import bases
    from prt_bench.vision.train import train_vision

    vit = bases.new_base("prt-tiny-vit", seed=0)
    base = bases.save_base(vit.model, tmp_path / "vit", vit.model_cfg, vit.preprocess_cfg)
    with pytest.raises(FloatingPointError, match="training loss is (nan|inf) at step"):
        train_vision("prt", base, vision_data, tmp_path / "out", steps=6, batch_size=32, lr=1e30, warmup=0,
                     grad_clip=1e30, weight_decay=0.0, progress=False)
    assert not (tmp_path / "out").exists()


def test_vision_evaluation_of_nan_weights_is_an_error_not_a_score(vision_data, tmp_path):
    from prt_bench.vision import bases
    from prt_bench.vision.eval import eval_vision

    vit = bases.new_base("prt-tiny-vit", seed=0)
    with torch.no_grad():
        vit.model.visual.proj.fill_(NAN)
    base = bases.save_base(vit.model, tmp_path / "nan-vit", vit.model_cfg, vit.preprocess_cfg)
    with pytest.raises(FloatingPointError, match="NaN for 64 of 64 images"):
        eval_vision("zeroshot", base, vision_data, progress=False)
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        eval_vision("prt", base, vision_data, reward=base, lam=NAN, progress=False)


def test_a_primary_metric_the_evaluator_does_not_produce_is_an_error():
    metrics = {"acc1,none": 0.5, "acc5,none": 0.9, "acc1_stderr,none": 0.01, "n_samples": 10}
    assert _checked_primary(metrics, "acc1,none") == "acc1,none"
    with pytest.raises(KeyError, match=r"'acc,none' is not among the evaluator's metrics \(acc1,none, acc5,none"):
        _checked_primary(metrics, "acc,none")
    with pytest.raises(FloatingPointError, match="acc1,none is nan"):
        _checked_primary({"acc1,none": math.nan}, "acc1,none")


def test_a_key_given_twice_in_a_suite_file_is_refused_with_both_lines(tmp_path):
    from prt_bench.suite.schema import load_suite

    path = tmp_path / "twice.yaml"
    path.write_text("name: twice\nvision:\n  train:\n    lr: 1.0e-3\n    lr: 3.0e-3\n")
    with pytest.raises(SuiteError, match=r"twice.yaml: not valid YAML: .*key 'lr' appears twice .*lines 4 and 5"):
        load_suite(path)


def test_train_lm_refuses_an_out_folder_that_is_not_empty_or_a_file(pairs, tmp_path):
    from prt_bench.lm.train import train_lm

    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "adapter_config.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"stale is not empty \(adapter_config.json\)"):
        train_lm("ft", str(tmp_path / "no-such-base"), pairs, stale)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(FileExistsError, match="a-file is a file"):
        train_lm("ft", str(tmp_path / "no-such-base"), pairs, tmp_path / "a-file")


def test_train_lm_writes_its_folder_whole_and_leaves_no_temporary(tiny_llama, pairs, tmp_path):
    from prt_bench.lm.train import train_lm

    (tmp_path / "empty").mkdir()
    out = train_lm("ft", tiny_llama, pairs, tmp_path / "empty", max_steps=1, batch_size=4, progress=False)
    assert out == tmp_path / "empty" and (out / "prt_manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "pairs.jsonl"]


def test_a_truncated_data_file_is_named_with_its_cause(tmp_path, monkeypatch):
    import shutil

    from prt_bench.data import require_data_file
    from prt_bench.suite.modalities.vision import require_dataset
    from prt_bench.vision.datasets import get_dataset

    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(require_data_file(f"fashion_mnist/{name}"), folder / name)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:1000])
    with pytest.raises(OSError, match=r"t10k-labels-idx1-ubyte.gz: truncated or corrupt gzip file \(EOFError"):
        get_dataset("fashion_mnist", "test", data_dir=tmp_path)
    monkeypatch.setenv("PRT_BENCH_DATA", str(tmp_path))  # what the suite's checks read
    with pytest.raises(ValueError, match=r"missing data for 'fashion_mnist' \(test\): .*truncated or corrupt"):
        require_dataset("fashion_mnist", "test", "suite.yaml: vision", "fmnist")


@pytest.mark.parametrize("key,value,message", [
    ("vision.train.lr", "fast", "train.lr: must be a finite number > 0, got 'fast'"),
    ("vision.train.batch_size", 0, "train.batch_size: must be an integer >= 1, got 0"),
    ("vision.train.steps", 2.5, "train.steps: must be an integer >= 1, got 2.5"),
    ("lm.tasks.gsm8k.limit", -1, "tasks.gsm8k.limit: must be an integer >= 1, got -1"),
    ("lm.train.max_steps", 0, "train.max_steps: must be an integer >= 1, got 0"),
])
def test_option_types_and_ranges_are_checked_when_the_file_is_read(tmp_path, key, value, message):
    with pytest.raises(SuiteError, match=re_escape(message)):
        parse_suite(smoke(**{key: value}), tmp_path / "bad.yaml")


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_an_unknown_tiny_family_and_empty_transfers_are_refused(tmp_path):
    doc = smoke()
    doc["lm"]["families"]["tiny-llama"]["tiny-llama-s"]["tiny"]["family"] = "lama"
    with pytest.raises(SuiteError, match="unknown tiny family 'lama'"):
        parse_suite(doc, tmp_path / "bad.yaml")
    with pytest.raises(SuiteError, match="lm.transfers: needs at least one transfer"):
        parse_suite(smoke(**{"lm.transfers": []}), tmp_path / "bad.yaml")


def test_only_matching_nothing_executor_and_workers_are_errors_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from prt_bench.cli import app

    common = ["run", "--suite", "smoke", "--results", str(tmp_path / "r"), "--runs", str(tmp_path / "runs"),
              "--cache", str(tmp_path / "cache"), "--gpus", "none", "--no-report", "--no-profile", "--no-progress"]
    nothing = CliRunner().invoke(app, common + ["--only", "no-such-cell*"])
    assert nothing.exit_code == 2 and "matches no cell of suite smoke" in nothing.output
    for flags, message in ((["--executor", "lokal"], "unknown executor 'lokal'"), (["--workers", "0"], "at least 1")):
        run = CliRunner().invoke(app, common + flags)
        assert run.exit_code == 2 and message in run.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()


def test_read_pairs_names_the_file_and_line_of_a_bad_row(tmp_path):
    from prt_bench.lm.train import read_pairs

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON line"):
        read_pairs(bad)
    bad.write_text('["prompt", "response"]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: each line needs string fields"):
        read_pairs(bad)


def test_train_lm_refuses_zero_steps_and_a_zero_batch(pairs, tmp_path):
    from prt_bench.lm.train import train_lm

    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        train_lm("ft", str(tmp_path / "no-base"), pairs, tmp_path / "o", max_steps=0)
    with pytest.raises(ValueError, match="batch_size and grad_accum must be >= 1"):
        train_lm("ft", str(tmp_path / "no-base"), pairs, tmp_path / "o", batch_size=0)


def test_a_missing_local_model_folder_is_named_and_pickled_weights_are_refused(tiny_llama, tmp_path):
    import shutil

    from prt_bench.lm.load import load_causal_lm

    with pytest.raises(FileNotFoundError, match="no model folder at"):
        load_causal_lm(str(tmp_path / "runs" / "missing"))
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_llama, pickled)
    model = load_causal_lm(str(pickled))
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(OSError):  # transformers: no safetensors file, and .bin is not allowed
        load_causal_lm(str(pickled))


def test_the_combination_of_nan_weights_is_an_error_not_an_answer(tiny_llama, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from prt_bench.lm.lm_eval_models import PRTLM, generate

    broken = tmp_path / "nan-reward"
    shutil.copytree(tiny_llama, broken)
    weights = load_file(broken / "model.safetensors")
    weights = {k: torch.full_like(v, NAN) if k == "model.norm.weight" else v for k, v in weights.items()}
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    lm = PRTLM(base=str(tiny_llama), reward=str(broken))
    with pytest.raises(FloatingPointError, match="gives NaN logits"):
        generate(lm.models, lm.combine, [[5, 6, 7]], max_new_tokens=2, pad_id=lm.pad_id, eos_id=None)
    with pytest.raises(FloatingPointError, match="gives NaN logits"):
        lm._loglikelihood_tokens([(None, [5, 6], [7])], disable_tqdm=True)


def test_a_marker_without_weights_is_no_checkpoint_and_changed_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    from prt_bench.suite.execute import COMPLETE, checkpoint_done, mark_complete, verify_checkpoint

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / COMPLETE).write_text("")
    assert not checkpoint_done(ckpt)
    save_file({"w": torch.ones(3)}, ckpt / "model.safetensors")
    assert checkpoint_done(ckpt)
    verify_checkpoint(ckpt)  # `touch .complete` (adopted from outside): nothing to compare
    mark_complete(ckpt, "0" * 16)
    verify_checkpoint(ckpt)
    save_file({"w": torch.full((3,), NAN)}, ckpt / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors: weights changed since training"):
        verify_checkpoint(ckpt)
    (ckpt / "model.safetensors").unlink()
    assert not checkpoint_done(ckpt)


def test_corrupt_cell_records_are_named_and_count_as_not_done(tmp_path):
    from prt_bench.suite.store import CorruptRecord, read_cell, write_table

    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / ("a" * 16 + ".json")).write_text("[1, 2]")
    (cells / ("b" * 16 + ".json")).write_text('{"cell_id": "bbbb')
    with pytest.warns(CorruptRecord, match="aaaaaaaaaaaaaaaa.json: a cell record must be a JSON object"):
        assert read_cell(tmp_path, "a" * 16) is None
    with pytest.warns(CorruptRecord, match="bbbbbbbbbbbbbbbb.json: unreadable cell record"):
        assert read_cell(tmp_path, "b" * 16) is None
    with pytest.warns(CorruptRecord):
        assert write_table(tmp_path).read_text().count("\n") == 1  # the header only


def test_an_empty_evaluation_split_is_refused_by_the_checks():
    from prt_bench.suite.modalities.vision import require_dataset

    with pytest.raises(ValueError, match=r"the split 'test\[5:5\]' of 'fashion_mnist' holds no images"):
        require_dataset("fashion_mnist", "test[5:5]", "suite.yaml: vision", "fmnist")


def test_dry_run_shows_training_sizes_and_warns_of_absurd_ones(tmp_path, capsys):
    import yaml

    from prt_bench.suite.runner import RunOptions, run_suite

    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(smoke(**{"vision.train.steps": 10**9})))
    run_suite(path, RunOptions(results=tmp_path / "r", runs=tmp_path / "runs", gpus=[], dry_run=True))
    out = capsys.readouterr().out
    assert "examples]" in out and "trains on more than 100,000,000 examples" in out


def test_the_environment_record_names_the_thread_count():
    from prt_bench.io import environment

    assert environment()["threads"] == torch.get_num_threads()
