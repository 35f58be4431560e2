"""What the benchmark runs: each task's config, metrics, baselines and published anchors, and the presets'
budgets (dotted LightningCLI keys, so a budget is exactly the flags a user would type)."""

from __future__ import annotations

from tasks import baselines as B


# --------------------------------------------------------------------------------------------------------
# baselines on the data module's own splits (the examples our model is scored on)
# --------------------------------------------------------------------------------------------------------
def _classification_baselines(dm) -> dict:
    train, test = dm.splits["train"], dm.splits["test"]
    names = dm.label_names
    y_train = [dm.label_to_index(v, names) for v in train[dm.label_column]]
    y_test = [dm.label_to_index(v, names) for v in test[dm.label_column]]
    return {"majority": B.majority(y_train, y_test, len(names)),
            "bow-logreg": B.bow_logreg(train[dm.text_column], y_train, test[dm.text_column], y_test, len(names))}


def _ner_baselines(dm) -> dict:
    train, test = dm.splits["train"], dm.splits["test"]
    tags = lambda ds: [[dm.tag_index(t) for t in row] for row in ds[dm.tags_column]]  # noqa: E731
    return {"most-frequent-tag": B.most_frequent_tag(train[dm.tokens_column], tags(train), test[dm.tokens_column],
                                                     tags(test), dm.label_names)}


def _qa_baselines(dm) -> dict:
    from tasks.qa.metrics import SquadScore

    test = dm.splits["test"]  # SQuAD's dev set (the QA data module scores it as `test`)
    metric = SquadScore()
    metric.update([B.sliding_window(q, c) for q, c in zip(test["question"], test["context"])],
                  [a["text"] for a in test["answers"]])
    return {"sliding-window": {k: float(v) for k, v in metric.compute().items()}}


def _translation_baselines(dm) -> dict:
    from tasks.translation.metrics import corpus_scores

    src, tgt = dm.source_key, dm.target_key
    train, test = dm.splits["train"], dm.splits["test"]
    refs = list(test[tgt])
    return {"copy-source": corpus_scores(B.copy_source(test[src]), refs),
            "word-dictionary": corpus_scores(B.word_dictionary(train[src], train[tgt], test[src]), refs)}


def _codegen_baselines(dm) -> dict:
    from tasks.codegen.module import prompt_only_pass_at_1

    return {"prompt-only": {"pass@1": prompt_only_pass_at_1(dm.splits["test"])}}


TASKS = {
    "classification": {"module": "tasks.classification", "config": "configs/tasks/classification.yaml",
                       "dataset": "BBC News (5 topics)", "split": "test", "metrics": ["accuracy", "macro_f1"],
                       "prompt_args": ["--model.head", "prompt", "--model.few_shot", "5", "--model.adapter", "tasks.adapters.Frozen"],
                       "baselines": _classification_baselines},
    "sentiment": {"module": "tasks.sentiment", "config": "configs/tasks/sentiment.yaml",
                  "dataset": "MR movie-review sentences", "split": "test", "metrics": ["accuracy", "f1"],
                  "prompt_args": ["--model.head", "prompt", "--model.few_shot", "4", "--model.adapter", "tasks.adapters.Frozen"],
                  "baselines": _classification_baselines},
    "ner": {"module": "tasks.ner", "config": "configs/tasks/ner.yaml", "dataset": "CoNLL-2003",
            "split": "test", "metrics": ["f1", "precision", "recall"], "baselines": _ner_baselines},
    "qa": {"module": "tasks.qa", "config": "configs/tasks/qa.yaml", "dataset": "SQuAD v1.1", "split": "dev",
           "metrics": ["f1", "exact_match"], "baselines": _qa_baselines, "fraction": False},
    "translation": {"module": "tasks.translation", "config": "configs/tasks/translation.yaml",
                    "dataset": "Bible en-es (KJV / RV1909)", "split": "test books", "metrics": ["bleu", "chrf"],
                    "baselines": _translation_baselines, "fraction": False},
    "codegen": {"module": "tasks.codegen", "config": "configs/tasks/codegen.yaml", "dataset": "HumanEval",
                "split": "test", "metrics": ["pass@1", "greedy_pass@1", "pass@10"], "baselines": _codegen_baselines},
}

ANCHORS = {
    "classification": [
        {"metric": "accuracy", "name": "TF-IDF + SVM", "value": 97.75, "source": "reported figure, source not re-checked"},
    ],
    "sentiment": [
        {"metric": "accuracy", "name": "RoBERTa-base, MR", "value": 90.3, "source": "reported figure, source not re-checked"},
        {"metric": "accuracy", "name": "BERT-base, MR", "value": 86.3, "source": "reported figure, source not re-checked"},
        {"metric": "accuracy", "name": "Kim CNN, MR", "value": 81.5, "source": "Kim 2014"},
        {"metric": "accuracy", "name": "GPT-1 fine-tuned, SST-2", "value": 91.3, "source": "Radford et al. 2018"},
    ],
    "ner": [
        {"metric": "f1", "name": "BERT-base", "value": 92.4, "source": "Devlin et al. 2019"},
        {"metric": "f1", "name": "GPT-2 small frozen + BiLSTM-CRF", "value": 87.47, "source": "Flair embeddings experiments (reported figure)"},
    ],
    "qa": [
        {"metric": "exact_match", "name": "BERT-base", "value": 81.2, "source": "Devlin et al. 2019"},
        {"metric": "exact_match", "name": "GPT-2 small span head, full train", "value": 68.4, "source": "reported figure, source not re-checked"},
        {"metric": "f1", "name": "BERT-base", "value": 88.5, "source": "Devlin et al. 2019"},
        {"metric": "f1", "name": "DistilBERT", "value": 86.9, "source": "Sanh et al. 2019"},
        {"metric": "f1", "name": "GPT-2 small span head, full train", "value": 78.9, "source": "reported figure, source not re-checked"},
        {"metric": "f1", "name": "logistic regression", "value": 51.0, "source": "Rajpurkar et al. 2016"},
    ],
    "codegen": [
        {"metric": "pass@1", "name": "CodeParrot-110M", "value": 3.8, "source": "Nijkamp et al. 2022 / CodeParrot"},
        {"metric": "pass@1", "name": "CodeGen-350M-mono", "value": 12.8, "source": "Nijkamp et al. 2022"},
    ],
}

# the frozen-features methods: SmolLM2 read at 4 depths (of 30 blocks; -1 is the final normed output), mixed
_FROZEN = {"model.adapter": "tasks.adapters.FrozenLayers", "model.adapter.layers": [10, 16, 22, -1]}
# the prompt path: the instruct model scores label words after solved demonstrations (the task's prompt_args)
_PROMPT = {"trainer.max_epochs": 0, "args": "prompt"}
_ECHO = {**_FROZEN, "model.adapter.echo": True}
_NER_4K = {"model.context": "bilstm", "model.crf": True, "data.max_train_examples": 4000}
_SENTIMENT_HEAD = {"data.batch_size": 32, "trainer.max_epochs": 15, "model.learning_rate": 0.001}
_LORA_STEPS = {"model.adapter": "tasks.adapters.LoRA", "trainer.max_epochs": 1, "trainer.max_steps": 120,
               "model.learning_rate": 0.001}

# stage_seconds: measured wall times of each stage on 2 CPU cores, used only to weight the progress bar's ETA
# (a stage not listed counts as the listed stages' mean; a backbone that already exists counts as nothing).
# budget_s: each stage's training time budget (backbone.budget.TimeBudget: as many steps as fit, the
# learning-rate schedule fitted to them); `gptsuite bench --time-budget MIN` scales them by MIN / minutes.
# Steps and epochs stay as upper bounds, so a fast machine trains the listed budget and a slow one stops on
# time; evaluation sets are fixed, so every machine is scored on the same examples.
PRESETS = {
    # a few minutes: the nano backbone, a handful of examples per task (checks the whole pipeline)
    "smoke": {
        "backbone": "artifacts/backbones/nano", "pretrain_config": "configs/pretrain/nano.yaml", "minutes": 5,
        "budget_s": {"backbone": 60, "classification": 20, "sentiment": 20, "ner": 20, "qa": 20, "translation": 20,
                     "codegen": 20},
        "stage_seconds": {"backbone": 60, "codegen": 30},
        "tasks": {
            "classification": {"data.max_train_examples": 64, "data.max_eval_examples": 32, "trainer.max_epochs": 1},
            "sentiment": {"data.max_train_examples": 64, "data.max_eval_examples": 32, "trainer.max_epochs": 1},
            "ner": {"data.max_train_examples": 64, "data.max_eval_examples": 32, "trainer.max_epochs": 1},
            "qa": {"data.max_train_examples": 32, "data.max_eval_examples": 16, "trainer.max_epochs": 1},
            "translation": {"data.max_train_examples": 64, "data.max_eval_examples": 16, "trainer.max_epochs": 1},
            "codegen": {"data.max_eval_examples": 4, "trainer.max_epochs": 0},
        },
    },
    # at most 30 minutes on 2 CPU cores, pretraining the tiny backbone included (the README's main job)
    "quick": {
        "backbone": "artifacts/backbones/tiny", "pretrain_config": "configs/pretrain/tiny.yaml", "minutes": 30,
        "budget_s": {"backbone": 660, "classification": 80, "sentiment": 75, "ner": 80, "qa": 90, "translation": 100,
                     "codegen": 55},
        "stage_seconds": {"backbone": 590, "classification": 91, "sentiment": 85, "ner": 83, "qa": 90,
                          "translation": 220, "codegen": 82},
        "tasks": {
            "classification": {"trainer.max_epochs": 3},
            "sentiment": {"trainer.max_epochs": 2, "data.max_eval_examples": 1056},
            "ner": {"trainer.max_epochs": 1, "data.max_eval_examples": 1000},
            "qa": {"data.max_train_examples": 3000, "data.max_eval_examples": 500, "trainer.max_epochs": 1},
            "translation": {"data.max_train_examples": 6000, "data.max_eval_examples": 100, "trainer.max_epochs": 1},
            "codegen": {"data.max_eval_examples": 40, "trainer.max_epochs": 1},
        },
    },
    # the real pretrained SmolLM2-135M (imported from its GGUF): frozen, its features computed once per split
    # and cached (tasks.features), heads that see both sides trained on them; full test sets (SQuAD: a seeded
    # sample of the dev set). The prompt path runs the instruct model on the same examples.
    "smollm2": {
        "backbone": "artifacts/backbones/smollm2-135m", "import": "smollm2", "minutes": 60,
        "budget_s": {"classification": 60, "sentiment": 60, "ner": 240, "qa": 420},
        "stage_seconds": {"backbone": 20, "classification": 400, "sentiment": 300, "ner": 600, "qa": 1800},
        "tasks": {
            "classification": {
                "model.max_length": 256, "data.batch_size": 32,
                "methods": {"frozen+mix, mean+last": {**_FROZEN, "model.pooling": "mean+last", "trainer.max_epochs": 30,
                                                      "model.learning_rate": 0.001}}},
            "sentiment": {
                "data.batch_size": 32,
                "methods": {"frozen+mix, mean+last": {**_FROZEN, "model.pooling": "mean+last", "trainer.max_epochs": 15,
                                                      "model.learning_rate": 0.001}}},
            "ner": {
                "model.max_length": 256, "data.batch_size": 32,
                "methods": {"frozen+BiLSTM-CRF": {**_FROZEN, "model.context": "bilstm", "model.crf": True,
                                                  "trainer.max_epochs": 6, "model.learning_rate": 0.002}}},
            "qa": {
                "model.max_length": 384, "data.max_train_examples": 10000, "data.max_eval_examples": 2000,
                "data.batch_size": 16,
                "methods": {"frozen+BiLSTM span": {"model.adapter": "tasks.adapters.FrozenLayers",
                                                   "model.adapter.layers": [12, 18, 24], "model.context": "bilstm",
                                                   "trainer.max_epochs": 3, "model.learning_rate": 0.001}}},
        },
    },
    # what each choice is worth, on SmolLM2 (the rows join the smollm2 preset's in the table): the heads and
    # layers for NER (full CoNLL; 4,000 training sentences where the features are new), echo against the
    # BiLSTM, the prompt path, and LoRA's speed with and without length-bucketed batches (same steps)
    "smollm2-ablations": {
        "backbone": "artifacts/backbones/smollm2-135m", "import": "smollm2", "minutes": 40,
        "budget_s": {"sentiment": 300, "ner": 240, "qa": 420},  # as the smollm2 preset's (LoRA: its 120 steps fit)
        "stage_seconds": {"backbone": 20, "classification": 150, "sentiment": 700, "ner": 1300, "qa": 400},
        "tasks": {
            "classification": {"model.max_length": 256, "methods": {"prompt 5-shot": _PROMPT}},
            "sentiment": {
                "data.batch_size": 16,
                "methods": {"prompt 4-shot": _PROMPT,
                            "frozen+mix, last token": {**_FROZEN, "model.pooling": "last", **_SENTIMENT_HEAD},
                            "frozen+mix, mean+last, MLP 256": {**_FROZEN, "model.pooling": "mean+last",
                                                               "model.head_hidden": 256, **_SENTIMENT_HEAD},
                            "LoRA, random batches": {**_LORA_STEPS},
                            "LoRA, length buckets": {**_LORA_STEPS, "data.bucket_by_length": True}}},
            "qa": {  # the smollm2 preset's QA features (the same key), without the BiLSTM
                "model.max_length": 384, "data.max_train_examples": 10000, "data.max_eval_examples": 2000,
                "data.batch_size": 16,
                "methods": {"frozen+mix, linear span": {"model.adapter": "tasks.adapters.FrozenLayers",
                                                        "model.adapter.layers": [12, 18, 24], "trainer.max_epochs": 3,
                                                        "model.learning_rate": 0.001}}},
            "ner": {
                "model.max_length": 256, "data.batch_size": 32, "trainer.max_epochs": 6, "model.learning_rate": 0.002,
                "methods": {
                    "frozen+mix, linear": {**_FROZEN},
                    "frozen+mix, BiLSTM (no CRF)": {**_FROZEN, "model.context": "bilstm"},
                    "frozen+mix, BiLSTM-CRF, 4k train": {**_FROZEN, **_NER_4K},
                    "frozen last layer, BiLSTM-CRF, 4k train": {**_NER_4K, "model.adapter": "tasks.adapters.FrozenLayers",
                                                                "model.adapter.layers": [-1]},
                    "echo+mix, linear, 4k train": {**_ECHO, "data.max_train_examples": 4000},
                    "echo+mix, BiLSTM-CRF, 4k train": {**_ECHO, **_NER_4K},
                }},
        },
    },
    # the full benchmark splits (hours on CPU)
    "full": {
        "backbone": "artifacts/backbones/tiny", "pretrain_config": "configs/pretrain/tiny.yaml",
        "tasks": {
            "classification": {"trainer.max_epochs": 4}, "sentiment": {"trainer.max_epochs": 3},
            "ner": {"trainer.max_epochs": 3}, "qa": {"trainer.max_epochs": 2}, "translation": {"trainer.max_epochs": 2},
            "codegen": {"trainer.max_epochs": 1},
        },
    },
}
