"""Every dataset by name: class names, prompt templates and where the images come from.

The paper's eight (Chijiwa et al. 2025, §5.1) follow CLIP_benchmark: class names and
templates as there, images from its WebDataset exports on the Hugging Face hub
(``clip-benchmark/wds_*``).  Each is looked for first in the data dir
(``<data dir>/<name>/``, image-folder or WebDataset layout, see ``image_folder``), then on
the hub.  ``fashion_mnist`` reads the official idx files; any other folder path is a user's
own image-folder dataset.

Splits may be sliced like Hugging Face's: ``train[:5000]``, ``train[50000:]``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from prt_bench.data import data_dir as resolve_data_dir
from prt_bench.data import require_data_file
from prt_bench.vision.datasets import fashion_mnist, image_folder
from prt_bench.vision.datasets.templates import DEFAULT_TEMPLATES, TEMPLATES

CLASSNAMES_DIR = Path(__file__).parent / "classnames"
HUB = "https://huggingface.co/datasets/"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    source: str  # where the images come from: a hub dataset id or "data dir"
    splits: tuple[str, ...] = ("train", "test")
    paper: bool = True

    @property
    def classnames(self) -> list[str]:
        if self.name == "cub":
            return cub_classnames()
        return image_folder.read_lines(CLASSNAMES_DIR / f"{self.name}.txt") or []

    @property
    def templates(self) -> list[str]:
        return TEMPLATES[self.name]


def cub_classnames(data_dir: str | os.PathLike | None = None) -> list[str]:
    """CUB's 200 species from ``cub200_2011_classes/classes.txt`` in the data dir.

    Read where the data lives rather than shipped: the list comes with no licence of its own.
    Lines are ``"1 001.Black_footed_Albatross"``; the name is the folder name, underscores as spaces.
    """
    lines = require_data_file("cub200_2011_classes/classes.txt", data_dir).read_text(encoding="utf-8").splitlines()
    return [line.split(maxsplit=1)[1].split(".", 1)[1].replace("_", " ").strip() for line in lines if line.strip()]


REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("aircraft", "FGVC-Aircraft (variants)", "clip-benchmark/wds_fgvc_aircraft"),
    DatasetSpec("caltech101", "Caltech-101 (VTAB split)", "clip-benchmark/wds_vtab-caltech101"),
    DatasetSpec("cars", "Stanford Cars", "clip-benchmark/wds_cars"),
    DatasetSpec("cifar100", "CIFAR-100", "clip-benchmark/wds_vtab-cifar100"),
    DatasetSpec("country211", "Country211", "clip-benchmark/wds_country211", ("train", "valid", "test")),
    # CUB has no CLIP_benchmark export: the official archive (Caltech, 2011), unpacked into the
    # image-folder layout under the data dir (class folders "001.Black_footed_Albatross" -> use numbers).
    DatasetSpec("cub", "CUB-200-2011", "https://data.caltech.edu/records/65de6-vp158"),
    DatasetSpec("flowers", "Oxford Flowers-102 (VTAB split)", "clip-benchmark/wds_vtab-flowers"),
    DatasetSpec("resisc45", "RESISC45 (VTAB split)", "clip-benchmark/wds_vtab-resisc45"),
    DatasetSpec("fashion_mnist", "Fashion-MNIST", "data dir: fashion_mnist/*-idx*-ubyte.gz", paper=False),
]}
PAPER_DATASETS = [name for name, s in REGISTRY.items() if s.paper]


class ImageClassification(torch.utils.data.Dataset):
    """Items are ``(image uint8 [C, H, W], label, index)``; the index lets training cache per-image values."""

    def __init__(self, name: str, split: str, classnames: list[str], templates: list[str], images, labels):
        self.name, self.split = name, split
        self.classnames, self.templates = list(classnames), list(templates)
        self.images = images  # a uint8 tensor [N, C, H, W], or a list of paths / encoded bytes
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        if not isinstance(image, torch.Tensor):
            image = image_folder.decode(image)
        return image, int(self.labels[i]), i

    def select(self, indices) -> "ImageClassification":
        indices = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[indices] if isinstance(self.images, torch.Tensor) else [self.images[i] for i in indices.tolist()]
        return ImageClassification(self.name, self.split, self.classnames, self.templates, images, self.labels[indices])


def parse_split(split: str) -> tuple[str, slice]:
    m = re.fullmatch(r"(\w+)(?:\[(-?\d*):(-?\d*)\])?", split)
    if not m:
        raise ValueError(f"bad split {split!r}: use NAME or NAME[start:stop]")
    start, stop = (int(x) if x else None for x in (m.group(2), m.group(3)))
    return m.group(1), slice(start, stop)


def get_spec(name: str) -> DatasetSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(REGISTRY)} or a folder path")
    return REGISTRY[name]


def _from_disk(name: str, root: Path, split: str, classnames: list[str] | None, templates: list[str] | None):
    classnames = image_folder.read_lines(root / "classnames.txt") or classnames
    templates = (image_folder.read_lines(root / "templates.txt")
                 or image_folder.read_lines(root / "zeroshot_classification_templates.txt") or templates)
    if any((root / split).glob("*.tar")):
        images, labels = image_folder.wds_items(root, split)
        if classnames is None:
            raise ValueError(f"{root}: WebDataset shards need classnames.txt")
    else:
        images, labels, classnames = image_folder.folder_items(root, split, classnames)
    return ImageClassification(name, split, classnames, templates or DEFAULT_TEMPLATES, images, labels)


def _from_hub(spec: DatasetSpec, split: str) -> ImageClassification:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or spec.source.startswith("http"):
        raise FileNotFoundError(
            f"{spec.name}: not in the data dir (<data dir>/{spec.name}/{split}/...) and the hub is off; "
            f"get it from {spec.source if spec.source.startswith('http') else HUB + spec.source}")
    from huggingface_hub import snapshot_download

    try:
        root = Path(snapshot_download(spec.source, repo_type="dataset", allow_patterns=[f"{split}/*", "*.txt"]))
    except Exception as e:  # offline, no such repo, no access: say where the data should come from
        raise FileNotFoundError(f"{spec.name}: not in the data dir and could not fetch {HUB + spec.source} ({e})") from e
    return _from_disk(spec.name, root, split, spec.classnames, spec.templates)


def get_dataset(name: str, split: str = "test", data_dir: str | os.PathLike | None = None) -> ImageClassification:
    """A dataset by registry name (or a folder path for users' own data), e.g. ``get_dataset("fashion_mnist", "train[:1000]")``."""
    base_split, part = parse_split(split)
    if name not in REGISTRY and Path(name).expanduser().is_dir():
        ds = _from_disk(Path(name).name, Path(name).expanduser(), base_split, None, None)
    else:
        spec = get_spec(name)
        if base_split not in spec.splits:
            raise ValueError(f"{name} has splits {list(spec.splits)}, not {base_split!r}")
        if name == "fashion_mnist":
            images, labels = fashion_mnist.load(base_split, data_dir)
            ds = ImageClassification(name, base_split, spec.classnames, spec.templates, images, labels)
        else:
            root = resolve_data_dir(data_dir)
            local = root / name if root is not None else None
            if local is not None and (local / base_split).is_dir():
                ds = _from_disk(name, local, base_split, spec.classnames, spec.templates)
            else:
                ds = _from_hub(spec, base_split)
    if part != slice(None):
        ds = ds.select(range(len(ds))[part])
        ds.split = split
    return ds
