"""The decode cache: equal to decoding afresh, invalidated by changed files, safe when two writers
race, rebuilt when damaged, off with XADBENCH_DECODE_CACHE=0."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from tests.test_mvtec import _image, make_class
from xadbench import decode_cache
from xadbench.datasets import masked
from xadbench.datasets.mvtec import MVTecAD


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("XADBENCH_CACHE", str(folder))
    monkeypatch.delenv(decode_cache.SWITCH, raising=False)
    return folder / "decoded"


@pytest.fixture
def decodes(monkeypatch):
    """Counts the images the loader decodes."""
    calls = []
    real = masked._read_image

    def counted(path, image_size):
        calls.append(path)
        return real(path, image_size)

    monkeypatch.setattr(masked, "_read_image", counted)
    return calls


def _same(a, b):
    assert [(s.key, s.label, s.category) for s in a.train + a.test] == \
        [(s.key, s.label, s.category) for s in b.train + b.test]
    for x, y in zip(a.train + a.test, b.train + b.test):
        assert torch.equal(x.image, y.image) and x.image.dtype == y.image.dtype == torch.float32
        assert (x.mask is None and y.mask is None) or torch.equal(x.mask, y.mask)


def test_cached_load_equals_uncached_and_decodes_nothing(tmp_path, cache, decodes, monkeypatch):
    make_class(tmp_path / "data", defects={"crack": 2, "scratch": 1}, size=(40, 30))
    monkeypatch.setenv(decode_cache.SWITCH, "0")
    fresh = MVTecAD(tmp_path / "data").load("widget", 16)
    assert not cache.exists() and len(decodes) == 8
    monkeypatch.delenv(decode_cache.SWITCH)
    first = MVTecAD(tmp_path / "data").load("widget", 16)
    second = MVTecAD(tmp_path / "data").load("widget", 16)
    assert len(decodes) == 16  # the second cached load decoded nothing
    _same(fresh, first)
    _same(fresh, second)
    assert second.test[0].mask.shape == (30, 40) and bool(second.test[0].mask.any())
    assert len(list(cache.glob("*/widget-16px-*"))) == 1
    MVTecAD(tmp_path / "data").load("widget", 8)  # another size: its own entry
    assert len(list(cache.glob("*/widget-8px-*"))) == 1 and len(decodes) == 24


@pytest.mark.parametrize("change", ["mtime", "size"])
def test_a_changed_file_invalidates_its_class(tmp_path, cache, decodes, change):
    folder = make_class(tmp_path / "data")
    make_class(tmp_path / "data", name="other")
    MVTecAD(tmp_path / "data").load("widget", 16)
    MVTecAD(tmp_path / "data").load("other", 16)
    changed = folder / "train" / "good" / "001.png"
    if change == "mtime":
        stat = changed.stat()
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    else:
        _image(changed, size=(32, 32), seed=99)
    before = len(decodes)
    task = MVTecAD(tmp_path / "data").load("widget", 16)
    assert len(decodes) - before == 7  # the whole class again
    MVTecAD(tmp_path / "data").load("other", 16)
    assert len(decodes) - before == 7  # the other class's entry still holds
    assert len(list(cache.glob("*/widget-16px-*"))) == 1  # the stale entry is gone
    if change == "size":
        assert torch.equal(task.train[1].image, mvtec_image(changed))


def mvtec_image(path):
    image, _ = masked._read_image(path, 16)
    return torch.from_numpy((image.astype(np.float32) / 255.0).transpose(2, 0, 1).copy())


@pytest.mark.filterwarnings("error")  # no "could not write" fallback either
def test_concurrent_writers_agree_and_leave_one_entry(tmp_path, cache):
    files = [tmp_path / "a.bin"]
    files[0].write_bytes(b"x")
    both_building = threading.Barrier(2, timeout=10)
    results = [None, None]

    def build():
        both_building.wait()  # both threads are past the lookup and build at once
        time.sleep(0.05)
        return {"images": np.arange(24, dtype=np.uint8).reshape(2, 3, 4)}

    def worker(i):
        results[i] = decode_cache.cached_arrays("kind", tmp_path, "c", 4, files, build)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r["images"], np.arange(24).reshape(2, 3, 4)) for r in results)
    assert [p.name for p in (cache / "kind").iterdir() if p.name.startswith(".")] == []  # no temporaries
    assert len(list((cache / "kind").iterdir())) == 1


def test_a_damaged_entry_is_rebuilt_with_one_warning(tmp_path, cache, decodes):
    make_class(tmp_path / "data")
    fresh = MVTecAD(tmp_path / "data").load("widget", 16)
    (entry,) = cache.glob("*/widget-16px-*")
    with open(entry / "images.npy", "r+b") as f:
        f.truncate(100)
    with pytest.warns(UserWarning, match="damaged.*rebuilding") as caught:
        rebuilt = MVTecAD(tmp_path / "data").load("widget", 16)
    assert len([w for w in caught if "damaged" in str(w.message)]) == 1
    assert "\n" not in str(caught[0].message)
    _same(fresh, rebuilt)
    assert len(decodes) == 14
    MVTecAD(tmp_path / "data").load("widget", 16)
    assert len(decodes) == 14
