"""The σ study (FCDD paper, appendix B, Table 5 and Figure 11): FCDD's pixel-wise AUC as the σ
of the Gaussian in its heatmap upsampling (Algorithm 1) grows.

σ only enters the upsampling of the low-resolution heatmap A (and, semi-supervised, the
pixel-wise loss of eq. 3), so the study trains ONE FCDD model per class and seed, as an ordinary
job grid through `grid.run_grid` (one store, one resume; each job keeps its checkpoint), and
then rescores every model's test images at each σ without retraining. Unsupervised training
(confetti, eq. 2, the default) does not use σ at all, so the rescored numbers are exactly those
of a model trained at that σ; a semi-supervised model is trained at its preset's σ.

σ values are given at the paper's scale (4, 6, ..., 16 px at 224 px, Table 5) and scaled to the
preset's image size (×128/224 for MVTec-AD's cpu preset), so a row compares like with like.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xadbench import grid, protocols, run_folder, runner
from xadbench.errors import XadError
from xadbench.evaluator import IMAGE_AUC, PIXEL_AUC
from xadbench.files import atomic_write
from xadbench.profiles import get_profile
from xadbench.runner import JobSpec
from xadbench.types import Prediction, stack_images

#: Table 5's σ values, in pixels at the paper's MVTec-AD input size.
PAPER_SIGMAS = (4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0)
PAPER_IMAGE_SIZE = 224
METHOD = "fcdd"
ROWS_FILE = "sigma_runs.csv"
MAPS_FILE = "sigma_maps.npz"
#: Anomalous test images whose maps at every σ the figure shows (those of the first job).
SAMPLES = 4


def parse_sigmas(text: str) -> tuple[float, ...]:
    """"4,6,8" → (4.0, 6.0, 8.0): positive σ values at the paper's 224 px, duplicates dropped."""
    values: list[float] = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        try:
            value = float(part)
        except ValueError:
            raise XadError(f"--sigmas {text!r}: {part!r} is not a number; use e.g. --sigmas 4,6,8,10,12,14,16") from None
        if not value > 0 or not np.isfinite(value):
            raise XadError(f"--sigmas {text!r}: σ must be a positive number of pixels, got {part}")
        if value not in values:
            values.append(value)
    if not values:
        raise XadError("--sigmas is empty; use e.g. --sigmas 4,6,8,10,12,14,16")
    return tuple(values)


def plan_jobs(dataset: str, classes: Sequence[str], *, seeds: Sequence[int] = (0,), preset: str = "cpu",
              protocol: str = "unsupervised", root: str | None = None, weights: str | None = None,
              pretrained: bool = True, device: str = "auto", params: tuple = ()) -> list[JobSpec]:
    """One FCDD training job per class and seed, as `xadbench run` builds it (blur "none": FCDD's
    maps are smoothed by construction, the shared blur never applies to them)."""
    return grid.plan_grid(classes, [METHOD], seeds=seeds, params={METHOD: params}, dataset=dataset, preset=preset,
                          protocol=protocol, root=root, blur=("none",), weights=weights, pretrained=pretrained,
                          device=device)


def rescore(specs: Sequence[JobSpec], out: Path, sigmas: Sequence[float], device: str = "auto",
            samples: int = SAMPLES) -> pd.DataFrame:
    """Every finished job's model at every σ (paper scale): a row per (class, seed, σ) with the
    σ in pixels at the job's image size and the image and pooled pixel AUC. Writes the rows to
    <out>/tables/sigma_runs.csv and, for the first job, the maps of `samples` anomalous test
    images at every σ to <out>/sigma_maps.npz (the figure's)."""
    out = Path(out)
    rows, maps = [], {}
    for index, spec in enumerate(specs):
        checkpoint = out / "checkpoints" / f"{spec.job_id}.pt"
        if not checkpoint.is_file():
            raise XadError(f"{checkpoint} is missing: job {spec.class_name} seed {spec.seed} has not finished; "
                           "rerun the study")
        dataset = runner.open_dataset(spec.dataset, spec.root)
        task = dataset.load(spec.class_name, get_profile(dataset.profile).image_size[spec.preset])
        _, test = protocols.prepare(task, spec.protocol, seed=spec.seed, k=spec.k)
        if not all(s.mask is not None for s in test):
            raise XadError(f"{spec.dataset}/{spec.class_name} has no pixel ground truth; the σ study needs masks")
        images = stack_images(test)
        model = run_folder.load_checkpoint(checkpoint, device)
        scale = images.shape[-1] / PAPER_IMAGE_SIZE  # σ scales with the input's size
        if index == 0:
            chosen = np.flatnonzero([s.label == 1 for s in test])[:samples]
            maps["image"] = (images[chosen].clamp(0, 1) * 255).round().byte().numpy()
            maps["category"] = np.array([test[i].category for i in chosen])
        for sigma in sigmas:
            model.sigma = sigma * scale
            prediction = model.predict(images)
            # Scored as the runner scores a job: FCDD's maps need no blur, and are kept as float16.
            stored = Prediction(prediction.score, prediction.anomaly_map.astype(np.float16))
            metrics = runner.evaluate(stored, test)
            rows.append({"class": spec.class_name, "seed": spec.seed, "sigma_paper": sigma,
                         "sigma_px": round(sigma * scale, 4), "image_size": int(images.shape[-1]),
                         IMAGE_AUC: metrics[IMAGE_AUC], PIXEL_AUC: metrics[PIXEL_AUC], "job_id": spec.job_id})
            if index == 0:
                maps[f"sigma={sigma:g}"] = prediction.anomaly_map[chosen]
    table = pd.DataFrame(rows)
    with atomic_write(out / "tables" / ROWS_FILE) as handle:
        table.to_csv(handle, index=False)
    with atomic_write(out / MAPS_FILE, "wb") as handle:
        np.savez_compressed(handle, **maps)
    return table
