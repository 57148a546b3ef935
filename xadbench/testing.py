"""The method contract as executable checks, after scikit-learn's `check_estimator`.

Every registered method, ours and third-party, must pass `check_method`:

    from xadbench.testing import check_method
    check_method(MyMethod, params={"epochs": 2})

Each check is also available by name (`CHECKS`); `parametrize_with_checks` makes a pytest test
of a plugin's suite run one case per check, so each is reported on its own.
The toy split: 32×32 RGB images of smooth, varying gradients (nominal) and the same with a
small square stain of random colour (anomalous), with exact masks.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch

from xadbench import evaluator, protocols
from xadbench.errors import NotFittedError
from xadbench.method import SUPERVISION_LEVELS, Method
from xadbench.seeding import seed_everything
from xadbench.types import Prediction, Sample, TrainData, stack_images

TOY_SIZE = 32
TOY_PROFILE = "cifar10"
#: "Better than chance" on the toy split: both AUCs must exceed this.
TOY_MIN_AUC = 0.6


def toy_split(seed: int = 0, n_train: int = 64, n_test: int = 32,
              width: int = TOY_SIZE) -> tuple[TrainData, list[Sample]]:
    """Nominal training data (confetti allowed) and a half-anomalous test set with masks;
    images are TOY_SIZE high and `width` wide."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:TOY_SIZE, 0:width] / TOY_SIZE

    def nominal() -> np.ndarray:
        angle = rng.uniform(0, 2 * np.pi)
        base = 0.5 + 0.2 * (np.cos(angle) * xx + np.sin(angle) * yy - 0.5)
        tint = rng.uniform(-0.1, 0.1, size=(3, 1, 1))
        return np.clip(base[None] + tint + rng.normal(0, 0.02, (3, TOY_SIZE, width)), 0, 1)

    def sample(index: int, split: str, anomalous: bool) -> Sample:
        image = nominal()
        mask = np.zeros((TOY_SIZE, width), dtype=bool)
        if anomalous:
            side = rng.integers(5, 9)
            top = rng.integers(2, TOY_SIZE - side - 2)
            left = rng.integers(2, width - side - 2)
            mask[top : top + side, left : left + side] = True
            image[:, mask] = rng.choice([0.05, 0.95], size=(3, 1))
        return Sample(torch.from_numpy(image).float(), int(anomalous), torch.from_numpy(mask),
                      key=f"toy/{split}/{index:03d}.png", category="stain" if anomalous else "good")

    train = [sample(i, "train", False) for i in range(n_train)]
    test = [sample(i, "test", i % 2 == 1) for i in range(n_test)]
    return TrainData(train, confetti=True), test


@dataclass
class Contract:
    """A method plugin (class or Variant) with the hyperparameters to check it with."""

    plugin: Any
    params: dict[str, Any]

    def new(self, seed: int = 0) -> Method:
        """The method with the cpu preset, `params`, the CPU, and the seed routed as the runner
        routes it (to a `seed` keyword, where the method has one)."""
        params = {**self.plugin.preset("cpu", TOY_PROFILE), **self.params}
        if "device" in self.plugin.param_names():
            params["device"] = "cpu"
        if "seed" in self.plugin.param_names():
            params["seed"] = seed
        return self.plugin(**params)

    @cached_property
    def data(self) -> tuple[TrainData, list[Sample]]:
        train, test = toy_split()
        return protocols.restrict(train, self.plugin.supervision), test

    def fit_predict(self, seed: int = 0, train: TrainData | None = None,
                    test: list[Sample] | None = None) -> tuple[Method, Prediction]:
        """Fit on `train` (default: the toy training data), predict `test` (default: the toy
        test set), with every random generator and the method's own seed set to `seed`."""
        seed_everything(seed)
        method = self.new(seed)
        method.fit(protocols.restrict(train, self.plugin.supervision) if train is not None else self.data[0])
        return method, method.predict(stack_images(test if test is not None else self.data[1]))

    @cached_property
    def fitted(self) -> tuple[Method, Prediction]:
        """The one fit most checks share; records what `fit` returned and did to its input."""
        train, test = self.data
        before = [s.image.clone() for s in train.nominal]
        seed_everything(0)
        method = self.new()
        self.fit_returned = method.fit(train)
        self.train_unchanged = all(torch.equal(s.image, b) for s, b in zip(train.nominal, before))
        return method, method.predict(stack_images(test))


def check_params_as_given(c: Contract) -> None:
    method = c.new()
    params = method.get_params()
    expected = {**c.plugin.preset("cpu", TOY_PROFILE), **c.params}
    for name, value in expected.items():
        assert name in params, f"preset parameter {name!r} is not an __init__ keyword"
        assert params[name] == value, f"__init__ changed {name!r}: given {value!r}, stored {params[name]!r}"


def check_supervision_declared(c: Contract) -> None:
    assert c.plugin.supervision in SUPERVISION_LEVELS, (
        f"supervision must be one of {SUPERVISION_LEVELS}, got {c.plugin.supervision!r}")


def check_predict_before_fit_raises(c: Contract) -> None:
    images = stack_images(c.data[1][:2])
    try:
        c.new().predict(images)
    except NotFittedError:
        return
    raise AssertionError("predict before fit must raise xadbench.errors.NotFittedError")


def check_fit_returns_self(c: Contract) -> None:
    method, _ = c.fitted
    assert c.fit_returned is method, "fit must return self"


def check_prediction_shapes(c: Contract) -> None:
    _, prediction = c.fitted
    n = len(c.data[1])
    assert isinstance(prediction, Prediction), "predict must return a Prediction"
    assert prediction.score.shape == (n,), f"score shape {prediction.score.shape}, want ({n},)"
    assert prediction.anomaly_map.shape == (n, TOY_SIZE, TOY_SIZE), (
        f"anomaly_map shape {prediction.anomaly_map.shape}, want ({n}, {TOY_SIZE}, {TOY_SIZE}): maps at input resolution")
    assert prediction.score.dtype == np.float32 and prediction.anomaly_map.dtype == np.float32, "float32 arrays expected"
    assert np.isfinite(prediction.score).all() and np.isfinite(prediction.anomaly_map).all(), "non-finite output"


#: Batch invariance holds exactly in real arithmetic; in floats a batch of one may take another
#: kernel path (other blocking, other thread split), so a map may differ by rounding (measured
#: far below this for the built-in methods, docs/results.md).
BATCH_RTOL = 1e-4


def check_batch_is_per_image(c: Contract) -> None:
    """An image's score and map do not depend on the other images of its batch, within
    `BATCH_RTOL` of the scale of that image's map (its largest absolute value) and of the largest
    absolute score: a tolerance relative to the values' scale, so it holds whatever their units."""
    method, prediction = c.fitted
    images = stack_images(c.data[1])
    score_scale = float(np.abs(prediction.score).max())
    for i in (0, 1, len(images) - 1):
        single = method.predict(images[i : i + 1])
        map_scale = float(np.abs(prediction.anomaly_map[i]).max())
        np.testing.assert_allclose(single.score, prediction.score[i : i + 1], rtol=0,
                                   atol=BATCH_RTOL * score_scale,
                                   err_msg="an image's score depends on the rest of its batch")
        np.testing.assert_allclose(single.anomaly_map, prediction.anomaly_map[i : i + 1], rtol=0,
                                   atol=BATCH_RTOL * map_scale,
                                   err_msg="an image's map depends on the rest of its batch")


def check_inputs_not_modified(c: Contract) -> None:
    method, _ = c.fitted
    images = stack_images(c.data[1])
    before = images.clone()
    method.predict(images)
    assert torch.equal(images, before), "predict modified its input images"
    assert c.train_unchanged, "fit modified the training images"


def check_same_seed_same_output(c: Contract) -> None:
    _, first = c.fitted
    _, second = c.fit_predict(seed=0)
    np.testing.assert_allclose(second.score, first.score, rtol=1e-4, atol=1e-6,
                               err_msg="the same seed gave different scores")
    np.testing.assert_allclose(second.anomaly_map, first.anomaly_map, rtol=1e-4, atol=1e-6,
                               err_msg="the same seed gave different maps")


def check_better_than_chance(c: Contract) -> None:
    _, prediction = c.fitted
    test = c.data[1]
    labels = np.array([s.label for s in test])
    image = evaluator.image_auc(prediction.score, labels)
    pixel = evaluator.pixel_auc(list(prediction.anomaly_map), [s.mask.numpy() for s in test])
    assert image > TOY_MIN_AUC, f"image AUC {image:.3f} on the toy split is not better than chance"
    assert pixel > TOY_MIN_AUC, f"pixel AUC {pixel:.3f} on the toy split is not better than chance"


def check_randomised_copy(c: Contract) -> None:
    """Only for a method that implements the optional `Method.randomised` hook (the contract does
    not require it): top-layer and all-layer randomisation give a new fitted method of the same
    type, leave the method itself unchanged, and all layers re-initialised change the maps."""
    method, prediction = c.fitted
    if type(method).randomised is Method.randomised:
        return
    images = stack_images(c.data[1])
    top, whole = method.randomised(1), method.randomised(None)
    for twin in (top, whole):
        assert type(twin) is type(method) and twin is not method, "randomised must return a new method of its type"
    np.testing.assert_allclose(method.predict(images).anomaly_map, prediction.anomaly_map, rtol=1e-4, atol=1e-6,
                               err_msg="randomised changed the method itself")
    randomised = whole.predict(images).anomaly_map
    assert randomised.shape == prediction.anomaly_map.shape, "randomised maps have another shape"
    assert not np.allclose(randomised, prediction.anomaly_map, rtol=1e-3, atol=1e-6), (
        "re-initialising every layer left the maps unchanged: randomised did not reach the network")


#: The smaller toy split of the checks that fit twice (training-data, mask and shape checks).
SMALL = dict(n_train=24, n_test=8)


def _differ(first: Prediction, second: Prediction) -> bool:
    """Whether two predictions of the same images differ by more than rounding (BATCH_RTOL of
    their scale) in scores or maps."""
    def far(a: np.ndarray, b: np.ndarray) -> bool:
        scale = max(float(np.abs(a).max()), float(np.abs(b).max()), np.finfo(np.float32).tiny)
        return not np.allclose(a, b, rtol=0, atol=BATCH_RTOL * scale)
    return far(first.score, second.score) or far(first.anomaly_map, second.anomaly_map)


def check_fit_depends_on_training_data(c: Contract) -> None:
    """Two different training sets (the toy images, and the same images inverted) give different
    predictions on the same test images, with the same seed: a method must learn from its data."""
    train, test = toy_split(seed=3, **SMALL)
    inverted = [replace(s, image=1 - s.image) for s in train.nominal]
    _, first = c.fit_predict(0, train, test)
    _, second = c.fit_predict(0, replace(train, nominal=inverted), test)
    assert _differ(first, second), "fit on other training images gave the same predictions: does fit use its data?"


def check_seed_changes_a_stochastic_method(c: Contract) -> None:
    """Another seed changes the output of a method with random parts (initialisation, batches,
    noise); a method that declares `deterministic = True` gives the same output for any seed."""
    _, first = c.fitted
    _, other = c.fit_predict(seed=1)
    if getattr(c.plugin, "deterministic", False):
        assert not _differ(first, other), "a method declared deterministic gave other output for another seed"
    else:
        assert _differ(first, other), ("seed 1 gave the same output as seed 0: is the seed ignored? (declare "
                                       "deterministic = True for a method without random parts)")


def check_mask_supervision_is_used(c: Contract) -> None:
    """For a method that declares supervision "masks": the same known anomalies with their masks
    and without them give different predictions (the masks are learnt from)."""
    if c.plugin.supervision != "masks":
        return
    train, test = toy_split(seed=4, **SMALL)
    _, known = toy_split(seed=5, n_train=0, n_test=8)
    anomalies = [s for s in known if s.label == 1]
    _, with_masks = c.fit_predict(0, replace(train, confetti=False, anomalies=anomalies), test)
    unmasked = [replace(s, mask=None) for s in anomalies]
    _, without = c.fit_predict(0, replace(train, confetti=False, anomalies=unmasked), test)
    assert _differ(with_masks, without), "masks of the known anomalies did not change the predictions"


def check_weights_used_declared(c: Contract) -> None:
    """After fit, `weights_used_` names the initial weights as a non-empty string ("none" when
    the method starts from none); a method with checkpoints restores it."""
    method, _ = c.fitted
    assert isinstance(method.weights_used_, str) and method.weights_used_, (
        f"weights_used_ must be a non-empty string after fit, got {method.weights_used_!r}")
    state = method.checkpoint()
    if state is not None:
        restored = c.plugin.from_checkpoint(state)
        assert restored.weights_used_ == method.weights_used_, (
            f"from_checkpoint gave weights_used_ {restored.weights_used_!r}, fit {method.weights_used_!r}")


#: Caller RNG states the seeding check fits under.
OTHER_GLOBAL_SEED = 12345


def check_deep_method_provides(c: Contract) -> None:
    """For a `DeepMethod` (xadbench.training): every training keyword in its presets, the
    profile's schedule (appendix E) where the method does not override it, and seeding by its
    own `seed` alone: a fit under another global RNG state gives the same output, and leaves
    the caller's RNG state as it was."""
    from xadbench.profiles import PRESETS, PROFILES, training_params
    from xadbench.training import TRAINING_PARAMS, DeepMethod

    cls = getattr(c.plugin, "method_class", c.plugin)
    if not (isinstance(cls, type) and issubclass(cls, DeepMethod)):
        return
    for preset in PRESETS:
        for profile in PROFILES:
            values = c.plugin.preset(preset, profile)
            overrides = cls.preset_overrides(preset, profile)
            for name, expected in training_params(profile, preset).items():
                assert name in values, f"preset {preset}/{profile} lacks training keyword {name!r}"
                if name not in overrides:
                    assert values[name] == expected, (
                        f"preset {preset}/{profile}: {name}={values[name]!r}, the profile's schedule has {expected!r}")
    assert set(TRAINING_PARAMS) <= set(c.plugin.param_names()), "a DeepMethod takes every training keyword"
    _, first = c.fitted
    torch.manual_seed(OTHER_GLOBAL_SEED)
    before = torch.get_rng_state()
    method = c.new(0)
    method.fit(c.data[0])
    assert torch.equal(torch.get_rng_state(), before), "fit changed the caller's global RNG state"
    again = method.predict(stack_images(c.data[1]))
    assert not _differ(first, again), "the same seed under another global RNG state gave other output"


NON_SQUARE_WIDTH = 48


def check_non_square_inputs(c: Contract) -> None:
    """Images wider than high (32×48): maps keep the input's height and width, values finite."""
    train, test = toy_split(seed=6, width=NON_SQUARE_WIDTH, **SMALL)
    _, prediction = c.fit_predict(0, train, test)
    assert prediction.score.shape == (len(test),), f"score shape {prediction.score.shape} for {len(test)} images"
    assert prediction.anomaly_map.shape == (len(test), TOY_SIZE, NON_SQUARE_WIDTH), (
        f"anomaly_map shape {prediction.anomaly_map.shape}, want ({len(test)}, {TOY_SIZE}, {NON_SQUARE_WIDTH})")
    assert np.isfinite(prediction.score).all() and np.isfinite(prediction.anomaly_map).all(), "non-finite output"


CHECKS: dict[str, Callable[[Contract], None]] = {
    "params_as_given": check_params_as_given,
    "supervision_declared": check_supervision_declared,
    "predict_before_fit_raises": check_predict_before_fit_raises,
    "fit_returns_self": check_fit_returns_self,
    "prediction_shapes": check_prediction_shapes,
    "batch_is_per_image": check_batch_is_per_image,
    "inputs_not_modified": check_inputs_not_modified,
    "same_seed_same_output": check_same_seed_same_output,
    "better_than_chance": check_better_than_chance,
    "randomised_copy": check_randomised_copy,
    "fit_depends_on_training_data": check_fit_depends_on_training_data,
    "seed_changes_a_stochastic_method": check_seed_changes_a_stochastic_method,
    "mask_supervision_is_used": check_mask_supervision_is_used,
    "non_square_inputs": check_non_square_inputs,
    "weights_used_declared": check_weights_used_declared,
    "deep_method_provides": check_deep_method_provides,
}


#: Checks a constant map (`Method.constant_map`: the same map for every image) is not held to.
NOT_FOR_CONSTANT_MAPS = ("better_than_chance", "fit_depends_on_training_data")


def parametrize_with_checks(plugins: list[Any], params: dict[str, Any] | None = None) -> Any:
    """A pytest decorator (after scikit-learn's `parametrize_with_checks`): the decorated test
    takes `contract` and `check` and runs once per (plugin, contract check), with ids such as
    "MeanDistance-prediction_shapes"; the checks of one plugin share its fits.

    Parameters
    ----------
    plugins
        Method classes (or Variants) to check.
    params
        Hyperparameters that override each plugin's cpu preset (e.g. fewer epochs).

    Returns
    -------
    pytest.mark.parametrize
        The mark; the test body is `check(contract)`.

    Examples
    --------
    >>> @parametrize_with_checks([MeanDistance])
    ... def test_xadbench_contract(contract, check):
    ...     check(contract)
    """
    import pytest  # a test-time helper: importing xadbench.testing does not need pytest

    cases = []
    for plugin in plugins:
        contract = Contract(plugin, params or {})
        for name, check in CHECKS.items():
            skip = getattr(plugin, "constant_map", False) and name in NOT_FOR_CONSTANT_MAPS
            marks = [pytest.mark.skip(reason="a constant map detects nothing and learns nothing by design")] if skip else []
            cases.append(pytest.param(contract, check, id=f"{getattr(plugin, '__name__', plugin)}-{name}", marks=marks))
    return pytest.mark.parametrize(("contract", "check"), cases)


def check_method(plugin: Any, params: dict[str, Any] | None = None) -> None:
    """Run every contract check on a method class (or Variant); raises AssertionError naming
    the first check that fails. `params` override the method's cpu preset (e.g. fewer epochs)."""
    contract = Contract(plugin, params or {})
    for name, check in CHECKS.items():
        try:
            check(contract)
        except AssertionError as exc:
            raise AssertionError(f"{getattr(plugin, '__name__', plugin)}: contract check {name!r} failed: {exc}") from exc
