"""Can a heatmap be told from a trivial map? Three checks beside the pixel AUCs, one function each.

1. Input dependence (every method): the method's own mean map over the test set, used as the map
   of every test image, scored with the same pixel metrics (`<metric>_mean_map`). A map that
   ignores the image scores exactly as well as its mean; a method whose pixel AUC is not clearly
   above its mean map's (by MEAN_MAP_MARGIN) has not explained the images, it has learnt where
   defects usually are.
2. Model randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): the
   fitted network's layers re-initialised, top layer first (the paper's cascade) and all at once,
   and the maps recomputed; reported as the mean over test images of the Spearman rank correlation
   and of the SSIM (Wang et al., 2004) between each original and randomised map, and the pooled
   pixel AUC of the fully randomised maps. A map that survives randomisation explains the
   architecture, not the model. A method opts in through `Method.randomised`.
3. Faithfulness to the anomaly score (deletion and insertion, Petsiuk et al., "RISE", BMVC 2018):
   for each anomalous test image the top-ranked fraction f of its pixels (by the method's map) is
   replaced by its nominal counterpart, and the method's own score recorded for f in FRACTIONS.
   Nominal counterpart, for every method alike: the per-pixel mean of the nominal training images
   (`nominal_reference`). Insertion starts from that reference and puts back the image's top-f
   pixels. Curves are normalised by the score of the reference image r, pooled over images:

       area = Σᵢ ∫₀^F (sᵢ(f) − r) df  /  (F · Σᵢ (sᵢ(0) − r)),   F = max(FRACTIONS) = 0.5,

   (trapezoidal rule) so a deletion curve that keeps the score unchanged has area 1 and one that
   drops to the reference at once has area 0; the same with a fixed random pixel order gives
   `deletion_area_random`, and `faithfulness_gain` = random − map (positive: the map's pixels
   drive the score more than random pixels). NaN when the scores do not depend on the pixels
   (Σ (sᵢ(0) − r) ≈ 0, e.g. the `centre` reference).

Pure functions over arrays and fitted methods; no I/O. The runner calls `sanity_metrics` once
per blur policy, on the post-processed maps the other metrics see.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xadbench.types import Prediction, Sample

if TYPE_CHECKING:
    from xadbench.method import Method

#: A pixel AUC is "clearly above" the mean map's when it exceeds it by at least this much.
MEAN_MAP_MARGIN = 0.05
MEAN_MAP_SUFFIX = "_mean_map"
FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
#: Seed of the re-initialised weights and of the random pixel order (results are repeatable).
SANITY_SEED = 0
#: SSIM constants of Wang et al. (2004): 11×11 Gaussian window, σ 1.5, K1 0.01, K2 0.03, L 1.
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03

RANDOMISED_SPEARMAN = "randomised_spearman"
RANDOMISED_SSIM = "randomised_ssim"
PIXEL_AUC_RANDOMISED = "pixel_auc_randomised"
DELETION_AREA = "deletion_area"
DELETION_AREA_RANDOM = "deletion_area_random"
INSERTION_AREA = "insertion_area"
FAITHFULNESS_GAIN = "faithfulness_gain"
#: Cascade steps reported: "top" re-initialises the layer next to the output, "all" every layer.
CASCADE_STEPS: dict[str, int | None] = {"top": 1, "all": None}


# ---------------------------------------------------------------------------------------------
# 1. Input dependence


def mean_map_prediction(prediction: Prediction) -> Prediction:
    """The prediction with every image's map replaced by the mean map over all of them."""
    maps = prediction.anomaly_map
    mean = maps.mean(axis=0, dtype=np.float64).astype(np.float32)
    return Prediction(prediction.score, np.broadcast_to(mean, maps.shape))


def mean_map_metrics(prediction: Prediction, test: Sequence[Sample],
                     evaluate: Callable[[Prediction, Sequence[Sample]], dict[str, float]]) -> dict[str, float]:
    """`evaluate`'s pixel metrics of the mean-map prediction, named `<metric>_mean_map` (image
    metrics are left out: the scores are unchanged)."""
    metrics = evaluate(mean_map_prediction(prediction), test)
    return {f"{name}{MEAN_MAP_SUFFIX}": value for name, value in metrics.items() if not name.startswith("image_")}


def not_above_mean_map(pixel_auc: float, pixel_auc_mean_map: float, margin: float = MEAN_MAP_MARGIN) -> bool:
    """True when a pixel AUC is not clearly (by `margin`) above the method's own mean map's."""
    return not pixel_auc - pixel_auc_mean_map >= margin


# ---------------------------------------------------------------------------------------------
# 2. Model randomisation


def _layer_groups(module: nn.Module) -> list[list[nn.Module]]:
    """Layers with parameters in registration order (the forward order of our sequential nets):
    each convolution or linear layer starts a group, a normalisation layer joins the group before
    it (a conv and its batch norm are one layer of the cascade)."""
    groups: list[list[nn.Module]] = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            groups.append([m])
        elif isinstance(m, nn.modules.batchnorm._NormBase) and groups:
            groups[-1].append(m)
    return groups


def randomise_layers(module: nn.Module, cascade_step: int | None, seed: int = SANITY_SEED) -> int:
    """Re-initialise, in place, the top `cascade_step` layers of `module` (those nearest the
    output; None: all of them) with each layer's own default initialisation (`reset_parameters`,
    batch norms back to identity statistics), seeded; returns how many layers were reset."""
    groups = _layer_groups(module)[::-1]
    chosen = groups if cascade_step is None else groups[:cascade_step]
    cuda = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        with torch.no_grad():
            for layer in (m for group in chosen for m in group):
                layer.reset_parameters()
    return len(chosen)


def randomised_copy(method: "Method", network_attribute: str, cascade_step: int | None) -> "Method":
    """A deep copy of a fitted method whose network (the attribute named) has its top
    `cascade_step` layers (None: all) re-initialised; the method itself is left untouched. The
    building block of `Method.randomised` for methods with one network."""
    method._check_fitted(network_attribute)
    if cascade_step is not None and cascade_step < 1:
        raise ValueError(f"cascade_step must be at least 1 or None (all layers); got {cascade_step}")
    twin = copy.deepcopy(method)
    randomise_layers(getattr(twin, network_attribute), cascade_step)
    return twin


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of a 1-D array, ties sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(starts + (counts - 1) / 2, counts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps' pixels (Pearson correlation of average ranks);
    NaN when a map is constant."""
    ra, rb = average_ranks(np.ravel(a)), average_ranks(np.ravel(b))
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1] by its own minimum and maximum (a constant map becomes 0)."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    return ((flat - low[:, None]) / span[:, None]).view_as(maps)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean SSIM (Wang et al., IEEE TIP 2004, eq. 13) of each pair of maps (N, H, W), after
    scaling each map to [0, 1] (so L = 1): local statistics under an 11×11 Gaussian window of
    σ 1.5 over the positions where the window fits ('valid', as the authors' reference code),
    C1 = (0.01 L)², C2 = (0.03 L)². Returns (N,) float64."""
    x = _unit_range(torch.as_tensor(np.asarray(a), dtype=torch.float64))[:, None]
    y = _unit_range(torch.as_tensor(np.asarray(b), dtype=torch.float64))[:, None]
    size = min(SSIM_WINDOW, x.shape[-1], x.shape[-2])
    grid = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-grid**2 / (2 * SSIM_SIGMA**2))
    window = torch.outer(g, g)
    window = (window / window.sum())[None, None]

    def local(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window)

    mx, my = local(x), local(y)
    vx, vy, cxy = local(x * x) - mx**2, local(y * y) - my**2, local(x * y) - mx * my
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return index.flatten(1).mean(1).numpy()


def randomisation_metrics(method: "Method", images: torch.Tensor, maps: np.ndarray, test: Sequence[Sample],
                          process: Callable[[np.ndarray], np.ndarray],
                          evaluate: Callable[[Prediction, Sequence[Sample]], dict[str, float]]) -> dict[str, float]:
    """Adebayo et al.'s model randomisation test: per cascade step of CASCADE_STEPS, the mean
    Spearman correlation and SSIM between `maps` (the method's post-processed maps of `images`) and the randomised method's maps after
    the same `process`; and, for all layers randomised, `evaluate`'s pixel AUC of those maps.
    NaN ("not applicable") for a method without the hook."""
    names = [f"{kind}_{step}" for step in CASCADE_STEPS for kind in (RANDOMISED_SPEARMAN, RANDOMISED_SSIM)]
    if all(s.mask is not None for s in test):
        names.append(PIXEL_AUC_RANDOMISED)
    metrics: dict[str, float] = dict.fromkeys(names, float("nan"))
    for step_name, step in CASCADE_STEPS.items():
        twin = method.randomised(step)
        if twin is None:
            return metrics
        prediction = twin.predict(images)
        randomised = process(prediction.anomaly_map)
        metrics[f"{RANDOMISED_SPEARMAN}_{step_name}"] = float(np.nanmean(
            [spearman(m, r) for m, r in zip(maps, randomised)]))
        metrics[f"{RANDOMISED_SSIM}_{step_name}"] = float(ssim(maps, randomised).mean())
        if step is None and PIXEL_AUC_RANDOMISED in metrics:
            scored = evaluate(Prediction(prediction.score, randomised), test)
            metrics[PIXEL_AUC_RANDOMISED] = scored["pixel_auc"]
    return metrics


# ---------------------------------------------------------------------------------------------
# 3. Deletion and insertion


def nominal_reference(nominal_images: torch.Tensor) -> torch.Tensor:
    """The nominal counterpart of every pixel: the per-pixel mean of the nominal training images
    (C, H, W), float32."""
    return nominal_images.double().mean(0).float()


def pixel_order(amap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices from the highest map value down; ties in a random order from `rng`."""
    flat = np.ravel(amap)
    shuffle = rng.permutation(flat.size)
    return shuffle[np.argsort(-flat[shuffle], kind="stable")]


def _curve_images(image: torch.Tensor, reference: torch.Tensor, order: np.ndarray,
                  fractions: Sequence[float], insertion: bool) -> torch.Tensor:
    """(len(fractions), C, H, W): the image with its first round(f·HW) pixels of `order`
    replaced by the reference (deletion), or the reference with those pixels of the image."""
    c, h, w = image.shape
    start, fill = (reference, image) if insertion else (image, reference)
    out = start.reshape(c, h * w).repeat(len(fractions), 1, 1)
    fill = fill.reshape(c, h * w)
    for i, f in enumerate(fractions):
        chosen = torch.from_numpy(order[: int(round(f * h * w))])
        out[i][:, chosen] = fill[:, chosen]
    return out.reshape(len(fractions), c, h, w)


def normalised_area(curves: np.ndarray, original: np.ndarray, reference_score: float,
                    fractions: Sequence[float] = FRACTIONS) -> float:
    """Σᵢ ∫ (curvesᵢ(f) − r) df / (max f · Σᵢ (originalᵢ − r)) by the trapezoidal rule, curves
    (N, len(fractions)); NaN when Σᵢ (originalᵢ − r) is not clearly positive (scores that do not
    depend on the pixels)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    span = float(np.sum(np.asarray(original, np.float64) - reference_score))
    scale = max(float(np.abs(original).max()), abs(reference_score), 1e-12)
    if not span > 1e-6 * scale * len(original):
        return float("nan")
    heights = np.asarray(curves, np.float64) - reference_score
    areas = ((heights[:, 1:] + heights[:, :-1]) / 2 * np.diff(fractions)).sum()
    return float(areas / (fractions[-1] * span))


def faithfulness_metrics(score: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor, labels: np.ndarray,
                         maps: np.ndarray, reference: torch.Tensor,
                         fractions: Sequence[float] = FRACTIONS) -> dict[str, float]:
    """Deletion and insertion areas (module docstring) over the anomalous images (labels 1) of
    `images` (N, C, H, W) ranked by `maps` (N, H, W, the same resolution); `score` maps a batch of
    images to scores (N,). One batch per anomalous image: its deletion curve by the map and at
    random and its insertion curve, 3·len(fractions) images."""
    if fractions[0] != 0:
        raise ValueError("fractions must start at 0 (the unchanged image)")
    anomalous = np.flatnonzero(np.asarray(labels) == 1)
    if len(anomalous) == 0:
        return {}
    rng = np.random.default_rng(SANITY_SEED)
    reference = reference.to(images.dtype)
    reference_score = float(np.asarray(score(reference[None]))[0])
    curves = np.empty((len(anomalous), 3, len(fractions)))
    for row, i in enumerate(anomalous):
        by_map = pixel_order(maps[i], rng)
        at_random = rng.permutation(by_map.size)
        batch = torch.cat([_curve_images(images[i], reference, by_map, fractions, insertion=False),
                           _curve_images(images[i], reference, at_random, fractions, insertion=False),
                           _curve_images(images[i], reference, by_map, fractions, insertion=True)])
        curves[row] = np.asarray(score(batch), np.float64).reshape(3, len(fractions))
    original = curves[:, 0, 0]
    deletion = normalised_area(curves[:, 0], original, reference_score, fractions)
    at_random = normalised_area(curves[:, 1], original, reference_score, fractions)
    return {
        DELETION_AREA: deletion,
        DELETION_AREA_RANDOM: at_random,
        FAITHFULNESS_GAIN: at_random - deletion,
        INSERTION_AREA: normalised_area(curves[:, 2], original, reference_score, fractions),
    }


# ---------------------------------------------------------------------------------------------
# All checks


def sanity_metrics(prediction: Prediction, test: Sequence[Sample],
                   evaluate: Callable[[Prediction, Sequence[Sample]], dict[str, float]],
                   method: "Method | None" = None, images: torch.Tensor | None = None,
                   process: Callable[[np.ndarray], np.ndarray] | None = None,
                   reference: torch.Tensor | None = None) -> dict[str, float]:
    """Every check that applies. `prediction` holds the post-processed maps the other metrics
    see; `evaluate` is the runner's metric function. With a fitted `method`, its input `images`
    and the post-processing `process`, also randomisation (methods that support it) and, given
    the nominal `reference`, deletion and insertion. A method whose map is the same for every
    image (`Method.constant_map`) is its own mean map: that check does not apply to it."""
    metrics: dict[str, float] = {}
    if all(s.mask is not None for s in test) and not (method is not None and method.constant_map):
        metrics.update(mean_map_metrics(prediction, test, evaluate))
    if method is None or images is None or process is None:
        return metrics
    metrics.update(randomisation_metrics(method, images, prediction.anomaly_map, test, process, evaluate))
    if reference is not None:
        labels = np.array([s.label for s in test])
        metrics.update(faithfulness_metrics(method.score_images, images, labels, prediction.anomaly_map, reference))
    return metrics
