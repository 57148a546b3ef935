from xadbench.registry import methods
from xadbench.testing import check_method
from xadbench_example.method import MeanDistance


def test_mean_distance_passes_the_xadbench_contract():
    check_method(MeanDistance)


def test_mean_distance_is_registered_through_its_entry_point():
    assert methods.get("mean-distance") is MeanDistance
