"""NT-Xent: known small cases, symmetry, and agreement with a row-by-row reference."""

from __future__ import annotations

import math

import pytest
import torch

from sora_encoder.train.loss import nt_xent, pair_accuracy


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """SimCLR's definition, one anchor at a time."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=-1).double()
    n, B = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + B) % n
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
    return total / n


def test_matches_the_definition_on_random_vectors():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    for t in (0.1, 0.5, 1.0):
        assert nt_xent(z1, z2, t).item() == pytest.approx(reference_nt_xent(z1, z2, t), rel=1e-5)


def test_perfect_alignment_is_low_and_shuffled_pairs_are_high():
    B, t = 4, 0.1
    z = torch.eye(B)  # orthogonal: positives cosine 1, negatives cosine 0
    aligned = nt_xent(z, z.clone(), t).item()
    # log(1 + (2B - 2) e^(-1/t)): every negative is e^10 times less likely than the positive.
    assert aligned == pytest.approx(math.log(1 + (2 * B - 2) * math.exp(-1 / t)), rel=1e-3)
    assert aligned < 1e-3
    shuffled = nt_xent(z, z[[1, 2, 3, 0]], t).item()
    assert shuffled > 5.0  # each anchor's twin is another window: the positive looks negative
    assert pair_accuracy(z, z.clone()) == 1.0
    assert pair_accuracy(z, z[[1, 2, 3, 0]]) == 0.0


def test_is_symmetric_in_the_two_views():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), rel=1e-6)


def test_random_vectors_score_about_log_of_the_candidates():
    g = torch.Generator().manual_seed(2)
    B = 64
    z1, z2 = torch.randn(B, 256, generator=g), torch.randn(B, 256, generator=g)
    # Near-orthogonal random vectors and t = 1: every candidate equally likely.
    assert nt_xent(z1, z2, 1.0).item() == pytest.approx(math.log(2 * B - 1), rel=0.02)


def test_gradient_pulls_positives_together():
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(4, 8, generator=g, requires_grad=True)
    z2 = torch.randn(4, 8, generator=g)
    before = torch.nn.functional.cosine_similarity(z1, z2).mean()
    nt_xent(z1, z2, 0.5).backward()
    with torch.no_grad():
        moved = z1 - 0.1 * z1.grad
    assert torch.nn.functional.cosine_similarity(moved, z2).mean() > before


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        nt_xent(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(torch.ones(1, 4), torch.ones(1, 4))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.ones(2, 4), torch.ones(2, 4), 0.0)


def test_koleo_is_lower_for_spread_vectors_and_ignores_each_windows_own_views():
    from sora_encoder.train.loss import koleo

    g = torch.Generator().manual_seed(0)
    spread = torch.eye(4)  # four orthogonal windows: nearest other window at distance sqrt 2
    assert koleo(spread, spread.clone()).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-4)
    # the same windows squeezed into a narrow cone: larger (worse) entropy loss
    cone = torch.nn.functional.normalize(torch.ones(4, 4) * 5 + torch.eye(4), dim=1)
    assert koleo(cone, cone.clone()).item() > koleo(spread, spread.clone()).item() + 0.5
    # a window's other view at distance 0 is not its nearest neighbour
    z1 = torch.randn(6, 16, generator=g)
    assert math.isfinite(koleo(z1, z1.clone()).item())
    with pytest.raises(ValueError):
        koleo(torch.randn(1, 4), torch.randn(1, 4))


def test_koleo_gradient_pushes_the_closest_windows_apart():
    from sora_encoder.train.loss import koleo

    z1 = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]], requires_grad=True)
    z2 = z1.detach().clone()
    koleo(z1, z2).backward()
    step = z1.detach() - 0.1 * z1.grad
    before = torch.nn.functional.cosine_similarity(z1[0:1], z1[1:2]).item()
    after = torch.nn.functional.cosine_similarity(step[0:1], step[1:2]).item()
    assert after < before
