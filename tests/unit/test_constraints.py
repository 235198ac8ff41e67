"""constraints.txt pins every dependency, and the suite runs against exactly those versions.

Without the lock a fresh machine installs whatever is newest that day, and an untouched main
can turn red (redis-py 8.2 annotating `PubSub.aclose` made a `type: ignore` unused).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path


def _name(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement (PEP 503 normalization)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pins(repo_root: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (repo_root / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[_name(name)] = version.strip()
    return pins


def _declared(repo_root: Path) -> set[str]:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    return {_name(r) for r in requirements}


def test_every_declared_dependency_is_pinned(repo_root: Path) -> None:
    missing = _declared(repo_root) - set(_pins(repo_root))
    assert not missing, f"not in constraints.txt (run `make lock`): {sorted(missing)}"


def test_the_installed_versions_are_the_pinned_ones(repo_root: Path) -> None:
    installed = {_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name))
             for name, version in _pins(repo_root).items() if installed.get(name) != version}
    assert not wrong, f"pinned vs installed (run `make setup`): {wrong}"
