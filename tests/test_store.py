"""The results database: round trip, migrations, resume, replacement rules, axis columns,
read-only queries, lock handling and crash safety under SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from benchharness import migrations
from benchharness.errors import BenchError
from benchharness.records import METRIC_COLUMNS, PROVENANCE_COLUMNS, CurvePoint, RunRecord
from benchharness.store import Store

REPO = Path(__file__).resolve().parents[1]


def make_record(job_id: str = "job-1", **overrides) -> RunRecord:
    fields = dict(
        job_id=job_id,
        config_id="cfg-1",
        spec_name="spec-a",
        spec_hash="hash-a",
        quick=False,
        seed=0,
        config={"model": {"name": "mlp", "width": 64}, "train": {"lr": 0.1}},
        axes={"model.width": 64},
        status="completed",
        metrics={"test_accuracy": 0.97, "flops": 123_456},
        curves=[CurvePoint("train", step, "train_loss", 1 / step) for step in (1, 2)],
    )
    fields.update(overrides)
    return RunRecord(**fields)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "results" / "bench.duckdb")


def raw(store: Store, sql: str, params=None):
    con = duckdb.connect(str(store.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def column_types(store: Store) -> dict[str, str]:
    rows = raw(
        store,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'runs'",
    )
    return dict(rows)


# ---------------------------------------------------------------- round trip


def test_round_trip_every_column(store: Store) -> None:
    metrics = {
        "test_accuracy": 0.9812,
        "test_loss": 0.061,
        "params": 101_770,
        "flops": 203_264,
        "flops_effective": 50_000,
        "size_bits": 3_256_640,
        "compression_ratio": 4.0,
        "compression_realised": True,
        "input_values": 196,
        "input_ratio": 4.0,
        "latency_b1_median_ms": 0.12,
        "latency_b1_p90_ms": 0.2,
        "latency_batch_median_ms": 1.5,
        "latency_batch_p90_ms": 1.9,
        "latency_batch_size": 256,
        "train_seconds": 12.5,
        "train_reused": True,
        "compress_seconds": 0.5,
        "dense_test_accuracy": 0.97,
        "transform_flops": 176_000,
        "flops_total": 226_000,
        "latency_deployed_b1_median_ms": 0.1,
        "latency_deployed_b1_p90_ms": 0.15,
        "latency_deployed_batch_median_ms": 1.2,
        "latency_deployed_batch_p90_ms": 1.4,
        "selected_epoch": 4,
        "sparsity": 0.75,  # not a column: must land in `extra`
    }
    assert set(metrics) - {"sparsity"} == set(METRIC_COLUMNS)
    provenance = {
        "git_commit": "abc123",
        "package_version": "0.1.0",
        "plugin_versions": {"benchharness": "0.1.0", "thirdparty": "2.3"},
        "torch_version": "2.4.0",
        "cuda_version": None,
        "device": "cpu",
        "cpu": "Xeon",
        "hostname": "box",
    }
    started = datetime(2024, 5, 1, 12, 0, 0)
    finished = datetime(2024, 5, 1, 14, 30, 0, tzinfo=timezone(timedelta(hours=2)))
    curves = [CurvePoint("train", step, "train_loss", 1.0 / step) for step in range(1, 6)]
    curves.append(CurvePoint("eval", 5, "val_accuracy", 0.97))
    record = make_record(
        metrics=metrics,
        extra={"note": "hello", "nested": {"a": [1, 2]}},
        provenance=provenance,
        started_at=started,
        finished_at=finished,
        curves=curves,
        seed=7,
        quick=True,
        axes={"model.width": 64, "train.lr": 0.1},
    )

    assert store.save(record) == "saved"

    df = store.runs()
    assert len(df) == 1
    row = df.iloc[0]
    assert (row.job_id, row.config_id, row.spec_name, row.spec_hash) == (
        "job-1",
        "cfg-1",
        "spec-a",
        "hash-a",
    )
    assert bool(row.quick) is True and int(row.seed) == 7 and row.status == "completed"
    assert row.error is None
    for name, value in metrics.items():
        if name == "sparsity":
            continue
        stored = row[name]
        if isinstance(value, bool):
            assert bool(stored) is value
        else:
            assert float(stored) == pytest.approx(value), name
    assert json.loads(row.config) == record.config
    assert json.loads(row["axes"]) == record.axes
    assert json.loads(row.extra) == {"note": "hello", "nested": {"a": [1, 2]}, "sparsity": 0.75}
    assert json.loads(row.plugin_versions) == provenance["plugin_versions"]
    for name in ("git_commit", "package_version", "torch_version", "device", "cpu", "hostname"):
        assert row[name] == provenance[name]
    assert row.cuda_version is None
    assert row.started_at.to_pydatetime() == started
    # an aware timestamp is stored as naive UTC
    assert row.finished_at.to_pydatetime() == datetime(2024, 5, 1, 12, 30, 0)
    assert float(row["model.width"]) == 64.0 and float(row["train.lr"]) == 0.1

    got = store.curves("job-1")
    assert list(got.columns) == ["phase", "step", "name", "value"]
    expected = sorted((p.phase, p.step, p.name, p.value) for p in curves)
    assert sorted(got.itertuples(index=False, name=None)) == expected

    # every column of records.py exists in the migrated schema (a new metric needs m00X)
    assert set(METRIC_COLUMNS) | set(PROVENANCE_COLUMNS) <= set(column_types(store))


def test_failed_record_with_error_and_nan_values(store: Store) -> None:
    record = make_record(
        status="failed",
        error="Diverged: loss is nan at epoch 3",
        metrics={"test_loss": float("nan"), "flops": float("nan")},
        extra={"last_loss": float("inf")},
        curves=[CurvePoint("train", 3, "train_loss", float("nan"))],
    )
    assert store.save(record) == "saved"
    row = store.runs().iloc[0]
    assert row.status == "failed" and row.error.startswith("Diverged")
    assert row.test_loss != row.test_loss  # NaN kept in a DOUBLE column
    assert row.flops is None or str(row.flops) == "<NA>"  # no NaN BIGINT
    assert json.loads(row.extra) == {"last_loss": None}  # JSON has no NaN
    assert len(store.curves(record.job_id)) == 1


# ---------------------------------------------------------------- migrations


def test_migrations_recorded_once_and_reopen_is_idempotent(store: Store) -> None:
    store.save(make_record("a"))
    first = raw(store, "SELECT name, applied_at FROM schema_migrations ORDER BY name")
    assert [name for name, _ in first] == [name for name, _ in migrations.MIGRATIONS]
    assert first[0][0] == "m001_initial" and first[0][1] is not None

    again = Store(store.path)
    again.save(make_record("b"))
    assert raw(store, "SELECT name, applied_at FROM schema_migrations ORDER BY name") == first
    assert {r[0] for r in raw(store, "SELECT job_id FROM runs")} == {"a", "b"}


def test_adding_a_migration_is_one_function(store: Store, monkeypatch) -> None:
    store.save(make_record("a"))

    def m099_add_notes(con) -> None:
        con.execute("ALTER TABLE runs ADD COLUMN notes VARCHAR")

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m099_add_notes", m099_add_notes)]
    )
    fresh = Store(store.path)
    assert fresh.completed_ids(["a"]) == {"a"}  # a read brings the schema up to date
    names = [r[0] for r in raw(store, "SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [name for name, _ in migrations.MIGRATIONS]
    assert names[0] == "m001_initial" and names[-1] == "m099_add_notes"
    assert "notes" in column_types(store)


def test_newer_migration_is_refused(store: Store) -> None:
    store.save(make_record("a"))
    con = duckdb.connect(str(store.path))
    con.execute("INSERT INTO schema_migrations VALUES ('m999_from_the_future', now())")
    con.close()

    message = (
        f"{store.path} was written by a newer benchharness (migration m999_from_the_future);"
        " upgrade"
    )
    with pytest.raises(BenchError) as write_error:
        Store(store.path).save(make_record("b"))
    assert str(write_error.value) == message
    with pytest.raises(BenchError) as read_error:
        Store(store.path).runs()
    assert str(read_error.value) == message


# -------------------------------------------------------------------- resume


def test_completed_ids(store: Store) -> None:
    assert store.completed_ids(["a", "b"]) == set()  # no database yet: nothing done
    assert not store.path.exists()
    store.save(make_record("a"))
    store.save(make_record("b", status="failed", error="boom"))
    store.save(make_record("c"))
    assert store.completed_ids(["a", "b", "d"]) == {"a"}
    assert store.completed_ids([]) == set()
    assert store.completed_ids(iter(["c", "c", "a"])) == {"a", "c"}


def test_failed_ids_follow_the_merge_rule(store: Store) -> None:
    assert store.failed_ids(["a"]) == set()  # no database yet
    store.save(make_record("a", status="failed", error="first try", metrics={}))
    store.save(make_record("b", status="failed", error="boom", metrics={}))
    store.save(make_record("c"))
    store.save(make_record("a"))  # completed replaces failed
    store.save(make_record("c", status="failed", error="rerun crashed", metrics={}))
    assert store.failed_ids(["a", "b", "c", "d"]) == {"b"}
    assert store.statuses(["a", "b", "c", "d"]) == {
        "a": "completed",
        "b": "failed",
        "c": "completed",
    }


def test_failed_never_replaces_completed(store: Store) -> None:
    good = make_record("a", metrics={"test_accuracy": 0.99})
    assert store.save(good) == "saved"
    bad = make_record("a", status="failed", error="forced rerun crashed", metrics={}, curves=[])
    assert store.save(bad) == "kept_completed"
    row = store.runs().iloc[0]
    assert row.status == "completed" and row.error is None and row.test_accuracy == 0.99
    assert len(store.curves("a")) == 2


def test_completed_replaces_failed_and_earlier_curves(store: Store) -> None:
    store.save(make_record("a", status="failed", error="first try", metrics={}))
    store.save(make_record("a", status="failed", error="second try", metrics={}))
    row = store.runs().iloc[0]
    assert row.error == "second try"

    curves = [CurvePoint("eval", 9, "x", 1.0)]
    rerun = make_record("a", metrics={"test_accuracy": 0.5}, curves=curves)
    assert store.save(rerun) == "saved"
    df = store.runs()
    assert len(df) == 1 and df.iloc[0].status == "completed" and df.iloc[0].test_accuracy == 0.5
    assert list(store.curves("a").itertuples(index=False, name=None)) == [("eval", 9, "x", 1.0)]

    # completed over completed
    store.save(make_record("a", metrics={"test_accuracy": 0.6}, curves=[]))
    assert store.runs().iloc[0].test_accuracy == 0.6
    assert store.curves("a").empty


# --------------------------------------------------------------- axis columns


def test_axis_columns_are_typed(store: Store) -> None:
    store.save(
        make_record(
            "a",
            axes={
                "model.width": 64,
                "train.lr": 0.05,
                "quant.enabled": True,
                "optimizer.name": "sgd",
                "model.hidden": [128, 64],
                "transform.opts": {"b": 1, "a": 2},
                "prune.amount": None,
            },
        )
    )
    types = column_types(store)
    assert types["model.width"] == "DOUBLE"
    assert types["train.lr"] == "DOUBLE"
    assert types["quant.enabled"] == "BOOLEAN"
    assert types["optimizer.name"] == "VARCHAR"
    assert types["model.hidden"] == "VARCHAR"
    assert "prune.amount" not in types  # no type to give it yet
    row = raw(
        store,
        'SELECT "model.width", "quant.enabled", "optimizer.name", "model.hidden", '
        '"transform.opts" FROM runs',
    )[0]
    assert row == (64.0, True, "sgd", "[128,64]", '{"a":2,"b":1}')

    store.save(make_record("b", axes={"prune.amount": 0.5, "model.width": 32}))
    assert column_types(store)["prune.amount"] == "DOUBLE"
    assert raw(store, 'SELECT "prune.amount" FROM runs ORDER BY job_id') == [(None,), (0.5,)]


def test_axis_column_widens_to_varchar_on_conflict(store: Store) -> None:
    store.save(make_record("a", axes={"model.width": 64, "quant.on": True}))
    store.save(make_record("b", axes={"model.width": 2.5, "quant.on": False}))
    assert column_types(store)["model.width"] == "DOUBLE"

    store.save(make_record("c", axes={"model.width": "wide", "quant.on": 8}))
    types = column_types(store)
    assert types["model.width"] == "VARCHAR" and types["quant.on"] == "VARCHAR"
    rows = raw(store, 'SELECT job_id, "model.width", "quant.on" FROM runs ORDER BY job_id')
    # earlier cells are rewritten from the axes JSON in the same text form as new ones
    assert rows == [("a", "64", "true"), ("b", "2.5", "false"), ("c", "wide", "8")]

    store.save(make_record("d", axes={"model.width": 16, "quant.on": None}))
    assert raw(store, 'SELECT "model.width", "quant.on" FROM runs WHERE job_id = \'d\'') == [
        ("16", None)
    ]


# ----------------------------------------------------------------- read-only


def test_query_is_read_only_and_errors_are_one_line(store: Store) -> None:
    store.save(make_record("a"))
    df = store.query("SELECT job_id, test_accuracy FROM runs")
    assert df.to_dict("records") == [{"job_id": "a", "test_accuracy": 0.97}]

    for sql in (
        "DELETE FROM runs",
        "INSERT INTO claims VALUES ('x', '{}', 'm', 1, NULL, NULL)",
        "DROP TABLE runs",
        "CREATE TABLE t (a INT)",
        "SELEC 1",
        "SELECT no_such_column FROM runs",
    ):
        with pytest.raises(BenchError) as error:
            store.query(sql)
        message = str(error.value)
        assert "\n" not in message and message.startswith("SQL error:"), message
    assert len(store.runs()) == 1


def test_reads_without_database_are_one_line_errors(tmp_path: Path) -> None:
    store = Store(tmp_path / "none.duckdb")
    for read in (store.runs, lambda: store.curves("x"), lambda: store.query("SELECT 1")):
        with pytest.raises(BenchError) as error:
            read()
        assert str(error.value) == (
            f"no results database at {store.path}; run `bench run SPEC` first"
        )
    assert not store.path.exists()


def test_save_claims_replaces_that_specs_claims(store: Store) -> None:
    claim = {
        "match": {"model.width": 64},
        "metric": "accuracy",
        "value": 0.98,
        "se": 0.001,
        "source": "paper",
    }
    store.save_claims("spec-a", [claim, {**claim, "match": {}, "se": None, "source": None}])
    store.save_claims("spec-b", [claim])
    store.save_claims("spec-a", [{**claim, "value": 0.95}])
    rows = raw(store, "SELECT spec_name, match, metric, value, se, source FROM claims ORDER BY 1")
    assert rows == [
        ("spec-a", '{"model.width":64}', "accuracy", 0.95, 0.001, "paper"),
        ("spec-b", '{"model.width":64}', "accuracy", 0.98, 0.001, "paper"),
    ]
    with pytest.raises(BenchError, match="spec-a: claim 1"):
        store.save_claims("spec-a", [{"metric": "accuracy", "value": "high"}])


# ------------------------------------------------------ locks and crash safety


def _python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@contextlib.contextmanager
def _held_open(path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding ``path`` open read-write until it is told to let go."""
    holder = _python(
        f"""
        import duckdb, sys
        con = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        sys.stdin.readline()
        con.close()
        """
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def _let_go(holder: subprocess.Popen) -> None:
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.wait(timeout=30) == 0


def test_locked_database_keeps_results_in_the_journal_until_it_frees(store: Store) -> None:
    store.save(make_record("a"))
    with _held_open(store.path) as holder:
        impatient = Store(store.path, lock_timeout=0.2, save_wait=0.2)
        started = time.monotonic()
        assert impatient.save(make_record("b")) == "journaled"  # no error, nothing dropped
        assert time.monotonic() - started >= 0.2
        journaled = [e["row"]["job_id"] for _, e in impatient.journal.read() if e["kind"] == "run"]
        assert journaled == ["a", "b"]
        with pytest.raises(BenchError) as error:  # a read cannot wait for ever either
            impatient.runs()
        assert str(store.path) in str(error.value) and "locked" in str(error.value)
        _let_go(holder)
        # the next command that gets the lock writes what waited
        assert Store(store.path).completed_ids(["a", "b"]) == {"a", "b"}
        runs = Store(store.path).runs()
        assert sorted(runs["job_id"]) == ["a", "b"]
        assert len(Store(store.path).curves("b")) == 2


def test_a_resume_sees_failures_still_only_in_the_journal(store: Store) -> None:
    store.save(make_record("a", status="failed", error="first try", metrics={}))
    store.save(make_record("b"))
    with _held_open(store.path) as holder:
        busy = Store(store.path, lock_timeout=0.2, save_wait=0.2)
        for record in (
            make_record("c", status="failed", error="late", metrics={}),
            make_record("a"),
            make_record("b", status="failed", error="rerun crashed", metrics={}),
        ):
            assert busy.save(record) == "journaled"
        # the database cannot be read: the journal alone answers, by the merge rule
        assert busy.failed_ids(["a", "b", "c"]) == {"c"}
        assert busy.completed_ids(["a", "b", "c"]) == {"a", "b"}
        _let_go(holder)
    assert Store(store.path).failed_ids(["a", "b", "c"]) == {"c"}


_WRITER = """
import sys
from benchharness.records import CurvePoint, RunRecord
from benchharness.store import Store

store = Store(sys.argv[1])
prefix = sys.argv[2]
i = 0
while True:
    record = RunRecord(
        job_id=f"{prefix}-{i}", config_id=f"c{i % 5}", spec_name="crash", spec_hash="h",
        quick=False, seed=i, config={"i": i}, axes={"model.width": i % 5, f"axis{i % 7}": i},
        status="completed", metrics={"test_accuracy": i / 1000},
        curves=[CurvePoint("train", s, "loss", s * 0.5) for s in range(40)],
    )
    store.save(record)
    print(record.job_id, flush=True)
    i += 1
"""


def test_sigkill_during_saves_keeps_committed_rows(store: Store, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    committed: list[str] = []
    for round_, wait in enumerate((0.0, 0.013, 0.029)):
        writer = subprocess.Popen(
            [sys.executable, str(script), str(store.path), f"r{round_}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            for _ in range(5 + 2 * round_):
                line = writer.stdout.readline().strip()
                assert line, writer.stderr.read()
                committed.append(line)
            time.sleep(wait)  # land the kill at different points of the next save
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        # whatever was printed had been committed; the file opens and holds all of it
        assert store.completed_ids(committed) == set(committed)
        counts = store.query("SELECT job_id, count(*) AS n FROM curves GROUP BY job_id")
        per_job = dict(zip(counts["job_id"], counts["n"], strict=True))
        assert all(per_job[job] == 40 for job in committed)
        # no half-written job: every run row has all of its curves
        assert set(per_job.values()) == {40}
    after = Store(store.path)
    assert after.save(make_record("after-crash")) == "saved"
    assert len(after.runs()) >= len(committed) + 1


def test_timestamps_in_utc(store: Store) -> None:
    aware = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    provenance = {"finished_at": "2024-01-01T01:00:00+01:00"}  # ISO text also accepted
    store.save(make_record("a", started_at=aware, provenance=provenance))
    row = store.runs().iloc[0]
    assert row.started_at.to_pydatetime() == datetime(2024, 1, 1)
    assert row.finished_at.to_pydatetime() == datetime(2024, 1, 1)
