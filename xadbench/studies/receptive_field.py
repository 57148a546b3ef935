"""The receptive-field study (FCDD paper, appendix A, Tables 3 and 4, Figures 9 and 10): FCDD
with networks whose receptive field grows, trained from scratch.

One ordinary job grid through `grid.run_grid`: an FCDD job per kernel size, class and seed with
`kernel=k` (`xadbench.methods.fcdd_net.kernel_net`: for MVTec-AD six convolutions and three max
pools, every conv k×k, receptive field 19·(k − 1) + 15 = 53 … 243 px for k = 3 … 13, Table 4; for
CIFAR-10-like data the 32 px net with a k×k first conv, k + 15 = 18 … 32 px for k = 3 … 17,
Table 3). With `reference`, the grid also holds the profile's usual FCDD net (appendix D, VGG11-BN
with receptive field 62 and pretrained weights) for comparison. Results, predictions and
checkpoints are a run folder like `xadbench run`'s; `rows` reads the table's numbers from its
results store.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from xadbench import run_folder, runner
from xadbench.errors import XadError
from xadbench.profiles import get_profile
from xadbench.runner import JobSpec

METHOD = "fcdd"
#: Kernel sizes of the paper's nets per network family (appendix A).
PAPER_KERNELS = {"vgg": (3, 5, 7, 9, 11, 13), "cifar10": (3, 5, 7, 9, 11, 13, 15, 17)}
#: The metric each table of the paper reports: Table 4 (MVTec-AD) pixel-wise, Table 3 detection.
PAPER_METRIC = {"vgg": "pixel_auc", "cifar10": "image_auc"}
#: The cpu preset's schedule for these nets, which start from random weights: Adam, few epochs,
#: so that the six MVTec-AD nets train on one class (bottle, 209 images at 128 px) in minutes.
CPU_SCHEDULE = (("epochs", 6), ("batch_size", 16), ("optimizer", "adam"), ("lr", 1e-3), ("weight_decay", 1e-6),
                ("schedule", "none"))


def network_of(dataset: str, root: str | None) -> str:
    """The data set's network family (its declared profile, else the opened data set's); one-line
    error where appendix A has no nets for it."""
    from xadbench.registry import datasets

    declared = datasets.get(dataset).profile if dataset in datasets.names() else None
    profile = declared if isinstance(declared, str) else runner.open_dataset(dataset, root).profile
    network = get_profile(profile).network
    if network not in PAPER_KERNELS:
        raise XadError(f"--dataset {dataset}: the receptive-field study has nets for MVTec-AD-like (224 px) and "
                       f"CIFAR-10-like (32 px) data, not for the {network} network's")
    return network


def parse_kernels(text: str | None, network: str) -> tuple[int, ...]:
    """"3,7,13" → (3, 7, 13), odd sizes ≥ 3; None: the paper's for the network."""
    if text is None:
        return PAPER_KERNELS[network]
    kernels: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if not part.isdigit() or int(part) < 3 or int(part) % 2 == 0:
            raise XadError(f"--kernels {text!r}: {part!r} is not an odd kernel size ≥ 3; use e.g. --kernels 3,5,7")
        if int(part) not in kernels:
            kernels.append(int(part))
    if not kernels:
        raise XadError("--kernels is empty; use e.g. --kernels 3,5,7,9,11,13")
    return tuple(kernels)


def plan_jobs(dataset: str, classes: Sequence[str], kernels: Sequence[int], *, seeds: Sequence[int] = (0,),
              preset: str = "cpu", protocol: str = "unsupervised", root: str | None = None,
              weights: str | None = None, pretrained: bool = True, device: str = "auto",
              reference: bool = True, epochs: int | None = None) -> list[JobSpec]:
    """A job per (kernel, class, seed), the cpu preset with CPU_SCHEDULE; with `reference`, one
    job per (class, seed) of the profile's own FCDD net first. `epochs` overrides every job's."""
    schedule = dict(CPU_SCHEDULE) if preset == "cpu" else {}
    if epochs is not None:
        schedule["epochs"] = epochs
    schedule = tuple(schedule.items())
    common = dict(dataset=dataset, method=METHOD, preset=preset, protocol=protocol, root=root, blur=("none",),
                  weights=weights, pretrained=pretrained, device=device)
    own = (("epochs", epochs),) if epochs is not None else ()
    specs = [JobSpec(class_name=c, seed=s, params=own, **common) for c in classes for s in seeds] if reference else []
    return runner.identify(specs + [JobSpec(class_name=c, seed=s, params=(("kernel", k), *schedule), **common)
                                    for k in kernels for c in classes for s in seeds])


def kernel_of(spec: JobSpec) -> int | None:
    return dict(spec.params).get("kernel")


def rows(specs: Sequence[JobSpec], out: Path) -> pd.DataFrame:
    """One row per job: class, seed, kernel (None for the reference net), receptive field in
    pixels and as a share of the image side, image and pooled pixel AUC, from the run folder."""
    from xadbench.methods.fcdd_net import build_net
    from xadbench.receptive_field import receptive_field

    results = run_folder.read_results(Path(out))
    profiles = {(s.dataset, s.root): get_profile(runner.open_dataset(s.dataset, s.root).profile) for s in specs}
    table = []
    for spec in specs:
        mine = results[results["job_id"] == spec.job_id]
        if mine.empty:
            raise XadError(f"job {spec.class_name} kernel {kernel_of(spec)} seed {spec.seed} has not finished in {out}; "
                           "rerun the study")
        profile = profiles[(spec.dataset, spec.root)]
        size = profile.image_size[spec.preset]
        kernel = kernel_of(spec)
        net, _ = build_net(profile.name, profile.channels, small=True, pretrained=False, kernel=kernel) \
            if kernel is not None else build_net(profile.name, profile.channels, small=True, pretrained=False)
        value = mine.set_index("metric")["value"]
        table.append({"class": spec.class_name, "seed": spec.seed, "kernel": kernel,
                      "receptive_field": receptive_field(net, size).extent, "image_size": size,
                      "image_auc": float(value.get("image_auc", float("nan"))),
                      "pixel_auc": float(value.get("pixel_auc", float("nan"))), "job_id": spec.job_id})
    return pd.DataFrame(table)
