"""Reading a spec file: structure, --set overrides, --quick, hashing, and file-level errors.

Validation against plugins happens at expansion and is tested in test_matrix.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from benchharness.errors import BenchError
from benchharness.spec import MAX_DEPTH, load_spec

SPECS = Path(__file__).parent / "specs"
WIDTH_RATIO = SPECS / "width_ratio.toml"
MINIMAL = SPECS / "minimal.toml"

BASE = """
[dataset]
name = "st_data"
[model]
name = "st_net"
[optimizer]
name = "st_sgd"
"""


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_lines(path: Path | str, **kwargs: object) -> list[str]:
    with pytest.raises(BenchError) as info:
        load_spec(path, **kwargs)  # type: ignore[arg-type]
    return str(info.value).splitlines()


# ---------------------------------------------------------------------------- reading
def test_minimal_spec_defaults():
    spec = load_spec(MINIMAL)
    assert spec.name == "minimal"
    assert spec.description == ""
    assert spec.path == MINIMAL
    assert spec.source == str(MINIMAL)
    assert spec.axes == {}
    assert spec.include == []
    assert spec.exclude == []
    assert spec.seeds == [0]
    assert spec.claims == []
    assert spec.quick is False
    assert spec.base == {
        "dataset": {"name": "st_data"},
        "model": {"name": "st_net"},
        "optimizer": {"name": "st_sgd"},
    }


def test_full_spec():
    spec = load_spec(WIDTH_RATIO)
    assert spec.name == "width_ratio"
    assert spec.description == "width × DCT ratio"
    assert spec.axes == {"model.width": [0.5, 1.0, 2.0], "transform.ratio": [0.1, 0.3, 0.5]}
    assert list(spec.axes) == ["model.width", "transform.ratio"]
    assert spec.seeds == [0, 1]
    assert spec.include == [{"model.width": 4.0, "transform": {"name": "st_none"}}]
    assert spec.exclude == [{"model.width": 2.0, "transform.ratio": 0.1}]
    assert spec.claims == [
        {
            "match": {"model.width": 1.0, "transform.ratio": 0.3},
            "metric": "test_accuracy",
            "value": 0.9558,
            "se": 0.0012,
            "source": "CompressedNet paper, Sec. 6",
        }
    ]
    # base: the job sections only, untouched by [quick] when not quick
    assert spec.base["optimizer"] == {"name": "st_sgd", "epochs": 30}
    assert set(spec.base) == {"dataset", "data", "transform", "model", "optimizer"}


def test_name_from_document(tmp_path):
    spec = load_spec(write(tmp_path, 'name = "study"\ndescription = "d"\n' + BASE))
    assert (spec.name, spec.description) == ("study", "d")


def test_unquoted_dotted_matrix_keys_are_axis_paths(tmp_path):
    text = BASE + "[matrix]\nmodel.width = [1, 2]\n'transform.ratio' = [0.1]\n"
    assert load_spec(write(tmp_path, text)).axes == {
        "model.width": [1, 2],
        "transform.ratio": [0.1],
    }


def test_hash_is_sha256_of_file_and_changes_with_overrides_and_quick():
    plain = load_spec(WIDTH_RATIO)
    assert plain.hash == hashlib.sha256(WIDTH_RATIO.read_bytes()).hexdigest()
    assert load_spec(WIDTH_RATIO).hash == plain.hash
    with_set = load_spec(WIDTH_RATIO, overrides=["optimizer.epochs=3"])
    quick = load_spec(WIDTH_RATIO, quick=True)
    assert len({plain.hash, with_set.hash, quick.hash}) == 3
    assert load_spec(WIDTH_RATIO, overrides=["optimizer.epochs=3"]).hash == with_set.hash


# ------------------------------------------------------------------------------ --set
def test_overrides_apply_to_document(tmp_path):
    text = BASE + '[[transform]]\nname = "st_dct"\nratio = 0.3\n[matrix]\nseeds = [5]\n'
    spec = load_spec(
        write(tmp_path, text),
        overrides=[
            "model.width=2",
            "transform.0.ratio=0.5",
            "matrix.seeds=[0,1]",
            "dataset.name=digits",
            "data.train_subset=100",
            'matrix."optimizer.lr"=[0.1, 0.2]',
        ],
    )
    assert spec.document["model"] == {"name": "st_net", "width": 2}
    assert spec.document["transform"] == [{"name": "st_dct", "ratio": 0.5}]
    assert spec.document["dataset"] == {"name": "digits"}
    assert spec.document["data"] == {"train_subset": 100}
    assert spec.seeds == [0, 1]
    assert spec.axes == {"optimizer.lr": [0.1, 0.2]}


def test_override_of_a_matrix_axis_is_an_error_naming_the_axis(tmp_path):
    with pytest.raises(BenchError, match=r"model.width is a \[matrix\] axis"):
        load_spec(WIDTH_RATIO, overrides=["model.width=2"])


def test_override_replaces_quoted_axis_in_place():
    spec = load_spec(WIDTH_RATIO, overrides=["matrix.model.width=[8.0]"])
    assert spec.axes == {"model.width": [8.0], "transform.ratio": [0.1, 0.3, 0.5]}


# ------------------------------------------------------------------------------ quick
def test_quick_applies_overrides_and_keeps_first_seed():
    spec = load_spec(WIDTH_RATIO, quick=True)
    assert spec.quick is True
    assert spec.seeds == [0]
    assert spec.document["optimizer"] == {"name": "st_sgd", "epochs": 2}
    assert spec.document["data"] == {"train_subset": 1000}
    assert spec.axes == load_spec(WIDTH_RATIO).axes


def test_set_wins_over_quick():
    quick_only = load_spec(WIDTH_RATIO, quick=True)
    spec = load_spec(
        WIDTH_RATIO, overrides=["optimizer.epochs=7", "matrix.seeds=[7, 8]"], quick=True
    )
    assert quick_only.document["optimizer"]["epochs"] != 7
    assert spec.document["optimizer"]["epochs"] == 7
    assert spec.seeds == [7]


# ----------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    assert error_lines(path) == [f"{path}: no such file"]


def test_missing_file_is_named_as_given():
    assert error_lines("specs/nope.toml") == ["specs/nope.toml: no such file"]


def test_toml_syntax_error():
    path = SPECS / "syntax_error.toml"
    assert error_lines(path) == [
        f"{path}: TOML syntax error: "
        "Expected '=' after a key in a key/value pair (at line 3, column 7)"
    ]


def test_bad_overrides(tmp_path):
    path = write(tmp_path, BASE)
    assert error_lines(path, overrides=["model.width", "model.name.x=1", "a..b=1"]) == [
        f"{path}: --set model.width — expected key=value",
        f'{path}: --set model.name.x=1 — model.name is "st_net", not a table',
        f"{path}: --set a..b=1 — not a valid key path: 'a..b'",
    ]


def test_matrix_structure_errors(tmp_path):
    text = (
        BASE
        + "[matrix]\n"
        + '"model.width" = 0.5\n'
        + '"model.depth" = []\n'
        + 'seeds = [0, "one"]\n'
        + "include = [1]\n"
        + 'exclude = "x"\n'
    )
    path = write(tmp_path, text)
    assert error_lines(path) == [
        f'{path}: matrix.seeds — must be a non-empty array of integers, got [0, "one"]',
        f"{path}: matrix.include.0 — must be a table of key path = value, got 1",
        f'{path}: matrix.exclude — must be an array of tables, got "x"',
        f'{path}: matrix."model.width" — must be an array of values, got 0.5',
        f'{path}: matrix."model.depth" — must be a non-empty array of values',
    ]


def test_claim_errors(tmp_path):
    text = BASE + (
        "[[claims]]\n"
        'metric = "test_accuracy"\n'
        "value = 0.9\n"
        "se = -1\n"
        "[[claims]]\n"
        "match = 3\n"
        'value = "high"\n'
        "sauce = 1\n"
    )
    path = write(tmp_path, text)
    assert error_lines(path) == [
        f"{path}: claims.0.se — input should be greater than or equal to 0, got -1",
        f"{path}: claims.1.match — input should be a table, got 3",
        f"{path}: claims.1.metric — field required",
        f'{path}: claims.1.value — input should be a valid number, got "high"',
        f"{path}: claims.1.sauce — unknown option for a claim (did you mean 'source'?); "
        "known: match, metric, se, source, value",
    ]


def test_bad_name_and_quick_table(tmp_path):
    path = write(tmp_path, "name = 3\nquick = [1]\n" + BASE)
    assert error_lines(path, quick=True) == [
        f"{path}: quick — must be a table of key path = value, got [1]",
        f"{path}: name — must be a non-empty string, got 3",
    ]


def test_render_of_messages_is_toml_like(tmp_path):
    path = write(tmp_path, BASE + '[matrix]\n"model.width" = {a = true}\n')
    # an inline table is flattened to its path; the leaf value is reported as written
    assert error_lines(path) == [
        f'{path}: matrix."model.width.a" — must be an array of values, got true'
    ]


def test_nesting_deeper_than_the_limit_is_one_line(tmp_path):
    ok = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)  # with model.h: MAX_DEPTH levels
    load_spec(write(tmp_path, BASE.replace('name = "st_net"', f'name = "st_net"\nh = {ok}')))
    for depth in (MAX_DEPTH + 1, 400, 5000):
        deep = "[" * depth + "]" * depth
        path = write(tmp_path, BASE.replace('name = "st_net"', f'name = "st_net"\nh = {deep}'))
        (line,) = error_lines(path)
        assert line.startswith(f"{path}: ") and "nested" in line and "deep" in line
    path = write(tmp_path, BASE)
    (line,) = error_lines(path, overrides=["model.h=" + "[" * 40 + "]" * 40])
    shown = ("model.h=" + "[" * 40 + "]" * 40)[:59]  # long --set texts are cut to 60
    assert line == (
        f"{path}: --set {shown}… — arrays or tables nested more than {MAX_DEPTH} levels deep"
    )
