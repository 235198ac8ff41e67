"""Generate the Python stubs of protos/ into src/ (or --out DIR, used by the staleness test).

Generated files are committed under src/sessiongate/api/ and never edited by hand.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out: pathlib.Path) -> None:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    bindir = pathlib.Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Packages need __init__.py so that `sessiongate.api.v1` imports as a regular package.
    for d in {(out / f).parent for f in files}:
        while d != out:
            init = d / "__init__.py"
            if not init.exists():
                init.write_text("# Generated package marker (make proto).\n")
            d = d.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "src")
    ns = parser.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    generate(ns.out)
    print(f"generated stubs into {ns.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
