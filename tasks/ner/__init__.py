"""Named-entity recognition (CoNLL-2003): `gptsuite ner fit --config configs/tasks/ner.yaml`."""

from tasks.bench_specs import ECHO, FROZEN, SMOKE
from tasks.spec import Anchor, TaskSpec

_4K = {"model.context": "bilstm", "model.crf": True, "data.max_train_examples": 4000}

SPEC = TaskSpec(
    name="ner", title="Named entities",
    module="tasks.ner.module.TokenClassifier", data="tasks.ner.data.TokenTaggingData",
    benchmark="CoNLL-2003", split="test", metrics=("f1", "precision", "recall"),
    sample="Angela Merkel met Emmanuel Macron in Paris on Monday.",
    baselines="tasks.ner.data.score_baselines",
    anchors=(
        Anchor("f1", "BERT-base", 92.4, "Devlin et al. 2019"),
        Anchor("f1", "GPT-2 small frozen + BiLSTM-CRF", 87.47, "Flair embeddings experiments (reported figure)"),
    ),
    bench={
        "smoke": SMOKE,
        "quick": {"budget_s": 80, "seconds": 83, "trainer.max_epochs": 1, "data.max_eval_examples": 1000},
        "smollm2": {"budget_s": 180, "seconds": 300, "model.max_length": 256, "data.batch_size": 32,
                    "methods": {"frozen+BiLSTM-CRF": {**FROZEN, "model.context": "bilstm", "model.crf": True,
                                                      "trainer.max_epochs": 6, "model.learning_rate": 0.002}}},
        # the heads and layers (full CoNLL; 4,000 training sentences where the features are new), echo
        # against the BiLSTM
        "smollm2-ablations": {
            "budget_s": 240, "seconds": 1300, "model.max_length": 256, "data.batch_size": 32,
            "trainer.max_epochs": 6, "model.learning_rate": 0.002,
            "methods": {
                "frozen+mix, linear": {**FROZEN},
                "frozen+mix, BiLSTM (no CRF)": {**FROZEN, "model.context": "bilstm"},
                "frozen+mix, BiLSTM-CRF, 4k train": {**FROZEN, **_4K},
                "frozen last layer, BiLSTM-CRF, 4k train": {**_4K, "model.adapter": "tasks.adapters.FrozenLayers",
                                                            "model.adapter.layers": [-1]},
                "echo+mix, linear, 4k train": {**ECHO, "data.max_train_examples": 4000},
                "echo+mix, BiLSTM-CRF, 4k train": {**ECHO, **_4K},
            }},
        "full": {"trainer.max_epochs": 3},
    },
)
