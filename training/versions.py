"""Version directories in an export dir (no TensorFlow needed to list them)."""

from __future__ import annotations

import time
from pathlib import Path

from modelrepo.format import version_number


def version_of(entry: Path) -> int | None:
    """The version an entry's name stands for (a positive integer), or None."""
    return version_number(entry.name)


def published_versions(export_dir: Path) -> list[int]:
    """Complete versions in ``export_dir``, oldest first (temporary and stray entries ignored)."""
    try:
        entries = list(export_dir.iterdir())
    except FileNotFoundError:
        return []
    versions = [
        version
        for entry in entries
        if (version := version_of(entry)) is not None and (entry / "saved_model.pb").is_file()
    ]
    return sorted(versions)


def next_version(export_dir: Path) -> int:
    """A Unix timestamp, bumped past every integer-named entry (complete or not).

    Versions must strictly increase, as Estimator's exports and TF Serving expect.
    """
    taken = [v for entry in export_dir.iterdir() if (v := version_of(entry)) is not None]
    return max(int(time.time()), max(taken, default=0) + 1)
