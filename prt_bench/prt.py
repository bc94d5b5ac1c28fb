"""The equations of Portable Reward Tuning and its baselines, and nothing else.

Chijiwa et al., "Portable Reward Tuning", ICML 2025 (arXiv 2502.12776); EFT from Mitchell
et al., ICLR 2024; proxy-tuning from Liu et al., 2024.  ``f`` are logits over labels (vision)
or over the vocabulary at one position (language); everything here works on the last axis,
so the same functions serve a ``[batch, classes]`` classifier and a
``[batch, positions, vocab]`` language model.  Every function returns normalised
log-probabilities and computes in float32 whatever dtype comes in.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _log_softmax(v: Tensor) -> Tensor:
    """log softmax in float32 that never returns NaN.

    +inf can only come from overflow of huge finite logits and is capped; NaN only from
    (-inf) + (+inf) in a combination, where one model forbids the token (log-prob -inf), so it
    stays forbidden.  A row that is -inf everywhere has no distribution and stays -inf.
    """
    v = v.float()
    v = torch.nan_to_num(v, nan=float("-inf"), posinf=torch.finfo(v.dtype).max, neginf=float("-inf"))
    return torch.nan_to_num(torch.log_softmax(v, dim=-1), nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))


def log_probs(logits: Tensor) -> Tensor:
    """``log softmax(f)`` as every combination here normalises a model's logits (float32, no NaN):
    what a cached pass of the frozen base stores, to be given to ``prt_loss(base_is_logprobs=True)``."""
    return _log_softmax(logits)


def shared_vocab(*logits: Tensor) -> list[Tensor]:
    """Cut every tensor to the common prefix of the last axis.

    Models that share a tokenizer can still differ in output width (Qwen2-0.5B has 151936
    logits, Qwen2-7B 152064: padding rows no token id reaches), so combinations run on the
    first ``min(width)`` entries.  Whether the tokenizers really match is checked where the
    models are loaded (``prt_bench.lm.vocab``), not here.
    """
    width = min(t.shape[-1] for t in logits)
    return [t[..., :width] for t in logits]


def prt_logprobs(base_logits: Tensor, reward: Tensor, lam: float = 1.0) -> Tensor:
    """Eq. 6 (training) and eq. 10 (inference with a swapped base).

    ``v = log softmax(f(x; θ_pt)) + r(x; θ) / λ``, ``p = softmax(v)``; returns ``log p``.
    The paper uses λ = 1 throughout.
    """
    if not (math.isfinite(lam) and lam > 0):  # `lam <= 0` alone lets NaN through
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    base_logits, reward = shared_vocab(base_logits, reward)
    return _log_softmax(_log_softmax(base_logits) + reward.float() / lam)


def combined_reward(rewards: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """Reward arithmetic: ``r = Σ_i w_i r_i``, several rewards applied to one base.

    With PRT the combined distribution is ``π_base · Π_i exp(w_i r_i / λ)``, a product of
    experts over the base, the way task vectors add in weight space.
    """
    if len(rewards) != len(weights) or not rewards:
        raise ValueError(f"need one weight per reward, got {len(rewards)} rewards and {len(weights)} weights")
    rewards = shared_vocab(*rewards)
    return sum(w * r.float() for w, r in zip(weights, rewards))


def reward_entropy(reward: Tensor) -> Tensor:
    """``H(softmax(r(x; θ)))`` per row: the entropy of the reward-only distribution (eq. 12).

    For finite rewards (every trained model's) ``H = logsumexp(r) − Σ softmax(r) · r``, three
    passes over the vocabulary; a reward that rules tokens out (-inf) takes the guarded form.
    """
    r = reward.float()
    if bool(torch.isfinite(r).all()):
        return torch.logsumexp(r, -1) - (torch.softmax(r, -1) * r).sum(-1)
    log_p = _log_softmax(r)
    p = log_p.exp()
    # 0 · log 0 = 0, and no gradient leaks through tokens the reward rules out (-inf).
    return -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1)


def prt_loss(
    base_logits: Tensor,
    reward: Tensor,
    labels: Tensor,
    lam: float = 1.0,
    alpha: float = 0.0,
    ignore_index: int = -100,
    *,
    base_is_logprobs: bool = False,
) -> Tensor:
    """Eq. 6 with the entropy regulariser of eq. 12: ``L̃ = CE(p, y) − α · mean_x H(softmax(r))``.

    ``base_logits`` come from the frozen base (no gradient is taken through them); with
    ``base_is_logprobs`` they are already ``log_probs(f_base)`` (a cached pass).  The mean of the
    entropy runs over the same positions as the cross-entropy (the ones whose label is not
    ``ignore_index``).  With a finite reward ``v = log π_base + r/λ`` holds no NaN, so the
    cross-entropy of ``softmax(v)`` is the fused one -- bitwise ``nll(log softmax(v))``.
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    flat_labels = labels.reshape(-1)
    base, reward = shared_vocab(base_logits.detach(), reward)
    scaled = reward.float() if lam == 1 else reward.float() / lam  # x / 1 is x: one pass less
    v = (base.float() if base_is_logprobs else _log_softmax(base)) + scaled
    flat_v = v.reshape(-1, v.shape[-1])
    if bool(torch.isfinite(reward).all()):  # then v holds no NaN: the fused cross-entropy
        loss = F.cross_entropy(flat_v, flat_labels, ignore_index=ignore_index)
    else:
        loss = F.nll_loss(_log_softmax(flat_v), flat_labels, ignore_index=ignore_index)
    if alpha:
        keep = flat_labels != ignore_index
        entropy = reward_entropy(reward.reshape(-1, reward.shape[-1])[keep])
        loss = loss - alpha * entropy.mean()
    return loss


def eft_logprobs(target_logits: Tensor, ft_logits: Tensor, pt_logits: Tensor) -> Tensor:
    """EFT (Mitchell et al. 2024): ``log π_target + log π_ft − log π_pt``, renormalised.

    The implicit reward ``log π_ft − log π_pt`` of the fine-tuned model is moved onto the
    target; three models run at inference.
    """
    target_logits, ft_logits, pt_logits = shared_vocab(target_logits, ft_logits, pt_logits)
    return _log_softmax(
        _log_softmax(target_logits)
        + _log_softmax(ft_logits)
        - _log_softmax(pt_logits)
    )


def eft_sum_logprobs(target_logits: Tensor, ft_logits: Sequence[Tensor], pt_logits: Tensor,
                     weights: Sequence[float]) -> Tensor:
    """EFT arithmetic: ``log π_target + Σ_i w_i (log π_ft,i − log π_pt)``, renormalised -- the
    implicit rewards of several FT models of one pre-trained model, weighted, on one target
    (one FT model at weight 1 is ``eft_logprobs``)."""
    if len(ft_logits) != len(weights) or not ft_logits:
        raise ValueError(f"need one weight per FT model, got {len(ft_logits)} models and {len(weights)} weights")
    target_logits, pt_logits, *ft_logits = shared_vocab(target_logits, pt_logits, *ft_logits)
    log_pt = _log_softmax(pt_logits)
    return _log_softmax(_log_softmax(target_logits) + sum(w * (_log_softmax(f) - log_pt)
                                                          for w, f in zip(weights, ft_logits)))


def proxy_tuning_logprobs(target_logits: Tensor, ft_logits: Tensor, pt_logits: Tensor) -> Tensor:
    """Proxy-tuning (Liu et al. 2024): the EFT rule on raw logits, ``f_target + f_ft − f_pt``."""
    target_logits, ft_logits, pt_logits = shared_vocab(target_logits, ft_logits, pt_logits)
    return _log_softmax(target_logits.float() + ft_logits.float() - pt_logits.float())


def implicit_reward(ft_logits: Tensor, pt_logits: Tensor) -> Tensor:
    """``r = log π_ft − log π_pt``: with it PRT on the original base is the FT model (Prop. 3.1)."""
    ft_logits, pt_logits = shared_vocab(ft_logits, pt_logits)
    # Where both models rule a token out the reward has no opinion (0), not NaN.
    return torch.nan_to_num(_log_softmax(ft_logits) - _log_softmax(pt_logits), nan=0.0, posinf=float("inf"), neginf=float("-inf"))
