"""Which data sets a run reads, where, with which options and classes: the command line's
--dataset, --root, --dataset-option and --classes turned into one `DataChoice` per data set.

Several data sets in one run (`--dataset mvtec,visa`, or --dataset repeated) share the other
options; each keeps its own root, options and classes: `--root NAME=DIR`, `--dataset-option
NAME.KEY=VALUE` and `--classes NAME:CLASS` name one data set, the unqualified forms apply to every
one (a plain --root DIR only where there is one data set: a folder holds one data set).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xadbench.errors import XadError


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class DataChoice:
    """One data set of a run: its name (or folder path), root (None: its default), constructor
    options as (key, value) pairs, and classes (None: all it has)."""

    name: str
    root: str | None
    options: tuple[tuple[str, str], ...]
    classes: tuple[str, ...] | None


def data_choices(datasets: Sequence[str], roots: Sequence[str], options: Sequence[str], classes: str) -> list[DataChoice]:
    """The run's data sets from the option values (see the module docstring); every malformed or
    unmatched value is a one-line error."""
    names = list(dict.fromkeys(_split(datasets)))
    if not names:
        raise XadError("--dataset is empty; e.g. --dataset mvtec or --dataset mvtec,visa")
    root_of: dict[str, str] = {}
    for value in roots:
        name, sep, folder = value.partition("=")
        if (name if sep and name in names else names[0]) in root_of:
            raise XadError(f"--root {value!r}: that data set's root is given twice")
        if sep and name in names:
            root_of[name] = folder
        elif len(names) == 1 and not (sep and name in names):
            root_of[names[0]] = value
        else:
            raise XadError(f"--root {value!r}: with several data sets ({', '.join(names)}) give --root NAME=DIR, "
                           "NAME one of them")
    pairs: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    for value in options:
        key, sep, setting = value.partition("=")
        if not sep or not key:
            raise XadError(f"--dataset-option {value!r} is not KEY=VALUE or DATASET.KEY=VALUE")
        owner, dot, option = key.rpartition(".")
        targets = [owner] if dot and owner in names else names
        if dot and owner not in names:
            raise XadError(f"--dataset-option {value!r}: {owner!r} is not a data set of this run ({', '.join(names)})")
        for name in targets:
            pairs[name].append((option if dot else key, setting))
    wanted = _split([classes])
    class_of: dict[str, list[str]] = {name: [] for name in names}
    if wanted != ["all"]:
        for entry in wanted:
            owner, colon, class_name = entry.partition(":")
            if colon and owner not in names:
                raise XadError(f"--classes {entry!r}: {owner!r} is not a data set of this run ({', '.join(names)})")
            for name in [owner] if colon else names:
                class_of[name].append(class_name if colon else entry)
        for name, asked in class_of.items():
            if not asked:
                raise XadError(f"--classes names no class of data set {name!r}; add {name}:CLASS or use --classes all")
    return [DataChoice(name, root_of.get(name), tuple(pairs[name]),
                       None if wanted == ["all"] else tuple(dict.fromkeys(class_of[name]))) for name in names]
