"""`prt-bench mini build lm --variant micro` end to end: bases, cache reuse, reload, shared tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from prt_bench.mini.lm.build import build_lm

    root = tmp_path_factory.mktemp("mini-lm")
    return root, build_lm("micro", root, jobs=1, progress=False)


def test_micro_build_has_two_families_two_sizes_two_corpora(micro):
    _, record = micro
    from prt_bench.io import read_manifest

    mans = [read_manifest(p) for p in record["bases"].values()]
    assert len(mans) >= 5
    assert {m["family"] for m in mans} >= {"llama", "qwen2"}
    assert {m["size"] for m in mans} == {"s", "m"} and {m["corpus"] for m in mans} == {"v1", "v2"}
    assert record["roles"][record["source"]] == "source"


def test_every_scenario_names_built_bases(micro):
    _, record = micro
    assert {"upscaling", "update", "other_arch"} <= set(record["scenarios"])
    for sc in record["scenarios"].values():
        assert {sc["source"], *sc["targets"]} <= set(record["bases"])


def test_second_build_reuses_the_cache(micro):
    from prt_bench.mini.lm.build import build_lm

    root, first = micro
    again = build_lm("micro", root, jobs=1, progress=False)
    assert again["built_now"] == [] and again["bases"] == first["bases"]


def test_only_builds_the_named_bases_and_lists_what_exists(tmp_path):
    from prt_bench.mini.lm.build import build_lm

    record = build_lm("micro", tmp_path, jobs=1, progress=False, only=["llama-s-v1"])
    assert record["built_now"] == ["llama-s-v1"] and list(record["bases"]) == ["llama-s-v1"]
    later = build_lm("micro", tmp_path, jobs=1, progress=False, only=["llama-s-v1", "qwen2-s-v1"])
    assert later["built_now"] == ["qwen2-s-v1"] and set(later["bases"]) == {"llama-s-v1", "qwen2-s-v1"}


def test_v2_bases_go_on_training_their_v1_base(micro):
    from prt_bench.io import read_manifest

    _, record = micro
    for name in ("llama-s-v2", "llama-m-v2"):
        man = read_manifest(record["bases"][name])
        assert man["init"] == name.replace("-v2", "-v1") and man["corpus"] == "v2"
        assert man["config"]["init"] == read_manifest(record["bases"][man["init"]])["config"]


def test_only_builds_the_base_a_named_base_goes_on_from(tmp_path):
    from prt_bench.mini.lm.build import build_lm

    record = build_lm("micro", tmp_path, jobs=2, progress=False, only=["llama-s-v2"])
    assert sorted(record["built_now"]) == ["llama-s-v1", "llama-s-v2"]


def test_only_refuses_an_unknown_base(tmp_path):
    from prt_bench.mini.lm.build import build_lm

    with pytest.raises(ValueError, match="unknown mini LM base"):
        build_lm("micro", tmp_path, jobs=1, progress=False, only=["llama-xl-v9"])


def test_bases_reload_as_causal_lms_of_their_family(micro):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, record = micro
    for name, path in record["bases"].items():
        model = AutoModelForCausalLM.from_pretrained(path)
        assert model.config.model_type == name.split("-")[0]
        tok = AutoTokenizer.from_pretrained(path)
        ids = tok("Question: Mia has 3 apples.", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            assert model(ids).logits.shape[-1] == len(tok)


def test_all_bases_share_one_tokenizer(micro):
    from transformers import AutoTokenizer

    from prt_bench.io import file_hash

    _, record = micro
    paths = list(record["bases"].values())
    assert len({file_hash(f"{p}/tokenizer.json") for p in paths}) == 1
    toks = [AutoTokenizer.from_pretrained(p) for p in paths]
    assert all(t.get_vocab() == toks[0].get_vocab() and t.eos_token == "<|endoftext|>" for t in toks)


def test_checkpoints_are_safetensors_with_manifests(micro):
    from pathlib import Path

    _, record = micro
    for path in record["bases"].values():
        files = {p.name for p in Path(path).iterdir()}
        assert "model.safetensors" in files and "prt_manifest.json" in files
        assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)


def test_task_data_is_written_next_to_the_bases(micro):
    _, record = micro
    rows = [json.loads(line) for line in open(record["data"]["mini_gsm"]["test"])]
    assert rows and all(r["answer"].endswith(f"#### {r['target']}") for r in rows)
    assert open(record["data"]["mini_ifeval"]["train"]).readline()


def test_mini_gsm_task_loads_through_lm_eval(micro, monkeypatch):
    from lm_eval.tasks import TaskManager

    from prt_bench.io import REPO_ROOT

    _, record = micro
    monkeypatch.setenv("PRT_BENCH_MINI_LM_DATA", record["data_dir"])
    tm = TaskManager(include_path=str(REPO_ROOT / "tasks"), include_defaults=False)
    tasks = tm.load_task_or_group(["mini_gsm", "mini_ifeval"])
    gsm = tasks["mini_gsm"]
    docs = list(gsm.test_docs())
    assert len(docs) == 12
    assert gsm.doc_to_text(docs[0]) == docs[0]["prompt"]


def test_unknown_variant_is_refused():
    from prt_bench.mini.lm.build import load_config

    with pytest.raises(ValueError, match="unknown mini LM variant"):
        load_config("huge")


def test_a_variant_scales_every_base_steps_and_draws_every_seed_again():
    """The redesign studies' variants: `steps_scale` multiplies each base's pretraining steps,
    `seed_offset` moves each base's seed, and the default world is untouched by either."""
    from prt_bench.mini.lm.build import load_config, world_hash

    default, long, p0_a, p0_b = (load_config(v) for v in ("default", "long", "p0-a", "p0-b"))
    for name, base in default["bases"].items():
        assert (long["bases"][name]["steps"], long["bases"][name]["seed"]) == (2 * base["steps"], base["seed"])
        assert (p0_b["bases"][name]["steps"], p0_b["bases"][name]["seed"]) == (base["steps"], base["seed"] + 100)
        assert p0_a["bases"][name] == base  # p0-a is this world plus a base
    assert "llama-s-v2i" not in default["bases"] and long["bases"]["llama-s-v2i"]["steps"] == 2000
    assert p0_b["bases"]["llama-s-v2i"]["seed"] == p0_a["bases"]["llama-s-v2i"]["seed"] + 100
    assert p0_a["bases"]["llama-s-v2i"].get("init") is None  # pretrained independently of the source
    assert long["corpora"]["v1"]["preamble_share"] == 0.5 and "preamble_share" not in default["corpora"]["v1"]
    assert len({world_hash(c) for c in (default, long, p0_a, p0_b)}) == 4


@pytest.mark.parametrize("draw", ["a", "b", "c"])
def test_a_names_variant_is_its_draw_with_only_the_test_names_changed(draw):
    """p0-X-names (docs/mini-lm-p0.md, "What P0 fails on") differs from p0-X in the test split's
    names alone: every base's own config -- its cache key -- is the draw's, so the bases are."""
    from prt_bench.mini.lm.build import base_config, load_config, world_hash

    plain, named = load_config(f"p0-{draw}"), load_config(f"p0-{draw}-names")
    assert world_hash(plain) != world_hash(named)
    assert named["tasks"]["mini_gsm"] == {**plain["tasks"]["mini_gsm"], "test_names": "train"}
    assert {k: v for k, v in named.items() if k not in ("tasks", "variant")} == \
        {k: v for k, v in plain.items() if k not in ("tasks", "variant")}
    for base in named["bases"].values():
        assert base_config(named, base) == base_config(plain, base)


@pytest.mark.parametrize("draw", ["a", "b", "c"])
def test_the_longer_independent_base_variants_change_only_its_pretraining_steps(draw):
    """p0-X-result-2x-asked-{matched,epochs} (docs/mini-lm-p0.md, "The independent newer base,
    pretrained longer") pretrain the independent newer base as long as the newer relative in all
    (3000 steps) or for as many passes over v2 as the source makes over v1 (4000); every other
    base's own config -- its cache key -- and the draw's seed are the asked world's."""
    from prt_bench.mini.lm.build import base_config, load_config

    asked = load_config(f"p0-{draw}-result-2x-asked")
    for variant, steps in (("matched", 3000), ("epochs", 4000)):
        longer = load_config(f"p0-{draw}-result-2x-asked-{variant}")
        assert {k: v for k, v in longer.items() if k not in ("bases", "variant")} == \
            {k: v for k, v in asked.items() if k not in ("bases", "variant")}
        for name, base in longer["bases"].items():
            if name == "llama-s-v2i":
                assert {**base, "steps": asked["bases"][name]["steps"]} == asked["bases"][name]
                assert base["steps"] == steps and base.get("init") is None
            else:
                assert base_config(longer, base) == base_config(asked, base)
    source = asked["bases"]["llama-s-v1"]["steps"]
    relative = source + asked["bases"]["llama-s-v2"]["steps"]
    assert relative == 3000 and 2 * source == 4000  # v2 is twice v1's size (n_*_docs)
    assert all(asked["corpora"]["v2"][k] == 2 * asked["corpora"]["v1"][k]
               for k in ("n_fact_docs", "n_story_docs", "n_prose_docs"))


@pytest.mark.parametrize("draw", "abc")
def test_the_4x_variants_double_every_base_s_steps_and_nothing_else(draw):
    """p0-X-result-4x-asked (docs/mini-lm-p0.md, "Every base past the look-up transition") pretrain
    every base of the asked world twice as long, on the same corpora, seeds and sizes; its
    independent newer base is -epochs' one (the same cache key, so the same checkpoint)."""
    from prt_bench.mini.lm.build import base_config, load_config

    asked, four = load_config(f"p0-{draw}-result-2x-asked"), load_config(f"p0-{draw}-result-4x-asked")
    assert {k: v for k, v in four.items() if k not in ("bases", "variant")} == \
        {k: v for k, v in asked.items() if k not in ("bases", "variant")}
    assert four["bases"].keys() == asked["bases"].keys()
    for name, base in four["bases"].items():
        assert base == {**asked["bases"][name], "steps": 2 * asked["bases"][name]["steps"]}
    epochs = load_config(f"p0-{draw}-result-2x-asked-epochs")
    assert base_config(four, four["bases"]["llama-s-v2i"]) == base_config(epochs, epochs["bases"]["llama-s-v2i"])
    assert four["bases"]["llama-s-v1"]["steps"] == 4000


@pytest.mark.parametrize("draw", ["a", "b", "c"])
def test_the_wide_variants_widen_both_sizes_and_change_nothing_else(draw):
    """p0-X-result-2x-asked-wide (docs/mini-lm-p0.md, "A wider base"): both sizes 128 wide (heads of
    32 dimensions), the same depths, head counts, steps, seeds and corpora as the asked world."""
    from prt_bench.mini.lm.build import load_config

    asked, wide = load_config(f"p0-{draw}-result-2x-asked"), load_config(f"p0-{draw}-result-2x-asked-wide")
    assert {k: v for k, v in wide.items() if k not in ("sizes", "variant")} == \
        {k: v for k, v in asked.items() if k not in ("sizes", "variant")}
    for size in ("s", "m"):
        assert wide["sizes"][size]["hidden"] == 128 > asked["sizes"][size]["hidden"]
        assert wide["sizes"][size]["hidden"] // wide["sizes"][size]["heads"] == 32
        assert {k: v for k, v in wide["sizes"][size].items() if k not in ("hidden", "intermediate")} == \
            {k: v for k, v in asked["sizes"][size].items() if k not in ("hidden", "intermediate")}
        assert wide["sizes"][size]["intermediate"] == 3 * wide["sizes"][size]["hidden"]


@pytest.mark.parametrize("draw", "abc")
def test_the_both_variants_restate_half_the_stories_and_change_nothing_else(draw):
    """p0-X-result-2x-asked-both (docs/mini-lm-p0.md, "Both ways of counting"): the asked world with
    half of each corpus's stories counted through restating each step; nothing else changes."""
    from prt_bench.mini.lm.build import load_config

    asked, both = load_config(f"p0-{draw}-result-2x-asked"), load_config(f"p0-{draw}-result-2x-asked-both")
    assert {k: v for k, v in both.items() if k not in ("corpora", "variant")} == \
        {k: v for k, v in asked.items() if k not in ("corpora", "variant")}
    for version, corpus_cfg in both["corpora"].items():
        assert corpus_cfg == {**asked["corpora"][version], "restate_share": 0.5}


@pytest.mark.parametrize("draw", "abc")
def test_the_lead_variants_lead_each_step_with_its_number_and_change_nothing_else(draw):
    """p0-X-result-2x-asked-lead (docs/mini-lm-p0.md, "A step's number led"): the asked world whose
    task and corpora tell each step's number right after its anchor; nothing else changes."""
    from prt_bench.mini.lm.build import load_config

    asked, lead = load_config(f"p0-{draw}-result-2x-asked"), load_config(f"p0-{draw}-result-2x-asked-lead")
    assert {k: v for k, v in lead.items() if k not in ("corpora", "tasks", "variant")} == \
        {k: v for k, v in asked.items() if k not in ("corpora", "tasks", "variant")}
    for version, corpus_cfg in lead["corpora"].items():
        assert corpus_cfg == {**asked["corpora"][version], "counted_lines": "lead"}
    assert lead["tasks"]["mini_ifeval"] == asked["tasks"]["mini_ifeval"]
    assert lead["tasks"]["mini_gsm"] == {**asked["tasks"]["mini_gsm"], "answer_lines": "lead"}


@pytest.mark.parametrize("draw", "abc")
def test_the_leadlines_variants_lay_the_lead_world_s_questions_and_stories_out_in_lines(draw):
    """p0-X-result-2x-asked-leadlines: the lead world whose questions and told stories have each
    sentence on a line of its own; nothing else changes."""
    from prt_bench.mini.lm.build import load_config

    lead, lines = load_config(f"p0-{draw}-result-2x-asked-lead"), load_config(f"p0-{draw}-result-2x-asked-leadlines")
    assert {k: v for k, v in lines.items() if k not in ("corpora", "tasks", "variant")} == \
        {k: v for k, v in lead.items() if k not in ("corpora", "tasks", "variant")}
    for version, corpus_cfg in lines["corpora"].items():
        assert corpus_cfg == {**lead["corpora"][version], "told_layout": "lines"}
    assert lines["tasks"] == {**lead["tasks"], "mini_gsm": {**lead["tasks"]["mini_gsm"], "question_layout": "lines"}}


@pytest.mark.parametrize("draw", "abc")
def test_the_v1big_variants_give_v1_v2_s_range_and_size_and_nothing_else(draw):
    """p0-X-result-4x-asked-v1big (docs/mini-lm-p0.md, "A v1 as large as v2"): the 4x asked world whose
    v1 has v2's number range and document counts; v1 keeps its own seed and still lacks the
    phrasings mini_gsm's test holds out, and nothing else changes."""
    from prt_bench.mini.lm.build import load_config

    four, big = load_config(f"p0-{draw}-result-4x-asked"), load_config(f"p0-{draw}-result-4x-asked-v1big")
    assert {k: v for k, v in big.items() if k not in ("corpora", "variant")} == \
        {k: v for k, v in four.items() if k not in ("corpora", "variant")}
    assert big["corpora"]["v2"] == four["corpora"]["v2"]
    grown = ("max_number", "n_fact_docs", "n_story_docs", "n_prose_docs")
    assert big["corpora"]["v1"] == {**four["corpora"]["v1"], **{k: four["corpora"]["v2"][k] for k in grown}}
    assert big["corpora"]["v1"]["held_out_phrasings"] is False and big["corpora"]["v2"]["held_out_phrasings"] is True


@pytest.mark.parametrize("draw", "abc")
def test_the_v2source_variants_pretrain_the_source_on_v2_and_change_nothing_else(draw):
    """p0-X-result-4x-asked-v2source (docs/mini-lm-p0.md, "A v1 as large as v2"): the 4x asked world
    whose source is pretrained from scratch on v2 -- the independent newer base's corpus, steps and
    size, the source's own seed; every other part of the world is the 4x world's."""
    from prt_bench.mini.lm.build import load_config

    four, v2s = load_config(f"p0-{draw}-result-4x-asked"), load_config(f"p0-{draw}-result-4x-asked-v2source")
    assert {k: v for k, v in v2s.items() if k not in ("bases", "variant")} == \
        {k: v for k, v in four.items() if k not in ("bases", "variant")}
    assert {n: b for n, b in v2s["bases"].items() if n != "llama-s-v1"} == \
        {n: b for n, b in four["bases"].items() if n != "llama-s-v1"}
    source, independent = v2s["bases"]["llama-s-v1"], four["bases"]["llama-s-v2i"]
    assert source == {**four["bases"]["llama-s-v1"], "corpus": "v2"}
    assert {k: source[k] for k in ("family", "size", "corpus", "steps")} == \
        {k: independent[k] for k in ("family", "size", "corpus", "steps")} and source["seed"] != independent["seed"]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_block_expansion_starts_from_the_function_of_the_smaller_base(family):
    import torch
    from transformers import AutoModelForCausalLM

    from prt_bench.lm.tiny import tiny_config
    from prt_bench.mini.lm.pretrain import grow

    shape = dict(vocab_size=300, hidden=32, heads=4, kv_heads=2, intermediate=64)
    torch.manual_seed(0)
    small = AutoModelForCausalLM.from_config(tiny_config(family, layers=3, **shape)).eval()
    big = grow(small, tiny_config(family, layers=5, **shape)).eval()
    x = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        assert big.config.num_hidden_layers == 5
        assert torch.equal(small(x).logits, big(x).logits)
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())


def test_block_expansion_refuses_more_than_doubling():
    from transformers import AutoModelForCausalLM

    from prt_bench.lm.tiny import tiny_config
    from prt_bench.mini.lm.pretrain import grow

    shape = dict(vocab_size=300, hidden=32, heads=4, kv_heads=2, intermediate=64)
    small = AutoModelForCausalLM.from_config(tiny_config("llama", layers=2, **shape))
    with pytest.raises(ValueError, match="at most one copy per block"):
        grow(small, tiny_config("llama", layers=5, **shape))


def test_shipped_bases_are_taken_after_their_hashes_and_rebuild_bit_for_bit(micro, tmp_path, monkeypatch):
    import shutil

    from prt_bench.io import file_hash, read_json
    from prt_bench.mini.lm import build as B

    root, first = micro
    monkeypatch.setattr(B, "SHIPPED", tmp_path / "worlds")
    dest = B.ship("micro", root)
    sums = read_json(dest / B.SUMS)
    assert sums["threads"] and {rel.split("/")[0] for rel in sums["files"]} == {"tokenizer", *first["bases"]}
    # a fresh cache takes every shipped part and pretrains nothing
    fresh = B.build_lm("micro", tmp_path / "fresh", jobs=1, progress=False)
    assert fresh["built_now"] == [] and set(fresh["shipped_now"]) == set(first["bases"])
    for rel, digest in sums["files"].items():
        assert file_hash(Path(fresh["root"]) / rel) == digest
    # pretraining every shipped part again, at the recorded thread count, gives the same bytes
    assert B.verify_shipped("micro", progress=False) == {part: [] for part in ["tokenizer", *first["bases"]]}
    # a damaged shipped file: that base is pretrained instead (and comes out as shipped)
    weights = dest / "llama-s-v1" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    shutil.copy(weights, tmp_path / "good.safetensors")
    weights.write_bytes(bytes(blob))
    with pytest.warns(RuntimeWarning, match="llama-s-v1.*do not match.*pretraining it instead"):
        again = B.build_lm("micro", tmp_path / "again", jobs=1, progress=False, threads=sums["threads"][0])
    assert again["built_now"] == ["llama-s-v1"] and "llama-s-v1" not in again["shipped_now"]
    assert file_hash(Path(again["root"]) / "llama-s-v1" / "model.safetensors") == \
        sums["files"]["llama-s-v1/model.safetensors"]
    # and a shipped file that a rebuild does not reproduce is named by --verify
    shutil.copy(tmp_path / "good.safetensors", weights)
    sums["files"]["qwen2-s-v1/model.safetensors"] = "0" * 64
    (dest / B.SUMS).write_text(json.dumps(sums))
    assert B.verify_shipped("micro", progress=False)["qwen2-s-v1"] == ["qwen2-s-v1/model.safetensors"]


def test_the_cli_pretrains_at_the_thread_count_it_is_given(tmp_path):
    """`mini build lm --threads N`: the thread count a base's bits depend on, for builds that share
    a machine (one base alone would otherwise take every core); it is recorded in the manifest."""
    from typer.testing import CliRunner

    from prt_bench.cli import app
    from prt_bench.io import read_manifest

    args = ["mini", "build", "lm", "--variant", "micro", "--out", str(tmp_path), "--only", "llama-s-v1"]
    assert CliRunner().invoke(app, [*args, "--threads", "0"]).exit_code != 0
    run = CliRunner().invoke(app, [*args, "--threads", "1", "--json"])
    assert run.exit_code == 0, run.output
    record = json.loads(run.stdout)
    assert record["built_now"] == ["llama-s-v1"]
    assert read_manifest(Path(record["bases"]["llama-s-v1"]))["environment"]["threads"] == 1
