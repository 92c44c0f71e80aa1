"""The package boundaries of ARCHITECTURE.md: `app/` and `training/` never import each other,
and the shared `xorlog/` and `modelrepo/` import neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

FORBIDDEN = {
    "app": {"training"},
    "training": {"app"},
    "xorlog": {"app", "training"},
    "modelrepo": {"app", "training"},
}


def _imported_top_levels(file: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_within_their_boundary(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    crossings = [
        f"{file.relative_to(REPO)} imports {name}"
        for file in files
        for name in sorted(_imported_top_levels(file) & FORBIDDEN[package])
    ]
    assert crossings == []
