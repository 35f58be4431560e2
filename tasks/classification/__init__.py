"""Topic classification (BBC News, 5 topics):
`gptsuite classification fit --config configs/tasks/classification.yaml`."""

from tasks.bench_specs import FROZEN, PROMPT, SMOKE
from tasks.spec import Anchor, TaskSpec

SPEC = TaskSpec(
    name="classification", title="Topic classification",
    module="tasks.classification.module.SequenceClassifier", data="tasks.classification.data.TextClassificationData",
    benchmark="BBC News (5 topics)", split="test", metrics=("accuracy", "macro_f1"),
    sample="The central bank raised interest rates again as inflation stayed high.",
    baselines="tasks.classification.data.score_baselines",
    anchors=(Anchor("accuracy", "TF-IDF + SVM", 97.75, "reported figure, source not re-checked"),),
    prompt_args=("--model.head", "prompt", "--model.few_shot", "5", "--model.adapter", "tasks.adapters.Frozen"),
    bench={
        "smoke": SMOKE,
        "quick": {"budget_s": 80, "seconds": 91, "trainer.max_epochs": 3},
        "smollm2": {"budget_s": 60, "seconds": 400, "model.max_length": 256, "data.batch_size": 32,
                    "methods": {"frozen+mix, mean+last": {**FROZEN, "model.pooling": "mean+last",
                                                          "trainer.max_epochs": 30, "model.learning_rate": 0.001}}},
        "smollm2-ablations": {"seconds": 150, "model.max_length": 256, "methods": {"prompt 5-shot": PROMPT}},
        "full": {"trainer.max_epochs": 4},
    },
)
