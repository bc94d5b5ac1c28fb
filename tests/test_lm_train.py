"""The language recipes (FT and PRT): what they train, what they write, and that they are reproducible."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prt_bench.io import read_manifest
from prt_bench.lm.load import load_causal_lm, load_tokenizer
from prt_bench.lm.train import IGNORE, encode_pair, mean_loss, train_lm

STEPS = dict(lr=3e-3, max_steps=10, batch_size=8, warmup=0.0, progress=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm-data") / "pairs.jsonl"
    rows = [{"prompt": f"Q: {a}+{b}=", "response": f" {a + b}"} for a in range(4) for b in range(4)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_ft_training_lowers_the_loss(tiny_llama, pairs, tmp_path):
    out = train_lm("ft", tiny_llama, pairs, tmp_path / "ft", **STEPS)
    tok = load_tokenizer(out)
    before = mean_loss("ft", load_causal_lm(tiny_llama), None, pairs, tok)
    after = mean_loss("ft", load_causal_lm(out), None, pairs, tok)
    assert after < before - 0.5


def test_prt_training_lowers_the_loss_of_base_plus_reward(tiny_llama, pairs, tmp_path):
    out = train_lm("prt", tiny_llama, pairs, tmp_path / "prt", alpha=1e-3, **STEPS)
    tok = load_tokenizer(out)
    base = load_causal_lm(tiny_llama)
    before = mean_loss("prt", load_causal_lm(tiny_llama), base, pairs, tok)
    after = mean_loss("prt", load_causal_lm(out), base, pairs, tok)
    assert after < before - 0.5


def test_prt_manifest_names_method_base_data_and_hyperparameters(tiny_llama, pairs, tmp_path):
    out = train_lm("prt", tiny_llama, pairs, tmp_path / "prt", alpha=0.01, lam=2.0, seed=3, lr=1e-3, max_steps=1,
                   progress=False)
    manifest = read_manifest(out)
    assert manifest["method"] == "prt" and manifest["trained"] == "reward"
    assert manifest["base"]["dir_hash"] and manifest["data"]["sha256"]
    assert manifest["hyperparameters"]["alpha"] == 0.01 and manifest["hyperparameters"]["lam"] == 2.0
    assert manifest["seed"] == 3 and "torch" in manifest["environment"]["packages"]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_same_seed_gives_identical_weights(tiny_llama, pairs, tmp_path):
    a = load_file(train_lm("prt", tiny_llama, pairs, tmp_path / "a", seed=7, **{**STEPS, "max_steps": 3})
                  / "model.safetensors")
    b = load_file(train_lm("prt", tiny_llama, pairs, tmp_path / "b", seed=7, **{**STEPS, "max_steps": 3})
                  / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    base = load_causal_lm(tiny_llama).state_dict()
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])


def test_lora_reward_trains_and_reloads_merged_into_its_base(tiny_llama, pairs, tmp_path):
    out = train_lm("prt", tiny_llama, pairs, tmp_path / "lora", lora=True, **{**STEPS, "lr": 1e-2})
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    reward = load_causal_lm(out)  # base + adapter, merged
    assert type(reward).__name__ == "LlamaForCausalLM"
    tok = load_tokenizer(out)
    base = load_causal_lm(tiny_llama)
    assert mean_loss("prt", reward, base, pairs, tok) < mean_loss("prt", load_causal_lm(tiny_llama), base, pairs, tok)


def test_loss_covers_response_tokens_and_eos_only(byte_tokenizer):
    ids, labels = encode_pair(byte_tokenizer, "Q: 1+1=", " 2", max_length=64, chat=False)
    prompt_len = len(byte_tokenizer("Q: 1+1=")["input_ids"])
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert byte_tokenizer.decode(ids[prompt_len:]) == " 2<|endoftext|>"


def test_chat_template_frames_prompt_as_user_turn():
    from prt_bench.lm.tiny import byte_level_tokenizer

    tok = byte_level_tokenizer(chat_template=True)
    ids, labels = encode_pair(tok, "hi", "yo", max_length=64, chat=True)
    assert tok.decode(ids) == "<|user|>hi\n<|assistant|>yo<|endoftext|>"
    assert tok.decode([t for t in labels if t != IGNORE]) == "yo<|endoftext|>"


def test_long_examples_lose_the_start_of_the_prompt(byte_tokenizer):
    ids, labels = encode_pair(byte_tokenizer, "x" * 100 + "END", "ok", max_length=10, chat=False)
    assert len(ids) == 10 and byte_tokenizer.decode(ids) == "x" * 4 + "ENDok<|endoftext|>"


def test_malformed_data_is_refused_with_its_line(tiny_llama, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"question": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        train_lm("ft", tiny_llama, bad, tmp_path / "out", max_steps=1, progress=False)


def test_train_lm_command_writes_a_checkpoint(tiny_llama, pairs, tmp_path):
    from typer.testing import CliRunner

    from prt_bench.cli import app

    result = CliRunner().invoke(app, ["train", "lm", "--method", "ft", "--base", str(tiny_llama), "--data", str(pairs),
                                      "--out", str(tmp_path / "cli"), "--max-steps", "1", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "cli")["hyperparameters"]["batch_size"] == 4


def test_losses_computed_on_the_response_span_equal_losses_over_all_logits(tiny_llama, byte_tokenizer):
    import torch.nn.functional as F

    from prt_bench import prt
    from prt_bench.lm.train import ft_loss, pad_batch, prt_loss

    examples = [encode_pair(byte_tokenizer, p, r, 64, chat=False) for p, r in (("Q: 1+2=", " 3"), ("a longer Q:", " 7 9"))]
    batch = pad_batch(examples, byte_tokenizer.pad_token_id)
    model, base = load_causal_lm(tiny_llama), load_causal_lm(tiny_llama)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    labels = batch["labels"][:, 1:]
    with torch.no_grad():
        logits, base_logits = model(**inputs).logits[:, :-1], base(**inputs).logits[:, :-1]
        full_ft = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)
        full_prt = prt.prt_loss(base_logits, logits, labels, alpha=0.1)
        assert float(ft_loss(model, batch)) == pytest.approx(float(full_ft), abs=1e-5)
        assert float(prt_loss(model, base, batch, alpha=0.1)) == pytest.approx(float(full_prt), abs=1e-5)


def test_prt_training_loss_is_over_the_tokenizers_ids_when_the_head_is_wider(tiny_qwen2, byte_tokenizer):
    """The reward is trained on the distribution PRT combines at inference: the tokenizer's ids,
    not the padding rows of a wider head."""
    import torch

    from prt_bench import prt
    from prt_bench.lm.load import load_causal_lm
    from prt_bench.lm.train import IGNORE, prt_loss, scored_span

    model = load_causal_lm(str(tiny_qwen2))
    n = len(byte_tokenizer)
    assert model.get_output_embeddings().weight.shape[0] > n
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": torch.tensor([[IGNORE, IGNORE, 7, 8, 9, 10]])}
    with torch.no_grad():
        got = prt_loss(model, model, batch, vocab=n)
        inputs, labels = scored_span(batch)
        logits = model(**inputs).logits
        by_hand = prt.prt_loss(logits[..., :n], logits[..., :n], labels, ignore_index=IGNORE)
        whole_head = prt_loss(model, model, batch)
    assert torch.equal(got, by_hand)
    assert abs(float(whole_head) - float(got)) > 1e-4


def test_the_prt_model_uses_the_lam_its_rewards_were_trained_with_unless_given(tiny_llama, pairs, tmp_path):
    from prt_bench.lm.lm_eval_models import PRTLM

    half = train_lm("prt", tiny_llama, pairs, tmp_path / "lam2", lam=2.0, max_steps=1, progress=False)
    one = train_lm("prt", tiny_llama, pairs, tmp_path / "lam1", max_steps=1, progress=False)
    assert PRTLM(base=str(tiny_llama), reward=str(half)).lam == 2.0           # from the manifest
    assert PRTLM(base=str(tiny_llama), reward=str(half), lam="0.5").lam == 0.5  # given: as given
    assert PRTLM(base=str(tiny_llama), reward=str(tiny_llama)).lam == 1.0     # no manifest: 1
    with pytest.raises(ValueError, match="different lam"):
        PRTLM(base=str(tiny_llama), reward=f"{half};{one}", reward_weights="1;1")


# --------------------------------------------------------------------------------- several processes

TWO_PROCESS_DRIVER = """
import sys
import torch.distributed as dist
dist.init_process_group("gloo")  # one group for the four runs (torchrun's store is set up once)
from prt_bench.lm.train import train_lm
base, data, out, common = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
for strategy in ("ddp", "fsdp"):
    for method in ("ft", "prt"):
        train_lm(method, base, data, f"{out}/{method}-{strategy}", strategy=strategy, **common)
train_lm("prt", base, data, f"{out}/prt-fsdp-bf16", strategy="fsdp", mixed_precision="bf16",
         gradient_checkpointing=True, **{**common, "grad_accum": 2})
"""


# torchrun, accelerate and Ray open ports on this machine: such tests run one at a time under xdist
@pytest.mark.xdist_group("ports")
def test_two_processes_ddp_and_fsdp_train_what_one_process_trains(tiny_llama, pairs, tmp_path):
    """torchrun --nproc_per_node 2 (gloo on the CPU): each process takes half of every batch, the
    loss is weighted by its share of the batch's tokens; FT and PRT under DDP and FSDP come out
    as one process trains them (up to the order of float additions), and the checkpoint is the
    unsharded float32 model.  bf16 mixed precision with gradient checkpointing and accumulation
    under FSDP stays close to one process's bf16 run and still writes float32 weights."""
    import subprocess
    import sys
    from pathlib import Path

    common = dict(seed=3, progress=False, lr=1e-2, max_steps=3, batch_size=6, max_length=64, warmup=0, alpha=0.01)
    for method in ("ft", "prt"):
        train_lm(method, tiny_llama, pairs, tmp_path / f"{method}-one", **common)
    train_lm("prt", tiny_llama, pairs, tmp_path / "prt-one-bf16", mixed_precision="bf16",
             gradient_checkpointing=True, **{**common, "grad_accum": 2})
    driver = tmp_path / "driver.py"
    driver.write_text(TWO_PROCESS_DRIVER)
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(driver), str(tiny_llama), str(pairs),
                           str(tmp_path), repr(common)], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = load_file(Path(tiny_llama) / "model.safetensors")

    def compare(one: str, two: str) -> tuple[float, float, float, float]:
        a, b = load_file(tmp_path / one / "model.safetensors"), load_file(tmp_path / two / "model.safetensors")
        assert a.keys() == b.keys() and all(t.dtype == torch.float32 for t in b.values())
        moved = max(float((a[k] - start[k]).abs().max()) for k in a)
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        update = torch.cat([(a[k] - start[k]).flatten() for k in a])
        relative = float(torch.cat([(a[k] - b[k]).flatten() for k in a]).norm() / update.norm())
        la, lb = read_manifest(tmp_path / one)["losses"], read_manifest(tmp_path / two)["losses"]
        return moved, diff, max(abs(x - y) for x, y in zip(la, lb)), relative

    for method in ("ft", "prt"):
        for strategy in ("ddp", "fsdp"):
            moved, diff, loss_diff, _ = compare(f"{method}-one", f"{method}-{strategy}")
            assert moved > 5e-3 and diff < 1e-4 and loss_diff < 1e-5, (method, strategy, moved, diff, loss_diff)
            parallel = read_manifest(tmp_path / f"{method}-{strategy}")["parallel"]
            assert (parallel["strategy"], parallel["processes"]) == (strategy, 2)
            held = parallel["rank0_parameters"] / parallel["parameters"]  # fsdp: each process holds its shard
            assert held == 1.0 if strategy == "ddp" else 0.4 < held < 0.6, (strategy, held)
    # bf16 rounds differently in one process (autocast) and under FSDP (bf16 copies of the weights), and
    # Adam's first steps move every weight by about lr whatever its gradient: compare the whole update
    moved, _, loss_diff, relative = compare("prt-one-bf16", "prt-fsdp-bf16")
    assert moved > 5e-3 and relative < 0.2 and loss_diff < 0.02, (moved, relative, loss_diff)  # seen: 0.047, 0.003
    assert read_manifest(tmp_path / "prt-fsdp-bf16")["hyperparameters"]["mixed_precision"] == "bf16"


def test_mixed_precision_keeps_float32_weights_and_bad_strategies_are_refused(tiny_llama, pairs, tmp_path):
    with pytest.raises(ValueError, match="strategy"):
        train_lm("ft", tiny_llama, pairs, tmp_path / "a", strategy="zero3", **STEPS)
    with pytest.raises(ValueError, match="master copy"):
        train_lm("ft", tiny_llama, pairs, tmp_path / "b", mixed_precision="bf16", dtype="bfloat16", **STEPS)
