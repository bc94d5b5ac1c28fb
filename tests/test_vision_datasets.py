"""Vision datasets: the paper's eight are complete, Fashion-MNIST reads from the data dir,
users' folders and WebDataset shards load, and mismatched label sets are visible."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch

from prt_bench.vision.datasets import PAPER_DATASETS, get_dataset, get_spec

PAPER = ["aircraft", "caltech101", "cars", "cifar100", "country211", "cub", "flowers", "resisc45"]
SIZES = {"aircraft": 100, "caltech101": 102, "cars": 196, "cifar100": 100, "country211": 211, "cub": 200,
         "flowers": 102, "resisc45": 45}


def test_registry_holds_the_papers_eight_datasets():
    assert sorted(PAPER_DATASETS) == PAPER


@pytest.mark.parametrize("name", PAPER)
def test_paper_dataset_has_class_names_templates_and_a_source(name):
    spec = get_spec(name)
    names = spec.classnames
    assert len(names) == SIZES[name] == len(set(names))
    assert all(n.strip() == n and n for n in names)
    assert spec.templates and all("{c}" in t for t in spec.templates)
    assert spec.source


def test_cub_class_names_match_the_shared_list():
    from prt_bench.data import require_data_file

    lines = require_data_file("cub200_2011_classes/classes.txt").read_text().split("\n")
    folders = [line.split()[1] for line in lines if line.strip()]
    assert get_spec("cub").classnames == [f.split(".", 1)[1].replace("_", " ") for f in folders]


def test_fashion_mnist_reads_the_official_idx_files():
    ds = get_dataset("fashion_mnist", "test[:50]")
    image, label, index = ds[3]
    assert len(ds) == 50 and image.shape == (1, 28, 28) and image.dtype == torch.uint8
    assert index == 3 and 0 <= label < 10 and len(ds.classnames) == 10
    full = get_dataset("fashion_mnist", "test")
    assert len(full) == 10000 and torch.equal(full[3][0], image)


def test_split_slices_pick_disjoint_parts_of_train():
    a = get_dataset("fashion_mnist", "train[:20]")
    b = get_dataset("fashion_mnist", "train[59980:]")
    assert len(a) == len(b) == 20 and not torch.equal(a.images, b.images)


def test_unknown_dataset_and_split_are_refused():
    with pytest.raises(KeyError, match="unknown dataset"):
        get_dataset("imagenet-9000")
    with pytest.raises(ValueError, match="splits"):
        get_dataset("fashion_mnist", "validation")


def test_missing_paper_dataset_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="wds_cars"):
        get_dataset("cars", "test", data_dir=tmp_path)


def _png(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (12, 9), color).save(buf, format="PNG")
    return buf.getvalue()


def test_image_folder_dataset_uses_its_own_class_names_and_templates(tmp_path):
    for name, color in [("cat", (255, 0, 0)), ("dog", (0, 0, 255))]:
        (tmp_path / "train" / name).mkdir(parents=True)
        (tmp_path / "train" / name / "a.png").write_bytes(_png(color))
    (tmp_path / "templates.txt").write_text("a picture of a {c}.\n")
    ds = get_dataset(str(tmp_path), "train")
    assert ds.classnames == ["cat", "dog"] and ds.templates == ["a picture of a {c}."]
    image, label, _ = ds[1]
    assert image.shape == (3, 9, 12) and label == 1 and image[2].float().mean() == 255


def test_paper_dataset_reads_webdataset_shards_from_the_data_dir(tmp_path):
    split = tmp_path / "resisc45" / "test"
    split.mkdir(parents=True)
    with tarfile.open(split / "0.tar", "w") as tar:
        for key, (data, ext) in {"s0": (_png((1, 2, 3)), "png"), "s1": (_png((9, 9, 9)), "png")}.items():
            for suffix, blob in [(ext, data), ("cls", str(int(key[1]) * 7).encode())]:
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    ds = get_dataset("resisc45", "test", data_dir=tmp_path)
    assert len(ds) == 2 and ds.labels.tolist() == [0, 7] and len(ds.classnames) == 45
    assert ds[1][0].shape == (3, 9, 12)
