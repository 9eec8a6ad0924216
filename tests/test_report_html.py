"""`bench report --html`: one self-contained, escaped file, checked as text and by opening it
in a real headless chromium (no console errors, no request leaving the file, the plots
visible in a screenshot)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from headless_chromium import CHROMIUM, page_url, visit
from matplotlib.colors import to_rgb
from PIL import Image
from report_studies import lc_study
from report_study import quick_study_db
from typer.testing import CliRunner

from benchharness import report
from benchharness.cli import app
from benchharness.records import CurvePoint, RunRecord
from benchharness.report.claims import claims_table
from benchharness.report.html import write_html
from benchharness.report.plots import FRONT_COLOR
from benchharness.store import Store


@pytest.fixture(scope="session")
def lc_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lc_study(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def lc_html(lc_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    result = CliRunner().invoke(app, ["report", "--db", str(lc_db), "--html", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {path}"
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (as root, as on CI)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        pytest.skip(
            f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get);"
            " install Debian's chromium package to run the browser test"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for args, timeout in (
            ([apt_get, "update"], 300),
            ([apt_get, "install", "-y", "chromium"], 900),
        ):
            subprocess.run(args, check=True, capture_output=True, timeout=timeout, env=env)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        detail = getattr(error, "stderr", b"") or b""
        pytest.skip(f"apt-get could not install chromium: {error}; {detail.decode()[-300:]}")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"apt-get install chromium did not provide {CHROMIUM}")
    return CHROMIUM


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    return parser


def test_html_is_self_contained_with_every_section(lc_html: Path, lc_db: Path) -> None:
    text = lc_html.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    parsed = _parse(text)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert len(images) == 1 + 5  # the front, curves of 5 phases (as `--plot` writes)
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(attrs["src"][len(prefix) :]))) as image:
            assert image.format == "PNG" and image.width > 300
    for tag, attrs in parsed.tags:  # nothing else is loaded from anywhere
        assert not {"href", "srcset", "background"} & set(attrs), (tag, attrs)

    store = Store(lc_db)
    summary = report.summarize(store)
    configs = [r for r in parsed.rows if r and r[0].isdigit()]
    assert len(configs) == len(summary) == 2
    assert sorted(r[2] for r in configs) == ["2", "2"]  # n per configuration
    runs = store.runs()
    header = next(r for r in parsed.rows if "git commit" in r)
    provenance = [r for r in parsed.rows if runs["git_commit"].iloc[0] in r]
    for column in ("hostname", "cpu", "device", "torch_version", "package_version"):
        assert all(str(runs[column].iloc[0]) in row for row in provenance)
    assert sum(int(r[header.index("runs")]) for r in provenance) == len(runs)
    claims = claims_table(store)
    assert len(claims) == 1  # the spec's one claim, on the LC configuration
    lc = summary[summary["optimizer"].str.contains('"lc"')].iloc[0]
    claim_rows = [r for r in parsed.rows if "90 ± 1" in r]  # 0.9 ± 0.01 in percent
    assert len(claim_rows) == 1
    (row,) = claim_rows
    assert row[0] == "optimizer=lc(mu0=0.001, mu_growth=2.0)"
    assert row[3] == f"{100 * lc['test_accuracy_mean']:.4g} ± {100 * lc['test_accuracy_se']:.2g}"
    assert row[4] == "2"
    assert row[6] == claims["verdict"].iloc[0] != ""


def test_html_of_the_quick_mnist_study(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tmp_path: Path
) -> None:
    store = Store(quick_study_db(tmp_path_factory, data_dir))
    text = write_html(store, tmp_path / "r.html", spec="mnist_width_dct").read_text("utf-8")
    parsed = _parse(text)
    assert len([a for t, a in parsed.tags if t == "img"]) == 1  # the front; 1-epoch curves
    configs = [r for r in parsed.rows if r and r[0].isdigit()]
    assert [int(r[0]) for r in configs] == list(range(1, 11))
    assert sorted(int(r[2]) for r in configs) == [1] * 6 + [2] * 4
    # the spec's six claims, each matching one configuration, in claims_table's order
    claims = claims_table(store, spec="mnist_width_dct")
    assert len(claims) == 6
    units = ("test accuracy (%)", "train time (s)")
    claim_rows = [r for r in parsed.rows if len(r) == 8 and r[1] in units]
    assert [r[6] for r in claim_rows] == list(claims["verdict"])
    assert sorted(r[0] for r in claim_rows) == sorted(
        ["width=0.5, ratio=0.1", "width=0.5, ratio=0.3", "width=0.5, ratio=0.5",
         "width=1, ratio=0.3", "width=1, ratio=0.3", "width=2, ratio=0.5"]
    )  # fmt: skip
    by_config = {r[0]: r for r in claim_rows if r[1] == "test accuracy (%)"}
    assert by_config["width=0.5, ratio=0.3"][2] == "94.6 ± 0.15"  # 0.946 ± 0.0015
    assert by_config["width=0.5, ratio=0.3"][4] == "2"  # two seeds of width 0.5


def test_html_escapes_text_from_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "bench.duckdb")
    for seed, accuracy in ((0, 0.5), (1, 0.6)):
        store.save(
            RunRecord(
                job_id=f"j{seed}", config_id="c1", spec_name="evil<script>alert(1)</script>",
                spec_hash="h", quick=False, seed=seed,
                config={"model": {"note": "<b>bold</b> & co"}},
                axes={"model.note": "<b>bold</b> & co"}, status="completed",
                metrics={"test_accuracy": accuracy, "flops": 1000},
                provenance={"hostname": "<img src=x onerror=alert(2)>"},
                curves=[CurvePoint("train", s, "train_loss", 1.0 / s) for s in (1, 2, 3)],
            )
        )  # fmt: skip
    text = write_html(store, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in text and "<b>" not in text and "<img src=x" not in text
    assert "evil&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text


def test_html_to_an_unwritable_place_is_a_one_line_error(lc_db: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "report.html"
    result = CliRunner().invoke(app, ["report", "--db", str(lc_db), "--html", str(target)])
    assert result.exit_code == 2
    assert f"--html: cannot write {target}" in result.output
    assert "Traceback" not in result.output and not target.exists()


def _pixels_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    rgb = np.asarray(image.convert("RGB"), dtype=int)
    return int((np.abs(rgb - np.array(colour)) <= tolerance).all(axis=-1).sum())


def test_html_renders_in_chromium_without_errors_and_shows_the_plots(
    chromium: str, lc_html: Path, tmp_path: Path
) -> None:
    page = visit(page_url(lc_html), width=1200, height=2000)
    (tmp_path / "screenshot.png").write_bytes(page.screenshot)
    assert page.dom_ready
    assert page.console_errors == []
    assert page.requested_urls[0] == page_url(lc_html)
    assert all(url.startswith("data:image/png;base64,") for url in page.requested_urls[1:])
    with Image.open(io.BytesIO(page.screenshot)) as shot:
        assert shot.size == (1200, 2000)
        front_red = tuple(round(255 * c) for c in to_rgb(FRONT_COLOR))
        # the front plot sits near the top: its red front markers and line are on screen
        top = shot.crop((0, 0, 1200, 700))
        assert _pixels_near(top, front_red) > 100
        # and the page is not blank: plots and tables cover a good part of it
        dark = int((np.asarray(shot.convert("L")) < 200).sum())
        assert dark > 0.02 * 1200 * 2000


def test_browser_check_sees_errors_and_broken_images(chromium: str, tmp_path: Path) -> None:
    """The console check above can fail: a broken page is caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body>"
        "<img src='missing.png'><script>console.error('bad'); undefinedName();</script>"
        "</body></html>"
    )
    errors = visit(page_url(page)).console_errors
    assert any("missing.png" in e for e in errors)
    assert any("bad" in e for e in errors)
    assert any("undefinedName" in e for e in errors)
