"""The sandbox on real problems: every HumanEval problem's canonical solution checked by `check_program` (two
jailed processes each), on `--workers` threads. Prints how many pass (all should), the wall time, the median and
slowest check, and the isolation layers the checks ran under. A script, not a timed test.

    .venv/bin/python benchmarks/sandbox_speed.py              # 164 problems, 2 workers
    .venv/bin/python benchmarks/sandbox_speed.py --limit 20 --workers 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from backbone.data.loaders import load_benchmark
from tasks.codegen.sandbox import run_many


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="checks at once (default 2)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per check (default 10)")
    args = parser.parse_args(argv)
    problems = list(load_benchmark("openai_humaneval")["test"])[: args.limit]
    checks = [{"solution": p["prompt"] + p["canonical_solution"], "prompt": p["prompt"], "test_code": p["test"],
               "entry_point": p["entry_point"], "timeout": args.timeout} for p in problems]
    start = time.perf_counter()
    results = run_many(checks, workers=args.workers, progress=True)
    wall = time.perf_counter() - start
    passed = sum(r.passed for r in results)
    walls = [r.wall_s for r in results]
    print(f"user: {'root' if os.geteuid() == 0 else 'uid ' + str(os.geteuid())}; workers: {args.workers}")
    print(f"canonical solutions passed: {passed} of {len(results)}")
    print(f"wall time: {wall:.1f} s; per check: median {statistics.median(walls):.2f} s, slowest {max(walls):.2f} s")
    print("isolation: " + " ".join(results[0].isolation if results else ()))
    for problem, result in zip(problems, results):
        if not result.passed:
            print(f"  {problem['task_id']}: {result.status}: {result.reason}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
