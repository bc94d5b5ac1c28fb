"""Paired statistics of two methods scored on the same test items (numpy and scipy only).

A method's scores are a matrix ``[seeds, items]``: one row per seed (a separately trained
model), one column per test item, the items in the same order for both methods.  The
difference of two methods is the mean of A minus the mean of B.

- **Confidence interval**: a percentile bootstrap, two levels when there are several seeds:
  each resample draws the items (the same draw for both methods: they are paired) and, for
  each method separately, its seeds (different seeds of two methods are not paired).
  Seeded: the same inputs give the same interval.
- **Test** of "no difference": McNemar's exact test when both methods have one seed and 0/1
  scores (a binomial test on the discordant items), else a paired permutation test of the
  per-item differences of the seed means (signs flipped at random; exact for few items).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0
_CHUNK = 500  # bootstrap resamples drawn at a time (bounds memory at ~_CHUNK x items)


@dataclass(frozen=True)
class Paired:
    diff: float               # mean(A) - mean(B)
    lo: float                 # the confidence interval of diff
    hi: float
    p: float                  # two-sided p-value of "no difference"
    test: str                 # which test gave p
    n_items: int
    level: float = LEVEL

    def __str__(self) -> str:
        p = "–" if math.isnan(self.p) else f"{self.p:.2g}"
        return f"Δ = {self.diff:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}], {self.test} p = {p}"


def _as_matrix(x) -> np.ndarray:
    m = np.asarray(x, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] == 0 or m.shape[0] == 0:
        raise ValueError(f"scores must be [seeds, items] with at least one of each, got shape {m.shape}")
    return m


def _seed_means(m: np.ndarray, rng: np.random.Generator, r: int) -> np.ndarray:
    """[r, items]: each resample's mean over seeds drawn with replacement (the seeds' mean when one)."""
    s = m.shape[0]
    if s == 1:
        return np.broadcast_to(m[0], (r, m.shape[1]))
    counts = rng.multinomial(s, np.full(s, 1.0 / s), size=r)  # how often each seed is drawn
    return counts @ m / s


def bootstrap(a, b=None, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of mean(a) - mean(b) (of mean(a) when b is None), see the module."""
    a = _as_matrix(a)
    b = None if b is None else _as_matrix(b)
    if b is not None and b.shape[1] != a.shape[1]:
        raise ValueError(f"paired scores need the same items: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    stats = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        r = min(_CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(r, n))
        per_item = _seed_means(a, rng, r)
        if b is not None:
            per_item = per_item - _seed_means(b, rng, r)
        stats[start:start + r] = np.take_along_axis(per_item, idx, axis=1).mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def paired_test(a, b, *, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, str]:
    """(two-sided p-value, the test's name) of "A and B score the same on these items"."""
    from scipy import stats

    a, b = _as_matrix(a), _as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores need the same items: {a.shape[1]} vs {b.shape[1]}")
    binary = a.shape[0] == b.shape[0] == 1 and np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()
    if binary:
        only_a = int(((a[0] == 1) & (b[0] == 0)).sum())
        only_b = int(((a[0] == 0) & (b[0] == 1)).sum())
        if only_a + only_b == 0:
            return 1.0, "McNemar exact"
        return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue), "McNemar exact"
    d = a.mean(axis=0) - b.mean(axis=0)
    if not np.any(d):
        return 1.0, "paired permutation"
    res = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=resamples,
                                 alternative="two-sided", rng=np.random.default_rng(seed))
    return float(res.pvalue), "paired permutation"


def paired(a, b, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> Paired:
    """The difference of two methods on the same items, its interval and its test."""
    a, b = _as_matrix(a), _as_matrix(b)
    lo, hi = bootstrap(a, b, resamples=resamples, level=level, seed=seed)
    p, test = paired_test(a, b, resamples=resamples, seed=seed)
    return Paired(float(a.mean() - b.mean()), lo, hi, p, test, a.shape[1], level)


def unpaired(mean_a: float, err_a: float, mean_b: float, err_b: float, level: float = LEVEL) -> Paired:
    """A normal approximation from two means and their error bars, for results kept without
    per-sample records (their items cannot be paired); the interval is degenerate without errors."""
    from scipy import stats

    diff = mean_a - mean_b
    se = math.sqrt(sum(e * e for e in (err_a, err_b) if not math.isnan(e)))
    if se == 0.0:
        return Paired(diff, diff, diff, math.nan, "unpaired (no per-sample records, no error bars)", 0, level)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    p = float(2.0 * stats.norm.sf(abs(diff) / se))
    return Paired(diff, diff - z * se, diff + z * se, p, "unpaired normal (no per-sample records)", 0, level)
