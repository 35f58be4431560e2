"""Topic classification (BBC News, 5 topics):
`gptsuite classification fit --config configs/tasks/classification.yaml`."""

from tasks.spec import TaskSpec

SPEC = TaskSpec(
    name="classification", title="Topic classification",
    module="tasks.classification.module.SequenceClassifier", data="tasks.classification.data.TextClassificationData",
    benchmark="BBC News (5 topics)", split="test", metrics=("accuracy", "macro_f1"),
    sample="The central bank raised interest rates again as inflation stayed high.",
    baselines="tasks.classification.data.score_baselines",
    anchors=(),  # no published score on this split of BBC News (a seeded stratified split made here)
)
