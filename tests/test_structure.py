"""The package's floors: no import circle, and no import from a lower floor to a higher one.

Every `import` counts, wherever it is written: at the top of a module, inside a function, or
under `if TYPE_CHECKING:` (a function-level import hides a circle from Python, not from a
reader). The floors, lowest first, are `LAYERS` below; a module may import modules on its own
floor or lower ones. A new module must be given a floor here.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "workbench"

LAYERS: list[tuple[str, ...]] = [
    # 0: no imports from the package: the run-directory contract, task ids, devices, networks,
    # the executors that run `workbench train` processes for `workbench compare`
    ("workbench", "runs", "tasks", "device", "nets", "stats", "executors"),
    # 1: configs (they check task ids, without importing the environments)
    ("config",),
    # 2: environments, the pieces the agents learn with, viewer-side inspection (reads runs only)
    (
        *("envs", "gymnasium_env", "replay", "world_model"),
        *("inspect", "inspect.figures", "inspect.projection"),
    ),
    # 3: the agents, one file each, behind `agents.base.AgentLike`
    (
        *("agents", "agents.base", "agents.lagrange", "agents.dreamer", "agents.osrp"),
        *("agents.bsrp_lag", "agents.barrier", "agents.cerl", "agents.lspc", "agents.bc"),
    ),
    # 4: what the loop is made of: events and hooks, evaluation, checkpoints, snapshots, datasets,
    # the data sources (the collector acting in envs, serially or in a thread; a dataset offline)
    (
        *("hooks", "evaluation", "checkpoint", "snapshots", "datasets", "tensorboard_sink"),
        *("collector", "offline"),
    ),
    # 5: the loop
    ("engine",),
    # 6: commands and viewers; 7: the command line over them all (app/, outside the package,
    # may import any of them; the package never imports it)
    (
        *("bench", "compare", "dashboard", "lessons", "export"),
        *("widgets", "widgets.display", "widgets.views", "widgets.board", "widgets.training"),
    ),
    ("cli", "__main__"),
]


def floor_of() -> dict[str, int]:
    """Module name (without `workbench.`, the package itself as `workbench`) -> its floor."""
    return {name: floor for floor, names in enumerate(LAYERS) for name in names}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts)


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """`workbench.x.y` -> its file, for every module of the package."""
    paths = sorted((root / "workbench").rglob("*.py"))
    return {module_name(path, root): path for path in paths}


def imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package modules `path` (module `name`) imports, anywhere in it."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from workbench import checkpoint` imports a module
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {target for target in found if target in modules and target != name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {name: imports(path, name, modules) for name, path in modules.items()}


def short(name: str) -> str:
    return name.removeprefix("workbench.") if name != "workbench" else name


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    floors = floor_of()
    return [
        f"{short(a)} (floor {floors[short(a)]}) imports {short(b)} (floor {floors[short(b)]})"
        for a, targets in sorted(graph.items())
        for b in sorted(targets)
        if floors[short(b)] > floors[short(a)]
    ]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import circle through each module that is on one (depth-first search)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append([short(n) for n in path[path.index(target) :]] + [short(target)])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_has_a_floor():
    unplaced = {short(name) for name in package_modules()} - set(floor_of())
    assert not unplaced, f"give these modules a floor in LAYERS: {sorted(unplaced)}"


def test_no_module_imports_a_higher_floor():
    assert upward_imports(import_graph()) == []


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_the_package_never_imports_the_app():
    for path in package_modules().values():
        tree = ast.parse(path.read_text())
        names = [
            alias.name if isinstance(node, ast.Import) else node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        ]
        assert not [n for n in names if n.split(".")[0] in ("app", "common")], path


RUN_FILE_LITERALS = (
    r"""["'](ep|eval|snap|ckpt)_|f["'](ep|eval|snap|ckpt)_"""
    r"""|["'](run\.json|config\.json|metrics\.jsonl|comparison\.json|table\.md|table\.csv)["']"""
    r"""|\.parent\.parent|["']\*\.html["']"""
)
"""A run's (or a comparison folder's) file names written in code, or a path taken apart."""


def test_only_runs_py_spells_the_run_directory():
    """`runs.py` owns every file of a run: no other code of the package or app writes a file
    name of it, or climbs from a file to its run (`runs.run_of` does)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    found = subprocess.run(
        ["git", "grep", "-n", "-E", RUN_FILE_LITERALS, "--", "workbench", "app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    others = [line for line in found if not line.startswith("workbench/runs.py:")]
    assert others == [], "use the names in workbench/runs.py"


def test_the_loop_is_written_once():
    """Online and offline runs share the engine's loop; what differs is their data source
    (`engine.Source`). No class of the package derives from `Engine` to replace it."""
    subclasses = [
        f"{path.relative_to(ROOT)}: {node.name}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id == "Engine" for b in node.bases)
    ]
    assert subclasses == []
