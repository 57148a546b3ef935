"""Plugin registries for methods and data sets, fed by entry points.

Built-ins are declared in our own pyproject.toml exactly like third-party plugins, so both are
found the same way. Listing names imports nothing; a plugin is imported when first used.
`declared_attribute` reads a class attribute a plugin declares as a literal from its source,
and `missing_extra` checks the optional extra an entry point names ("module:Name [extra]"),
both without importing the plugin, so `xadbench methods list` answers at once.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import io
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
import importlib.metadata
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from xadbench.errors import MissingExtraError, PluginError, XadError

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

    def declared(self, name: str, attribute: str) -> Any:
        """A plugin's class attribute, without importing the plugin where its entry point's
        optional extra is installed and its source declares the attribute as a literal
        (`missing_extra`, `declared_attribute`); otherwise read from the loaded plugin.
        MissingExtraError when the extra is missing, PluginError when the plugin does not load."""
        eps = self._entry_points().get(name, [])
        if len(eps) == 1:
            extra = missing_extra(eps[0])
            if extra is not None:
                raise MissingExtraError(f"{self.kind} {name!r} needs an optional extra: "
                                        f"pip install '{_distribution_name(eps[0])}[{extra}]'")
            value = declared_attribute(eps[0], attribute)
            if value is not None:
                return value
        return getattr(self.get(name), attribute)

    def display_name(self, name: str) -> str:
        """How reports name a plugin: its declared `display_name`, else `name` itself (also when
        the plugin is not registered or does not load here, e.g. a run folder from another
        machine)."""
        try:
            return self.declared(name, "display_name") or name
        except XadError:
            return name

    def is_reference(self, name: str) -> bool:
        """Whether the method plugin `name` declares itself a reference map (`Method.reference`);
        False for a name that is not registered or does not load here (a run folder from another
        machine)."""
        try:
            return bool(self.declared(name, "reference"))
        except XadError:
            return False

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


def declared_attribute(ep: EntryPoint, attribute: str) -> str | bool | None:
    """The string or bool an entry point's target declares for a class attribute, read from its module's
    source without running it: `attribute = "..."` in the class body, else in a base class
    defined in the same module, and for `NAME = Variant(Class, ...)` its keyword of that name,
    else in Class. None when the
    source does not say it as a literal (the caller then loads the plugin)."""
    try:
        spec = importlib.util.find_spec(ep.module)  # imports the parent packages only
        source = Path(spec.origin).read_text() if spec and spec.origin and spec.origin.endswith(".py") else None
        tree = ast.parse(source) if source is not None else None
    except (ImportError, ValueError, OSError, SyntaxError, UnicodeDecodeError):
        return None
    if tree is None:
        return None
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    calls = {target.id: node.value for node in tree.body
             if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
             for target in node.targets if isinstance(target, ast.Name)}

    def literal(value: ast.expr | None) -> str | bool | None:
        return value.value if isinstance(value, ast.Constant) and isinstance(value.value, (str, bool)) else None

    def lookup(name: str, seen: frozenset[str]) -> str | bool | None:
        if name in seen:
            return None
        if name in classes:
            for statement in classes[name].body:
                targets = statement.targets if isinstance(statement, ast.Assign) else (
                    [statement.target] if isinstance(statement, ast.AnnAssign) else [])
                if any(isinstance(t, ast.Name) and t.id == attribute for t in targets):
                    return literal(statement.value)
            bases = [base.id for base in classes[name].bases if isinstance(base, ast.Name)]
            return next((found for base in bases if (found := lookup(base, seen | {name})) is not None), None)
        call = calls.get(name)
        if (call is not None and isinstance(call.func, ast.Name) and call.func.id == "Variant"
                and call.args and isinstance(call.args[0], ast.Name)):
            own = next((k.value for k in call.keywords if k.arg == attribute), None)
            if own is not None:
                return literal(own)
            return lookup(call.args[0].id, seen | {name})
        return None

    return lookup(ep.attr, frozenset())


def missing_extra(ep: EntryPoint) -> str | None:
    """The first optional extra the entry point names ("module:Name [extra]") of which some
    requirement cannot be imported (its distribution is absent, or a top-level module of it is
    not found); None when every named extra is usable."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    for extra in ep.extras:
        for requirement in dist.requires or []:
            name, _, marker = requirement.partition(";")
            if not re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", marker):
                continue
            if not _importable(re.match(r"[A-Za-z0-9._-]+", name.strip()).group(0)):
                return extra
    return None


def _importable(distribution: str) -> bool:
    try:
        found = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    top_level = (found.read_text("top_level.txt") or "").split() or [distribution.replace("-", "_").lower()]
    try:
        return all(importlib.util.find_spec(module) is not None for module in top_level)
    except (ImportError, ValueError):
        return False


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
