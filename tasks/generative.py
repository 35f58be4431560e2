"""The backbone as a conditional language model: the piece translation and code generation share.

An example is a prompt (the source written into a template) followed by a target. Training is next-token
prediction over prompt + target with the loss on the target tokens only: every prompt position (and the
padding) gets IGNORE in the labels, so the model is never trained to produce the source. Prediction decodes
from the shared decoder (`backbone.generate.generate_text`: greedy, sampling or beam search, stop strings,
eos), configured by a `GenerationConfig` in the YAML.

Tokenisation matches decoding exactly: the prompt is encoded on its own (with the tokenizer's bos, as
`generate_text` encodes prompts) and the target on its own, then concatenated, so the model is trained on
the very token boundary it sees when it generates.

QA's generated-answer path uses the same pieces (encode_pairs, lm_loss, check_generative_adapter).

Adapters: decoding runs the backbone itself (with its KV cache), so an adapter must act inside the backbone
(FullFineTune, Frozen, LoRA). PromptTuning / PrefixTuning change what is fed to the backbone (a soft prompt,
a prefilled cache) and are refused with a clear error.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from backbone.decoding_model import InferenceModelCache
from backbone.generate import GenerationConfig, generate_text
from backbone.llama_cpp_engine import GPTSUITE
from backbone.quantize import AUTO
from tasks.adapters import Adapter, Frozen, FullFineTune, LoRA
from tasks.base import TaskModule
from tasks.data import IGNORE, TaskData

GENERATIVE_ADAPTERS = (FullFineTune, Frozen, LoRA)


def check_generative_adapter(adapter: Adapter) -> None:
    """Decoding calls the backbone directly: an adapter that changes its inputs (encode) cannot be used."""
    if type(adapter).encode is not Adapter.encode:
        names = ", ".join(a.__name__ for a in GENERATIVE_ADAPTERS)
        raise ValueError(f"generated outputs come from the shared decoder, which runs the "
                         f"backbone itself: {type(adapter).__name__} changes the backbone's inputs and is not "
                         f"supported; use one of {names} (tasks.adapters)")


def encode_pairs(tokenizer, prompts: list[str], targets: list[str], max_tokens: int, add_eos: bool = True,
                 max_target_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels) for prompt + target; labels are IGNORE on the prompt
    and the padding. A target is cut to max_target_tokens (before its eos). Too long: the target keeps at
    least half the budget (its end is cut), the prompt keeps its last tokens (the part next to the target)."""
    rows, labels = [], []
    for prompt, target in zip(prompts, targets):
        p = tokenizer.encode(prompt, add_bos=True)
        t = tokenizer.encode(target)[:max_target_tokens] + ([tokenizer.eos_id] if add_eos else [])
        if len(p) + len(t) > max_tokens:
            t = t[: max(min(len(t), max_tokens // 2), max_tokens - len(p))]
            p = p[len(p) - (max_tokens - len(t)):] if max_tokens > len(t) else []
        ids = (p + t) or [tokenizer.eos_id]
        rows.append(ids)
        labels.append([IGNORE] * len(p) + t if p or t else [IGNORE])
    input_ids, mask = tokenizer.pad(rows, side="right")
    label_tensor = torch.full_like(input_ids, IGNORE)
    for i, row in enumerate(labels):
        label_tensor[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return input_ids, mask, label_tensor


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits (B, T, V) at position t predict labels[:, t + 1]; IGNORE labels
    (the prompt, the padding) do not count."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0  # every target cut away: a zero loss that keeps the graph
    return F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE)


class ListMetric(Metric):
    """A torchmetrics Metric that collects Python objects (texts, records) for a corpus-level score.

    torchmetrics list states must hold tensors, so the items live in a plain list that reset() clears;
    single-process only (no gathering across devices), as every gptsuite run is.
    """

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.items: list = []

    def update(self, items: list) -> None:
        self.items.extend(items)

    def reset(self) -> None:
        super().reset()
        self.items = []


class GenerativeData(TaskData):
    """Shared collate: rows -> the module's (prompt, target) pairs -> tokens with target-only labels.

    The rows stay in the batch ("rows") so evaluation can read sources, references, tests.
    """

    def collate(self, rows: list[dict]) -> dict:
        module = self.trainer.lightning_module
        prompts, targets = zip(*(module.training_pair(r) for r in rows)) if rows else ((), ())
        ids, mask, labels = encode_pairs(self.tokenizer, list(prompts), list(targets), self.max_tokens,
                                         add_eos=getattr(module.hparams, "add_eos", True))
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "rows": rows}


class GenerativeTask(TaskModule):
    """A conditional LM TaskModule. Subclasses: training_pair(row), update_metrics, metrics.

    Its own arguments; the rest are TaskModule's (passed on as **kwargs).

    Args:
        generation: decoding settings for evaluation and predict (backbone.generate.GenerationConfig).
        add_eos: end every training target with the eos token, so generation learns to stop.
        quantize: decode from a weight-only quantised copy of the backbone: auto, none, int8 or int4
            (backbone.quantize.CHOICES_HELP says what each does).
        engine: what computes the decoding steps: "gptsuite" or "llama.cpp" (the backbone, adapters merged,
            exported as a GGUF of the type `quantize` maps to: backbone.llama_cpp_engine).
        compile_steps: run gptsuite's decoding steps through torch.compile (about a minute to compile on 2
            cores, then faster steps: backbone.decoding_model.CompiledSteps).
    """

    def __init__(self, generation: GenerationConfig | dict | None = None, add_eos: bool = True,
                 quantize: str = AUTO, engine: str = GPTSUITE, compile_steps: bool = False, **kwargs):
        super().__init__(**kwargs)
        check_generative_adapter(self.adapter)
        self.inference_model = InferenceModelCache(quantize, engine, compile_steps)
        self.generation = self.make_config(generation)
        self.hparams.generation = dataclasses.asdict(self.generation)  # JSON-safe in the saved task

    @staticmethod
    def make_config(generation: GenerationConfig | dict | None) -> GenerationConfig:
        if isinstance(generation, GenerationConfig):
            return generation
        return GenerationConfig(**(generation or {}))

    def build_head(self) -> None:
        """No new parameters: the language-model head of the backbone is the task head."""

    # --- training --------------------------------------------------------------------------------------
    def training_pair(self, row: dict) -> tuple[str, str]:
        """(prompt, target) texts of a training example."""
        raise NotImplementedError

    def token_logits(self, batch: dict) -> torch.Tensor:
        return self.backbone.lm_logits(self.encode(batch["input_ids"], batch["attention_mask"]))  # (B, T, V)

    def loss(self, batch: dict) -> torch.Tensor:
        """Next-token cross-entropy on the target tokens only (labels are IGNORE elsewhere)."""
        return lm_loss(self.token_logits(batch), batch["labels"])

    # --- decoding --------------------------------------------------------------------------------------
    def generate(self, prompts: list[str], config: GenerationConfig | None = None,
                 row_max_new_tokens: list[int] | None = None) -> list[str]:
        """Completions of the prompts from the shared decoder (prompt not included, cut at stop strings);
        row_max_new_tokens: each prompt's own limit on new tokens."""
        if not prompts:
            return []
        with torch.autocast(device_type=next(self.backbone.parameters()).device.type, enabled=False):
            return generate_text(self.inference_model(self.backbone, self.tokenizer), self.tokenizer, list(prompts),
                                 config or self.generation, row_max_new_tokens=row_max_new_tokens)
