"""The committed stubs under src/sessiongate/api must be what `make proto` generates now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_committed_stubs_are_fresh(repo_root: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(repo_root / "tools" / "genproto.py"), "--out", str(tmp_path)],
        check=True, capture_output=True,
    )
    api = tmp_path / "sessiongate" / "api"
    generated = {p.relative_to(tmp_path): p.read_bytes() for p in api.rglob("*.py*")}
    committed_dir = repo_root / "src"
    committed = {
        p.relative_to(committed_dir): p.read_bytes()
        for p in (committed_dir / "sessiongate" / "api").rglob("*.py*")
        if "__pycache__" not in p.parts
    }
    assert generated.keys() == committed.keys(), "run `make proto`: stub files differ"
    stale = [str(k) for k, v in generated.items() if committed[k] != v]
    assert not stale, f"run `make proto`: stale stubs {stale}"
