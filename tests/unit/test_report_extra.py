"""matplotlib is the optional `report` extra: without it `sessiongate report` says how to
install it, before asking the server anything, and the sidecar does not depend on it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

# matplotlib made unimportable (None in sys.modules), then the real CLI entry point.
WITHOUT_MATPLOTLIB = (
    "import sys; sys.modules['matplotlib'] = None\n"
    "from sessiongate.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_report_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, "report", "acme", "--month", "2026-10",
         "--addr", "127.0.0.1:9", "--out", str(tmp_path)],  # port 9: nothing is asked
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "pip install 'sessiongate[report]'" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_matplotlib_is_only_in_the_report_extra(repo_root: Path) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("matplotlib") for d in project["dependencies"])
    assert any(d.startswith("matplotlib") for d in project["optional-dependencies"]["report"])
    assert "'.[dev,report]'" in (repo_root / "Makefile").read_text()
