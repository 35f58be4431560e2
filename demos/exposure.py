"""What stands between the demo and the network: the login, the refusal to listen beyond loopback without
one, a private folder for what the demo writes, and a cap on request bodies.

The demo runs submitted code (the code tab's tests, in the sandbox) and spends CPU on every request, so it
binds to loopback by default. `--host 0.0.0.0` or `--share` puts every endpoint on the network: the demo
then refuses to start without a login (`--auth USER:PASSWORD`, or GPTSUITE_DEMO_AUTH so the password stays
off the command line and out of `ps`). This module imports no gradio: the CLI checks before loading it.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import tempfile
import threading
from pathlib import Path

AUTH_ENV = "GPTSUITE_DEMO_AUTH"  # USER:PASSWORD, read when --auth is not given
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def parse_auth(text: str | None, source: str = "--auth") -> tuple[str, str] | None:
    """(user, password) from "USER:PASSWORD" (the password may hold ':'); None for no text."""
    if text is None or text == "":
        return None
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        # the value is not echoed: it may hold the password
        raise ValueError(f"{source} takes USER:PASSWORD, with a non-empty user and password")
    return user.strip(), password


def resolve_auth(flag: str | None, environ=os.environ) -> tuple[str, str] | None:
    """The login: --auth when given, else the environment variable AUTH_ENV, else None."""
    return parse_auth(flag) if flag else parse_auth(environ.get(AUTH_ENV), AUTH_ENV)


def is_loopback(host: str | None) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if not host:
        return False  # an empty server name means every interface
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or an interface address: reachable from elsewhere


def check_exposure(host: str | None, share: bool, auth) -> None:
    """Refuse (ValueError, one line) to serve beyond loopback or through a share link without a login."""
    if auth:
        return
    if share:
        where = "--share opens a public link"
    elif not is_loopback(host):
        where = f"--host {host or '(every interface)'} is reachable from the network"
    else:
        return
    raise ValueError(f"{where}, and the demo runs submitted code: give a login with --auth USER:PASSWORD or "
                     f"the {AUTH_ENV} environment variable (USER:PASSWORD)")


_private: list[Path] = []
_private_lock = threading.Lock()


def private_dir() -> Path:
    """A folder only this user can read (mode 0700, a fresh random name: no other local user can create or
    read it first, unlike a fixed /tmp/name), made once per process and removed at exit."""
    with _private_lock:
        if not _private or not _private[0].is_dir():
            folder = Path(tempfile.mkdtemp(prefix="gptsuite-demo-"))
            atexit.register(shutil.rmtree, folder, True)
            _private[:] = [folder]
        return _private[0]


def use_private_gradio_cache() -> None:
    """Point gradio's cache (the files it serves: images, exports) into private_dir(), unless the operator
    chose a folder with GRADIO_TEMP_DIR. Gradio reads the variable when components are made, so this runs
    before the app is built (and, from the CLI, before gradio is imported)."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        os.environ["GRADIO_TEMP_DIR"] = str(private_dir() / "gradio")


class BodyLimit:
    """ASGI middleware: a request whose body is over `max_bytes` gets 413 before the app reads it, so a
    50 MB prompt is never parsed, queued or held in memory (the handlers' own checks give the message for
    inputs merely over their limit)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                return await self._refuse(send)
            return await self.app(scope, receive, send)  # the server holds the body to its declared length
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        chunks, size = [], 0  # chunked: read up to the limit, then replay what was read
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed, send)

    async def _refuse(self, send) -> None:
        body = (f'{{"detail": "Request body too large: this demo accepts at most {self.max_bytes:,} bytes"}}'
                .encode())
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
