"""Extractive question answering (SQuAD v1.1): `gptsuite qa fit|validate|test --config configs/tasks/qa.yaml`."""


def cli_main(args: list[str] | None = None, run: bool = True):
    from tasks.base import run_task_cli
    from tasks.qa.data import QAData
    from tasks.qa.module import QuestionAnswering

    return run_task_cli(QuestionAnswering, QAData, args, __doc__, run=run)
