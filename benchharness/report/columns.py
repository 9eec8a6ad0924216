"""What the selected runs hold, found in SQL: the run filter, the axes, the numeric metrics
(columns and ``extra`` entries) and the claimed metrics; SQL quoting helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchharness.records import METRIC_COLUMNS
from benchharness.report.objectives import ALIASES, NUMERIC_METRICS
from benchharness.report.table import Table
from benchharness.store import BASE_COLUMNS, Store, StoreReader, quote_ident

Source = Store | StoreReader  # anything with .fetch(sql, params) and .query(sql, params)

NUMBER_TYPES = "('UBIGINT', 'BIGINT', 'DOUBLE')"
# JSON path of the top-level key in SQL column `key` (keys may contain dots)
PATH_OF_KEY = """'$."' || replace(key, '"', '\\"') || '"'"""


def filter_sql(specs: list[str], include_quick: bool) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    if specs:
        clauses.append("spec_name IN (SELECT unnest(?::VARCHAR[]))")
        params.append(specs)
    if not include_quick:
        clauses.append("NOT quick")
    return " AND ".join(clauses), params


def numeric_extras(store: Source, where: str, params: list[Any]) -> list[str]:
    found = Table.fetch(
        store,
        f"""WITH entries AS (
                SELECT key, json_type(extra, {PATH_OF_KEY}) AS type
                FROM (SELECT extra, unnest(json_keys(extra)) AS key
                      FROM runs WHERE {where} AND status = 'completed')
            )
            SELECT key FROM entries
            WHERE key NOT LIKE 'provenance.%'
            GROUP BY key
            HAVING count(*) FILTER (WHERE type IN {NUMBER_TYPES}) > 0
               AND count(*) FILTER (WHERE type NOT IN {NUMBER_TYPES} AND type <> 'NULL') = 0
            ORDER BY key""",
        params,
    )
    return [k for k in found.column("key") if k not in METRIC_COLUMNS]


def metric_expr(metric: str, extras: Sequence[str]) -> str:
    if metric in extras:
        path = "$." + json_key(metric)
        return f"TRY_CAST(json_extract(extra, '{sql_str(path)}') AS DOUBLE)"
    return f"CAST({quote_ident(metric)} AS DOUBLE)"


def measured_metrics(
    store: Source,
    where: str,
    params: list[Any],
    extras: list[str],
    only: Sequence[str] | None = None,
) -> list[str]:
    """Numeric metrics (of ``only`` if given) with at least one value in the completed runs."""
    candidates = [*NUMERIC_METRICS, *extras]
    if only is not None:
        candidates = [m for m in candidates if m in only]
    counts = ", ".join(f"count({metric_expr(m, extras)}) AS {quote_ident(m)}" for m in candidates)
    _, rows = store.fetch(
        f"SELECT {counts} FROM runs WHERE {where} AND status = 'completed'", params
    )
    return [m for m, count in zip(candidates, rows[0], strict=True) if int(count) > 0]


def axes_of(store: Source, where: str, params: list[Any]) -> list[tuple[str, str | None]]:
    """(axis path, its column in `runs` or None) for every axis of the selected runs, in
    the order the columns were added."""
    _, rows = store.fetch(
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
    return [(key, column) for key, column in rows]


def runs_and_claim_metrics(
    store: Source, where: str, params: list[Any]
) -> tuple[int, dict[str, list[str]]]:
    """The number of selected runs, and canonical metric -> the names claims use for it,
    for claims of the selected specs (one query)."""
    _, rows = store.fetch(
        f"""SELECT (SELECT count(*) FROM runs WHERE {where}) AS n,
                   (SELECT list(DISTINCT metric ORDER BY metric) FROM claims
                    WHERE spec_name IN (SELECT DISTINCT spec_name FROM runs WHERE {where})
                   ) AS metrics""",
        params * 2,
    )
    by_metric: dict[str, list[str]] = {}
    count, names = rows[0]
    for name in names or []:
        by_metric.setdefault(ALIASES.get(name, name), []).append(name)
    return int(count), by_metric


def json_key(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sql_str(text: str) -> str:
    return text.replace("'", "''")
