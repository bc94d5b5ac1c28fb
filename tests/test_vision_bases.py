"""Vision bases: one loader for named open_clip models, local folders and weight files."""

from __future__ import annotations

import pytest
import torch

from prt_bench.vision import bases, heads, transforms
from prt_bench.vision.datasets import get_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = bases.new_base("prt-tiny-vit", seed=0)
    out = bases.save_base(base.model, tmp_path_factory.mktemp("tiny-vit"), base.model_cfg, base.preprocess_cfg, role="test")
    return base, out


@pytest.fixture(scope="module")
def images():
    ds = get_dataset("fashion_mnist", "test[:16]")
    return ds, ds.images


def test_saved_folder_reloads_to_the_same_classifier(tiny, images):
    base, folder = tiny
    ds, raw = images
    loaded = bases.load_base(folder)
    a = heads.classifier_for(base, ds.classnames, ds.templates).eval()
    b = heads.classifier_for(loaded, ds.classnames, ds.templates).eval()
    x = transforms.prepare(raw, loaded.preprocess_cfg)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert loaded.manifest["role"] == "test" and loaded.image_size == 32


def test_saved_folder_is_open_clips_own_layout(tiny):
    import open_clip

    _, folder = tiny
    model = open_clip.create_model(f"local-dir:{folder}")
    assert torch.equal(model.visual.conv1.weight, bases.load_base(folder).model.visual.conv1.weight)


def test_named_architecture_takes_a_safetensors_weights_file(tiny):
    _, folder = tiny
    loaded = bases.load_base(f"prt-tiny-vit:{folder / bases.WEIGHTS_FILE}")
    assert torch.equal(loaded.model.visual.conv1.weight, bases.load_base(folder).model.visual.conv1.weight)


def test_pickled_weights_are_refused(tmp_path):
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"not read")
    with pytest.raises(ValueError, match="safetensors"):
        bases.load_base(f"prt-tiny-vit:{pickle}")


def test_paper_base_specs_are_known_to_open_clip_without_downloading():
    for spec in ["RN50:openai", "RN101:openai", "ViT-B-16:openai", "ViT-B-16:laion400m_e32",
                 "ViT-B-16:laion2b_s34b_b88k", "ViT-L-14:laion2b_s32b_b82k", "ViT-B-16:datacomp_xl_s13b_b90k"]:
        bases.check_spec(spec)
    with pytest.raises(ValueError, match="unknown pretrained tag"):
        bases.check_spec("ViT-B-16:laion400m_e99")
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        bases.check_spec("ViT-Z-99:openai")


def test_zero_shot_logits_are_scaled_by_the_models_logit_scale(tiny, images):
    base, _ = tiny
    ds, raw = images
    clf = heads.classifier_for(base, ds.classnames, ds.templates).eval()
    x = transforms.prepare(raw, base.preprocess_cfg)
    with torch.no_grad():
        cos = torch.nn.functional.normalize(base.model.encode_image(x), dim=-1) @ clf.head
        assert torch.allclose(clf(x), base.model.logit_scale.exp() * cos, atol=1e-5)
    assert clf.head.shape == (64, 10) and torch.allclose(clf.head.norm(dim=0), torch.ones(10), atol=1e-5)


def test_prepare_turns_grey_images_of_any_size_into_model_inputs():
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    odd = [torch.randint(0, 256, (3, 20, 40), dtype=torch.uint8)]
    cfg = {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    assert transforms.prepare(grey, cfg).shape == (2, 3, 32, 32)
    assert transforms.prepare(odd, cfg).shape == (1, 3, 32, 32)
    white = transforms.prepare(torch.full((1, 1, 28, 28), 255, dtype=torch.uint8), cfg)
    assert torch.allclose(white, torch.ones_like(white), atol=1e-3)
