"""ruff and mypy --strict stay clean: checked by the suite so that CI enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_ruff_is_clean(repo_root: Path) -> None:
    r = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "tools", "bench"],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_is_clean(repo_root: Path) -> None:
    r = subprocess.run([str(BIN / "mypy")], cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
