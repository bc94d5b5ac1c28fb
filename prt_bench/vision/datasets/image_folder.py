"""Images on disk: a folder per class, and CLIP_benchmark's WebDataset shards.

Image-folder layout (users' own data, or a paper dataset exported locally)::

    ROOT/classnames.txt              optional: one class name per line, label order
    ROOT/templates.txt               optional: one prompt per line, "{c}" = class name
    ROOT/<split>/<class>/<image>     <class> is the label number ("0", "017") or the class name

WebDataset layout (``clip-benchmark/wds_*`` on the Hugging Face hub)::

    ROOT/<split>/*.tar               members KEY.{jpg,jpeg,png,webp} + KEY.cls (label number)
    ROOT/classnames.txt, ROOT/zeroshot_classification_templates.txt
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def read_lines(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def decode(data: bytes | Path) -> torch.Tensor:
    """An image file as a uint8 ``[3, H, W]`` tensor (RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def folder_items(root: Path, split: str, classnames: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    """(image paths, labels, class names) of ``root/split``."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"no split folder {split_dir}")
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir())
    numbered = all(p.name.isdigit() for p in folders)
    if classnames is None:
        if numbered:
            raise ValueError(f"{root}: class folders are numbers, so classnames.txt is needed")
        classnames = [p.name for p in folders]
    paths, labels = [], []
    for folder in folders:
        if numbered:
            label = int(folder.name)
        elif folder.name in classnames:
            label = classnames.index(folder.name)
        else:
            raise ValueError(f"{folder}: folder name is neither a label number nor a class name")
        if not 0 <= label < len(classnames):
            raise ValueError(f"{folder}: label {label} outside the {len(classnames)} classes")
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(label)
    return paths, labels, classnames


def wds_items(root: Path, split: str) -> tuple[list[bytes], list[int]]:
    """(encoded images, labels) of every ``root/split/*.tar`` shard, in shard order."""
    shards = sorted((root / split).glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"no WebDataset shards in {root / split}")
    images, labels = [], []
    for shard in shards:
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.isfile():
                    key, _, ext = m.name.rpartition(".")
                    members.setdefault(key, {})[ext.lower()] = tar.extractfile(m).read()
        for key in sorted(members):
            parts = members[key]
            image = next((parts[e] for e in ("webp", "png", "jpg", "jpeg") if e in parts), None)
            if image is not None and "cls" in parts:
                images.append(image)
                labels.append(int(parts["cls"].decode().strip()))
    return images, labels
