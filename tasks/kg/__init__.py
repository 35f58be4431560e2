"""Relation extraction (BBC News, hand-labelled) and the knowledge graph built from it:
`gptsuite relations fit --config configs/tasks/relations.yaml`, then `gptsuite kg --text "..."`.

Relation extraction is classification of candidate pairs: every ordered pair of entities of a sentence whose
types some relation joins (PER->ORG, ORG->LOC, ...) is written as the sentence followed by the pair, and
labelled with its relation or "none" (backbone.data.parsers.relation_pairs). So the classification task's
model serves it whole: frozen cached features with a pooled head (the last token has read the sentence and
then the pair), or the instruct model scoring relation words (the prompt path). Scored by micro F1 over the
five relations ("none" is the negative label), as TACRED is scored.

No registry package carries a relation-extraction set, so the sentences were labelled for this project
(backbone/data/labelled/README.md says how) and the table says so. tasks.kg.graph turns NER entities and
these relations into a graph.
"""

from tasks.bench_specs import FROZEN, PROMPT, SMOKE
from tasks.spec import TaskSpec

_FROZEN_HEAD = {**FROZEN, "trainer.max_epochs": 40, "model.learning_rate": 0.001}

SPEC = TaskSpec(
    name="relations", title="Relation extraction",
    module="tasks.classification.module.SequenceClassifier", data="tasks.classification.data.TextClassificationData",
    benchmark="BBC News relations (hand-labelled, declared)", split="test", metrics=("micro_f1", "accuracy"),
    sample="Arsenal striker Thierry Henry scored twice.\nThierry Henry (PER) -> Arsenal (ORG)",
    baselines="tasks.kg.baselines.score_baselines",
    anchors=(),
    prompt_args=("--model.head", "prompt", "--model.few_shot", "1", "--model.adapter", "tasks.adapters.Frozen"),
    bench={
        "smoke": SMOKE,
        "quick": {"budget_s": 40, "seconds": 40, "trainer.max_epochs": 10},
        "smollm2": {"budget_s": 60, "seconds": 90, "data.batch_size": 16,
                    "methods": {"frozen+mix, mean+last, balanced loss": {**_FROZEN_HEAD, "model.pooling": "mean+last",
                                                                         "model.balanced_loss": True}}},
        # what the pooling and the balanced loss are worth (the smollm2 preset's features: the same cache key),
        # and the instruct model asked after one solved example (it answers "none" to every pair)
        "smollm2-ablations": {"budget_s": 60, "seconds": 300, "data.batch_size": 16,
                              "methods": {"prompt 1-shot": PROMPT,
                                          "frozen+mix, last token": {**_FROZEN_HEAD, "model.pooling": "last"},
                                          "frozen+mix, mean+last": {**_FROZEN_HEAD, "model.pooling": "mean+last"},
                                          "frozen+mix, last token, MLP 256": {**_FROZEN_HEAD, "model.pooling": "last",
                                                                              "model.head_hidden": 256}}},
        "full": {"trainer.max_epochs": 20},
    },
)
