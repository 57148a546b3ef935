"""Plugin registries for methods and data sets, fed by entry points.

Built-ins are declared in our own pyproject.toml exactly like third-party plugins, so both are
found the same way. Listing names imports nothing; a plugin is imported when first used.
"""
from __future__ import annotations

import difflib
import importlib
import io
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from xadbench.errors import PluginError, XadError

METHODS_GROUP = "xadbench.methods"
DATASETS_GROUP = "xadbench.datasets"


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "unknown distribution"


class Registry:
    """Named plugins of one kind ("method" or "dataset") from one entry-point group.

    accepts: "module:Name" of the base classes a loaded plugin must be (a subclass or an
        instance of); imported only when a plugin is loaded, so listing names stays cheap.
    """

    def __init__(self, group: str, kind: str, accepts: tuple[str, ...] = ()):
        self.group = group
        self.kind = kind
        self.accepts = accepts
        self._loaded: dict[str, Any] = {}

    def _entry_points(self) -> dict[str, list[EntryPoint]]:
        found: dict[str, list[EntryPoint]] = defaultdict(list)
        for ep in entry_points(group=self.group):
            # The same distribution seen twice on sys.path (e.g. an editable install next to its
            # build folder) is one plugin, not a duplicate.
            if all(ep.value != other.value for other in found[ep.name]):
                found[ep.name].append(ep)
        return dict(found)

    def names(self) -> list[str]:
        """Registered names, sorted. Imports no plugin."""
        return sorted(self._entry_points())

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, target, distribution) per registered entry, duplicates included."""
        return [
            (name, ep.value, _distribution_name(ep))
            for name, eps in sorted(self._entry_points().items())
            for ep in eps
        ]

    def get(self, name: str) -> Any:
        """The plugin object (a class or a Variant) registered as `name`."""
        if name in self._loaded:
            return self._loaded[name]
        found = self._entry_points()
        if name not in found:
            close = difflib.get_close_matches(name, found, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(found)) or "none"
            raise PluginError(f"unknown {self.kind} {name!r}{hint}; known: {known}")
        eps = found[name]
        if len(eps) > 1:
            where = "; ".join(sorted(f"{ep.value} from {_distribution_name(ep)}" for ep in eps))
            raise PluginError(f"{self.kind} {name!r} is registered more than once: {where}")
        ep = eps[0]
        where = f"{self.kind} plugin {name!r} ({ep.value}) from distribution {_distribution_name(ep)!r}"
        plugin = _load_quietly(ep, where)
        if self.accepts and not _is_one_of(plugin, self.accepts):
            wanted = " or ".join(target.split(":")[1] for target in self.accepts)
            raise PluginError(f"{where} is not a {wanted}: it loads {plugin!r} ({type(plugin).__name__})")
        self._loaded[name] = plugin
        return plugin

    def create(self, name: str, **params: Any) -> Any:
        return self.get(name)(**params)


def _load_quietly(ep: EntryPoint, where: str) -> Any:
    """Import an entry point so that nothing the plugin does at import can take the command line
    over: it sees a bare sys.argv (no xadbench options to parse), its output is held back, and
    any failure, SystemExit included (e.g. an argparse error or sys.exit at import), becomes a
    PluginError naming it (with the last line it printed, if any)."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    printed = io.StringIO()
    try:
        with redirect_stdout(printed), redirect_stderr(printed):
            return ep.load()
    except (Exception, SystemExit) as exc:  # a plugin may fail in any way; report it, don't crash
        said = [line.strip() for line in printed.getvalue().splitlines() if line.strip()]
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if said:
            detail += f"; it printed: {said[-1]}"
        raise PluginError(f"{where} failed to load: {detail}") from exc
    finally:
        sys.argv = argv


def _is_one_of(plugin: Any, targets: tuple[str, ...]) -> bool:
    for target in targets:
        module, _, attribute = target.partition(":")
        base = getattr(importlib.import_module(module), attribute)
        if isinstance(plugin, base) or (isinstance(plugin, type) and issubclass(plugin, base)):
            return True
    return False


methods = Registry(METHODS_GROUP, "method", accepts=("xadbench.method:Method", "xadbench.method:Variant"))
datasets = Registry(DATASETS_GROUP, "dataset", accepts=("xadbench.dataset:Dataset",))


@contextmanager
def plugin_call(kind: str, name: str, call: str) -> Iterator[None]:
    """Turns an exception a plugin raises in `call` (e.g. "fit") into one PluginError line that
    names the plugin and the call; XadErrors (already one line for the user) pass unchanged."""
    try:
        yield
    except XadError:
        raise
    except Exception as exc:  # a plugin may fail in any way; the user needs to know which and where
        message = " ".join(str(exc).split())
        raise PluginError(f"{kind} {name!r} failed in {call}: {type(exc).__name__}: {message}") from exc
