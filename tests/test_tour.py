"""Every code block of the guided tour (docs/tour/*.md) runs, and asserts what the page says.

A page's ```python blocks run in order in one namespace, as a reader runs them in one Python session from
the repository's root. Blocks fenced ```python slow (SmolLM2, real data) run only in the slow set, after the
page's other blocks. The working directory is a folder shared by the pages of one test session (the nano
backbone the first page pretrains is made once), with the repository's configs/, docs/, benchmarks/ and
README.md linked in, and its artifacts/ for the slow blocks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT, make_backbone

TOUR = ROOT / "docs" / "tour"
PAGES = sorted(TOUR.glob("[0-9][0-9]-*.md"))
FENCE = re.compile(r"^```python( slow)?\n(.*?)^```$", re.M | re.S)


def blocks(page: Path) -> list[tuple[int, str, bool]]:
    """(line, code, slow) of each python block of a page."""
    text = page.read_text(encoding="utf-8")
    return [(text[:m.start()].count("\n") + 2, m.group(2), bool(m.group(1))) for m in FENCE.finditer(text)]


@pytest.fixture(scope="session")
def tour_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tour")
    for name in ("configs", "docs", "benchmarks", "README.md"):
        (directory / name).symlink_to(ROOT / name)
    return directory


def run_page(page: Path, directory: Path, slow: bool, monkeypatch) -> None:
    monkeypatch.chdir(directory)
    if slow and not (directory / "artifacts").exists():
        (directory / "artifacts").symlink_to(ROOT / "artifacts")
    namespace = {"__name__": f"tour_{page.stem.replace('-', '_')}"}
    for line, code, is_slow in blocks(page):
        if is_slow and not slow:
            continue
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)  # tracebacks name the page's lines


def test_every_part_of_the_book_has_a_page_with_code():
    names = [p.stem.split("-", 1)[1] for p in PAGES]
    assert names == ["attention", "training", "generation", "applications", "inside", "practical"]
    assert all(any(not slow for _, _, slow in blocks(p)) for p in PAGES)
    assert "docs/tour/README.md" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_the_page_runs(page, tour_dir, monkeypatch):
    run_page(page, tour_dir, slow=False, monkeypatch=monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(slow for _, _, slow in blocks(p))], ids=lambda p: p.stem)
def test_the_page_runs_on_smollm2(page, tour_dir, monkeypatch):
    if not (ROOT / "artifacts" / "backbones" / "smollm2-135m" / "config.json").is_file():
        pytest.skip("SmolLM2 is not imported here: run `gptsuite import smollm2` first")
    run_page(page, tour_dir, slow=True, monkeypatch=monkeypatch)


def test_a_failing_block_fails_the_page(tmp_path, monkeypatch):
    """The collector does not swallow errors: a block whose assertion breaks fails with the page's line."""
    page = tmp_path / "09-broken.md"
    page.write_text("Text\n\n```python\nx = 1\n```\n\n```python\nassert x == 2\n```\n")
    with pytest.raises(AssertionError) as err:
        run_page(page, tmp_path, slow=False, monkeypatch=monkeypatch)
    assert err.traceback[-1].lineno + 1 == 8 and str(err.traceback[-1].path) == str(page)


def test_the_pictures_are_drawn_by_the_code(tmp_path):
    """docs/tour/make_images.py draws every picture the pages show (here small, on a nano backbone)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_images", TOUR / "make_images.py")
    make_images = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_images)
    drawn = make_images.draw_all(make_backbone(tmp_path / "nano"), tmp_path / "img", dpi=30)
    assert {p.name for p in drawn} == {"positions.png", "attention.png", "lr-schedule.png", "sampling.png",
                                       "logit-lens.png"}
    assert all(p.stat().st_size > 1000 for p in drawn)
    shown = {name for page in PAGES for name in re.findall(r"\(img/([\w-]+\.png)\)", page.read_text())}
    assert shown == {p.name for p in drawn}  # every picture a page shows is drawn, and only those
