"""Every registered method passes the contract suite, check by check; so does the example plugin."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import registered_method_or_skip
from xadbench.registry import methods
from xadbench.testing import CHECKS, NOT_FOR_CONSTANT_MAPS, Contract

#: Fewer epochs than the cpu preset where a method trains, to keep the suite fast; the anomalib
#: models on a random VGG11-BN (no ImageNet weights offline; the toy split needs none).
FAST = {"fcdd": {"epochs": 8}, "grad": {"epochs": 8}, "grad-ig": {"epochs": 8},
        "grad-smooth": {"epochs": 8}, "grad-cam": {"epochs": 8}, "ae": {"epochs": 15},
        "patchcore": {"pretrained": False}, "padim": {"pretrained": False}}

_contracts: dict[str, Contract] = {}


def contract(name: str) -> Contract:
    if name not in _contracts:
        _contracts[name] = Contract(registered_method_or_skip(name), FAST.get(name, {}))
    return _contracts[name]


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in FAST else n  # they train
                                  for n in methods.names()])
def test_registered_method_passes_contract(name, check):
    checked = contract(name)
    if check in NOT_FOR_CONSTANT_MAPS and checked.plugin.constant_map:
        pytest.skip(f"{name} is a constant map: by design it learns and detects nothing")
    CHECKS[check](checked)


def test_example_plugin_installs_and_passes_its_own_contract_test(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "xadbench-example-plugin"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(example)], check=True)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example / "tests")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CHECKS) + 1} passed" in result.stdout  # one case per contract check, and the entry point


def test_pixelstats_is_exactly_batch_invariant_and_matches_numpy():
    """Where the maths is elementwise per image (PixelStats: |x - mu| / (sigma + eps), channel
    mean), a batch of one gives bit-identical maps, and both match an independent numpy
    computation of the formula."""
    from xadbench.testing import toy_split
    from xadbench.types import stack_images

    train, test = toy_split(n_train=16, n_test=6)
    method = methods.get("pixelstats")(eps=0.01).fit(train)
    images = stack_images(test)
    batch = method.predict(images)
    for i in range(len(images)):
        single = method.predict(images[i : i + 1])
        assert np.array_equal(single.anomaly_map[0], batch.anomaly_map[i])
        assert single.score[0] == batch.score[i]
    nominal = np.stack([s.image.numpy() for s in train.nominal]).astype(np.float64)
    expected = (np.abs(images.numpy().astype(np.float64) - nominal.mean(0)) / (nominal.std(0) + 0.01)).mean(1)
    np.testing.assert_allclose(batch.anomaly_map, expected, rtol=1e-6)
    np.testing.assert_allclose(batch.score, expected.mean(axis=(1, 2)), rtol=1e-6)


def test_batch_check_fails_for_a_method_that_looks_at_its_batch():
    """The tolerance of check_batch_is_per_image is relative to the map's scale, yet tight enough
    to catch a map that depends on the batch by a small amount (0.1 % of its scale)."""
    from xadbench.methods.pixelstats import PixelStats
    from xadbench.types import Prediction

    class BatchCoupled(PixelStats):
        def predict(self, images):
            p = super().predict(images)
            maps = p.anomaly_map + 1e-3 * p.anomaly_map.max() * p.anomaly_map.mean(0, keepdims=True) / p.anomaly_map.mean()
            return Prediction(maps.mean(axis=(1, 2)).astype(np.float32), maps.astype(np.float32))

    with pytest.raises(AssertionError, match="depends on the rest of its batch"):
        CHECKS["batch_is_per_image"](Contract(BatchCoupled, {}))
