"""The demo as a person uses it: served on 127.0.0.1, driven in headless Chromium (Debian's package, through
Playwright; no browser download), every tab filled and clicked, outputs asserted, screenshots saved.

Screenshots go to a temporary folder; GPTSUITE_SCREENSHOTS=1 also copies one to benchmarks/screenshots/.
In CI (CI=true) a missing chromium or playwright is a failure; locally the test skips and says why.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from demos.app import launch
from tests.helpers import ROOT
from tests.test_demo import make_demo_artifacts

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 20_000


def _need_browser():
    problems = []
    if not Path(CHROMIUM).is_file():
        problems.append("chromium is not installed (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401  (here: optional, the [dev] extra; its absence skips)
    except ImportError:
        problems.append("playwright is not installed (pip install -e '.[dev]')")
    if problems:
        reason = "; ".join(problems)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _need_browser()
    artifacts = make_demo_artifacts(tmp_path_factory.mktemp("artifacts"))
    port = _free_port()
    demo = launch("127.0.0.1", port, artifacts=artifacts, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright  # here: optional (the [dev] extra); _need_browser skips without it

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server)
        page.get_by_text("NLP tasks on one GPT backbone").wait_for()
        yield page
        browser.close()


def box(page, elem_id: str):
    """The text field inside a gr.Textbox."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def open_tab(page, name: str) -> None:
    """Click a tab, also one the tab bar had no room for (Gradio moves those into its overflow menu)."""
    page.get_by_role("tab").first.wait_for()  # the tab bar is laid out
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    page.locator(".overflow-menu button").first.click()
    page.locator(".overflow-dropdown").get_by_text(name, exact=True).click()


def submit(page, field: str, text: str, button: str) -> None:
    """Type `text` into the text field whose elem_id is `field`, then press the button `button`."""
    box(page, field).fill(text)
    page.locator(f"#{button}").click()


def expect_text(page, selector: str, text: str) -> None:
    from playwright.sync_api import expect  # here: optional (the [dev] extra); _need_browser skips without it

    expect(page.locator(selector)).to_contain_text(text, timeout=TIMEOUT_MS)


def settled(page, selector: str, quiet_ms: int = 1000) -> None:
    """Wait until the element's text stops changing (a streamed reply has ended)."""
    before = None
    for _ in range(TIMEOUT_MS // quiet_ms):
        now = page.locator(selector).inner_text()
        if now == before:
            return
        before = now
        page.wait_for_timeout(quiet_ms)
    raise AssertionError(f"{selector} kept changing for {TIMEOUT_MS} ms")


def test_every_tab_in_chromium(page, tmp_path):
    from playwright.sync_api import expect  # here: optional (the [dev] extra); _need_browser skips without it

    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shot(name: str) -> Path:
        path = shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    # classification and sentiment: label probabilities
    for tab, task, label in (("Topic classification", "classification", "business"),
                             ("Sentiment", "sentiment", "positive")):
        open_tab(page, tab)
        submit(page, f"{task}-input", "a wonderful, moving film with great acting", f"{task}-button")
        expect_text(page, f"#{task}-output", label)
        expect_text(page, f"#{task}-output", "%")
    sentiment_png = shot("sentiment")

    # bad input: empty, then 100k characters
    submit(page, "sentiment-input", "", "sentiment-button")
    page.get_by_text("The text is empty").first.wait_for()
    submit(page, "sentiment-input", "y" * 100_000, "sentiment-button")
    page.get_by_text("100,000 characters").first.wait_for()
    shot("bad-input")

    # NER: the sentence comes back with its words; the test head tags every word B-LOC
    open_tab(page, "Named entities")
    submit(page, "ner-input", "Angela Merkel visited Paris.", "ner-button")
    expect_text(page, "#ner-output", "Merkel")
    expect_text(page, "#ner-entities", "LOC")
    shot("ner")

    # QA, translation and code generation through the saved tasks' real predict()
    open_tab(page, "Question answering")
    expect_text(page, "#qa-status", "artifacts")
    box(page, "qa-question").fill("Where is the tower?")
    submit(page, "qa-context", "The tower is in Paris, France.", "qa-button")
    expect_text(page, "#qa-summary", "Answer:")
    expect_text(page, "#qa-output", "answer")  # a span of the context marked (random weights: any span)
    shot("qa")
    open_tab(page, "Translation")
    submit(page, "translation-input", "the house", "translation-button")
    page.wait_for_function("document.querySelector('#translation-output textarea').value.includes('a a a a')")

    # code generation: the model's completion, then a hand-written one, tests run in the sandbox
    open_tab(page, "Code generation")
    page.locator("#codegen-generate").click()
    page.wait_for_function("document.querySelector('#codegen-completion textarea').value.includes('a a a a')")
    submit(page, "codegen-completion", "    return a + b\n", "codegen-run")
    expect_text(page, "#codegen-result", "passed")
    submit(page, "codegen-completion", "    return a - b\n", "codegen-run")
    expect_text(page, "#codegen-result", "failed")
    shot("codegen")

    # playground: streamed completion with tokens/s, then the cache comparison
    open_tab(page, "Generation playground")
    submit(page, "gen-prompt", "the best movie", "gen-button")
    expect_text(page, "#gen-stats", "tokens/s")
    expect_text(page, "#gen-stats", "KV cache on")
    assert box(page, "gen-output").input_value() != ""
    page.locator("#gen-compare").click()
    expect_text(page, "#gen-comparison", "Speed-up with the cache")
    playground_png = shot("playground")

    # attention: two heatmap images and a note
    open_tab(page, "Attention")
    page.locator("#attn-button").click()
    expect_text(page, "#attn-note", "2 layers x 4 heads")
    page.locator("#attn-grid img").wait_for()
    page.locator("#attn-head img").wait_for()
    shot("attention")

    # chat: two turns, streamed replies
    open_tab(page, "Chat")
    expect_text(page, "#chat-status", "Chatting with nano")
    for turn in ("hello there", "tell me more"):
        submit(page, "chat-input", turn, "chat-send")
        expect_text(page, "#chat-box", turn)
        settled(page, "#chat-box")  # the reply has finished streaming before the next turn is sent
    page.wait_for_function("document.querySelector('#chat-input textarea, #chat-input input').value === ''")
    shot("chat")

    # knowledge graph: the drawing, the triples with their evidence sentences, the GraphML and JSON-lines files
    # (the test NER head tags every word B-LOC, the test relation head calls every pair located_in)
    open_tab(page, "Applications")
    open_tab(page, "Knowledge graph")
    submit(page, "kg-text", "Rome Paris. Oslo", "kg-button")
    expect_text(page, "#kg-table", "located_in")
    expect_text(page, "#kg-table", "Rome Paris.")
    page.locator("#kg-graph img").wait_for()
    expect(page.locator("#kg-files").get_by_role("cell", name="graph.graphml")).to_be_visible()
    expect(page.locator("#kg-files").get_by_role("cell", name="graph.jsonl")).to_be_visible()
    shot("kg")

    # article writing: the outline, then each section under its heading, streamed
    open_tab(page, "Article writing")
    box(page, "article-title").fill("Night trains")
    submit(page, "article-outline", "Past; Future", "article-button")
    expect_text(page, "#article-output", "Outline: Past · Future")
    settled(page, "#article-output")
    assert page.locator("#article-output h2").all_inner_texts() == ["Past", "Future"]
    shot("article")

    # a backbone without a chat template: the chat tab says so
    page.locator("#backbone input").click()
    page.get_by_role("option", name="plain").click()
    expect_text(page, "#chat-status", "no chat template")
    shot("chat-no-template")

    assert all(p.stat().st_size > 10_000 for p in (sentiment_png, playground_png))
    if os.environ.get("GPTSUITE_SCREENSHOTS"):
        out = ROOT / "benchmarks" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(playground_png, out / "demo-playground.png")
    print(f"screenshots in {shots}")
