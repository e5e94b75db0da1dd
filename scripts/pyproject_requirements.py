"""Print the requirements pyproject.toml declares (the core and the named extras), one a line,
for plain pip: `pip install -r <(python scripts/pyproject_requirements.py dashboard,dev)`.

pyproject.toml is the only list. The packages whose own pins cannot install on Python 3.11
(`NO_DEPS`) are left out: scripts/setup.sh installs them with `--no-deps`, as uv's
`override-dependencies` would.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
NO_DEPS = ("safety-gymnasium", "gymnasium-robotics")


def requirement_name(requirement: str) -> str:
    """The normalised distribution name a requirement line starts with."""
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """The core dependencies and those of `extras`, without duplicates or `NO_DEPS`."""
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in declared]
    if unknown:
        raise SystemExit(
            f"unknown extra {', '.join(unknown)}; pyproject.toml declares {', '.join(declared)}"
        )
    lines = list(project["dependencies"])
    for extra in extras:
        lines += declared[extra]
    kept = [line for line in lines if requirement_name(line) not in NO_DEPS]
    return list(dict.fromkeys(kept))


if __name__ == "__main__":
    names = [name for name in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if name]
    print("\n".join(requirements(names)))
