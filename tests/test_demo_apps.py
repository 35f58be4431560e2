"""The applications' demo tabs without a browser: article writing, the sweep on one prompt, the bias probe."""

from __future__ import annotations

import pytest

from tests.test_demo import HUGE, error_of, make_demo_artifacts


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    from demos.common import ArtifactStore

    return ArtifactStore(make_demo_artifacts(tmp_path_factory.mktemp("artifacts")))


def test_the_app_has_the_application_tabs(reg):
    from demos.app import build_app

    config = build_app(reg.root).get_config_file()
    labels = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert {"Article writing", "Creativity vs coherence", "Bias probe"} <= labels
    apis = {d["api_name"] for d in config["dependencies"] if d.get("api_name")}
    assert {"article", "sweep", "bias"} <= apis


def test_article_streams_outline_then_sections(reg):
    from demos.tabs_apps import article_stream

    # nano carries a chat template (the instruct path); "plain" does not (the Markdown continuation path)
    for backbone in ("nano", "plain"):
        states = list(article_stream(reg, backbone, "Night trains", "Past; Future", 2, 20, "casual", 0.0))
        assert states[0].startswith("# Night trains\n") and "*Outline: Past · Future*" in states[0]
        final = states[-1]
        assert "## Past" in final and "## Future" in final and final.index("## Past") < final.index("## Future")
        assert len(states) > 3  # streamed, not returned at once


def test_article_refuses_bad_input(reg):
    from demos.tabs_apps import article_stream

    assert "title is empty" in error_of(article_stream, reg, "nano", "  ")
    assert "too long" in error_of(article_stream, reg, "nano", HUGE)
    assert "Unknown style" in error_of(article_stream, reg, "nano", "A title", "", 2, 20, "shouty")


def test_sweep_tab_measures_each_setting_and_draws_the_plot(reg):
    from pathlib import Path

    from demos.tabs_apps import sweep_prompt

    table, image = sweep_prompt(reg, "nano", "Once upon a time", ["greedy", "T=1.0", "top-k=5"], 2, 8)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:5]] == ["greedy", "T=1.0", "top-k=5"]
    assert Path(image).stat().st_size > 5_000
    assert "at least one" in error_of(sweep_prompt, reg, "nano", "Once", [], 2, 8)


def test_bias_tab_reports_both_tasks(reg, tmp_path):
    from demos.common import ArtifactStore
    from demos.tabs_apps import bias_probe

    text = bias_probe(reg, 2)
    assert text.startswith("2 sentence frames per pair") and text.count("| sentiment |") == 2
    assert "| ner |" in text and "Largest difference" in text
    assert "No saved sentiment or NER task" in error_of(bias_probe, ArtifactStore(tmp_path / "none"), 2)
