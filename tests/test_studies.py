"""The studies: Clever Hans (watermark, swapped setup, mass share, resume, table, figure) and the
OE-size grid. Tiny generated folder trees and cheap methods only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from xadbench import run_folder, runner
from xadbench.errors import XadError
from xadbench.method import Method
from xadbench.reports import clever_hans as ch_report
from xadbench.runner import JobSpec, Progress
from xadbench.studies import clever_hans as ch
from xadbench.studies import oe_size as oe_study
from xadbench.studies import watermark as wm
from xadbench.cli.study_commands import study_app
from xadbench.types import Prediction, TrainData

CLASSES = ("cat", "dog", "owl")
cli = CliRunner()


def make_tree(root: Path, n_train: int = 5, n_test: int = 4, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_test)):
        for c, colour in zip(CLASSES, ((200, 60, 60), (60, 200, 60), (60, 60, 200))):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (np.array(colour) + rng.integers(-30, 30, (size, size, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{c}{i}.png")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("data") / "tree")


def config(tree: Path, **kw) -> ch.StudyConfig:
    return ch.StudyConfig(**{"methods": ("pixelstats",), "root": str(tree), "anomalous_class": "owl",
                             "image_size": 32, **kw})


# ---- watermark ------------------------------------------------------------------------------
def test_watermark_is_deterministic_and_stays_in_its_lower_left_box():
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    first, second = wm.stamp(image), wm.stamp(image.clone())
    assert torch.equal(first, second) and not torch.equal(first, image)
    box = wm.watermark_box(64, 64)
    inside = torch.from_numpy(box.mask(64, 64))
    assert torch.equal(first[:, ~inside], image[:, ~inside]), "pixels outside the box changed"
    changed = (first != image).any(0)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert rows.min() >= 0.7 * 64 and cols.max() < 0.6 * 64, "the mark is not in the lower left corner"
    assert 0 < box.left < 0.1 * 64 and 0.9 * 64 < box.bottom < 64
    assert changed.float().mean() > 0.02, "the mark is too faint to matter"
    assert 0 <= float(first.min()) and float(first.max()) <= 1


def test_watermark_scales_with_the_image_and_handles_grey_images():
    small, large = wm.watermark_box(32, 32), wm.watermark_box(224, 224)
    assert large.width / small.width == pytest.approx(7, rel=0.1)
    assert large.area_share(224, 224) == pytest.approx(small.area_share(32, 32), rel=0.1)
    grey = wm.stamp(torch.zeros(1, 28, 28))
    assert grey.shape == (1, 28, 28) and grey.max() > 0


def test_pick_watermarked_takes_the_fraction_deterministically_and_nested():
    keys = [f"train/owl/{i}.png" for i in range(10)]
    picked = wm.pick_watermarked(keys, 0.2)
    assert len(picked) == 2 and picked == wm.pick_watermarked(list(reversed(keys)), 0.2)
    assert picked <= wm.pick_watermarked(keys, 0.5) and len(wm.pick_watermarked(keys, 0.5)) == 5
    assert wm.pick_watermarked(keys, 0.0) == frozenset() and len(wm.pick_watermarked(keys, 1.0)) == 10
    with pytest.raises(XadError, match="--fraction"):
        wm.pick_watermarked(keys, 1.5)


# ---- mass share -----------------------------------------------------------------------------
def test_mass_share_matches_a_hand_computation():
    box = wm.watermark_box(20, 20)
    inside = box.mask(20, 20)
    all_in = np.where(inside, 3.0, 0.0)[None]
    assert wm.mass_share(all_in, box)[0] == pytest.approx(1.0)
    uniform = np.full((1, 20, 20), 5.0)
    assert wm.mass_share(uniform, box)[0] == pytest.approx(inside.sum() / 400)
    # min-shift: a constant offset changes nothing; hand computation on a two-level map
    two = np.where(inside, 2.0, 1.0)[None] + 7.0
    assert wm.mass_share(two, box)[0] == pytest.approx(1.0)
    ramp = np.tile(np.arange(20, dtype=float), (20, 1))[None]  # columns 0..19
    shifted = ramp[0] - ramp.min()
    expected = shifted[inside].sum() / shifted.sum()
    assert wm.mass_share(ramp - 4.0, box)[0] == pytest.approx(expected)


# ---- the swapped setup ----------------------------------------------------------------------
def job_data(tree: Path, watermark_training: bool, fraction: float = 0.2, max_nominal: int | None = None,
             seed: int = 0) -> runner.JobData:
    transform = ch.KnownAnomalousClass(fraction, watermark_training, max_nominal)
    return runner.load_job_data(JobSpec(str(tree), "owl", "pixelstats", seed=seed, image_size=32, transform=transform))


def test_swapped_setup_labels_watermarks_and_control(tree):
    study = ch.open_study(config(tree, fraction=0.4))
    assert study.class_name == "owl" and study.image_size == 32
    marked, control = job_data(tree, True, 0.4), job_data(tree, False, 0.4)

    assert {s.category for s in marked.train.nominal} == {"cat", "dog"} and len(marked.train.nominal) == 10
    assert all(s.label == 0 for s in marked.train.nominal) and all(s.label == 1 for s in marked.train.anomalies)
    assert {s.category for s in marked.train.anomalies} == {"owl"} and len(marked.train.anomalies) == 5
    # exactly the picked anomalies (2 of 5) differ from the control's, nominal images never
    differs = {a.key for a, b in zip(marked.train.anomalies, control.train.anomalies) if not torch.equal(a.image, b.image)}
    assert differs == set(wm.pick_watermarked([s.key for s in marked.train.anomalies], 0.4)) and len(differs) == 2
    assert all(torch.equal(a.image, b.image) for a, b in zip(marked.train.nominal, control.train.nominal))

    labels = np.array([s.label for s in marked.test])
    assert {s.category for s, y in zip(marked.test, labels) if y == 1} == {"owl"} and labels.sum() == 4
    watermarked = marked.annotations["watermarked"]
    assert watermarked.sum() == 2 and not watermarked[labels == 0].any()
    # the test set is identical in both conditions: same images, same marks
    assert np.array_equal(watermarked, control.annotations["watermarked"])
    assert all(torch.equal(a.image, b.image) for a, b in zip(marked.test, control.test))


def test_max_nominal_subsamples_with_the_seed(tree):
    keys = [s.key for s in job_data(tree, True, max_nominal=4).train.nominal]
    assert len(keys) == 4 and keys == [s.key for s in job_data(tree, False, max_nominal=4).train.nominal]
    assert keys != [s.key for s in job_data(tree, True, max_nominal=4, seed=1).train.nominal]


# ---- running: resume, rows, table, figure ---------------------------------------------------
class LabelsMethod(Method):
    """Scores the mean brightness of the lower-left box; remembers what it was trained on."""

    supervision: ClassVar[str] = "labels"
    seen: ClassVar[list[TrainData]] = []

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def fit(self, train, on_epoch=None):
        LabelsMethod.seen.append(train)
        self.fitted_ = True
        return self

    def predict(self, images):
        maps = images.mean(1).numpy().astype(np.float32) * self.gain
        return Prediction(maps.mean(axis=(1, 2)).astype(np.float32), maps)


@pytest.fixture
def with_fake_method(monkeypatch):
    from xadbench.registry import methods

    monkeypatch.setitem(methods._loaded, "fake-labels", LabelsMethod)  # found by name like a plugin
    LabelsMethod.seen.clear()
    yield "fake-labels"


class Record(Progress):
    def __init__(self):
        self.events = []

    def job_finished(self, spec, rows, skipped):
        self.events.append((spec.method, ch.condition(spec), skipped))


@pytest.mark.slow
def test_study_runs_each_condition_resumes_and_writes_table_and_figure(tree, tmp_path, with_fake_method):
    cfg = config(tree, methods=("fake-labels", "pixelstats"), seeds=(0, 1))
    first = Record()
    study = ch.open_study(cfg)
    results = ch.run(study, tmp_path, first)
    assert first.events == [(m, c, False) for _ in (0, 1) for m, c in
                            (("fake-labels", "watermark"), ("fake-labels", "control"), ("pixelstats", "reference"))]
    # the labels method got the known anomalies; watermarked ones only in the watermark condition
    assert [len(t.anomalies) for t in LabelsMethod.seen] == [5, 5, 5, 5]
    marked = wm.watermark_box(32, 32)
    lower_left = [[float(s.image[:, marked.top:marked.bottom, marked.left:marked.right].mean()) for s in t.anomalies]
                  for t in LabelsMethod.seen]
    assert lower_left[0] != lower_left[1] and lower_left[1] == lower_left[3]

    assert set(results["condition"]) == {"watermark", "control", "reference"}
    assert set(results["metric"]) == {"auc_watermarked", "auc_clean", "auc_all", "mass_watermarked", "mass_clean", "mass_nominal"}
    # one predictions format: raw maps, the post-processor's record and the transform's annotations
    job = results[(results.method == "fake-labels") & (results.seed == 0) & (results.condition == "watermark")]
    saved = run_folder.load_predictions(tmp_path / "predictions" / f"{job['job_id'].iloc[0]}.npz")
    assert saved["watermarked"].sum() == 2 and list(saved["box"]) == [marked.top, marked.left, marked.height, marked.width]
    assert json.loads(str(saved["postprocessor"]))["name"] == "shared-gaussian-blur"
    assert (tmp_path / "results.csv").is_file() and len(list((tmp_path / "predictions").glob("*.npz"))) == 6

    again = Record()
    rerun = ch.run(study, tmp_path, again)
    assert all(skipped for *_, skipped in again.events) and len(again.events) == 6
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(results) == len(rerun)

    tables = ch_report.write_table(results, tmp_path)
    summary = pd.read_csv(tables[0])
    assert len(summary) == 3 and set(summary["seeds"]) == {2}
    assert summary["auc_watermarked std"].notna().all() or summary["auc_watermarked"].notna().all()
    tex = tables[1].read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "$\\pm$" in tex and "control (no watermarks)" in tex
    figures = ch_report.write_figure(results, tmp_path, columns=3)
    assert [p.suffix for p in figures] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in figures)


def test_study_metrics_on_a_shortcut_model():
    """A model whose map is its input's lower-left brightness: the watermark draws the mass."""
    box = wm.watermark_box(16, 16)
    maps = np.zeros((6, 16, 16))
    maps[4:, box.top:box.bottom, box.left:box.right] = 1.0   # two watermarked anomalies
    maps[2:4, :4, :4] = 1.0                                   # two clean anomalies: mass elsewhere
    scores = np.array([0.0, 0.1, 0.2, 0.05, 0.9, 0.8])
    labels = np.array([0, 0, 1, 1, 1, 1])
    marked = np.array([False, False, False, False, True, True])
    annotations = {"watermarked": marked, "box": np.array([box.top, box.left, box.height, box.width])}
    m = ch.WatermarkMetrics()(scores, maps, labels, annotations)
    assert m["mass_watermarked"] == pytest.approx(1.0) and m["mass_clean"] == pytest.approx(0.0)
    assert m["auc_watermarked"] == 1.0 and m["auc_clean"] == pytest.approx(0.75)
    assert m["mass_nominal"] == pytest.approx(box.area_share(16, 16))


# ---- errors ---------------------------------------------------------------------------------
def one_line_error(result, text):
    assert result.exit_code != 0
    assert isinstance(result.exception, XadError), result.output
    message = str(result.exception)
    assert "\n" not in message and text in message, message


def test_missing_root_and_unknown_class_are_one_line(tree, tmp_path):
    one_line_error(cli.invoke(study_app, ["clever-hans", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]),
                   "nope")
    one_line_error(cli.invoke(study_app, ["clever-hans", "--out", str(tmp_path / "o")]), "--root")
    one_line_error(cli.invoke(study_app, ["clever-hans", "--root", str(tree), "--anomalous-class", "owll",
                                          "--methods", "pixelstats", "--out", str(tmp_path / "o")]), "owll")
    one_line_error(cli.invoke(study_app, ["clever-hans", "--form", "paper", "--out", str(tmp_path / "o")]),
                   "--voc-root")
    one_line_error(cli.invoke(study_app, ["oe-size", "--dataset", str(tmp_path / "nope"), "--oe", str(tree),
                                          "--classes", "owl", "--out", str(tmp_path / "o")]), "nope")
    one_line_error(cli.invoke(study_app, ["oe-size", "--dataset", str(tree), "--oe", str(tree), "--classes", "emu",
                                          "--methods", "pixelstats", "--out", str(tmp_path / "o")]), "emu")
    one_line_error(cli.invoke(study_app, ["oe-size", "--dataset", str(tree), "--oe", str(tree), "--classes", "owl",
                                          "--limits", "2,x", "--out", str(tmp_path / "o")]), "--limits")


@pytest.mark.parametrize("command", [[], ["clever-hans"], ["oe-size"]])
def test_every_study_command_has_help_with_an_example(command):
    result = cli.invoke(study_app, [*command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


def test_clever_hans_command_end_to_end(tree, tmp_path):
    out = tmp_path / "ch"
    args = ["clever-hans", "--root", str(tree), "--anomalous-class", "owl", "--methods", "pixelstats",
            "--image-size", "32", "--out", str(out)]
    result = cli.invoke(study_app, args)
    assert result.exit_code == 0, result.output
    assert (out / "tables" / "clever_hans.tex").is_file() and (out / "figures" / "clever_hans.png").is_file()
    assert "reference" in result.output
    # an ordinary run folder: `xadbench evaluate` rebuilds the declared transform and metric from
    # the saved spec and scores the job again to the same numbers
    from xadbench.rescore import rescore_run

    before = run_folder.read_results(out).set_index("metric")["value"]
    assert rescore_run(out, with_sanity=False) == 1
    after = run_folder.read_results(out).set_index("metric")["value"]
    assert {"mass_watermarked", "auc_clean", "image_auc"} <= set(after.index)
    pd.testing.assert_series_equal(after.sort_index(), before.sort_index(), rtol=1e-3)


# ---- OE size --------------------------------------------------------------------------------
def test_oe_size_plan_has_one_job_per_method_and_limit_with_ae_once(tree):
    specs = oe_study.plan_jobs(str(tree), "owl", str(tree), methods=["fcdd", "grad", "ae"],
                               limits=oe_study.parse_limits("2,8,all"), seeds=[0])
    keys = [(s.method, s.oe_limit if s.oe else "no OE") for s in specs]
    assert keys == [("fcdd", 2), ("fcdd", 8), ("fcdd", None), ("grad", 2), ("grad", 8), ("grad", None), ("ae", "no OE")]
    assert len({s.job_id for s in specs}) == len(specs)
    assert all(s.oe_exclude == ("owl",) for s in specs if s.oe)  # same source: the nominal class is left out
    assert oe_study.parse_limits("2, 8,all,8") == (2, 8, None)


@pytest.mark.slow
def test_oe_size_command_runs_the_grid_and_draws_the_figure(tree, tmp_path, with_fake_method):
    out = tmp_path / "oe"
    args = ["oe-size", "--dataset", str(tree), "--oe", str(tree), "--classes", "owl", "--limits", "2,4,all",
            "--methods", "fake-labels,pixelstats", "--samples", "2", "--out", str(out)]
    result = cli.invoke(study_app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert table["job_id"].nunique() == 4  # 3 limits for the OE method + 1 for pixelstats
    assert [len(t.anomalies) for t in LabelsMethod.seen] == [2, 4, 10]  # OE without the nominal class
    assert (out / "figures" / "oe_size.png").stat().st_size > 1000 and (out / "figures" / "oe_size.pdf").is_file()
    assert set(pd.read_csv(out / "tables" / "oe_size.csv")["oe_size"].astype(str)) == {"2", "4", "all", "no OE"}
    LabelsMethod.seen.clear()
    again = cli.invoke(study_app, args)
    assert again.exit_code == 0 and LabelsMethod.seen == [], "finished jobs were run again"


# ---- the paper form (tiny fake VOC 2007 and ImageNet trees) ----------------------------------
def make_voc(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, ids in (("trainval", ["000001", "000002", "000003", "000004"]),
                       ("test", ["000101", "000102", "000103", "000104"])):
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for k, image_id in enumerate(ids):
            horse = k % 2 == 0
            pixels = rng.integers(0, 255, (48, 56, 3)).astype(np.uint8)
            if horse:
                pixels[30:, :20] = 255  # a bright lower-left "watermark"
            Image.fromarray(pixels).save(base / "JPEGImages" / f"{image_id}.jpg")
            name = "horse" if horse else "person"
            (base / "Annotations" / f"{image_id}.xml").write_text(
                f"<annotation><filename>{image_id}.jpg</filename><object><name>{name}</name></object></annotation>")
    return root


def test_paper_form_runs_on_voc_and_imagenet_trees(tmp_path):
    voc = make_voc(tmp_path / "voc")
    imagenet = make_tree(tmp_path / "imagenet", n_train=3, n_test=1)
    out = tmp_path / "paper"
    result = cli.invoke(study_app, ["clever-hans", "--voc-root", str(voc), "--imagenet-root", str(imagenet),
                                    "--methods", "pixelstats", "--image-size", "32", "--columns", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert set(table["metric"]) == {"image_auc", "mass_anomalous", "mass_nominal"}
    assert table["n_train"].iloc[0] == 9  # the ImageNet tree's 3 × 3 training images are the nominal set
    saved = run_folder.load_predictions(out / "predictions" / f"{table['job_id'].iloc[0]}.npz")
    assert saved["label"].sum() == 2 and not saved["watermarked"].any()  # VOC's two test horses, nothing stamped
    assert (out / "figures" / "clever_hans.png").is_file()
    missing = cli.invoke(study_app, ["clever-hans", "--voc-root", str(voc), "--out", str(out)])
    one_line_error(missing, "--imagenet-root")
