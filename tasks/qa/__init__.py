"""Extractive question answering (SQuAD v1.1): `gptsuite qa fit|validate|test --config configs/tasks/qa.yaml`."""

from tasks.bench_specs import SMOKE
from tasks.outputs import Question
from tasks.spec import Anchor, TaskSpec

# SmolLM2's features at 3 depths, 10,000 training questions, 2,000 of the dev set
_SMOLLM2 = {"model.max_length": 384, "data.max_train_examples": 10000, "data.max_eval_examples": 2000,
            "data.batch_size": 16}
_FROZEN = {"model.adapter": "tasks.adapters.FrozenLayers", "model.adapter.layers": [12, 18, 24],
           "trainer.max_epochs": 3, "model.learning_rate": 0.001}

SPEC = TaskSpec(
    name="qa", title="Question answering",
    module="tasks.qa.module.QuestionAnswering", data="tasks.qa.data.QAData",
    benchmark="SQuAD v1.1", split="dev", metrics=("f1", "exact_match"), fraction=False,
    sample=Question("Where is the Eiffel Tower?",
                    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was completed in 1889."),
    baselines="tasks.qa.data.score_baselines",
    anchors=(
        Anchor("exact_match", "BERT-base", 81.2, "Devlin et al. 2019"),
        Anchor("exact_match", "GPT-2 small span head, full train", 68.4, "reported figure, source not re-checked"),
        Anchor("f1", "BERT-base", 88.5, "Devlin et al. 2019"),
        Anchor("f1", "DistilBERT", 86.9, "Sanh et al. 2019"),
        Anchor("f1", "GPT-2 small span head, full train", 78.9, "reported figure, source not re-checked"),
        Anchor("f1", "logistic regression", 51.0, "Rajpurkar et al. 2016"),
    ),
    bench={
        "smoke": {**SMOKE, "data.max_train_examples": 32, "data.max_eval_examples": 16},
        "quick": {"budget_s": 90, "seconds": 90, "data.max_train_examples": 3000, "data.max_eval_examples": 500,
                  "trainer.max_epochs": 1},
        "smollm2": {"budget_s": 420, "seconds": 1800, **_SMOLLM2,
                    "methods": {"frozen+BiLSTM span": {**_FROZEN, "model.context": "bilstm"}}},
        # the smollm2 preset's features (the same key), without the BiLSTM
        "smollm2-ablations": {"budget_s": 420, "seconds": 400, **_SMOLLM2,
                              "methods": {"frozen+mix, linear span": _FROZEN}},
        "full": {"trainer.max_epochs": 2},
    },
)
