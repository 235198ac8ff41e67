"""The layering of pyproject.toml's `[tool.importlinter]` holds, and would catch a breach.

Layers, top down: cli > workers > app > metrics > http > service > reporting > billing >
usecases > store, rendering > ports > domain; the domain imports nothing of ours outside it
(nor grpc, redis, protobuf); the use-cases and ports import neither grpc nor redis nor the
servicers, stores or billing; the stores import no servicer, billing or gRPC; the speed
helpers (`sessiongate.speed`) import nothing of ours. docs/architecture.md draws it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

BIN = Path(sys.executable).parent


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the tree at `root` (its pyproject.toml and src/ first on the path)."""
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=root, capture_output=True, text=True,
        env={"PATH": str(BIN), "PYTHONPATH": str(root / "src"), "NO_COLOR": "1"})


def test_the_import_contracts_are_kept(repo_root: Path) -> None:
    r = _lint_imports(repo_root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 kept, 0 broken" in r.stdout, r.stdout


def test_the_leaf_contracts_name_every_other_module_of_ours(repo_root: Path) -> None:
    """A new top-level module cannot slip past the domain's or the speed helpers' contract."""
    config = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    package = repo_root / "src" / "sessiongate"
    ours = {f"sessiongate.{p.stem}" for p in package.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    for cid, own in (("pure-domain", "sessiongate.domain"), ("speed", "sessiongate.speed")):
        assert ours - {own} <= set(contracts[cid]["forbidden_modules"]), cid


def _copy(repo_root: Path, tmp_path: Path) -> Path:
    shutil.copy(repo_root / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(repo_root / "src" / "sessiongate", tmp_path / "src" / "sessiongate",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "src" / "sessiongate"


def test_a_use_case_importing_redis_breaks_its_contract(repo_root: Path, tmp_path: Path
                                                         ) -> None:
    """redis is below the use-cases in no layer: only the forbidden contract catches it."""
    login = _copy(repo_root, tmp_path) / "usecases" / "login.py"
    login.write_text(login.read_text() + "\nimport redis.exceptions  # noqa\n")
    r = _lint_imports(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "sessiongate.usecases.login -> redis" in r.stdout, r.stdout
    assert "4 kept, 1 broken" in r.stdout, r.stdout


def test_an_upward_import_breaks_the_layers(repo_root: Path, tmp_path: Path) -> None:
    """billing importing the servicers' runtime (as billing/components.py once did) fails."""
    shutil.copy(repo_root / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(repo_root / "src" / "sessiongate", tmp_path / "src" / "sessiongate",
                    ignore=shutil.ignore_patterns("__pycache__"))
    components = tmp_path / "src" / "sessiongate" / "billing" / "components.py"
    components.write_text(components.read_text()
                          + "\nfrom sessiongate.service.runtime import Runtime  # noqa\n")
    r = _lint_imports(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout and "sessiongate.billing.components" in r.stdout, r.stdout
    assert "4 kept, 1 broken" in r.stdout, r.stdout


def test_the_dunning_engine_on_a_store_breaks_its_contract(repo_root: Path, tmp_path: Path
                                                           ) -> None:
    """The engine reads and commits through ports.AccountCommits: a store import (as
    billing/engine.py once had) fails, although the store is a layer below."""
    dunning = _copy(repo_root, tmp_path) / "usecases" / "dunning.py"
    dunning.write_text(dunning.read_text()
                       + "\nfrom sessiongate.store.ledger_codec import decode_ledger  # noqa\n")
    r = _lint_imports(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "sessiongate.usecases.dunning -> sessiongate.store.ledger_codec" in r.stdout, r.stdout
    assert "4 kept, 1 broken" in r.stdout, r.stdout
