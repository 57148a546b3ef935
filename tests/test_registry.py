"""The plugin registry, with third-party plugins injected as real installed distributions."""
import sys
import textwrap

import pytest

from xadbench.errors import PluginError
from xadbench.registry import Registry, datasets, methods

FAKE_METHOD = '''
import numpy as np
from xadbench import Method, Prediction
from xadbench.types import stack_images


class Brightness(Method):
    """Distance of each pixel's brightness from the nominal mean brightness."""

    supervision = "none"

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def fit(self, train, on_epoch=None):
        self.level_ = float(stack_images(train.nominal).mean())
        return self

    def predict(self, images):
        self._check_fitted("level_")
        maps = (images.mean(1) - self.level_).abs().numpy().astype(np.float32) + self.offset
        return Prediction(score=maps.mean(axis=(1, 2)), anomaly_map=maps)
'''


def install_fake_distribution(root, dist, entry_points, modules):
    """Write a minimal installed distribution (dist-info + modules) and put it on sys.path."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{group}]" + "".join(f"\n{name} = {target}" for name, target in eps.items())
             for group, eps in entry_points.items()]
    (info / "entry_points.txt").write_text("\n\n".join(lines) + "\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]


def test_builtins_are_listed_without_importing_them(monkeypatch):
    # restored after the test: a second import would make a second PixelStats class, which the
    # registry's cache and later tests' imports would disagree on
    monkeypatch.delitem(sys.modules, "xadbench.methods.pixelstats", raising=False)
    assert "pixelstats" in methods.names()
    assert {"mvtec", "synthetic"} <= set(datasets.names())
    assert "xadbench.methods.pixelstats" not in sys.modules


def test_unknown_name_lists_known_names_and_suggests():
    with pytest.raises(PluginError, match=r"unknown method 'pixelstat' \(did you mean 'pixelstats'\?\); known: .*pixelstats"):
        methods.get("pixelstat")


def test_fake_third_party_plugin_is_found_and_created(plugin_path):
    install_fake_distribution(plugin_path, "fake-plugin", {"xadbench.methods": {"brightness": "fake_brightness:Brightness"}},
                              {"fake_brightness": FAKE_METHOD})
    registry = Registry("xadbench.methods", "method")
    assert "brightness" in registry.names()
    assert ("brightness", "fake_brightness:Brightness", "fake-plugin") in registry.describe()
    method = registry.create("brightness", offset=1.0)
    assert method.get_params() == {"offset": 1.0}


def test_broken_plugin_is_one_line_naming_plugin_and_distribution(plugin_path):
    install_fake_distribution(plugin_path, "fake-broken", {"xadbench.methods": {"broken": "fake_broken:Missing"}},
                              {"fake_broken": "import numpy_that_does_not_exist\n"})
    with pytest.raises(PluginError) as info:
        Registry("xadbench.methods", "method").get("broken")
    message = str(info.value)
    assert "\n" not in message
    assert "'broken'" in message and "'fake-broken'" in message and "ModuleNotFoundError" in message


def test_two_plugins_with_one_name_is_an_error(plugin_path):
    for dist, module in (("fake-one", "fake_one"), ("fake-two", "fake_two")):
        install_fake_distribution(plugin_path / dist, dist, {"xadbench.methods": {"twin": f"{module}:Brightness"}},
                                  {module: FAKE_METHOD})
        sys.path.insert(0, str(plugin_path / dist))
    try:
        with pytest.raises(PluginError, match=r"method 'twin' is registered more than once: fake_one:Brightness from fake-one; fake_two:Brightness from fake-two"):
            Registry("xadbench.methods", "method").get("twin")
    finally:
        for dist in ("fake-one", "fake-two"):
            sys.path.remove(str(plugin_path / dist))


@pytest.mark.slow
def test_fake_plugin_runs_end_to_end_from_the_cli(plugin_path, tmp_path):
    from typer.testing import CliRunner

    from xadbench import registry
    from xadbench.cli import app

    install_fake_distribution(plugin_path, "fake-e2e", {"xadbench.methods": {"brightness-e2e": "fake_brightness_e2e:Brightness"}},
                              {"fake_brightness_e2e": FAKE_METHOD})
    registry.methods._loaded.clear()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--methods", "brightness-e2e", "--dataset", "synthetic", "--classes",
                                      "fabric", "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    text = (out / "results.csv").read_text()
    assert "brightness-e2e" in text and "pixel_auc" in text


ARGV_PLUGIN = '''
import argparse, sys
SEEN_ARGV = list(sys.argv)
parser = argparse.ArgumentParser()
parser.add_argument("--needed", required=True)
parser.parse_args()
'''


@pytest.mark.parametrize("source, target, reason", [
    ("def not_a_method():\n    pass\n", "not_a_method", "is not a Method or Variant: it loads <function not_a_method"),
    ("VALUE = 3\n", "VALUE", "is not a Method or Variant: it loads 3 (int)"),
    ("import sys\nsys.exit('plugin quits')\n", "X", "failed to load: SystemExit: plugin quits"),
    (ARGV_PLUGIN, "X", "failed to load: SystemExit: 2; it printed: "),
])
def test_a_bad_plugin_is_listed_broken_and_the_listing_goes_on(plugin_path, monkeypatch, source, target, reason):
    from typer.testing import CliRunner

    from xadbench import registry
    from xadbench.cli import app

    install_fake_distribution(plugin_path, "fake-bad", {"xadbench.methods": {"aaa-bad": f"fake_bad:{target}"}},
                              {"fake_bad": source})
    monkeypatch.setattr(registry.methods, "_loaded", {})
    result = CliRunner().invoke(app, ["methods", "list"])
    assert result.exit_code == 0, result.output
    listed = result.output.splitlines()
    bad = [line for line in listed if line.startswith("aaa-bad")]
    assert len(bad) == 1 and "BROKEN: method plugin 'aaa-bad'" in bad[0] and reason in bad[0], result.output
    assert any(line.startswith("pixelstats") for line in listed) and listed[-1].startswith(("pixelstats", "ae", "grad"))


def test_a_plugin_parsing_argv_at_import_sees_no_xadbench_options(plugin_path, monkeypatch):
    install_fake_distribution(plugin_path, "fake-argv", {"xadbench.methods": {"argv": "fake_argv:Brightness"}},
                              {"fake_argv": "import sys\nSEEN = list(sys.argv)\n" + FAKE_METHOD})
    monkeypatch.setattr(sys, "argv", ["xadbench", "run", "--methods", "argv", "--seeds", "1"])
    Registry("xadbench.methods", "method").get("argv")
    assert sys.modules["fake_argv"].SEEN == ["xadbench"]
    assert sys.argv == ["xadbench", "run", "--methods", "argv", "--seeds", "1"]


def test_reference_maps_declare_themselves():
    # reports read the flag, so a reference map shows first and is never marked best; an unknown
    # method (a run folder from another machine) is not one
    assert [name for name in methods.names() if methods.is_reference(name)] == ["centre", "pixelstats"]
    assert not methods.is_reference("no-such-method")
