"""`gptsuite <task> predict --task DIR --input FILE --output FILE`: a saved task over an unlabelled file.

Inputs are read by extension, one prediction per input, in order:

    .txt             one input per non-empty line (tasks whose input is a text)
    .csv / .tsv      a header row, then the `text` column; QA: the `question` and `context` columns
    .jsonl / .json   one object per line with the same keys (an object with a single field: that field), or one
                     JSON string per line; a .json file may also hold one array; QA also reads the official
                     nested SQuAD JSON
    .conll .iob .bio NER: each sentence's words (first column; tags, if any, are ignored), joined by spaces

The output is JSON Lines: {"input": ..., **the task's output dataclass}, one line per input.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

from tqdm import tqdm

from backbone.data.parsers import parse_squad
from tasks.artifact import TASK_FILE, load_task, saved_task_name
from tasks.data import decode_text, nested_squad, parse_conll_columns, text_lines
from tasks.outputs import LabelScores, Question
from tasks.spec import TaskSpec

TEXT_COLUMN = "text"
QUESTION_COLUMNS = ("question", "context")
INPUT_FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".json", ".conll", ".iob", ".bio")


def read_inputs(path: str | Path, input_type: type) -> list:
    """The inputs of an unlabelled file as the task's input type (str or Question), in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise ValueError(f"the input file {path} must end in one of {', '.join(INPUT_FORMATS)}")
    text = decode_text(path.read_bytes(), f"the input file {path}")
    records = _records(path, suffix, text, input_type)
    if not records:
        raise ValueError(f"the input file {path} holds no input")
    return [_as_input(record, input_type, path, number) for number, record in enumerate(records, 1)]


def _records(path: Path, suffix: str, text: str, input_type: type) -> list:
    """Raw records: strings or dicts."""
    what = f"the input file {path}"
    if suffix == ".txt":
        return [line for line in text_lines(text) if line.strip()]
    if suffix in (".conll", ".iob", ".bio"):
        return [" ".join(s["tokens"]) for s in parse_conll_columns(text, what, labelled=False)]
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text_lines(text), delimiter="\t" if suffix == ".tsv" else ",")
        wanted = QUESTION_COLUMNS if input_type is Question else (TEXT_COLUMN,)
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:  # a header is required: without one, the first input would be taken for it
            raise ValueError(f"{what} needs a header row naming the column(s) {', '.join(wanted)}; its first row "
                             f"is {', '.join(reader.fieldnames or [])}")
        return list(reader)
    squad = nested_squad(text)
    if squad is not None:
        try:
            return [{"question": r["question"], "context": r["context"]} for r in parse_squad(squad)]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{what}: a SQuAD question or paragraph lacks {err}") from None
    try:
        if suffix == ".json" and text.lstrip()[:1] in ("[", "{"):
            whole = json.loads(text)  # one array, or one object: the single input
            return whole if isinstance(whole, list) else [whole]
        return [json.loads(line) for line in text_lines(text) if line.strip()]
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not JSON Lines: {err}") from None


def _as_input(record, input_type: type, path: Path, number: int):
    where = f"the input file {path}, input {number}"
    if input_type is Question:
        if not isinstance(record, dict) or not all(isinstance(record.get(c), str) for c in QUESTION_COLUMNS):
            raise ValueError(f"{where}: a question needs `question` and `context` text fields")
        return Question(record["question"], record["context"])
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        if isinstance(record.get(TEXT_COLUMN), str):
            return record[TEXT_COLUMN]
        if len(record) == 1 and isinstance(next(iter(record.values())), str):
            return next(iter(record.values()))
        raise ValueError(f"{where}: no `{TEXT_COLUMN}` field (fields: {', '.join(map(str, record))})")
    raise ValueError(f"{where}: expected a text or an object with a `{TEXT_COLUMN}` field, got "
                     f"{type(record).__name__}")


def check_task_folder(spec: TaskSpec, folder: str | Path) -> None:
    """A clear error when `folder` holds no saved task, or one of another task."""
    task_file = Path(folder) / TASK_FILE
    if not task_file.is_file():
        raise FileNotFoundError(f"{folder} holds no saved task ({TASK_FILE} missing): make one with "
                                f"`{spec.fit_command} --model.export_dir {folder}`")
    name = saved_task_name(task_file)  # an unreadable file is load_task's to report, with what is wrong
    if name is not None and name != spec.name:
        raise ValueError(f"{folder} holds a {name} model, not a {spec.name} one: run `gptsuite {name} predict`")


def prediction_record(item, output) -> dict:
    """One output line: the input, the output's fields, and the chosen label of label scores."""
    record = {"input": dataclasses.asdict(item) if dataclasses.is_dataclass(item) else item}
    if isinstance(output, LabelScores):
        record["label"] = output.label
    return {**record, **dataclasses.asdict(output)}


def predict_file(spec: TaskSpec, folder: str | Path, input_path: str | Path, output_path: str | Path,
                 batch_size: int = 16, backbone: str | None = None, progress: bool = True) -> int:
    """Predict every input of `input_path` with the saved task in `folder`; write JSON Lines to
    `output_path` (through a temporary file, so a stopped run leaves no half file). Returns the count."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    check_task_folder(spec, folder)
    items = read_inputs(input_path, spec.input_type)
    task = load_task(folder, backbone=backbone)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as out, tqdm(total=len(items), unit="input", disable=not progress,
                                                                desc=f"{spec.name} predict", file=sys.stderr) as bar:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                for item, output in zip(chunk, task.predict(chunk)):
                    # ASCII escapes: a line separator inside a text (U+2028) stays inside its JSON string
                    out.write(json.dumps(prediction_record(item, output)) + "\n")
                bar.update(len(chunk))
        partial.replace(output_path)
    finally:
        partial.unlink(missing_ok=True)  # a stopped or failed run leaves no half file
    return len(items)
