"""`xadbench --help`, `run --help`, `report --help` and `methods list` answer without importing
torch, matplotlib or scikit-learn (each runs in a fresh interpreter, since the test process has
them loaded)."""
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


@pytest.mark.parametrize("args, shown", [(["--help"], "Usage"), (["run", "--help"], "Usage"),
                                         (["report", "--help"], "Usage"),
                                         (["methods", "list"], "fcdd           masks")])
def test_help_and_listing_import_no_heavy_library(args, shown):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert shown in result.stdout, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "HEAVY []", result.stdout[-500:]


def test_importing_the_cli_imports_no_torch():
    """What `python -X importtime -c "import xadbench.cli"` lists: every module imported, none of
    them torch or a torch submodule."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import xadbench.cli"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    modules = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "xadbench.cli" in modules
    assert not [m for m in modules if m.split(".")[0] in ("torch", "matplotlib", "sklearn")], modules
