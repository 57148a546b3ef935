"""Every registered method passes the contract suite, check by check; so does the example plugin."""
import subprocess
import sys
from pathlib import Path

import pytest

from xadbench.registry import methods
from xadbench.testing import CHECKS, Contract

#: Fewer epochs than the cpu preset where a method trains, to keep the suite fast.
FAST = {"fcdd": {"epochs": 8}, "grad": {"epochs": 8}, "grad-ig": {"epochs": 8},
        "grad-smooth": {"epochs": 8}, "ae": {"epochs": 15}}

_contracts: dict[str, Contract] = {}


def contract(name: str) -> Contract:
    if name not in _contracts:
        _contracts[name] = Contract(methods.get(name), FAST.get(name, {}))
    return _contracts[name]


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", methods.names())
def test_registered_method_passes_contract(name, check):
    CHECKS[check](contract(name))


def test_example_plugin_installs_and_passes_its_own_contract_test(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "xadbench-example-plugin"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(example)], check=True)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example / "tests")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
