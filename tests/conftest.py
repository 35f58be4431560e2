"""Shared fixtures: a nano GPTConfig, small seeded GPTs and a tiny byte-level BPE trained on a fixture corpus.

The run is hermetic. Before any project module reads them, every cache and temp dir the code or its
libraries write to (the data cache, Hugging Face's caches, matplotlib's, the temp dir) points into one
folder made for this session and deleted after it, and every test runs in its own tmp_path as the working
directory, so a relative output path (`runs/`, `artifacts/`) lands there, never in the repository. Tests
marked `warm_cache(*sources)` read the user's real data cache instead, offline: they are skipped when a
source is not there (`gptsuite data prepare NAME` fills it). Opt-in `slow` tests use that cache too and may
fetch into it from the package registries; the default run reaches no network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# --- hermetic environment (set at import: before backbone, datasets or matplotlib read them) -------------
USER_CACHE = Path(os.environ.get("GPTSUITE_CACHE") or Path.home() / ".cache" / "gptsuite").expanduser()
SESSION_DIR = Path(tempfile.mkdtemp(prefix="gptsuite-tests-"))
for name, sub in (("GPTSUITE_CACHE", "cache"), ("HF_HOME", "hf"), ("HF_DATASETS_CACHE", "hf/datasets"),
                  ("MPLCONFIGDIR", "matplotlib"), ("GRADIO_TEMP_DIR", "gradio"), ("TMPDIR", "tmp"),
                  # the browser test's chromium writes its settings store (dconf) under these
                  ("XDG_CACHE_HOME", "xdg/cache"), ("XDG_CONFIG_HOME", "xdg/config"), ("XDG_RUNTIME_DIR", "xdg/run")):
    os.environ[name] = str(SESSION_DIR / sub)
    (SESSION_DIR / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"  # no hub lookups in tests
# measured matmul rates stay in the session too, also for tests that read the user's data cache
os.environ["GPTSUITE_MACHINE_FILE"] = str(SESSION_DIR / "machine.json")
tempfile.tempdir = os.environ["TMPDIR"]

import pytest  # noqa: E402
import torch  # noqa: E402

from backbone.config import GPTConfig  # noqa: E402
from backbone.model import GPT  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


def warm_source(name: str) -> Path:
    """The extracted folder of a source in the user's data cache, or a skip saying how to fill it."""
    folder = USER_CACHE / "sources" / name
    if not (folder / "SOURCE.json").is_file():
        pytest.skip(f"needs {name} in the data cache {USER_CACHE}: `gptsuite data prepare {name}`")
    return folder


@pytest.fixture(autouse=True)
def _isolated(request, tmp_path, monkeypatch):
    """Each test runs in its own tmp_path. `warm_cache` tests read the user's data cache (skipped when a
    source is missing); opt-in `slow` tests may also fetch into it, as `gptsuite data prepare` would."""
    monkeypatch.chdir(tmp_path)
    warm = request.node.get_closest_marker("warm_cache")
    slow = request.node.get_closest_marker("slow")
    if warm is not None and slow is None:
        for name in warm.args:
            warm_source(name)
    if warm is not None or slow is not None:
        monkeypatch.setenv("GPTSUITE_CACHE", str(USER_CACHE))

# Tensors in these tests are tiny: thread start-up and contention cost far more than they save
# (the model tests run ~10x faster on one thread than on two busy cores).
torch.set_num_threads(1)


@pytest.fixture
def nano_config() -> GPTConfig:
    """2 layers, 32 wide, 4 heads, vocab 512, block 64 (the `nano` preset)."""
    return GPTConfig.from_preset("nano")


def _make_model(seed: int = 0, **overrides) -> GPT:
    """A seeded nano GPT in eval mode; keyword overrides replace config fields."""
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("nano", **overrides)).eval()


@pytest.fixture
def make_model():
    """Factory: make_model(seed=0, **config_overrides) -> a seeded nano GPT in eval mode."""
    return _make_model


@pytest.fixture
def nano_model() -> GPT:
    return _make_model()


@pytest.fixture(scope="session")
def tiny_corpus() -> str:
    return (FIXTURES / "tiny_corpus.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus):
    """A byte-level BPE of 320 tokens trained on tests/fixtures/tiny_corpus.txt (fits the nano vocab of 512)."""
    from backbone.tokenizer import Tokenizer

    return Tokenizer.train(tiny_corpus.split("\n\n"), vocab_size=320, min_frequency=2, show_progress=False)
