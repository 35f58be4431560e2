"""Code generation (HumanEval / MBPP): a sandbox for model-written programs and the pass@k estimator.

`gptsuite codegen fit|validate|test --config configs/tasks/codegen.yaml`: fine-tune on Python code, then
sample completions per problem and score pass@k by running them in the sandbox (tasks.codegen.sandbox).
"""

from tasks.spec import Anchor, TaskSpec

HUMANEVAL, MBPP = "HumanEval", "MBPP (MultiPL-E py-reworded, 397)"

SPEC = TaskSpec(
    name="codegen", title="Code generation",
    module="tasks.codegen.module.CodeGenerator", data="tasks.codegen.data.CodeData",
    benchmark=HUMANEVAL, split="test", metrics=("chosen_pass@1", "pass@1", "greedy_pass@1", "pass@10"),
    sample='def add(a, b):\n    """Return the sum of a and b."""\n',
    baselines="tasks.codegen.baselines.score_baselines",
    anchors=(
        Anchor("pass@1", "CodeParrot-110M", 3.8, "CodeParrot model card (codeparrot/code-generation-models)",
               benchmark=HUMANEVAL),
        Anchor("pass@1", "tiny_starcoder_py 164M", 7.84, "bigcode/tiny_starcoder_py model card", benchmark=HUMANEVAL),
        Anchor("pass@1", "CodeGen-350M-mono", 12.76, "Nijkamp et al. 2022", benchmark=HUMANEVAL),
        Anchor("pass@10", "CodeGen-350M-mono", 23.11, "Nijkamp et al. 2022", benchmark=HUMANEVAL),
        Anchor("pass@1", "StarCoder 15.5B (no small-model figure found offline)", 52.7,
               "bigcode/starcoder model card; the original MBPP split, not MultiPL-E's", benchmark=MBPP),
    ),
)
