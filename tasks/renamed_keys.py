"""Configuration keys that were renamed: an old key is refused with a message naming the new one, rather than
jsonargparse's bare "unexpected key" (or, worse, a recipe that silently means something else)."""

from __future__ import annotations

from pathlib import Path

import yaml

RENAMED = {  # old dotted key -> new dotted key
    "model.context": "model.bidirectional",
    "model.context_hidden": "model.bidirectional_hidden",
}


class RenamedKeyError(ValueError):
    pass


def _dotted(tree: object, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return set()
    keys = set()
    for key, value in tree.items():
        keys.add(f"{prefix}{key}")
        keys |= _dotted(value, f"{prefix}{key}.")
    return keys


def refuse_renamed_keys(args: list[str]) -> None:
    """Raise RenamedKeyError if the command line, or a --config file it names, uses a renamed key."""
    found: list[tuple[str, str]] = []  # (where, old key)
    for i, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        if flag.startswith("--") and flag[2:] in RENAMED:
            found.append(("the command line", flag[2:]))
        if flag == "--config" and (inline or i + 1 < len(args)):
            value = inline or args[i + 1]
            path = Path(value)
            where = str(path) if path.is_file() else "--config"
            tree = yaml.safe_load(path.read_text() if path.is_file() else value)
            found += [(where, key) for key in sorted(_dotted(tree)) if key in RENAMED]
    if found:
        raise RenamedKeyError("; ".join(f"{where}: `{old}` was renamed `{RENAMED[old]}`" for where, old in found))
