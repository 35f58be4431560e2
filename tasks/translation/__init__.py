"""Translation (Bible en-es, both directions): `gptsuite translation fit --config configs/tasks/translation.yaml`."""

from tasks.bench_specs import SMOKE
from tasks.spec import TaskSpec

SPEC = TaskSpec(
    name="translation", title="Translation",
    module="tasks.translation.module.Translator", data="tasks.translation.data.TranslationData",
    benchmark="Bible en-es (KJV / RV1909)", split="test books", metrics=("bleu", "chrf"), fraction=False,
    sample="The house is small.",
    baselines="tasks.translation.data.score_baselines",
    bench={
        "smoke": {**SMOKE, "data.max_eval_examples": 16},
        "quick": {"budget_s": 100, "seconds": 220, "data.max_train_examples": 6000, "data.max_eval_examples": 100,
                  "trainer.max_epochs": 1},
        "full": {"trainer.max_epochs": 2},
    },
)
