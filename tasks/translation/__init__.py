"""Translation (Bible en-es, both directions): `gptsuite translation fit --config configs/tasks/translation.yaml`."""

from tasks.spec import TaskSpec

ES_EN = "Bible es-en (RV1909 / KJV)"

SPEC = TaskSpec(
    name="translation", title="Translation",
    module="tasks.translation.module.Translator", data="tasks.translation.data.TranslationData",
    benchmark="Bible en-es (KJV / RV1909)", split="test books", metrics=("bleu", "chrf"), fraction=False,
    sample="The house is small.",
    baselines="tasks.translation.baselines.score_baselines",
)
