"""Code that cites docs/performance.md by a row's or section's name ("...") names one the
document has: a speed trick's reason must stay findable."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A citation, once line breaks and their comment markers are spaces.
CITED = re.compile(r'docs/performance\.md, (?:"What was tried", )?(?:row )?"([^"]+)"')


def citations() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src").rglob("*")):
        if path.suffix not in (".py", ".lua") or "_pb2" in path.name:
            continue
        text = re.sub(r"\s*\n\s*(?:#|--)?\s*", " ", path.read_text())
        for name in CITED.findall(text):
            found[name] = str(path.relative_to(ROOT))
    return found


def test_every_row_cited_from_code_is_in_the_document() -> None:
    doc = re.sub(r"\s+", " ", (ROOT / "docs" / "performance.md").read_text())
    cited = citations()
    assert len(cited) >= 10  # the pattern still finds them
    missing = {name: where for name, where in cited.items()
               if f"| {name}" not in doc and f"## {name}" not in doc}
    assert not missing, missing
