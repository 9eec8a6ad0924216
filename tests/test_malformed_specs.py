"""Property: any malformed spec gets exit 2 from `bench validate` and `bench run --dry-run`,
one line per problem naming the file, and never a traceback.

Each generated spec is a valid study (with random valid noise: axes, seeds, claims,
descriptions) broken by one to three mutations drawn from the kinds of mistakes people
make: wrong types, non-finite or huge numbers, unknown keys and sections, unknown plugins,
bad nested plugin tables, arrays nested too deep, bad matrix axes, seeds and excludes,
bad claims, a bad [quick] or --set. The spec is written as TOML text, so the parser's
errors are exercised too.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any
from unittest import mock

import typer.main
import typer.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from benchharness.cli import app

# typer rebuilds the click command from the function signatures on every invoke (three
# quarters of a validate's time here); the command never changes, so build it once.
_COMMAND = typer.main.get_command(app)

VALID: dict[str, Any] = {
    "name": "prop",
    "dataset": {"name": "digits"},
    "model": {"name": "lenet300", "hidden": [16]},
    "optimizer": {"name": "sgd", "lr": 0.1, "epochs": 1},
    "measure": {"latency": False},
}
SCHEMES = ("dc", "lc", "idc", "retrain")

# ------------------------------------------------------------------- TOML writing


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def to_toml(doc: dict[str, Any]) -> str:
    """Root keys first, each section as ``key = {inline table}`` (valid TOML)."""
    return "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items()) + "\n"


def table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """``doc[name]``, made a table again if an earlier mutation made it something else."""
    if not isinstance(doc.get(name), dict):
        doc[name] = {}
    return doc[name]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------------- strategies
unknown_names = st.from_regex(r"zz_[a-z]{1,6}", fullmatch=True)
bad_floats = st.sampled_from([math.inf, -math.inf, math.nan, 10**400, True, "0.1", [0.1], {}])
bad_positive = st.sampled_from([0, -1, -(10**30), 1.5, "3", True, math.nan, [], {"a": 1}])


@st.composite
def noise(draw: st.DrawFn, doc: dict[str, Any]) -> None:
    """Valid variations that change the spec's structure but not its validity."""
    if draw(st.booleans()):
        doc["description"] = draw(st.text(max_size=20))
    matrix: dict[str, Any] = {}
    if draw(st.booleans()):
        matrix["optimizer.weight_decay"] = draw(
            st.lists(st.floats(0, 0.01), min_size=1, max_size=3)
        )
    if draw(st.booleans()):
        matrix["model.hidden"] = draw(
            st.lists(st.lists(st.integers(1, 64), min_size=1, max_size=2), min_size=1, max_size=2)
        )
    if draw(st.booleans()):
        matrix["seeds"] = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    if matrix:
        doc["matrix"] = matrix
    if draw(st.booleans()):
        doc["claims"] = [{"metric": "test_accuracy", "value": draw(st.floats(0, 1))}]
    if draw(st.booleans()):
        doc["data"] = {"train_subset": draw(st.integers(1, 1000))}


def _mutations() -> list[Any]:
    """Each: (draw, doc, extra CLI args) → makes the spec invalid."""

    def wrong_float(draw, doc, args):
        key = draw(st.sampled_from(["lr", "momentum"]))
        table(doc, "optimizer")[key] = draw(bad_floats)

    def wrong_positive(draw, doc, args):
        where = draw(
            st.sampled_from(
                [
                    ("optimizer", "epochs"),
                    ("optimizer", "batch_size"),
                    ("measure", "latency_repeats"),
                    ("data", "train_subset"),
                ]
            )
        )
        table(doc, where[0])[where[1]] = draw(bad_positive)

    def unknown_option(draw, doc, args):
        section = draw(st.sampled_from(["dataset", "model", "optimizer", "measure", "data"]))
        table(doc, section)[draw(unknown_names)] = draw(st.integers() | st.text(max_size=5))

    def unknown_section(draw, doc, args):
        doc[draw(unknown_names)] = {"name": "x"}

    def unknown_plugin(draw, doc, args):
        section = draw(st.sampled_from(["dataset", "model", "optimizer", "compressor"]))
        doc[section] = {"name": draw(unknown_names)}

    def missing_section(draw, doc, args):
        doc.pop(draw(st.sampled_from(["dataset", "model", "optimizer"])), None)

    def not_a_table(draw, doc, args):
        section = draw(st.sampled_from(["dataset", "model", "optimizer", "measure", "data"]))
        doc[section] = draw(st.integers() | st.text(max_size=5) | st.just([1, 2]))

    def bad_reference(draw, doc, args):
        reference = draw(
            st.sampled_from(
                [
                    {"name": "zz_sgd"},
                    {"name": "sgd", "lr": math.inf},
                    {"name": "sgd", "lr": "0.1"},
                    {"name": "sgd", "zz_option": 1},
                    {"lr": 0.1},
                    {"name": "sgd", "reference": {"name": "sgd"}},
                    {"name": "dc", "reference": {"name": "zz_x"}},
                ]
            )
        )
        doc["optimizer"] = {"name": draw(st.sampled_from(SCHEMES)), "reference": reference}
        doc["compressor"] = {"name": "quantize", "k": 2}

    def bad_parts(draw, doc, args):
        parts = draw(
            st.sampled_from(
                [
                    [{"name": "quantize", "k": True}, {"name": "prune", "keep": 0.1}],
                    [{"name": "zz_q"}, {"name": "prune", "keep": 0.1}],
                    [{"name": "quantize", "k": 2}],
                    [{"name": "quantize", "k": 2}, {"keep": 0.1}],
                    [{"name": "quantize", "k": 2}, {"name": "prune", "keep": math.nan}],
                ]
            )
        )
        doc["compressor"] = {"name": "additive", "parts": parts}

    def deep_array(draw, doc, args):
        depth = draw(st.integers(33, 600))
        where = draw(st.sampled_from(["model", "optimizer", "matrix", "claims"]))
        if where == "model":
            table(doc, "model")["hidden"] = nested(depth)
        elif where == "optimizer":
            table(doc, "optimizer")["lr"] = nested(depth)
        elif where == "matrix":
            doc["matrix"] = {"model.hidden": nested(depth)}
        else:
            doc["claims"] = [{"metric": "test_accuracy", "value": 1, "match": {"a": nested(depth)}}]

    def bad_axis(draw, doc, args):
        axis, values = draw(
            st.sampled_from(
                [
                    ("model.zz_width", [1, 2]),
                    ("optimizer.lr", 0.1),
                    ("optimizer.lr", []),
                    ("optimizer.lr", [0.1, -1.0]),
                    ("optimizer.lr", [math.inf]),
                    ("optimizer.epochs", ["2"]),
                    ("zz_section.x", [1]),
                    ("optimizer", [{"name": "zz_opt"}]),
                    ("a..b", [1]),
                ]
            )
        )
        table(doc, "matrix")[axis] = values

    def bad_seeds(draw, doc, args):
        table(doc, "matrix")["seeds"] = draw(st.sampled_from([[], ["a"], [True], 3, [1.5]]))

    def bad_exclude(draw, doc, args):
        matrix = table(doc, "matrix")
        matrix["optimizer.lr"] = [0.1, 0.2]
        matrix["exclude"] = draw(st.sampled_from([[{"zz_axis": 1}], [1], "x", [{}]]))

    def bad_claim(draw, doc, args):
        doc["claims"] = [
            draw(
                st.sampled_from(
                    [
                        {"metric": "zz_metric", "value": 0.5},
                        {"metric": "zz_plugin.x", "value": 0.5},
                        {"metric": "test_accuracy", "value": "high"},
                        {"metric": "test_accuracy", "value": 0.5, "se": -1},
                        {"metric": "test_accuracy", "value": math.nan},
                        {"metric": "test_accuracy"},
                        {"metric": "test_accuracy", "value": 0.5, "match": {"zz.key": 1}},
                        {"value": 0.5},
                    ]
                )
            )
        ]

    def bad_quick(draw, doc, args):
        doc["quick"] = draw(
            st.sampled_from(
                [
                    {"optimizer.epoch": 2},
                    {"optimizer.lr": math.inf},
                    {"data.train_subset": 0},
                    {"zz.x": 1},
                    3,
                ]
            )
        )

    def bad_set(draw, doc, args):
        args += [
            "--set",
            draw(
                st.sampled_from(
                    [
                        "optimizer.lr=1e999",
                        "optimizer.lr=true",
                        "model.zz=1",
                        "=3",
                        "optimizer.epochs=-1",
                        "model.hidden=" + "[" * 40 + "]" * 40,
                    ]
                )
            ),
        ]

    def bad_name(draw, doc, args):
        doc["name"] = draw(st.sampled_from(["", 3, [], True]))

    def syntax(draw, doc, args):
        doc["__raw__"] = draw(st.sampled_from(["x = ", "[a", "a = 1\na = 2", 'b = "\\q"']))

    return [
        wrong_float, wrong_positive, unknown_option, unknown_section, unknown_plugin,
        missing_section, not_a_table, bad_reference, bad_parts, deep_array, bad_axis,
        bad_seeds, bad_exclude, bad_claim, bad_quick, bad_set, bad_name, syntax,
    ]  # fmt: skip


MUTATIONS = _mutations()


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, list[str]]:
    doc = copy.deepcopy(VALID)
    draw(noise(doc))
    args: list[str] = []
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        mutate(draw, doc, args)
    raw = doc.pop("__raw__", None)
    text = to_toml(doc) + (raw + "\n" if raw else "")
    return text, args


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=malformed())
def test_malformed_specs_exit_2_in_one_line_each(tmp_path: Path, case: tuple[str, list[str]]):
    text, args = case
    path = tmp_path / "spec.toml"
    path.write_text(text)
    for command in (["validate"], ["run", "--dry-run"]):
        with mock.patch.object(typer.testing, "_get_command", lambda _app: _COMMAND):
            result = CliRunner().invoke(app, [*command, str(path), *args])
        assert not (result.exception and not isinstance(result.exception, SystemExit)), (
            f"{command} crashed on:\n{text}{args}"
        )
        assert result.exit_code == 2, f"{command} exit {result.exit_code} on:\n{text}{args}"
        output = result.output.strip()
        assert "Traceback" not in output
        assert output and all(line.startswith(f"{path}: ") for line in output.splitlines()), output
