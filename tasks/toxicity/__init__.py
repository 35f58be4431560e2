"""Toxicity (toxic / non-toxic), the moderation step's classifier (tasks.apps.safety):
`gptsuite toxicity fit --config configs/tasks/toxicity.yaml`.

The classification task's model and data module on a declared substitute set: no registry package carries a
toxic-comment benchmark with both classes, so the toxic texts are the 993 RealToxicityPrompts texts that
Perspective scored toxic, and the non-toxic ones movie-review snippets and BBC News sentences cut to the same
lengths (backbone.data.loaders.toxicity_records). alt-profanity-check, a maintained model, is scored on the
same test texts as a baseline.
"""

from tasks.spec import TaskSpec

SPEC = TaskSpec(
    name="toxicity", title="Toxicity",
    module="tasks.classification.module.SequenceClassifier", data="tasks.classification.data.TextClassificationData",
    benchmark="RealToxicityPrompts toxic + neutral texts (substitute)", split="test", metrics=("f1", "accuracy"),
    sample="You are a wonderful person and I enjoyed our talk.",
    baselines="tasks.toxicity.baselines.score_baselines",
    anchors=(),
)
