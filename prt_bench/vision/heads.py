"""The base classifier: an image tower under a fixed zero-shot head.

The head is built from class names and prompt templates with open_clip's own
``build_zero_shot_classifier`` (mean of the normalised text embeddings over templates), and
logits are ``logit_scale.exp() · normalize(image_features) @ head``, as open_clip scores
image-text pairs.  FT and PRT tune only the image tower; the head stays frozen (task
vectors, Ilharco et al. 2023).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _format(template: str):
    # CLIP_benchmark writes templates with "{c}", open_clip formats positionally: accept both.
    return lambda c: template.replace("{c}", "{}").format(c)


@torch.no_grad()
def zero_shot_head(model, tokenizer, classnames: Sequence[str], templates: Sequence[str], device="cpu") -> torch.Tensor:
    """``[embed_dim, classes]`` unit-norm class embeddings from the model's text tower."""
    from open_clip import build_zero_shot_classifier

    was_training = model.training
    model.eval()
    head = build_zero_shot_classifier(model, tokenizer, list(classnames), [_format(t) for t in templates],
                                      num_classes_per_batch=10, device=device)
    model.train(was_training)
    return head.float()


# A head whose class names sit at a mean cosine above this is near collapse: the mini vision
# studies' collapsed heads measured 0.96-0.97 (FT under them never learnt shirts or sneakers),
# every sound one 0.44-0.87 (docs/mini-vision.md).  The world card's row and the mini build's check.
HEAD_COSINE = 0.90


@torch.no_grad()
def head_spread(head: torch.Tensor, classnames: Sequence[str]) -> dict:
    """How far apart a zero-shot head (``[embed_dim, classes]``, unit columns) holds the class names:
    the cosine between class embeddings, mean over every pair, and the closest pair.  A head whose
    names all sit in one direction gives nearly flat probabilities, and with the head frozen, as FT
    and PRT keep it, no tuning of the image tower can pull its closest names apart."""
    cos = head.T.float() @ head.float()
    n = cos.shape[0]
    if n < 2 or len(classnames) != n:
        raise ValueError(f"a head needs at least two classes and a name for each: {n} columns, {len(classnames)} names")
    i, j = sorted(divmod(int((cos - 3 * torch.eye(n)).argmax()), n))
    return {"mean cosine": float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))),
            "closest pair": f"{classnames[i]} / {classnames[j]}", "closest cosine": float(cos[i, j])}


def collapsed(spread: dict) -> bool:
    """Whether a ``head_spread`` is near collapse (class names at mean cosine above ``HEAD_COSINE``)."""
    return spread["mean cosine"] > HEAD_COSINE


def base_head_spread(base, task) -> dict:
    """``head_spread`` of a loaded ``Base`` on a task spec (its class names and prompts), the head its
    zero-shot evaluation builds."""
    return head_spread(zero_shot_head(base.model, base.tokenizer, task.classnames, task.templates), task.classnames)


class ZeroShotClassifier(nn.Module):
    """``f(x) = exp(logit_scale) · normalize(tower(x)) @ head``, head and scale frozen."""

    def __init__(self, tower: nn.Module, head: torch.Tensor, logit_scale: torch.Tensor):
        super().__init__()
        self.tower = tower
        self.register_buffer("head", head.detach().clone())
        self.register_buffer("scale", logit_scale.detach().exp().clone().reshape(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = F.normalize(self.tower(images).float(), dim=-1)
        return self.scale * features @ self.head


def classifier_for(base, classnames: Sequence[str], templates: Sequence[str], device="cpu") -> ZeroShotClassifier:
    """The zero-shot classifier of a loaded ``Base`` (shares its image tower, not a copy)."""
    head = zero_shot_head(base.model, base.tokenizer, classnames, templates, device=device)
    return ZeroShotClassifier(base.model.visual, head, base.model.logit_scale).to(device)
