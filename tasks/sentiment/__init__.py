"""Sentiment (movie-review sentences, negative/positive): `gptsuite sentiment fit --config configs/tasks/sentiment.yaml`.

The same model and data module as classification (a sequence head or the prompt path over one label per
text); only the dataset, the label words and the template differ, in the YAML.
"""


def cli_main(args: list[str] | None = None, run: bool = True):
    from tasks.base import run_task_cli
    from tasks.classification.data import TextClassificationData
    from tasks.classification.module import SequenceClassifier

    return run_task_cli(SequenceClassifier, TextClassificationData, args, __doc__, run=run)
