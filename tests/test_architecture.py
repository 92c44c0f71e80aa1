"""The package boundaries of ARCHITECTURE.md: `app/` and `training/` never import each other,
and the shared `xorlog/` and `modelrepo/` import neither."""

from __future__ import annotations

import pytest

from tests.support import REPO
from tests.support.imports import imported_top_levels

FORBIDDEN = {
    "app": {"training"},
    "training": {"app"},
    "xorlog": {"app", "training"},
    "modelrepo": {"app", "training"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_within_their_boundary(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    crossings = [
        f"{file.relative_to(REPO)} imports {name}"
        for file in files
        for name in sorted(imported_top_levels(file) & FORBIDDEN[package])
    ]
    assert crossings == []
