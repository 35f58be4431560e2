"""Sentiment (movie-review sentences, negative/positive):
`gptsuite sentiment fit --config configs/tasks/sentiment.yaml`.

The data are the MR sentences (Pang and Lee's rotten-tomatoes snippets) as VADER's authors had them rated by a
crowd (hutto_ICWSM_2014): a sentence's label is the sign of its mean rating, not Pang and Lee's label. No
published score uses these labels, so the task has no anchor; the baselines are scored on the same labels.

The same model and data module as classification (a sequence head or the prompt path over one label per
text); only the dataset, the label words and the template differ, in the YAML.
"""

from tasks.classification import text_classification_spec

SPEC = text_classification_spec(
    name="sentiment", title="Sentiment", benchmark="MR sentences, VADER crowd-rated labels",
    metrics=("accuracy", "f1"), sample="a wonderful, moving film with great acting",
)
