"""Configuration keys that were renamed: an old key is refused with a message naming the new one, rather than
jsonargparse's bare "unexpected key" (or, worse, a recipe that silently means something else).

Each LightningCLI passes its own table (old dotted key -> new): the pretraining CLI's is backbone.pretrain_cli's
RENAMED_KEYS, the tasks' is tasks.renamed_keys.RENAMED. A key under a renamed one (`model.config.n_layer`
under `model.config`) is refused as that one.
"""

from __future__ import annotations

from pathlib import Path

import yaml


class RenamedKeyError(ValueError):
    pass


def dotted_keys(tree: object, prefix: str = "") -> set[str]:
    """Every key of a nested mapping, dotted: {"model": {"config": {...}}} -> {"model", "model.config", ...}."""
    if not isinstance(tree, dict):
        return set()
    keys = set()
    for key, value in tree.items():
        keys.add(f"{prefix}{key}")
        keys |= dotted_keys(value, f"{prefix}{key}.")
    return keys


def _renamed_key(key: str, renamed: dict[str, str]) -> str | None:
    """The renamed key that `key` is or lies under, else None."""
    return next((old for old in renamed if key == old or key.startswith(old + ".")), None)


def renamed_keys_in(tree: object, renamed: dict[str, str]) -> list[str]:
    """The renamed keys (old names) that a nested mapping uses, each once, in key order."""
    return list(dict.fromkeys(old for key in sorted(dotted_keys(tree)) if (old := _renamed_key(key, renamed))))


def refuse_renamed_keys(args: list[str], renamed: dict[str, str], hint: str = "") -> None:
    """Raise RenamedKeyError if the command line, or a --config file it names, uses a key of `renamed`;
    `hint`, when given, ends the message (how the new keys are written)."""
    found: dict[tuple[str, str], None] = {}  # (where, old key), in the order met, each once
    for i, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        if flag.startswith("--") and (old := _renamed_key(flag[2:], renamed)):
            found[("the command line", old)] = None
        if flag == "--config" and (inline or i + 1 < len(args)):
            value = inline or args[i + 1]
            path = Path(value)
            where = str(path) if path.is_file() else "--config"
            tree = yaml.safe_load(path.read_text() if path.is_file() else value)
            for old in renamed_keys_in(tree, renamed):
                found[(where, old)] = None
    if found:
        message = "; ".join(f"{where}: `{old}` was renamed `{renamed[old]}`" for where, old in found)
        raise RenamedKeyError(f"{message} ({hint})" if hint else message)
