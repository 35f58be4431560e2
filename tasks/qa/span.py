"""Extractive QA with a span head: start/end logits over the context tokens (`gptsuite qa`'s default).

The head chosen (`model.head`, a class_path with its own init_args) sets what the backbone reads:
    tasks.heads.SpanHead                      "question: Q\\ncontext: C" windows, one question each
                                              (tasks.qa.data): every context token has seen the question; its
                                              `bidirectional` layer adds the right side
    tasks.qa.attention_flow.AttentionFlowHead context-first: a context window read once with all its questions
                                              packed after it (tasks.qa.packing), 3.3x fewer tokens on SQuAD's
                                              training paragraphs; the head matches context and question.
                                              Give it paragraph rows (QAData(group_by_context=True)); with
                                              question rows it is correct but reads every context again.
Long contexts are split into overlapping windows (doc_stride).

Span decoding: in every window, score(s, e) = start[s] + end[e] over context positions with
s <= e < s + max_answer_length; the best-scoring span over the question's windows wins, and its text is
cut from the context by the tokens' character offsets (surrounding whitespace trimmed).

Training: cross-entropy of the start and end positions, each over the window's context positions plus
position 0, the "no answer in this window" target (tasks.qa.data).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks.artifact import object_spec
from tasks.heads import SpanHead
from tasks.outputs import Answer
from tasks.qa.attention_flow import AttentionFlowHead
from tasks.qa.data import NO_ANSWER, span_batch
from tasks.qa.packing import packed_batch, reader_states
from tasks.qa.task import QATask

HEADS = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in (SpanHead, AttentionFlowHead)}  # by class_path


def head_object(head: SpanHead | AttentionFlowHead | dict | None) -> SpanHead | AttentionFlowHead:
    """The head given (None: a linear SpanHead), or rebuilt from its saved form (class_path + init_args, a loaded
    task's), which may name only one of HEADS."""
    if head is None:
        return SpanHead()
    if not isinstance(head, dict):
        return head
    if head.get("class_path") not in HEADS:
        raise ValueError(f"a span head must be one of {', '.join(HEADS)}, got {head.get('class_path')!r}")
    return HEADS[head["class_path"]](**head.get("init_args", {}))


class SpanQA(QATask):
    """Its own arguments; the rest are TaskModule's (passed on as **kwargs).

    Args:
        head: tasks.heads.SpanHead (question-first windows; the default, a linear one) or
            tasks.qa.attention_flow.AttentionFlowHead (context-first; see the module docstring).
        doc_stride: tokens shared by consecutive context windows (at most half a window).
        max_question_tokens: the question is cut to this many tokens.
        max_answer_length: the longest answer, in tokens.
    """

    def __init__(self, head: SpanHead | AttentionFlowHead | None = None, doc_stride: int = 64,
                 max_question_tokens: int = 64, max_answer_length: int = 30, **kwargs):
        span_head = head_object(head)
        # TaskModule's save_hyperparameters records the arguments as this frame holds them: the head as its
        # saved form (JSON, as task.json needs), not as a module
        head = object_spec(span_head)
        super().__init__(**kwargs)
        for name, value, least in (("doc_stride", doc_stride, 0), ("max_question_tokens", max_question_tokens, 1),
                                   ("max_answer_length", max_answer_length, 1)):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        self.head = span_head

    @property
    def context_first(self) -> bool:
        """The attention-flow head reads contexts packed with their questions (tasks.qa.packing)."""
        return isinstance(self.head, AttentionFlowHead)

    def build_head(self) -> None:
        if self.context_first and not self.adapter.packs_segments:
            raise ValueError(f"the context-first layout (AttentionFlowHead) packs questions after their context, "
                             f"which {type(self.adapter).__name__} cannot read; use tasks.heads.SpanHead")
        self.head.build(self.backbone.config.n_embd)

    # --- batches ---------------------------------------------------------------------------------------
    def featurize(self, rows: list[dict], tokenizer=None, max_tokens: int | None = None,
                  with_labels: bool = True) -> dict:
        """Rows (question rows, or paragraph rows: tasks.qa.data.question_rows) -> the head's inputs (the data
        module's collate)."""
        h, tokenizer = self.hparams, tokenizer or self.tokenizer
        make_batch = packed_batch if self.context_first else span_batch
        return make_batch(tokenizer, rows, max_tokens or self.max_input_tokens, h.doc_stride, h.max_question_tokens,
                          with_labels)

    def sequence_rows(self, batch: dict) -> list[int]:
        return list(batch["window_row"])

    def feature_spec(self) -> dict:
        h = self.hparams
        return {**super().feature_spec(), "doc_stride": h.doc_stride, "max_question_tokens": h.max_question_tokens,
                **({"layout": "context-first"} if self.context_first else {})}

    # --- training --------------------------------------------------------------------------------------
    def span_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T) start and end logits of each window (question-first) or reader (context-first: one question
        on one window); every position but the context and NO_ANSWER is masked out."""
        states, mask = self.unit_states(batch)
        if self.context_first:
            logits = self.head(*reader_states(states, batch)).float()  # (R, Tc, 2)
            allowed = batch["context_mask"][batch["reader_window"], : logits.size(1)].clone()
        else:
            logits = self.head(states, mask).float()  # (W, T, 2)
            allowed = batch["context_mask"].clone()
        allowed[:, NO_ANSWER] = True
        logits = logits.masked_fill(~allowed[..., None], torch.finfo(logits.dtype).min)
        return logits[..., 0], logits[..., 1]

    def loss(self, batch: dict) -> torch.Tensor:
        start, end = self.span_logits(batch)
        return (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2

    # --- answers ---------------------------------------------------------------------------------------
    def span_answers(self, batch: dict) -> list[Answer]:
        """The best valid span of each question over its windows (an empty Answer when no span is valid)."""
        start, end = self.span_logits(batch)
        questions = batch["questions"]
        if self.context_first:  # reader r: question reader_question[r] on window reader_window[r]
            windows, asking = batch["reader_window"].tolist(), batch["reader_question"].tolist()
        else:  # one question per window
            windows, asking = list(range(len(batch["window_question"]))), batch["window_question"]
        context_mask = batch["context_mask"][windows, : start.size(1)]
        valid = context_mask[:, :, None] & context_mask[:, None, :]
        T = start.size(1)
        offset = torch.arange(T, device=start.device)
        length = offset[None, :] - offset[:, None]  # e - s
        valid &= ((length >= 0) & (length < self.hparams.max_answer_length))[None]
        scores = (start[:, :, None] + end[:, None, :]).masked_fill(~valid, float("-inf"))
        best, flat = scores.view(scores.size(0), -1).max(dim=1)
        best, flat = best.tolist(), flat.tolist()
        out = [Answer("", -1, -1, float("-inf")) for _ in questions]
        for n, (w, question) in enumerate(zip(windows, asking)):
            if best[n] == float("-inf") or best[n] <= out[question].score:
                continue
            s, e = divmod(flat[n], T)
            cs, offsets, context = batch["context_start"][w], batch["offsets"][w], questions[question]["context"]
            char_start, char_end = offsets[s - cs][0], offsets[e - cs][1]
            text = context[char_start:char_end]
            char_start += len(text) - len(text.lstrip())
            char_end = max(char_start, char_end - (len(text) - len(text.rstrip())))
            out[question] = Answer(context[char_start:char_end], char_start, char_end, best[n])
        return out

    def answers(self, batch: dict) -> list[Answer]:
        return self.span_answers(batch)

    def prediction_batch(self, rows: list[dict]) -> dict:
        device = next(self.backbone.parameters()).device
        batch = self.featurize(rows, with_labels=False)
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def path_report(self) -> dict:
        h = self.hparams
        reader = (f"context-first, attention flow with {self.head.modeling} modeling layers" if self.context_first
                  else f"question-first, bidirectional {self.head.bidirectional}")
        return {"test/path": f"span head: best start+end logit sum over context windows (doc_stride {h.doc_stride}), "
                             f"answers up to {h.max_answer_length} tokens; {reader}"}
