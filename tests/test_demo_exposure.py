"""The demo as an attacker meets it: no login, no network bind; with a login, a served demo on 127.0.0.1 that a
request without credentials cannot use, whose queue a flood of 100 requests cannot fill past its bound or
wedge, whose memory oversized bodies cannot grow, and whose handlers refuse oversized inputs with a message.
No browser: plain HTTP to Gradio's routes (/gradio_api/call/NAME), as any script would send."""

from __future__ import annotations

import json
import socket
import stat
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from demos import limits
from demos import tabs_apps as a
from demos import tabs_generate as g
from demos import tabs_tasks as t
from demos.app import launch
from demos.common import output_path
from demos.exposure import AUTH_ENV, check_exposure, parse_auth, private_dir, resolve_auth
from tasks.cli import build_parser, main
from tests import test_demo
from tests.test_demo import CODE_PROMPT, error_of

USER, PASSWORD = "tester", "a long enough passphrase"
FLOOD = 100


# --------------------------------------------------------------------------------------------------------
# the login and the exposure check (no server)
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host, share", [("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
                                         ("demo.example.org", False), ("", False), ("127.0.0.1", True)])
def test_a_network_bind_or_share_link_needs_a_login(host, share):
    with pytest.raises(ValueError) as info:
        check_exposure(host, share, None)
    message = str(info.value)
    assert "--auth USER:PASSWORD" in message and "GPTSUITE_DEMO_AUTH" in message and "\n" not in message
    check_exposure(host, share, (USER, PASSWORD))  # with a login: accepted


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_needs_no_login(host):
    check_exposure(host, False, None)


def test_the_login_comes_from_the_flag_or_the_environment():
    assert parse_auth("ann:pa:ss") == ("ann", "pa:ss") and parse_auth(None) is None
    for bad in ("no-colon", ":pw", "ann:"):
        with pytest.raises(ValueError, match="USER:PASSWORD") as info:
            parse_auth(bad)
        assert bad not in str(info.value)  # never echoed: it may hold the password
    assert resolve_auth(None, {AUTH_ENV: "ann:secret"}) == ("ann", "secret")
    assert resolve_auth("bob:pw", {AUTH_ENV: "ann:secret"}) == ("bob", "pw")  # the flag wins
    assert resolve_auth(None, {}) is None


def test_the_command_refuses_in_one_line_before_loading_anything(capsys, monkeypatch):
    monkeypatch.delenv("GPTSUITE_DEMO_AUTH", raising=False)
    assert main(["demo", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gptsuite demo: error: --host 0.0.0.0") and "--auth" in err and "\n" not in err
    assert main(["demo", "--share"]) == 2 and "GPTSUITE_DEMO_AUTH" in capsys.readouterr().err
    args = build_parser().parse_args(["demo", "--max-queue", "4", "--concurrency", "1", "--auth", "a:b"])
    assert (args.max_queue, args.concurrency, args.auth) == (4, 1, "a:b")
    assert "gradio" not in args.func.__globals__  # the check ran before the app (and gradio) was loaded


def test_help_states_the_exposure(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("exposes every tab to the network", "--share", "--auth", "GPTSUITE_DEMO_AUTH", "--max-queue"):
        assert words in text, words


def test_outputs_go_to_a_private_folder():
    path = output_path("probe", ".png")
    assert path.parent.parent == private_dir() and private_dir().name.startswith("gptsuite-demo-")
    for folder in (private_dir(), path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# --------------------------------------------------------------------------------------------------------
# oversized inputs, handler by handler
# --------------------------------------------------------------------------------------------------------
artifacts, store = test_demo.artifacts, test_demo.store  # the demo tests' module-scoped fixtures, shared


def _turns(n: int, chars: int) -> list[dict]:
    return [{"role": ("user", "assistant")[i % 2], "content": "w" * chars} for i in range(n)]


def test_oversized_inputs_are_refused_with_the_limit(store):
    def playground(stop):  # the playground's options, greedy, with these stop strings
        return error_of(g.generate_stream, store, "nano", "hello", 8, 0, 0, 1, 0, 1, 0, 1, 1.0, stop, 0, True)

    assert "Too many stop strings: 9" in playground("\n".join(f"s{i}" for i in range(9)))
    assert "stop string is too long: 65" in playground("x" * 65)
    assert "text of the stop strings is too long: 2,000,000" in playground("x" * 2_000_000)
    assert "100 messages" in error_of(g.chat_stream, store, "nano", "hi", _turns(100, 5), 8, 0)
    assert "6,000 characters" in error_of(g.chat_stream, store, "nano", "hi", _turns(2, 6_000), 8, 0)
    assert "40,000 characters" in error_of(g.chat_stream, store, "nano", "hi", _turns(10, 4_000), 8, 0)
    assert "outline is too long" in error_of(a.article_stream, store, "nano", "A title", "h; " * 1_000)
    big_code = "x = 1\n" * 5_000
    assert "prompt is too long" in error_of(t.complete_code, store, "codegen", big_code)
    for args in ((big_code, "    pass\n", "def check(c):\n    pass\n", "f"),
                 (CODE_PROMPT, big_code, "def check(c):\n    pass\n", "add"),
                 (CODE_PROMPT, "    pass\n", "def check(c):\n" + big_code, "add"),
                 (CODE_PROMPT, "    pass\n", "def check(c):\n    pass\n", "a" * 1_000)):
        assert "too long" in error_of(t.run_tests, store, "codegen", *args)
    # just under every limit: accepted (the chat renders, the stops are used)
    history = _turns(limits.MAX_CHAT_MESSAGES - 2, limits.MAX_CHAT_CHARS // limits.MAX_CHAT_MESSAGES)
    assert list(g.chat_stream(store, "nano", "hi", history, 2, 0))[-1][0][-1]["role"] == "assistant"
    stops = "\n".join("y" * limits.MAX_STOP_CHARS for _ in range(limits.MAX_STOP_STRINGS))
    steps = list(g.generate_stream(store, "nano", "hi", 4, 0, 0, 1, 0, 1, 0, 1, 1.0, stops, 0, True))
    assert "tokens/s" in steps[-1][1]


# --------------------------------------------------------------------------------------------------------
# a served demo with a login
# --------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(field: str) -> int:
    """A figure of this process from /proc (VmRSS in kB, Threads): the server runs in this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def server(artifacts):
    if not Path("/proc/self/status").is_file():
        pytest.skip("reads the server's memory from /proc (Linux)")
    port = _free_port()
    demo = launch("127.0.0.1", port, artifacts=artifacts, block=False, auth=(USER, PASSWORD))
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
        yield demo, url, client
    demo.close()


def call(client, api: str, data: list) -> tuple[str, object]:
    """("complete" | "error", data) of one request through the queue, as a script would make it."""
    response = client.post(f"/gradio_api/call/{api}", json={"data": data})
    response.raise_for_status()
    text = client.get(f"/gradio_api/call/{api}/{response.json()['event_id']}").text
    events = [block.split("\n") for block in text.strip().split("\n\n")]
    event, payload = events[-1][0].removeprefix("event: "), events[-1][1].removeprefix("data: ")
    return event, json.loads(payload)


def test_without_the_login_nothing_is_served(server):
    _, url, _ = server
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        assert anonymous.get("/config").status_code == 401
        assert anonymous.post("/gradio_api/call/sentiment", json={"data": ["a film", None]}).status_code == 401
        assert anonymous.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0,
                                                              "session_hash": "x"}).status_code == 401
        assert anonymous.post("/login", data={"username": USER, "password": "guess"}).status_code >= 400
        assert anonymous.get("/config").status_code == 401


def test_the_queue_cannot_be_skipped_and_bodies_are_capped(server):
    _, _, client = server
    assert client.post("/gradio_api/run/sentiment", json={"data": ["a film", None]}).status_code == 404
    huge = {"data": ["x" * (2 * limits.MAX_BODY_BYTES), None]}
    assert client.post("/gradio_api/call/sentiment", json=huge).status_code == 413
    chunks = iter([b'{"data": ["' + b"x" * limits.MAX_BODY_BYTES, b'", null]}'])  # no Content-Length: counted
    assert client.post("/gradio_api/call/sentiment", content=chunks,
                       headers={"content-type": "application/json"}).status_code == 413
    upload = client.post("/gradio_api/upload", files={"files": ("big.txt", b"x" * (2 * limits.MAX_BODY_BYTES))})
    assert upload.status_code == 413
    event, data = call(client, "sentiment", ["x" * 100_000, None])  # under the body cap, over the text limit
    assert event == "error" and "too long: 100,000 characters" in data["error"]
    history = [{"role": "user", "content": [{"type": "text", "text": "w" * 1_000}]}] * 40
    event, data = call(client, "chat", ["nano", "hi", history, 4, 0])
    assert event == "error" and "conversation is too long" in data["error"]


def test_a_flood_is_bounded_and_the_next_request_is_served(server):
    demo, _, client = server
    legit = ["a wonderful, moving film", None]
    call(client, "sentiment", legit)  # the model loads
    normal = []
    for _ in range(3):
        start = time.perf_counter()
        assert call(client, "sentiment", legit)[0] == "complete"
        normal.append(time.perf_counter() - start)
    rss_before, threads_before = _status("VmRSS") / 1024, _status("Threads")

    queue, peak, stop = demo._queue, {"waiting": 0, "running": 0}, threading.Event()

    def watch():  # the queue's own counts, sampled through the flood
        while not stop.is_set():
            running = sum(q.current_concurrency for q in queue.event_queue_per_concurrency_id.values())
            peak["waiting"], peak["running"] = max(peak["waiting"], len(queue)), max(peak["running"], running)
            time.sleep(0.002)

    def join(i: int) -> int:  # join and leave: nobody waits for the result
        api, body = ("sentiment", "classification")[i % 2], [f"flood {i}", None]
        if i % 25 == 0:
            body = ["x" * 5_000_000, None]  # a 5 MB prompt: refused before it is read
        return client.post(f"/gradio_api/call/{api}", json={"data": body}).status_code

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(join, range(FLOOD)))
    flood_s = time.perf_counter() - start
    start = time.perf_counter()
    while True:  # right after the burst: a full queue says so at once, and drains within seconds
        try:
            assert call(client, "sentiment", legit)[0] == "complete"
            break
        except httpx.HTTPStatusError as err:
            assert err.response.status_code == 503 and time.perf_counter() - start < 30
            time.sleep(0.05)
    during = time.perf_counter() - start
    deadline = time.monotonic() + 60
    while len(queue) and time.monotonic() < deadline:  # the accepted flood runs out
        time.sleep(0.05)
    stop.set()
    watcher.join()
    start = time.perf_counter()
    assert call(client, "sentiment", legit)[0] == "complete"
    after = time.perf_counter() - start
    rss_after, threads_after = _status("VmRSS") / 1024, _status("Threads")

    baseline = statistics.median(normal)
    print(f"\nflood: {FLOOD} joins in {flood_s:.2f} s: {codes.count(200)} accepted, {codes.count(503)} queue full, "
          f"{codes.count(413)} too large; peak {peak['waiting']} waiting, {peak['running']} running; a legitimate "
          f"request: {baseline:.3f} s before, {during:.3f} s during, {after:.3f} s after; RSS {rss_before:.0f} -> "
          f"{rss_after:.0f} MB; threads {threads_before} -> {threads_after}")
    assert set(codes) <= {200, 413, 503} and codes.count(413) == 4 and codes.count(503) > 0
    assert peak["waiting"] <= demo._queue.max_size and peak["running"] <= 2
    assert during < 30 and after < 5 * baseline + 2
    # the 5 MB bodies were never read; idle AnyIO workers (at most its pool of 40) are the threads added
    assert rss_after - rss_before < 300 and threads_after - threads_before <= 40
