"""A Pareto front that knows about seed noise.

* ``p_front``: the probability of being non-dominated under seed noise, estimated by a
  bootstrap over seeds. In each of ``draws`` rounds every configuration's seeds are
  resampled with replacement (as many as it has), the objective means recomputed, and the
  front of its (spec, quick) group computed from them; ``p_front`` is the fraction of
  rounds the configuration is on it. The generator is seeded (``seed``), so a report is
  deterministic. A configuration with one seed has no measured spread: it keeps its value
  in every round.
* ``dominance``: "front" (on the front of the means), "clear" (some configuration that
  dominates it on the means is better by more than 2 combined standard errors,
  2·sqrt(se_a² + se_b²), on at least one objective) or "within noise" (dominated on the
  means, but by no such configuration; an unknown SE, n = 1, counts as infinite).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchharness.report.columns import metric_expr, numeric_extras
from benchharness.report.front import GROUP, oriented_values, pareto_mask
from benchharness.report.objectives import NUMERIC_METRICS, parse_objectives
from benchharness.store import Store

CLEAR_GAP = 2.0  # combined standard errors


def noisy_front(
    store: Store, summary: pd.DataFrame, *, draws: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """``summary`` (from :func:`summarize`, any objectives) with ``p_front`` and
    ``dominance`` columns added (see the module docstring)."""
    chosen = parse_objectives(summary.attrs["objectives"], _extras(store, summary))
    df = summary.copy()
    df.attrs = dict(summary.attrs)
    df["p_front"] = _p_front(store, df, chosen, draws, seed)
    df["dominance"] = _dominance(df, chosen)
    return df


def _extras(store: Store, summary: pd.DataFrame) -> list[str]:
    names = [t.partition(":")[0] for t in summary.attrs["objectives"]]
    if all(n in NUMERIC_METRICS for n in names):
        return []
    return numeric_extras(store, "TRUE", [])


def _p_front(store: Store, df: pd.DataFrame, chosen, draws: int, seed: int) -> np.ndarray:
    extras = [o.metric for o in chosen if o.metric not in NUMERIC_METRICS]
    selects = ", ".join(f"{metric_expr(o.metric, extras)} AS m{i}" for i, o in enumerate(chosen))
    runs = store.query(
        f"""SELECT spec_name, quick, config_id, {selects} FROM runs
            WHERE status = 'completed' AND config_id IN (SELECT unnest(?::VARCHAR[]))
            ORDER BY seed""",
        [list(df["config_id"].unique())],
    )
    signs = np.array([1.0 if o.maximize else -1.0 for o in chosen])
    per_config = {
        key: group[[f"m{i}" for i in range(len(chosen))]].to_numpy(dtype=float) * signs
        for key, group in runs.groupby(["spec_name", "quick", "config_id"], sort=False)
    }
    rng = np.random.default_rng(seed)
    result = np.zeros(len(df))
    for _, index in df.groupby(list(GROUP), sort=False).indices.items():
        rows = df.iloc[index]
        means = np.full((draws, len(index), len(chosen)), np.nan)
        for j, row in enumerate(rows.itertuples(index=False)):
            values = per_config.get((row.spec_name, row.quick, row.config_id))
            if values is None:
                continue
            values = values[np.isfinite(values).all(axis=1)]
            if len(values) == 0:
                continue
            picks = rng.integers(0, len(values), size=(draws, len(values)))
            means[:, j, :] = values[picks].mean(axis=1)
        hits = np.zeros(len(index))
        for d in range(draws):
            hits += pareto_mask(means[d])
        result[index] = hits / draws
    return result


def _dominance(df: pd.DataFrame, chosen) -> list[str]:
    means = oriented_values(df, chosen)
    ses = np.column_stack([df[o.metric + "_se"].to_numpy(dtype=float) for o in chosen])
    ses = np.where(np.isfinite(ses), ses, math.inf)
    labels = [""] * len(df)
    for _, index in df.groupby(list(GROUP), sort=False).indices.items():
        for i in index:
            if df["on_front"].iloc[i]:
                labels[i] = "front"
                continue
            if not np.isfinite(means[i]).all():
                continue
            others = index[index != i]
            ge = (means[others] >= means[i]).all(axis=1)
            gt = (means[others] > means[i]).any(axis=1)
            dominators = others[ge & gt]
            gaps = means[dominators] - means[i]
            combined = np.sqrt(ses[dominators] ** 2 + ses[i] ** 2)
            clear = (gaps > CLEAR_GAP * combined).any(axis=1)
            labels[i] = "clear" if clear.any() else "within noise"
    return labels
