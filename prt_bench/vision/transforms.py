"""Raw images to model inputs, following the model's own ``preprocess_cfg``.

Datasets yield uint8 images of any size and 1 or 3 channels; each model gets them resized
(shortest side, as open_clip's eval transform), centre-cropped and normalised with *its*
mean and std -- a reward and a target of different architectures see the same image each in
its own way.  Deterministic: no random augmentation, which is what lets training cache the
base's log-probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _size(cfg: dict) -> int:
    size = cfg.get("size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _one(image: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize the shortest side of one float image ``[C, H, W]`` to ``size`` and centre-crop."""
    h, w = image.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        image = F.interpolate(image[None], size=(nh, nw), mode=mode, align_corners=False,
                              antialias=True)[0]
        top, left = (nh - size) // 2, (nw - size) // 2
        image = image[:, top:top + size, left:left + size]
    return image


def prepare(images, cfg: dict) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` (or a list of ``[C, H, W]``) -> normalised float ``[B, 3, S, S]``."""
    size = _size(cfg)
    mode = "bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear"
    if isinstance(images, torch.Tensor):
        batch = images.float() / 255.0
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        h, w = batch.shape[-2:]
        if (h, w) != (size, size):
            batch = torch.stack([_one(x, size, mode) for x in batch]) if h != w else F.interpolate(
                batch, size=(size, size), mode=mode, align_corners=False, antialias=True)
    else:
        batch = torch.stack([_one((x.float() / 255.0).expand(3, -1, -1) if x.shape[0] == 1 else x.float() / 255.0,
                                  size, mode) for x in images])
    mean = torch.tensor(cfg.get("mean", OPENAI_MEAN), dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", OPENAI_STD), dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return ((batch - mean) / std).contiguous()


def to_device(images, device):
    """Move raw images (a batch tensor or a list) to ``device``, so resizing runs there too."""
    if isinstance(images, torch.Tensor):
        return images.to(device)
    return [x.to(device) for x in images]


def collate(items):
    """DataLoader collate: stack images when they share a size, else keep a list (``prepare`` takes both)."""
    images, labels, index = zip(*items)
    same = all(x.shape == images[0].shape for x in images)
    return (torch.stack(images) if same else list(images)), torch.tensor(labels), torch.tensor(index)
