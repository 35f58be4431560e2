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

from tasks.classification import text_classification_spec

SPEC = text_classification_spec(
    name="relations", title="Relation extraction", benchmark="BBC News relations (hand-labelled, declared)",
    metrics=("micro_f1", "accuracy"), baselines="tasks.kg.baselines.score_baselines",
    sample="Arsenal striker Thierry Henry scored twice.\nThierry Henry (PER) -> Arsenal (ORG)",
)
