"""The README's headline section, read from the committed benchmark results rather than typed.

    python -m tasks.readme_table        rewrite README.md between the headline markers from benchmarks/results.json

tests/test_readme.py checks that the README's section is what headline_section makes of the committed
results.json, so a figure typed into the README by hand fails the tests.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from tasks.bench_table import headline

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results.json"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"
WIDTH = 116  # prose lines; the table's rows are as long as they are


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def _machine(run: dict) -> str:
    """A run's machine in a few words: its measured CPU facts, else its hardware line."""
    m = run.get("machine") or {}
    facts = [str(m[k]) for k in ("cpu", "capability") if m.get(k)]
    facts += [f"{m['threads']} threads"] if m.get("threads") else []
    facts += [f"precision {m['precision']}"] if m.get("precision") else []
    return ", ".join(facts) or run.get("hardware") or "unrecorded"


def headline_section(results: dict) -> str:
    """The markdown between the README's headline markers, for a results.json's {"runs": [...], "rows": [...]}."""
    rows, runs = results["rows"], results.get("runs", [])
    machines = list(dict.fromkeys(_machine(run) for run in runs))
    lines = [*headline(rows), "",
             *_wrap("Scores in %, with 95% bootstrap intervals over the test examples. Where a preset offers several "
                    "candidates (SQuAD's three modelling layers), the row is the one with the best validation score, "
                    "never the best test score; the method column says how each row was chosen, and the validation "
                    "column gives that score (on a split that is never the reported one; HumanEval and MBPP have "
                    "no validation problems). [benchmarks/results.md](benchmarks/results.md) has every row, what it "
                    "spent and its recipe. The baseline is scored on the same examples; the anchor is a published "
                    "full-data figure."),
             "", *_wrap(f"{len(rows)} rows from {len(runs)} run{'s' if len(runs) != 1 else ''} on "
                     f"{'these machines' if len(machines) != 1 else 'this machine'}: " + "; ".join(machines) + ".")]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """The README text with the part between the markers replaced by the section."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {START} ... {END} markers")
    return text[:start + len(START)] + "\n" + section + "\n" + text[end:]


def readme_section(text: str) -> str:
    """The README's part between the markers, as headline_section returns it."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {START} ... {END} markers")
    return text[start + len(START):end].strip("\n")


def main() -> int:
    results = json.loads(RESULTS.read_text())
    text = README.read_text()
    new = replace_section(text, headline_section(results))
    if new != text:
        README.write_text(new)
    print(f"{README.name}: headline {'rewritten' if new != text else 'unchanged'} from "
          f"{RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
