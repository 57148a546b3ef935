import copy

import pytest
import torch
import torch.nn as nn

from xadbench.backbones import vgg_features
from xadbench.methods.fcdd_net import SMALL_VGG_LAYOUT, cifar10_net, fmnist_net, vgg_net
from xadbench.receptive_field import ReceptiveField, conv_macs, receptive_field, walk


def nets():
    """(name, net, input channels, input size) for the paper's three nets (appendix D)."""
    return [
        ("fmnist", fmnist_net(1), 1, 28),
        ("cifar10", cifar10_net(3), 3, 32),
        ("vgg", vgg_net(vgg_features()), 3, 224),
    ]


# The paper's nets (appendix D, receptive fields 16, 22, 62): output map, jump, extent, centre.
TABLE = {
    "fmnist": ReceptiveField(size=(7, 7), jump=4, extent=16, centre=1.5),
    "cifar10": ReceptiveField(size=(8, 8), jump=4, extent=22, centre=1.5),
    "vgg": ReceptiveField(size=(28, 28), jump=8, extent=62, centre=3.5),
}


@pytest.mark.parametrize("name,net,channels,size", nets(), ids=lambda v: v if isinstance(v, str) else "")
def test_table_of_the_papers_nets(name, net, channels, size):
    field = receptive_field(net, size)
    assert field == TABLE[name]
    # The bookkeeping's output size is the network's.
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, channels, size, size))
    assert tuple(out.shape[-2:]) == field.size


def test_parameter_counts_of_appendix_d():
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net, _, _ in nets()}
    assert counts == {"fmnist": 413_441, "cifar10": 1_185_281, "vgg": 4_504_833}


def test_narrow_cpu_variants_keep_the_receptive_field():
    assert receptive_field(fmnist_net(1, 32), 28) == TABLE["fmnist"]
    assert receptive_field(cifar10_net(3, (32, 64, 32)), 32) == TABLE["cifar10"]
    assert receptive_field(vgg_net(vgg_features(SMALL_VGG_LAYOUT)), 224) == TABLE["vgg"]


def test_formulas_step_by_step_and_other_sizes():
    # conv5 p2 → pool2 → conv5 p2 → pool2 → conv1 (the F-MNIST net), walked by hand.
    steps = walk(fmnist_net(1), 28)
    assert [(s.field.jump, s.field.extent, s.field.centre) for s in steps] == [
        (1, 5, 0.0), (2, 6, 0.5), (2, 14, 0.5), (4, 16, 1.5), (4, 16, 1.5)]
    assert receptive_field(vgg_net(vgg_features()), 128).size == (16, 16)
    assert receptive_field(vgg_net(vgg_features()), (96, 64)).size == (12, 8)
    # Dilation, stride and ceil-mode pooling: sizes agree with PyTorch's.
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1, dilation=2), nn.MaxPool2d(3, 2, ceil_mode=True),
                        nn.AvgPool2d(2))
    for size in (17, 20, 33):
        field = receptive_field(net, size)
        assert tuple(net(torch.zeros(1, 1, size, size)).shape[-2:]) == field.size
    field = receptive_field(net, 33)
    assert (field.jump, field.extent) == (8, 1 + 4 + 2 * 2 + 1 * 4)  # dilated kernel 5, pool 3, pool 2


def test_unknown_layers_are_refused():
    with pytest.raises(TypeError, match="Upsample"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)), 16)


def test_conv_macs_by_hand():
    # conv1: 28²·128·1·25, conv2: 14²·128·128·25, head: 7²·1·128
    assert conv_macs(fmnist_net(1), 28) == 28 * 28 * 128 * 25 + 14 * 14 * 128 * 128 * 25 + 7 * 7 * 128


def _surrogate(net: nn.Module) -> nn.Module:
    """The same geometry with every path alive: max pools → average pools, activations → identity,
    conv weights positive (1/fan-in) and BN in eval mode; then every input pixel inside an output
    pixel's field gets a strictly positive gradient, every pixel outside gets none."""
    net = copy.deepcopy(net).eval()

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
            elif isinstance(child, (nn.ReLU, nn.LeakyReLU)):
                setattr(module, name, nn.Identity())
            else:
                swap(child)

    swap(net)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0 / (m.in_channels * m.kernel_size[0] * m.kernel_size[1]))
    return net


def _input_gradient(net: nn.Module, channels: int, size: int, u: int, v: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.rand(1, channels, size, size, requires_grad=True)
    out = net(x)
    out[0, 0, u, v].backward()
    return x.grad[0].abs().sum(0)


def _field_mask(field: ReceptiveField, size: int, u: int, v: int) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    top, left = field.start + u * field.jump, field.start + v * field.jump
    mask[max(top, 0) : top + field.extent, max(left, 0) : left + field.extent] = True
    return mask


@pytest.mark.parametrize("name,net,channels,size", [
    ("fmnist", fmnist_net(1, 16), 1, 28),
    ("cifar10", cifar10_net(3, (16, 16, 16)), 3, 32),
    ("vgg", vgg_net(vgg_features(SMALL_VGG_LAYOUT)), 3, 64),
], ids=["fmnist", "cifar10", "vgg"])
def test_gradient_support_is_the_computed_field(name, net, channels, size):
    field = receptive_field(net, size)
    u_max, v_max = field.size[0] - 1, field.size[1] - 1
    for u, v in [(0, 0), (u_max // 2, 1), (u_max, v_max)]:
        inside = _field_mask(field, size, u, v)
        # The real net (max pools, ReLUs): a gradient only inside the field.
        grad = _input_gradient(net.eval(), channels, size, u, v)
        assert grad[~inside].abs().max() == 0
        assert grad[inside].abs().max() > 0
        # A surrogate with the same geometry and no dead paths fills the field exactly.
        grad = _input_gradient(_surrogate(net), channels, size, u, v)
        assert torch.equal(grad > 0, inside)
