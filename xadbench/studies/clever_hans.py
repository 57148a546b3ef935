"""The Clever Hans study (paper section 4.3, Figure 8) as a grid of ordinary jobs: does a
detector explain itself with a spurious feature that happens to separate its training anomalies
from its nominal images?

The paper swaps its usual setup: Pascal VOC horses are the ANOMALOUS class, known to the model in
training, and ImageNet is nominal. About a fifth of VOC's horse images carry a watermark in the
lower left corner (Lapuschkin et al., 2019), and FCDD's heatmaps light up on those watermarks.
Each job is a `runner.JobSpec` of the one-vs-rest class with a declared data transform that
swaps the roles (and stamps the watermark, `xadbench.studies.watermark`) and an extra metric
(`WatermarkMetrics`), run by `grid.run_grid` into an ordinary run folder. Two forms:

paper form (`form="paper"`, transform `HorsesVsImageNet`)
    VOC 2007 trainval horses are the known anomalies (`xadbench.datasets.voc`), ImageNet-1k
    training images (a folder tree, subsampled by `max_nominal`) the nominal set; the VOC 2007
    test split is scored (horse = anomalous). Where the real watermarks sit is not annotated, so
    the study reports detection AUC and the heatmap mass in the lower-left box as a proxy.

controlled form (`form="controlled"`, transform `KnownAnomalousClass`, runs anywhere)
    Any one-vs-rest data set (a folder tree such as Imagenette). One class is anomalous (default
    Imagenette's n03888257 "parachute": a sky-and-canopy class whose images leave the lower-left
    corner to plain background, so a stamped mark is never hidden by the object). The watermark
    is stamped onto
      - a deterministic `fraction` (default 20 %, VOC's share) of the anomalous class's TRAINING
        images in the "watermark" condition, none in the "control" condition;
      - half of its TEST images in both conditions (same images, so the test set is identical).
    Nominal = the training images of all other classes (subsampled to `max_nominal`), known
    anomalies = the anomalous class's training images; the scored test set = the other classes'
    test images (label 0) and the anomalous class's test images (label 1). Nominal images never
    carry the mark, so in the "watermark" condition it is a perfect shortcut for "anomalous" on a
    fifth of the anomalies. Methods that cannot use anomalies (supervision "none", e.g. the AE)
    see nominal images only, identical in both conditions: they run once, as "reference".

Measured per job on the maps after the shared post-processor, each map shifted by its own
minimum: mass share = Σ_box (A − min A) / Σ_image (A − min A) (`watermark.mass_share`).
- mass_watermarked / mass_clean / mass_nominal: mean mass share in the watermark box over
  watermarked anomalous, clean anomalous and nominal test images (paper form: mass_anomalous);
- auc_watermarked / auc_clean: detection AUC of the watermarked (clean) anomalies, each against
  all nominal test images; the evaluator's image_auc is the AUC of all anomalies (auc_all).
A Clever Hans model shows mass_watermarked well above mass_clean and the box area, and
auc_watermarked above auc_clean, while the control model does not.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from xadbench import evaluator, grid, runner
from xadbench.dataset import Dataset
from xadbench.errors import XadError
from xadbench.options import check_weights_file
from xadbench.profiles import check_preset, get_profile
from xadbench.registry import methods as method_registry
from xadbench.steps import DataTransform, ExtraMetric, Prepared
from xadbench.studies.watermark import WATERMARK_VERSION, Box, mass_share, pick_watermarked, stamp, watermark_box
from xadbench.types import Sample, TrainData

FORMS = ("controlled", "paper")
DEFAULT_ANOMALOUS_CLASS = "n03888257"  # Imagenette's parachute
DEFAULT_FRACTION = 0.2
#: Share of the anomalous class's test images that carry the mark, in every condition.
TEST_FRACTION = 0.5
WATERMARK, CONTROL, REFERENCE, PAPER = "watermark", "control", "reference", "paper"
#: The profile methods follow per data set profile: ImageNet-like images follow the paper's VOC
#: setup (same net, σ and receptive field; augmentation without the random crop that could cut the mark).
STUDY_PROFILE = {"imagenet": "voc"}
#: A nominal set larger than this is refused without --max-nominal (methods hold it in memory).
MAX_NOMINAL_WITHOUT_LIMIT = 100_000
BLUR = "gaussian"


# ---- the swapped data: declared transforms ------------------------------------------------------
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


def _box_array(test: Sequence[Sample]) -> np.ndarray:
    height, width = test[0].image.shape[-2:]
    box = watermark_box(int(height), int(width))
    return np.array([box.top, box.left, box.height, box.width])


@dataclass(frozen=True)
class KnownAnomalousClass(DataTransform):
    """The controlled form's data from the one-vs-rest split of the job's class (training = the
    class's images at label 0, test = the class at label 0): the class becomes the known
    anomalies (label 1; `fraction` of them watermarked when `watermark_training`), the other
    classes' training images (`dataset.outlier_exposure` without the class, a seeded subsample
    of `max_nominal`) the nominal set, and the test labels are swapped, with half of the
    anomalous test images watermarked whatever the condition. Annotates "watermarked" (per test
    image) and "box" (top, left, height, width of the watermark box)."""

    fraction: float = DEFAULT_FRACTION
    watermark_training: bool = True
    max_nominal: int | None = None
    watermark_version: int = WATERMARK_VERSION

    @property
    def label(self) -> str:
        return f"{self.fraction:.0%} watermarked" if self.watermark_training else "no watermarks"

    def apply(self, train: TrainData, test: list[Sample], dataset: Dataset, image_size: int, seed: int) -> Prepared:
        pick_watermarked([], self.fraction)  # checks the range
        anomalous = [replace(s, label=1) for s in train.nominal]
        if not anomalous:
            raise XadError("the anomalous class has no training images: the study needs them as known anomalies")
        name = anomalous[0].category
        nominal = _nominal(dataset.outlier_exposure(image_size, exclude=(name,)), self.max_nominal, seed,
                           f"data set {dataset.root}")
        marked_train = pick_watermarked([s.key for s in anomalous], self.fraction, "train") if self.watermark_training else frozenset()
        anomalies = [replace(s, image=stamp(s.image)) if s.key in marked_train else s for s in anomalous]

        test = [replace(s, label=1 - s.label) for s in test]
        anomalous_keys = [s.key for s in test if s.label == 1]
        if not anomalous_keys:
            raise XadError(f"class {name!r} has no test images: the study scores them as the anomalies")
        if len(anomalous_keys) == len(test):
            raise XadError(f"the test split holds only class {name!r}: the study needs other classes' test images as nominal")
        marked_test = pick_watermarked(anomalous_keys, TEST_FRACTION, "test")
        watermarked = np.array([s.label == 1 and s.key in marked_test for s in test])
        test = [replace(s, image=stamp(s.image)) if w else s for s, w in zip(test, watermarked)]
        return Prepared(TrainData(nominal, anomalies=anomalies), test, {"watermarked": watermarked, "box": _box_array(test)})


@dataclass(frozen=True)
class HorsesVsImageNet(DataTransform):
    """The paper form's data from Pascal VOC's "horse" split: VOC trainval horses as the known
    anomalies, ImageNet training images under `imagenet_root` as the nominal set (a seeded
    subsample of `max_nominal`), the VOC 2007 test split scored as it is (horse = 1). Nothing is
    stamped; "box" is the lower-left box where VOC's marks sit."""

    imagenet_root: str = ""
    max_nominal: int | None = None

    @property
    def label(self) -> str:
        return "VOC horses"

    def apply(self, train: TrainData, test: list[Sample], dataset: Dataset, image_size: int, seed: int) -> Prepared:
        from xadbench.datasets.folder import Folder

        horses = [replace(s, label=1) for s in dataset.outlier_exposure(image_size)]
        if not horses:
            raise XadError(f"Pascal VOC under {dataset.root} has no trainval horse images")
        imagenet = Folder(root=self.imagenet_root)
        nominal = _nominal(imagenet.outlier_exposure(image_size), self.max_nominal, seed, f"ImageNet under {imagenet.root}")
        return Prepared(TrainData(nominal, anomalies=horses), test,
                        {"watermarked": np.zeros(len(test), dtype=bool), "box": _box_array(test)})


@dataclass(frozen=True)
class WatermarkMetrics(ExtraMetric):
    """The study's numbers for one model (see the module docstring) from the "watermarked" and
    "box" annotations; maps already post-processed."""

    form: str = "controlled"

    def __call__(self, scores: np.ndarray, maps: np.ndarray, labels: np.ndarray,
                 annotations: dict[str, np.ndarray]) -> dict[str, float]:
        labels = np.asarray(labels).astype(bool)
        watermarked = np.asarray(annotations["watermarked"]).astype(bool)
        share = mass_share(maps, Box(*(int(v) for v in annotations["box"])))
        nominal = ~labels

        def auc(anomalies: np.ndarray) -> float:
            chosen = nominal | anomalies
            return evaluator.image_auc(scores[chosen], labels[chosen])

        metrics = {}
        if self.form == "paper":
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


# ---- the study: checked options, the grid, its results -----------------------------------------
@dataclass(frozen=True)
class StudyConfig:
    """What `run` runs. Controlled form: `root` (and `dataset`, "folder" by default) and
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


@dataclass(frozen=True)
class Study:
    """A checked config and what follows from its data sets: the jobs' data set and root, the
    anomalous class's name in it, the profile the methods follow and the image size."""

    config: StudyConfig
    dataset: str
    root: str | None
    class_name: str
    profile: str
    image_size: int


def _check_folder(root: str | None, option: str, what: str) -> str:
    if not root:
        raise XadError(f"{option} is missing: pass {what}")
    if not Path(root).is_dir():
        raise XadError(f"{option} {root}: no such folder; pass {what}")
    return root


def open_study(config: StudyConfig) -> Study:
    """Check the config and open its data sets (cheap: files are decoded when jobs run)."""
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
        dataset, root, class_name = "voc", config.voc_root, "horse"
        profile = runner.open_dataset(dataset, root).profile
    else:
        what = "a folder-per-class data set (train/<class>/, val|test/<class>/), e.g. --root ~/data/imagenette"
        if config.dataset == "folder":
            dataset, root = _check_folder(config.root, "--root", what), None
        else:
            dataset, root = config.dataset, config.root
        data = runner.open_dataset(dataset, root)
        from xadbench.datasets.onevsrest import resolve_class

        class_name = resolve_class(config.anomalous_class, data.classes(), f"--anomalous-class: the data set under {data.root}")
        profile = data.profile
    profile = STUDY_PROFILE.get(profile, profile)
    image_size = config.image_size or get_profile(profile).image_size[config.preset]
    return Study(config, dataset, root, class_name, profile, image_size)


def plan_jobs(study: Study) -> list[runner.JobSpec]:
    """The study's grid, with job ids: per seed the watermark condition, then control, then the
    nominal-only reference (supervision "none"); the paper form has one condition."""
    c = study.config
    common = dict(dataset=study.dataset, root=study.root, class_name=study.class_name, preset=c.preset,
                  profile=study.profile, image_size=c.image_size, weights=c.weights, pretrained=c.pretrained,
                  blur=(BLUR,), metrics=(WatermarkMetrics(c.form),), device=c.device)
    specs = []
    for seed in c.seeds:
        if c.form == "paper":
            transform = HorsesVsImageNet(str(c.imagenet_root), c.max_nominal)
            specs += [runner.JobSpec(method=m, seed=seed, transform=transform, **common) for m in c.methods]
            continue
        for condition in (WATERMARK, CONTROL, REFERENCE):
            transform = KnownAnomalousClass(c.fraction, condition == WATERMARK, c.max_nominal)
            for method in c.methods:
                nominal_only = method_registry.get(method).supervision == "none"
                if nominal_only == (condition == REFERENCE):
                    specs.append(runner.JobSpec(method=method, seed=seed, transform=transform, **common))
    return runner.identify(specs)


def condition(spec: runner.JobSpec) -> str:
    """watermark, control, reference (a nominal-only method) or paper: the row of the table."""
    if isinstance(spec.transform, HorsesVsImageNet):
        return PAPER
    if method_registry.get(spec.method).supervision == "none":
        return REFERENCE
    return WATERMARK if spec.transform.watermark_training else CONTROL


def study_results(specs: Sequence[runner.JobSpec], results: pd.DataFrame) -> pd.DataFrame:
    """The rows of the study's jobs under its blur policy, with their `condition`, the
    evaluator's image_auc named auc_all (the AUC of all anomalies) and the watermark box's
    `box_share` of the image."""
    conditions = {s.job_id: condition(s) for s in specs}
    mine = results[results["job_id"].isin(conditions) & (results["blur"] == BLUR)].copy()
    mine["condition"] = mine["job_id"].map(conditions)
    mine["metric"] = mine["metric"].replace({evaluator.IMAGE_AUC: "auc_all"})
    size = mine["image_size"].astype(int)
    mine["box_share"] = [watermark_box(s, s).area_share(s, s) for s in size]
    return mine.reset_index(drop=True)


def run(study: Study, out: Path, progress: runner.Progress | None = None) -> pd.DataFrame:
    """Run the study's grid into the run folder `out` (finished jobs are skipped); returns
    `study_results` of its jobs."""
    specs = plan_jobs(study)
    return study_results(specs, grid.run_grid(specs, Path(out), progress))
