"""The import rule, read from the source: xadbench's modules form a directed graph without cycles,
every import counted (inside functions and `if TYPE_CHECKING:` blocks too), and only the command
line (`xadbench/cli/`) imports typer, rich's progress bars or `xadbench.reports`."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where each package's files live (pyproject's package-dir: methods/, datasets/ and reports/ are
#: top-level folders imported as xadbench.<name>).
PACKAGE_DIRS = {"xadbench": "xadbench", "xadbench.methods": "methods", "xadbench.datasets": "datasets",
                "xadbench.reports": "reports"}
#: Imports only the command line may make (a module or any of its submodules).
CLI_ONLY = ("typer", "rich.progress", "xadbench.reports")
CLI_PACKAGE = "xadbench.cli"


def module_files() -> dict[str, Path]:
    """Every module of the distribution by its dotted name (a package by its own name)."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """The dotted names the source of `module` imports anywhere in its body; `from a import b` gives a.b as well
    as a (b may be a submodule); relative imports resolved against `module`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between xadbench's modules, every imported name) per module. An import of a package
    that is not a module itself (`from xadbench import runner`) points at the module it names."""
    files = module_files()
    edges, imports = {}, {}
    for module, path in files.items():
        names = imported_names(path.read_text(), module, path.name == "__init__.py")
        imports[module] = names
        # `from xadbench import runner` names both xadbench and xadbench.runner: the submodule is
        # the edge; the bare package only when nothing under it is named.
        targets = {n for n in names if n in files and n != module}
        edges[module] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return edges, imports


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def cli_only_imports(imports: dict[str, set[str]]) -> list[str]:
    """'module imports name' for every CLI-only import made outside xadbench/cli/ (the reports'
    own modules import each other)."""
    found = []
    for module, names in sorted(imports.items()):
        if module == CLI_PACKAGE or module.startswith(CLI_PACKAGE + "."):
            continue
        for name in sorted(names):
            banned = next((b for b in CLI_ONLY if name == b or name.startswith(b + ".")), None)
            if banned and not (banned == "xadbench.reports" and module.startswith("xadbench.reports")):
                found.append(f"{module} imports {name}")
    return found


def test_the_graph_covers_the_whole_distribution():
    edges, _ = import_graph()
    assert {"xadbench.runner", "xadbench.cli.commands", "xadbench.methods.fcdd", "xadbench.datasets.mvtec",
            "xadbench.reports.tables", "xadbench.studies.clever_hans", "xadbench.metrics.aupro"} <= set(edges)
    assert "xadbench.executors" in edges["xadbench.cli.commands"] or any(
        "xadbench.executors" in edges[m] for m in edges if m.startswith("xadbench.cli"))


def test_the_imports_form_no_cycle():
    edges, _ = import_graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_only_the_command_line_imports_typer_rich_progress_and_the_reports():
    _, imports = import_graph()
    assert cli_only_imports(imports) == []


def test_the_checks_catch_a_cycle_through_a_function_level_import():
    """The two checks on a made-up graph: a function-level import that closes a loop, and typer
    imported by a library module."""
    source = "def f():\n    from xadbench import runner\n"
    assert "xadbench.runner" in imported_names(source, "xadbench.executors", is_package=False)
    assert "xadbench.cli.errors" in imported_names("from .errors import one_line", "xadbench.cli.commands", False)
    assert "xadbench.cli.errors" in imported_names("from .errors import one_line", "xadbench.cli", True)
    edges = {"xadbench.runner": {"xadbench.executors"}, "xadbench.executors": {"xadbench.runner"}}
    assert find_cycle(edges) == ["xadbench.executors", "xadbench.runner", "xadbench.executors"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert cli_only_imports({"xadbench.runner": {"typer"}, "xadbench.cli.commands": {"typer"},
                             "xadbench.reports.html": {"xadbench.reports.tables"},
                             "xadbench.studies.sigma": {"xadbench.reports.sensitivity"}}) == [
        "xadbench.runner imports typer", "xadbench.studies.sigma imports xadbench.reports.sensitivity"]



def imported_closure(edges: dict[str, set[str]], module: str) -> set[str]:
    """Every module `module` imports, directly or through others."""
    seen, stack = set(), [module]
    while stack:
        for target in edges.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def test_the_plugin_kit_imports_no_runner_or_store():
    """`xadbench.testing`, what a plugin author imports, loads neither the job machinery nor the
    results store."""
    edges, _ = import_graph()
    reached = imported_closure(edges, "xadbench.testing")
    assert {"xadbench.method", "xadbench.seeding"} <= reached
    assert not reached & {"xadbench.runner", "xadbench.grid", "xadbench.store", "xadbench.run_folder",
                          "xadbench.executors"}
