"""Named-entity recognition (CoNLL-2003): `gptsuite ner fit --config configs/tasks/ner.yaml`."""


def cli_main(args: list[str] | None = None, run: bool = True):
    from tasks.base import run_task_cli
    from tasks.ner.data import TokenTaggingData
    from tasks.ner.module import TokenClassifier

    return run_task_cli(TokenClassifier, TokenTaggingData, args, __doc__, run=run)
