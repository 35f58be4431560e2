"""Code generation (HumanEval / MBPP): a sandbox for model-written programs and the pass@k estimator.

`gptsuite codegen fit|validate|test --config configs/tasks/codegen.yaml`: fine-tune on Python code, then
sample completions per problem and score pass@k by running them in the sandbox (tasks.codegen.sandbox).
"""

from tasks.spec import Anchor, TaskSpec

SPEC = TaskSpec(
    name="codegen", title="Code generation",
    module="tasks.codegen.module.CodeGenerator", data="tasks.codegen.data.CodeData",
    benchmark="HumanEval", split="test", metrics=("pass@1", "greedy_pass@1", "pass@10"),
    sample='def add(a, b):\n    """Return the sum of a and b."""\n',
    baselines="tasks.codegen.data.score_baselines",
    anchors=(
        Anchor("pass@1", "CodeParrot-110M", 3.8, "Nijkamp et al. 2022 / CodeParrot"),
        Anchor("pass@1", "CodeGen-350M-mono", 12.8, "Nijkamp et al. 2022"),
    ),
    bench={
        "smoke": {"budget_s": 20, "seconds": 30, "data.max_eval_examples": 4, "trainer.max_epochs": 0},
        "quick": {"budget_s": 55, "seconds": 82, "data.max_eval_examples": 40, "trainer.max_epochs": 1},
        "full": {"trainer.max_epochs": 1},
    },
)
