"""Statistics of reports (scipy.stats): the claim verdict rule, the comparison of two
configurations over seeds, and the number of seeds that would settle it.

The rules, as the README states them:

* **Verdict** of a claim (published value c ± s_c) against a measurement (mean m ± SE s
  over n seeds): no matching run → "not run"; n < 2 → "too few seeds" (the spread over
  seeds is unknown); else z = (m − c) / sqrt(s² + s_c²) (s_c = 0 if the claim gives none),
  |z| ≤ 2 → "reproduced", otherwise "not reproduced (higher)" or "(lower)".
* **Comparison** of A and B: Welch's t (unequal variances) for the difference of means,
  its 95 % confidence interval and P(A beats B) = the t distribution's cdf at Δ / SE_Δ with
  Welch's degrees of freedom; when A and B ran the same seeds, a paired bootstrap
  (scipy.stats.bootstrap, percentile, seeded) gives the interval and P(A beats B) is the
  fraction of bootstrap means of the per-seed differences above 0.
* **Seeds needed** per configuration for a two-sided 5 % test to detect the observed Δ
  with 80 % power: n = (z₀.₉₇₅ + z₀.₈)² · (s_A² + s_B²) / Δ² (normal approximation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# scipy.stats and numpy are imported inside the functions that need them: they cost
# ~0.5 s and ~0.1 s, and the verdicts of a plain `bench report` need neither
REPRODUCED_WITHIN = 2.0  # |Δ| ≤ 2 combined standard errors
VERDICTS = (
    "reproduced",
    "not reproduced (higher)",
    "not reproduced (lower)",
    "not run",
    "too few seeds",
)


def claim_z(mean: float, se: float, claimed: float, claimed_se: float | None) -> float:
    """(mean − claimed) in combined standard errors; ±inf when both SEs are 0."""
    combined = math.sqrt(se**2 + (claimed_se or 0.0) ** 2)
    difference = mean - claimed
    if combined == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / combined


def verdict(n: int, mean: float | None, se: float | None, claimed: float, claimed_se) -> str:
    """The verdict of one claim (see the module docstring)."""
    if n == 0 or mean is None or not math.isfinite(mean):
        return "not run"
    if n < 2 or se is None or not math.isfinite(se):
        return "too few seeds"
    z = claim_z(mean, se, claimed, _or_none(claimed_se))
    if abs(z) <= REPRODUCED_WITHIN:
        return "reproduced"
    return "not reproduced (higher)" if z > 0 else "not reproduced (lower)"


def _or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A − B over seeds for one metric."""

    metric: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float  # mean_a − mean_b
    low: float  # 95 % confidence interval of the difference
    high: float
    method: str  # "welch" or "paired bootstrap"
    p_a_beats_b: float  # probability that A is better (in the metric's direction)
    seeds_needed: int | None  # per configuration, for 80 % power at 5 %; None: Δ = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def compare_samples(
    metric: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    maximize: bool = True,
    paired: bool = False,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare the per-seed values ``a`` and ``b`` (``paired``: same seeds, same order).
    Needs at least two values on each side."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("at least two seeds per configuration are needed")
    difference = float(x.mean() - y.mean())
    sign = 1.0 if maximize else -1.0
    if paired:
        d = x - y
        result = stats.bootstrap(
            (d,),
            np.mean,
            confidence_level=confidence,
            n_resamples=4000,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = result.confidence_interval
        boot = _bootstrap_means(d, 4000, seed)
        p = float(np.mean(sign * boot > 0) + 0.5 * np.mean(boot == 0))
        method = "paired bootstrap"
    else:
        test = stats.ttest_ind(x, y, equal_var=False)
        low, high = test.confidence_interval(confidence)
        se = math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
        if se == 0:
            p = 0.5 if difference == 0 else float(sign * difference > 0)
        else:
            p = float(stats.t.cdf(sign * difference / se, test.df))
        method = "welch"
    return Comparison(
        metric=metric,
        n_a=len(x),
        n_b=len(y),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=difference,
        low=float(low),
        high=float(high),
        method=method,
        p_a_beats_b=p,
        seeds_needed=seeds_needed(difference, float(x.std(ddof=1)), float(y.std(ddof=1))),
    )


def _bootstrap_means(d: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(d), size=(resamples, len(d)))
    return d[picks].mean(axis=1)


def seeds_needed(
    difference: float, sd_a: float, sd_b: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Seeds per configuration for a two-sided test at ``alpha`` to detect ``difference``
    with ``power``: (z_{1−α/2} + z_power)² (s_A² + s_B²) / Δ², at least 2; None if Δ = 0."""
    if difference == 0 or not math.isfinite(difference):
        return None
    from scipy import stats

    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2, math.ceil(z**2 * (sd_a**2 + sd_b**2) / difference**2))
