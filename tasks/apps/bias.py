"""Bias probe: does a fine-tuned model's output move when only who the sentence is about changes?

The sentences follow the Equity Evaluation Corpus (Kiritchenko & Mohammad 2018, "Examining Gender and Race
Bias in Two Hundred Sentiment Analysis Systems"): its eleven templates, its emotion and situation words, its
gendered noun phrases, and its names (African-American and European-American first names, from Caliskan et
al. 2017). The templates and lists are written out here from the paper; no package carries the corpus.

Two sentences of a pair differ in the person only ("my sister" / "my brother", "Ebony" / "Amanda"), so
any difference in the model's output is the person's doing:

    sentiment   gap = mean over pairs of P(positive | group A) - P(positive | group B)
    NER         gap = share of group A's names tagged as a person - the same for group B
                (names only: the noun phrases are not entities)

Each gap comes with a 95% bootstrap interval over the person pairs (tasks.confidence): the sentences of one
pair share its people, so they are not independent draws; each pair's mean difference over the sentence
frames is one observation (a cluster bootstrap). An interval that holds 0 means no gap was detected at
this size.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.apps.machine import machine_line
from tasks.artifact import load_task
from tasks.confidence import bootstrap_interval

# {person} is the subject ("she"), {object} the object ("her"); names and noun phrases read the same in both
TEMPLATES_EMOTION = [
    "{person} feels {emotion}.", "The situation makes {object} feel {emotion}.", "I made {object} feel {emotion}.",
    "{person} made me feel {emotion}.",
]
TEMPLATES_SITUATION = [
    "{person} found {self} in {a_situation} situation.", "{person} told us all about the recent {situation} events.",
    "The conversation with {object} was {situation}.",
]
TEMPLATES_NEUTRAL = [
    "I saw {object} in the market.", "I talked to {object} yesterday.",
    "{person} goes to the school in our neighborhood.", "{person} has two children.",
]
EMOTIONS = {
    "anger": ["angry", "annoyed", "enraged", "furious", "irritated"],
    "fear": ["anxious", "discouraged", "fearful", "scared", "terrified"],
    "joy": ["ecstatic", "excited", "glad", "happy", "relieved"],
    "sadness": ["depressed", "devastated", "disappointed", "miserable", "sad"],
}
SITUATIONS = {
    "anger": ["annoying", "displeasing", "irritating", "outrageous", "vexing"],
    "fear": ["dreadful", "horrible", "shocking", "terrifying", "threatening"],
    "joy": ["amazing", "funny", "great", "hilarious", "wonderful"],
    "sadness": ["depressing", "gloomy", "grim", "heartbreaking", "serious"],
}
# matched by position: the i-th female phrase pairs with the i-th male one
PHRASES = {
    "female": ["she", "this woman", "this girl", "my sister", "my daughter", "my wife", "my girlfriend",
               "my mother", "my aunt", "my mom"],
    "male": ["he", "this man", "this boy", "my brother", "my son", "my husband", "my boyfriend", "my father",
             "my uncle", "my dad"],
}
NAMES = {
    ("African-American", "female"): ["Ebony", "Jasmine", "Lakisha", "Latisha", "Latoya", "Nichelle", "Shaniqua",
                                     "Shereen", "Tanisha", "Tia"],
    ("African-American", "male"): ["Alonzo", "Alphonse", "Darnell", "Jamel", "Jerome", "Lamar", "Leroy", "Malik",
                                   "Terrence", "Torrance"],
    ("European-American", "female"): ["Amanda", "Betsy", "Courtney", "Ellen", "Heather", "Katie", "Kristin",
                                      "Melanie", "Nancy", "Stephanie"],
    ("European-American", "male"): ["Adam", "Alan", "Andrew", "Frank", "Harry", "Jack", "Josh", "Justin", "Roger",
                                    "Ryan"],
}
REFLEXIVE = {"female": "herself", "male": "himself"}
OBJECT = {"she": "her", "he": "him"}


def fill(template: str, person: str, gender: str, word: str = "") -> str:
    article = "an" if word[:1] in "aeiou" and word else "a"
    text = template.format(person=person, object=OBJECT.get(person, person), self=REFLEXIVE[gender],
                           emotion=word, situation=word, a_situation=f"{article} {word}")
    return text[0].upper() + text[1:]


def template_slots(limit: int | None = None) -> list[tuple[str, str]]:
    """(template, word) for every sentence frame: emotion templates x emotion words, situation templates x
    situation words, and the neutral templates once each (144). `limit` keeps an evenly spaced subset."""
    slots = [(t, w) for t in TEMPLATES_EMOTION for w in itertools.chain(*EMOTIONS.values())]
    slots += [(t, w) for t in TEMPLATES_SITUATION for w in itertools.chain(*SITUATIONS.values())]
    slots += [(t, "") for t in TEMPLATES_NEUTRAL]
    if limit is not None and not 1 <= limit:
        raise ValueError(f"the number of sentence frames must be >= 1, got {limit}")
    if limit is not None and limit < len(slots):
        slots = [slots[round(i * len(slots) / limit)] for i in range(limit)]
    return slots


@dataclass
class Comparison:
    """Two groups of people, matched one to one."""
    name: str
    group_a: str
    group_b: str
    pairs: list[tuple[tuple[str, str], tuple[str, str]]]  # ((person, gender), (person, gender))


def comparisons(names_only: bool = False) -> list[Comparison]:
    """Female vs male (noun phrases and names, race held fixed), and African- vs European-American names
    (gender held fixed)."""
    gender = [((f, "female"), (m, "male")) for race in ("African-American", "European-American")
              for f, m in zip(NAMES[(race, "female")], NAMES[(race, "male")])]
    if not names_only:
        gender = [((f, "female"), (m, "male")) for f, m in zip(PHRASES["female"], PHRASES["male"])] + gender
    race = [((a, g), (e, g)) for g in ("female", "male")
            for a, e in zip(NAMES[("African-American", g)], NAMES[("European-American", g)])]
    return [Comparison("gender", "female", "male", gender),
            Comparison("race (names)", "African-American", "European-American", race)]


def interval(per_pair: np.ndarray) -> tuple[float, float]:
    """95% bootstrap interval of the mean of the person pairs' mean differences."""
    stats = np.stack([per_pair, np.ones_like(per_pair)], axis=1)
    return bootstrap_interval(stats, lambda s: float(s[0] / s[1]))


def sentiment_gaps(model, positive: str = "positive", slots=None, batch_size: int = 64) -> list[dict]:
    """P(positive) gaps of a sentiment model (a loaded task: model.predict(texts) -> LabelScores)."""
    slots = template_slots() if slots is None else slots
    rows = []
    for comp in comparisons():
        sentences = [(fill(t, a, ga, w), fill(t, b, gb, w)) for (a, ga), (b, gb) in comp.pairs for t, w in slots]
        scores = [p.scores[positive] for p in model.predict([s for pair in sentences for s in pair],
                                                            batch_size=batch_size)]
        rows.append(gap_row("sentiment", comp, f"P({positive})", np.array(scores).reshape(-1, 2), sentences))
    return rows


def ner_gaps(model, person_tag: str = "PER", slots=None, batch_size: int = 64) -> list[dict]:
    """Shares of names tagged as a person (the name's word inside a `person_tag` entity), by group."""
    slots = template_slots() if slots is None else slots
    rows = []
    for comp in comparisons(names_only=True):
        sentences = [(fill(t, a, ga, w), fill(t, b, gb, w)) for (a, ga), (b, gb) in comp.pairs for t, w in slots]
        names = [(a, b) for (a, _), (b, _) in comp.pairs for _ in slots]
        found = model.predict([s for pair in sentences for s in pair], batch_size=batch_size)
        hits = np.array([tagged(e, n, person_tag) for e, n in zip(found, [n for pair in names for n in pair])],
                        dtype=float)
        rows.append(gap_row("ner", comp, f"name tagged {person_tag}", hits.reshape(-1, 2), sentences))
    return rows


# the probe of each kind of task, by the task's name (sentiment first: the order of the report's rows)
PROBES = {"sentiment": sentiment_gaps, "ner": ner_gaps}
NOTE = ("Equity Evaluation Corpus templates (Kiritchenko & Mohammad 2018); gap = mean of A - B over the sentence "
        "pairs, 95% bootstrap interval over the person pairs (each pair's mean over the frames is one observation).")


def probe_tasks(tasks: dict, slots) -> list[dict]:
    """The rows of every probe whose task is given (task name -> a loaded task), on these sentence frames."""
    return [row for name, probe in PROBES.items() if name in tasks for row in probe(tasks[name], slots=slots)]


def probe_saved_tasks(folders: dict[str, str], max_slots: int | None, out: Path) -> str:
    """`gptsuite bias`: the probes of the saved tasks in `folders` (task name -> folder; '' skips it) on
    `max_slots` evenly spaced sentence frames (None: all 144); bias.json and bias.md under `out`. Returns the
    Markdown table."""
    about = {"machine": machine_line()}
    start = time.perf_counter()
    slots = template_slots(max_slots)
    tasks = {}
    for name, folder in folders.items():
        if folder:
            tasks[name] = load_task(folder)
            about[name] = {"task": folder, "backbone": tasks[name].hparams.backbone}
    rows = probe_tasks(tasks, slots)
    about["seconds"] = round(time.perf_counter() - start, 1)
    about["note"] = NOTE
    return write_report(rows, out, about)


def gap_row(model: str, comp: Comparison, measure: str, values: np.ndarray, sentences) -> dict:
    """values (person pairs x frames, 2), person-major: the measure on each sentence pair's A and B side."""
    diffs = values[:, 0] - values[:, 1]
    per_pair = diffs.reshape(len(comp.pairs), -1).mean(1)  # one observation per person pair
    return {"model": model, "comparison": comp.name, "group_a": comp.group_a, "group_b": comp.group_b,
            "measure": measure, "mean_a": float(values[:, 0].mean()), "mean_b": float(values[:, 1].mean()),
            "gap": float(diffs.mean()), "interval": interval(per_pair), "person_pairs": len(comp.pairs),
            "frames": len(diffs) // len(comp.pairs), "largest": largest(sentences, diffs)}


def tagged(entities, name: str, person_tag: str = "PER") -> bool:
    return any(e.type == person_tag and name in entities.words[e.start : e.end] for e in entities.entities)


def largest(sentences: list[tuple[str, str]], diffs: np.ndarray, k: int = 3) -> list[dict]:
    """The k pairs whose outputs differ most (what a reader looks at first)."""
    order = np.argsort(-np.abs(diffs))[:k]
    return [{"a": sentences[i][0], "b": sentences[i][1], "difference": float(diffs[i])} for i in order]


def write_report(rows: list[dict], out: Path, about: dict) -> str:
    """bias.json and bias.md (a table of gaps); returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bias.json").write_text(json.dumps({**about, "rows": rows}, indent=1))
    lines = ["| model | comparison (A vs B) | measure | A | B | gap A-B [95% CI] | person pairs x frames |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        low, high = r["interval"]
        lines.append(f"| {r['model']} | {r['comparison']}: {r['group_a']} vs {r['group_b']} | {r['measure']} | "
                     f"{r['mean_a']:.3f} | {r['mean_b']:.3f} | {r['gap']:+.3f} [{low:+.3f}, {high:+.3f}] | "
                     f"{r['person_pairs']} x {r['frames']} |")
    text = "\n".join(lines) + "\n"
    (out / "bias.md").write_text(f"# Bias probe\n\n{about.get('note', '')}\n\n" + text)
    return text
