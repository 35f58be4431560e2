"""Topic classification (BBC News, 5 topics):
`gptsuite classification fit --config configs/tasks/classification.yaml`.

Sentiment, relation extraction and toxicity reuse this package's model and data module: their specs come from
`text_classification_spec`."""

from tasks.spec import TaskSpec


def text_classification_spec(*, name: str, title: str, benchmark: str, metrics: tuple[str, ...], sample: str,
                             baselines: str = "tasks.classification.baselines.score_baselines") -> TaskSpec:
    """The TaskSpec of a task scored on a "test" split with the sequence classifier and the text-classification
    data module, by default with this task's baselines (majority, bag-of-words logistic regression), no anchor."""
    return TaskSpec(name=name, title=title, module="tasks.classification.module.SequenceClassifier",
                    data="tasks.classification.data.TextClassificationData", benchmark=benchmark, split="test",
                    metrics=metrics, sample=sample, baselines=baselines)


SPEC = text_classification_spec(
    name="classification", title="Topic classification", benchmark="BBC News (5 topics)",
    metrics=("accuracy", "macro_f1"), sample="The central bank raised interest rates again as inflation stayed high.",
)  # no anchor: no published score on this split of BBC News (a seeded stratified split made here)
