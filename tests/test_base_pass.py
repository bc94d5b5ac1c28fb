"""PRT's base pass: computed once (in memory or a shared cache) it trains exactly the reward
that recomputing the base at every step trains."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prt_bench.io import read_manifest
from prt_bench.lm.base_pass import IGNORE, BasePass, scored_positions
from prt_bench.lm.load import load_causal_lm, load_tokenizer
from prt_bench.lm.train import encode_pair, pad_batch, scored_span, train_lm

STEPS = dict(lr=3e-3, max_steps=4, batch_size=5, warmup=0.0, progress=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("base-pass") / "pairs.jsonl"
    rows = [{"prompt": f"Q: {a}*{b}{'?' * a}=", "response": f" {a * b}" + "!" * b} for a in range(4) for b in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def weights(out):
    return load_file(out / "model.safetensors")


def test_cached_and_recomputed_base_pass_train_bitwise_the_same_reward(tiny_llama, pairs, tmp_path):
    cache = tmp_path / "cache"
    recomputed = train_lm("prt", tiny_llama, pairs, tmp_path / "a", base_cache_mb=0, alpha=1e-3, **STEPS)
    first = train_lm("prt", tiny_llama, pairs, tmp_path / "b", base_cache=cache, alpha=1e-3, **STEPS)
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = train_lm("prt", tiny_llama, pairs, tmp_path / "c", base_cache=cache, alpha=1e-3, **STEPS)
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert read_manifest(recomputed)["base_pass"]["source"] == "recomputed at every step"
    assert read_manifest(first)["base_pass"]["source"].startswith("computed once, written to")
    assert read_manifest(again)["base_pass"]["source"].startswith("read from")
    a, b, c = weights(recomputed), weights(first), weights(again)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    base = load_causal_lm(tiny_llama).state_dict()
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])


def test_an_alpha_sweep_shares_one_pass_and_other_data_gets_its_own(tiny_llama, pairs, tmp_path):
    cache = tmp_path / "cache"
    for alpha in (0.0, 1e-2):
        train_lm("prt", tiny_llama, pairs, tmp_path / f"a{alpha}", base_cache=cache, alpha=alpha,
                 **{**STEPS, "max_steps": 1})
    assert len(list(cache.glob("*.safetensors"))) == 1
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "Q: 9*9=", "response": " 81"}) + "\n")
    train_lm("prt", tiny_llama, other, tmp_path / "o", base_cache=cache, **{**STEPS, "max_steps": 1})
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_lora_reward_cached_and_recomputed_agree(tiny_llama, pairs, tmp_path):
    kw = dict(lora=True, **{**STEPS, "lr": 1e-2})
    a = train_lm("prt", tiny_llama, pairs, tmp_path / "a", base_cache_mb=0, **kw)
    b = train_lm("prt", tiny_llama, pairs, tmp_path / "b", base_cache=tmp_path / "cache", **kw)
    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_batch_lookup_places_each_example_on_its_scored_positions(tiny_llama, byte_tokenizer, pairs):
    model = load_causal_lm(tiny_llama)
    tok = load_tokenizer(tiny_llama)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    examples = [encode_pair(tok, r["prompt"], r["response"], 64, chat=False) for r in rows]
    forward = lambda ids, keep: model(input_ids=ids, logits_to_keep=keep).logits  # noqa: E731
    cached = BasePass(forward, examples, len(tok)).prepare()
    assert cached.source == "computed once, kept in memory"
    indices = [7, 0, 11]
    batch = pad_batch([examples[i] for i in indices], tok.pad_token_id or 0)
    inputs, labels = scored_span(batch)
    lo, hi = int(inputs["logits_to_keep"][0]), int(inputs["logits_to_keep"][-1]) + 1
    got = cached.batch(indices, lo, hi)
    with torch.no_grad():
        batched = torch.log_softmax(model(**inputs).logits[..., :len(tok)], -1)
    scored = labels != IGNORE
    assert got.shape == batched.shape
    torch.testing.assert_close(got[scored], batched[scored], atol=1e-5, rtol=1e-5)  # same numbers, other batch
    assert torch.count_nonzero(got[~scored]) == 0
    over = BasePass(forward, examples, len(tok), budget_mb=0).prepare()
    assert over.table is None and torch.equal(over.batch(indices, lo, hi), got)


def test_scored_positions_of_a_response_span():
    assert scored_positions([IGNORE, IGNORE, IGNORE, 5, 6]) == (2, 4)
    assert scored_positions([IGNORE, IGNORE]) == (0, 0)
    with pytest.raises(ValueError, match="contiguous"):
        scored_positions([IGNORE, 4, IGNORE, 5])


def test_a_damaged_cache_file_is_recomputed(tiny_llama, pairs, tmp_path):
    cache = tmp_path / "cache"
    a = train_lm("prt", tiny_llama, pairs, tmp_path / "a", base_cache=cache, **{**STEPS, "max_steps": 2})
    (file,) = cache.glob("*.safetensors")
    file.write_bytes(b"not safetensors")
    b = train_lm("prt", tiny_llama, pairs, tmp_path / "b", base_cache=cache, **{**STEPS, "max_steps": 2})
    assert read_manifest(b)["base_pass"]["source"].startswith("computed once")
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
