"""Parsing of the comma-separated options every command shares (--methods, --classes, --seeds)."""
from __future__ import annotations

from xadbench.errors import XadError


def split_list(value: str | None) -> list[str]:
    """"a, b,,c" → ["a", "b", "c"]; None or "" → []."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


def parse_seeds(value: str) -> tuple[int, ...]:
    """--seeds "0,1,2" → (0, 1, 2), duplicates dropped in order; a one-line error otherwise."""
    try:
        seeds = tuple(int(s) for s in split_list(value))
    except ValueError:
        raise XadError(f"--seeds {value!r}: use comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds:
        raise XadError("--seeds is empty; use e.g. --seeds 0,1,2")
    return tuple(dict.fromkeys(seeds))
