"""The built-in synthetic data: deterministic, in the exact MVTec-AD layout, and not trivial."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from xadbench.datasets import synthetic
from xadbench.datasets.mvtec import MVTecAD
from xadbench.datasets.synthetic import (
    CLASSES, DEFECTS, SyntheticMVTec, generate, render_sample,
)
from xadbench.errors import DataError

SMALL = dict(size=48, n_train=3, n_test_good=2, n_test_per_defect=2)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _dilate(mask, radius):
    padded = np.pad(mask, radius)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


@pytest.fixture(scope="module")
def default_set():
    """The default synthetic set, in the session's cache (see conftest), shared with other tests."""
    dataset = SyntheticMVTec()
    dataset.classes()  # generates on first use
    return dataset.root


def test_deterministic_per_seed(tmp_path):
    a = _files(generate(tmp_path / "a", seed=3, **SMALL))
    b = _files(generate(tmp_path / "b", seed=3, **SMALL))
    c = _files(generate(tmp_path / "c", seed=4, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_exact_layout(tmp_path):
    root = generate(tmp_path / "syn", **SMALL)
    expected = {"README.txt"}
    for name in CLASSES:
        expected |= {f"{name}/train/good/{i:03d}.png" for i in range(3)}
        expected |= {f"{name}/test/good/{i:03d}.png" for i in range(2)}
        for defect in DEFECTS[name]:
            expected |= {f"{name}/test/{defect}/{i:03d}.png" for i in range(2)}
            expected |= {f"{name}/ground_truth/{defect}/{i:03d}_mask.png" for i in range(2)}
    assert set(_files(root)) == expected
    assert not [p for p in tmp_path.iterdir() if p.name != "syn"]  # no temporary folder left
    for name in CLASSES:
        for defect in DEFECTS[name]:
            mask = np.asarray(Image.open(root / name / "ground_truth" / defect / "000_mask.png"))
            assert mask.shape == (48, 48) and set(np.unique(mask)) == {0, 255}
        image = Image.open(root / name / "train" / "good" / "000.png")
        assert image.mode == "RGB" and image.size == (48, 48)


def test_generate_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate(tmp_path / "x", **SMALL)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = synthetic.render_sample
    monkeypatch.setattr(synthetic, "render_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "syn", **SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", CLASSES)
def test_masks_cover_exactly_the_changed_pixels(name):
    for defect in DEFECTS[name]:
        for index in range(4):
            nominal, image, mask = render_sample(name, defect, index=index)
            changed = (nominal != image).any(axis=-1)
            assert mask.sum() >= 10, (defect, index)
            assert (changed & mask).sum() >= 0.9 * mask.sum(), (defect, index)
            # Antialiased edges change a fringe just outside the mask (coverage below 0.5).
            assert (changed & ~_dilate(mask, 2)).sum() <= 3, (defect, index)
    nominal, image, mask = render_sample(name, "good", index=1)
    assert (nominal == image).all() and not mask.any()


def test_nominal_images_vary(tmp_path):
    for name in CLASSES:
        a, b = (render_sample(name, "train", index=i)[1].astype(float) for i in range(2))
        assert np.abs(a - b).mean() > 2  # shifts, lighting, texture phase, noise


def test_loads_through_mvtec_reader(default_set):
    dataset = MVTecAD(default_set)
    assert dataset.classes() == sorted(CLASSES)
    task = dataset.load("pill", 64)
    assert len(task.train) == synthetic.N_TRAIN
    n_defects = len(DEFECTS["pill"]) * synthetic.N_TEST_PER_DEFECT
    assert len(task.test) == synthetic.N_TEST_GOOD + n_defects
    assert sum(s.label for s in task.test) == n_defects
    assert all(s.image.shape == (3, 64, 64) for s in task.test)
    assert all(s.mask.shape == (128, 128) and bool(s.mask.any()) == bool(s.label)
               for s in task.test)


def test_default_cache_is_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    calls = []
    real = synthetic.generate

    def small(out_dir, seed=0):
        calls.append(out_dir)
        return real(out_dir, seed=seed, **SMALL)

    monkeypatch.setattr(synthetic, "generate", small)
    dataset = SyntheticMVTec()
    assert dataset.root == tmp_path / "cache" / synthetic.CACHE_NAME
    assert calls == []  # nothing is generated before first use
    assert dataset.classes() == sorted(CLASSES)
    assert len(dataset.load("cap", 16).train) == 3
    assert SyntheticMVTec().classes() == sorted(CLASSES)
    assert calls == [dataset.root]
    # The generated data, and the decode cache of the class just loaded.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([synthetic.CACHE_NAME, "decoded"])


def test_given_root_is_generated_when_empty(tmp_path, monkeypatch):
    real = synthetic.generate
    monkeypatch.setattr(synthetic, "generate", lambda out, seed=0: real(out, seed=seed, **SMALL))
    (tmp_path / "empty").mkdir()
    assert SyntheticMVTec(tmp_path / "empty").classes() == sorted(CLASSES)
    assert SyntheticMVTec(tmp_path / "new", download=True).classes() == sorted(CLASSES)


def test_registered_as_plugin():
    from xadbench.registry import datasets

    assert datasets.get("synthetic") is SyntheticMVTec


def zscore_pixel_auc(task) -> float:
    """Pooled pixel AUC of the channel-averaged |z| of each pixel under the training images."""
    # numpy, not torch: torch's OpenMP threads crawl on a busy 2-core machine.
    train = np.stack([s.image.numpy() for s in task.train])
    mean, std = train.mean(0), train.std(0, ddof=1) + 1e-3
    test = np.stack([s.image.numpy() for s in task.test])
    score = np.abs((test - mean) / std).mean(1)
    masks = np.stack([s.mask.numpy() for s in task.test])
    return roc_auc_score(masks.ravel(), score.ravel())


@pytest.mark.parametrize("name", CLASSES)
def test_zscore_baseline_is_informative_but_not_perfect(default_set, name):
    auc = zscore_pixel_auc(MVTecAD(default_set).load(name, synthetic.SIZE))
    assert 0.6 < auc < 1.0, auc


#: Half-extents (y, x) of the synthetic objects as fractions of the side: the cap's radius, the
#: pill's half-width and half-length (see _cap and _pill).
OBJECT_EXTENT = {"cap": (0.33, 0.33), "pill": (0.14, 0.30)}
EDGE_DEFECTS = ("missing", "chip")  # on the outline by definition


@pytest.mark.parametrize("name", CLASSES)
def test_defects_reach_the_borders_of_textures_and_the_rims_of_objects(name):
    """Defects are placed anywhere on the texture or object: many centroids lie in the outer band
    a centre prior would miss (the generator used to keep them in the middle)."""
    size = 64
    centroids = []
    for kind in DEFECTS[name]:
        if kind in EDGE_DEFECTS:
            continue
        for index in range(12):
            _, _, mask = render_sample(name, kind, index=index, size=size)
            if mask.any():
                centroids.append(np.argwhere(mask).mean(axis=0))
    centroids = np.array(centroids) / size - 0.5
    if name in OBJECT_EXTENT:  # beyond 70 % of the object's extent (uniform over its area: about half)
        outer = (np.sqrt(((centroids / OBJECT_EXTENT[name]) ** 2).sum(axis=1)) > 0.7).mean()
    else:  # textures: the outer 20 % of the image on either side (uniform: 64 %)
        outer = (np.abs(centroids).max(axis=1) > 0.3).mean()
    assert outer > 0.25, f"{name}: only {outer:.0%} of the defects lie near a border or rim"
