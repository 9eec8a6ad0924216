"""Per-step curves averaged over seeds: for every configuration, phase, curve name and
step, the mean, standard error and n over the completed runs' seeds, in one DuckDB query
over ``curves JOIN runs``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from benchharness.store import Store

# The curves reports draw, with their axis labels (``ctx.log`` names; see plugins/schemes.py).
CURVE_NAMES: dict[str, str] = {
    "train_loss": "train loss",
    "test_accuracy": "test accuracy (%)",
    "mu": "μ (penalty weight)",
    "constraint_norm": "‖w − Δ(Θ)‖",
}


def curve_summary(
    store: Store,
    *,
    spec: str | Sequence[str] | None = None,
    names: Sequence[str] = tuple(CURVE_NAMES),
    include_quick: bool = True,
) -> pd.DataFrame:
    """One row per (spec_name, quick, config_id, phase, name, step) of the completed runs:
    ``mean``, ``se`` (sample stddev / sqrt(n); NULL for n = 1) and ``n`` of the finite
    values over seeds. Ordered by spec, quick, config, phase, name, step."""
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    clauses = [
        "r.status = 'completed'",
        "isfinite(c.value)",
        "c.name IN (SELECT unnest(?::VARCHAR[]))",
    ]
    params: list = [list(names)]
    if specs:
        clauses.append("r.spec_name IN (SELECT unnest(?::VARCHAR[]))")
        params.append(specs)
    if not include_quick:
        clauses.append("NOT r.quick")
    return store.query(
        f"""SELECT r.spec_name, r.quick, r.config_id, c.phase, c.name, c.step,
                   avg(c.value) AS mean,
                   stddev_samp(c.value) / sqrt(count(c.value)) AS se,
                   count(c.value) AS n
            FROM curves c JOIN runs r ON r.job_id = c.job_id
            WHERE {" AND ".join(clauses)}
            GROUP BY r.spec_name, r.quick, r.config_id, c.phase, c.name, c.step
            ORDER BY r.spec_name, r.quick, r.config_id, c.phase, c.name, c.step""",
        params,
    )
