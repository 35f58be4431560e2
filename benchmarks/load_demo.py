"""Load test of the Gradio demo: N concurrent clients through gradio_client, p50/p95 latency and errors.

    gptsuite demo --artifacts artifacts &                       # or let this script start one: --serve artifacts
    .venv/bin/python benchmarks/load_demo.py [--url http://127.0.0.1:7860/] [--clients 20] [--requests 3]

Each client is its own gradio_client.Client (its own session) and sends --requests requests in turn, cycling
through the endpoints whose artifacts exist (the label and entity tasks, generation, attention). Bounded:
clients x requests requests at most, each with --timeout seconds, the whole run with --max-seconds.
Loopback only: the script refuses any other host. Latency includes the wait in the demo's queue, which is
what a person feels: with the default concurrency limit of 2, 20 clients mostly wait.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import urlparse


def requests() -> dict[str, tuple[str, list]]:
    """{endpoint: (api_name, arguments)}: every registered task whose tab reads one text and answers in one
    forward pass (labels, entities), with its demo sample, and two backbone endpoints; generation is clamped
    to a few tokens."""
    from tasks.catalog import TASKS
    from tasks.outputs import Entities, LabelScores

    cheap = [spec for spec in TASKS.values()
             if spec.input_type is str and issubclass(spec.output_type, (LabelScores, Entities))]
    return {**{spec.name: (f"/{spec.name}", [spec.sample]) for spec in cheap},
            # prompt, max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty, no_repeat_ngram_size,
            # num_beams, length_penalty, stop, seed, use_cache (the backbone name goes first)
            "generate": ("/generate", ["Once upon a time", 16, 0, 0, 1, 0, 1, 0, 1, 1, "", 0, True]),
            "attention": ("/attention", ["The cat sat on the mat.", 0, 0])}


def loopback_only(url: str) -> str:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"refusing {url}: the load test only targets a demo on 127.0.0.1 / localhost")
    return url


def wait_until_up(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/config", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"no demo answered at {url} within {seconds:.0f} s")


def serve(artifacts: str, concurrency: int, max_queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "demos", "--host", "127.0.0.1", "--port", str(port),
                             "--artifacts", artifacts, "--concurrency", str(concurrency),
                             "--max-queue", str(max_queue)], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/"


def endpoints(url: str, wanted: list[str], backbone: str) -> list[tuple[str, list]]:
    """The chosen endpoints that answer one probe request: a tab whose artifact is missing answers with an
    error, and timing that would only measure the error path."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    known, chosen = requests(), []
    for name in wanted:
        api, args = known[name]
        if name in ("generate", "attention"):
            args = [backbone, *args]
        try:
            client.predict(*args, api_name=api)
        except Exception as err:  # noqa: BLE001
            print(f"  skipping {api}: {str(err)[:160]}")
            continue
        chosen.append((api, args))
    return chosen


def client_run(url: str, plan: list[tuple[str, list]], n: int, index: int, timeout: float, stop_at: float):
    from gradio_client import Client

    results = []
    try:
        client = Client(url, verbose=False)
    except Exception as err:  # noqa: BLE001 - a client that cannot connect is an error, counted
        return [(None, "connect", f"{type(err).__name__}: {err}")]
    for i in range(n):
        if time.monotonic() > stop_at:
            results.append((None, "skipped", "the run's time limit was reached"))
            continue
        api, args = plan[(index + i) % len(plan)]
        start = time.perf_counter()
        try:
            client.submit(*args, api_name=api).result(timeout=timeout)
            results.append((time.perf_counter() - start, api, None))
        except Exception as err:  # noqa: BLE001
            results.append((time.perf_counter() - start, api, f"{type(err).__name__}: {str(err)[:200]}"))
    return results


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--serve", metavar="ARTIFACTS", help="start `python -m demos --artifacts ARTIFACTS` on a free port")
    p.add_argument("--concurrency", type=int, default=2, help="the served demo's concurrency limit (with --serve)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=3, help="requests per client")
    p.add_argument("--endpoints", nargs="+", default=list(requests()), choices=list(requests()))
    p.add_argument("--backbone", default="tiny", help="backbone name for generate/attention (default: tiny, the "
                                                      "README main job's)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--max-seconds", type=float, default=300.0, help="no request starts after this")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if not (1 <= args.clients <= 100 and 1 <= args.requests <= 50):
        raise SystemExit("--clients must be 1..100 and --requests 1..50")

    proc = None
    if args.serve:
        # a queue as long as the clients: each waits for its answer, so none is turned away as a flood would be
        proc, args.url = serve(args.serve, args.concurrency, max(16, args.clients))
    try:
        loopback_only(args.url)
        wait_until_up(args.url, 120 if proc else 10)
        plan = endpoints(args.url, args.endpoints, args.backbone)
        if not plan:
            raise SystemExit("none of the chosen endpoints has an artifact in this demo")
        print(f"{args.clients} clients x {args.requests} requests against {args.url}: "
              f"{', '.join(api for api, _ in plan)}", flush=True)
        stop_at = time.monotonic() + args.max_seconds
        start = time.perf_counter()
        rows, lock = [], threading.Lock()
        with ThreadPoolExecutor(args.clients) as pool:
            futures = [pool.submit(client_run, args.url, plan, args.requests, i, args.timeout, stop_at)
                       for i in range(args.clients)]
            for future in as_completed(futures):
                with lock:
                    rows.extend(future.result())
        wall = time.perf_counter() - start
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)

    ok = [t for t, _, err in rows if err is None]
    errors = [(api, err) for _, api, err in rows if err is not None]
    figures = {"clients": args.clients, "requests": len(rows), "ok": len(ok), "errors": len(errors),
               "p50_s": percentile(ok, 50), "p95_s": percentile(ok, 95), "max_s": max(ok, default=float("nan")),
               "mean_s": statistics.fmean(ok) if ok else float("nan"), "wall_s": wall,
               "throughput_rps": len(ok) / wall if wall else 0.0}
    per_api = {}
    for t, api, err in rows:
        if err is None:
            per_api.setdefault(api, []).append(t)
    print(f"requests {figures['requests']}, ok {figures['ok']}, errors {figures['errors']}, wall {wall:.1f} s, "
          f"{figures['throughput_rps']:.2f} req/s")
    print(f"latency p50 {figures['p50_s']:.3f} s, p95 {figures['p95_s']:.3f} s, max {figures['max_s']:.3f} s")
    for api, times in sorted(per_api.items()):
        print(f"  {api:<16} n={len(times):<3} p50 {percentile(times, 50):.3f} s  p95 {percentile(times, 95):.3f} s")
    for api, err in errors[:5]:
        print(f"  error {api}: {err}")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "per_api": {k: len(v) for k, v in per_api.items()}},
                                              indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
