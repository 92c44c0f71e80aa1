"""Running promtool (Debian's ``prometheus`` package, installed by scripts/system-deps)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

from tests.support import REPO

MONITORING: Final = REPO / "monitoring"


def run_promtool(promtool: str, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    """``promtool ARGUMENTS``, run in the repository (relative paths as the docs give them)."""
    return subprocess.run(
        [promtool, *map(str, arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
