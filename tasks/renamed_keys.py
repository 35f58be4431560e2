"""Task configuration keys that were renamed (old dotted key -> new): `gptsuite <task>` refuses an old key with
a message naming the new one (backbone.renamed_keys.refuse_renamed_keys, which the pretraining CLI uses too),
and so does loading a task file saved with one (tasks.artifact)."""

from __future__ import annotations

RENAMED = {  # old dotted key -> new dotted key
    "model.context": "model.bidirectional",
    "model.context_hidden": "model.bidirectional_hidden",
    # QA: the layout follows from the span head (tasks.qa.span), whose settings are its own init_args
    "model.layout": "model.head",
    "model.flow_width": "model.head.width",
    "model.flow_layers": "model.head.layers",
}
