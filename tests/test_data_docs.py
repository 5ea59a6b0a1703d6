"""Great Expectations Data Docs: each validation runs through a checkpoint of the
project's file data context (``gx/`` under PMODEL_HOME) and gets its HTML page;
a failing page lists the offending rows or images; ``pmodel validate`` prints the
page's path. (The flow logging the pages on its parent run: tests/test_flow.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pmodel import paths
from pmodel.datasets import fashion
from tasks.validation import validate, validate_image_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PMODEL_HOME", str(tmp_path / "home"))


class _Cells(HTMLParser):
    """The text of every table row of a page, one list of cell texts a row."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _rows(page: Path) -> list[list[str]]:
    parser = _Cells()
    parser.feed(page.read_text())
    return parser.rows


def _has_row(page: Path, *cells: str) -> bool:
    """Whether a table row of the page starts with these cells (a nested table's last
    row also gets its outer cell's text)."""
    return any(row[:len(cells)] == list(cells) for row in _rows(page))


def _fashion_csv(folder: Path, name: str, bad: dict[int, str] | None = None) -> Path:
    rows = fashion.sample(12, rng=np.random.default_rng(0))
    for row, color in (bad or {}).items():
        rows.loc[row, "clothing_color"] = color
    path = folder / name
    fashion.write_csv(rows, path)
    return path


def test_a_validation_builds_its_page_in_the_project_and_names_its_suite(tmp_path):
    report = validate("fashion", _fashion_csv(tmp_path, "good.csv"))
    assert report.success
    page, = report.docs_pages
    assert page.is_file() and page.suffix == ".html"
    assert paths.gx_dir() in page.parents   # the project's gx/, not a temporary context
    suite = page.relative_to(paths.gx_dir() / "uncommitted" / "data_docs" / "local_site"
                             / "validations").parts[0]
    assert suite.startswith("pmodel-fashion-")
    html = page.read_text()
    assert suite in html and "good" in html   # the suite, and the run named after the file
    # the suite, its validation definition and checkpoint are stored in the project
    for store in ("expectations", "validation_definitions", "checkpoints"):
        assert (paths.gx_dir() / store / f"{suite}.json").is_file()
    assert json.loads(report.report_path.read_text())["data_docs"] == [str(page)]
    assert f"data docs: {page}" in report.summary()


def test_same_rules_reuse_the_checkpoint_other_rules_get_their_own(tmp_path):
    first = validate("fashion", _fashion_csv(tmp_path, "a.csv"))
    again = validate("fashion", _fashion_csv(tmp_path, "b.csv", {3: "Purple"}))
    other = validate("categorical", _fashion_csv(tmp_path, "c.csv"))
    suite = lambda r: r.docs_pages[0].parts[-4]   # .../validations/<suite>/<run>/<time>/<batch>.html
    assert suite(first) == suite(again)
    assert suite(other) != suite(first) and suite(other).startswith("pmodel-categorical-")
    pages = [p for r in (first, again, other) for p in r.docs_pages]
    assert len(set(pages)) == len(pages)   # a page each
    stored = {p.stem for p in (paths.gx_dir() / "checkpoints").glob("*.json")}
    assert stored == {p.parts[-4] for p in pages}


def test_a_failing_page_lists_the_offending_rows_by_file_line(tmp_path):
    path = _fashion_csv(tmp_path, "bad.csv", {4: "Purple", 9: "purple"})
    report = validate("fashion", path)
    assert not report.success
    page = report.docs_pages[0]
    # unexpected value, count, index: data row 4 is line 6 of the file, row 9 line 11
    assert _has_row(page, "Purple", "1", "6") and _has_row(page, "purple", "1", "11")
    assert "line 6 ('Purple')" in report.summary()   # the text report says the same


def test_a_failing_image_folder_page_names_the_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 4), 10 * i, dtype=np.uint8), mode="L").save(folder / f"ok{i}.png")
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8), mode="RGB").save(folder / "colour.png")
    (folder / "notes.txt").write_text("not an image")
    report = validate_image_folder(folder, (4, 4))
    assert not report.success
    page = report.docs_pages[0]
    assert _has_row(page, "RGB", "1", "colour.png")     # mode rule: value, count, image
    assert _has_row(page, "False", "1", "notes.txt")    # is_png rule
    assert "ok0.png" not in page.read_text()


def test_land_gets_a_page_for_its_cells_and_one_for_its_numbers(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("lon,lat\n10,20\n200,30\n")
    report = validate("land", path)
    assert not report.success and len(report.docs_pages) == 2
    assert _has_row(report.docs_pages[1], "200.0", "1", "3")   # lon out of range, line 3


def test_pmodel_validate_prints_the_page(tmp_path):
    from flows.cli import main

    path = _fashion_csv(tmp_path, "bad.csv", {2: "Purple"})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["validate", "fashion", str(path)])
    assert code == 1
    pages = [line.removeprefix("data docs: ") for line in out.getvalue().splitlines()
             if line.startswith("data docs: ")]
    assert len(pages) == 1 and Path(pages[0]).is_file()
    assert _has_row(Path(pages[0]), "Purple", "1", "4")


def test_each_project_has_its_own_context(tmp_path, monkeypatch):
    path = _fashion_csv(tmp_path, "good.csv")
    one = validate("fashion", path).docs_pages[0]
    monkeypatch.setenv("PMODEL_HOME", str(tmp_path / "other"))
    two = validate("fashion", path).docs_pages[0]
    assert (tmp_path / "home" / "gx") in one.parents and (tmp_path / "other" / "gx") in two.parents


def test_an_unwritable_project_validates_without_a_page(tmp_path, monkeypatch):
    import tasks.validation as validation

    monkeypatch.setattr(validation, "unwritable", lambda path: Path(path))
    report = validate("fashion", _fashion_csv(tmp_path, "bad.csv", {2: "Purple"}))
    assert not report.success and report.docs_pages == []
    assert "line 4 ('Purple')" in report.summary()
    assert any("no Data Docs page" in note and "not writable" in note for note in report.notes)
    assert not paths.gx_dir().exists()


def test_processes_validating_at_once_on_a_fresh_project_each_get_their_page(tmp_path):
    # three `pmodel validate` at once, on one project that has no gx/ yet, with the same
    # rules: one scaffolds the context, one stores the checkpoint, all three use it
    files = [_fashion_csv(tmp_path, f"f{i}.csv", {2: "Purple"} if i == 1 else None) for i in range(3)]
    env = {**os.environ, "PMODEL_HOME": str(tmp_path / "shared")}

    def run(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flows.cli", "validate", "fashion", str(path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(3) as pool:
        done = list(pool.map(run, files))
    assert [d.returncode for d in done] == [0, 1, 0], [d.stderr[-2000:] for d in done]
    pages = [Path(line.removeprefix("data docs: ")) for d in done for line in d.stdout.splitlines()
             if line.startswith("data docs: ")]
    assert len(set(pages)) == 3 and all(p.is_file() for p in pages)
    assert [p.parts[-3] for p in pages] == ["fashion-f0", "fashion-f1", "fashion-f2"]   # run names
    assert _has_row(pages[1], "Purple", "1", "4")
    assert len(list((tmp_path / "shared" / "gx" / "checkpoints").glob("*.json"))) == 1
