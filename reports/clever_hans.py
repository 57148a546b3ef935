"""The Clever Hans study (paper section 4.3, Figure 8): does a detector explain itself with a
spurious feature that happens to separate its training anomalies from its nominal images?

The paper swaps its usual setup: Pascal VOC horses are the ANOMALOUS class, known to the model in
training, and ImageNet is nominal. About a fifth of VOC's horse images carry a watermark in the
lower left corner (Lapuschkin et al., 2019), and FCDD's heatmaps light up on those watermarks.
Two forms here:

paper form (`form="paper"`)
    VOC 2007 trainval horses are the known anomalies (`xadbench.datasets.voc`), ImageNet-1k
    training images (a folder tree, `--imagenet-root`, subsampled by `max_nominal`) the nominal
    set; the VOC 2007 test split is scored (horse = anomalous). Where the real watermarks sit is
    not annotated, so the study reports detection AUC, the heatmap mass in the lower-left box
    as a proxy, and a Figure 8 grid of the most anomalous horses. Needs both data sets on disk.

controlled form (`form="controlled"`, runs anywhere)
    Any one-vs-rest data set (a folder tree such as Imagenette, `--root`). One class is anomalous
    (`anomalous_class`, default Imagenette's n03888257 "parachute": a sky-and-canopy class whose
    images leave the lower-left corner to plain background, so a stamped mark is never hidden by
    the object). A synthetic watermark (`stamp`: "© xad" in white with a black outline, 80 %
    opaque, in a box of 50 % × 18 % of the image, 4 % from the left and bottom edges, so it
    scales with the image) is stamped onto
      - a deterministic `fraction` (default 20 %, VOC's share) of the anomalous class's TRAINING
        images in the "watermark" condition, none in the "control" condition;
      - half of its TEST images in both conditions (same images, so the test set is identical).
    Nominal = the training images of all other classes (subsampled to `max_nominal`), known
    anomalies = the anomalous class's training images; the scored test set = the other classes'
    test images (nominal, label 0) and the anomalous class's test images (label 1). Nominal images
    never carry the mark, so in the "watermark" condition it is a perfect shortcut for
    "anomalous" on a fifth of the anomalies. Methods that cannot use anomalies (supervision
    "none", e.g. the AE) see nominal images only, identical in both conditions: they run once, as
    condition "reference".

Measured per job (method × condition × seed), maps at input resolution after the shared blur
policy (`runner.postprocess`), each shifted by its own minimum so that it is non-negative:
    mass share = Σ_{box} (A − min A) / Σ_{image} (A − min A)
(a constant map, which carries no information, counts as uniform: box area / image area).
- mass_watermarked / mass_clean / mass_nominal: the mean mass share in the watermark box over
  watermarked anomalous, clean anomalous and nominal test images (for clean and nominal images
  the box is where the mark would be: the baseline attention of that corner);
- auc_watermarked / auc_clean: detection AUC of the watermarked (clean) anomalies, each against
  all nominal test images; auc_all: all anomalies.
A Clever Hans model shows mass_watermarked well above mass_clean and the box area, and
auc_watermarked above auc_clean, while the control model does not.

Files under the study folder: clever_hans.sqlite (the results store, xadbench.store: one
transaction per finished job; a rerun skips finished jobs) exported to clever_hans.csv (tidy rows), predictions/<job_id>.npz, tables/clever_hans.{csv,tex} (mean ± std
over seeds, one row per method × condition), figures/clever_hans.{png,pdf}.

Figure (like Figure 8): columns are watermarked anomalous test images (paper form: the most
anomalous horses) ordered by the anomaly score of the first method's watermark-trained model of
the first seed (FCDD when it ran), evenly spread over that order from the most nominal to the
most anomalous; rows are the input and each method's heatmap of the watermark-trained and of the
control model. Heatmaps are quantile-normalised as the paper's Figure 8 (appendix C: η = 0.99,
reference = the label-balanced test set of that model, "global"), so a colour means the same
across one model's row; the watermark box is outlined.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw, ImageFont

from xadbench import evaluator, heatmaps, protocols, runner
from xadbench.dataset import Dataset
from xadbench.errors import XadError
from xadbench.options import check_weights_file
from xadbench.reports.figures import save_figure
from xadbench.profiles import check_preset, get_profile
from xadbench.registry import methods as method_registry
from xadbench.store import ResultStore, remove_stale_temporaries
from xadbench.types import Prediction, Sample, TrainData, stack_images

# ---- watermark ------------------------------------------------------------------------------
WATERMARK_TEXT = "© xad"
#: Box size as a share of the image's width and height, and its distance from the left and
#: bottom edges as a share of the shorter side.
BOX_WIDTH, BOX_HEIGHT, BOX_MARGIN = 0.5, 0.18, 0.04
OPACITY = 0.8
#: The text is drawn this many times larger than the box, then shrunk into it (antialiasing).
RENDER_SCALE = 8
#: Bump when the watermark's look changes: finished jobs with the old one are then rerun.
WATERMARK_VERSION = 1
TEST_FRACTION = 0.5

# ---- study ----------------------------------------------------------------------------------
FORMS = ("controlled", "paper")
DEFAULT_ANOMALOUS_CLASS = "n03888257"  # Imagenette's parachute
DEFAULT_FRACTION = 0.2
RESULTS_FILE = "clever_hans.csv"
#: What a study job saves in predictions/<job_id>.npz.
PREDICTION_KEYS = ("score", "map", "label", "watermarked", "key", "anomalous_index", "anomalous_image", "box")
WATERMARK, CONTROL, REFERENCE, PAPER = "watermark", "control", "reference", "paper"
CONDITION_LABELS = {
    WATERMARK: "trained with watermarks",
    CONTROL: "control (no watermarks)",
    REFERENCE: "nominal only",
    PAPER: "VOC horses (paper)",
}
METRIC_LABELS = {
    "auc_watermarked": "AUC watermarked",
    "auc_clean": "AUC clean",
    "auc_all": "AUC all",
    "mass_watermarked": "mass in box, watermarked",
    "mass_clean": "mass in box, clean",
    "mass_anomalous": "mass in box, anomalous",
    "mass_nominal": "mass in box, nominal",
}
#: Methods profile per data set profile: ImageNet-like images follow the paper's VOC setup
#: (same net, σ and receptive field; augmentation without the random crop that could cut the mark).
STUDY_PROFILE = {"imagenet": "voc"}
#: A nominal set larger than this is refused without --max-nominal (methods hold it in memory).
MAX_NOMINAL_WITHOUT_LIMIT = 100_000
BLUR = "gaussian"
ETA = 0.99
FIGURE_COLUMNS = 8
CMAP = "jet"
CELL_INCHES = 1.1
DPI = 150
DISPLAY_NAMES = {"fcdd": "FCDD", "grad": "Grad", "ae": "AE"}

COLUMNS = [
    "job_id", "form", "dataset", "anomalous_class", "method", "condition", "seed", "preset",
    "image_size", "fraction", "max_nominal", "weights", "blur", "metric", "value", "box_share",
    "n_nominal", "n_anomalies", "n_watermarked_train", "n_test_nominal", "n_test_watermarked",
    "n_test_clean", "fit_s", "predict_s", "params",
]


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


# ---- the swapped data setup -------------------------------------------------------------------
@dataclass(frozen=True)
class SwappedSetup:
    """Training data and scored test set with the roles swapped: the study's class is anomalous.

    train.nominal: other classes' training images (label 0); train.anomalies: the anomalous
    class's training images (label 1), those in `watermarked_train` stamped. test: label 1 for the
    anomalous class; `watermarked[i]` tells whether test image i carries the mark. `box`: the
    watermark's box at the study's image size (paper form: the lower-left box, a proxy).
    """

    train: TrainData
    test: list[Sample]
    watermarked: np.ndarray
    watermarked_train: frozenset[str]
    box: Box
    anomalous_class: str


def _subsample(count: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of `limit` out of `count` (all when fewer)."""
    if limit is None or limit >= count:
        return np.arange(count)
    if limit < 1:
        raise XadError(f"--max-nominal {limit}: need at least 1 nominal image")
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def _nominal(source: Sequence[Sample], max_nominal: int | None, seed: int, where: str) -> list[Sample]:
    if len(source) == 0:
        raise XadError(f"{where} has no nominal training images: it needs training images of classes other than the anomalous one")
    if max_nominal is None and len(source) > MAX_NOMINAL_WITHOUT_LIMIT:
        raise XadError(f"{where} has {len(source)} nominal training images, too many to hold in memory; "
                       "pass --max-nominal N, e.g. --max-nominal 20000")
    return [replace(source[int(i)], label=0) for i in _subsample(len(source), max_nominal, seed)]


def controlled_setup(dataset: Dataset, anomalous_class: str, image_size: int, *, fraction: float = DEFAULT_FRACTION,
                     watermark_training: bool = True, max_nominal: int | None = None, seed: int = 0) -> SwappedSetup:
    """The controlled form's data (see the module docstring) from a one-vs-rest data set.

    `dataset.load(anomalous_class)` gives the class's training images and the test split with the
    class at label 0; its labels are swapped here. Nominal = `dataset.outlier_exposure` without the
    class, a seeded subsample of `max_nominal`. The watermarked test images (half of the
    anomalous ones) do not depend on `watermark_training`, so control and watermark runs score
    the very same test set."""
    pick_watermarked([], fraction)  # checks the range
    task = dataset.load(anomalous_class, image_size)
    anomalous = [replace(s, label=1) for s in task.train]
    if not anomalous:
        raise XadError(f"class {anomalous_class!r} has no training images: the study needs them as known anomalies")
    name = anomalous[0].category or anomalous_class
    nominal = _nominal(dataset.outlier_exposure(image_size, exclude=(name,)), max_nominal, seed, f"data set {dataset.root}")
    marked_train = pick_watermarked([s.key for s in anomalous], fraction, "train") if watermark_training else frozenset()
    anomalies = [replace(s, image=stamp(s.image)) if s.key in marked_train else s for s in anomalous]

    test = [replace(s, label=1 - s.label) for s in task.test]
    anomalous_keys = [s.key for s in test if s.label == 1]
    if not anomalous_keys:
        raise XadError(f"class {name!r} has no test images: the study scores them as the anomalies")
    if len(anomalous_keys) == len(test):
        raise XadError(f"the test split holds only class {name!r}: the study needs other classes' test images as nominal")
    marked_test = pick_watermarked(anomalous_keys, TEST_FRACTION, "test")
    watermarked = np.array([s.label == 1 and s.key in marked_test for s in test])
    test = [replace(s, image=stamp(s.image)) if w else s for s, w in zip(test, watermarked)]
    height, width = test[0].image.shape[-2:]
    return SwappedSetup(TrainData(nominal, anomalies=anomalies), test, watermarked, marked_train,
                        watermark_box(int(height), int(width)), name)


def paper_setup(voc: Dataset, imagenet: Dataset, image_size: int, *, max_nominal: int | None = None,
                seed: int = 0) -> SwappedSetup:
    """The paper form's data: VOC trainval horses as known anomalies, ImageNet training images as
    the nominal set (a seeded subsample of `max_nominal`), the VOC 2007 test split scored with
    horses anomalous. Nothing is stamped; `box` is the lower-left box where VOC's marks sit."""
    horses = [replace(s, label=1) for s in voc.outlier_exposure(image_size)]
    if not horses:
        raise XadError(f"Pascal VOC under {voc.root} has no trainval horse images")
    nominal = _nominal(imagenet.outlier_exposure(image_size), max_nominal, seed, f"ImageNet under {imagenet.root}")
    test = list(voc.load("horse", image_size).test)
    height, width = test[0].image.shape[-2:]
    return SwappedSetup(TrainData(nominal, anomalies=horses), test, np.zeros(len(test), dtype=bool), frozenset(),
                        watermark_box(int(height), int(width)), "horse")


# ---- jobs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyJob:
    """One (method, condition, seed) of a study; `job_id` hashes everything that determines its
    result, the method's preset values included (the device excluded)."""

    form: str
    dataset: str
    class_name: str
    method: str
    condition: str
    seed: int
    preset: str
    image_size: int
    profile: str
    fraction: float
    max_nominal: int | None
    weights: str | None
    pretrained: bool
    blur: str = BLUR
    device: str = field(default="auto", compare=False)

    @property
    def job_id(self) -> str:
        key = {k: v for k, v in asdict(self).items() if k != "device"}
        key["watermark_version"] = WATERMARK_VERSION
        key["preset_values"] = method_registry.get(self.method).preset(self.preset, self.profile)
        return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StudyConfig:
    """What `run_study` runs. Controlled form: `root` (and `dataset`, "folder" by default) and
    `anomalous_class`; paper form: `voc_root` and `imagenet_root`."""

    form: str = "controlled"
    methods: tuple[str, ...] = ("fcdd", "grad", "ae")
    seeds: tuple[int, ...] = (0,)
    root: str | None = None
    dataset: str = "folder"
    anomalous_class: str = DEFAULT_ANOMALOUS_CLASS
    fraction: float = DEFAULT_FRACTION
    voc_root: str | None = None
    imagenet_root: str | None = None
    preset: str = "cpu"
    image_size: int | None = None
    max_nominal: int | None = None
    weights: str | None = None
    pretrained: bool = True
    device: str = "auto"


@dataclass
class OpenedStudy:
    """The config's data sets, opened and checked, and what follows from them."""

    config: StudyConfig
    datasets: tuple[Dataset, ...]
    dataset_name: str
    class_name: str
    profile: str
    image_size: int

    def setup(self, watermark_training: bool, seed: int) -> SwappedSetup:
        c = self.config
        if c.form == "paper":
            return paper_setup(*self.datasets, self.image_size, max_nominal=c.max_nominal, seed=seed)
        return controlled_setup(self.datasets[0], self.class_name, self.image_size, fraction=c.fraction,
                                watermark_training=watermark_training, max_nominal=c.max_nominal, seed=seed)


def _open_folder(root: str | None, option: str, what: str) -> Dataset:
    from xadbench.datasets.folder import Folder

    if not root:
        raise XadError(f"{option} is missing: pass {what}")
    if not Path(root).is_dir():
        raise XadError(f"{option} {root}: no such folder; pass {what}")
    return Folder(root=root)


def open_study(config: StudyConfig) -> OpenedStudy:
    """Check the config and open its data sets (cheap: files are decoded later)."""
    if config.form not in FORMS:
        raise XadError(f"--form {config.form!r} is unknown; use controlled or paper")
    check_preset(config.preset)
    if not config.methods:
        raise XadError("--methods is empty; e.g. --methods fcdd,grad,ae")
    for name in config.methods:
        method_registry.get(name)
    if not config.seeds:
        raise XadError("--seeds is empty; e.g. --seeds 0,1,2")
    check_weights_file(config.weights)
    if config.image_size is not None and config.image_size < 8:
        raise XadError(f"--image-size {config.image_size}: too small for a watermark; use at least 8, e.g. 64")
    pick_watermarked([], config.fraction)
    if config.form == "paper":
        missing = [o for o, v in (("--voc-root", config.voc_root), ("--imagenet-root", config.imagenet_root))
                   if not v or not Path(v).is_dir()]
        if missing:
            raise XadError(
                f"the paper form needs Pascal VOC 2007 and ImageNet on disk ({' and '.join(missing)} "
                "missing or not a folder); without them run the controlled form: --root <folder data set>")
        from xadbench.datasets.voc import PascalVOC

        voc = PascalVOC(root=config.voc_root)
        imagenet = _open_folder(config.imagenet_root, "--imagenet-root", "an ImageNet-1k tree (train/<wnid>/, val/<wnid>/)")
        profile, opened, name, class_name = "voc", (voc, imagenet), "voc-vs-imagenet", "horse"
    else:
        what = "a folder-per-class data set (train/<class>/, val|test/<class>/), e.g. --root ~/data/imagenette"
        if config.dataset == "folder":
            data = _open_folder(config.root, "--root", what)
            name = Path(config.root).name
        else:
            data = runner.open_dataset(config.dataset, config.root)
            name = config.dataset
        class_name = _resolve_class(data, config.anomalous_class)
        profile, opened = data.profile, (data,)
    profile = STUDY_PROFILE.get(profile, profile)
    image_size = config.image_size or get_profile(profile).image_size[config.preset]
    return OpenedStudy(config, opened, name, class_name, profile, image_size)


def _resolve_class(data: Dataset, name: str) -> str:
    """The data set's name for `name` (exact, slug or index); one line naming the classes if none."""
    from xadbench.datasets.onevsrest import resolve_class

    return resolve_class(name, data.classes(), f"--anomalous-class: the data set under {data.root}")


def _dataset_id(config: StudyConfig) -> str:
    if config.form == "paper":
        return f"voc:{config.voc_root}|imagenet:{config.imagenet_root}"
    return str(config.root) if config.dataset == "folder" else f"{config.dataset}:{config.root}"


def plan_jobs(study: OpenedStudy) -> list[StudyJob]:
    """The study's jobs, ordered so that consecutive jobs share their data setup: per seed, the
    watermark condition, then control, then the nominal-only reference (supervision "none")."""
    c = study.config
    jobs = []
    for seed in c.seeds:
        for condition in ((PAPER,) if c.form == "paper" else (WATERMARK, CONTROL, REFERENCE)):
            for method in c.methods:
                nominal_only = method_registry.get(method).supervision == "none"
                if c.form == "controlled" and nominal_only != (condition == REFERENCE):
                    continue
                jobs.append(StudyJob(
                    form=c.form, dataset=_dataset_id(c),
                    class_name=study.class_name, method=method, condition=condition, seed=seed,
                    preset=c.preset, image_size=study.image_size, profile=study.profile,
                    fraction=c.fraction if c.form == "controlled" else 0.0, max_nominal=c.max_nominal,
                    weights=c.weights, pretrained=c.pretrained, device=c.device))
    return jobs


def study_metrics(scores: np.ndarray, maps: np.ndarray, labels: np.ndarray, watermarked: np.ndarray,
                  box: Box, form: str = "controlled") -> dict[str, float]:
    """The study's numbers for one model (see the module docstring); maps already post-processed."""
    labels = np.asarray(labels).astype(bool)
    watermarked = np.asarray(watermarked).astype(bool)
    share = mass_share(maps, box)
    nominal = ~labels

    def auc(anomalies: np.ndarray) -> float:
        chosen = nominal | anomalies
        return evaluator.image_auc(scores[chosen], labels[chosen])

    metrics = {"auc_all": auc(labels)}
    if form == "paper":
        metrics["mass_anomalous"] = float(share[labels].mean())
    else:
        marked, clean = labels & watermarked, labels & ~watermarked
        if marked.any():
            metrics["auc_watermarked"] = auc(marked)
            metrics["mass_watermarked"] = float(share[marked].mean())
        if clean.any():
            metrics["auc_clean"] = auc(clean)
            metrics["mass_clean"] = float(share[clean].mean())
    metrics["mass_nominal"] = float(share[nominal].mean())
    return metrics


def build_study_method(job: StudyJob):
    """The job's method with the preset for the study's profile; the job's seed goes to a method
    that takes a `seed` keyword (FCDD seeds its own RNG)."""
    accepted = method_registry.get(job.method).param_names()
    params = (("seed", job.seed),) if "seed" in accepted else ()
    spec = runner.JobSpec(dataset=job.dataset, class_name=job.class_name, method=job.method, seed=job.seed,
                          preset=job.preset, weights=job.weights, pretrained=job.pretrained, params=params,
                          device=job.device)
    return runner.build_method(spec, job.profile)


def run_study_job(job: StudyJob, setup: SwappedSetup,
                  on_epoch: Callable[[int, int, float], None] | None = None) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Train and score one job on its setup; returns (result rows, predictions). No writes."""
    runner.seed_everything(job.seed)
    method = build_study_method(job)
    train = protocols.restrict(setup.train, method.supervision)
    start = time.perf_counter()
    method.fit(train, on_epoch=on_epoch)
    fit_s = time.perf_counter() - start
    images = stack_images(setup.test)
    start = time.perf_counter()
    prediction: Prediction = method.predict(images)
    predict_s = time.perf_counter() - start
    if not (np.isfinite(prediction.score).all() and np.isfinite(prediction.anomaly_map).all()):
        raise XadError(f"method {job.method!r} produced non-finite scores or maps in the Clever Hans study")
    profile = get_profile(job.profile)
    maps = runner.postprocess(prediction.anomaly_map, job.blur, method.receptive_field_maps,
                              profile.receptive_field, profile.sigma[job.preset])
    labels = np.array([s.label for s in setup.test], dtype=np.int8)
    metrics = study_metrics(prediction.score, maps, labels, setup.watermarked, setup.box, job.form)
    height, width = maps.shape[-2:]
    common = {
        "job_id": job.job_id, "form": job.form, "dataset": job.dataset, "anomalous_class": job.class_name,
        "method": job.method, "condition": job.condition, "seed": job.seed, "preset": job.preset,
        "image_size": job.image_size, "fraction": job.fraction,
        "max_nominal": job.max_nominal if job.max_nominal is not None else "",
        "weights": getattr(method, "weights_used_", "none"), "blur": job.blur,
        "box_share": setup.box.area_share(height, width),
        "n_nominal": len(train.nominal), "n_anomalies": len(train.anomalies),
        "n_watermarked_train": sum(s.key in setup.watermarked_train for s in train.anomalies),
        "n_test_nominal": int((labels == 0).sum()),
        "n_test_watermarked": int(((labels == 1) & setup.watermarked).sum()),
        "n_test_clean": int(((labels == 1) & ~setup.watermarked).sum()),
        "fit_s": round(fit_s, 3), "predict_s": round(predict_s, 3),
        "params": json.dumps(method.get_params(), sort_keys=True, default=str),
    }
    rows = [{**common, "metric": metric, "value": value} for metric, value in metrics.items()]
    anomalous = np.flatnonzero(labels == 1)
    predictions = {
        "score": prediction.score.astype(np.float32),
        "map": maps.astype(np.float16),  # after the blur policy
        "label": labels,
        "watermarked": setup.watermarked.astype(bool),
        "key": np.array([s.key for s in setup.test]),
        "anomalous_index": anomalous,
        "anomalous_image": (images[anomalous].clamp(0, 1) * 255).round().to(torch.uint8).numpy(),
        "box": np.array([setup.box.top, setup.box.left, setup.box.height, setup.box.width]),
    }
    return rows, predictions


def study_store(out: Path) -> ResultStore:
    """The study's results store: out/clever_hans.sqlite, exported to out/clever_hans.csv."""
    return ResultStore(out, COLUMNS, name=Path(RESULTS_FILE).stem, text_columns=("max_nominal", "weights"))


def run_study(study: OpenedStudy | StudyConfig, out: Path, progress: runner.Progress | None = None) -> pd.DataFrame:
    """Run every job of the study not yet in its store (a finished job whose predictions file
    is gone runs again); returns the rows of the study's jobs (finished now or before)."""
    study = study if isinstance(study, OpenedStudy) else open_study(study)
    progress = progress or runner.Progress()
    out = Path(out)
    store = study_store(out).open()
    remove_stale_temporaries(out)
    store.drop_jobs(j for j in store.finished() if not (out / "predictions" / f"{j}.npz").is_file())
    jobs = plan_jobs(study)
    done = set(store.finished())
    cached: tuple[tuple[bool, int], SwappedSetup] | None = None
    for index, job in enumerate(jobs):
        if job.job_id in done:
            progress.job_finished(job, [], skipped=True)  # type: ignore[arg-type]
            continue
        progress.job_started(index, len(jobs), job)  # type: ignore[arg-type]
        key = (job.condition == WATERMARK, job.seed)
        if cached is None or cached[0] != key:
            cached = (key, study.setup(watermark_training=key[0], seed=job.seed))
        rows, predictions = run_study_job(job, cached[1], on_epoch=progress.epoch)
        runner.save_predictions(out / "predictions" / f"{job.job_id}.npz", predictions)
        store.add_job(job.job_id, rows, checkpoint=False)
        store.export_csv()
        done.add(job.job_id)
        progress.job_finished(job, rows, skipped=False)  # type: ignore[arg-type]
    results = store.read()
    return results[results["job_id"].isin([j.job_id for j in jobs])].reset_index(drop=True)


# ---- table ----------------------------------------------------------------------------------
def _display(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method × condition (in the order they first appear): for every metric its
    mean and sample std (ddof=1; empty for one seed) over seeds, and the seed count."""
    if results.empty:
        raise XadError("the Clever Hans study has no finished jobs yet; run it first")
    metrics = [m for m in METRIC_LABELS if m in set(results["metric"])]
    rows = []
    method_order = {m: i for i, m in enumerate(dict.fromkeys(results["method"]))}
    condition_order = {c: i for i, c in enumerate((WATERMARK, PAPER, CONTROL, REFERENCE))}
    results = results.assign(_m=results["method"].map(method_order),
                             _c=results["condition"].map(condition_order).fillna(len(condition_order)))
    results = results.sort_values(["_m", "_c"], kind="stable")
    for (method, condition), group in results.groupby(["method", "condition"], sort=False):
        row: dict[str, Any] = {"method": method, "condition": condition, "seeds": group["seed"].nunique()}
        for metric in metrics:
            values = group.loc[group["metric"] == metric, "value"].astype(float)
            row[metric] = values.mean() if len(values) else np.nan
            row[f"{metric} std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        row["box_share"] = float(group["box_share"].astype(float).iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, std: float, digits: int = 3) -> str:
    if pd.isna(mean):
        return "--"
    text = f"{mean:.{digits}f}"
    return text + (f" $\\pm$ {std:.{digits}f}" if pd.notna(std) else "")


def _latex_escape(text: str) -> str:
    return "".join({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$"}.get(ch, ch) for ch in str(text))


def to_latex(summary: pd.DataFrame) -> str:
    """A booktabs table of `summarise`'s output: mean ± std per metric."""
    metrics = [m for m in METRIC_LABELS if m in summary.columns]
    header = ["Method", "Training", *(METRIC_LABELS[m] for m in metrics)]
    box = summary["box_share"].iloc[0]
    lines = [
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{ll" + "r" * len(metrics) + "}", r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule",
    ]
    for _, row in summary.iterrows():
        cells = [_display(row["method"]), CONDITION_LABELS.get(row["condition"], row["condition"]),
                 *(_cell(row[m], row[f"{m} std"]) for m in metrics)]
        lines.append(" & ".join(_latex_escape(c) if i < 2 else c for i, c in enumerate(cells)) + r" \\")
    seeds = ", ".join(sorted({str(int(s)) for s in summary["seeds"]}))
    lines += [
        r"\bottomrule", r"\end{tabular}",
        r"\caption{Clever Hans study: detection AUC of watermarked and clean anomalies (each against all "
        r"nominal test images) and the share of heatmap mass in the watermark box (maps after the shared "
        rf"blur, min-shifted per image; box area = {box:.3f} of the image). Mean $\pm$ std over seeds "
        rf"(seeds per row: {seeds}).}}",
        r"\label{tab:clever-hans}", r"\end{table}", "",
    ]
    return "\n".join(lines)


def write_table(results: pd.DataFrame, out: Path) -> list[Path]:
    """tables/clever_hans.csv (means and stds at full precision) and tables/clever_hans.tex."""
    summary = summarise(results)
    csv_path, tex_path = Path(out) / "tables" / "clever_hans.csv", Path(out) / "tables" / "clever_hans.tex"
    with runner.atomic_write(csv_path) as handle:
        summary.to_csv(handle, index=False)
    with runner.atomic_write(tex_path) as handle:
        handle.write(to_latex(summary))
    return [csv_path, tex_path]


# ---- figure ---------------------------------------------------------------------------------
def figure_columns(scores: np.ndarray, candidates: np.ndarray, n: int, top: bool) -> np.ndarray:
    """Indices (into the test set) of up to n of `candidates`, ascending by score: evenly spread
    over the score order, or the n highest-scoring ones when `top`."""
    order = candidates[np.argsort(scores[candidates], kind="stable")]
    if len(order) <= n:
        return order
    if top:
        return order[-n:]
    return order[np.round(np.linspace(0, len(order) - 1, n)).astype(int)]


def _figure_rows(results: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(row label, job id, condition) per heatmap row, first seed only, in method order."""
    first_seed = sorted(results["seed"].astype(int).unique())[0]
    jobs = results[results["seed"].astype(int) == first_seed].drop_duplicates("job_id")
    order = {WATERMARK: 0, PAPER: 0, CONTROL: 1, REFERENCE: 2}
    rows = []
    for method in dict.fromkeys(jobs["method"]):
        mine = jobs[jobs["method"] == method].sort_values("condition", key=lambda c: c.map(order))
        for _, job in mine.iterrows():
            label = f"{_display(method)}\n{CONDITION_LABELS.get(job['condition'], job['condition'])}"
            rows.append((label, str(job["job_id"]), str(job["condition"])))
    return rows


def draw_figure(out: Path, results: pd.DataFrame, columns: int = FIGURE_COLUMNS) -> Figure:
    """The Figure-8-like grid of a study's finished jobs (see the module docstring)."""
    rows = _figure_rows(results)
    if not rows:
        raise XadError("the Clever Hans study has no finished jobs to draw; run it first")
    preds = {}
    for _, job_id, _ in rows:
        path = Path(out) / "predictions" / f"{job_id}.npz"
        if not path.is_file():
            raise XadError(f"{path} is missing; rerun the study to run its job again")
        preds[job_id] = runner.load_predictions(path, PREDICTION_KEYS)
    shortcut = [(label, j) for label, j, c in rows if c in (WATERMARK, PAPER)] or [(rows[0][0], rows[0][1])]
    order_label, order_job = next((r for r in shortcut if r[0].startswith(_display("fcdd") + "\n")), shortcut[0])
    ref = preds[order_job]
    paper = bool(ref["watermarked"].sum() == 0)
    candidates = np.flatnonzero(ref["label"] == 1) if paper else np.flatnonzero(ref["watermarked"])
    picked = figure_columns(ref["score"], candidates, columns, top=paper)
    position = {int(i): k for k, i in enumerate(ref["anomalous_index"])}
    images = ref["anomalous_image"][[position[int(i)] for i in picked]]
    top, left, box_h, box_w = (int(v) for v in ref["box"])

    heat_rows = []
    for label, job_id, _ in rows:
        p = preds[job_id]
        if not np.array_equal(p["key"], ref["key"]):
            raise XadError(f"job {job_id} scored another test set than job {order_job}; rerun the study into a fresh --out")
        maps = heatmaps.quantile_normalise(p["map"].astype(np.float32), ETA, "global", labels=p["label"], seed=0)
        heat_rows.append((label, maps[picked]))

    n_rows, n_cols = 1 + len(heat_rows), len(picked)
    left_in, top_in = 1.9, 0.5
    fig = Figure(figsize=(max(left_in + 0.5 + CELL_INCHES * n_cols, 6.5), top_in + 0.15 + CELL_INCHES * n_rows))
    width, height = fig.get_size_inches()
    grid = fig.add_gridspec(n_rows, n_cols + 1, width_ratios=[1.0] * n_cols + [0.1], wspace=0.04, hspace=0.04,
                            left=left_in / width, right=1 - 0.35 / width, top=1 - top_in / height,
                            bottom=0.15 / height)
    cmap = matplotlib.colormaps[CMAP]
    for c, index in enumerate(picked):
        for r in range(n_rows):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                image = images[c]
                if image.shape[0] == 1:
                    ax.imshow(image[0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(np.moveaxis(image, 0, -1))
                ax.set_title(f"{ref['score'][index]:.3g}", fontsize=7, pad=2)
            else:
                ax.imshow(heat_rows[r - 1][1][c], cmap=cmap, vmin=0, vmax=1)
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), box_w, box_h, fill=False, edgecolor="white",
                                       linewidth=0.6, linestyle="--"))
            if c == 0:
                label = "input" if r == 0 else heat_rows[r - 1][0]
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    colourbar = fig.add_subplot(grid[1:, -1])
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=colourbar)
    colourbar.tick_params(labelsize=7)
    what = "most anomalous horses" if paper else "watermarked anomalous test images"
    order_name = order_label.replace("\n", ", ")
    fig.suptitle(f"Clever Hans: {what}, ordered by the score of {order_name} (above each input)\n"
                 f"heatmaps: η={ETA}, label-balanced global reference per model; dashed: watermark box",
                 fontsize=7, y=1 - 0.04 / height, va="top")
    return fig


def write_figure(results: pd.DataFrame, out: Path, columns: int = FIGURE_COLUMNS) -> list[Path]:
    """figures/clever_hans.png and .pdf."""
    fig = draw_figure(out, results, columns)
    return [save_figure(fig, Path(out) / "figures" / f"clever_hans.{suffix}", dpi=DPI) for suffix in ("png", "pdf")]
