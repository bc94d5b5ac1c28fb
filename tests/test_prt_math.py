"""The equations of prt_bench.prt, checked against the paper's statements."""

import math

import pytest
import torch
import torch.nn.functional as F

from prt_bench import prt


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return lambda *shape: torch.randn(*shape, generator=g) * 3


def test_prop_3_1_prt_with_implicit_reward_on_the_original_base_is_ft(logits):
    pt, ft = logits(4, 7, 50), logits(4, 7, 50)
    r = prt.implicit_reward(ft, pt)
    torch.testing.assert_close(prt.prt_logprobs(pt, r), F.log_softmax(ft, -1), atol=1e-5, rtol=1e-5)


def test_eft_on_the_pretrained_base_is_ft(logits):
    pt, ft = logits(3, 10), logits(3, 10)
    torch.testing.assert_close(prt.eft_logprobs(pt, ft, pt), F.log_softmax(ft, -1), atol=1e-5, rtol=1e-5)


def test_eft_equals_prt_with_the_implicit_reward_on_any_target(logits):
    pt, ft, target = logits(5, 20), logits(5, 20), logits(5, 20)
    torch.testing.assert_close(
        prt.eft_logprobs(target, ft, pt), prt.prt_logprobs(target, prt.implicit_reward(ft, pt)), atol=1e-5, rtol=1e-5
    )


def test_swapping_the_base_for_itself_changes_nothing(logits):
    base, r = logits(2, 6, 30), logits(2, 6, 30)
    swapped = base.clone()
    torch.testing.assert_close(prt.prt_logprobs(swapped, r), prt.prt_logprobs(base, r))


def test_swapping_the_base_changes_the_output(logits):
    base, other, r = logits(2, 30), logits(2, 30), logits(2, 30)
    assert not torch.allclose(prt.prt_logprobs(base, r), prt.prt_logprobs(other, r))


def test_output_is_a_normalised_distribution(logits):
    out = prt.prt_logprobs(logits(8, 13), logits(8, 13), lam=0.5)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(8))


def test_invariant_to_per_row_logit_shifts(logits):
    base, r = logits(6, 40), logits(6, 40)
    shift_b, shift_r = torch.randn(6, 1) * 100, torch.randn(6, 1) * 100
    ref = prt.prt_logprobs(base, r)
    torch.testing.assert_close(prt.prt_logprobs(base + shift_b, r + shift_r), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        prt.eft_logprobs(base + shift_b, r + shift_r, base - shift_b), prt.eft_logprobs(base, r, base), atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(prt.reward_entropy(r + shift_r), prt.reward_entropy(r), atol=1e-4, rtol=1e-4)


def test_lambda_scales_the_reward(logits):
    base, r = logits(3, 9), logits(3, 9)
    torch.testing.assert_close(prt.prt_logprobs(base, r, lam=2.0), prt.prt_logprobs(base, r / 2))
    with pytest.raises(ValueError, match="lam"):
        prt.prt_logprobs(base, r, lam=0)


def test_no_nan_with_minus_inf_and_huge_logits():
    inf = float("inf")
    base = torch.tensor([[-inf, 0.0, 1e30, -1e30], [0.0, -inf, 3e38, 3e38], [-inf, -inf, -inf, 1.0]])
    reward = torch.tensor([[5.0, -inf, 3e38, 1e30], [inf, 0.0, 3e38, -3e38], [0.0, 0.0, 0.0, -inf]])
    for out in (
        prt.prt_logprobs(base, reward),
        prt.eft_logprobs(base, reward, base.flip(-1)),
        prt.proxy_tuning_logprobs(base, reward, base.flip(-1)),
        prt.implicit_reward(reward, base),
    ):
        assert not torch.isnan(out).any(), out
    assert not torch.isnan(prt.reward_entropy(reward)).any()
    out = prt.prt_logprobs(base, reward)
    # A token the base rules out stays ruled out, whatever the reward says.
    assert out[0, 0] == -inf and out[1, 1] == -inf
    assert math.isclose(out[0].exp().sum().item(), 1.0, rel_tol=1e-5)


def test_half_precision_inputs_are_combined_in_float32(logits):
    base, r = logits(2, 16), logits(2, 16)
    out = prt.prt_logprobs(base.bfloat16(), r.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, prt.prt_logprobs(base.bfloat16().float(), r.bfloat16().float()))


def test_gradients_flow_only_into_the_reward(logits):
    base = logits(4, 5, 11).requires_grad_()
    reward = logits(4, 5, 11).requires_grad_()
    labels = torch.randint(0, 11, (4, 5))
    labels[0, :2] = -100
    prt.prt_loss(base, reward, labels, alpha=0.1).backward()
    assert base.grad is None
    assert reward.grad is not None and reward.grad.abs().sum() > 0
    assert torch.all(reward.grad[0, :2] == 0), "ignored positions must not get a gradient"


def test_prt_loss_is_cross_entropy_of_the_combined_distribution(logits):
    base, r = logits(6, 12), logits(6, 12)
    y = torch.randint(0, 12, (6,))
    expected = F.cross_entropy(F.log_softmax(base, -1) + r, y)
    torch.testing.assert_close(prt.prt_loss(base, r, y), expected)


def test_entropy_term_is_maximised_with_weight_alpha(logits):
    base, r = logits(6, 12), logits(6, 12)
    y = torch.randint(0, 12, (6,))
    h = prt.reward_entropy(r).mean()
    torch.testing.assert_close(prt.prt_loss(base, r, y, alpha=0.01), prt.prt_loss(base, r, y) - 0.01 * h)
    assert torch.isclose(prt.reward_entropy(torch.zeros(1, 12)), torch.tensor([math.log(12)])).all()
    # A gradient step on the loss with a large alpha raises the reward's entropy.
    r = r.clone().requires_grad_()
    prt.prt_loss(base, r, y, alpha=10.0).backward()
    assert prt.reward_entropy(r - 0.01 * r.grad).mean() > prt.reward_entropy(r).mean()


def test_shared_vocab_combines_on_the_common_prefix(logits):
    small, wide = logits(2, 3, 100), logits(2, 3, 108)  # like Qwen2-0.5B vs 7B output widths
    out = prt.prt_logprobs(wide, small)
    assert out.shape == (2, 3, 100)
    torch.testing.assert_close(out, prt.prt_logprobs(wide[..., :100], small))
    assert prt.eft_logprobs(wide, small, wide).shape[-1] == 100


def test_reward_arithmetic_is_a_weighted_sum(logits):
    base, r1, r2 = logits(3, 10), logits(3, 10), logits(3, 10)
    r = prt.combined_reward([r1, r2], [0.7, 0.3])
    torch.testing.assert_close(r, 0.7 * r1 + 0.3 * r2)
    torch.testing.assert_close(prt.prt_logprobs(base, prt.combined_reward([r1], [1.0])), prt.prt_logprobs(base, r1))
    with pytest.raises(ValueError, match="one weight per reward"):
        prt.combined_reward([r1, r2], [1.0])


def test_eft_arithmetic_is_prt_with_the_weighted_sum_of_implicit_rewards(logits):
    """EFT's implicit rewards summed (a merge set's merge_eft) is PRT with r = Σ w_i (log π_ft,i − log π_pt);
    one FT model at weight 1 is plain EFT."""
    pt, ft1, ft2, target = logits(5, 20), logits(5, 20), logits(5, 20), logits(5, 20)
    torch.testing.assert_close(prt.eft_sum_logprobs(target, [ft1], pt, [1.0]), prt.eft_logprobs(target, ft1, pt))
    r = prt.combined_reward([prt.implicit_reward(ft1, pt), prt.implicit_reward(ft2, pt)], [0.5, 2.0])
    torch.testing.assert_close(prt.eft_sum_logprobs(target, [ft1, ft2], pt, [0.5, 2.0]), prt.prt_logprobs(target, r),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one weight per FT model"):
        prt.eft_sum_logprobs(target, [ft1, ft2], pt, [1.0])
