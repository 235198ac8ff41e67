"""matplotlib is the optional `report` extra: the sidecar does not depend on it (without it a
report goes out without its chart and says so: tests/integration/test_reports_delivery.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path


def test_matplotlib_is_only_in_the_report_extra(repo_root: Path) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("matplotlib") for d in project["dependencies"])
    assert any(d.startswith("matplotlib") for d in project["optional-dependencies"]["report"])
    assert "'.[dev,report]'" in (repo_root / "Makefile").read_text()
