"""Which tokens made a classifier decide: gradient x input and integrated gradients over the token embeddings.

For a label's logit F and the token embeddings x (T, C) that the backbone reads:

    gradient x input     a_t = sum_c  x_tc * dF/dx_tc                     (one backward pass)
    integrated gradients a_t = sum_c  x_tc * mean_{k=1..m} dF/dx_tc (k/m * x)  (Sundararajan et al., 2017)

Integrated gradients walk from a baseline of zero token embeddings (positions kept) to the real ones, so
its scores add up to the change they explain: sum_t a_t ~ F(x) - F(0), closer as m grows (the
"completeness" the tests check). Gradient x input is its one-step, straight-line approximation at x alone.

The embeddings are swapped in through a forward hook on the backbone's token embedding, so the same code
reads every adapter (full fine-tuning, frozen layers, LoRA, prompt tuning) without knowing how it encodes.
The hook replaces only the lookup of this call's own token ids (another thread predicting with the same
task, as the demo's do, passes through untouched). Frozen layers build no autograd graph by default; here
they are asked for one (TaskModule.unit_states(grad=True)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from tasks.adapters import FrozenLayers
from tasks.classification.data import encode_texts
from tasks.classification.module import SequenceClassifier

Method = Literal["integrated_gradients", "gradient_x_input"]


@dataclass
class Attribution:
    tokens: list[str]  # the text's tokens, as text
    scores: list[float]  # one per token: its share of the label's logit (positive: for the label)
    label: str  # the label explained
    probability: float  # the classifier's probability of that label
    logit: float  # F(x)
    baseline_logit: float  # F(0): the logit with every token embedding zeroed (integrated gradients only)
    method: str

    def table(self) -> str:
        return "\n".join(f"{token!r:>16} {score:+.3f}" for token, score in zip(self.tokens, self.scores))


def attribute(task: SequenceClassifier, text: str, label: str | None = None,
              method: Method = "integrated_gradients", steps: int = 32) -> Attribution:
    """Token attributions of `label`'s logit (default: the predicted label) for `text`."""
    if not isinstance(task, SequenceClassifier) or task.hparams.head != "sequence":
        raise ValueError("attribution reads a classifier with a trained sequence head (classification, sentiment, "
                         "toxicity, relations); a prompt-scored classifier rebuilds its input from a template")
    if method not in ("integrated_gradients", "gradient_x_input"):
        raise ValueError(f"method must be 'integrated_gradients' or 'gradient_x_input', got {method!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if isinstance(task.adapter, FrozenLayers) and task.adapter.echo:
        raise ValueError("attribution reads each token's own embedding; an echo classifier reads every token twice")
    if label is not None and label not in task.label_names:
        raise ValueError(f"label {label!r} is not one of the task's labels {task.label_names}")
    device = next(task.backbone.parameters()).device
    ids, mask = encode_texts(task.tokenizer, [text], task.max_input_tokens, device)
    embedding = task.backbone.transformer.wte
    with torch.no_grad():
        x = embedding(ids).float()  # (1, T, C) the real token embeddings
    was_training = task.training
    task.eval()

    def label_logit(scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """F(scale * x) and the embeddings it read, which carry the gradient."""
        scaled = (scale * x).requires_grad_(True)
        swap = lambda module, args, out: scaled.to(out.dtype) if args[0] is ids else out  # noqa: E731
        hook = embedding.register_forward_hook(swap)
        batch = {"input_ids": ids, "attention_mask": mask, "texts": [text]}
        try:
            logits = task.head(task.unit_states(batch, grad=True)[0])  # SequenceClassifier.logits, graph kept
        finally:
            hook.remove()
        return logits.float()[0], scaled

    try:
        with torch.enable_grad():
            out, read = label_logit(1.0)  # the real input: the prediction, and the last (or only) gradient
            logits = out.detach()
            index = task.label_names.index(label) if label is not None else int(logits.argmax())
            probability = float(logits.softmax(-1)[index])
            scales = [k / steps for k in range(1, steps + 1)] if method == "integrated_gradients" else [1.0]
            total = torch.autograd.grad(out[index], read)[0].float()  # scale 1
            for scale in scales[:-1]:
                out, read = label_logit(scale)
                total += torch.autograd.grad(out[index], read)[0].float()
            with torch.no_grad():
                baseline = label_logit(0.0)[0][index] if method == "integrated_gradients" else float("nan")
    finally:
        task.train(was_training)
    scores = (x * total / len(scales)).sum(-1)[0]  # (T,)
    decode = task.tokenizer.decode
    return Attribution(tokens=[decode([i]) for i in ids[0].tolist()], scores=scores.tolist(),
                       label=task.label_names[index], probability=probability, logit=float(logits[index]),
                       baseline_logit=float(baseline), method=method)
