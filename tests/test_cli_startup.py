"""`xadbench --help`, `run --help` and `report --help` answer without importing torch, matplotlib
or scikit-learn (each runs in a fresh interpreter, since the test process has them loaded)."""
import subprocess
import sys

import pytest

PROBE = """
import sys
from xadbench.cli import main
sys.argv = ["xadbench", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "matplotlib", "sklearn", "scipy") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["report", "--help"]])
def test_help_imports_no_heavy_library(args):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert "Usage" in result.stdout, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "HEAVY []", result.stdout[-500:]
