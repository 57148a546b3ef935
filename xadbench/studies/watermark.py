"""The synthetic watermark of the Clever Hans study (paper section 4.3) and the measure of how
much of a heatmap falls on it.

The mark is "© xad" in white with a black outline, 80 % opaque, in a box of 50 % × 18 % of the
image, 4 % of the shorter side from the left and bottom edges, so it scales with the image; it
stands in for the watermarks in the lower left corner of a fifth of Pascal VOC's horse images
(Lapuschkin et al., 2019).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from xadbench.errors import XadError

WATERMARK_TEXT = "© xad"
#: Box size as a share of the image's width and height, and its distance from the left and
#: bottom edges as a share of the shorter side.
BOX_WIDTH, BOX_HEIGHT, BOX_MARGIN = 0.5, 0.18, 0.04
OPACITY = 0.8
#: The text is drawn this many times larger than the box, then shrunk into it (antialiasing).
RENDER_SCALE = 8
#: Bump when the watermark's look changes: finished jobs with the old one are then rerun.
WATERMARK_VERSION = 1


@dataclass(frozen=True)
class Box:
    """A pixel box: rows top..top+height-1, columns left..left+width-1."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def area_share(self, height: int, width: int) -> float:
        return self.height * self.width / (height * width)

    def mask(self, height: int, width: int) -> np.ndarray:
        inside = np.zeros((height, width), dtype=bool)
        inside[self.top:self.bottom, self.left:self.right] = True
        return inside


def watermark_box(height: int, width: int) -> Box:
    """Where the watermark goes on a height × width image: the lower left corner, sized with the
    image (BOX_WIDTH × BOX_HEIGHT of it, BOX_MARGIN of the shorter side from the edges)."""
    if height < 2 or width < 2:
        raise ValueError(f"a watermark needs an image of at least 2×2 pixels; got {height}×{width}")
    box_h = min(height, max(1, round(BOX_HEIGHT * height)))
    box_w = min(width, max(1, round(BOX_WIDTH * width)))
    margin = round(BOX_MARGIN * min(height, width))
    margin = min(margin, height - box_h, width - box_w)
    return Box(top=height - margin - box_h, left=margin, height=box_h, width=box_w)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, OSError, ImportError):  # no FreeType: PIL's bitmap font, scaled below
        return ImageFont.load_default()


@lru_cache(maxsize=32)
def _watermark_layer(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(colour (3, h, w), alpha (h, w)) of the watermark box for an image size, float32 in [0, 1].
    Cached: callers must not modify them."""
    box = watermark_box(height, width)
    big = max(8, box.height * RENDER_SCALE)
    font = _font(big)
    stroke = max(1, big // 10)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), WATERMARK_TEXT, font=font, stroke_width=stroke)
    canvas = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((-left, -top), WATERMARK_TEXT, font=font, fill=(255, 255, 255, 255),
                                stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    layer = np.asarray(canvas.resize((box.width, box.height), Image.Resampling.LANCZOS), dtype=np.float32) / 255
    colour = torch.from_numpy(np.ascontiguousarray(layer[..., :3].transpose(2, 0, 1)))
    alpha = torch.from_numpy(np.ascontiguousarray(layer[..., 3] * OPACITY))
    return colour, alpha


def stamp(image: torch.Tensor) -> torch.Tensor:
    """A copy of `image` (C, H, W) in [0, 1] with the watermark alpha-blended into its box
    (`watermark_box`); pixels outside the box are untouched. Deterministic."""
    if image.ndim != 3:
        raise ValueError(f"stamp wants one image (C, H, W); got shape {tuple(image.shape)}")
    channels, height, width = image.shape
    colour, alpha = _watermark_layer(int(height), int(width))
    box = watermark_box(int(height), int(width))
    colour_t = colour.to(image)
    if channels != 3:
        colour_t = colour_t.mean(0, keepdim=True).expand(channels, -1, -1)
    alpha_t = alpha.to(image)
    out = image.clone()
    region = out[:, box.top:box.bottom, box.left:box.right]
    out[:, box.top:box.bottom, box.left:box.right] = region * (1 - alpha_t) + colour_t * alpha_t
    return out


def pick_watermarked(keys: Sequence[str], fraction: float, salt: str = "train") -> frozenset[str]:
    """The keys that get the watermark: round(fraction · n) of them (halves round up), ranked by
    a hash of (salt, key), so the choice depends on neither the order nor a random state, and a
    larger fraction keeps the smaller fraction's images."""
    if not 0 <= fraction <= 1:
        raise XadError(f"--fraction {fraction}: the share of watermarked images must lie in [0, 1], e.g. 0.2")
    count = math.floor(fraction * len(keys) + 0.5)
    ranked = sorted(keys, key=lambda k: hashlib.sha1(f"{salt}/{k}".encode()).hexdigest())
    return frozenset(ranked[:count])


def mass_share(maps: np.ndarray, box: Box) -> np.ndarray:
    """The share of each map's mass inside `box`, after shifting the map by its own minimum (so
    it is non-negative): Σ_box (A − min A) / Σ (A − min A), one value per map of (N, H, W).
    A constant map (no mass after the shift) counts as uniform: box area / image area."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"mass_share wants maps (N, H, W); got {maps.shape}")
    shifted = maps - maps.min(axis=(1, 2), keepdims=True)
    total = shifted.sum(axis=(1, 2))
    inside = shifted[:, box.top:box.bottom, box.left:box.right].sum(axis=(1, 2))
    uniform = box.area_share(maps.shape[1], maps.shape[2])
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), uniform)

