"""Debian sources against a fake apt: empty and stale lists, a pin that left the archive, no root, and a corpus
built without a source that cannot be fetched. Hermetic: the fake replaces ``run_client`` and ``is_root``."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
from pathlib import Path

import pytest

from backbone.data import corpus as C
from backbone.data.corpus_sources import CORPUS_SOURCES
from backbone.data.download import fetch
from backbone.data.sources import SOURCES, DataSourceError, Source
from tests.test_data_fetch import make_deb

F = importlib.import_module("backbone.data.download")

DEB = make_deb({"./usr/share/fake/a.txt": b"alpha doc\n%\nbeta doc\n"})
NEWER_SHA = "ab" * 32


class FakeApt:
    """apt over a fake archive: ``lists`` is what the local package lists know (package -> versions, newest
    first), ``archive`` what ``apt-get update`` brings; ``apt-get download`` of a known version writes DEB."""

    def __init__(self, lists: dict[str, list[str]], archive: dict[str, list[str]], update_rc: int = 0):
        self.lists, self.archive, self.update_rc = lists, archive, update_rc
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
        self.calls.append(cmd)
        if cmd == F.APT_UPDATE:
            if self.update_rc:
                return subprocess.CompletedProcess(cmd, self.update_rc, "", "E: Could not resolve 'deb.debian.org'")
            self.lists = {k: list(v) for k, v in self.archive.items()}
            return subprocess.CompletedProcess(cmd, 0, "Reading package lists... Done\n", "")
        if cmd[:2] == ["apt-get", "download"]:
            return self.download(cmd, Path(cwd))
        if cmd[:2] == ["apt-cache", "policy"]:
            return subprocess.CompletedProcess(cmd, 0, self.policy(cmd[2]), "")
        if cmd[:2] == ["apt-cache", "show"]:
            return subprocess.CompletedProcess(cmd, 0, f"Package: fake\nVersion: {cmd[2].split('=')[1]}\n"
                                                       f"Size: 2048\nSHA256: {NEWER_SHA}\n", "")
        raise AssertionError(f"unexpected command {cmd}")

    def download(self, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
        package, version = cmd[2].split("=", 1)
        if package not in self.lists:
            return subprocess.CompletedProcess(cmd, 100, "", f"E: Unable to locate package {package}")
        if version not in self.lists[package]:
            return subprocess.CompletedProcess(cmd, 100, "", f"E: Version '{version}' for '{package}' was not found")
        (cwd / f"{package}_{version}_all.deb").write_bytes(DEB)
        return subprocess.CompletedProcess(cmd, 0, "Get:1 http://deb.debian.org/debian ...", "")

    def policy(self, package: str) -> str:
        versions = self.lists.get(package)
        if not versions:
            return ""  # apt-cache policy prints nothing for a package it does not know
        table = "".join(f"     {v} 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n"
                        for v in versions)
        return f"{package}:\n  Installed: (none)\n  Candidate: {versions[0]}\n  Version table:\n{table}"


@pytest.fixture
def apt(tmp_path, monkeypatch):
    """A fresh cache, root by default, and no `apt-get update` run yet in this 'process'."""
    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(F, "_apt_update", None)
    monkeypatch.setattr(F, "is_root", lambda: True)
    monkeypatch.setattr(F, "client_available", lambda src: True)

    def install(lists, archive, **kw) -> FakeApt:
        fake = FakeApt(lists, archive, **kw)
        monkeypatch.setattr(F, "run_client", fake)
        return fake
    return install


def deb_source(monkeypatch, name="fake", kind="benchmark", **extra) -> Source:
    src = Source(name, "debian", "fake", "1.0", "fake_1.0_all.deb", hashlib.sha256(DEB).hexdigest(), len(DEB),
                 ("usr/share/fake/*",), "public domain", "a fake Debian source", kind=kind, extra=extra)
    monkeypatch.setitem(SOURCES, name, src)
    return src


DOWNLOAD, UPDATE = ["apt-get", "download", "fake=1.0"], F.APT_UPDATE


def test_empty_lists_update_once_then_fetch(apt, monkeypatch):
    deb_source(monkeypatch)
    fake = apt(lists={}, archive={"fake": ["1.0"]})  # a fresh container: apt knows no package at all
    root = fetch("fake", progress=False)
    assert (root / "usr/share/fake/a.txt").exists()
    assert fake.calls == [DOWNLOAD, UPDATE, DOWNLOAD]


def test_stale_lists_update_then_fetch(apt, monkeypatch):
    deb_source(monkeypatch)
    fake = apt(lists={"fake": ["0.9"]}, archive={"fake": ["1.0", "0.9"]})  # lists older than the pin
    assert (fetch("fake", progress=False) / "usr/share/fake/a.txt").exists()
    assert fake.calls == [DOWNLOAD, UPDATE, DOWNLOAD]


def test_mirror_dropped_the_file_counts_as_stale(apt, monkeypatch):
    deb_source(monkeypatch)
    fake = apt(lists={"fake": ["1.0"]}, archive={"fake": ["1.0"]})
    first = [True]

    def gone_once(cmd, cwd):  # the lists name the build, the mirror 404s it until the lists are refreshed
        if cmd == DOWNLOAD and first[0]:
            first[0] = False
            return subprocess.CompletedProcess(cmd, 100, "", "E: Failed to fetch http://x/fake_1.0_all.deb  404  "
                                                             "Not Found")
        return fake(cmd, cwd)
    monkeypatch.setattr(F, "run_client", gone_once)
    assert (fetch("fake", progress=False) / "usr/share/fake/a.txt").exists()
    assert fake.calls == [UPDATE, DOWNLOAD]


def test_pin_gone_for_a_benchmark_names_the_offered_build_and_the_way_out(apt, monkeypatch, tmp_path):
    deb_source(monkeypatch, used_by="translation")
    fake = apt(lists={"fake": ["0.9"]}, archive={"fake": ["1.1"]})  # security pocket moved on: 1.0 is gone
    with pytest.raises(DataSourceError) as err:
        fetch("fake", progress=False)
    msg = str(err.value)
    assert "the pinned build fake=1.0 has left Debian's archive" in msg
    assert f"the archive offers 1.1 (bookworm/main, size 2048, sha256 {NEWER_SHA}) now" in msg
    assert "backbone/data/sources.json" in msg and "leave the translation task out of the run" in msg
    assert "`gptsuite bench --tasks`" in msg
    assert fake.calls[:3] == [DOWNLOAD, UPDATE, DOWNLOAD] and fake.calls.count(UPDATE) == 1
    assert not list((tmp_path / "cache" / "tmp").iterdir()) and not (tmp_path / "cache" / "sources").exists()


def test_pin_gone_for_a_corpus_source_says_it_is_skipped(apt, monkeypatch):
    deb_source(monkeypatch, kind="corpus")
    apt(lists={}, archive={})  # the archive has no such package any more
    with pytest.raises(DataSourceError, match=r"has left Debian's archive.*the archive offers no fake now.*"
                                              r"a corpus build skips it and uses the other sources"):
        fetch("fake", progress=False)


def test_not_root_no_update_and_the_command_to_run(apt, monkeypatch):
    deb_source(monkeypatch)
    monkeypatch.setattr(F, "is_root", lambda: False)
    fake = apt(lists={}, archive={"fake": ["1.0"]})
    with pytest.raises(DataSourceError, match=r"apt's package lists do not have fake=1\.0 \(E: Unable to locate "
                                              r"package fake\).*run `sudo apt-get update` and retry"):
        fetch("fake", progress=False)
    assert fake.calls == [DOWNLOAD]  # no update attempted without root


def test_update_runs_once_per_process(apt, monkeypatch):
    deb_source(monkeypatch, name="fake")
    deb_source(monkeypatch, name="fake2")
    fake = apt(lists={}, archive={"other": ["1"]})
    for name in ("fake", "fake2"):
        with pytest.raises(DataSourceError, match="has left Debian's archive"):
            fetch(name, progress=False)
    policy = ["apt-cache", "policy", "fake"]
    # the second source saw fresh lists on its first try: no second update, no pointless retry
    assert fake.calls == [DOWNLOAD, UPDATE, DOWNLOAD, policy, DOWNLOAD, policy]


def test_failed_update_says_so(apt, monkeypatch):
    deb_source(monkeypatch)
    apt(lists={}, archive={"fake": ["1.0"]}, update_rc=100)
    with pytest.raises(DataSourceError, match=r"`apt-get update` failed \(exit 100: E: Could not resolve.*"
                                              r"check the network"):
        fetch("fake", progress=False)


def test_parse_apt_policy_skips_builds_only_installed():
    text = ("python3:\n  Installed: 3.11.2-1+b1\n  Candidate: 3.11.2-1+b1\n  Version table:\n"
            " *** 3.11.2-1+b1 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n"
            "        100 /var/lib/dpkg/status\n     3.11.0-1 100\n        100 /var/lib/dpkg/status\n")
    assert F.parse_apt_policy(text) == [("3.11.2-1+b1", "bookworm/main")]
    assert F.parse_apt_policy("") == []


# --- the corpus degrades cleanly ------------------------------------------------------------------------------

class CharTokenizer:
    name, vocab_size, eos_id = "chars", 257, 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode()) for t in texts]


def test_corpus_skips_a_source_that_cannot_be_fetched(apt, monkeypatch, tmp_path, capsys):
    deb_source(monkeypatch, name="fake-deb", kind="corpus")
    apt(lists={"fake": ["0.9"]}, archive={"fake": ["1.1"]})

    def deb_docs():  # a reader like corpus_sources': fetches on its first document
        yield from [("a", (fetch("fake-deb") / "usr/share/fake/a.txt").read_text())]
    readers = {"local": lambda: iter([(f"d{i}", f"local document number {i}") for i in range(30)]),
               "deb": deb_docs}
    monkeypatch.setattr(C, "CORPUS_SOURCES", readers)
    m = C.build_corpus(CharTokenizer(), tmp_path / "c", sources=["local", "deb"], decontaminate=False, workers=1,
                       progress=False)
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1  # one line: the source, why, and what to do
    assert "corpus source 'deb' skipped" in warning[0] and "has left Debian's archive" in warning[0]
    assert "offers 1.1" in warning[0] and "backbone/data/sources.json" in warning[0]
    assert m["used"] == ["local"] and list(m["sources"]) == ["local"] and set(m["skipped"]) == {"deb"}
    assert m["sources"]["local"]["documents"]["train"] + m["sources"]["local"]["documents"]["val"] == 30
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["skipped"] == m["skipped"]
    assert "skipped: deb: " in C.stats_table(m)
    # reused as built, with a note saying what it lacks
    assert C.build_corpus(CharTokenizer(), tmp_path / "c", sources=["local", "deb"], decontaminate=False,
                          workers=1, progress=False) == m
    assert "built without deb" in capsys.readouterr().err


def test_corpus_with_no_readable_source_fails(apt, monkeypatch, tmp_path):
    def broken():
        raise DataSourceError("data source 'x': gone")
        yield  # a generator, like the real readers
    monkeypatch.setattr(C, "CORPUS_SOURCES", {"x": broken})
    with pytest.raises(DataSourceError, match=r"no corpus source could be read \(x\)"):
        C.build_corpus(CharTokenizer(), tmp_path / "c", sources=["x"], decontaminate=False, workers=1,
                       progress=False)


def test_default_corpus_and_benchmarks_do_not_need_a_moving_pin():
    assert "python-doc" not in C.DEFAULT_SOURCES and "python-doc" in CORPUS_SOURCES  # opt-in only
    assert set(C.DEFAULT_SOURCES) | set(C.OPTIONAL_SOURCES) == set(CORPUS_SOURCES)
    for s in SOURCES.values():  # a Debian source either degrades (corpus) or names the task to leave out
        if s.registry == "debian":
            assert s.kind == "corpus" or s.extra.get("used_by"), s.name


def test_only_debian_failures_refresh_apt(apt, monkeypatch):
    from tests.test_data_fetch import add_source

    add_source(monkeypatch, b"x")  # a PyPI source whose client happens to print apt-like words
    calls = []

    def pip_fails(cmd, cwd):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Unable to locate package fake")
    monkeypatch.setattr(F, "run_client", pip_fails)
    with pytest.raises(DataSourceError, match="failed"):
        fetch("fake", progress=False)
    assert UPDATE not in calls and len(calls) == 1
