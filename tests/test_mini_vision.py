"""The mini vision world: noisy web-like captions, the data splits, and a micro build end to end."""

from __future__ import annotations

import json
import os
import re

import pytest

from prt_bench.mini import vision as mini_vision
from prt_bench.mini.vision_captions import CLASSNAMES, KINDS, CaptionNoise, make_captions, measured_shares

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NOISY = CaptionNoise(wrong=0.25, empty=0.15, classname=0.15, superclass=0.25)
LABELS = [i % 10 for i in range(20000)]


def test_captions_are_deterministic_under_a_seed():
    assert make_captions(LABELS[:500], NOISY, seed=3) == make_captions(LABELS[:500], NOISY, seed=3)
    assert make_captions(LABELS[:500], NOISY, seed=3)[0] != make_captions(LABELS[:500], NOISY, seed=4)[0]


def test_measured_caption_shares_match_the_configured_rates():
    _, kinds = make_captions(LABELS, NOISY, seed=0)
    measured = measured_shares(kinds)
    for kind, expected in NOISY.expected_shares().items():
        assert measured[kind] == pytest.approx(expected, abs=0.015), kind
    assert measured["wrong"] + measured["empty"] == pytest.approx(NOISY.noise_rate, abs=0.015)


def _names(caption: str, classname: str) -> bool:
    # whole term: "shirt" is not named by "t-shirt" or "sweatshirt"
    return re.search(rf"(?<![\w-]){re.escape(classname)}(?![\w-])", caption) is not None


def test_a_crawl_never_names_its_unnamed_classes_and_keeps_its_rates():
    """``unnamed``: no caption of any kind uses those label names (their class is named by a
    synonym instead), the other classes still are, and the shares match the rates."""
    gap = CaptionNoise(wrong=0.25, empty=0.15, classname=0.15, superclass=0.25, unnamed=["pullover", "trouser"])
    captions, kinds = make_captions(LABELS, gap, seed=0)
    assert not any(_names(c, name) for c in captions for name in gap.unnamed)
    named = {CLASSNAMES[label] for caption, kind, label in zip(captions, kinds, LABELS) if kind == "classname"}
    assert named == set(CLASSNAMES) - {"pullover", "trouser"}
    measured = measured_shares(kinds)
    for kind, expected in gap.expected_shares().items():
        assert measured[kind] == pytest.approx(expected, abs=0.015), kind
    assert gap.expected_shares()["classname"] == pytest.approx(NOISY.expected_shares()["classname"] * 0.8)
    with pytest.raises(ValueError, match="not class names"):
        CaptionNoise(wrong=0.1, empty=0.1, classname=0.1, superclass=0.1, unnamed=["jumper"])


def test_a_crawl_in_another_dialect_names_each_class_by_the_other_name():
    """``named_as``: where a caption would use the label name, it uses the mapped one; the other
    kinds and classes are untouched (the same random draws as without it)."""
    swap = CaptionNoise(wrong=0.25, empty=0.15, classname=0.15, superclass=0.25,
                        named_as={"t-shirt": "shirt", "shirt": "t-shirt"})
    captions, kinds = make_captions(LABELS[:3000], swap, seed=0)
    plain, plain_kinds = make_captions(LABELS[:3000], NOISY, seed=0)
    assert kinds == plain_kinds
    for caption, original, kind, label in zip(captions, plain, kinds, LABELS):
        name = CLASSNAMES[label]
        if kind == "classname" and name in ("t-shirt", "shirt"):
            other = "shirt" if name == "t-shirt" else "t-shirt"
            assert _names(caption, other) and not _names(caption, name), caption
        elif not (_names(original, "t-shirt") or _names(original, "shirt")):  # wrong captions speak the dialect too
            assert caption == original
    with pytest.raises(ValueError, match="not class names"):
        CaptionNoise(wrong=0.1, empty=0.1, classname=0.1, superclass=0.1, named_as={"shirt": "tee"})


def test_a_dialect_spoken_by_a_share_of_the_crawl_keeps_every_other_caption():
    """``named_as_share``: about that share of the class-name captions of a swapped class use the
    other name, the rest the class's own; every other caption, and every kind, is what the full
    swap gives (the share draws from its own random stream), and share 1 is the full swap."""
    swap = {"t-shirt": "shirt", "shirt": "t-shirt"}
    rates = dict(wrong=0.25, empty=0.15, classname=0.35, superclass=0.25)
    full, full_kinds = make_captions(LABELS[:3000], CaptionNoise(**rates, named_as=swap), seed=0)
    assert make_captions(LABELS[:3000], CaptionNoise(**rates, named_as=swap, named_as_share=1.0), seed=0) == \
        (full, full_kinds)
    part, part_kinds = make_captions(LABELS[:3000], CaptionNoise(**rates, named_as=swap, named_as_share=0.75), seed=0)
    assert part_kinds == full_kinds
    other_name = 0
    named = [(c, f, CLASSNAMES[label]) for c, f, k, label in zip(part, full, part_kinds, LABELS)
             if k == "classname" and CLASSNAMES[label] in swap]
    for caption, swapped, name in named:
        if caption != swapped:  # the class's own name where the full swap has the other one
            assert _names(caption, name) and caption == swapped.replace(swap[name], name), (caption, swapped)
        else:
            other_name += 1
    assert len(named) > 100 and 0.65 < other_name / len(named) < 0.85
    for caption, swapped, kind, label in zip(part, full, part_kinds, LABELS):
        if not (kind == "classname" and CLASSNAMES[label] in swap) and kind != "wrong":
            assert caption == swapped
    with pytest.raises(ValueError, match="probability"):
        CaptionNoise(**rates, named_as=swap, named_as_share=1.5)


def test_classname_captions_name_their_class_and_wrong_ones_do_not():
    captions, kinds = make_captions(LABELS[:3000], NOISY, seed=0)
    for caption, kind, label in zip(captions, kinds, LABELS):
        if kind == "classname":
            assert _names(caption, CLASSNAMES[label]), caption
        if kind in ("wrong", "empty"):
            assert not _names(caption, CLASSNAMES[label]), caption


def test_caption_noise_rejects_rates_that_are_not_probabilities():
    with pytest.raises(ValueError, match="wrong"):
        CaptionNoise(wrong=0.7, empty=0.5, classname=0.1, superclass=0.1)


def test_data_version_v2_is_cleaner_and_larger_than_v1():
    family = mini_vision.load_family()
    v1, v2 = family["data_versions"]["v1"], family["data_versions"]["v2"]
    assert CaptionNoise(**v2["captions"]).noise_rate < CaptionNoise(**v1["captions"]).noise_rate
    assert v2["pool"] > v1["pool"]


def test_pretraining_pool_and_downstream_train_split_are_disjoint_parts_of_the_official_train_set():
    from prt_bench.vision.datasets.registry import parse_split

    family = mini_vision.load_family()
    pool_name, pool_part = parse_split(family["pool_split"])
    down_name, down_part = parse_split(family["downstream"]["train_split"])
    assert pool_name == down_name == "train" and family["downstream"]["test_split"] == "test"
    pool_ids, down_ids = set(range(60000)[pool_part]), set(range(60000)[down_part])
    assert pool_ids.isdisjoint(down_ids) and len(down_ids) == 10000
    assert all(v["pool"] <= len(pool_ids) for v in family["data_versions"].values())


@pytest.mark.parametrize("study, draws", [("swapped-two-75-weak-source", "bc"), ("swapped-two-75-small-v1", "bc"),
                                          ("swapped-two-75-small-v1-even", "bc"), ("swapped-two-75-large-v1-even", "b"),
                                          ("swapped-two-75-large-v1-even-t48", "bc")])
def test_a_studys_pretraining_draws_differ_from_its_first_only_in_the_bases_seeds(study, draws):
    """The ``-b``/``-c`` draws of a P0 study move every base's seed (``seed_offset``): everything
    else, and each base's steps and data, must be the first draw's."""
    first = mini_vision.load_family(study)
    for suffix, seed in (("-" + d, 100 * (1 + "bc".index(d))) for d in draws):
        draw = mini_vision.load_family(study + suffix)
        assert {k: v for k, v in draw.items() if k not in ("bases", "variant")} == \
            {k: v for k, v in first.items() if k not in ("bases", "variant")}
        assert draw["bases"].keys() == first["bases"].keys()
        for name, base in draw["bases"].items():
            assert base["seed"] == seed, name
            assert {k: v for k, v in base.items() if k != "seed"} == \
                {k: v for k, v in first["bases"][name].items() if k != "seed"}, name
        assert mini_vision.world_hash(draw) != mini_vision.world_hash(first)


def test_the_small_crawl_study_shrinks_only_the_older_crawl():
    study, before = mini_vision.load_family("swapped-two-75-small-v1"), mini_vision.load_family("swapped-two-75")
    assert study["data_versions"]["v1"]["pool"] == 5000 < before["data_versions"]["v1"]["pool"]
    assert {k: v for k, v in study["data_versions"]["v1"].items() if k != "pool"} == \
        {k: v for k, v in before["data_versions"]["v1"].items() if k != "pool"}
    assert study["data_versions"]["v2"] == before["data_versions"]["v2"] and study["bases"] == before["bases"]


@pytest.mark.parametrize("study, before", [("swapped-two-75-small-v1-even", "swapped-two-75-small-v1"),
                                           ("swapped-two-75-even", "swapped-two-75")])
def test_an_even_study_pretrains_only_the_source_longer_as_long_as_its_bigger_sibling(study, before):
    study, before = mini_vision.load_family(study), mini_vision.load_family(before)
    assert {k: v for k, v in study.items() if k not in ("bases", "variant")} == \
        {k: v for k, v in before.items() if k not in ("bases", "variant")}
    source, bigger = study["bases"]["mini-vit-s-v1"], study["bases"]["mini-vit-m-v1"]
    assert source["steps"] == bigger["steps"] == 600 > before["bases"]["mini-vit-s-v1"]["steps"]
    assert source["data"] == bigger["data"] == "v1"
    assert {k: v for k, v in source.items() if k != "steps"} == \
        {k: v for k, v in before["bases"]["mini-vit-s-v1"].items() if k != "steps"}
    assert {n: b for n, b in study["bases"].items() if n != "mini-vit-s-v1"} == \
        {n: b for n, b in before["bases"].items() if n != "mini-vit-s-v1"}


def test_the_xs_study_narrows_only_the_two_small_vits():
    study, before = mini_vision.load_family("swapped-two-75-even-xs"), mini_vision.load_family("swapped-two-75-even")
    assert {k: v for k, v in study.items() if k not in ("bases", "variant")} == \
        {k: v for k, v in before.items() if k not in ("bases", "variant")}
    for name, base in study["bases"].items():
        narrowed = name in ("mini-vit-s-v1", "mini-vit-s-v2")
        assert (base["config"] == "mini-vit-xs") == narrowed, name
        assert {k: v for k, v in base.items() if k not in ("config", "model_cfg")} == \
            {k: v for k, v in before["bases"][name].items() if k not in ("config", "model_cfg")}, name
    xs, s = study["bases"]["mini-vit-s-v1"]["model_cfg"], before["bases"]["mini-vit-s-v1"]["model_cfg"]
    assert xs["vision_cfg"]["width"] * 2 == s["vision_cfg"]["width"]
    assert {k: v for k, v in xs["vision_cfg"].items() if k not in ("width", "head_width")} == \
        {k: v for k, v in s["vision_cfg"].items() if k not in ("width", "head_width")}
    assert xs["text_cfg"] == s["text_cfg"] and xs["embed_dim"] == s["embed_dim"]


def test_the_finer_patch_study_changes_only_the_bigger_vits_patches():
    study, before = mini_vision.load_family("swapped-two-75-small-v1-even-p4"), \
        mini_vision.load_family("swapped-two-75-small-v1-even")
    assert {k: v for k, v in study.items() if k not in ("bases", "variant")} == \
        {k: v for k, v in before.items() if k not in ("bases", "variant")}
    assert {n: b for n, b in study["bases"].items() if n != "mini-vit-m-v1"} == \
        {n: b for n, b in before["bases"].items() if n != "mini-vit-m-v1"}
    p4, p8 = study["bases"]["mini-vit-m-v1"]["model_cfg"], before["bases"]["mini-vit-m-v1"]["model_cfg"]
    assert p4["vision_cfg"]["patch_size"] * 2 == p8["vision_cfg"]["patch_size"]
    assert {k: v for k, v in p4["vision_cfg"].items() if k != "patch_size"} == \
        {k: v for k, v in p8["vision_cfg"].items() if k != "patch_size"}
    assert p4["text_cfg"] == p8["text_cfg"] and p4["embed_dim"] == p8["embed_dim"]


def test_the_large_crawl_study_grows_only_the_older_crawl():
    study, before = mini_vision.load_family("swapped-two-75-large-v1-even"), mini_vision.load_family("swapped-two-75-even")
    assert before["data_versions"]["v1"]["pool"] < study["data_versions"]["v1"]["pool"] == 40000 \
        < study["data_versions"]["v2"]["pool"]
    assert {k: v for k, v in study["data_versions"]["v1"].items() if k != "pool"} == \
        {k: v for k, v in before["data_versions"]["v1"].items() if k != "pool"}
    assert study["data_versions"]["v2"] == before["data_versions"]["v2"] and study["bases"] == before["bases"]


@pytest.mark.parametrize("draw", ["", "-b"])
def test_the_text_study_widens_only_the_small_vits_text_towers(draw):
    study, before = mini_vision.load_family("swapped-two-75-large-v1-even-t48" + draw), \
        mini_vision.load_family("swapped-two-75-large-v1-even" + draw)
    assert {k: v for k, v in study.items() if k not in ("bases", "variant")} == \
        {k: v for k, v in before.items() if k not in ("bases", "variant")}
    bigger = study["bases"]["mini-vit-m-v1"]["model_cfg"]
    for name, base in study["bases"].items():
        assert {k: v for k, v in base.items() if k not in ("config", "model_cfg")} == \
            {k: v for k, v in before["bases"][name].items() if k not in ("config", "model_cfg")}, name
        cfg, old = base["model_cfg"], before["bases"][name]["model_cfg"]
        if name in ("mini-vit-s-v1", "mini-vit-s-v2"):
            assert cfg["text_cfg"] == bigger["text_cfg"] and cfg["text_cfg"]["width"] > old["text_cfg"]["width"]
            assert cfg["vision_cfg"] == old["vision_cfg"] and cfg["embed_dim"] == old["embed_dim"]
        else:
            assert cfg == old, name


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        mini_vision.load_family("huge")


@pytest.fixture(scope="module")
def micro_world(tmp_path_factory):
    cache = tmp_path_factory.mktemp("mini_vision")
    return cache, mini_vision.build_vision_world(cache_root=cache, variant="micro", progress=False)


def test_micro_build_saves_every_base_in_open_clips_hub_layout(micro_world):
    import open_clip

    _, paths = micro_world
    assert list(paths) == list(mini_vision.load_family("micro")["bases"])
    towers = set()
    for name, path in paths.items():
        assert (path / "open_clip_config.json").is_file() and (path / "open_clip_model.safetensors").is_file()
        model = open_clip.create_model(f"local-dir:{path}")
        towers.add(type(model.visual).__name__)
        assert model.visual.preprocess_cfg["size"] in (32, (32, 32))
    assert towers == {"VisionTransformer", "ModifiedResNet"}


def test_micro_bases_record_data_version_and_measured_caption_noise(micro_world):
    from prt_bench.io import read_manifest

    _, paths = micro_world
    manifest = read_manifest(paths["mini-vit-s-v1"])
    assert manifest["data"]["version"] == "v1" and manifest["role"] == "source"
    assert set(manifest["data"]["measured_caption_shares"]) == set(KINDS)
    assert manifest["log"]["final_loss"] > 0 and manifest["timing"]["cpu_s"] > 0


def test_a_second_build_reuses_the_cache(micro_world):
    cache, paths = micro_world
    stamps = {n: (p / "open_clip_model.safetensors").stat().st_mtime_ns for n, p in paths.items()}
    again = mini_vision.build_vision_world(cache_root=cache, variant="micro", progress=False)
    assert again == paths
    assert {n: (p / "open_clip_model.safetensors").stat().st_mtime_ns for n, p in again.items()} == stamps


def test_micro_base_runs_through_the_vision_loader_and_evaluator_unchanged(micro_world):
    from prt_bench.vision.bases import load_base
    from prt_bench.vision.eval import eval_vision

    _, paths = micro_world
    base = load_base(paths["mini-rn-s-v2"])
    assert base.manifest["name"] == "mini-rn-s-v2"
    result = eval_vision("zeroshot", paths["mini-rn-s-v2"], "fashion_mnist", split="test[:64]", progress=False)
    assert 0.0 <= result["acc1"] <= 1.0


def test_the_benchmark_suites_use_the_benchmark_world_whose_bases_are_shipped():
    """The mini suite and the α ablation run on ``BENCHMARK``, and its four bases are in the
    repository with a sha256 for every file, each of which matches."""
    from prt_bench.io import file_hash
    from prt_bench.mini.shipped import SUMS, read_sums
    from prt_bench.suite.schema import load_suite

    for suite in ("mini", "mini-vision-alpha"):
        bases = load_suite(suite).sections["vision"].bases.values()
        assert {spec["variant"] for spec in bases} == {mini_vision.BENCHMARK}, suite
    family = mini_vision.load_family(mini_vision.BENCHMARK)
    ship = mini_vision.SHIPPED / mini_vision.world_hash(family)
    sums = read_sums(ship)
    assert sums["variant"] == mini_vision.BENCHMARK and sums["config_hash"] == ship.name
    assert {rel.split("/")[0] for rel in sums["files"]} == set(family["bases"])
    for rel, digest in sums["files"].items():
        assert file_hash(ship / rel) == digest, rel
    assert sorted(p.name for p in ship.iterdir()) == sorted([SUMS, *family["bases"]])


def test_mini_build_vision_reports_each_bases_head(micro_world):
    """`prt-bench mini build vision` names each base's head spread, and a collapse, before any suite runs."""
    from typer.testing import CliRunner

    from prt_bench.cli import app
    from prt_bench.vision.heads import HEAD_COSINE

    cache, paths = micro_world
    run = CliRunner().invoke(app, ["mini", "build", "vision", "--variant", "micro", "--out", str(cache),
                                   "--no-progress"])
    assert run.exit_code == 0, run.output
    spreads = mini_vision.head_spreads(paths, "micro")
    assert set(spreads) == set(paths)
    for name, head in spreads.items():
        line = next(x for x in run.output.splitlines() if x.startswith(f"# {name}: zero-shot head"))
        assert f"cosine {head['mean cosine']:.3f} (closest: {head['closest pair']}" in line
        assert ("COLLAPSED" in line) is (head["mean cosine"] > HEAD_COSINE)


def test_shipped_bases_are_taken_after_their_hashes_and_rebuild_bit_for_bit(micro_world, tmp_path, monkeypatch):
    from prt_bench.io import file_hash, read_json
    from prt_bench.mini.shipped import SUMS

    cache, paths = micro_world
    monkeypatch.setattr(mini_vision, "SHIPPED", tmp_path / "worlds")
    dest = mini_vision.ship_vision("micro", cache)
    sums = read_json(dest / SUMS)
    assert sums["threads"] and {rel.split("/")[0] for rel in sums["files"]} == set(paths)
    # a fresh cache takes every shipped base and pretrains nothing
    pretrain = mini_vision.pretrain

    def no_pretraining(*args, **kwargs):
        raise AssertionError("a shipped base was pretrained")

    monkeypatch.setattr(mini_vision, "pretrain", no_pretraining)
    fresh = mini_vision.build_vision_world(tmp_path / "fresh", "micro", progress=False)
    for rel, digest in sums["files"].items():
        assert file_hash(fresh[rel.split("/")[0]].parent / rel) == digest
    monkeypatch.setattr(mini_vision, "pretrain", pretrain)
    # pretraining every shipped base again, at the recorded thread count, gives the same bytes
    assert mini_vision.verify_shipped_vision("micro", progress=False) == {name: [] for name in paths}
    # a damaged shipped file: that base is pretrained instead (and comes out as shipped)
    weights = dest / "mini-vit-s-v1" / "open_clip_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.warns(RuntimeWarning, match="mini-vit-s-v1.*do not match.*pretraining it instead"):
        again = mini_vision.build_vision_world(tmp_path / "again", "micro", progress=False, threads=sums["threads"][0])
    assert file_hash(again["mini-vit-s-v1"] / "open_clip_model.safetensors") == \
        sums["files"]["mini-vit-s-v1/open_clip_model.safetensors"]
    # and --verify names a shipped file that a rebuild does not reproduce
    sums["files"]["mini-rn-s-v2/open_clip_model.safetensors"] = "0" * 64
    (dest / SUMS).write_text(json.dumps(sums))
    assert mini_vision.verify_shipped_vision("micro", progress=False)["mini-rn-s-v2"] == \
        ["mini-rn-s-v2/open_clip_model.safetensors"]
