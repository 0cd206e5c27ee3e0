"""The house's rules, read from the source (no import is executed): no import circle inside
rva/, programs that never import each other, core and libraries that never import a program,
the plugin names the config accepts equal to the plugins that exist, and files that fit on a
few screens.

The import graph has an edge A → B for every module B that A names in an import statement,
at the top or inside a function, TYPE_CHECKING blocks included: a circle through a function-
level import is still a circle (the one this test was written for went config → gears → config
through a validator's import). ``from P import m`` names the module P.m when m is a module of P.
A package's own __init__ is not an implicit edge of its submodules (Python imports it first, but
it is the package's table of contents, not a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rva import const
from tests.conftest import ROOT

RVA = ROOT / "rva"
PROGRAMS = ("capture", "gears", "stages", "web", "mqtt")  # rva.services.<name>: one unit each
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(RVA.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The rva modules ``name`` imports, by the rules in this file's docstring."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # "import rva.services.web.app" names that module; "import rva" the package.
            while target and target not in MODULES and target.startswith("rva"):
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def room(name: str) -> str:
    """Which room a module is in: program:<name>, tools, cli, or core (core and libraries)."""
    parts = name.split(".")
    if parts[1:2] == ["services"] and len(parts) > 2:
        return f"program:{parts[2]}"
    if parts[1:2] in (["tools"], ["cli"]):
        return parts[1]
    if name == "rva.__main__":  # the console script: rva.cli's entry point
        return "cli"
    return "core"


def test_the_graph_sees_the_imports_it_must() -> None:
    """The checker itself: it finds imports at the top and inside functions, and the circle
    this file exists for would have been found."""
    assert "rva.config" in GRAPH["rva.gears.base"]
    assert "rva.camera.picamera" in GRAPH["rva.config.sections"]  # a function-level import
    assert "rva.services.web.auth" in GRAPH["rva.cli.services"]  # "from P import m as x"
    old = {**GRAPH, "rva.config.sections": GRAPH["rva.config.sections"] | {"rva.gears"}}
    circle = find_circle(old)
    assert circle is not None and "rva.config.sections" in circle and "rva.gears" in circle


def test_no_import_circle_inside_rva() -> None:
    assert find_circle(GRAPH) is None, " → ".join(find_circle(GRAPH) or [])


def test_programs_never_import_each_other() -> None:
    crossings = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if room(name).startswith("program:")
        and room(target).startswith("program:")
        and room(target) != room(name)
    ]
    assert not crossings, crossings


def test_core_and_libraries_never_import_a_program_a_tool_or_the_cli() -> None:
    upward = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if room(name) == "core" and room(target) != "core"
    ]
    assert not upward, upward


def test_programs_never_import_tools_or_the_cli() -> None:
    upward = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if room(name).startswith("program:") and room(target) in ("tools", "cli")
    ]
    assert not upward, upward


def test_every_program_has_its_room() -> None:
    for program in PROGRAMS:
        assert f"rva.services.{program}" in MODULES, program
    rooms = {n.split(".")[2] for n in MODULES if n.startswith("rva.services.")}
    assert rooms == set(PROGRAMS), "rva/services/ holds only the programs"


def test_analytics_is_pure() -> None:
    """Tracking and counting geometry: no Redis, no config, nothing but itself."""
    for name, targets in GRAPH.items():
        if name.startswith("rva.analytics"):
            assert all(t.startswith("rva.analytics") for t in targets), (name, targets)
            assert "import redis" not in MODULES[name].read_text(), name


def test_the_plugin_names_the_config_accepts_are_the_plugins_there_are() -> None:
    from rva.gears import GEAR_TYPES
    from rva.models.backends import BACKENDS, PREFERENCE

    assert set(GEAR_TYPES) == set(const.GEAR_TYPES)
    assert set(BACKENDS) == set(const.BACKENDS)  # both runtimes are installed for the tests
    assert set(PREFERENCE) <= set(const.BACKENDS)


def _source_files() -> list[Path]:
    tracked = [
        *RVA.rglob("*.py"),
        *(ROOT / "image-build").rglob("*.py"),
        *(ROOT / "scripts").iterdir(),
        ROOT / "rootfs/usr/lib/rva-firstboot/rva-firstboot",
        *(ROOT / "rva/services/web/static").iterdir(),
    ]
    return [p for p in tracked if p.is_file() and "__pycache__" not in p.parts]


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_file_is_over_450_lines(path: Path) -> None:
    lines = len(path.read_text(errors="replace").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines; split it by concern"


def test_the_readme_is_a_user_guide_of_at_most_300_lines() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md: {len(lines)} lines; details go to docs/"
