"""Reports over the results database: mean ± standard error over seeds, the accuracy/cost
Pareto front and published claims, all computed in DuckDB SQL, then rendered as a table,
CSV, JSON or Markdown."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from benchharness.errors import BenchError
from benchharness.keypaths import short
from benchharness.records import METRIC_COLUMNS
from benchharness.store import BASE_COLUMNS, Store, quote_ident

ALIASES: dict[str, str] = {
    "accuracy": "test_accuracy",
    "loss": "test_loss",
    "flops": "flops",
    "params": "params",
    "size": "size_bits",
    "bits": "size_bits",
    "ratio": "compression_ratio",
    "latency": "latency_b1_median_ms",
    "time": "train_seconds",
}
DEFAULT_OBJECTIVES: tuple[str, ...] = ("accuracy:max", "flops:min")
FORMATS: tuple[str, ...] = ("table", "csv", "json", "markdown")
NUMERIC_METRICS: tuple[str, ...] = tuple(m for m, t in METRIC_COLUMNS.items() if t != "BOOLEAN")

_NUMBER_TYPES = "('UBIGINT', 'BIGINT', 'DOUBLE')"
# JSON path of the top-level key in SQL column `key` (keys may contain dots)
_PATH_OF_KEY = """'$."' || replace(key, '"', '\\"') || '"'"""


@dataclasses.dataclass(frozen=True)
class Objective:
    metric: str  # a column name: a METRIC_COLUMNS name or a numeric `extra` metric
    maximize: bool

    def __str__(self) -> str:
        return f"{self.metric}:{'max' if self.maximize else 'min'}"


def parse_objectives(
    objectives: str | Sequence[str] | None, extra_metrics: Sequence[str] = ()
) -> list[Objective]:
    """``["accuracy:max", "flops:min"]`` (or one comma-separated string) to Objectives.

    Names may be aliases (accuracy, loss, flops, params, size/bits, ratio, latency, time),
    numeric METRIC_COLUMNS names or numeric ``extra`` metrics in ``extra_metrics``.
    """
    if objectives is None:
        objectives = DEFAULT_OBJECTIVES
    if isinstance(objectives, str):
        objectives = [part for part in objectives.split(",")]
    allowed = {**ALIASES, **{m: m for m in NUMERIC_METRICS}, **{m: m for m in extra_metrics}}
    problems: list[str] = []
    parsed: list[Objective] = []
    for text in objectives:
        name, _, direction = text.strip().partition(":")
        name, direction = name.strip(), direction.strip().lower()
        if name not in allowed:
            problems.append(
                f"objective {text.strip()!r}: unknown metric {name!r}; allowed: "
                + ", ".join(sorted(allowed))
            )
        elif direction not in ("max", "min"):
            problems.append(
                f"objective {text.strip()!r}: direction must be max or min, as in {name}:max"
            )
        else:
            parsed.append(Objective(allowed[name], direction == "max"))
    if not objectives:
        problems.append("no objectives given; e.g. accuracy:max,flops:min")
    if problems:
        raise BenchError("\n".join(problems))
    metrics = [o.metric for o in parsed]
    duplicated = sorted({m for m in metrics if metrics.count(m) > 1})
    if duplicated:
        raise BenchError(f"objective metric given twice: {', '.join(duplicated)}")
    return parsed


def summarize(
    store: Store,
    *,
    spec: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
    pareto: bool = False,
    include_quick: bool = True,
) -> pd.DataFrame:
    """One row per (spec_name, config_id, quick): the axis values, ``n`` completed runs,
    ``<metric>_mean`` and ``<metric>_se`` (sample stddev / sqrt(n); NULL for n = 1) for
    every numeric metric measured, ``failed`` (if any run failed), ``claimed_<metric>``
    and ``claimed_<metric>_se`` from matching claims, and ``on_front``: no other config
    of the same spec (and the same quick flag) is at least as good on every objective and
    strictly better on one. With ``pareto=True`` only front rows, best first objective
    first. ``df.attrs`` holds ``axes`` and ``objectives`` (for ``render``).
    """
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    where, params = _filter(specs, include_quick)
    count = store.query(f"SELECT count(*) AS n FROM runs WHERE {where}", params)
    if int(count["n"].iloc[0]) == 0:
        what = f" of spec {', '.join(specs)}" if specs else ""
        quick = "" if include_quick else " (quick runs excluded)"
        raise BenchError(f"no runs{what} in {store.path}{quick}")

    extras = _numeric_extras(store, where, params)
    chosen = parse_objectives(objectives, extras)
    measured = _measured_metrics(store, where, params, extras)
    objective_metrics = [o.metric for o in chosen]
    metrics = objective_metrics + [m for m in measured if m not in objective_metrics]
    axes = _axes(store, where, params)
    if pareto:
        missing = [str(o) for o in chosen if o.metric not in measured]
        if missing:
            raise BenchError(
                f"objective {', '.join(missing)} has no values in the selected runs;"
                " choose others with --objectives"
            )
    claim_metrics = _claim_metrics(store, where, params)

    sql = _summary_sql(axes, metrics, extras, chosen, claim_metrics, where)
    if pareto:
        first = chosen[0]
        order = f"{quote_ident(first.metric + '_mean')} {'DESC' if first.maximize else 'ASC'}"
        sql += f"\nWHERE on_front\nORDER BY spec_name, quick, {order}, config_id"
    else:
        axis_order = "".join(f", {quote_ident(name)}" for name, _ in axes)
        sql += f"\nORDER BY spec_name, quick{axis_order}, config_id"
    df = store.query(sql, params * 2)
    if "failed" in df and not (df["failed"] > 0).any():
        df = df.drop(columns="failed")
    df.attrs["axes"] = [name for name, _ in axes]
    df.attrs["objectives"] = [str(o) for o in chosen]
    return df


def run_sql(store: Store, sql: str, fmt: str = "table") -> str:
    """``bench report --sql``: a read-only query, rendered in ``fmt``."""
    return render(store.query(sql), fmt)


# ---------------------------------------------------------------------- SQL


def _filter(specs: list[str], include_quick: bool) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    if specs:
        clauses.append("spec_name IN (SELECT unnest(?::VARCHAR[]))")
        params.append(specs)
    if not include_quick:
        clauses.append("NOT quick")
    return " AND ".join(clauses), params


def _numeric_extras(store: Store, where: str, params: list[Any]) -> list[str]:
    df = store.query(
        f"""WITH entries AS (
                SELECT key, json_type(extra, {_PATH_OF_KEY}) AS type
                FROM (SELECT extra, unnest(json_keys(extra)) AS key
                      FROM runs WHERE {where} AND status = 'completed')
            )
            SELECT key FROM entries
            WHERE key NOT LIKE 'provenance.%'
            GROUP BY key
            HAVING count(*) FILTER (WHERE type IN {_NUMBER_TYPES}) > 0
               AND count(*) FILTER (WHERE type NOT IN {_NUMBER_TYPES} AND type <> 'NULL') = 0
            ORDER BY key""",
        params,
    )
    return [k for k in df["key"] if k not in METRIC_COLUMNS]


def _metric_expr(metric: str, extras: Sequence[str]) -> str:
    if metric in extras:
        path = "$." + _json_key(metric)
        return f"TRY_CAST(json_extract(extra, '{_sql_str(path)}') AS DOUBLE)"
    return f"CAST({quote_ident(metric)} AS DOUBLE)"


def _measured_metrics(store: Store, where: str, params: list[Any], extras: list[str]) -> list[str]:
    """Numeric metrics with at least one value in the completed runs."""
    candidates = [*NUMERIC_METRICS, *extras]
    counts = ", ".join(f"count({_metric_expr(m, extras)}) AS {quote_ident(m)}" for m in candidates)
    row = store.query(
        f"SELECT {counts} FROM runs WHERE {where} AND status = 'completed'", params
    ).iloc[0]
    return [m for m in candidates if int(row[m]) > 0]


def _axes(store: Store, where: str, params: list[Any]) -> list[tuple[str, str | None]]:
    """(axis path, its column in `runs` or None) for every axis of the selected runs, in
    the order the columns were added."""
    df = store.query(
        f"""WITH keys AS (
                SELECT DISTINCT unnest(json_keys(axes)) AS key FROM runs WHERE {where}
            )
            SELECT keys.key, c.column_name
            FROM keys LEFT JOIN information_schema.columns c
              ON c.table_name = 'runs' AND lower(c.column_name) = lower(keys.key)
              AND c.column_name NOT IN (SELECT unnest(?::VARCHAR[]))
            ORDER BY c.ordinal_position NULLS LAST, keys.key""",
        [*params, sorted(BASE_COLUMNS)],
    )
    return [
        (k, None if pd.isna(c) else c) for k, c in zip(df["key"], df["column_name"], strict=True)
    ]


def _claim_metrics(store: Store, where: str, params: list[Any]) -> dict[str, list[str]]:
    """Canonical metric -> the names claims use for it, for claims of the selected specs."""
    df = store.query(
        f"""SELECT DISTINCT metric FROM claims
            WHERE spec_name IN (SELECT DISTINCT spec_name FROM runs WHERE {where})
            ORDER BY metric""",
        params,
    )
    by_metric: dict[str, list[str]] = {}
    for name in df["metric"]:
        by_metric.setdefault(ALIASES.get(name, name), []).append(name)
    return by_metric


def _summary_sql(
    axes: list[tuple[str, str | None]],
    metrics: list[str],
    extras: list[str],
    chosen: list[Objective],
    claim_metrics: dict[str, list[str]],
    where: str,
) -> str:
    q = quote_ident
    done = "status = 'completed'"

    axis_cols = []
    for name, column in axes:
        source = q(column) if column else f"axes->>'{_sql_str('$.' + _json_key(name))}'"
        axis_cols.append(f"any_value({source}) AS {q(name)}")
    metric_cols = []
    for m in metrics:
        value = _metric_expr(m, extras)
        metric_cols.append(f"avg({value}) FILTER (WHERE {done}) AS {q(m + '_mean')}")
        metric_cols.append(
            f"stddev_samp({value}) FILTER (WHERE {done})"
            f" / sqrt(count({value}) FILTER (WHERE {done})) AS {q(m + '_se')}"
        )
    grouped = ",\n       ".join(
        [
            "spec_name",
            "config_id",
            "quick",
            *axis_cols,
            f"count(*) FILTER (WHERE {done}) AS n",
            "count(*) FILTER (WHERE status = 'failed') AS failed",
            *metric_cols,
            f"coalesce(any_value(config) FILTER (WHERE {done}), any_value(config)) AS config",
        ]
    )

    def mean(alias: str, o: Objective) -> str:
        return f"{alias}.{q(o.metric + '_mean')}"

    finite_a = " AND ".join(f"isfinite({mean('a', o)})" for o in chosen)
    finite_b = " AND ".join(f"isfinite({mean('b', o)})" for o in chosen)
    as_good = " AND ".join(
        f"{mean('b', o)} {'>=' if o.maximize else '<='} {mean('a', o)}" for o in chosen
    )
    better = " OR ".join(
        f"{mean('b', o)} {'>' if o.maximize else '<'} {mean('a', o)}" for o in chosen
    )

    alias_cases = " ".join(
        f"WHEN '{_sql_str(alias)}' THEN '{_sql_str(target)}'" for alias, target in ALIASES.items()
    )
    claim_cols, claim_names = [], []
    for metric in claim_metrics:
        pick = f"canon = '{_sql_str(metric)}' AND rank = 1"
        for field, name in (("value", f"claimed_{metric}"), ("se", f"claimed_{metric}_se")):
            claim_cols.append(f"max({field}) FILTER (WHERE {pick}) AS {q(name)}")
            claim_names.append(name)
    claim_select = "".join(f", c.{q(name)}" for name in claim_names)
    claim_pivot = ",\n       ".join(["spec_name", "config_id", "quick", *claim_cols])

    keep = [q(name) for name, _ in axes] + ["n", "failed"]
    for m in metrics:
        keep += [q(m + "_mean"), q(m + "_se")]
    keep_sql = ", ".join(f"f.{col}" for col in keep)

    return f"""
WITH agg AS (
  SELECT {grouped}
  FROM runs WHERE {where}
  GROUP BY spec_name, config_id, quick
),
front AS (
  SELECT a.*,
         (a.n > 0 AND {finite_a} AND NOT EXISTS (
            SELECT 1 FROM agg b
            WHERE b.spec_name = a.spec_name AND b.quick = a.quick AND b.n > 0
              AND {finite_b} AND {as_good} AND ({better})
         )) AS on_front
  FROM agg a
),
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
  SELECT cid, json_extract(match, {_PATH_OF_KEY}) AS want,
         json_type(match, {_PATH_OF_KEY}) AS want_type,
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
      CASE WHEN t.want_type IN {_NUMBER_TYPES}
           THEN json_type(f.config, t.path) IN {_NUMBER_TYPES}
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


def _json_key(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


# ------------------------------------------------------------------- render


# Metrics a table shows by default (besides objectives and claimed ones); `wide` shows all.
TABLE_METRICS = (
    "test_accuracy",
    "flops",
    "flops_effective",
    "params",
    "size_bits",
    "compression_ratio",
    "input_ratio",
    "latency_b1_median_ms",
    "train_seconds",
)


def render(df: pd.DataFrame, fmt: str = "table", *, wide: bool = False) -> str:
    """A summary (or any query result) as ``table``, ``csv``, ``json`` or ``markdown``
    (without a final newline: the caller prints it).

    csv and json carry every column with full-precision numbers (json: a list of
    objects, null for missing); table and markdown show axis values, ``n``, each metric
    as "mean ± se" in readable units with claims beside it, and ``*`` on the front —
    the metrics of :data:`TABLE_METRICS` plus the objectives, or every metric if ``wide``.
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "csv":
        return df.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        records = [
            {str(col): _json_value(value) for col, value in zip(df.columns, row, strict=True)}
            for row in df.itertuples(index=False, name=None)
        ]
        return json.dumps(records, indent=2, allow_nan=False, ensure_ascii=False)
    headers, rows, numeric = _display(df, wide=wide)
    if fmt == "markdown":
        from tabulate import tabulate

        align = ["right" if is_num else "left" for is_num in numeric] or None
        return tabulate(
            rows, headers=headers, tablefmt="github", colalign=align, disable_numparse=True
        )
    return _rich_table(headers, rows, numeric)


def _rich_table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header, is_num in zip(headers, numeric, strict=True):
        table.add_column(header, justify="right" if is_num else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


@dataclasses.dataclass(frozen=True)
class _Unit:
    label: str
    scale: float = 1.0  # displayed = value * scale
    decimals: int | None = None  # None: about four significant digits


def _unit(metric: str, values: pd.Series) -> _Unit:
    peak = values.abs().max(skipna=True) if len(values) else float("nan")
    peak = 0.0 if pd.isna(peak) else float(peak)
    pretty = metric.replace("_", " ")
    if metric == "test_accuracy":
        return _Unit("accuracy (%)", 100.0, 2)
    if metric == "test_loss":
        return _Unit("loss")
    if metric in ("params", "flops", "flops_effective", "input_values"):
        label = {"flops": "FLOPs", "flops_effective": "eff. FLOPs"}.get(metric, pretty)
        for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if peak >= factor:
                return _Unit(f"{label} ({prefix})", 1 / factor)
        return _Unit(label, 1.0)
    if metric == "size_bits":
        if peak >= 8 * 1024 * 1024:
            return _Unit("size (MiB)", 1 / (8 * 1024 * 1024))
        if peak >= 8 * 1024:
            return _Unit("size (KiB)", 1 / (8 * 1024))
        return _Unit("size (bits)", 1.0, 0)
    if metric in ("compression_ratio", "input_ratio"):
        return _Unit(f"{'ratio' if metric == 'compression_ratio' else pretty} (×)")
    if metric.startswith("latency_") and metric.endswith("_ms"):
        return _Unit(f"{pretty[: -len(' ms')]} (ms)")
    if metric == "train_seconds":
        return _Unit("train time (s)")
    if metric == "latency_batch_size":
        return _Unit("batch size", 1.0, 0)
    return _Unit(pretty)


def _display(
    df: pd.DataFrame, *, wide: bool = False
) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, text cells and right-alignment flags for table and markdown."""
    means = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    metrics = [m for m in means if not m.startswith("claimed_")]
    if not metrics:  # a plain query result
        cells = [[_plain(v) for v in row] for row in df.itertuples(index=False, name=None)]
        return [str(c) for c in df.columns], cells, [_is_number(df[c]) for c in df.columns]

    claims = [c[len("claimed_") :] for c in df.columns if c.startswith("claimed_")]
    claimed_only = [m for m in claims if not m.endswith("_se") and m not in metrics]
    directions = {}
    for text in df.attrs.get("objectives", []):
        name, _, way = text.partition(":")
        directions[name] = " ↑" if way == "max" else " ↓"
    shown = {"spec_name", "config_id", "quick", "n", "failed", "on_front"}
    axes = df.attrs.get("axes") or [
        c
        for c in df.columns
        if c not in shown and not c.startswith("claimed_") and not c.endswith(("_mean", "_se"))
    ]

    columns: list[tuple[str, list[str], bool]] = []  # header, cells, right-aligned
    if "on_front" in df:
        columns.append(("front", ["*" if _true(v) else "" for v in df["on_front"]], False))
    if "spec_name" in df and df["spec_name"].nunique() > 1:
        columns.append(("spec", [_plain(v) for v in df["spec_name"]], False))
    if "quick" in df and any(_true(v) for v in df["quick"]):
        columns.append(("quick", ["quick" if _true(v) else "" for v in df["quick"]], False))
    for axis in (a for a in axes if a in df.columns):
        columns.append((axis, [_axis_text(v) for v in df[axis]], _is_number(df[axis])))
    if "n" in df:
        columns.append(("n", [_plain(v) for v in df["n"]], True))
    if "failed" in df:
        columns.append(("failed", [_plain(v) if v else "" for v in df["failed"]], True))
    for m in metrics + claimed_only:
        measured = df.get(f"{m}_mean")
        claimed = df.get(f"claimed_{m}")
        if claimed is None and m not in directions and (measured is None or measured.isna().all()):
            continue
        if not wide and m not in TABLE_METRICS and m not in directions and claimed is None:
            continue
        if (
            not wide
            and m == "flops_effective"
            and m not in directions
            and measured is not None
            and measured.equals(df.get("flops_mean"))
        ):
            continue  # nothing compressed: identical to the dense FLOPs column
        present = [s for s in (measured, claimed) if s is not None]
        unit = _unit(m, pd.concat(present))
        if measured is not None:
            cells = _pm_column(measured, df.get(f"{m}_se"), unit)
            columns.append((unit.label + directions.get(m, ""), cells, True))
        if claimed is not None:
            cells = _pm_column(claimed, df.get(f"claimed_{m}_se"), unit)
            columns.append((f"claimed {unit.label}", cells, True))
    headers = [header for header, _, _ in columns]
    rows = [list(row) for row in zip(*(cells for _, cells, _ in columns), strict=True)]
    return headers, rows, [right for _, _, right in columns]


def _axis_text(value: Any) -> str:
    """Axis values that are tables (stored as JSON text) in their short form."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return short(json.loads(value))
        except ValueError:
            pass
    return _plain(value)


def _pm_column(means: pd.Series, ses: pd.Series | None, unit: _Unit) -> list[str]:
    ses_list = [None] * len(means) if ses is None else list(ses)
    return [_pm(mean, se, unit) for mean, se in zip(means, ses_list, strict=True)]


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _pm(mean: Any, se: Any, unit: _Unit) -> str:
    if _missing(mean):
        return ""
    mean = float(mean) * unit.scale
    se = None if _missing(se) else float(se) * unit.scale
    decimals = unit.decimals if unit.decimals is not None else _decimals(mean, 4)
    if se is not None and unit.decimals is None and se > 0:
        decimals = max(decimals, min(_decimals(se, 2), 6))
    text = _fixed(mean, decimals)
    return text if se is None else f"{text} ± {_fixed(se, decimals)}"


def _decimals(value: float, significant: int) -> int:
    if not math.isfinite(value) or value == 0:
        return 2
    return max(0, min(6, significant - 1 - math.floor(math.log10(abs(value)))))


def _fixed(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{decimals}f}"


def _plain(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _true(value: Any) -> bool:
    return not _missing(value) and bool(value)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _json_value(value: Any) -> Any:
    if _missing(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | pd.Timedelta) or hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)
