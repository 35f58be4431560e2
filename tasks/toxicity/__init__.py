"""Toxicity (toxic / non-toxic), the moderation step's classifier (tasks.apps.safety):
`gptsuite toxicity fit --config configs/tasks/toxicity.yaml`.

The classification task's model and data module on a declared substitute set: no registry package carries a
toxic-comment benchmark with both classes, so the toxic texts are the 993 RealToxicityPrompts texts that
Perspective scored toxic, and the non-toxic ones movie-review snippets and BBC News sentences cut to the same
lengths (backbone.data.loaders.toxicity_records). alt-profanity-check, a maintained model, is scored on the
same test texts as a baseline.
"""

from tasks.classification import text_classification_spec

SPEC = text_classification_spec(
    name="toxicity", title="Toxicity", benchmark="RealToxicityPrompts toxic + neutral texts (substitute)",
    metrics=("f1", "accuracy"), baselines="tasks.toxicity.baselines.score_baselines",
    sample="You are a wonderful person and I enjoyed our talk.",
)
