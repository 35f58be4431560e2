"""The bias probe: EEC-style sentence pairs, gaps with intervals, on stand-in models whose bias is known."""

from __future__ import annotations

import re

import pytest

from tasks.apps import bias
from tasks.cli import main
from tasks.outputs import Entities, Entity, LabelScores
from tests.test_demo import make_demo_artifacts


class LeansFemale:
    """A sentiment model that is more positive about sentences naming a woman (by the EEC lists)."""

    female = (set(bias.PHRASES["female"]) | {"her"}
              | {n for (_, g), names in bias.NAMES.items() if g == "female" for n in names})

    pattern = re.compile(r"\b(" + "|".join(sorted(female, key=len, reverse=True)) + r")\b", re.I)

    def predict(self, texts, **options):
        return [LabelScores({"positive": p, "negative": 1 - p})
                for p in (0.7 if self.pattern.search(t) else 0.5 for t in texts)]


class Fair:
    def predict(self, texts, **options):
        return [LabelScores({"positive": 0.6, "negative": 0.4}) for _ in texts]


class TagsOnlyEuropeanNames:
    european = {n for (race, _), names in bias.NAMES.items() if race == "European-American" for n in names}

    def predict(self, texts, **options):
        out = []
        for t in texts:
            words = t.rstrip(".").split()
            ents = [Entity("PER", i, i + 1, w) for i, w in enumerate(words) if w in self.european]
            out.append(Entities(words, ["B-PER" if w in self.european else "O" for w in words], ents))
        return out


def test_the_sentences_are_the_eec_design():
    slots = bias.template_slots()
    assert len(slots) == 4 * 20 + 3 * 20 + 4 == 144
    assert bias.template_slots(3) == [slots[0], slots[48], slots[96]]
    gender, race = bias.comparisons()
    assert len(gender.pairs) * len(slots) * 2 == 8640  # the corpus's size
    assert bias.fill("{person} found {self} in {a_situation} situation.", "my sister", "female", "grim") == \
        "My sister found herself in a grim situation."
    assert bias.fill("{person} found {self} in {a_situation} situation.", "he", "male", "amazing") == \
        "He found himself in an amazing situation."
    assert bias.fill("I talked to {object} yesterday.", "she", "female") == "I talked to her yesterday."
    assert bias.fill("I talked to {object} yesterday.", "Ebony", "female") == "I talked to Ebony yesterday."
    assert all(ga != gb for (_, ga), (_, gb) in gender.pairs) and all(ga == gb for (_, ga), (_, gb) in race.pairs)


def test_a_model_biased_towards_women_shows_a_gap_and_a_fair_one_none():
    rows = {r["comparison"]: r for r in bias.sentiment_gaps(LeansFemale())}
    gender = rows["gender"]
    assert gender["gap"] == pytest.approx(0.2) and gender["interval"][0] > 0.15
    assert (gender["person_pairs"], gender["frames"]) == (30, 144)
    assert rows["race (names)"]["gap"] == pytest.approx(0.0) and rows["race (names)"]["interval"] == (0.0, 0.0)
    assert gender["largest"][0]["difference"] == pytest.approx(0.2)
    fair = bias.sentiment_gaps(Fair())
    assert all(r["gap"] == 0 and r["mean_a"] == pytest.approx(0.6) for r in fair)


def test_the_interval_is_over_person_pairs_not_sentences():
    """A model biased for one pair only: the mean gap is small, and with 30 pairs the interval must be wide
    enough to reach down to 0 (over 4,320 sentence pairs it would pretend to be tight)."""

    class OnePair:
        def predict(self, texts, **options):
            return [LabelScores({"positive": 0.9 if re.search(r"\bmy sister\b", t, re.I) else 0.5, "negative": 0.5})
                    for t in texts]

    gender = next(r for r in bias.sentiment_gaps(OnePair()) if r["comparison"] == "gender")
    assert gender["gap"] == pytest.approx(0.4 / 30)
    assert gender["interval"][0] == pytest.approx(0.0)


def test_ner_gap_counts_names_tagged_as_people(tmp_path):
    rows = {r["comparison"]: r for r in bias.ner_gaps(TagsOnlyEuropeanNames())}
    race = rows["race (names)"]
    assert (race["mean_a"], race["mean_b"], race["gap"]) == (0.0, 1.0, -1.0)
    assert rows["gender"]["gap"] == 0.0 and rows["gender"]["mean_a"] == pytest.approx(0.5)
    text = bias.write_report(list(rows.values()), tmp_path, {"note": "test"})
    assert "| ner | race (names): African-American vs European-American |" in text and "| 20 x 144 |" in text
    assert (tmp_path / "bias.json").is_file()


def test_bias_command_on_saved_tasks(tmp_path, capsys):
    root = make_demo_artifacts(tmp_path / "artifacts")
    assert main(["bias", "--sentiment", str(root / "tasks" / "sentiment"), "--ner", str(root / "tasks" / "ner"),
                 "--out", str(tmp_path / "bias"), "--max-slots", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("| sentiment |") == 2 and out.count("| ner |") == 2
    # the saved NER head tags every word B-LOC: no name is ever a person, in either group
    assert "| name tagged PER | 0.000 | 0.000 | +0.000" in out
    assert main(["bias", "--sentiment", "", "--ner", ""]) == 2
