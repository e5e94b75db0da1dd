"""The install contract: pyproject.toml is the only list of dependencies and declares every
package the code imports; plain pip gets the same list (less the --no-deps pair) from it; uv's
overrides agree with the core pins; `python -m workbench` works."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCAL = {"workbench", "app", "tests", "notebooks", "build", "common"}
DISTRIBUTION = {  # modules whose distribution is named otherwise
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "umap": "umap-learn",
    "safety_gymnasium": "safety-gymnasium",
    "PIL": "pillow",
    "google": "protobuf",
}


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "pyproject_requirements", ROOT / "scripts" / "pyproject_requirements.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


requirements_script = _load_script()


def _imported_top_level_modules(folders: list[Path]) -> dict[str, Path]:
    found = {}
    for path in (file for folder in folders for file in folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def _declared_names() -> set[str]:
    lines = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        lines += extra
    return {requirements_script.requirement_name(line) for line in lines}


def test_every_imported_package_is_declared_in_pyproject():
    declared = _declared_names()
    # Imported, but always brought by a declared package: ipykernel's IPython, gymnasium's
    # farama-notifications (imported only to silence it), streamlit's pandas, tensorboard's
    # protobuf (its config files are protobuf text).
    transitive = {"ipython", "farama-notifications", "pandas", "protobuf"}
    modules = _imported_top_level_modules(
        [ROOT / d for d in ("workbench", "app", "tests", "scripts")]
    )
    undeclared = []
    for module, path in sorted(modules.items()):
        if module in sys.stdlib_module_names or module in LOCAL or module == "__future__":
            continue
        distribution = DISTRIBUTION.get(module, module).lower().replace("_", "-")
        if distribution not in declared and distribution not in transitive:
            undeclared.append(f"{module} ({path.relative_to(ROOT)})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_no_second_list_of_requirements():
    assert not (ROOT / "requirements.txt").exists()
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "pyproject_requirements.py" in setup and "requirements.txt " not in setup


def test_plain_pip_gets_pyproject_list_without_the_no_deps_pair():
    lines = requirements_script.requirements(["dashboard", "dev"])
    names = [requirements_script.requirement_name(line) for line in lines]
    assert "torch" in names and "streamlit" in names and "pytest" in names
    assert "safety-gymnasium" not in names and "gymnasium-robotics" not in names
    assert "jupyterlab" not in names  # only the extras asked for
    assert len(names) == len(set(names))  # umap-learn is in two extras, listed once
    with pytest.raises(SystemExit, match="unknown extra nope; pyproject.toml declares"):
        requirements_script.requirements(["nope"])


def test_the_extras_the_issue_names_exist():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"dashboard", "notebooks", "tensorboard", "distributed", "dev"} <= set(extras)


def test_uv_overrides_agree_with_the_core_pins_and_drop_pygame():
    core = {
        requirements_script.requirement_name(line): line
        for line in PYPROJECT["project"]["dependencies"]
    }
    overrides = PYPROJECT["tool"]["uv"]["override-dependencies"]
    by_name = {requirements_script.requirement_name(line): line for line in overrides}
    assert by_name.pop("pygame").endswith("sys_platform == 'never'")
    for name, line in by_name.items():
        assert core[name] == line, f"override {line!r} differs from the dependency {core[name]!r}"
    assert {"numpy", "mujoco"} <= set(by_name)


def test_python_dash_m_workbench_help():
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: workbench" in done.stdout and "compare" in done.stdout


def test_installed_pins_meet_pyproject():
    """The environment the tests run in satisfies the core pins (numpy < 2, mujoco < 3.2)."""
    for name, bound in (("numpy", "2"), ("mujoco", "3.2")):
        version = importlib.metadata.version(name)
        assert tuple(map(int, version.split(".")[:2])) < tuple(map(int, bound.split("."))), version
