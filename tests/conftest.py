from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """The built-in synthetic data is generated into a per-session cache, not the user's."""
    cache = tmp_path_factory.mktemp("xadbench-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("XADBENCH_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (only on the project's dev machines)")
    return SHARED_DATA


def registered_method_or_skip(name: str):
    """The registered method `name`; the test is skipped when it needs an optional extra that is
    not installed (`make test` installs every extra, so CI runs them)."""
    from xadbench.errors import MissingExtraError, PluginError
    from xadbench.registry import methods

    try:
        return methods.get(name)
    except PluginError as exc:
        if isinstance(exc.__cause__, MissingExtraError):
            pytest.skip(str(exc.__cause__))
        raise
