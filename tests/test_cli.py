"""`bench` through typer's CliRunner: exit codes, one-line errors, resume, reports, plugins.

The studies are tiny (scikit-learn's 8×8 digits, a one-hidden-layer MLP, two epochs), so
every command runs for real, in process.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from benchharness import BenchError, Model, hookimpl
from benchharness.cli import app
from benchharness.plugin_listing import describe_plugins
from benchharness.plugins import get_registry
from benchharness.store import Store

SPECS = Path(__file__).parent / "specs"
DIGITS = SPECS / "cli_digits.toml"  # 2 hidden widths × 2 learning rates × 2 seeds = 8 jobs
DIVERGE = SPECS / "cli_diverge.toml"  # lr 0.05 and lr 1000 (diverges) on compressednet
BAD = SPECS / "cli_bad.toml"  # three problems

PROBLEM_LINE = re.compile(r"^(?P<file>\S+): (?P<key>\S+) — (?P<message>.+)$")


def bench(*args: str | Path) -> Result:
    """Invoke `bench`; an exception escaping the CLI (a crash, not an exit code) fails the test."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"bench {' '.join(map(str, args))} crashed") from result.exception
    return result


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _no_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test names its database; none may fall back to results/bench.duckdb."""
    monkeypatch.delenv("BENCH_DB", raising=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """The 8-job digits study, run once for the report tests: (database, run result)."""
    db = tmp_path_factory.mktemp("study") / "bench.duckdb"
    result = bench("run", DIGITS, "--db", db)
    assert result.exit_code == 0, result.output
    return db, result


def report_json(db: Path, *args: str) -> list[dict]:
    result = bench("report", "--db", db, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def non_dominated(rows: list[dict], objectives: list[tuple[str, bool]]) -> set[str]:
    """config_ids no other row weakly beats on every objective and strictly on one."""

    def better_or_equal(a: dict, b: dict) -> bool:
        return all((a[m] >= b[m]) if hi else (a[m] <= b[m]) for m, hi in objectives)

    def strictly_better(a: dict, b: dict) -> bool:
        return any((a[m] > b[m]) if hi else (a[m] < b[m]) for m, hi in objectives)

    return {
        r["config_id"]
        for r in rows
        if not any(better_or_equal(o, r) and strictly_better(o, r) for o in rows if o is not r)
    }


# --------------------------------------------------------------------- validate


def test_validate_ok_reports_job_count() -> None:
    result = bench("validate", DIGITS)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{DIGITS}: ok — 8 jobs (4 configurations × seeds)"


def test_validate_counts_jobs_after_overrides_and_quick() -> None:
    result = bench("validate", DIGITS, "--set", 'matrix."optimizer.lr"=[0.1]')
    assert result.exit_code == 0, result.output
    assert "ok — 4 jobs (2 configurations × seeds)" in result.stdout
    result = bench("validate", DIGITS, "--quick")  # one seed
    assert result.exit_code == 0, result.output
    assert "ok — 4 jobs" in result.stdout


def test_validate_bad_spec_one_line_per_problem() -> None:
    result = bench("validate", BAD)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    problems = lines(result.output)
    assert len(problems) == 3, result.output
    parsed = [PROBLEM_LINE.match(line) for line in problems]
    assert all(parsed), problems
    assert {m["file"] for m in parsed} == {str(BAD)}
    assert [m["key"] for m in parsed] == ["dataset.normalise", "model.activation", "optimizer.lr"]
    assert "did you mean 'normalize'" in problems[0]


def test_validate_set_typo_did_you_mean() -> None:
    result = bench("validate", DIVERGE, "--set", "model.widht=2")  # compressednet
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = lines(result.output)
    match = PROBLEM_LINE.match(line)
    assert match and match["file"] == str(DIVERGE) and match["key"] == "model.widht"
    assert "did you mean 'width'?" in line


def test_validate_lists_every_problem_of_overrides() -> None:
    result = bench("validate", DIVERGE, "--set", "model.widht=2", "--set", "optimizer.epochs=0")
    assert result.exit_code == 2
    out = lines(result.output)
    assert len(out) == 2 and all(PROBLEM_LINE.match(line) for line in out), out
    assert {PROBLEM_LINE.match(line)["key"] for line in out} == {"model.widht", "optimizer.epochs"}


def test_validate_set_typo_on_lenet_option() -> None:
    result = bench("validate", DIGITS, "--set", "model.hiden=[8]")
    assert result.exit_code == 2
    (line,) = lines(result.output)
    assert line.startswith(f"{DIGITS}: model.hiden — ")
    assert "did you mean 'hidden'?" in line


def test_validate_unknown_plugin_lists_known_names() -> None:
    result = bench("validate", DIGITS, "--set", "model.name=resnet")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = lines(result.output)
    assert line.startswith(f"{DIGITS}: model.name — ")
    assert "unknown model 'resnet'" in line
    assert "compressednet, lenet300, lenet5" in line


def test_validate_missing_file_and_syntax_error() -> None:
    for path in (SPECS / "does_not_exist.toml", SPECS / "syntax_error.toml"):
        result = bench("validate", path)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert lines(result.output) and all(str(path) in line for line in lines(result.output))


def test_bad_set_syntax_is_one_line() -> None:
    result = bench("validate", DIGITS, "--set", "no_equals_sign")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert len(lines(result.output)) == 1


# ----------------------------------------------------------------------- run


def test_dry_run_prints_jobs_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "bench.duckdb"
    result = bench("run", DIGITS, "--dry-run", "--db", db)
    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert len(out) == 8
    assert [line.split()[0] for line in out] == [f"{i}/8" for i in range(1, 9)]
    assert all("model.hidden=" in line and "optimizer.lr=" in line for line in out)
    assert len({line.split()[1] for line in out}) == 8  # distinct job ids
    assert not db.exists() and not db.parent.exists()


def test_run_prints_progress_lines(study: tuple[Path, Result]) -> None:
    _db, result = study
    err = result.stderr
    assert "cli_digits: 8 jobs, 0 already completed, 8 to run on cpu" in err
    for i in range(1, 9):
        assert f"[job {i}/8] start " in err
        assert re.search(
            rf"^\[job {i}/8\] train 1/2 .*test_accuracy .*\| job ETA \S+ \| study ETA \S+$",
            err,
            re.M,
        ), err
        assert re.search(rf"^\[job {i}/8\] train 2/2 ", err, re.M)
        assert re.search(rf"^\[job {i}/8\] done in [0-9.]+s: test accuracy [0-9.]+%", err, re.M)
    assert "8 completed, 0 failed" in err
    assert "\x1b[" not in err  # not a terminal: plain lines, no live display


def test_run_stores_every_job(study: tuple[Path, Result]) -> None:
    db, _ = study
    runs = Store(db).runs()
    assert len(runs) == 8
    assert set(runs["status"]) == {"completed"}
    assert runs["job_id"].is_unique
    assert runs["test_accuracy"].between(0, 1).all()
    assert (runs.groupby("config_id").size() == 2).all()


# -------------------------------------------------------------------- report


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "markdown"])
def test_report_every_format(study: tuple[Path, Result], fmt: str) -> None:
    db, _ = study
    result = bench("report", "--db", db, "--format", fmt)
    assert result.exit_code == 0, result.output
    out = result.stdout
    if fmt == "json":
        rows = json.loads(out)
        assert len(rows) == 4
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == 4
        assert {
            "model.hidden",
            "optimizer.lr",
            "n",
            "test_accuracy_mean",
            "test_accuracy_se",
            "flops_mean",
            "on_front",
        } <= set(rows[0])
        assert {r["n"] for r in rows} == {"2"}
    elif fmt == "markdown":
        table = [line for line in lines(out) if line.startswith("|")]
        assert len(table) == 2 + 4  # header, rule, 4 configurations
        assert "model.hidden" in table[0] and "optimizer.lr" in table[0]
        assert re.match(r"^\|[-:| ]+\|$", table[1])
    else:
        assert "model.hidden" in out and "optimizer.lr" in out
        assert "[32]" in out and "[4]" in out
        assert "±" in out


def test_report_json_rows(study: tuple[Path, Result]) -> None:
    db, _ = study
    rows = report_json(db)
    assert len(rows) == 4
    # table-valued axes are nested JSON, never JSON text inside a string
    assert {(tuple(r["model.hidden"]), r["optimizer.lr"]) for r in rows} == {
        ((4,), 0.02),
        ((4,), 0.1),
        ((32,), 0.02),
        ((32,), 0.1),
    }
    runs = Store(db).runs()
    for row in rows:
        assert row["n"] == 2
        mine = runs[runs["config_id"] == row["config_id"]]
        assert len(mine) == 2
        assert row["test_accuracy_mean"] == pytest.approx(mine["test_accuracy"].mean())
        assert row["test_accuracy_se"] == pytest.approx(mine["test_accuracy"].std(ddof=1) / 2**0.5)
        for metric in ("flops", "params", "size_bits", "train_seconds"):
            assert f"{metric}_mean" in row and f"{metric}_se" in row
    params = {tuple(r["model.hidden"]): r["params_mean"] for r in rows}
    assert params[(4,)] == 64 * 4 + 4 + 4 * 10 + 10
    assert params[(32,)] == 64 * 32 + 32 + 32 * 10 + 10


def test_report_pareto_is_the_non_dominated_subset(study: tuple[Path, Result]) -> None:
    db, _ = study
    full = report_json(db)
    front = report_json(db, "--pareto")
    default = [("test_accuracy_mean", True), ("flops_effective_mean", False)]
    expected = non_dominated(full, [*default, ("size_bits_mean", False)])
    assert {r["config_id"] for r in front} == expected
    assert {r["config_id"] for r in front} <= {r["config_id"] for r in full}
    assert all(r["on_front"] for r in front)
    assert {r["config_id"] for r in full if r["on_front"]} == expected
    assert 1 <= len(front) < len(full)
    accuracies = [r["test_accuracy_mean"] for r in front]
    assert accuracies == sorted(accuracies, reverse=True)  # best first objective first


def test_report_objectives_option(study: tuple[Path, Result]) -> None:
    db, _ = study
    full = report_json(db, "--objectives", "accuracy:max,params:min")
    front = report_json(db, "--pareto", "--objectives", "accuracy:max,params:min")
    expected = non_dominated(full, [("test_accuracy_mean", True), ("params_mean", False)])
    assert {r["config_id"] for r in front} == expected
    # minimising accuracy instead turns the front around
    worst = report_json(db, "--pareto", "--objectives", "accuracy:min,params:max")
    assert {r["config_id"] for r in worst} == non_dominated(
        full, [("test_accuracy_mean", False), ("params_mean", True)]
    )


@pytest.mark.parametrize("objectives", ["accuracy:up", "acuracy:max", "accuracy"])
def test_report_bad_objective_is_one_line(study: tuple[Path, Result], objectives: str) -> None:
    db, _ = study
    result = bench("report", "--db", db, "--objectives", objectives)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = lines(result.output)
    assert "objective" in line


def test_report_sql_read_only(study: tuple[Path, Result]) -> None:
    db, _ = study
    result = bench(
        "report", "--db", db, "--sql", "SELECT count(*) AS n FROM runs", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": 8}]
    result = bench("report", "--db", db, "--sql", "SELECT count(*) AS n FROM runs")
    assert result.exit_code == 0 and "8" in result.stdout

    for write in ("DELETE FROM runs", "DROP TABLE runs", "UPDATE runs SET seed = 7"):
        result = bench("report", "--db", db, "--sql", write)
        assert result.exit_code == 2, (write, result.output)
        assert "Traceback" not in result.output
        assert len(lines(result.output)) == 1
    runs = Store(db).runs()
    assert len(runs) == 8 and set(runs["seed"]) == {0, 1}


def test_report_sql_error_is_one_line(study: tuple[Path, Result]) -> None:
    db, _ = study
    result = bench("report", "--db", db, "--sql", "SELECT nope FROM runs")
    assert result.exit_code == 2
    (line,) = lines(result.output)
    assert line.startswith("SQL error")


def test_report_missing_database(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    for extra in ([], ["--sql", "SELECT 1"], ["--pareto"]):
        result = bench("report", "--db", db, *extra)
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        (line,) = lines(result.output)
        assert str(db) in line
    assert not db.exists()


def test_report_bad_format(study: tuple[Path, Result]) -> None:
    db, _ = study
    result = bench("report", "--db", db, "--format", "xml")
    assert result.exit_code == 2
    assert len(lines(result.output)) == 1


def test_report_uses_bench_db_env(
    study: tuple[Path, Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _ = study
    monkeypatch.setenv("BENCH_DB", str(db))
    result = bench("report", "--sql", "SELECT count(*) AS n FROM runs", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["n", "8"]


# -------------------------------------------------------------------- resume


def started_at(db: Path) -> dict[str, object]:
    runs = Store(db).runs()
    return dict(zip(runs["job_id"], runs["started_at"], strict=True))


def test_resume_force_and_changed_values(tmp_path: Path) -> None:
    db = tmp_path / "bench.duckdb"
    one_lr = ("--set", 'matrix."optimizer.lr"=[0.1]')  # 2 widths × 2 seeds
    one_seed = (*one_lr, "--set", "matrix.seeds=[0]")

    first = bench("run", DIGITS, "--db", db, *one_seed)
    assert first.exit_code == 0, first.output
    assert "2 jobs, 0 already completed, 2 to run" in first.stderr
    before = started_at(db)
    assert len(before) == 2

    again = bench("run", DIGITS, "--db", db, *one_seed)
    assert again.exit_code == 0, again.output
    assert "2 jobs, 2 already completed, 0 to run" in again.stderr
    assert "[job" not in again.output  # nothing ran
    assert started_at(db) == before

    # two seeds share the seed-0 jobs: only seed 1 runs
    both = bench("run", DIGITS, "--db", db, *one_lr)
    assert both.exit_code == 0, both.output
    assert "4 jobs, 2 already completed, 2 to run" in both.stderr
    after = started_at(db)
    assert len(after) == 4
    assert {k: after[k] for k in before} == before

    forced = bench("run", DIGITS, "--db", db, *one_seed, "--force")
    assert forced.exit_code == 0, forced.output
    assert "2 jobs, 0 already completed, 2 to run" in forced.stderr
    rerun = started_at(db)
    assert len(rerun) == 4
    assert all(rerun[k] > before[k] for k in before)
    assert all(rerun[k] == after[k] for k in after if k not in before)

    changed = bench("run", DIGITS, "--db", db, *one_seed, "--set", "optimizer.epochs=1")
    assert changed.exit_code == 0, changed.output
    assert "2 jobs, 0 already completed, 2 to run" in changed.stderr
    assert "train 1/1" in changed.stderr
    assert len(started_at(db)) == 6


# ------------------------------------------------------------ failing jobs


def test_diverging_job_fails_the_others_complete(tmp_path: Path) -> None:
    db = tmp_path / "bench.duckdb"
    result = bench("run", DIVERGE, "--db", db)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "1 completed, 1 failed" in result.stderr
    runs = Store(db).runs().set_index("optimizer.lr")
    assert runs.loc[0.05, "status"] == "completed"
    assert runs.loc[0.05, "test_accuracy"] > 0.2
    bad = runs.loc[1000.0]
    assert bad["status"] == "failed"
    assert bad["error"].startswith("diverged: ")
    assert "not finite" in bad["error"]
    assert re.search(rf"^  failed {bad['job_id']}: diverged: ", result.stderr, re.M)
    assert "FAILED: diverged" in result.stderr

    # a failed job is a result too: the next run skips it (exit 1: the study has a failed
    # job) unless asked to retry it (and it fails again)
    again = bench("run", DIVERGE, "--db", db)
    assert again.exit_code == 1
    assert (
        "2 jobs, 1 already completed, 1 failed earlier (not rerun without --retry-failed), "
        "0 to run" in again.stderr
    )
    retried = bench("run", DIVERGE, "--db", db, "--retry-failed")
    assert retried.exit_code == 1
    assert "2 jobs, 1 already completed, 1 to run" in retried.stderr
    assert "0 completed, 1 failed" in retried.stderr


def test_run_bad_devices_is_one_line(tmp_path: Path) -> None:
    result = bench("run", DIGITS, "--db", tmp_path / "x.duckdb", "--devices", "tpu:0")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = lines(result.output)
    assert line.startswith("--devices")
    assert not (tmp_path / "x.duckdb").exists()


def test_run_bad_spec_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    result = bench("run", BAD, "--db", db)
    assert result.exit_code == 2
    assert len(lines(result.output)) == 3
    assert not db.exists()


# ------------------------------------------------------------------- plugins

BUILTINS = {
    "dataset": {"mnist", "digits"},
    "transform": {"dct", "none"},
    "model": {"compressednet", "lenet300", "lenet5"},
    "optimizer": {"sgd", "adam", "lc", "dc", "idc", "retrain"},
    "compressor": {
        "prune",
        "prune_l1",
        "prune_structured",
        "quantize",
        "binarize",
        "binarize_scaled",
        "ternarize_scaled",
        "lowrank",
        "lowrank_select",
        "additive",
    },
}


def test_plugins_json_lists_every_builtin() -> None:
    result = bench("plugins", "--format", "json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert set(listing) == set(BUILTINS)
    for kind, names in BUILTINS.items():
        assert names <= {p["name"] for p in listing[kind]}, kind
        for plugin in listing[kind]:
            assert plugin["summary"], plugin["name"]
            assert plugin["version"]
            for option in plugin["options"]:
                assert option["description"], (kind, plugin["name"], option["name"])
                assert {"name", "type", "default", "required"} <= set(option)

    def options(kind: str, name: str) -> dict[str, dict]:
        (plugin,) = [p for p in listing[kind] if p["name"] == name]
        return {o["name"]: o for o in plugin["options"]}

    assert options("optimizer", "sgd")["lr"]["default"] == 0.01
    assert options("optimizer", "sgd")["momentum"]["default"] == 0.9
    assert options("optimizer", "adam")["lr"]["default"] == 0.001
    assert options("transform", "dct")["ratio"]["default"] == 0.3
    assert "fraction" in options("transform", "dct")["ratio"]["description"]
    assert options("model", "lenet300")["hidden"]["default"] == [300, 100]
    assert options("model", "compressednet")["width"]["default"] == 1.0
    assert options("dataset", "mnist")["normalize"]["default"] == "half"
    assert options("compressor", "quantize")["layers"]["default"] == ["*"]
    assert "k" in options("compressor", "quantize")
    assert options("transform", "none") == {}
    aware = {p["name"]: p["data_aware"] for p in listing["compressor"]}
    assert aware["sparse_lowrank"] and aware["greedy_random"]
    assert not aware["quantize"] and not aware["additive"]


def test_plugins_table_lists_every_builtin() -> None:
    result = bench("plugins")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for kind, names in BUILTINS.items():
        assert f"{kind}s" in out
        for name in names:
            assert re.search(rf"\b{name}\b", out), name
    assert "initial learning rate" in out
    assert "0.01" in out


def _plugin_tables(out: str) -> dict[str, list[list[str]]]:
    """The tables of `bench plugins` by title: rows (the header first) of cells, each
    cell's wrapped lines joined again by single spaces."""
    tables: dict[str, list[list[list[str]]]] = {}
    rows: list[list[list[str]]] = []
    new_row = True
    for line in out.splitlines():
        if line[:1].isalpha():  # a title
            rows, new_row = tables.setdefault(line.strip(), []), True
        elif line.startswith("│"):
            parts = [part.strip() for part in line.split("│")[1:-1]]
            if new_row:
                rows.append([[] for _ in parts])
                new_row = False
            for cell, part in zip(rows[-1], parts, strict=True):
                cell.append(part)
        else:  # a rule: the next line of cells starts a row
            new_row = True
    return {
        title: [[" ".join(" ".join(cell).split()) for cell in row] for row in rows]
        for title, rows in tables.items()
    }


@pytest.mark.parametrize("columns", [80, 120, 160])
def test_plugins_table_shows_each_plugin_and_option_in_full(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    """One table per kind with a row per plugin, in the order of the listing: its name,
    version and whether it is data-aware; its summary and owner; every option's name,
    full type (brackets included: rich's markup ate ``[float]``), default and
    description. No line is wider than the terminal, or 120 columns on a narrower one."""
    monkeypatch.setenv("COLUMNS", str(columns))
    listing = describe_plugins(get_registry())
    result = bench("plugins")
    assert result.exit_code == 0, result.output
    tables = _plugin_tables(result.stdout)
    assert list(tables) == [f"{kind}s" for kind in listing]

    def words(*texts: str) -> str:
        return " ".join(" ".join(texts).split())

    for kind, entries in listing.items():
        header, *rows = tables[f"{kind}s"]
        assert header == ["name", "summary", "parameters (default) — description"]
        assert len(rows) == len(entries), kind
        for (name, summary, params), entry in zip(rows, entries, strict=True):
            aware = ["data-aware"] if entry.get("data_aware") else []
            assert name == words(entry["name"], f"v{entry['version']}", *aware)
            assert summary == words(entry["summary"], entry["owner"])
            shown = [
                f"{o['name']}: {o['type']} = "
                f"{'<required>' if o['required'] else repr(o['default'])} — {o['description']}"
                for o in entry["options"]
            ]
            assert params == words(*shown), (kind, entry["name"])
    assert "mean: list[float] | None = None" in words(result.stdout)
    assert max(map(len, result.stdout.splitlines())) <= max(columns, 120)


def test_plugins_kind_filter() -> None:
    result = bench("plugins", "--kind", "model", "--format", "json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert list(listing) == ["model"]
    assert {p["name"] for p in listing["model"]} >= BUILTINS["model"]

    table = bench("plugins", "--kind", "model")
    assert table.exit_code == 0
    assert (
        "lenet5" in table.stdout and "digits" not in table.stdout and "quantize" not in table.stdout
    )


@pytest.mark.parametrize("args", [["--kind", "models"], ["--format", "yaml"]])
def test_plugins_bad_option(args: list[str]) -> None:
    result = bench("plugins", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = lines(result.output)
    assert line.startswith(args[0])


# ------------------------------------------------------- a plugin that raises


class _Refuses(Model):
    """A throwaway model whose build raises; ``message`` is what it raises with."""

    name = "refuses"
    message = ""

    def build(self, input_shape, num_classes):
        raise BenchError(_Refuses.message)


class _Buggy(Model):
    """A throwaway model with a bug."""

    name = "buggy"

    def build(self, input_shape, num_classes):
        return {}["missing key"]


class _Interrupts(Model):
    """A throwaway model whose build is interrupted, as by Ctrl-C."""

    name = "interrupts"

    def build(self, input_shape, num_classes):
        raise KeyboardInterrupt


class _ThrowawayModels:
    @hookimpl
    def register_models(self, register):
        register(_Refuses)
        register(_Buggy)
        register(_Interrupts)


def test_run_with_plugins_that_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchharness.plugins

    registry = benchharness.plugins.get_registry(extra_plugins=[_ThrowawayModels()])
    monkeypatch.setattr(benchharness.plugins, "get_registry", lambda *a, **k: registry)
    spec = tmp_path / "raising.toml"
    spec.write_text(
        DIGITS.read_text().split("[matrix]")[0]
        + """
[matrix]
model = [{ name = "buggy" }, { name = "refuses" }, { name = "lenet300", hidden = [8] }]
"""
    )
    db = tmp_path / "bench.duckdb"
    result = bench("run", spec, "--db", db)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "1 completed, 2 failed" in result.stderr
    runs = Store(db).runs()
    errors = {
        json.loads(c)["model"]["name"]: (s, e)
        for c, s, e in zip(runs["config"], runs["status"], runs["error"], strict=True)
    }
    assert errors["lenet300"][0] == "completed"
    assert errors["buggy"] == ("failed", "KeyError: 'missing key'")
    assert errors["refuses"] == ("failed", "BenchError")  # raised without a message
    assert "[job 2/3] done in" in result.stderr
    buggy = runs[runs["error"] == "KeyError: 'missing key'"]
    assert "Traceback (most recent call last)" in json.loads(buggy["extra"].iloc[0])["traceback"]
    assert re.search(r"^  failed \S+: KeyError: 'missing key'$", result.stderr, re.M)


def test_run_interrupted_keeps_finished_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchharness.plugins

    registry = benchharness.plugins.get_registry(extra_plugins=[_ThrowawayModels()])
    monkeypatch.setattr(benchharness.plugins, "get_registry", lambda *a, **k: registry)
    spec = tmp_path / "interrupted.toml"
    spec.write_text(
        DIGITS.read_text().split("[matrix]")[0]
        + """
[matrix]
model = [{ name = "lenet300", hidden = [8] }, { name = "interrupts" }, { name = "lenet300" }]
"""
    )
    db = tmp_path / "bench.duckdb"
    result = bench("run", spec, "--db", db)
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output
    assert lines(result.output)[-1].startswith("interrupted: every finished job is saved")
    runs = Store(db).runs()
    assert len(runs) == 1 and runs["status"].iloc[0] == "completed"
    assert "[job 3/3]" not in result.output


# ------------------------------------------------------- report --failed / --job


def test_report_failed_lists_failed_runs_and_job_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchharness.plugins

    registry = benchharness.plugins.get_registry(extra_plugins=[_ThrowawayModels()])
    monkeypatch.setattr(benchharness.plugins, "get_registry", lambda *a, **k: registry)
    _Refuses.message = "refused [quick] to build"  # brackets: not eaten by the table
    spec = tmp_path / "failing.toml"
    spec.write_text(
        DIGITS.read_text().split("[matrix]")[0]
        + """
[matrix]
model = [{ name = "buggy" }, { name = "refuses" }, { name = "lenet300", hidden = [8] }]
seeds = [3]
"""
    )
    db = tmp_path / "bench.duckdb"
    assert bench("run", spec, "--db", db).exit_code == 1
    runs = Store(db).runs()
    ids = {
        json.loads(c)["model"]["name"]: j
        for c, j in zip(runs["config"], runs["job_id"], strict=True)
    }

    rows = report_json(db, "--failed")
    assert {r["job_id"] for r in rows} == {ids["buggy"], ids["refuses"]}
    by_id = {r["job_id"]: r for r in rows}
    assert by_id[ids["buggy"]]["error"] == "KeyError: 'missing key'"
    assert by_id[ids["refuses"]]["error"] == "refused [quick] to build"
    assert by_id[ids["buggy"]]["axes"] == "model=buggy"
    assert all(r["spec"] == "cli_digits" and r["seed"] == 3 for r in rows)

    table = bench("report", "--db", db, "--failed")
    assert table.exit_code == 0, table.output
    assert "refused [quick] to build" in table.stdout
    assert ids["buggy"] in table.stdout and ids["lenet300"] not in table.stdout
    assert report_json(db, "--failed", "--spec", "other") == []

    shown = bench("report", "--db", db, "--job", ids["buggy"][:6])
    assert shown.exit_code == 0, shown.output
    out = shown.stdout.splitlines()
    assert out[0] == f"job {ids['buggy']} of cli_digits, seed 3, model=buggy: failed"
    assert out[1] == "KeyError: 'missing key'"
    assert "Traceback (most recent call last)" in shown.stdout
    assert ", in build\n" in shown.stdout  # the frame of _Buggy.build
    refused = bench("report", "--db", db, "--job", ids["refuses"])
    assert refused.exit_code == 0
    assert "no traceback stored" in refused.stdout
    completed = bench("report", "--db", db, "--job", ids["lenet300"])
    assert completed.stdout.strip().endswith(": completed, no error")

    for prefix, expected in (("zzzz", "no run with a job id starting with"), ("", "start of 3")):
        result = bench("report", "--db", db, "--job", prefix)
        assert result.exit_code == 2
        (line,) = lines(result.output)
        assert line.startswith("--job: ") and expected in line


def test_report_failed_without_failures(study: tuple[Path, Result]) -> None:
    db, _ = study
    result = bench("report", "--db", db, "--failed")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no failed runs"
    assert report_json(db, "--failed") == []


# -------------------------------------------------------- --set on a matrix axis


def test_set_on_a_matrix_axis_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "bench.duckdb"
    for command in (["validate", DIGITS], ["run", DIGITS, "--db", db]):
        result = bench(*command, "--set", "model.hidden=[8]")
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        (line,) = lines(result.output)
        assert line == (
            f"{DIGITS}: --set model.hidden=[8] — model.hidden is a [matrix] axis, whose values"
            " would override this; set the axis instead: --set 'matrix.\"model.hidden\"=[[8]]'"
        )
    assert not db.exists()
    # what the message suggests works
    result = bench("validate", DIGITS, "--set", 'matrix."model.hidden"=[[8]]')
    assert result.exit_code == 0, result.output
    # keys beside the axes are fine
    assert bench("validate", DIGITS, "--set", "optimizer.epochs=1").exit_code == 0


def test_set_inside_a_table_valued_axis_is_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "methods.toml"
    spec.write_text(
        DIGITS.read_text().split("[matrix]")[0]
        + '\n[matrix]\noptimizer = [{ name = "sgd", epochs = 1 }, { name = "adam", epochs = 1 }]\n'
    )
    assert bench("validate", spec).exit_code == 0
    result = bench("validate", spec, "--set", "optimizer.lr=0.5")
    assert result.exit_code == 2
    (line,) = lines(result.output)
    assert line.startswith(f"{spec}: --set optimizer.lr=0.5 — optimizer.lr is inside the [matrix]")
    assert "--set 'matrix.optimizer=[...]'" in line


# ---------------------------------------------------------------------- help


def test_help_shows_square_brackets_literally() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "the spec's [quick] overrides" in result.output
    assert "[default: $BENCH_DB or results/bench.duckdb]" in result.output
    assert "[default: $BENCH_DATA_DIR" in result.output
    assert "\\[" not in result.output
