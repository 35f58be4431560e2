"""The context-first layout: each context is read once, for all of its questions.

The question-first layout ("question: Q\\ncontext: C", tasks.qa.data) makes every context token attend to
the question, but then nothing can be shared: a context with five questions is run five times. Here the
order is the other way round, and one row of the batch holds a context window and every question on it:

    "context:" C_window  "\\nquestion:" Q_1 "\\nanswer:"  ...  "\\nquestion:" Q_k "\\nanswer:"
    segment 0            segment 1                          segment k

With GPT.layer_states(segment_ids=...) each question sees the context and itself only, at the positions it
would have right after the context, so its states are exactly those of "context + that question" run alone,
and the context is computed once for all k. The questions of one row are packed: with paragraph rows
(QAData(group_by_context=True)) a SQuAD training set of whole paragraphs (about 4.6 questions each) reads
3.3x fewer tokens than the question-first layout; a seeded sample of 2,000 dev questions shares fewer
contexts (1.5 questions a context: 1.3x fewer). With question rows nothing is shared, and the result is the
same.

The context's states have not seen the question, so the head must bring them together: the attention-flow
head (tasks.qa.attention_flow) matches every context token against the question's tokens. Those question
tokens have read the whole context, which the head uses too.

A *reader* is one question on one window; the head scores each reader's context positions. A window leaves
room for the longest question allowed (max_question_tokens), so the context window plus any question fits
in max_tokens (no token's position goes past it) and a context's windows do not depend on which questions
share its row; the packed row itself may be longer.
"""

from __future__ import annotations

import torch

from tasks.qa.data import (
    NO_ANSWER,
    answer_tokens,
    context_windows,
    encode_context,
    label_answer,
    question_rows,
    visible_mask,
)

CONTEXT_HEAD = "context:"
QUESTION_TEMPLATE = "\nquestion: {question}\nanswer:"
PAD_SEGMENT = -1  # padding is in no segment: no real token sees it


def question_ids(tokenizer, question: str, max_question_tokens: int) -> list[int]:
    """A question's segment, the question cut to max_question_tokens tokens ("\\nanswer:" always kept)."""
    before, after = QUESTION_TEMPLATE.split("{question}")
    return (tokenizer.encode(before + question.strip())[:max_question_tokens] + tokenizer.encode(after))


def packed_batch(tokenizer, rows: list[dict], max_tokens: int, doc_stride: int, max_question_tokens: int,
                 with_labels: bool = True) -> dict:
    """Rows (question rows or paragraph rows, tasks.qa.data.question_rows) -> one packed sequence per context
    window, with its questions as segments, and one reader per (window, question)."""
    questions, question_row = question_rows(rows)
    by_context: dict[tuple[int, str], list[int]] = {}  # the questions on each distinct context of each row
    for q, row in enumerate(questions):
        by_context.setdefault((question_row[q], row["context"]), []).append(q)
    head = tokenizer.encode(CONTEXT_HEAD, add_bos=True)
    # the window leaves room for the longest question allowed (at most half of max_tokens, as in the
    # question-first layout), so a context's windows never depend on which questions share its row
    max_question_tokens = max(1, min(max_question_tokens, max_tokens // 2))
    room = max_tokens - len(head) - len(question_ids(tokenizer, "", 0)) - max_question_tokens
    if room < 1:
        raise ValueError(f"max_question_tokens={max_question_tokens} leaves no room for the context in "
                         f"{max_tokens} tokens: lower it or raise max_length")
    sequences, segments, window_row, offsets_of, context_length, readers = [], [], [], [], [], []
    window_context = []
    for (row, context), members in by_context.items():
        ids, offsets = encode_context(tokenizer, context)
        asked = [question_ids(tokenizer, questions[q]["question"], max_question_tokens) for q in members]
        spans = [answer_tokens(offsets, label_answer(questions[q])) if with_labels else None for q in members]
        for first, last in context_windows(len(ids), room, doc_stride):
            sequence = head + ids[first:last]
            segment = [0] * len(sequence)
            window = len(sequences)
            for k, (q, a, span) in enumerate(zip(members, asked, spans)):
                start = end = NO_ANSWER
                if span is not None and first <= span[0] and span[1] < last:
                    start, end = len(head) + span[0] - first, len(head) + span[1] - first
                readers.append((window, q, len(sequence), len(a), start, end))
                sequence += a
                segment += [k + 1] * len(a)
            sequences.append(sequence)
            segments.append(segment)
            window_row.append(row)
            offsets_of.append(offsets[first:last])
            window_context.append(context)
            context_length.append(len(head) + last - first)
    input_ids, mask = tokenizer.pad(sequences, side="right")
    segment_ids = torch.full_like(input_ids, PAD_SEGMENT)
    context_mask = torch.zeros_like(mask, dtype=torch.bool)
    for s, (segment, offsets, context) in enumerate(zip(segments, offsets_of, window_context)):
        segment_ids[s, : len(segment)] = torch.tensor(segment)
        context_mask[s, len(head) : len(head) + len(offsets)] = visible_mask(context, offsets)
    columns = list(zip(*readers)) or [()] * 6  # no question at all: empty readers
    window, question, q_start, q_length, start, end = (torch.tensor(c, dtype=torch.long) for c in columns)
    return {
        "input_ids": input_ids, "attention_mask": mask, "segment_ids": segment_ids, "context_mask": context_mask,
        "context_length": torch.tensor(context_length, dtype=torch.long),
        "reader_window": window, "reader_question": question, "question_start": q_start,
        "question_length": q_length, "start_positions": start, "end_positions": end,
        "window_row": window_row, "context_start": [len(head)] * len(sequences), "offsets": offsets_of,
        "questions": questions,
    }


def reader_states(states: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, U, C) states of the packed windows -> each reader's context (R, Tc, C) and question (R, Tq, C)
    states with their masks: the context part of its window and its own question's tokens."""
    window = batch["reader_window"]
    Tc = int(batch["context_length"].max())
    context = states[window, :Tc]  # (R, Tc, C)
    context_mask = torch.arange(Tc, device=states.device)[None] < batch["context_length"][window, None]
    Tq = int(batch["question_length"].max())
    offset = torch.arange(Tq, device=states.device)[None]  # (1, Tq)
    question_mask = offset < batch["question_length"][:, None]  # (R, Tq)
    positions = (batch["question_start"][:, None] + offset).clamp(max=states.size(1) - 1)
    question = states[window[:, None], positions]  # (R, Tq, C)
    return context, context_mask, question, question_mask
