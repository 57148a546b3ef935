"""Heatmap post-processing that every method shares: Gaussian kernels, blur, resize, the one
named post-processor between a method's raw maps and the evaluator (`PostProcessor`) and the
paper's quantile normalisation for display (appendix C).

Inputs and outputs are float32 numpy arrays; torch is used inside for the convolutions.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from xadbench.errors import XadError

REFERENCES = ("local", "global")
#: "gaussian": the paper's shared blur of the baselines' maps; "none": every map as the method made it.
BLUR_POLICIES = ("gaussian", "none")


def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    if size < 1 or sigma <= 0:
        raise ValueError(f"Gaussian kernel needs size >= 1 and sigma > 0; got {size}, {sigma}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.exp(-(x**2) / (2 * sigma**2))


def gaussian_kernel(size: int, sigma: float, normalise: bool) -> torch.Tensor:
    """A size×size float32 Gaussian centred at ((size-1)/2, (size-1)/2); even sizes work too.

    normalise=False: exp(-d²/2σ²), the peak-1 Gaussian of FCDD's receptive-field upsampling
    (paper Algorithm 1; the reference implementation does not normalise it either). For an even
    size the centre falls between pixels, so the largest sampled value is below 1.
    normalise=True: divided by its sum, so it sums to 1 (for blurring: keeps a constant map
    constant).
    """
    g = _gaussian_1d(size, sigma)
    k = torch.outer(g, g)
    if normalise:
        k = k / k.sum()
    return k.to(torch.float32)


def blur(maps: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Blur (N, H, W) maps with the normalised size×size Gaussian; returns (N, H, W) float32.

    The paper blurs the baselines' heatmaps "with the same Gaussian kernel we use for FCDD"
    (sec. 4): size = FCDD's receptive field, σ = the data set's upsampling σ (see profiles.py).
    Borders are replicate-padded, exactly for any kernel size, even one larger than the map.
    For an even size the output is shifted by half a pixel towards the top left, the least any
    same-size output can be. The Gaussian is separable, so two 1-D passes do the work of one 2-D
    convolution at a fraction of the cost.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"blur wants maps of shape (N, H, W); got {maps.shape}")
    g = _gaussian_1d(size, sigma)
    g = (g / g.sum()).to(torch.float32)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    n, h, w = maps.shape
    x = torch.from_numpy(np.require(maps, requirements=["C", "W"]))
    # Replicate padding by clamped indices: unlike F.pad it has no limit on the pad width.
    rows = torch.arange(-before, h + after).clamp_(0, h - 1)
    cols = torch.arange(-before, w + after).clamp_(0, w - 1)
    x = x[:, rows][:, :, cols].unsqueeze(1)
    with torch.no_grad():
        x = F.conv2d(x, g.view(1, 1, size, 1))
        x = F.conv2d(x, g.view(1, 1, 1, size))
    return x.squeeze(1).numpy()


def resize_map(map2d: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (align_corners=False) of a 2-D map to `shape`, float32; identity when the
    shape already matches (a copy). Used to bring heatmaps to the ground-truth mask's resolution."""
    map2d = np.asarray(map2d, dtype=np.float32)
    if map2d.ndim != 2:
        raise ValueError(f"resize_map wants a 2-D map; got {map2d.shape}")
    shape = (int(shape[0]), int(shape[1]))
    if map2d.shape == shape:
        return map2d.copy()
    x = torch.from_numpy(np.require(map2d, requirements=["C", "W"]))[None, None]
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


@dataclass(frozen=True)
class PostProcessor:
    """The one post-processing step between a method's raw maps and the evaluator (paper sec. 4:
    the baselines' heatmaps are blurred "with the same Gaussian kernel we use for FCDD").

    Under blur policy "gaussian", maps that are not smooth by construction are blurred with the
    normalised size×size Gaussian (`blur`): size = the receptive field of the profile's FCDD net,
    σ = its upsampling σ; maps the method declares smooth (`Method.maps_smoothed`: FCDD's Gaussian
    upsampling) stay as they are. Policy "none" leaves every map raw. The evaluator then resizes
    maps to the ground truth's resolution (`resize_map`). Every predictions file stores the raw
    maps and this record (`record`: NAME and the parameters), so a reader applies the very same
    step."""

    size: int
    sigma: float
    maps_smoothed: bool
    NAME: ClassVar[str] = "shared-gaussian-blur"

    def __call__(self, maps: np.ndarray, policy: str) -> np.ndarray:
        """(N, H, W) maps after the blur policy (float32 when blurred, else unchanged)."""
        if policy not in BLUR_POLICIES:
            raise XadError(f"blur policy {policy!r} is unknown; use {' or '.join(BLUR_POLICIES)}")
        if policy == "gaussian" and not self.maps_smoothed:
            return blur(maps, self.size, self.sigma)
        return maps

    def record(self) -> str:
        """The post-processor as one JSON line: {"name": NAME, "size": ..., "sigma": ..., "maps_smoothed": ...}."""
        return json.dumps({"name": self.NAME, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_record(cls, text: str, where: Any) -> "PostProcessor":
        """The post-processor a `record` describes; one XadError line naming `where` otherwise."""
        try:
            values = json.loads(str(text))
            name = values.pop("name")
            if name != cls.NAME:
                raise XadError(f"{where}: maps post-processed by {name!r}, which this xadbench does not know "
                               f"(it knows {cls.NAME!r}); rerun the job into a new --out")
            return cls(size=int(values["size"]), sigma=float(values["sigma"]), maps_smoothed=bool(values["maps_smoothed"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise XadError(f"{where}: unreadable post-processor record {str(text)[:80]!r} ({type(exc).__name__})") from None


def saved_maps(predictions: dict[str, np.ndarray], policy: str, index: Any = slice(None),
               where: Any = "predictions") -> np.ndarray:
    """The raw maps of a predictions file (those at `index`) after the post-processor it records
    under blur `policy`, float32."""
    process = PostProcessor.from_record(predictions["postprocessor"], where)
    return np.asarray(process(predictions["anomaly_map"][index].astype(np.float32), policy), dtype=np.float32)


def scored_maps(raw: np.ndarray, process: PostProcessor, policy: str) -> np.ndarray:
    """The (N, H, W) maps every pixel metric scores, in results.csv and in the bootstrap alike
    (`metrics.registry.PIXEL_RESOLUTION`): the raw maps as the predictions file keeps them
    (float16), after the blur `policy`, stored as float16 again."""
    stored = np.asarray(raw, dtype=np.float16).astype(np.float32)
    return np.asarray(process(stored, policy)).astype(np.float16)


#: A mask more than this many times the scoring resolution per side is named in a warning: its
#: nearest-neighbour downsampling keeps one pixel in LARGE_MASK_RATIO² and can drop thin defects.
LARGE_MASK_RATIO = 16


def scoring_masks(masks: Sequence, shape: tuple[int, int]) -> np.ndarray:
    """The (N, H, W) bool masks at the scoring resolution `shape` (the maps'), each brought there
    by nearest neighbour, so every test image weighs the same in a pooled pixel metric whatever
    its file's size."""
    height, width = int(shape[0]), int(shape[1])
    out = np.empty((len(masks), height, width), dtype=bool)
    for i, mask in enumerate(masks):
        mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        out[i] = F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest")[0, 0].bool().numpy()
    return out


def warn_large_masks(masks: Sequence, shape: tuple[int, int], keys: Sequence[str]) -> None:
    """One warning naming the test images (`keys`) whose masks are over LARGE_MASK_RATIO times
    the scoring resolution `shape` per side."""
    height, width = int(shape[0]), int(shape[1])
    large = [f"{key} ({mask.shape[1]}x{mask.shape[0]})" for key, mask in zip(keys, masks)
             if mask.shape[0] > LARGE_MASK_RATIO * height or mask.shape[1] > LARGE_MASK_RATIO * width]
    if large:
        shown = ", ".join(large[:3]) + (f" and {len(large) - 3} more" if len(large) > 3 else "")
        warnings.warn(f"test image(s) {shown} are over {LARGE_MASK_RATIO}x the scoring resolution {width}x{height} "
                      "per side: their masks are downsampled (nearest), so thin defects may vanish", stacklevel=2)


def _normalise(x: np.ndarray, lo, q) -> np.ndarray:
    """clamp((x - lo) / q, 0, 1); where q is 0 it takes the limit q -> 0+, i.e. 1 above lo and
    0 at lo (a constant map becomes zeros, never NaN)."""
    d = x - lo
    safe_q = np.where(q > 0, q, 1)
    out = np.where(q > 0, d / safe_q, (d > 0).astype(np.float32))
    return np.clip(out, 0, 1).astype(np.float32)


def quantile_normalise(
    maps: np.ndarray,
    eta: float,
    reference: str = "local",
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Scale (N, H, W) heatmaps to [0, 1] for display, as in the paper's appendix C.

    I(X) = clamp((A'(X) - min A) / q_η({A' - min A : A' ∈ A}), 0, 1), with min and the
    η-quantile taken over all pixels of the reference set A:
    - reference="local": A is the image itself (the paper's MVTec-AD and CIFAR-10 figures);
    - reference="global": A is a label-balanced subset of `maps` (the paper's "complete balanced
      test set" for Fashion-MNIST, ImageNet and VOC): the majority label is subsampled at random
      (numpy generator seeded with `seed`) to the minority's count. `labels` (N,) is required.
    The paper clamps at 1 only; we also clamp at 0, which matters only for maps outside the global
    reference subset. A zero quantile is handled as its limit (see `_normalise`), so constant maps
    give zeros, not NaN. Returns float32.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"quantile_normalise wants maps of shape (N, H, W); got {maps.shape}")
    if not 0 < eta <= 1:
        raise ValueError(f"eta must be in (0, 1]; got {eta}")
    if reference == "local":
        lo = maps.min(axis=(1, 2), keepdims=True)
        q = np.quantile((maps - lo).reshape(len(maps), -1), eta, axis=1)
        return _normalise(maps, lo, q.reshape(-1, 1, 1).astype(np.float32))
    if reference != "global":
        raise ValueError(f"unknown reference {reference!r}; known: {', '.join(REFERENCES)}")
    if labels is None:
        raise ValueError('reference="global" needs labels to balance the reference set')
    labels = np.asarray(labels).astype(bool).ravel()
    if len(labels) != len(maps):
        raise ValueError(f"got {len(labels)} labels for {len(maps)} maps")
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    k = min(len(pos), len(neg))
    if k == 0:
        raise ValueError("a balanced global reference needs maps of both labels")
    rng = np.random.default_rng(seed)
    if len(pos) > k:
        pos = rng.choice(pos, size=k, replace=False)
    if len(neg) > k:
        neg = rng.choice(neg, size=k, replace=False)
    ref = maps[np.sort(np.concatenate([pos, neg]))]
    lo = ref.min()
    q = np.float32(np.quantile(ref - lo, eta))
    return _normalise(maps, lo, q)
