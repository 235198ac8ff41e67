"""reporting/ is a layer below the servicers with a report model of its own: it imports no
servicer and no proto, and the import contract refuses a reporting module that would."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

from tests.unit.test_layers import _copy, _lint_imports


@pytest.mark.parametrize("below", ["sessiongate.service", "sessiongate.api", "grpc", "google"])
def test_reporting_reaches_neither_the_servicers_nor_the_proto_messages(below: str) -> None:
    graph = grimp.build_graph("sessiongate", include_external_packages=True)
    chain = graph.find_shortest_chains("sessiongate.reporting", below, as_packages=True)
    assert not chain, sorted(chain)


def test_a_reporting_module_importing_a_servicer_breaks_the_layers(repo_root: Path,
                                                                   tmp_path: Path) -> None:
    """Once allowed: service and reporting were siblings that could import each other."""
    builder = _copy(repo_root, tmp_path) / "reporting" / "builder.py"
    builder.write_text(builder.read_text()
                       + "\nfrom sessiongate.service.runtime import Runtime  # noqa\n")
    r = _lint_imports(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout and "sessiongate.reporting.builder" in r.stdout, r.stdout
