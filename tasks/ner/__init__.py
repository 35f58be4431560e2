"""Named-entity recognition (CoNLL-2003): `gptsuite ner fit --config configs/tasks/ner.yaml`."""

from tasks.spec import Anchor, TaskSpec

SPEC = TaskSpec(
    name="ner", title="Named entities",
    module="tasks.ner.module.TokenClassifier", data="tasks.ner.data.TokenTaggingData",
    benchmark="CoNLL-2003", split="test", metrics=("f1", "precision", "recall"),
    sample="Angela Merkel met Emmanuel Macron in Paris on Monday.",
    baselines="tasks.ner.baselines.score_baselines",
    anchors=(
        Anchor("f1", "BERT-base", 92.4, "Devlin et al. 2019"),
    ),
)
