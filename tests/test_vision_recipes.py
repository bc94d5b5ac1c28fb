"""Vision recipes and evaluator on tiny open_clip models and real Fashion-MNIST images:
FT and PRT learn, a reward moves to a base of another architecture, the cache changes
nothing, Prop. 3.1 holds, label sets are checked, and the commands work end to end."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prt_bench import prt
from prt_bench.vision import bases, eval as vision_eval, heads, transforms
from prt_bench.vision.datasets import ImageClassification, get_dataset
from prt_bench.vision.train import train_vision

FAST = dict(steps=40, batch_size=64, lr=3e-3, warmup=5, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    vit = bases.new_base("prt-tiny-vit", seed=0)
    rn = bases.new_base("prt-tiny-rn", seed=1)
    w = {
        "root": root,
        "vit": bases.save_base(vit.model, root / "vit", vit.model_cfg, vit.preprocess_cfg),
        "rn": bases.save_base(rn.model, root / "rn", rn.model_cfg, rn.preprocess_cfg),
        "train": get_dataset("fashion_mnist", "train[:512]"),
        "test": get_dataset("fashion_mnist", "test[:300]"),
    }
    w["ft"] = train_vision("ft", w["vit"], w["train"], root / "ft", **FAST)
    w["prt"] = train_vision("prt", w["vit"], w["train"], root / "prt", **FAST)
    return w


def evaluate(method, target, data, **kw):
    return vision_eval.eval_vision(method, target, data, progress=False, **kw)


def test_ft_lowers_the_training_loss_and_beats_zero_shot_on_held_out_images(world):
    on_train = evaluate("ft", world["ft"], world["train"])
    assert on_train["nll"] < evaluate("zeroshot", world["vit"], world["train"])["nll"] - 0.5
    assert evaluate("ft", world["ft"], world["test"])["acc1"] > evaluate("zeroshot", world["vit"], world["test"])["acc1"] + 0.2


def test_prt_lowers_the_training_loss_and_beats_zero_shot_on_held_out_images(world):
    on_train = evaluate("prt", world["vit"], world["train"], reward=world["prt"])
    assert on_train["nll"] < evaluate("zeroshot", world["vit"], world["train"])["nll"] - 0.5
    prt_acc = evaluate("prt", world["vit"], world["test"], reward=world["prt"])["acc1"]
    assert prt_acc > evaluate("zeroshot", world["vit"], world["test"])["acc1"] + 0.2


def test_reward_moves_to_a_base_with_another_image_tower(world):
    swapped = evaluate("prt", world["rn"], world["test"], reward=world["prt"])
    assert swapped["config"]["target"] == str(world["rn"])
    assert swapped["acc1"] > evaluate("zeroshot", world["rn"], world["test"])["acc1"] + 0.2


def test_reward_only_accuracy_uses_softmax_of_the_reward_alone(world):
    alone = evaluate("reward", None, world["test"], reward=world["prt"])
    reward = heads.classifier_for(bases.load_base(world["prt"]), world["test"].classnames, world["test"].templates).eval()
    with torch.no_grad():
        x = transforms.prepare(world["test"].images, bases.load_base(world["prt"]).preprocess_cfg)
        acc = float((reward(x).argmax(-1) == world["test"].labels).float().mean())
    assert alone["acc1"] == pytest.approx(acc)


def test_result_has_clip_benchmark_metrics_config_and_timings(world, tmp_path):
    out = tmp_path / "r.json"
    result = evaluate("eft", world["rn"], world["test"], ft=world["ft"], pt=world["vit"], out=out)
    assert json.loads(out.read_text())["acc1"] == result["acc1"]
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert 0.0 <= result[key] <= 1.0
    assert result["acc5"] >= result["acc1"]
    assert result["config"]["method"] == "eft" and result["timings"]["inference_s"] > 0


def test_prop_3_1_implicit_reward_of_ft_on_its_base_reproduces_ft(world):
    data = world["test"]
    ft = heads.classifier_for(bases.load_base(world["ft"]), data.classnames, data.templates).eval()
    base = bases.load_base(world["vit"])
    pt = heads.classifier_for(base, data.classnames, data.templates).eval()
    with torch.no_grad():
        x = transforms.prepare(data.images, base.preprocess_cfg)
        ft_logits, pt_logits = ft(x), pt(x)
    r = prt.implicit_reward(ft_logits, pt_logits)
    combined = vision_eval.combine("prt", {"target": pt_logits, "reward": r})
    assert torch.allclose(combined, torch.log_softmax(ft_logits, -1), atol=1e-4)
    # EFT on the FT model's own base is the FT model.
    assert evaluate("eft", world["vit"], data, ft=world["ft"], pt=world["vit"])["acc1"] == evaluate("ft", world["ft"], data)["acc1"]


def test_cached_and_recomputed_base_logits_train_the_same_reward(world, tmp_path):
    """The cache serves the base's logits instead of recomputing them: equal in exact
    arithmetic, not bitwise (a GEMM row's rounding depends on the batch it sits in).  So this
    compares what the cache is for within float32 tolerances: the loss at every step, the
    trained reward's logits on held-out images, and every weight but one slice.  That slice is
    the attention *key* bias, on which softmax does not depend (q.(k + b) shifts a query's
    row by a constant): its gradient is zero up to rounding (~1e-10), and Adam's normalisation
    turns that noise into steps of the learning rate's size, so its values are arbitrary."""
    small = world["train"].select(range(64))
    args = dict(steps=4, batch_size=32, lr=1e-3, warmup=1, progress=False)  # two epochs: the cache is reused
    a = train_vision("prt", world["vit"], small, tmp_path / "cached", cache_base=True, **args)
    b = train_vision("prt", world["vit"], small, tmp_path / "uncached", cache_base=False, **args)

    loss_a, loss_b = (json.loads((p / "train_log.json").read_text())["loss"] for p in (a, b))
    assert loss_a == pytest.approx(loss_b, rel=1e-5, abs=1e-6)

    data = world["test"]
    rewards = [heads.classifier_for(bases.load_base(p), data.classnames, data.templates).eval() for p in (a, b)]
    with torch.no_grad():
        x = transforms.prepare(data.images[:64], bases.load_base(a).preprocess_cfg)
        ra, rb = (r(x) for r in rewards)
    assert torch.allclose(ra, rb, rtol=0, atol=1e-4)
    assert torch.equal(ra.argmax(-1), rb.argmax(-1))

    wa, wb = load_file(a / bases.WEIGHTS_FILE), load_file(b / bases.WEIGHTS_FILE)
    for k in wa:
        va, vb = wa[k], wb[k]
        if k.endswith("attn.in_proj_bias"):  # [query | key | value]: drop the key third
            d = va.shape[0] // 3
            va, vb = torch.cat([va[:d], va[2 * d:]]), torch.cat([vb[:d], vb[2 * d:]])
        assert torch.allclose(va, vb, rtol=0, atol=1e-5), k
    assert not torch.equal(wa["visual.conv1.weight"], load_file(world["vit"] / bases.WEIGHTS_FILE)["visual.conv1.weight"])


def test_training_is_deterministic_under_a_seed(world, tmp_path):
    small = world["train"].select(range(64))
    args = dict(steps=2, batch_size=32, lr=1e-3, warmup=1, progress=False)
    runs = [train_vision("ft", world["vit"], small, tmp_path / f"s{i}", seed=s, **args) for i, s in enumerate([7, 7, 8])]
    w = [load_file(p / bases.WEIGHTS_FILE) for p in runs]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(torch.equal(w[0][k], w[2][k]) for k in w[0])


def test_checkpoint_is_a_whole_open_clip_model_with_its_recipe(world):
    import open_clip

    model = open_clip.create_model(f"local-dir:{world['prt']}")
    base = load_file(world["vit"] / bases.WEIGHTS_FILE)
    state = model.state_dict()
    assert torch.equal(state["text_projection"], base["text_projection"])  # the training base's head
    assert not torch.equal(state["visual.proj"], base["visual.proj"])  # the tuned reward tower
    manifest = bases.load_base(world["prt"]).manifest
    assert manifest["kind"] == "vision-reward" and manifest["config"]["method"] == "prt"
    assert manifest["classnames"] == world["train"].classnames


def test_label_set_mismatch_is_refused(world):
    data = world["test"]
    other = ImageClassification("shuffled", "test", data.classnames[::-1], data.templates, data.images, data.labels)
    with pytest.raises(ValueError, match="label sets differ"):
        evaluate("prt", world["rn"], other, reward=world["prt"])
    with pytest.raises(ValueError, match="label sets differ"):
        evaluate("eft", world["rn"], other, ft=world["ft"], pt=world["vit"])


def test_missing_model_for_a_method_is_refused(world):
    with pytest.raises(ValueError, match="needs --reward"):
        evaluate("prt", world["vit"], world["test"])


def test_commands_train_and_evaluate_end_to_end(world, tmp_path):
    from typer.testing import CliRunner

    from prt_bench.cli import app

    runner = CliRunner()
    out = tmp_path / "reward"
    r = runner.invoke(app, ["train", "vision", "--method", "prt", "--base", str(world["vit"]), "--dataset",
                            "fashion_mnist", "--split", "train[:64]", "--out", str(out), "--steps", "2",
                            "--batch-size", "32", "--alpha", "0.01"])
    assert r.exit_code == 0, r.output
    assert bases.load_base(out).manifest["config"]["alpha"] == 0.01
    result = tmp_path / "eval.json"
    r = runner.invoke(app, ["eval", "vision", "--method", "prt", "--target", str(world["vit"]), "--reward", str(out),
                            "--dataset", "fashion_mnist", "--split", "test[:64]", "--out", str(result)])
    assert r.exit_code == 0, r.output
    assert set(json.loads(result.read_text())) >= {"acc1", "acc5", "mean_per_class_recall", "config", "timings"}
    r = runner.invoke(app, ["train", "vision", "--method", "dpo", "--base", str(world["rn"]), "--dataset",
                            "fashion_mnist", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "method must be one of" in r.output


def test_images_read_from_disk_train_exactly_as_the_same_images_in_memory(world, tmp_path):
    from PIL import Image

    small = world["train"].select(range(16))
    root = tmp_path / "folder"
    for i in range(16):
        label = int(small.labels[i])
        (root / "train" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(small.images[i, 0].numpy()).save(root / "train" / str(label) / f"{i:03d}.png")
    (root / "classnames.txt").write_text("\n".join(small.classnames) + "\n")
    (root / "templates.txt").write_text("\n".join(small.templates) + "\n")
    same_order = small.select(sorted(range(16), key=lambda i: (int(small.labels[i]), i)))
    args = dict(steps=2, batch_size=8, lr=1e-3, warmup=1, progress=False)
    disk = train_vision("prt", world["vit"], str(root), tmp_path / "disk", **args)
    memory = train_vision("prt", world["vit"], same_order, tmp_path / "memory", **args)
    wd, wm = load_file(disk / bases.WEIGHTS_FILE), load_file(memory / bases.WEIGHTS_FILE)
    assert all(torch.equal(wd[k], wm[k]) for k in wd)


def test_entropy_regulariser_keeps_the_reward_distribution_flatter(world, tmp_path):
    small = world["train"].select(range(64))
    args = dict(steps=10, batch_size=32, lr=3e-3, warmup=1, progress=False)
    entropy = {}
    for alpha in (0.0, 5.0):
        out = train_vision("prt", world["vit"], small, tmp_path / f"a{alpha}", alpha=alpha, **args)
        reward = heads.classifier_for(bases.load_base(out), small.classnames, small.templates).eval()
        with torch.no_grad():
            r = reward(transforms.prepare(small.images, bases.load_base(out).preprocess_cfg))
        entropy[alpha] = float(prt.reward_entropy(r).mean())
    assert entropy[5.0] > entropy[0.0] + 0.1


def test_prt_evaluates_at_the_lam_the_reward_was_trained_with_unless_given(world, tmp_path):
    small = world["train"].select(range(32))
    reward = train_vision("prt", world["vit"], small, tmp_path / "lam2", lam=2.0, steps=1, batch_size=32,
                          progress=False)
    data = world["test"].select(range(32))
    assert evaluate("prt", world["vit"], data, reward=reward)["config"]["lam"] == 2.0
    assert evaluate("prt", world["vit"], data, reward=reward, lam=0.5)["config"]["lam"] == 0.5
    assert evaluate("prt", world["vit"], data, reward=world["prt"])["config"]["lam"] == 1.0
