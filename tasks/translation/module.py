"""Translation with the backbone as a conditional LM: "English: {src}\\nSpanish:" -> " {tgt}\\n" + eos.

The loss is on the target tokens only; translations come from the shared decoder (beam search by default,
or sampling: `model.generation` in the YAML) and are scored with sacreBLEU BLEU and chrF on the detokenised
text, with sacreBLEU's signatures written next to the scores in test_metrics.json.
"""

from __future__ import annotations

from torch import nn

from backbone.generate import GenerationConfig
from tasks.generative import GenerativeTask
from tasks.outputs import GeneratedText
from tasks.translation.data import language_name, parse_direction
from tasks.translation.metrics import (
    TranslationScores,
    bleu_from_statistics,
    chrf_from_statistics,
    sentence_statistics,
)

DEFAULT_GENERATION = GenerationConfig(max_new_tokens=96, num_beams=4, stop=("\n",), truncate_prompt=True)


class Translator(GenerativeTask):
    """Its own arguments; the rest are GenerativeTask's (passed on as **kwargs).

    Args:
        direction: "en-es" or "es-en" ("src-tgt" codes); None takes it from the data module (data.direction).
        source_template: the prompt, with {source_lang}, {target_lang} (language names) and {src}.
        target_template: the target that follows the prompt, with {tgt}.
        generation: decoding settings (backbone.generate.GenerationConfig); default beam search, 4 beams.
        score_validation: also translate the validation split and log val/bleu, val/chrf (slower).
    """

    output_type = GeneratedText

    def __init__(self, direction: str | None = None, source_template: str = "{source_lang}: {src}\n{target_lang}:",
                 target_template: str = " {tgt}\n", score_validation: bool = False,
                 generation: GenerationConfig | None = None, **kwargs):
        super().__init__(generation=generation if generation is not None else DEFAULT_GENERATION, **kwargs)
        if "{src}" not in source_template or "{tgt}" not in target_template:
            raise ValueError("source_template needs {src} and target_template needs {tgt}")
        if direction is not None:
            parse_direction(direction)

    def build_head(self) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        data_direction = getattr(datamodule, "direction", None)
        if data_direction and self.hparams.direction and data_direction != self.hparams.direction:
            raise ValueError(f"model.direction {self.hparams.direction!r} and data.direction {data_direction!r} differ")
        self.hparams.direction = self.hparams.direction or data_direction or "en-es"
        self.stage_metrics = nn.ModuleDict({"val": TranslationScores(), "test": TranslationScores()})

    @property
    def languages(self) -> tuple[str, str]:
        src, tgt = parse_direction(self.hparams.direction or "en-es")
        return language_name(src), language_name(tgt)

    def prompt_text(self, source: str) -> str:
        src_name, tgt_name = self.languages
        return self.hparams.source_template.format(source_lang=src_name, target_lang=tgt_name, src=source.strip())

    def training_pair(self, row: dict) -> tuple[str, str]:
        return self.prompt_text(row["source"]), self.hparams.target_template.format(tgt=row["target"].strip())

    def translate(self, sources: list[str]) -> list[str]:
        return [t.strip() for t in self.generate([self.prompt_text(s) for s in sources])]

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
        return {**super().test_report(), **self.stage_metrics["test"].signatures,
                "test/direction": self.hparams.direction, "test/generation": self.generation.describe()}

    def predict_batch(self, texts: list[str]) -> list[GeneratedText]:
        """A translation of each text, in the trained direction."""
        return [GeneratedText(t) for t in self.translate(texts)]
