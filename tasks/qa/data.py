"""SQuAD v1.1 (or the user's JSON/JSONL with the same columns) for extractive question answering.

Columns (the hub schema): id, title, context, question, answers = {"text": [...], "answer_start": [...]}
(a list of {"text", "answer_start"} records is accepted too). `title` is not used; `id` names rows in
messages (the row number when there is no id).

Input of the span head, for a causal backbone: "question: Q\ncontext: C". The question comes first so
that every context token has attended to it (with causal attention a token sees only what precedes it).

Windows. The question prefix ("question: Q\ncontext:", the question cut to `max_question_tokens`) is
encoded once; the context is encoded on its own, as " " + context, with the tokenizer's character offsets
(`Tokenizer.backend.encode(text).offsets`, shifted back by the added space), so every context token maps
to an exact character span of the original context. A context longer than the room left after the prefix
is split into windows of that many tokens; consecutive windows overlap by `doc_stride` tokens (the Hugging
Face run_qa meaning of doc_stride: the overlap, not the step), capped at half the window.

Labels. The answer's character span [answer_start, answer_start + len(text)) covers the tokens from the
first one that ends after answer_start to the last one that starts before its end. In a window that holds
all of them, start/end are their positions; a window that does not hold the whole answer gets
start = end = 0 ("no answer in this window", the convention of BERT's [CLS]): position 0 is the first
token of the question prefix, never a valid answer position at inference.

Bad rows. An answer whose text is not context[answer_start : answer_start + len(text)], an empty question or
context, or a row without answers is reported with its id. In the training split such rows are skipped,
with one warning that counts them and names the first few, so one bad row never kills a run. In evaluation
splits only the answer texts are scored, so a misplaced answer_start is reported and the row is kept;
rows that cannot be scored (no answer, empty question or context) are skipped with a warning.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import datasets
import torch
from lightning.pytorch.utilities import rank_zero_warn

from tasks.data import TaskData

QUESTION_TEMPLATE, CONTEXT_MARKER = "question: {question}", "\ncontext:"
PROMPT_TEMPLATE = "context: {context}\nquestion: {question}\nanswer:"  # the generative path
# the instruct path: the user's turn of a chat (written into the backbone's chat template by the module)
INSTRUCTION = "{context}\n\nAnswer the question with a few words copied from the text above.\nQuestion: {question}"
NO_ANSWER = 0  # label position of a window that does not hold the answer
SHOWN = 5  # bad rows named in a warning


def gold_answers(answers) -> list[tuple[str, int | None]]:
    """(text, answer_start) pairs from {"text": [...], "answer_start": [...]} or [{"text", "answer_start"}]."""
    if answers is None:
        return []
    if isinstance(answers, dict):
        texts = answers.get("text") or []
        texts = [texts] if isinstance(texts, str) else list(texts)
        starts = answers.get("answer_start")
        starts = [starts] if isinstance(starts, int) else list(starts or [])
        return [(t, starts[i] if i < len(starts) else None) for i, t in enumerate(texts)]
    return [(a.get("text"), a.get("answer_start")) for a in answers]


def row_name(row: dict, index: int) -> str:
    return f"id {row['id']!r} (row {index})" if row.get("id") not in (None, "") else f"row {index}"


def row_problems(row: dict, check_spans: bool) -> tuple[str | None, list[str]]:
    """(why the row cannot be used at all or None, [answers whose span does not match the context])."""
    question, context = row.get("question"), row.get("context")
    if not isinstance(question, str) or not question.strip():
        return "empty question", []
    if not isinstance(context, str) or not context.strip():
        return "empty context", []
    answers = gold_answers(row.get("answers"))
    if not answers or not any(isinstance(t, str) and t.strip() for t, _ in answers):
        return "no answer", []
    mismatched = []
    for text, start in answers:
        if not isinstance(text, str) or not text.strip():
            mismatched.append(f"empty answer text {text!r}")
        elif check_spans and (not isinstance(start, int) or context[start : start + len(text)] != text):
            found = context[start : start + len(text)] if isinstance(start, int) and start >= 0 else None
            mismatched.append(f"answer {text!r} at answer_start={start} does not match the context there ({found!r})")
    return None, mismatched


# --------------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------------
@dataclass
class Window:
    """One model input: question prefix + a slice of the context's tokens."""

    example: int  # index of the example in the batch
    ids: list[int]
    context_start: int  # position of the first context token in ids
    offsets: list[tuple[int, int]] = field(default_factory=list)  # character span of each context token
    start: int = NO_ANSWER  # label positions in ids (NO_ANSWER: the answer is not in this window)
    end: int = NO_ANSWER


def question_prefix(tokenizer, question: str, max_question_tokens: int) -> list[int]:
    head = tokenizer.encode(QUESTION_TEMPLATE.format(question=question.strip()), add_bos=True)
    return head[:max_question_tokens] + tokenizer.encode(CONTEXT_MARKER)


def encode_context(tokenizer, context: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Context token ids and each token's [start, end) character span in `context` (exact, from the
    tokenizer's offsets; the leading space added for the encoding is mapped away)."""
    encoding = tokenizer.backend.encode(" " + context, add_special_tokens=False)
    return encoding.ids, [(max(s - 1, 0), max(e - 1, 0)) for s, e in encoding.offsets]


def char_span_to_tokens(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """First and last token covering the characters [start, end), or None when no token does."""
    first = next((i for i, (s, e) in enumerate(offsets) if e > start and e > s), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1)
                 if offsets[i][0] < end and offsets[i][1] > offsets[i][0]), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def answer_tokens(offsets: list[tuple[int, int]], answer: tuple[str, int] | None) -> tuple[int, int] | None:
    """First and last context token of an answer (text, char start), surrounding whitespace left out."""
    if answer is None:
        return None
    text, char_start = answer
    return char_span_to_tokens(offsets, char_start + len(text) - len(text.lstrip()), char_start + len(text.rstrip()))


def context_windows(n_tokens: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
    """[first, last) token ranges of the windows of a context of n_tokens, at most `room` each, consecutive
    ones overlapping by doc_stride (capped at half a window)."""
    step = room - min(doc_stride, room // 2)
    windows, first = [], 0
    while True:
        last = min(first + room, n_tokens)
        windows.append((first, last))
        if last >= n_tokens:
            return windows
        first += step


def make_windows(tokenizer, question: str, context: str, max_tokens: int, doc_stride: int,
                 max_question_tokens: int, answer: tuple[str, int] | None = None, example: int = 0) -> list[Window]:
    """Split question + context into windows of at most max_tokens tokens; with `answer` (text, char start)
    each window carries its start/end label (NO_ANSWER where the window does not hold the whole answer)."""
    prefix = question_prefix(tokenizer, question, max(1, min(max_question_tokens, max_tokens // 2)))
    room = max_tokens - len(prefix)
    if room < 1:
        raise ValueError(f"the question prefix takes {len(prefix)} of the {max_tokens} tokens: lower "
                         f"max_question_tokens or raise max_length")
    ids, offsets = encode_context(tokenizer, context)
    span = answer_tokens(offsets, answer)
    windows = []
    for first, last in context_windows(len(ids), room, doc_stride):
        window = Window(example, prefix + ids[first:last], len(prefix), offsets[first:last])
        if span is not None and first <= span[0] and span[1] < last:
            window.start, window.end = len(prefix) + span[0] - first, len(prefix) + span[1] - first
        windows.append(window)
    return windows


def label_answer(row: dict) -> tuple[str, int] | None:
    """The answer a row is trained on: its first gold answer with a character position."""
    answers = [(t, s) for t, s in gold_answers(row.get("answers")) if isinstance(s, int)]
    return answers[0] if answers else None


def visible_mask(context: str, offsets: list[tuple[int, int]]) -> torch.Tensor:
    """Which context tokens an answer may start or end on: those with visible characters."""
    return torch.tensor([bool(context[s:e].strip()) for s, e in offsets], dtype=torch.bool)


def span_batch(tokenizer, rows: list[dict], max_tokens: int, doc_stride: int, max_question_tokens: int,
               with_labels: bool = True) -> dict:
    """Rows -> every window of every row, right-padded, with labels, a mask of the positions an answer may
    start or end at (context tokens with visible characters) and what decoding needs (window -> example,
    token offsets)."""
    questions, question_row = question_rows(rows)
    windows = []
    for i, row in enumerate(questions):
        windows.extend(make_windows(tokenizer, row["question"], row["context"], max_tokens, doc_stride,
                                    max_question_tokens, label_answer(row) if with_labels else None, example=i))
    input_ids, mask = tokenizer.pad([w.ids for w in windows], side="right")
    context_mask = torch.zeros_like(mask, dtype=torch.bool)
    for b, w in enumerate(windows):  # an answer starts and ends on a token with visible characters
        context_mask[b, w.context_start : w.context_start + len(w.offsets)] = visible_mask(
            questions[w.example]["context"], w.offsets)
    return {
        "input_ids": input_ids, "attention_mask": mask, "context_mask": context_mask,
        "start_positions": torch.tensor([w.start for w in windows], dtype=torch.long),
        "end_positions": torch.tensor([w.end for w in windows], dtype=torch.long),
        "window_question": [w.example for w in windows], "window_row": [question_row[w.example] for w in windows],
        "context_start": [w.context_start for w in windows], "offsets": [w.offsets for w in windows],
        "questions": questions,
    }


def question_rows(rows: list[dict]) -> tuple[list[dict], list[int]]:
    """The questions of rows of either shape, each {question, context, answers[, id]}, and the row of each.
    A paragraph row {context, questions: [{question, answers[, id]}]} (QAData(group_by_context=True)) gives
    one per question; a question row is itself."""
    questions, row_of = [], []
    for r, row in enumerate(rows):
        for question in row["questions"] if "questions" in row else [row]:
            questions.append({**question, "context": row["context"]})
            row_of.append(r)
    return questions, row_of


def group_by_context(dataset: datasets.Dataset) -> datasets.Dataset:
    """Question rows -> one row per distinct context {context, questions: [{id, question, answers}]}, in the
    order of each context's first question."""
    groups: dict[str, list[dict]] = {}
    for row in iter_rows(dataset):
        groups.setdefault(row["context"], []).append(
            {"id": row.get("id"), "question": row["question"], "answers": row.get("answers")})
    return datasets.Dataset.from_list([{"context": c, "questions": q} for c, q in groups.items()])


# --------------------------------------------------------------------------------------------------------
# the generative path
# --------------------------------------------------------------------------------------------------------
def fill_prompt(template: str, question: str, context: str) -> str:
    """The template with {context} and {question} put in (plain replacement: a chat template's rendered text
    may hold braces of its own)."""
    return template.replace("{context}", context).replace("{question}", question.strip())


def fit_context(tokenizer, question: str, context: str, budget: int, template: str = PROMPT_TEMPLATE) -> str:
    """The context, cut at a token boundary if need be, so the filled template fits in `budget` tokens."""
    if len(tokenizer.encode(fill_prompt(template, question, context), add_bos=True)) <= budget:
        return context
    rest = len(tokenizer.encode(fill_prompt(template, question, ""), add_bos=True))
    ids, offsets = encode_context(tokenizer, context)
    keep = max(0, budget - rest - 2)  # 2: slack for re-tokenisation where the cut context meets the template
    return context[: offsets[keep - 1][1]] if keep else ""


def generation_prompt(tokenizer, question: str, context: str, budget: int, template: str = PROMPT_TEMPLATE) -> str:
    """The template (PROMPT_TEMPLATE by default) filled, its context cut so the prompt fits in `budget` tokens."""
    return fill_prompt(template, question, fit_context(tokenizer, question, context, budget, template))


def shortest_examples(dataset: datasets.Dataset, k: int) -> list[dict]:
    """k solved examples to show before a question: the rows (question or paragraph rows) with the shortest
    contexts, one question each, its first gold answer; the same k for the same data."""
    rows = sorted(question_rows(list(iter_rows(dataset)))[0], key=lambda r: (len(r["context"]), str(r.get("id"))))
    out, seen = [], set()
    for row in rows:
        answer = next((t.strip() for t, _ in gold_answers(row.get("answers")) if isinstance(t, str) and t.strip()), "")
        if answer and row["context"] not in seen:
            seen.add(row["context"])
            out.append({"context": row["context"], "question": row["question"].strip(), "answer": answer})
        if len(out) == k:
            break
    return out


def iter_rows(dataset: datasets.Dataset, chunk: int = 2000):
    """Rows as dicts, read a column chunk at a time (much faster than indexing row by row)."""
    for batch in dataset.iter(batch_size=chunk):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns)):
            yield dict(zip(columns, values))


# --------------------------------------------------------------------------------------------------------
HELD_OUT_ARTICLES = 0.05  # of SQuAD's 442 training articles: about 4,000 questions to choose methods on


def reported_dev(raw: datasets.DatasetDict, seed: int) -> datasets.DatasetDict:
    """SQuAD by name: its dev set is what the table reports, so it becomes the test split, and the validation
    split that methods are chosen on is held out of the training data, whole articles at a time (seeded), so
    no article is in both."""
    train = raw["train"]
    titles = sorted(set(train["title"]))
    random.Random(seed).shuffle(titles)
    held = set(titles[: max(1, round(HELD_OUT_ARTICLES * len(titles)))])
    in_held = [title in held for title in train["title"]]
    return datasets.DatasetDict({
        "train": train.select([i for i, h in enumerate(in_held) if not h]),
        "validation": train.select([i for i, h in enumerate(in_held) if h]),
        "test": raw["validation"]})


class QAData(TaskData):
    """SQuAD v1.1 by name, or the user's files (data_files) with the same columns.

    SQuAD has no public test split: `test` scores the dev set, as the official script does, and the validation
    split is a seeded 5% of the training articles held out (reported_dev), so nothing is chosen on the dev set;
    `max_eval_examples` scores a seeded subset of each on slow machines. Batches hold every window of their
    rows (so a batch of `batch_size` questions may hold more windows), plus the rows themselves.

    group_by_context: rows become paragraphs {context, questions: [...]}, so the context-first layout
    (SpanQA with an AttentionFlowHead, tasks.qa.span) reads each context once for all its questions; `batch_size`
    then counts paragraphs, and `max_train_examples` still counts questions (whole paragraphs are taken).
    Evaluation subsets are the same seeded question samples as without grouping (few share a context).
    """

    def __init__(self, dataset: str = "squad", group_by_context: bool = False, **kwargs):
        super().__init__(dataset=dataset, **kwargs)
        self.group_by_context = group_by_context
        self.skipped: dict[str, list[str]] = {}  # split -> messages of the rows left out

    def prepare_data(self) -> None:
        if not self.data_files:
            super().load()  # fetch and cache once; cleaning happens in setup

    def load(self) -> datasets.DatasetDict:
        raw = super().load()
        if (not self.data_files and "test" not in raw and "validation" in raw and "train" in raw
                and "title" in raw["train"].column_names):
            raw = reported_dev(raw, self.seed)
        return datasets.DatasetDict({split: self.clean(split, ds) for split, ds in raw.items()})

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if "test" not in self.splits and "validation" in self.splits:
            self.splits["test"] = self.splits["validation"]
        if self.group_by_context:
            grouped: dict[int, datasets.Dataset] = {}  # validation and test stay one object (one cache)
            for split, rows in self.splits.items():
                if "questions" not in rows.column_names:
                    self.splits[split] = grouped.setdefault(id(rows), group_by_context(rows))

    def hold_out(self, train: datasets.Dataset) -> tuple[datasets.Dataset, datasets.Dataset]:
        """The held-out validation split takes whole paragraphs (10% of the contexts, seeded): no context is in
        both, so validation never asks about a text the head trained on."""
        if self.group_by_context:
            return super().hold_out(group_by_context(train))
        contexts = sorted(set(train["context"]))
        random.Random(self.seed).shuffle(contexts)
        held = set(contexts[: max(1, len(contexts) // 10)])
        if len(held) == len(contexts):  # one context: nothing would be left to train on
            return super().hold_out(train)
        inside = [context in held for context in train["context"]]
        return (train.select([i for i, h in enumerate(inside) if not h]),
                train.select([i for i, h in enumerate(inside) if h]))

    def n_examples(self, split: str) -> int:
        """Questions, whether rows are questions or paragraphs."""
        rows = self.splits.get(split)
        if rows is None:
            return 0
        return sum(len(q) for q in rows["questions"]) if "questions" in rows.column_names else len(rows)

    def subset(self, split: str, dataset: datasets.Dataset, cap: int | None) -> datasets.Dataset:
        """Grouped by context, the training subset is made of whole paragraphs (seeded order) until it holds
        `cap` questions, so each context is read once for several questions; evaluation subsets stay seeded
        question samples (the same questions in either layout)."""
        if not self.group_by_context or split != "train" or cap is None or cap >= len(dataset):
            return super().subset(split, dataset, cap)
        rows_of: dict[str, list[int]] = {}
        for i, context in enumerate(dataset["context"]):
            rows_of.setdefault(context, []).append(i)
        contexts = list(rows_of)
        random.Random(self.seed).shuffle(contexts)
        chosen, n = [], 0
        for context in contexts:
            if n >= cap:
                break
            chosen += rows_of[context]
            n += len(rows_of[context])
        return dataset.select(sorted(chosen))

    def clean(self, split: str, dataset: datasets.Dataset) -> datasets.Dataset:
        """Check every row; leave out the unusable ones with one warning (see the module docstring)."""
        missing = [c for c in ("question", "context", "answers") if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{split} split has no column {missing[0]!r} (columns: {dataset.column_names}); "
                             f"question answering needs question, context and answers")
        training = split == "train"
        keep, skipped, misplaced = [], [], []
        for i, row in enumerate(iter_rows(dataset)):
            fatal, mismatched = row_problems(row, check_spans=True)
            if fatal is not None:
                skipped.append(f"{row_name(row, i)}: {fatal}")
            elif mismatched and training:
                skipped.append(f"{row_name(row, i)}: {mismatched[0]}")
            else:
                keep.append(i)
                if mismatched:
                    misplaced.append(f"{row_name(row, i)}: {mismatched[0]}")
        if misplaced:
            rank_zero_warn(f"{split}: {len(misplaced)} row(s) have an answer_start that does not match the context; "
                           f"kept (evaluation scores the answer texts): {'; '.join(misplaced[:SHOWN])}")
        if skipped:
            self.skipped[split] = skipped
            rank_zero_warn(f"{split}: skipped {len(skipped)} of {len(dataset)} rows: {'; '.join(skipped[:SHOWN])}"
                           + (" ..." if len(skipped) > SHOWN else ""))
        if not keep:
            raise ValueError(f"{split}: no usable row ({len(dataset)} rows, all bad: {'; '.join(skipped[:SHOWN])})")
        return dataset if len(keep) == len(dataset) else dataset.select(keep)

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        """Rows were checked (and bad ones left out) when loaded, in clean()."""

    def collate(self, rows: list[dict]) -> dict:
        module = self.trainer.lightning_module
        return {**module.featurize(rows, self.tokenizer, self.max_tokens), "rows": rows}
