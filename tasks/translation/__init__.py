"""Translation (Bible en-es, both directions): `gptsuite translation fit --config configs/tasks/translation.yaml`."""


def cli_main(args: list[str] | None = None, run: bool = True):
    from tasks.base import run_task_cli
    from tasks.translation.data import TranslationData
    from tasks.translation.module import Translator

    return run_task_cli(Translator, TranslationData, args, __doc__, run=run)
