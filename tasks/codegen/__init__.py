"""Code generation (HumanEval / MBPP): a sandbox for model-written programs and the pass@k estimator.

`gptsuite codegen fit|validate|test --config configs/tasks/codegen.yaml`: fine-tune on Python code, then
sample completions per problem and score pass@k by running them in the sandbox (tasks.codegen.sandbox).
"""


def cli_main(args: list[str] | None = None, run: bool = True):
    from tasks.base import run_task_cli
    from tasks.codegen.data import CodeData
    from tasks.codegen.module import CodeGenerator

    return run_task_cli(CodeGenerator, CodeData, args, __doc__, run=run)
