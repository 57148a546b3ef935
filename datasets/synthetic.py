"""Built-in synthetic data in the exact MVTec-AD layout, so everything runs on an offline machine.

`generate` draws procedural classes, two textures and two objects, each with nominal variation
(shifts, rotations, lighting, noise, texture phase, natural blemishes) and several defect kinds
(scratches, holes, stains or colour spots, missing parts) with their exact pixel masks. Defects are
low-contrast and overlap the nominal variation on purpose, so a per-pixel z-score does not solve
them. Defects are placed uniformly over the texture or the object, borders and rims included, so
that a map that only marks the image centre (the `centre` reference) gains nothing. `SyntheticMVTec` reads the result with the same loader as the real data set.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from xadbench.data_root import cache_home
from xadbench.datasets.mvtec import MVTecAD
from xadbench.errors import DataError, XadError

SIZE = 128
N_TRAIN = 60
N_TEST_GOOD = 15
N_TEST_PER_DEFECT = 10
SEED = 0
#: Bump the version when the generator's output changes, so old caches are not reused.
CACHE_NAME = f"synthetic-v2-seed{SEED}"
NOISE = 0.01

DEFECTS: dict[str, tuple[str, ...]] = {
    "fabric": ("hole", "stain", "thread"),
    "wood": ("color", "hole", "scratch"),
    "cap": ("missing", "scratch", "stain"),
    "pill": ("chip", "color", "crack"),
}
CLASSES = tuple(DEFECTS)

Array = np.ndarray


# ---------------------------------------------------------------------------------------------
# Drawing helpers. Images are float32 (H, W, 3) in [0, 1]; shapes are float32 (H, W) coverage.


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[Array, Array]:
    """Pixel coordinates (y, x), shared read-only (building them anew per image is slow)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _smooth(rng: np.random.Generator, size: int, cells: int | tuple[int, int]) -> Array:
    """Smooth noise with unit-ish amplitude: a coarse random grid upsampled bicubically."""
    rows, cols = (cells, cells) if isinstance(cells, int) else cells
    coarse = rng.standard_normal((rows, cols)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def _rotate(y: Array, x: Array, cy: float, cx: float, degrees: float) -> tuple[Array, Array]:
    """Coordinates (v, u) of each pixel in a frame centred at (cy, cx) and turned by `degrees`."""
    a = math.radians(degrees)
    dy, dx = y - cy, x - cx
    return dy * math.cos(a) - dx * math.sin(a), dx * math.cos(a) + dy * math.sin(a)


def _coverage(signed_distance: Array) -> Array:
    """Antialiased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(signed_distance + 0.5, 0.0, 1.0)


def _blob(rng: np.random.Generator, size: int, cy: float, cx: float, radius: float,
          irregular: float = 0.25) -> Array:
    """An irregular elliptical blob, at least 2 px in radius so that small sizes keep it."""
    radius = max(radius, 2.0)
    y, x = _grid(size)
    v, u = _rotate(y, x, cy, cx, rng.uniform(0, 180))
    aspect = rng.uniform(0.6, 1.0)
    r = np.sqrt((u / radius) ** 2 + (v / (radius * aspect)) ** 2)
    wobble = 1.0 + irregular * _smooth(rng, size, max(4, int(size / radius)))
    return _coverage((wobble - r) * radius * aspect)


def _curve(rng: np.random.Generator, size: int, points: Array, width: float) -> Array:
    """A quadratic Bezier stroke through three control points (rows of (y, x))."""
    t = np.linspace(0.0, 1.0, 64, dtype=np.float32)[:, None]
    p0, p1, p2 = points
    samples = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    shape = np.zeros((size, size), np.float32)
    # Distances only within the stroke's bounding box: the full image would be 10x slower.
    margin = width + 2
    top, left = np.clip(np.floor(samples.min(axis=0) - margin).astype(int), 0, size)
    bottom, right = np.clip(np.ceil(samples.max(axis=0) + margin).astype(int) + 1, 0, size)
    y, x = np.mgrid[top:bottom, left:right].astype(np.float32)
    d2 = (y[..., None] - samples[:, 0]) ** 2 + (x[..., None] - samples[:, 1]) ** 2
    shape[top:bottom, left:right] = _coverage(width / 2 - np.sqrt(d2.min(axis=-1)))
    return shape


def _stroke_points(rng: np.random.Generator, cy: float, cx: float, length: float) -> Array:
    """Three control points of a slightly bent stroke of about `length` centred at (cy, cx)."""
    a = rng.uniform(0, math.pi)
    d = np.array([math.sin(a), math.cos(a)], np.float32) * length / 2
    bend = np.array([-d[1], d[0]]) * rng.uniform(-0.4, 0.4)
    c = np.array([cy, cx], np.float32)
    return np.stack([c - d, c + bend, c + d])


def _lighting(rng: np.random.Generator, size: int) -> Array:
    """A smooth multiplicative illumination field: global gain, a gradient and low-freq blotches."""
    y, x = _grid(size)
    a = rng.uniform(0, 2 * math.pi)
    ramp = ((x - size / 2) * math.cos(a) + (y - size / 2) * math.sin(a)) / size
    light = rng.uniform(0.9, 1.1) + rng.uniform(0.0, 0.12) * ramp + 0.03 * _smooth(rng, size, 3)
    return light[..., None]


def _blend(image: Array, shape: Array, target: Array, opacity: float) -> Array:
    return image + (shape * opacity)[..., None] * (target - image)


def _random_colour(rng: np.random.Generator, base: tuple[float, float, float], jitter: float):
    return np.clip(np.array(base, np.float32) + rng.normal(0, jitter, 3), 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Classes. A renderer draws a nominal image and returns it with the context defects need; a
# defect function returns the defective image and the defect's coverage (the mask is >= 0.5).
# Lengths in pixels are given for SIZE and scaled by k = size / SIZE.

Scene = dict[str, Array]


def _fabric(rng: np.random.Generator, size: int) -> Scene:
    """A plain weave: alternating over/under threads, with slubs (thicker, brighter threads)."""
    y, x = _grid(size)
    k = size / SIZE
    v, u = _rotate(y, x, size / 2, size / 2, rng.uniform(-4, 4))
    period = rng.uniform(7.0, 8.5) * k
    u = u + rng.uniform(0, 2 * period) + 0.8 * k * _smooth(rng, size, 5)
    v = v + rng.uniform(0, 2 * period) + 0.8 * k * _smooth(rng, size, 5)
    warp = 0.5 + 0.5 * np.cos(2 * math.pi * u / period)
    weft = 0.5 + 0.5 * np.cos(2 * math.pi * v / period)
    over = np.sin(math.pi * u / period) * np.sin(math.pi * v / period) > 0
    pattern = np.where(over, warp, weft) * (0.7 + 0.3 * np.maximum(warp, weft))
    slubs = 0.06 * _smooth(rng, size, (4, 24)) + 0.06 * _smooth(rng, size, (24, 4))
    colour = _random_colour(rng, (0.60, 0.50, 0.38), 0.02)
    image = colour * (0.62 + 0.38 * pattern + slubs)[..., None] * _lighting(rng, size)
    return {"image": image}


def _fabric_defect(kind: str, scene: Scene, rng: np.random.Generator, size: int):
    image, k = scene["image"], size / SIZE
    cy, cx = rng.uniform(0, size, 2)  # anywhere, borders included: no centre prior
    if kind == "hole":  # threads pushed apart: a dark gap showing the backing
        shape = _blob(rng, size, cy, cx, rng.uniform(3.0, 6.0) * k, irregular=0.3)
        target = image * rng.uniform(0.3, 0.5)
        return _blend(image, shape, target, rng.uniform(0.6, 0.9)), shape
    if kind == "stain":  # a greyish-blue spill, so it changes hue more than brightness
        shape = _blob(rng, size, cy, cx, rng.uniform(6.0, 13.0) * k)
        grey = image.mean(axis=-1, keepdims=True)
        target = grey * _random_colour(rng, (0.85, 0.95, 1.15), 0.05)
        return _blend(image, shape, target, rng.uniform(0.5, 0.8)), shape
    # "thread": a pulled thread, a long thin streak brighter and paler than the weave
    points = _stroke_points(rng, cy, cx, rng.uniform(25, 50) * k)
    shape = _curve(rng, size, points, max(rng.uniform(1.2, 2.0) * k, 1.2))
    target = np.minimum(1.3 * (0.3 * image + 0.7 * image.max(axis=-1, keepdims=True)), 1.0)
    return _blend(image, shape, target, rng.uniform(0.6, 0.9)), shape


def _wood(rng: np.random.Generator, size: int) -> Scene:
    """Growth rings seen along the grain, with fine fibres and darker streaks."""
    y, x = _grid(size)
    k = size / SIZE
    v, u = _rotate(y, x, size / 2, size / 2, rng.uniform(-6, 6))
    period = rng.uniform(9.0, 13.0) * k
    t = v + 4.0 * k * _smooth(rng, size, 3) + 0.002 / k * rng.uniform(-1, 1) * u**2
    rings = (0.5 + 0.5 * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))) ** 2
    fibres = _smooth(rng, size, (48, 6))
    streaks = np.clip(_smooth(rng, size, (12, 3)), 0, None)
    darkness = np.clip(0.55 * rings + 0.08 * fibres + 0.15 * streaks, 0, 1)[..., None]
    light = _random_colour(rng, (0.74, 0.55, 0.34), 0.02)
    dark = _random_colour(rng, (0.50, 0.33, 0.19), 0.02)
    image = (light + (dark - light) * darkness) * _lighting(rng, size)
    return {"image": image, "dark": dark}


def _wood_defect(kind: str, scene: Scene, rng: np.random.Generator, size: int):
    image, k = scene["image"], size / SIZE
    cy, cx = rng.uniform(0, size, 2)  # anywhere, borders included: no centre prior
    if kind == "scratch":
        points = _stroke_points(rng, cy, cx, rng.uniform(20, 45) * k)
        shape = _curve(rng, size, points, max(rng.uniform(1.2, 2.0) * k, 1.2))
        target = np.minimum(image * rng.uniform(1.12, 1.25), 1.0)
        return _blend(image, shape, target, rng.uniform(0.6, 0.9)), shape
    if kind == "hole":  # a small worm or knot hole
        shape = _blob(rng, size, cy, cx, rng.uniform(2.5, 5.0) * k, irregular=0.2)
        target = np.broadcast_to(scene["dark"] * 0.75, image.shape)
        return _blend(image, shape, target, rng.uniform(0.5, 0.8)), shape
    # "color": a discolouration, darker and greyer than the wood
    shape = _blob(rng, size, cy, cx, rng.uniform(6.0, 13.0) * k)
    grey = image.mean(axis=-1, keepdims=True)
    target = (0.5 * image + 0.5 * grey) * rng.uniform(0.7, 0.85)
    return _blend(image, shape, target, rng.uniform(0.4, 0.7)), shape


def _background(rng: np.random.Generator, size: int, level: float) -> Array:
    """A dark, slightly uneven surface behind an object."""
    grey = level + 0.02 * _smooth(rng, size, 6)
    return np.repeat(grey[..., None], 3, axis=-1) * _lighting(rng, size)


def _cap(rng: np.random.Generator, size: int) -> Scene:
    """A round cap seen from above: a ridged rim, an embossed ring and a moving highlight."""
    y, x = _grid(size)
    k = size / SIZE
    cy, cx = size / 2 + rng.uniform(-3, 3, 2) * k
    radius = 0.33 * size * rng.uniform(0.97, 1.03)
    r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    theta = np.arctan2(y - cy, x - cx)
    ridges = 0.5 + 0.5 * np.cos(36 * theta + rng.uniform(0, 2 * math.pi))
    rim = np.clip((r - 0.84 * radius) * 2, 0, 1)
    ring = np.exp(-(((r - 0.62 * radius) / (1.2 * k)) ** 2))
    hy, hx = rng.uniform(-0.4, 0.4, 2) * radius
    highlight = np.exp(-((y - cy - hy) ** 2 + (x - cx - hx) ** 2) / (2 * (0.25 * radius) ** 2))
    shade = 1.0 - 0.18 * (r / radius) ** 2 - 0.18 * rim * ridges - 0.1 * ring
    shade = shade + rng.uniform(0.05, 0.18) * highlight + 0.03 * _smooth(rng, size, 8)
    colour = _random_colour(rng, (0.72, 0.18, 0.15), 0.02)
    body = colour * shade[..., None] * _lighting(rng, size)
    background = _background(rng, size, 0.22)
    alpha = _coverage(radius - r)
    image = background + alpha[..., None] * (body - background)
    return {"image": image, "background": background, "alpha": alpha,
            "centre": np.array([cy, cx]), "radius": np.array(radius)}


def _inside(rng: np.random.Generator, scene: Scene, fraction: float = 1.0) -> tuple[float, float]:
    """A point uniformly distributed over the disc of `fraction` of a round object's radius."""
    a = rng.uniform(0, 2 * math.pi)
    d = float(scene["radius"]) * fraction * math.sqrt(rng.uniform(0, 1))
    cy, cx = scene["centre"]
    return cy + d * math.sin(a), cx + d * math.cos(a)


def _cap_defect(kind: str, scene: Scene, rng: np.random.Generator, size: int):
    image, alpha, radius = scene["image"], scene["alpha"], float(scene["radius"])
    k = size / SIZE
    if kind == "missing":  # a piece broken out of the rim shows the background
        a = rng.uniform(0, 2 * math.pi)
        cy, cx = scene["centre"] + radius * np.array([math.sin(a), math.cos(a)])
        shape = _blob(rng, size, cy, cx, rng.uniform(5.0, 9.0) * k) * alpha
        return _blend(image, shape, scene["background"], 1.0), shape
    cy, cx = _inside(rng, scene)  # uniform over the whole cap, rim included
    if kind == "scratch":
        points = _stroke_points(rng, cy, cx, rng.uniform(15, 35) * k)
        shape = _curve(rng, size, points, max(rng.uniform(1.2, 2.0) * k, 1.2)) * alpha
        target = np.minimum(image * rng.uniform(1.15, 1.35), 1.0)
        return _blend(image, shape, target, rng.uniform(0.6, 0.9)), shape
    # "stain": a dull brownish deposit
    shape = _blob(rng, size, cy, cx, rng.uniform(4.0, 9.0) * k) * alpha
    target = image * _random_colour(rng, (0.8, 0.95, 0.8), 0.05)
    return _blend(image, shape, target, rng.uniform(0.5, 0.8)), shape


def _pill(rng: np.random.Generator, size: int) -> Scene:
    """An oblong white pill with red speckles (their number and places vary, as in MVTec's)."""
    y, x = _grid(size)
    k = size / SIZE
    cy, cx = size / 2 + rng.uniform(-3, 3, 2) * k
    angle = rng.uniform(-5, 5)
    a = math.radians(angle)
    v, u = _rotate(y, x, cy, cx, angle)
    half, radius = 0.3 * size * rng.uniform(0.97, 1.03), 0.14 * size
    axis_distance = np.sqrt(np.maximum(np.abs(u) - (half - radius), 0) ** 2 + v**2)
    alpha = _coverage(radius - axis_distance)
    shade = 1.0 - 0.25 * (np.minimum(axis_distance, radius) / radius) ** 2
    body = _random_colour(rng, (0.88, 0.86, 0.80), 0.015) * shade[..., None]
    speckle = _random_colour(rng, (0.70, 0.32, 0.28), 0.05)
    for _ in range(rng.poisson(10)):
        sy, sx = rng.uniform(-0.8, 0.8) * radius, rng.uniform(-1, 1) * (half - radius / 2)
        py, px = cy + sy * math.cos(a) + sx * math.sin(a), cx + sx * math.cos(a) - sy * math.sin(a)
        w = math.ceil(3 * k)
        win = (slice(max(int(py) - w, 0), int(py) + w + 1),
               slice(max(int(px) - w, 0), int(px) + w + 1))
        distance = np.sqrt((y[win] - py) ** 2 + (x[win] - px) ** 2)
        spot = _coverage(rng.uniform(0.7, 1.4) * k - distance)
        body[win] = _blend(body[win], spot, speckle * body[win], 0.8)
    body = body * _lighting(rng, size)
    background = _background(rng, size, 0.15)
    image = background + alpha[..., None] * (body - background)
    return {"image": image, "background": background, "alpha": alpha, "half": np.array(half),
            "radius": np.array(radius), "centre": np.array([cy, cx]), "angle": np.array(angle)}


def _pill_defect(kind: str, scene: Scene, rng: np.random.Generator, size: int):
    image, alpha = scene["image"], scene["alpha"]
    half, radius = float(scene["half"]), float(scene["radius"])
    cy, cx = scene["centre"]
    a, k = math.radians(float(scene["angle"])), size / SIZE
    straight = half - radius  # half-length of the straight part between the two round ends
    if kind == "chip":  # on the outline, the round ends included
        u = rng.uniform(-half, half)
        v = rng.choice([-1.0, 1.0]) * math.sqrt(max(radius**2 - max(abs(u) - straight, 0.0) ** 2, 0.0))
    else:  # uniform over the whole pill, by rejection from its bounding box
        while True:
            u, v = rng.uniform(-half, half), rng.uniform(-radius, radius)
            if max(abs(u) - straight, 0.0) ** 2 + v**2 <= radius**2:
                break
    py, px = cy + v * math.cos(a) + u * math.sin(a), cx + u * math.cos(a) - v * math.sin(a)
    if kind == "chip":  # a piece broken off the edge
        shape = _blob(rng, size, py, px, rng.uniform(4.0, 8.0) * k) * alpha
        return _blend(image, shape, scene["background"], 1.0), shape
    if kind == "crack":
        points = _stroke_points(rng, py, px, rng.uniform(10, 25) * k)
        shape = _curve(rng, size, points, max(rng.uniform(1.2, 1.8) * k, 1.2)) * alpha
        return _blend(image, shape, image * rng.uniform(0.6, 0.75), rng.uniform(0.6, 0.9)), shape
    # "color": a yellowish or reddish discolouration
    shape = _blob(rng, size, py, px, rng.uniform(3.0, 7.0) * k) * alpha
    tint = _random_colour(rng, (0.95, 0.8, 0.65), 0.06)
    return _blend(image, shape, image * tint, rng.uniform(0.5, 0.8)), shape


Renderer = Callable[[np.random.Generator, int], Scene]
_RENDER: dict[str, tuple[Renderer, Callable]] = {
    "fabric": (_fabric, _fabric_defect),
    "wood": (_wood, _wood_defect),
    "cap": (_cap, _cap_defect),
    "pill": (_pill, _pill_defect),
}


def _to_uint8(image: Array) -> Array:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def render_sample(class_name: str, kind: str, seed: int = SEED, index: int = 0,
                  size: int = SIZE) -> tuple[Array, Array, Array]:
    """Draw one image: (nominal, image, mask) as uint8 (H, W, 3), uint8 (H, W, 3), bool (H, W).

    kind: "train", "good" (a nominal test image) or one of `DEFECTS[class_name]`. `image` is
    `nominal` with the defect drawn on it (identical for "train" and "good"). Each image has its
    own random stream, so any one can be redrawn alone.
    """
    if class_name not in _RENDER:
        raise XadError(f"unknown synthetic class {class_name!r}; known: {', '.join(CLASSES)}")
    kinds = ("train", "good", *DEFECTS[class_name])
    if kind not in kinds:
        raise XadError(f"unknown kind {kind!r} for class {class_name!r}; known: {', '.join(kinds)}")
    rng = np.random.default_rng([seed, CLASSES.index(class_name), kinds.index(kind), index])
    render, defect = _RENDER[class_name]
    scene = render(rng, size)
    if kind in ("train", "good"):
        image, shape = scene["image"], np.zeros((size, size), np.float32)
    else:
        image, shape = defect(kind, scene, rng, size)
    noise = NOISE * rng.standard_normal((size, size, 3), dtype=np.float32)
    return _to_uint8(scene["image"] + noise), _to_uint8(image + noise), shape >= 0.5


def _write_class(folder: Path, class_name: str, seed: int, size: int, n_train: int,
                 n_test_good: int, n_test_per_defect: int) -> None:
    jobs = [("train", "train/good", n_train), ("good", "test/good", n_test_good)]
    jobs += [(d, f"test/{d}", n_test_per_defect) for d in DEFECTS[class_name]]
    for kind, sub, count in jobs:
        (folder / sub).mkdir(parents=True)
        if kind not in ("train", "good"):
            (folder / "ground_truth" / kind).mkdir(parents=True)
        for i in range(count):
            _, image, mask = render_sample(class_name, kind, seed, i, size)
            Image.fromarray(image).save(folder / sub / f"{i:03d}.png", compress_level=1)
            if kind not in ("train", "good"):
                mask_image = Image.fromarray(mask.astype(np.uint8) * 255)
                mask_image.save(folder / "ground_truth" / kind / f"{i:03d}_mask.png")


def generate(out_dir: str | Path, seed: int = SEED, size: int = SIZE, n_train: int = N_TRAIN,
             n_test_good: int = N_TEST_GOOD, n_test_per_defect: int = N_TEST_PER_DEFECT) -> Path:
    """Write all synthetic classes to `out_dir` in the MVTec-AD layout; return `out_dir`.

    Deterministic: the same arguments give byte-identical files. `out_dir` must be absent or
    empty. Everything is written to a temporary sibling folder that is renamed at the end, so an
    interrupted run never leaves a half-written data set behind.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} is not empty; generate() writes a fresh folder: delete it or "
                        "choose another")
    if min(size, n_train) < 1 or min(n_test_good, n_test_per_defect) < 0:
        raise ValueError("size and n_train must be positive, test counts non-negative")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        # Threads overlap PNG encoding and numpy, which release the GIL; output is unaffected
        # since every image has its own random stream.
        with ThreadPoolExecutor(max_workers=min(len(CLASSES), os.cpu_count() or 1)) as pool:
            jobs = [pool.submit(_write_class, tmp / c, c, seed, size, n_train, n_test_good,
                                n_test_per_defect) for c in CLASSES]
            for job in jobs:
                job.result()
        (tmp / "README.txt").write_text(
            f"Synthetic MVTec-AD-style data from xadbench.datasets.synthetic.generate(seed={seed}, "
            f"size={size}, n_train={n_train}, n_test_good={n_test_good}, "
            f"n_test_per_defect={n_test_per_defect}).\n"
        )
        if out.exists():
            out.rmdir()
        try:
            os.rename(tmp, out)
        except OSError:
            raise DataError(f"{out} was created by someone else while generating into it; "
                            "delete it and try again") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_cache() -> Path:
    """Where the default synthetic set lives: in `xadbench.data_root.cache_home()`
    (`$XADBENCH_CACHE`, else e.g. `~/.cache/xadbench`)."""
    return cache_home() / CACHE_NAME


class SyntheticMVTec(MVTecAD):
    """The synthetic classes, generated on first use and then read like MVTec-AD.

    root: None uses `default_cache()`; a given folder is generated into when absent or empty and
    read as it is otherwise. `download` is accepted for symmetry and ignored: nothing is fetched.
    """

    display_name = "the built-in synthetic data (MVTec-AD layout)"
    known_classes = CLASSES

    data_folder = None  # its default is its own cache (`default_cache`)
    can_download = False

    def __init__(self, root: str | Path | None = None, download: bool = False):
        super().__init__(root if root is not None else default_cache(), download=False)
        self._checked = False

    def _data_root(self) -> Path:
        if not self._checked:
            root = self.root
            assert root is not None
            if not root.exists() or (root.is_dir() and not any(root.iterdir())):
                try:
                    generate(root, seed=SEED)
                except DataError:
                    # Another process generated the same data in the meantime: use theirs.
                    if not (root.is_dir() and any(root.iterdir())):
                        raise
            self._checked = True
        return super()._data_root()
