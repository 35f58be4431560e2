"""Extractive question answering (SQuAD v1.1): `gptsuite qa fit|validate|test --config configs/tasks/qa.yaml`."""

from tasks.outputs import Question
from tasks.spec import Anchor, TaskSpec

SPEC = TaskSpec(
    name="qa", title="Question answering",
    module="tasks.qa.task.QATask", data="tasks.qa.data.QAData",
    variants=("tasks.qa.span.SpanQA", "tasks.qa.generative.GenerativeQA"),  # model.class_path chooses one
    benchmark="SQuAD v1.1", split="dev", metrics=("f1", "exact_match"), fraction=False,
    sample=Question("Where is the Eiffel Tower?",
                    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was completed in 1889."),
    baselines="tasks.qa.baselines.score_baselines",
    anchors=(
        Anchor("exact_match", "BERT-base", 80.8, "Devlin et al. 2019, Table 2 (dev)"),
        Anchor("f1", "BERT-base", 88.5, "Devlin et al. 2019, Table 2 (dev)"),
        Anchor("f1", "DistilBERT", 86.9, "Sanh et al. 2019"),
        Anchor("f1", "logistic regression", 51.0, "Rajpurkar et al. 2016"),
    ),
)
