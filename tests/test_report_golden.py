"""The text reports (`bench report` in every format, with and without --pareto, claims,
--spec, objectives, --failed) print exactly what the pandas-based report printed before:
outputs captured from it in tests/golden/report_outputs.json over the databases of
tests/report_golden.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report_golden import GOLDEN, outputs


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return outputs(tmp_path_factory.mktemp("golden"))


def test_every_captured_command_still_runs() -> None:
    expected = json.loads(GOLDEN.read_text())
    assert len(expected) == 76
    assert all(text.startswith("exit 0\n") for text in expected.values())


@pytest.mark.parametrize("label", list(json.loads(GOLDEN.read_text())))
def test_report_prints_what_it_printed_before(printed: dict[str, str], label: str) -> None:
    expected = json.loads(Path(GOLDEN).read_text())[label]
    assert printed[label] == expected
