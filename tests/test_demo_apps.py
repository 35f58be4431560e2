"""The applications' demo tabs without a browser: article writing, the sweep on one prompt, the bias probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from demos.app import build_app
from demos.common import ArtifactStore
from demos.tabs_apps import article_stream, bias_probe, inference_options, knowledge_graph, sweep_prompt
from tests.test_demo import HUGE, error_of, make_demo_artifacts


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(make_demo_artifacts(tmp_path_factory.mktemp("artifacts")))


def test_the_app_has_the_application_tabs(store):
    config = build_app(store.root).get_config_file()
    labels = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert {"Applications", "Knowledge graph", "Article writing", "Creativity vs coherence", "Bias probe",
            "Safe output", "Faster inference", "Toxicity", "Relation extraction"} <= labels
    apis = {d["api_name"] for d in config["dependencies"] if d.get("api_name")}
    assert {"kg", "article", "sweep", "bias", "safety", "inference", "toxicity", "relations"} <= apis


def test_article_streams_outline_then_sections(store):
    # nano carries a chat template (the instruct path); "plain" does not (the Markdown continuation path)
    for backbone in ("nano", "plain"):
        # 300 words a section ask for more tokens than nano's 64-token context holds: capped, not an error
        states = list(article_stream(store, backbone, "Night trains", "Past; Future", 2, 300, "casual", 0.0))
        assert states[0].startswith("# Night trains\n") and "*Outline: Past · Future*" in states[0]
        final = states[-1]
        assert "## Past" in final and "## Future" in final and final.index("## Past") < final.index("## Future")
        assert len(states) > 3  # streamed, not returned at once


def test_article_refuses_bad_input(store):
    assert "title is empty" in error_of(article_stream, store, "nano", "  ")
    assert "too long" in error_of(article_stream, store, "nano", HUGE)
    assert "Unknown style" in error_of(article_stream, store, "nano", "A title", "", 2, 20, "shouty")


def test_sweep_tab_measures_each_setting_and_draws_the_plot(store):
    table, image = sweep_prompt(store, "nano", "Once upon a time", ["greedy", "T=1.0", "top-k=5"], 2, 8)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:5]] == ["greedy", "T=1.0", "top-k=5"]
    assert Path(image).stat().st_size > 5_000
    assert "at least one" in error_of(sweep_prompt, store, "nano", "Once", [], 2, 8)


def test_bias_tab_reports_both_tasks(store, tmp_path):
    text = bias_probe(store, 2)
    assert text.startswith("2 sentence frames per pair") and text.count("| sentiment |") == 2
    assert "| ner |" in text and "Largest difference" in text
    assert "No saved sentiment or NER task" in error_of(bias_probe, ArtifactStore(tmp_path / "none"), 2)


def test_kg_tab_draws_the_graph_with_evidence_and_exports(store):
    import networkx as nx  # here: optional (torch brings it), as in tasks.kg.graph


    # the saved NER head tags every word B-LOC and the relation head calls every pair located_in
    image, table, files = knowledge_graph(store, "Rome Paris. Oslo", 0.5)
    assert Path(image).stat().st_size > 5_000
    assert "| Rome (LOC) | located_in | Paris (LOC) |" in table and "Rome Paris." in table
    graphml = next(f for f in files if f.endswith(".graphml"))
    assert set(nx.read_graphml(graphml).nodes) == {"Rome", "Paris", "."}  # Oslo, alone in its sentence, has no edge
    assert "empty" in error_of(knowledge_graph, store, " ", 0.5)


def test_inference_tab_compares_every_option(store):
    table = inference_options(store, "nano", "the cat sat on the mat. the cat", 8)
    options = [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("|")]
    assert options[:4] == ["no KV cache (recompute the prefix each step)", "KV cache",
                           "KV cache, batch of 8 (tokens of all rows)", "KV cache + prompt lookup (8 guesses)"]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:] if line.startswith("|")}
    for exact in options[:4]:  # the cache, the batch and prompt lookup change the speed, never the text
        assert rows[exact].rstrip(" |").endswith("yes")
    assert "| 8 |" in rows["KV cache"] and "| 64 |" in rows["KV cache, batch of 8 (tokens of all rows)"]
