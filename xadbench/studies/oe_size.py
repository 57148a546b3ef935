"""The Outlier Exposure size study (paper section 4.1, Figure 6): how the heatmaps change as a
model sees more OE images in training.

One grid of ordinary runner jobs (`grid.run_grid`, so results go to <out>/results.csv and
predictions to <out>/predictions/, and a rerun skips finished jobs): for every method that can
use anomalies (supervision "labels" or "masks", e.g. FCDD and the gradient baseline) one job per
OE limit (the paper's 2, 8, 128, 2048 and all) and seed, `JobSpec(oe=..., oe_limit=...)`; a
method that cannot (supervision "none", e.g. the AE) is trained once per seed without OE, since
any limit would give it the same data: its jobs are deduplicated to one.

When the OE source is the data set itself (the same name or folder), its nominal class is left
out of the OE by default ("auto"), so no nominal class image is ever presented as an anomaly.
The paper uses a disjoint source (CIFAR-100 for CIFAR-10); a source that shares the test set's
anomalous classes, such as CIFAR-10's other classes, makes detection easier than the paper's.
The table and figure: `xadbench.reports.oe_size`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from xadbench import grid, runner
from xadbench.errors import XadError
from xadbench.profiles import check_preset
from xadbench.registry import methods as method_registry
from xadbench.runner import JobSpec

DEFAULT_LIMITS: tuple[int | None, ...] = (2, 8, 128, 2048, None)
AUTO = "auto"


def parse_limits(text: str) -> tuple[int | None, ...]:
    """"2,8,128,2048,all" → (2, 8, 128, 2048, None); duplicates dropped, order kept."""
    limits: list[int | None] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if part.lower() == "all":
            value = None
        else:
            try:
                value = int(part)
            except ValueError:
                raise XadError(f"--limits {text!r}: {part!r} is not a number; use e.g. --limits 2,8,128,2048,all") from None
            if value < 1:
                raise XadError(f"--limits {text!r}: an OE size must be at least 1; use e.g. --limits 2,8,128,2048,all")
        if value not in limits:
            limits.append(value)
    if not limits:
        raise XadError("--limits is empty; use e.g. --limits 2,8,128,2048,all")
    return tuple(limits)


def limit_label(limit: int | None) -> str:
    return "all" if limit is None else str(limit)


def same_source(dataset: str, oe: str, root: str | None) -> bool:
    """Whether the OE source is the data set itself: the same name, or the same folder (a path,
    or "folder" standing for --root)."""
    if dataset == oe:
        return True

    def folder(name: str) -> Path | None:
        path = Path(root) if name == "folder" and root else Path(name)
        return path.resolve() if path.is_dir() else None

    return folder(dataset) is not None and folder(dataset) == folder(oe)


def plan_jobs(dataset: str, class_name: str, oe: str, *, methods: Sequence[str], limits: Sequence[int | None] = DEFAULT_LIMITS,
              seeds: Sequence[int] = (0,), root: str | None = None, preset: str = "cpu",
              oe_exclude: Sequence[str] | str = AUTO, weights: str | None = None, pretrained: bool = True,
              device: str = "auto") -> list[JobSpec]:
    """The grid, with job ids: one job per (OE method, limit, seed) and one per (nominal-only
    method, seed)."""
    if oe_exclude == AUTO:
        oe_exclude = (class_name,) if same_source(dataset, oe, root) else ()
    common = dict(dataset=dataset, class_name=class_name, preset=preset, root=root, weights=weights,
                  pretrained=pretrained, device=device)
    specs = [runner.without_unused_outlier_exposure(
                 JobSpec(method=method, seed=seed, oe=oe, oe_limit=limit, oe_exclude=tuple(oe_exclude), **common))
             for method in methods for seed in seeds for limit in limits]
    return runner.identify(specs)


def check_inputs(dataset: str, class_name: str, oe: str, root: str | None, methods: Sequence[str], preset: str) -> str:
    """Open the data set and the OE source and check the class; returns the class's canonical
    name. Every problem is one XadError line naming the option."""
    check_preset(preset)
    if not methods:
        raise XadError("--methods is empty; e.g. --methods fcdd,grad,ae")
    for method in methods:
        method_registry.get(method)
    if root is not None and not Path(root).is_dir():
        raise XadError(f"--root {root}: no such folder; pass the folder that holds the data set")
    if dataset not in _registered() and not Path(dataset).is_dir():
        raise XadError(f"--dataset {dataset}: neither a registered data set nor a folder; pass a name from "
                       "`xadbench datasets list` or a folder-per-class path")
    data = runner.open_dataset(dataset, root)
    classes = data.classes()
    if class_name not in classes:
        from xadbench.datasets.onevsrest import resolve_class

        class_name = resolve_class(class_name, classes, f"--class: data set {dataset}")
    if oe not in _registered() and not Path(oe).is_dir():
        raise XadError(f"--oe {oe}: neither a registered data set nor a folder; pass e.g. --oe cifar100 or a folder path")
    runner.open_dataset(oe, root).classes()  # a missing OE source fails here, not after the first job
    return class_name


def _registered() -> list[str]:
    from xadbench.registry import datasets

    return datasets.names()


def run(specs: Sequence[JobSpec], out: Path, progress: runner.Progress | None = None) -> pd.DataFrame:
    """Run the grid (skipping finished jobs); returns the rows of these jobs."""
    results = grid.run_grid(specs, Path(out), progress)
    return results[results["job_id"].isin([s.job_id for s in specs])].reset_index(drop=True)
