"""Code generation (HumanEval / MBPP): a sandbox for model-written programs and the pass@k estimator.

`gptsuite codegen fit|validate|test --config configs/tasks/codegen.yaml`: fine-tune on Python code, then
sample completions per problem and score pass@k by running them in the sandbox (tasks.codegen.sandbox).
"""

from tasks.spec import Anchor, TaskSpec

HUMANEVAL, MBPP = "HumanEval", "MBPP (MultiPL-E py-reworded, 397)"
# SmolLM2-135M-Instruct as it is (nothing trained): every problem of each set
_SMOLLM2 = {"model.adapter": "tasks.adapters.Frozen", "trainer.max_epochs": 0, "model.max_length": 1024,
            "data.max_eval_examples": None}
# asked in its chat template, it writes the whole function (up to 192 tokens)
_CHAT = {"model.prompt": "chat", "model.generation.max_new_tokens": 192}

SPEC = TaskSpec(
    name="codegen", title="Code generation",
    module="tasks.codegen.module.CodeGenerator", data="tasks.codegen.data.CodeData",
    benchmark=HUMANEVAL, split="test", metrics=("pass@1", "greedy_pass@1", "pass@10"),
    sample='def add(a, b):\n    """Return the sum of a and b."""\n',
    baselines="tasks.codegen.data.score_baselines",
    anchors=(
        Anchor("pass@1", "CodeParrot-110M", 3.8, "CodeParrot model card (codeparrot/code-generation-models)",
               benchmark=HUMANEVAL),
        Anchor("pass@1", "tiny_starcoder_py 164M", 7.84, "bigcode/tiny_starcoder_py model card", benchmark=HUMANEVAL),
        Anchor("pass@1", "CodeGen-350M-mono", 12.76, "Nijkamp et al. 2022", benchmark=HUMANEVAL),
        Anchor("pass@10", "CodeGen-350M-mono", 23.11, "Nijkamp et al. 2022", benchmark=HUMANEVAL),
        Anchor("pass@1", "StarCoder 15.5B (no small-model figure found offline)", 52.7,
               "bigcode/starcoder model card; the original MBPP split, not MultiPL-E's", benchmark=MBPP),
    ),
    bench={
        "smoke": {"budget_s": 20, "seconds": 30, "data.max_eval_examples": 4, "trainer.max_epochs": 0},
        "quick": {"budget_s": 55, "seconds": 82, "data.max_eval_examples": 40, "trainer.max_epochs": 1},
        # 10 samples and greedy from every problem; 6 problems' samples decode as one batch of 60 rows
        "smollm2-generative": {"seconds": 2330, **_SMOLLM2, "methods": {
            "chat template, 10 samples + greedy": {**_CHAT, "model.decode_rows": 60, "data.batch_size": 12},
            # MBPP's standard prompt: the task and 3 of its tests shown
            "chat template, 3 tests shown, greedy, MBPP": {**_CHAT, "data.dataset": "mbpp", "benchmark": MBPP,
                                                           "model.num_samples": 0, "model.show_tests": 3},
        }},
        # the paths that lost, kept for comparison: the bare code continued (as a base model would be asked),
        # and MBPP in chat without its tests
        "smollm2-generative-extras": {"seconds": 2930, **_SMOLLM2, "methods": {
            "zero-shot": {},
            "zero-shot, MBPP": {"data.dataset": "mbpp", "benchmark": MBPP, "model.num_samples": 1, "model.ks": [1]},
            "chat template, greedy, MBPP": {**_CHAT, "data.dataset": "mbpp", "benchmark": MBPP, "model.num_samples": 0},
        }},
        "full": {"trainer.max_epochs": 1},
    },
)
