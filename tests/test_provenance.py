"""Provenance: a hub base's revision is the one loaded, by every loader, and cells record it.

A hub-style cache is laid out on the spot (``models--org--name/refs`` and ``snapshots``, as
huggingface_hub writes it) with two commits of a tiny model; the hub is offline.
"""

from __future__ import annotations

import pytest
import torch

from prt_bench.lm.tiny import build_tiny_lm

SHA_MAIN = "1" * 40
SHA_V2 = "2" * 40


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    for sha, ref, seed in ((SHA_MAIN, "main", 0), (SHA_V2, "v2", 1)):
        build_tiny_lm(repo / "snapshots" / sha, "llama", seed=seed)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return repo


def _weights(model) -> torch.Tensor:
    return model.get_input_embeddings().weight.detach().clone()


def test_the_revision_asked_for_is_the_one_loaded(hub):
    from prt_bench.hub import identity, pin
    from prt_bench.lm.load import load_causal_lm, load_tokenizer
    from prt_bench.suite import modalities

    folder, sha = pin("org/tiny", "v2")
    assert sha == SHA_V2 and folder == hub / "snapshots" / SHA_V2
    assert pin("org/tiny")[1] == SHA_MAIN and pin("org/tiny", SHA_V2)[1] == SHA_V2
    v2 = _weights(load_causal_lm(hub / "snapshots" / SHA_V2))
    main = _weights(load_causal_lm(hub / "snapshots" / SHA_MAIN))
    assert not torch.equal(v2, main)
    # by hub id: the loaders pass the revision on
    assert torch.equal(_weights(load_causal_lm("org/tiny", revision="v2")), v2)
    assert torch.equal(_weights(load_causal_lm("org/tiny")), main)
    assert len(load_tokenizer("org/tiny", revision="v2")) == len(load_tokenizer(folder))
    # a suite base {hf: org/tiny, revision: v2} resolves to that commit's snapshot, and a cell says so
    resolved = modalities.get("lm").resolve_base({"hf": "org/tiny", "revision": "v2"}, None)
    assert resolved == str(folder)
    assert identity(resolved) == {"id": "org/tiny", "sha": SHA_V2, "repo_type": "model"}


def test_combined_models_report_each_roles_commit_to_lm_eval(hub):
    import prt_bench.lm.lm_eval_models as models

    lm = models.PRTLM(base="org/tiny", reward="org/tiny", base_revision="v2", device="cpu")
    info = lm.get_model_info()["prt_bench_models"]
    assert info["base"]["sha"] == SHA_V2 and info["reward"]["sha"] == SHA_MAIN
    assert info["base"]["dtype"] == "torch.float32" and info["base"]["num_parameters"] > 0
    assert torch.equal(_weights(lm.models[0]), _weights(models.load_causal_lm(hub / "snapshots" / SHA_V2)))
    with pytest.raises(TypeError, match="unknown model_args"):
        models.PRTLM(base="org/tiny", reward="org/tiny", pt_revision="v2")
