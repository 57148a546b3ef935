"""The input standardisation every method's network shares."""
import numpy as np
import pytest
import torch

from xadbench.errors import XadError
from xadbench.layers import MIN_STD, Standardise, channel_statistics


def test_channel_statistics_match_numpy_and_floor_constant_channels():
    images = torch.rand(5, 3, 4, 6)
    images[:, 2] = 0.5
    mean, std = channel_statistics(images)
    flat = images.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(mean.numpy(), flat.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std.numpy()[:2], flat[:2].std(1, ddof=1), rtol=1e-5)
    assert std[2].item() == pytest.approx(MIN_STD)


def test_standardise_repeats_grey_input_and_names_other_mismatches():
    layer = Standardise([0.5, 0.25, 0.0], [0.5, 0.25, 1.0])
    grey = torch.full((2, 1, 3, 3), 1.0)
    out = layer(grey)
    assert out.shape == (2, 3, 3, 3)
    assert out[:, 0].eq(1.0).all() and out[:, 1].eq(3.0).all() and out[:, 2].eq(1.0).all()
    with pytest.raises(XadError, match="takes 3-channel images; got 2 channels"):
        layer(torch.zeros(1, 2, 3, 3))
