"""Sentiment (movie-review sentences, negative/positive):
`gptsuite sentiment fit --config configs/tasks/sentiment.yaml`.

The same model and data module as classification (a sequence head or the prompt path over one label per
text); only the dataset, the label words and the template differ, in the YAML.
"""

from tasks.bench_specs import FROZEN, LORA_STEPS, PROMPT, SMOKE
from tasks.spec import Anchor, TaskSpec

_HEAD = {"data.batch_size": 32, "trainer.max_epochs": 15, "model.learning_rate": 0.001}

SPEC = TaskSpec(
    name="sentiment", title="Sentiment",
    module="tasks.classification.module.SequenceClassifier", data="tasks.classification.data.TextClassificationData",
    benchmark="MR movie-review sentences", split="test", metrics=("accuracy", "f1"),
    sample="a wonderful, moving film with great acting",
    baselines="tasks.classification.data.score_baselines",
    anchors=(
        Anchor("accuracy", "RoBERTa-base, MR", 90.3, "reported figure, source not re-checked"),
        Anchor("accuracy", "BERT-base, MR", 86.3, "reported figure, source not re-checked"),
        Anchor("accuracy", "Kim CNN, MR", 81.5, "Kim 2014"),
        Anchor("accuracy", "GPT-1 fine-tuned, SST-2", 91.3, "Radford et al. 2018"),
    ),
    prompt_args=("--model.head", "prompt", "--model.few_shot", "4", "--model.adapter", "tasks.adapters.Frozen"),
    bench={
        "smoke": SMOKE,
        "quick": {"budget_s": 75, "seconds": 85, "trainer.max_epochs": 2, "data.max_eval_examples": 1056},
        "smollm2": {"budget_s": 60, "seconds": 300, "data.batch_size": 32,
                    "methods": {"frozen+mix, mean+last": {**FROZEN, "model.pooling": "mean+last",
                                                          "trainer.max_epochs": 15, "model.learning_rate": 0.001}}},
        # the prompt path, pooling and head width, and LoRA's speed with and without length-bucketed batches
        "smollm2-ablations": {
            "budget_s": 300, "seconds": 700, "data.batch_size": 16,
            "methods": {"prompt 4-shot": PROMPT,
                        "frozen+mix, last token": {**FROZEN, "model.pooling": "last", **_HEAD},
                        "frozen+mix, mean+last, MLP 256": {**FROZEN, "model.pooling": "mean+last",
                                                           "model.head_hidden": 256, **_HEAD},
                        "LoRA, random batches": {**LORA_STEPS},
                        "LoRA, length buckets": {**LORA_STEPS, "data.bucket_by_length": True}}},
        "full": {"trainer.max_epochs": 3},
    },
)
