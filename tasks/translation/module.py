"""Translation with the backbone as a conditional LM: "English: {src}\\nSpanish:" -> " {tgt}\\n" + eos.

The loss is on the target tokens only; translations come from the shared decoder (beam search by default,
or sampling: `model.generation` in the YAML) and are scored with sacreBLEU BLEU and chrF on the detokenised
text, with sacreBLEU's signatures written next to the scores in test_metrics.json.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import nn

from backbone.chat import chat_prompt
from backbone.data.loaders import BENCHMARKS, load_benchmark
from backbone.generate import GenerationConfig
from tasks.generative import GenerativeTask
from tasks.outputs import GeneratedText
from tasks.translation.data import language_name, parse_direction
from tasks.translation.lattice import TOP, LatticeConfig, Lexicon, lattice_translate, slots
from tasks.translation.metrics import (
    TranslationScores,
    bleu_from_statistics,
    chrf_from_statistics,
    sentence_statistics,
)
from tasks.translation.retrieval import BM25

DEFAULT_GENERATION = GenerationConfig(max_new_tokens=96, num_beams=4, stop=("\n",), truncate_prompt=True)


class Translator(GenerativeTask):
    """Its own arguments; the rest are GenerativeTask's (passed on as **kwargs).

    Args:
        direction: "en-es" or "es-en" ("src-tgt" codes); None takes it from the data module (data.direction).
        source_template: the prompt, with {source_lang}, {target_lang} (language names) and {src}.
        target_template: the target that follows the prompt, with {tgt}.
        generation: decoding settings (backbone.generate.GenerationConfig); default beam search, 4 beams.
        score_validation: also translate the validation split and log val/bleu, val/chrf (slower).
        demonstrations: put this many retrieved training pairs before each source (0: none).
        demonstration_data: where the pairs come from when no data module is attached (a loaded task in the
            demo): a benchmark name (e.g. bible_en_es); None: the fitted data module's dataset.
        prompt: "plain" (the templates) or "chat" (the backbone's chat template; an instruct model).
        max_length_ratio: a translation ends after at most ratio x (its source's tokens) + 2 tokens (greedy or
            sampled decoding; None: only generation.max_new_tokens). An instruct model that has translated the
            verse tends to go on with the next one; a Bible verse's English runs to 0.83x its Spanish's tokens
            or fewer for 90% of the training pairs.
        lattice: word-lattice search instead of free decoding (tasks.translation.lattice.LatticeConfig;
            `candidates` > 0 turns it on): a Dice lexicon of the training pairs proposes each source word's
            likeliest target words, and the GPT, given the prompt, chooses among them.
    """

    output_type = GeneratedText

    def __init__(self, direction: str | None = None, source_template: str = "{source_lang}: {src}\n{target_lang}:",
                 target_template: str = " {tgt}\n", score_validation: bool = False,
                 generation: GenerationConfig | None = None, demonstrations: int = 0,
                 demonstration_data: str | None = None, prompt: Literal["plain", "chat"] = "plain",
                 max_length_ratio: float | None = None, lattice: LatticeConfig | dict | None = None, **kwargs):
        super().__init__(generation=generation if generation is not None else DEFAULT_GENERATION, **kwargs)
        if "{src}" not in source_template or "{tgt}" not in target_template:
            raise ValueError("source_template needs {src} and target_template needs {tgt}")
        if demonstrations < 0:
            raise ValueError(f"demonstrations must be >= 0, got {demonstrations}")
        if prompt not in ("plain", "chat"):
            raise ValueError(f"prompt must be 'plain' or 'chat', got {prompt!r}")
        if max_length_ratio is not None and not max_length_ratio > 0:
            raise ValueError(f"max_length_ratio must be > 0 (or None), got {max_length_ratio}")
        self.lattice = lattice if isinstance(lattice, LatticeConfig) else LatticeConfig(**(lattice or {}))
        if max_length_ratio is not None and self.lattice.candidates:
            raise ValueError("max_length_ratio limits free decoding; the lattice's translation has one word or none "
                             "per source word: set one of them")
        if max_length_ratio is not None and self.generation.num_beams > 1:
            raise ValueError(f"max_length_ratio needs greedy or sampled decoding: set model.generation.num_beams 1 "
                             f"(it is {self.generation.num_beams})")
        self.hparams.lattice = dataclasses.asdict(self.lattice)  # JSON-safe in the saved task
        self._pool: tuple[BM25, list[str]] | None = None
        self._lexicon: Lexicon | None = None
        self._retrieved: dict[tuple[str, bool], list[tuple[str, str]]] = {}
        self.stage_metrics: nn.ModuleDict | None = None  # {stage: TranslationScores}, built by build_head
        if direction is not None:
            parse_direction(direction)

    def build_head(self) -> None:
        datamodule = self.attached_datamodule
        data_direction = getattr(datamodule, "direction", None)
        if data_direction and self.hparams.direction and data_direction != self.hparams.direction:
            raise ValueError(f"model.direction {self.hparams.direction!r} and data.direction {data_direction!r} differ")
        self.hparams.direction = self.hparams.direction or data_direction or "en-es"
        uses_pairs = self.hparams.demonstrations or self.lattice.candidates
        if uses_pairs and not self.hparams.demonstration_data and self._benchmark_pairs(datamodule):
            self.hparams.demonstration_data = datamodule.dataset  # saved with the task: predict finds the pairs
        self.stage_metrics = nn.ModuleDict({"val": TranslationScores(), "test": TranslationScores()})

    @property
    def languages(self) -> tuple[str, str]:
        src, tgt = parse_direction(self.hparams.direction or "en-es")
        return language_name(src), language_name(tgt)

    @staticmethod
    def _benchmark_pairs(datamodule) -> bool:
        """The data module reads a gptsuite benchmark with one column per language code: its training pairs
        can be found again from the name alone (a loaded task's demonstrations)."""
        return (datamodule is not None and not getattr(datamodule, "data_files", None)
                and getattr(datamodule, "dataset", None) in BENCHMARKS
                and (datamodule.source_key, datamodule.target_key) == (datamodule.source_lang, datamodule.target_lang))

    # --- prompts ---------------------------------------------------------------------------------------
    def demonstration_pool(self) -> tuple[BM25, list[str]]:
        """The BM25 index of the training sources and their targets: the attached data module's whole
        training split (max_train_examples caps fine-tuning, not retrieval), else the training split of
        `demonstration_data` (a benchmark)."""
        if self._pool is None:
            datamodule = self.attached_datamodule
            if datamodule is not None and getattr(datamodule, "all_train", None) is not None:
                train, src, tgt = datamodule.all_train, datamodule.source_key, datamodule.target_key
            elif self.hparams.demonstration_data:
                train = load_benchmark(self.hparams.demonstration_data)["train"]
                src, tgt = parse_direction(self.hparams.direction or "en-es")
            else:
                raise ValueError("demonstrations and the lattice need the training pairs: attach the data module, "
                                 "or set model.demonstration_data to a benchmark (e.g. bible_en_es)")
            self._pool = BM25(list(train[src])), list(train[tgt])
        return self._pool

    def lexicon(self) -> Lexicon:
        """The Dice lexicon of the training pairs (the demonstrations' pool), built once."""
        if self._lexicon is None:
            datamodule = self.attached_datamodule
            if self.lattice.candidates <= TOP and getattr(datamodule, "all_train", None) is not None:
                self._lexicon = datamodule.lexicon()  # the baselines' lexicon: built once for both
            else:
                index, targets = self.demonstration_pool()
                self._lexicon = Lexicon(index.documents, targets, top=max(TOP, self.lattice.candidates))
        return self._lexicon

    def demonstrations_for(self, source: str, skip_self: bool = False) -> list[tuple[str, str]]:
        """The retrieved (source, target) pairs for one source, most similar last (next to the source)."""
        if not self.hparams.demonstrations:
            return []
        key = (source, skip_self)
        if key not in self._retrieved:  # a test batch asks twice (its collate, then decoding)
            index, targets = self.demonstration_pool()
            best = index.top(source, self.hparams.demonstrations, skip_text=source if skip_self else None)
            if len(self._retrieved) > 4096:
                self._retrieved.clear()
            self._retrieved[key] = [(index.documents[i], targets[i]) for i in reversed(best)]
        return self._retrieved[key]

    def source_text(self, source: str) -> str:
        src_name, tgt_name = self.languages
        return self.hparams.source_template.format(source_lang=src_name, target_lang=tgt_name, src=source.strip())

    def prompt_text(self, source: str, skip_self: bool = False) -> str:
        """The prompt for one source: its retrieved demonstrations, then the source, in the plain templates or
        as chat turns. skip_self: leave out a training pair equal to the source (training on the pool)."""
        demos = self.demonstrations_for(source, skip_self)
        if self.hparams.prompt == "chat":
            src_name, tgt_name = self.languages
            instruction = f"Translate this {src_name} text into {tgt_name}:\n"
            ask = lambda text: {"role": "user", "content": instruction + text.strip()}  # noqa: E731
            turns = [m for s, t in demos for m in (ask(s), {"role": "assistant", "content": t.strip()})]
            return chat_prompt(self.tokenizer, [*turns, ask(source)])
        shown = "".join(self.source_text(s) + self.hparams.target_template.format(tgt=t.strip()) + "\n"
                        for s, t in demos)
        return shown + self.source_text(source)

    def training_pair(self, row: dict) -> tuple[str, str]:
        target = row["target"].strip()
        if self.hparams.prompt != "chat":
            target = self.hparams.target_template.format(tgt=target)
        return self.prompt_text(row["source"], skip_self=True), target

    def length_limits(self, sources: list[str]) -> list[int] | None:
        """Each source's limit on new tokens (max_length_ratio), or None."""
        ratio = self.hparams.max_length_ratio
        if ratio is None:
            return None
        return [math.ceil(ratio * len(self.tokenizer.encode(s.strip()))) + 2 for s in sources]

    def translate(self, sources: list[str]) -> list[str]:
        prompts = [self.prompt_text(s) for s in sources]
        if self.lattice.candidates:
            return self.translate_by_lattice(sources, prompts)
        return [t.strip() for t in self.generate(prompts, row_max_new_tokens=self.length_limits(sources))]

    def translate_by_lattice(self, sources: list[str], prompts: list[str]) -> list[str]:
        """Each source's best path through its word lattice, scored by the backbone (one source at a time:
        the hypotheses of one source already fill a batch). In the plain template the reply begins with a
        space and ends at the template's end (its newline); in chat, at eos."""
        cfg, lexicon = self.lattice, self.lexicon()
        reply_space, end_token = False, None
        if self.hparams.prompt != "chat":
            before, after = self.hparams.target_template.split("{tgt}", 1)
            reply_space = before.endswith(" ")
            end_token = self.tokenizer.encode(after)[0] if after else None
        with torch.autocast(device_type=next(self.backbone.parameters()).device.type, enabled=False):
            return [lattice_translate(self.backbone, self.tokenizer, prompt,
                                      slots(lexicon, source, cfg.candidates, cfg.drop_logp), cfg.beam, cfg.weight,
                                      reply_space=reply_space, end_token=end_token)
                    for source, prompt in zip(sources, prompts)]

    def metrics(self, stage: str) -> dict:
        if stage == "val" and not self.hparams.score_validation:
            return {}
        return {"scores": self.stage_metrics[stage]}

    def update_metrics(self, stage: str, batch: dict) -> None:
        if stage == "val" and not self.hparams.score_validation:
            return
        rows = batch["rows"]
        sources, references = [r["source"] for r in rows], [r["target"] for r in rows]
        hypotheses = self.translate(sources)
        self.stage_metrics[stage].update(hypotheses, references)
        if stage == "test":
            bleu_stats, chrf_stats = sentence_statistics(hypotheses, references)
            self.record_example_stats(stage, "bleu", bleu_stats)
            self.record_example_stats(stage, "chrf", chrf_stats)
            self.record_predictions(stage, [{"source": s, "reference": r, "translation": h}
                                            for s, r, h in zip(sources, references, hypotheses)])

    def interval_metrics(self) -> dict:
        return {"bleu": ("bleu", bleu_from_statistics), "chrf": ("chrf", chrf_from_statistics)}

    def test_report(self) -> dict:
        h = self.hparams
        shown = f"{h.demonstrations} BM25-retrieved training pairs in context" if h.demonstrations else "zero-shot"
        asked = f"{'chat template' if h.prompt == 'chat' else 'plain templates'}, {shown}"
        decoding = self.generation.describe()
        if h.max_length_ratio is not None:
            decoding["max_length_ratio"] = h.max_length_ratio
        if self.lattice.candidates:
            c = self.lattice
            decoding = {"decoding": f"word lattice: {c.candidates} Dice-lexicon words per source word or none "
                                    f"(drop {c.drop_logp}), beam {c.beam}, lexical weight {c.weight}"}
        return {**super().test_report(), **self.stage_metrics["test"].signatures,
                "test/direction": h.direction, "test/generation": decoding, "test/prompt": asked}

    def predict_batch(self, texts: list[str]) -> list[GeneratedText]:
        """A translation of each text, in the trained direction."""
        return [GeneratedText(t) for t in self.translate(texts)]
