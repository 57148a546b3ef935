"""The runner: job identity, protocols, evaluation rows, atomic results and resume."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from xadbench import protocols, run_folder, runner
from xadbench.errors import XadError
from xadbench.files import atomic_write
from xadbench.metrics import registry
from xadbench.heatmaps import PostProcessor, blur, saved_maps
from xadbench.grid import run_grid
from xadbench.runner import JobSpec, Progress
from xadbench.types import Sample, Task, TrainData


def spec(**kw):
    return runner.identify([JobSpec(**{"dataset": "synthetic", "class_name": "fabric", "method": "pixelstats", **kw})])[0]


def test_job_id_depends_on_the_config_but_not_the_device():
    assert spec().job_id == spec(device="cuda").job_id
    assert spec().job_id != spec(seed=1).job_id
    assert spec().job_id != spec(params=(("eps", 0.1),)).job_id


def test_job_id_changes_when_a_preset_is_retuned_in_code(monkeypatch):
    from xadbench.registry import methods

    plugin = methods.get("pixelstats")
    before = spec().job_id
    elsewhere = classmethod(lambda cls, preset, profile: {"eps": 0.5} if profile != "mvtec" else {})
    monkeypatch.setattr(plugin, "preset", elsewhere)
    assert spec().job_id == before  # the synthetic data set follows the mvtec profile
    retuned = classmethod(lambda cls, preset, profile: {"eps": 0.5})
    monkeypatch.setattr(plugin, "preset", retuned)
    assert spec().job_id != before


def test_job_id_changes_when_the_profile_blur_or_image_size_changes(monkeypatch):
    from xadbench.profiles import PROFILES

    before = spec().job_id
    monkeypatch.setitem(PROFILES["mvtec"].sigma, "cpu", 3.0)
    assert spec().job_id != before
    monkeypatch.setitem(PROFILES["mvtec"].sigma, "cpu", 7.0)
    assert spec().job_id == before
    monkeypatch.setitem(PROFILES["mvtec"].image_size, "cpu", 96)
    assert spec().job_id != before


def test_job_ids_of_plain_jobs_are_those_of_the_release_before_declared_steps():
    """Ids hash the spec's fields with the preset's and the profile's values; a job without the
    newer fields (profile, image_size, transform, metrics) keeps its earlier id, so a run folder
    written before them resumes instead of training again. The literals were printed by
    `JobSpec(...).job_id` at commit a07709e; the key is built by hand as that release built it."""
    from xadbench.methods.pixelstats import PixelStats

    plain = spec(seed=3)
    key = {"dataset": "synthetic", "class_name": "fabric", "method": "pixelstats", "seed": 3, "preset": "cpu",
           "protocol": "unsupervised", "root": None, "blur": ["gaussian"], "weights": None, "pretrained": True,
           "oe": None, "oe_root": None, "oe_limit": None, "oe_exclude": [], "k": 1, "params": [],
           "preset_values": PixelStats.preset("cpu", "mvtec"), "profile_values": [128, 7.0, 62]}
    assert plain.job_id == hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] == "3efafbfabf239736"
    fcdd = spec(method="fcdd", blur=("gaussian", "none"), params=(("epochs", 2),), oe="cifar100", oe_limit=8,
                oe_exclude=("truck",))
    assert fcdd.job_id == "1a48257a58990721"


def test_declared_steps_profile_and_image_size_enter_the_job_id():
    from xadbench.studies.clever_hans import KnownAnomalousClass, WatermarkMetrics

    ids = {spec().job_id, spec(profile="voc").job_id, spec(image_size=64).job_id,
           spec(transform=KnownAnomalousClass(0.2, True)).job_id, spec(transform=KnownAnomalousClass(0.2, False)).job_id,
           spec(metrics=(WatermarkMetrics(),)).job_id}
    assert len(ids) == 6
    assert spec(transform=KnownAnomalousClass(0.2, True)).job_id == spec(transform=KnownAnomalousClass(0.2, True)).job_id


def test_identify_opens_a_folder_data_set_once_per_grid(tmp_path, monkeypatch):
    from tests.test_studies import make_tree

    tree = make_tree(tmp_path / "tree")
    opened = []
    real_open = runner.open_dataset
    monkeypatch.setattr(runner, "open_dataset", lambda *a, **kw: opened.append(a) or real_open(*a, **kw))
    grid = runner.identify([JobSpec(str(tree), c, "pixelstats", seed=s) for c in ("cat", "dog") for s in (0, 1)])
    assert len(opened) == 1 and len({s.job_id for s in grid}) == 4
    assert runner.identify(grid) == grid and [s.job_id for s in runner.identify(grid)] == [s.job_id for s in grid]


def test_predictions_of_an_older_release_are_read_with_their_blur_parameters(tmp_path):
    """Files written before the post-processor was recorded by name carried method_smooth,
    blur_size and blur_sigma; they are read as that post-processor. An unknown one is one line."""
    maps = np.zeros((2, 9, 9), np.float16)
    maps[:, 4, 4] = 1
    common = {"score": np.zeros(2, np.float32), "anomaly_map": maps, "label": np.array([0, 1], np.int8),
              "key": np.array(["a", "b"]), "category": np.array(["good", "bad"]),
              "image": np.zeros((2, 1, 9, 9), np.uint8), "profile": np.array("mvtec")}
    old = tmp_path / "old.npz"
    run_folder.save_predictions(old, {**common, "method_smooth": np.array(False), "blur_size": np.array(5),
                                  "blur_sigma": np.array(1.0)})
    run_folder.verify_predictions(old)
    p = run_folder.load_predictions(old)
    assert PostProcessor.from_record(p["postprocessor"], old) == PostProcessor(size=5, sigma=1.0, maps_smoothed=False)
    np.testing.assert_allclose(saved_maps(p, "gaussian"), blur(maps.astype(np.float32), 5, 1.0))
    unknown = tmp_path / "unknown.npz"
    run_folder.save_predictions(unknown, {**common, "postprocessor": np.array('{"name": "median", "size": 3}')})
    with pytest.raises(XadError, match=r"unknown.npz: maps post-processed by 'median', which this xadbench does not know"):
        saved_maps(run_folder.load_predictions(unknown), "gaussian", where=unknown)
    neither = tmp_path / "neither.npz"
    run_folder.save_predictions(neither, common)
    with pytest.raises(XadError, match="neither.npz: predictions without postprocessor"):
        run_folder.load_predictions(neither)


def test_methods_that_cannot_use_outlier_exposure_share_one_job_across_oe_settings():
    with_oe = spec(method="ae", oe="cifar100", oe_limit=8, oe_exclude=("truck",))
    plain = runner.without_unused_outlier_exposure(with_oe)
    assert plain.job_id == ""  # its id was the OE job's: computed again when the grid is built
    assert plain == spec(method="ae") and runner.identify([plain])[0].job_id == spec(method="ae").job_id
    fcdd = spec(method="fcdd", oe="cifar100", oe_limit=8)
    assert runner.without_unused_outlier_exposure(fcdd) is fcdd


def _sample(label, category, key):
    return Sample(torch.zeros(3, 4, 4), label, torch.zeros(4, 4, dtype=torch.bool), key=key, category=category)


def test_semi_supervised_takes_k_per_category_and_removes_them_from_the_test_set():
    test = [_sample(0, "good", f"g{i}") for i in range(3)]
    test += [_sample(1, cat, f"{cat}{i}") for cat in ("hole", "stain") for i in range(3)]
    task = Task(train=[_sample(0, "good", "t0")], test=test)
    train, scored = protocols.prepare(task, "semi-supervised", seed=0, k=1)
    picked = {s.key for s in train.anomalies}
    assert len(picked) == 2 and {k[:-1] for k in picked} == {"hole", "stain"}
    assert picked.isdisjoint({s.key for s in scored}) and len(scored) == len(test) - 2
    again, _ = protocols.prepare(task, "semi-supervised", seed=0, k=1)
    assert [s.key for s in again.anomalies] == [s.key for s in train.anomalies]


def test_semi_supervised_refuses_to_take_a_whole_category():
    task = Task(train=[], test=[_sample(1, "hole", "h0"), _sample(0, "good", "g0")])
    with pytest.raises(XadError, match="category 'hole' has 1 anomalous test images"):
        protocols.prepare(task, "semi-supervised", seed=0, k=1)


def test_methods_get_only_the_supervision_they_declare():
    masked = _sample(1, "hole", "h0")
    full = TrainData([masked], anomalies=[masked], confetti=True, confetti_masks=True)
    assert protocols.restrict(full, "none") == TrainData([masked])
    labels = protocols.restrict(full, "labels")
    assert labels.anomalies[0].mask is None and labels.confetti and not labels.confetti_masks
    assert protocols.restrict(full, "masks") is full


def test_unsupervised_uses_confetti_unless_outlier_exposure_is_given():
    task = Task(train=[_sample(0, "good", "t")], test=[])
    assert protocols.prepare(task, "unsupervised", seed=0)[0].confetti
    oe = [_sample(1, "oe", "o")]
    with_oe = protocols.prepare(task, "unsupervised", seed=0, outlier_exposure=oe)[0]
    assert not with_oe.confetti and list(with_oe.anomalies) == oe


def test_blur_policy_applies_to_baselines_only():
    maps = np.zeros((1, 20, 20), np.float32)
    maps[0, 10, 10] = 1
    blurred = PostProcessor(size=7, sigma=1.5, maps_smoothed=False)(maps, "gaussian")
    assert blurred[0, 10, 10] < 1 and blurred.sum() == pytest.approx(1, rel=1e-5)
    assert PostProcessor(size=7, sigma=1.5, maps_smoothed=True)(maps, "gaussian") is maps
    assert PostProcessor(size=7, sigma=1.5, maps_smoothed=False)(maps, "none") is maps
    with pytest.raises(XadError, match="blur policy 'box' is unknown"):
        PostProcessor(size=7, sigma=1.5, maps_smoothed=False)(maps, "box")


def test_run_job_rows_match_an_independent_evaluation():
    from sklearn.metrics import roc_auc_score

    result = runner.run_job(spec(blur=("none",)))
    rows = {r["metric"]: r["value"] for r in result.rows}
    p = result.predictions
    assert rows["image_auc"] == pytest.approx(roc_auc_score(p["label"], p["score"]), abs=1e-9)
    assert set(rows) == set(registry.list_metrics(headline=True))  # AUPRO included, at run time
    assert result.rows[0]["n_test"] == len(p["score"]) and p["anomaly_map"].dtype == np.float16


def test_shared_blur_uses_the_profile_sigma_of_the_preset():
    from sklearn.metrics import roc_auc_score

    from xadbench.methods.fcdd import FCDD
    from xadbench.profiles import PROFILES

    result = runner.run_job(spec(blur=("gaussian",)))
    p = result.predictions
    sigma = PROFILES["mvtec"].sigma["cpu"]  # the synthetic data set follows the mvtec profile
    assert sigma == FCDD.preset("cpu", "mvtec")["sigma"]  # the baselines get FCDD's kernel
    assert str(p["profile"]) == "mvtec" and json.loads(str(p["postprocessor"])) == {
        "name": "shared-gaussian-blur", "size": PROFILES["mvtec"].receptive_field, "sigma": sigma, "maps_smoothed": False}
    blurred = blur(p["anomaly_map"].astype(np.float32), PROFILES["mvtec"].receptive_field, sigma)
    # Scored as saved: the blurred maps as float16, against the saved masks (the model's resolution),
    # so the bootstrap of the predictions file gives the very same value.
    expected = roc_auc_score(p["mask"].ravel(), blurred.astype(np.float16).astype(np.float64).ravel())
    rows = {r["metric"]: r["value"] for r in result.rows}
    assert rows["pixel_auc"] == pytest.approx(expected, abs=1e-12)


class KillAfter(Progress):
    """Simulates Ctrl-C when the n-th job starts."""

    def __init__(self, n):
        self.n, self.started = n, 0

    def job_started(self, index, total, spec):
        self.started += 1
        if self.started == self.n:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_or_duplicating_jobs(tmp_path):
    specs = [spec(class_name=c) for c in ("fabric", "wood", "cap")]
    with pytest.raises(KeyboardInterrupt):
        run_grid(specs, tmp_path, KillAfter(2))
    first = pd.read_csv(tmp_path / "results.csv")
    assert set(first["job_id"]) == {specs[0].job_id}
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"

    finished = []

    class Record(Progress):
        def job_finished(self, spec, rows, skipped):
            finished.append((spec.class_name, skipped))

    table = run_grid(specs, tmp_path, Record())
    assert finished == [("fabric", True), ("wood", False), ("cap", False)]
    assert len(table) == 3 * len(registry.list_metrics(headline=True)) and not table.duplicated(["job_id", "blur", "metric"]).any()
    assert table[table.job_id == specs[0].job_id]["value"].tolist() == first["value"].tolist()
    assert {p.stem for p in (tmp_path / "predictions").glob("*.npz")} == {s.job_id for s in specs}


def test_atomic_write_gives_the_permissions_of_a_plain_file(tmp_path):
    import os

    with atomic_write(tmp_path / "atomic.csv") as handle:
        handle.write("x")
    (tmp_path / "plain.csv").write_text("x")
    assert os.stat(tmp_path / "atomic.csv").st_mode == os.stat(tmp_path / "plain.csv").st_mode


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_unreadable_results_file_is_one_line_error(tmp_path):
    (tmp_path / "results.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(XadError, match="results.csv: not a results file"):
        run_grid([spec()], tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_unknown_method_parameter_is_named(tmp_path):
    with pytest.raises(XadError, match="method 'pixelstats' has no parameter 'epochs'; it has: eps"):
        runner.run_job(spec(params=(("epochs", 3),)))


def test_run_grid_writes_a_checkpoint_per_job_of_a_method_that_has_one(tmp_path, monkeypatch):
    from xadbench.methods.pixelstats import PixelStats

    monkeypatch.setattr(PixelStats, "checkpoint", lambda self: {"mean": self.mean_, "std": self.std_})
    run_grid([spec()], tmp_path)
    saved = torch.load(tmp_path / "checkpoints" / f"{spec().job_id}.pt", weights_only=True)
    assert saved["method"] == "pixelstats" and set(saved["state"]) == {"mean", "std"}


def test_predictions_from_an_older_version_are_a_one_line_error(tmp_path):
    result = runner.run_job(spec(blur=("none",)))
    name = f"{result.predictions['job_id']}.npz"  # a predictions file is filed under its job id
    old = {k: v for k, v in result.predictions.items() if k not in ("profile", "job_id", "spec_digest")}
    run_folder.save_predictions(tmp_path / "old" / name, old)
    with pytest.raises(XadError, match=rf"old/{name}: predictions without profile .*new --out"):
        run_folder.load_predictions(tmp_path / "old" / name)
    run_folder.save_predictions(tmp_path / "new" / name, result.predictions)
    assert set(run_folder.load_predictions(tmp_path / "new" / name)) >= set(run_folder.PREDICTION_KEYS)


def test_a_results_file_of_an_older_version_keeps_its_rows_in_the_store(tmp_path):
    old_id, new_id = "a" * 16, "b" * 16
    older = [c for c in run_folder.RESULT_COLUMNS if c != "image_size"]
    (tmp_path / "results.csv").write_text(
        ",".join(older) + "\n" + ",".join({"value": "0.5", "job_id": old_id}.get(c, "old") for c in older) + "\n")
    new = {c: "new" for c in run_folder.RESULT_COLUMNS} | {"job_id": new_id, "value": 0.75, "image_size": 128}
    run_folder.results_store(tmp_path).open().add_job(new_id, [new], checkpoint=False)
    table = run_folder.read_results(tmp_path)
    assert list(table.columns) == run_folder.RESULT_COLUMNS
    assert table["value"].tolist() == [0.5, 0.75] and table["job_id"].tolist() == [old_id, new_id]
    assert table["image_size"].isna().tolist() == [True, False] and table["image_size"].iloc[1] == 128
