"""Data flows one way: schemas (pure contract) <- streams (agents) -> serving (clients) ->
models (torch, front end). A test, so an import against the grain fails at once (the query
API used to import the agents' audio module)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> packages it must never import
FORBIDDEN = {
    "schemas": {"streams", "serving", "models", "infra"},
    "models": {"streams", "serving", "infra"},
    "serving": {"streams", "infra"},
    "streams": {"infra"},
}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_data_flow(package: str) -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {sorted(_imports(p) & FORBIDDEN[package])}"
        for p in sorted((ROOT / package).rglob("*.py"))
        if _imports(p) & FORBIDDEN[package]
    ]
    assert not bad, bad
