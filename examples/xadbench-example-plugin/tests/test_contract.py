from xadbench.registry import methods
from xadbench.testing import parametrize_with_checks
from xadbench_example.method import MeanDistance


@parametrize_with_checks([MeanDistance])
def test_mean_distance_passes_the_xadbench_contract(contract, check):
    check(contract)


def test_mean_distance_is_registered_through_its_entry_point():
    assert methods.get("mean-distance") is MeanDistance
