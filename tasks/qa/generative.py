"""Generated answers: the language model answers after a prompt (`model.class_path:
tasks.qa.generative.GenerativeQA`), scored as the span head's answers are.

The prompt "context: C\\nquestion: Q\\nanswer:" (or the instruction in the backbone's chat template) and a
greedy completion of at most max_new_tokens tokens, cut at the first newline: zero-shot, few-shot, or
fine-tuned as a conditional LM with the loss on the answer tokens only (tasks.generative's pieces).
"""

from __future__ import annotations

from typing import Literal

import torch

from backbone.chat import chat_prompt
from backbone.constraints import CopySpans
from backbone.decoding_model import InferenceModelCache
from backbone.generate import GenerationConfig, generate_text
from backbone.llama_cpp_engine import GPTSUITE
from backbone.quantize import AUTO
from tasks.generative import check_generative_adapter, encode_pairs, lm_loss
from tasks.outputs import Answer
from tasks.qa.data import (
    INSTRUCTION,
    PROMPT_TEMPLATE,
    fill_prompt,
    fit_context,
    generation_prompt,
    gold_answers,
    question_rows,
    shortest_examples,
)
from tasks.qa.task import QATask


class GenerativeQA(QATask):
    """Its own arguments; the rest are TaskModule's (passed on as **kwargs).

    Args:
        max_new_tokens: the longest answer, in tokens (greedy, stops at a newline).
        quantize: decode from a weight-only quantised copy of the backbone: auto, none, int8 or int4
            (backbone.quantize.CHOICES_HELP says what each does).
        engine: what computes the decoding steps: "gptsuite" or "llama.cpp" (the backbone, adapters merged,
            exported as a GGUF of the type `quantize` maps to: backbone.llama_cpp_engine).
        compile_steps: run gptsuite's decoding steps through torch.compile (about a minute to compile on 2
            cores, then faster steps: backbone.decoding_model.CompiledSteps).
        prompt: "plain" (tasks.qa.data.PROMPT_TEMPLATE, for a base model or fine-tuning) or "chat" (the
            instruction tasks.qa.data.INSTRUCTION as the user's turn of the backbone's chat template: how an
            instruct model is asked).
        extractive: every answer is a span copied from its context (backbone.constraints.CopySpans constrains
            the decoding), as a span head's answers are.
        few_shot: solved examples shown before the question (chat: as earlier turns), the training questions
            with the shortest contexts (cheap to read), one per context.
        demonstrations: those examples ({"context", "question", "answer"}); filled from the training split
            when few_shot asks for them, and saved with the task.
    """

    def __init__(self, max_new_tokens: int = 32, quantize: str = AUTO, prompt: Literal["plain", "chat"] = "plain",
                 extractive: bool = False, few_shot: int = 0, demonstrations: list[dict] | None = None,
                 engine: str = GPTSUITE, compile_steps: bool = False, **kwargs):
        super().__init__(**kwargs)
        if prompt not in ("plain", "chat"):
            raise ValueError(f"prompt must be 'plain' or 'chat', got {prompt!r}")
        if few_shot < 0:
            raise ValueError(f"few_shot must be >= 0, got {few_shot}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.inference_model = InferenceModelCache(quantize, engine, compile_steps)

    def build_head(self) -> None:
        """No new parameters: the language-model head of the backbone answers."""
        check_generative_adapter(self.adapter)
        h = self.hparams
        if h.few_shot and h.demonstrations is None and self.attached_datamodule is not None:
            self.shown_examples()  # chosen now, from the attached data, so an exported task carries them

    # --- batches ---------------------------------------------------------------------------------------
    def featurize(self, rows: list[dict], tokenizer=None, max_tokens: int | None = None,
                  with_labels: bool = True) -> dict:
        """Rows (question rows, or paragraph rows: tasks.qa.data.question_rows) -> prompt + " answer" + eos,
        the loss on the answer only (the data module's collate)."""
        h, tokenizer = self.hparams, tokenizer or self.tokenizer
        max_tokens = max_tokens or self.max_input_tokens
        rows, _ = question_rows(rows)
        answers = [next((t.strip() for t, _ in gold_answers(r.get("answers")) if isinstance(t, str) and t.strip()), "")
                   for r in rows]
        space = " " if h.prompt == "plain" else ""  # "answer: Paris"; an assistant's turn starts with the word
        targets = [space + a if a else "" for a in answers]
        template = self.prompt_template(tokenizer)
        prompts = [generation_prompt(tokenizer, r["question"], r["context"], max_tokens - h.max_new_tokens - 1,
                                     template) for r in rows]
        ids, mask, labels = encode_pairs(tokenizer, prompts, targets, max_tokens, max_target_tokens=h.max_new_tokens)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    # --- training --------------------------------------------------------------------------------------
    def loss(self, batch: dict) -> torch.Tensor:
        return lm_loss(self.backbone.lm_logits(self.encode(batch["input_ids"], batch["attention_mask"])),
                       batch["labels"])

    # --- answers ---------------------------------------------------------------------------------------
    @property
    def answer_generation(self) -> GenerationConfig:
        """Greedy, up to max_new_tokens, the answer ends at a newline."""
        return GenerationConfig(max_new_tokens=self.hparams.max_new_tokens, stop=("\n",), truncate_prompt=True)

    def shown_examples(self) -> list[dict]:
        """The few_shot solved examples: saved ones, else the training questions with the shortest contexts."""
        h = self.hparams
        if not h.few_shot:
            return []
        if h.demonstrations is None:
            datamodule = self.attached_datamodule
            if datamodule is None or "train" not in getattr(datamodule, "splits", {}):
                raise ValueError("few_shot needs solved examples: attach a data module with a training split, or "
                                 "pass model.demonstrations")
            h.demonstrations = shortest_examples(datamodule.splits["train"], h.few_shot)
        return list(h.demonstrations)[: h.few_shot]

    def prompt_template(self, tokenizer=None) -> str:
        """The prompt (any solved examples first), {context} and {question} still to fill in."""
        shown = self.shown_examples()
        if self.hparams.prompt == "plain":
            return "".join(fill_prompt(PROMPT_TEMPLATE, d["question"], d["context"]) + f" {d['answer']}\n\n"
                           for d in shown) + PROMPT_TEMPLATE
        turns = []
        for d in shown:
            turns += [{"role": "user", "content": fill_prompt(INSTRUCTION, d["question"], d["context"])},
                      {"role": "assistant", "content": d["answer"]}]
        return chat_prompt(tokenizer or self.tokenizer, [*turns, {"role": "user", "content": INSTRUCTION}])

    def generated_answers(self, rows: list[dict]) -> list[Answer]:
        h = self.hparams
        rows, _ = question_rows(rows)
        budget, template = self.max_input_tokens - h.max_new_tokens, self.prompt_template()
        shown = [fit_context(self.tokenizer, r["question"], r["context"], budget, template) for r in rows]
        prompts = [fill_prompt(template, r["question"], c) for r, c in zip(rows, shown)]
        spans = CopySpans(self.tokenizer, shown) if h.extractive else None  # copied from what the model read
        with torch.autocast(device_type=next(self.backbone.parameters()).device.type, enabled=False):
            texts = generate_text(self.inference_model(self.backbone, self.tokenizer), self.tokenizer, prompts,
                                  self.answer_generation, allow_fn=spans)
        out = []
        for row, text in zip(rows, texts):
            answer = text.strip()
            start = row["context"].find(answer) if answer else -1
            out.append(Answer(answer, start, start + len(answer) if start >= 0 else -1))
        return out

    def answers(self, batch: dict) -> list[Answer]:
        return self.generated_answers(batch["rows"])

    def prediction_batch(self, rows: list[dict]) -> dict:
        return {"rows": rows}

    def path_report(self) -> dict:
        h = self.hparams
        path = (f"generated answer, {'chat template' if h.prompt == 'chat' else 'plain prompt'}"
                + (f", {h.few_shot} solved example{'s' if h.few_shot > 1 else ''} shown" if h.few_shot else "")
                + (", constrained to spans of the context" if h.extractive else ""))
        return {"test/path": path, "test/generation": self.answer_generation.describe()}
