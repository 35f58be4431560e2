"""The translation task's baselines: the source copied, word-by-word dictionaries and a translation memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.baselines import BaselineScores, copy_source
from tasks.translation.lattice import first_choices
from tasks.translation.metrics import corpus_scores
from tasks.translation.retrieval import translation_memory

if TYPE_CHECKING:  # the data module only types the argument (importing it would pull in datasets)
    from tasks.translation.data import TranslationData


def score_baselines(dm: TranslationData) -> BaselineScores:
    """The source copied, a word-by-word dictionary (as it is, lower case, and cased: each word in its usual
    spelling, with the source's punctuation and sentence starts), and a translation memory (the target of the
    most similar training source, by BM25). Both learn from the whole training split, as the retrieved
    demonstrations and the lattice's lexicon do, whatever max_train_examples caps fine-tuning to."""
    src, tgt = dm.source_key, dm.target_key
    train, test = dm.splits["train"], dm.splits["test"]
    pool = dm.all_train if dm.all_train is not None else train  # what the retrieved demonstrations come from
    refs, sources = list(test[tgt]), list(test[src])
    lexicon = dm.lexicon()  # the one the lattice reads
    return {"copy-source": corpus_scores(copy_source(sources), refs),
            "word-dictionary": corpus_scores([lexicon.word_by_word(s) for s in sources], refs),
            "word-dictionary, cased": corpus_scores([first_choices(lexicon, s) for s in sources], refs),
            "translation-memory": corpus_scores(translation_memory(pool[src], pool[tgt], sources), refs)}
