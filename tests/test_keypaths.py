"""Dotted key paths and --set parsing."""

from __future__ import annotations

import math

import pytest

from benchharness.keypaths import (
    PathError,
    get_path,
    parse_override,
    render,
    set_path,
    short,
    split_path,
)


def test_split_path():
    assert split_path("model.width") == ["model", "width"]
    assert split_path("transform.0.ratio") == ["transform", "0", "ratio"]
    assert split_path('matrix."model.width"') == ["matrix", "model.width"]
    assert split_path("matrix . 'a.b'") == ["matrix", "a.b"]
    for bad in ["", "a..b", "a.", ".a", "a b", "a=b"]:
        with pytest.raises(PathError):
            split_path(bad)


def test_set_path_replaces_subtrees_and_indexes_arrays():
    doc = {"transform": [{"name": "a", "ratio": 0.1}], "model": {"name": "m", "width": 1.0}}
    set_path(doc, ["transform", "0", "ratio"], 0.5)
    set_path(doc, ["model"], {"name": "other"})
    set_path(doc, ["data", "train_subset"], 10)  # missing tables are created
    assert doc == {
        "transform": [{"name": "a", "ratio": 0.5}],
        "model": {"name": "other"},
        "data": {"train_subset": 10},
    }
    assert get_path(doc, ["transform", "0", "name"]) == "a"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (["transform", "ratio"], "transform is an array: index it, e.g. transform.0.ratio"),
        (["transform", "3", "ratio"], "transform has 1 element(s), no index 3"),
        (["model", "width", "x"], "model.width is 1.0, not a table"),
        (["model", "0", "x"], "model is a table, not an array: no index 0"),
    ],
)
def test_set_path_errors(parts, message):
    doc = {"transform": [{"name": "a"}], "model": {"width": 1.0}}
    with pytest.raises(PathError) as info:
        set_path(doc, parts, 1)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "parts", "value"),
    [
        ("model.width=2", ["model", "width"], 2),
        ("model.width=0.5", ["model", "width"], 0.5),
        ("matrix.seeds=[0,1]", ["matrix", "seeds"], [0, 1]),
        ("dataset.name=digits", ["dataset", "name"], "digits"),
        ('dataset.name="mnist"', ["dataset", "name"], "mnist"),
        ("measure.latency=false", ["measure", "latency"], False),
        ("transform.0.ratio = 0.25", ["transform", "0", "ratio"], 0.25),
        ('transform={name = "none"}', ["transform"], {"name": "none"}),
        ("source=a b=c", ["source"], "a b=c"),
        ('matrix."model.width"=[1.0]', ["matrix", "model.width"], [1.0]),
    ],
)
def test_parse_override(text, parts, value):
    got_parts, got_value = parse_override(text)
    assert got_parts == parts
    assert got_value == value
    assert type(got_value) is type(value)


def test_short_form_of_spec_values():
    assert short({"name": "quantize", "k": 2}) == "quantize(k=2)"
    assert short([{"name": "prune", "keep": 0.01}, {"name": "quantize", "k": 2}]) == (
        "prune(keep=0.01)+quantize(k=2)"
    )
    assert short({"name": "none"}) == "none"
    assert short({"name": "lc", "steps": 3, "reference": {"name": "sgd", "lr": 0.1}}) == (
        "lc(steps=3, reference=sgd)"
    )
    assert short({"name": "additive", "parts": [{"name": "prune", "keep": 0.01}]}) == (
        "additive(parts=prune(keep=0.01))"
    )
    assert short([]) == "[]"
    assert short(None) == "-"
    assert short(0.5) == "0.5"


def test_render_writes_non_finite_floats_as_toml_does():
    values = (math.inf, -math.inf, math.nan, 0.5)
    assert [render(v) for v in values] == ["inf", "-inf", "nan", "0.5"]


def test_parse_override_of_a_value_nested_too_deep_to_read():
    with pytest.raises(PathError, match="nested too deep"):
        parse_override("a=" + "[" * 2000 + "]" * 2000)
    assert parse_override("a=[[1]]") == (["a"], [[1]])
