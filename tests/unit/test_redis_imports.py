"""Only `store/` talks to Redis: every other module reaches it through `store/transport.py`
and imports nothing of redis-py but its exception classes (`redis.exceptions`), so no loop of
ours runs on a redis-py client (the sweep's did: its per-reply timeouts tripled an idle
server's instructions) and no store-less path opens a connection of its own."""

from __future__ import annotations

import ast
from pathlib import Path


def _redis_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        found += [n for n in names if n.split(".")[0] == "redis" and n != "redis.exceptions"]
    return found


def test_nothing_outside_the_stores_imports_a_redis_client(repo_root: Path) -> None:
    package = repo_root / "src" / "sessiongate"
    outside = [p for p in package.rglob("*.py")
               if package / "store" not in p.parents and package / "api" not in p.parents]
    assert len(outside) > 50  # the walk found the package
    breaches = {str(p.relative_to(package)): names for p in outside
                if (names := _redis_imports(p))}
    assert breaches == {}
