"""Plugin capability flags are a declared contract: `Method` declares them, a plugin class that
sets anything else (or a flag of the wrong type) is an error when it is defined, a `Variant`
forwards to its class, and reports name plugins by their declared `display_name`."""
import pytest

from xadbench.errors import XadError
from xadbench.method import FLAGS, Method, Variant
from xadbench.registry import datasets, methods


def test_an_unknown_flag_is_an_error_naming_the_plugin_and_the_flags():
    with pytest.raises(XadError) as caught:
        class DFM(Method):  # the README's old example: a flag nothing reads
            receptive_field_maps = False
    message = str(caught.value)
    assert "DFM" in message and "'receptive_field_maps'" in message
    assert message.endswith("the flags are: constant_map, deterministic, display_name, maps_smoothed, reference, "
                            "seed_sensitive, supervision")


@pytest.mark.parametrize("body, shown", [({"supervision": "pixels"}, "supervision = 'pixels'"),
                                         ({"maps_smoothed": "yes"}, "maps_smoothed = 'yes'"),
                                         ({"display_name": 3}, "display_name = 3")])
def test_a_flag_of_the_wrong_type_or_value_is_an_error(body, shown):
    with pytest.raises(XadError, match=shown):
        type("Broken", (Method,), body)


def test_declared_flags_methods_constants_and_fitted_defaults_are_accepted():
    class Fine(Method):
        display_name = "Fine"
        supervision = "labels"
        maps_smoothed = True
        parameter_constraints = {}
        WINDOW = 3  # a constant, not a flag
        mean_ = None  # a fitted attribute's default
        seen: list = []  # a container (a test double's record), not a flag

        def fit(self, train, on_epoch=None):
            return self

        def predict(self, images):
            raise NotImplementedError

    assert set(FLAGS) == {"display_name", "supervision", "maps_smoothed", "reference", "constant_map",
                          "deterministic", "seed_sensitive"}
    variant = Variant(Fine, display_name="Fine-3", window=3)
    assert [getattr(variant, f) for f in FLAGS] == ["Fine-3", "labels", True, False, False, False, False]
    assert Variant(Fine).display_name == "Fine"
    with pytest.raises(AttributeError):
        variant.not_a_flag  # noqa: B018


def test_display_names_come_from_the_plugins():
    assert [methods.display_name(n) for n in ("fcdd", "grad-cam", "ae", "centre")] == ["FCDD", "Grad-CAM", "AE", "centre"]
    assert datasets.display_name("mvtec") == "MVTec-AD" and datasets.display_name("cifar10") == "CIFAR-10"
    assert methods.display_name("a-method-from-another-machine") == "a-method-from-another-machine"


def test_a_third_party_method_shows_its_display_name(monkeypatch):
    class ThirdParty(Method):
        display_name = "Third Party"

        def fit(self, train, on_epoch=None):
            return self

        def predict(self, images):
            raise NotImplementedError

    monkeypatch.setitem(methods._loaded, "third-party", ThirdParty)  # found by name like a plugin
    assert methods.display_name("third-party") == "Third Party"
