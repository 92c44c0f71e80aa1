"""What a Python file imports, read from its syntax tree (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_top_levels(file: Path) -> set[str]:
    """The top-level packages ``file`` imports absolutely (``import a.b``, ``from a.b import c``:
    ``a``); relative imports are its own package's."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names
