"""The summary: runs grouped by configuration over seeds (mean, standard error, n), the
Pareto flag and matching claims, computed in one DuckDB query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from benchharness.errors import BenchError
from benchharness.report.columns import (
    NUMBER_TYPES,
    PATH_OF_KEY,
    Source,
    axes_of,
    filter_sql,
    json_key,
    measured_metrics,
    metric_expr,
    numeric_extras,
    runs_and_claim_metrics,
    sql_str,
)
from benchharness.report.front import front_flags, front_sql
from benchharness.report.objectives import ALIASES, NUMERIC_METRICS, Objective, parse_objectives
from benchharness.report.table import Table
from benchharness.store import Store, StoreReader, quote_ident

if TYPE_CHECKING:
    import pandas as pd


def summarize(
    store: Store,
    *,
    spec: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
    pareto: bool = False,
    include_quick: bool = True,
    metrics: Sequence[str] | None = None,
    replicate_axes: Sequence[str] = (),
) -> pd.DataFrame:
    """:func:`summary_table` as a DataFrame (``df.attrs`` holds ``axes`` and
    ``objectives``)."""
    return summary_table(
        store,
        spec=spec,
        objectives=objectives,
        pareto=pareto,
        include_quick=include_quick,
        metrics=metrics,
        replicate_axes=replicate_axes,
    ).to_frame()


def summary_table(
    store: Store | StoreReader,
    *,
    spec: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
    pareto: bool = False,
    include_quick: bool = True,
    metrics: Sequence[str] | None = None,
    replicate_axes: Sequence[str] = (),
) -> Table:
    """One row per (spec_name, config_id, quick): the axis values, ``n`` completed runs,
    ``<metric>_mean`` and ``<metric>_se`` (sample stddev / sqrt(n); NULL for n = 1) for
    every numeric metric measured, ``failed`` (if any run failed), ``claimed_<metric>``
    and ``claimed_<metric>_se`` from matching claims, and ``on_front``: no other config
    of the same spec (and the same quick flag) is at least as good on every objective and
    strictly better on one. With ``pareto=True`` only front rows, best first objective
    first. ``attrs`` holds ``axes`` and ``objectives`` (for ``render``).

    ``metrics`` limits the aggregated metrics to these (plus the objectives and the
    claimed metrics), which is what makes a report over many runs fast; None: all.

    ``replicate_axes`` (e.g. ``["compressor.draw"]``) are treated like seeds: configurations
    that differ only in them form one row (``n`` counts all their runs; ``config_id`` is
    the smallest of theirs; the replicate axes' columns are left out).
    """
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    where, params = filter_sql(specs, include_quick)
    with store.reader() as db:  # one read connection for every query of the report
        table, chosen, axes = _query_summary(
            db, specs, where, params, objectives, pareto, include_quick, metrics, replicate_axes
        )
    if len(chosen) != 2:
        table = table.with_column("on_front", "BOOLEAN", front_flags(table, chosen))
        if pareto:
            table = table.where("on_front")
            sign = -1.0 if chosen[0].maximize else 1.0  # front rows have finite means
            keys = [table.columns.index(c) for c in ("spec_name", "quick", "config_id")]
            best = table.columns.index(chosen[0].metric + "_mean")
            table.rows.sort(key=lambda r: (r[keys[0]], r[keys[1]], sign * r[best], r[keys[2]]))
    if "failed" in table and not any(v > 0 for v in table.column("failed")):
        table = table.without("failed")
    table.attrs["axes"] = [name for name, _ in axes]
    table.attrs["objectives"] = [str(o) for o in chosen]
    return table


def _query_summary(
    store: Source,
    specs: list[str],
    where: str,
    params: list[Any],
    objectives: str | Sequence[str] | None,
    pareto: bool,
    include_quick: bool,
    metrics: Sequence[str] | None,
    replicate_axes: Sequence[str],
) -> tuple[Table, list[Objective], list[tuple[str, str | None]]]:
    """The summary query of :func:`summarize` and the ones it needs first; returns the
    rows, the objectives and the axes shown."""
    count, claim_metrics = runs_and_claim_metrics(store, where, params)
    if count == 0:
        what = f" of spec {', '.join(specs)}" if specs else ""
        quick = "" if include_quick else " (quick runs excluded)"
        raise BenchError(f"no runs{what} in {store.path}{quick}")

    try:  # the scan of `extra` for numeric metrics is needed only if something names one
        if metrics is None:
            raise BenchError("every metric")
        chosen = parse_objectives(objectives)
        wanted = [*metrics, *claim_metrics]
        if any(m not in NUMERIC_METRICS for m in wanted):
            raise BenchError("extra metrics named")
        extras: list[str] = []
    except BenchError:
        extras = numeric_extras(store, where, params)
        chosen = parse_objectives(objectives, extras)
    objective_metrics = [o.metric for o in chosen]
    candidates = None if metrics is None else [*objective_metrics, *metrics, *claim_metrics]
    measured = measured_metrics(store, where, params, extras, candidates)
    if objectives is None:  # the defaults the runs have values for (e.g. no sizes measured)
        chosen = [o for o in chosen if o.metric in measured] or chosen
        objective_metrics = [o.metric for o in chosen]
    metrics = objective_metrics + [m for m in measured if m not in objective_metrics]
    axes = axes_of(store, where, params)
    unknown = [a for a in replicate_axes if a not in {name for name, _ in axes}]
    if unknown:
        raise BenchError(
            f"--replicate-axes: no axis {', '.join(unknown)} in the selected runs; axes: "
            + ", ".join(name for name, _ in axes)
        )
    if pareto:
        missing = [str(o) for o in chosen if o.metric not in measured]
        if missing:
            raise BenchError(
                f"objective {', '.join(missing)} has no values in the selected runs;"
                " choose others with --objectives"
            )

    sql = summary_sql(axes, metrics, extras, chosen, claim_metrics, where, replicate_axes)
    axes = [(name, column) for name, column in axes if name not in replicate_axes]
    if pareto:
        first = chosen[0]
        order = f"{quote_ident(first.metric + '_mean')} {'DESC' if first.maximize else 'ASC'}"
        if len(chosen) == 2:
            sql += "\nWHERE on_front"
        sql += f"\nORDER BY spec_name, quick, {order}, config_id"
    else:
        axis_order = "".join(f", {quote_ident(name)}" for name, _ in axes)
        sql += f"\nORDER BY spec_name, quick{axis_order}, config_id"
    uses = 2 if claim_metrics else 1  # the claims' part filters the runs a second time
    return Table.fetch(store, sql, params * uses), chosen, axes


def summary_sql(
    axes: list[tuple[str, str | None]],
    metrics: list[str],
    extras: list[str],
    chosen: list[Objective],
    claim_metrics: dict[str, list[str]],
    where: str,
    replicate_axes: Sequence[str] = (),
) -> str:
    q = quote_ident
    done = "status = 'completed'"

    axis_cols, key_parts = [], []
    for name, column in axes:
        source = q(column) if column else f"axes->>'{sql_str('$.' + json_key(name))}'"
        if name in replicate_axes:
            continue
        axis_cols.append(f"any_value({source}) AS {q(name)}")
        key_parts.append(f"coalesce(CAST({source} AS VARCHAR), chr(0))")
    if replicate_axes:  # one group per value of the other axes
        group_by = f"spec_name, quick, concat_ws(chr(31), '', {', '.join(key_parts)})"
        config_id = "min(config_id) AS config_id"
    else:
        group_by, config_id = "spec_name, config_id, quick", "config_id"
    metric_cols = []
    for m in metrics:
        value = metric_expr(m, extras)
        metric_cols.append(f"avg({value}) FILTER (WHERE {done}) AS {q(m + '_mean')}")
        metric_cols.append(
            f"stddev_samp({value}) FILTER (WHERE {done})"
            f" / sqrt(count({value}) FILTER (WHERE {done})) AS {q(m + '_se')}"
        )
    grouped = ",\n       ".join(
        [
            "spec_name",
            config_id,
            "quick",
            *axis_cols,
            f"count(*) FILTER (WHERE {done}) AS n",
            "count(*) FILTER (WHERE status = 'failed') AS failed",
            f"bool_and(compression_realised) FILTER (WHERE {done}) AS realised",
            *metric_cols,
            # the config JSON only serves matching claims: not aggregated without any
            *(
                [f"coalesce(any_value(config) FILTER (WHERE {done}), any_value(config)) AS config"]
                if claim_metrics
                else []
            ),
        ]
    )

    alias_cases = " ".join(
        f"WHEN '{sql_str(alias)}' THEN '{sql_str(target)}'" for alias, target in ALIASES.items()
    )
    claim_cols, claim_names = [], []
    for metric in claim_metrics:
        pick = f"canon = '{sql_str(metric)}' AND rank = 1"
        for field, name in (("value", f"claimed_{metric}"), ("se", f"claimed_{metric}_se")):
            claim_cols.append(f"max({field}) FILTER (WHERE {pick}) AS {q(name)}")
            claim_names.append(name)
    claim_select = "".join(f", c.{q(name)}" for name in claim_names)
    claim_pivot = ",\n       ".join(["spec_name", "config_id", "quick", *claim_cols])

    keep = [q(name) for name, _ in axes if name not in replicate_axes] + ["n", "failed", "realised"]
    for m in metrics:
        keep += [q(m + "_mean"), q(m + "_se")]
    keep_sql = ", ".join(f"f.{col}" for col in keep)

    head = f"""
WITH agg AS (
  SELECT {grouped}
  FROM runs WHERE {where}
  GROUP BY {group_by}
),
front AS (
{front_sql("agg", chosen)}
)"""
    if not claim_metrics:
        return (
            f"{head}\nSELECT f.spec_name, f.config_id, f.quick, {keep_sql}, f.on_front FROM front f"
        )
    return f"""{head},
claim_list AS (
  SELECT row_number() OVER (ORDER BY spec_name, metric, match::VARCHAR) AS cid,
         spec_name, match, value, se,
         CASE metric {alias_cases} ELSE metric END AS canon
  FROM claims
  WHERE spec_name IN (SELECT DISTINCT spec_name FROM runs WHERE {where})
),
claim_keys AS (
  SELECT cid, match, unnest(json_keys(match)) AS key FROM claim_list
),
claim_terms AS (
  SELECT cid, json_extract(match, {PATH_OF_KEY}) AS want,
         json_type(match, {PATH_OF_KEY}) AS want_type,
         '$."' || replace(replace(key, '"', '\\"'), '.', '"."') || '"' AS path
  FROM claim_keys
),
claim_hits AS (
  SELECT f.spec_name, f.config_id, f.quick, c.canon, c.value, c.se,
         row_number() OVER (
           PARTITION BY f.spec_name, f.config_id, f.quick, c.canon
           ORDER BY (SELECT count(*) FROM claim_terms t WHERE t.cid = c.cid) DESC, c.cid
         ) AS rank
  FROM front f JOIN claim_list c ON c.spec_name = f.spec_name
  WHERE NOT EXISTS (
    SELECT 1 FROM claim_terms t
    WHERE t.cid = c.cid AND NOT coalesce(
      CASE WHEN t.want_type IN {NUMBER_TYPES}
           THEN json_type(f.config, t.path) IN {NUMBER_TYPES}
                AND CAST(json_extract(f.config, t.path) AS DOUBLE) = CAST(t.want AS DOUBLE)
           ELSE CAST(json_extract(f.config, t.path) AS VARCHAR) = CAST(t.want AS VARCHAR)
      END, FALSE)
  )
),
claimed AS (
  SELECT {claim_pivot}
  FROM claim_hits GROUP BY spec_name, config_id, quick
)
SELECT f.spec_name, f.config_id, f.quick, {keep_sql}{claim_select}, f.on_front
FROM front f LEFT JOIN claimed c
  ON c.spec_name = f.spec_name AND c.config_id = f.config_id AND c.quick = f.quick"""
