"""What the benchmark's presets share: the backbone each uses and its budget, and the method flags the tasks'
bench entries are built from (each task's part of a preset lives in its TaskSpec.bench, tasks/<task>/__init__.py).

Flags are dotted LightningCLI keys, so a budget is exactly the flags a user would type.

budget_s: a stage's training time budget (backbone.budget.TimeBudget: as many steps as fit, the learning-rate
schedule fitted to them); `gptsuite bench --time-budget MIN` scales every stage's by MIN / the preset's
minutes. Steps and epochs stay as upper bounds, so a fast machine trains the listed budget and a slow one stops
on time; evaluation sets are fixed, so every machine is scored on the same examples.
seconds: a stage's measured wall time on 2 CPU cores, used only to weight the progress bar's ETA (a stage
without one counts as the mean of those with one; a backbone that already exists counts as nothing).
"""

from __future__ import annotations

PRESETS = {
    # a few minutes: the nano backbone, a handful of examples per task (checks the whole pipeline)
    "smoke": {"backbone": "artifacts/backbones/nano", "pretrain_config": "configs/pretrain/nano.yaml", "minutes": 5,
              "budget_s": 60, "seconds": 60},
    # at most 30 minutes on 2 CPU cores, pretraining the tiny backbone included (the README's main job)
    "quick": {"backbone": "artifacts/backbones/tiny", "pretrain_config": "configs/pretrain/tiny.yaml", "minutes": 30,
              "budget_s": 660, "seconds": 590},
    # the real pretrained SmolLM2-135M (imported from its GGUF): frozen, its features computed once per split
    # and cached (tasks.features), heads that see both sides trained on them; full test sets (SQuAD: a seeded
    # sample of the dev set). The prompt path runs the instruct model on the same examples.
    "smollm2": {"backbone": "artifacts/backbones/smollm2-135m", "import": "smollm2", "minutes": 60, "seconds": 20},
    # SmolLM2-135M-Instruct as it is, decoding, the methods that won: HumanEval (every problem, 10 samples +
    # greedy) and MBPP (every problem, greedy) asked in its chat template, translation of 500 verses through
    # the word lattice
    "smollm2-generative": {"backbone": "artifacts/backbones/smollm2-135m", "import": "smollm2", "minutes": 60,
                           "seconds": 20},
    # the decoding paths that lost, on the same sets, for the table's comparison: SQuAD answers copied from
    # the context (2,000 questions), free chat translation, code continued as a base model would be asked
    "smollm2-generative-extras": {"backbone": "artifacts/backbones/smollm2-135m", "import": "smollm2",
                                  "minutes": 90, "seconds": 20},
    # what each choice is worth, on SmolLM2 (the rows join the smollm2 preset's in the table)
    "smollm2-ablations": {"backbone": "artifacts/backbones/smollm2-135m", "import": "smollm2", "minutes": 40,
                          "seconds": 20},
    # the full benchmark splits (hours on CPU)
    "full": {"backbone": "artifacts/backbones/tiny", "pretrain_config": "configs/pretrain/tiny.yaml"},
}

# the smoke preset's part of a task: a handful of examples, one epoch, 20 s of training
SMOKE = {"budget_s": 20, "data.max_train_examples": 64, "data.max_eval_examples": 32, "trainer.max_epochs": 1}
# the frozen-features methods: SmolLM2 read at 4 depths (of 30 blocks; -1 is the final normed output), mixed.
# No validation: the benchmark reads the test scores only (nothing is selected on the validation set), and
# skipping it spares its features (about 8% of a cold run's extraction) and a pass over it every epoch
FROZEN = {"model.adapter": "tasks.adapters.FrozenLayers", "model.adapter.layers": [10, 16, 22, -1],
          "trainer.limit_val_batches": 0}
# the prompt path: the instruct model scores label words after solved demonstrations (the task's prompt_args)
PROMPT = {"trainer.max_epochs": 0, "prompt": True}
ECHO = {**FROZEN, "model.adapter.echo": True}
LORA_STEPS = {"model.adapter": "tasks.adapters.LoRA", "trainer.max_epochs": 1, "trainer.max_steps": 120,
              "model.learning_rate": 0.001}
