"""``bench report --against OTHER.duckdb``: this database's fronts against another's
(an older run of the same specs, a changed spec version), by hypervolume and by which
configurations entered or left the front — regression tracking of results.

Per (spec, quick) group present in both: every objective is oriented to "larger is
better" and scaled to [0, 1] by its minimum and maximum over all configurations of both
databases; the reference point is the origin of that box (the worst value of every
objective), so both hypervolumes are fractions of the same box and comparable. A
configuration is the same in both when its config id is (the hash of its resolved
configuration).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchharness.errors import BenchError
from benchharness.report.aggregate import summarize
from benchharness.report.front import GROUP, oriented_values
from benchharness.report.hypervolume import hypervolume
from benchharness.report.objectives import parse_objectives
from benchharness.store import Store


def against(
    store: Store,
    other: Store,
    *,
    spec: str | None = None,
    objectives: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (spec_name, quick) in both databases: ``hypervolume`` (this),
    ``hypervolume_other``, ``difference``, ``front``/``front_other`` sizes, and the
    config ids that ``entered`` (on this front, not the other's) and ``left``."""
    mine = summarize(store, spec=spec, objectives=objectives)
    theirs = summarize(other, spec=spec, objectives=mine.attrs["objectives"])
    chosen = parse_objectives(mine.attrs["objectives"], _extra_names(mine))
    rows = []
    keys = mine[list(GROUP)].drop_duplicates().itertuples(index=False)
    for spec_name, quick in keys:
        a = mine[(mine["spec_name"] == spec_name) & (mine["quick"] == quick)]
        b = theirs[(theirs["spec_name"] == spec_name) & (theirs["quick"] == quick)]
        if b.empty:
            continue
        va, vb = oriented_values(a, chosen), oriented_values(b, chosen)
        both = np.vstack([va, vb])
        low, high = np.nanmin(both, axis=0), np.nanmax(both, axis=0)
        span = np.where(high > low, high - low, 1.0)
        front_a = a["on_front"].to_numpy(dtype=bool)
        front_b = b["on_front"].to_numpy(dtype=bool)
        origin = np.zeros(len(chosen)) - 1e-12  # points at the worst value still count
        hv_a = hypervolume((va[front_a] - low) / span, origin)
        hv_b = hypervolume((vb[front_b] - low) / span, origin)
        ids_a, ids_b = set(a.loc[front_a, "config_id"]), set(b.loc[front_b, "config_id"])
        rows.append(
            {
                "spec_name": spec_name,
                "quick": bool(quick),
                "hypervolume": hv_a,
                "hypervolume_other": hv_b,
                "difference": hv_a - hv_b,
                "front": len(ids_a),
                "front_other": len(ids_b),
                "entered": sorted(ids_a - ids_b),
                "left": sorted(ids_b - ids_a),
            }
        )
    if not rows:
        raise BenchError("--against: no spec (and quick flag) has runs in both databases")
    return pd.DataFrame(rows)


def _extra_names(df: pd.DataFrame) -> list[str]:
    return [t.partition(":")[0] for t in df.attrs["objectives"]]
