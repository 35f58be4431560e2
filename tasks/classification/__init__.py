"""Topic classification (BBC News, 5 topics): `gptsuite classification fit --config configs/tasks/classification.yaml`."""


def cli_main(args: list[str] | None = None, run: bool = True):
    from tasks.base import run_task_cli
    from tasks.classification.data import TextClassificationData
    from tasks.classification.module import SequenceClassifier

    return run_task_cli(SequenceClassifier, TextClassificationData, args, __doc__, run=run)
