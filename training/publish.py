"""``--publish s3://BUCKET/PREFIX``: after the local export, upload the version to a model
repository on S3 (``modelrepo.s3``), its manifest last, then point ``--label`` there.

The repository is checked before training (reachable, credentials accepted, labels.json
readable), so a wrong endpoint or key fails in a second with exit 1, not after the training.
With ``--if-missing`` the repository's versions, not the export dir's, decide whether to train;
the new version is numbered above the repository's newest as well as the export dir's, so a
new local volume, or another trainer's upload, cannot make the upload collide with a version.
An upload that fails half way leaves files without a manifest, which no reader takes for a
version; the local export stays as it is.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from modelrepo.errors import ModelRepoError
from modelrepo.operations import promote
from modelrepo.repository import Repository, open_repository
from training.errors import ExportError

log = logging.getLogger(__name__)


def open_destination(url: str) -> Repository:
    """The S3 repository ``url`` names, once it answered (ExportError, exit 1, otherwise)."""
    try:
        repo = open_repository(url)
        repo.read_labels()
    except ModelRepoError as exc:
        raise ExportError(f"cannot publish: {exc}") from exc
    return repo


def newest_version(repo: Repository) -> int | None:
    """The repository's newest version, None if it holds none (ExportError, exit 1, if it
    cannot be listed)."""
    try:
        versions = repo.list_versions()
    except ModelRepoError as exc:
        raise ExportError(f"cannot list the versions of {repo.location}: {exc}") from exc
    return versions[-1].version if versions else None


def publish_version(repo: Repository, version_dir: Path, version: int, label: str | None) -> None:
    """Upload the exported ``version_dir`` as ``version``; then point ``label`` at it."""
    started = time.monotonic()
    try:
        repo.publish(version_dir, version)
    except ModelRepoError as exc:
        raise ExportError(
            f"version {version} exported to {version_dir.parent}, but not published to "
            f"{repo.location}: {exc}"
        ) from exc
    log.info(
        "published version %d to %s in %.2f s", version, repo.location, time.monotonic() - started
    )
    if label is None:
        return
    try:
        change = promote(repo, version, label)
    except ModelRepoError as exc:
        raise ExportError(
            f"version {version} published to {repo.location}, but label {label} not set: {exc}"
        ) from exc
    previous = change.before.labels.get(label)
    log.info(
        "label %s of %s -> version %d%s",
        label,
        repo.location,
        version,
        f" (was {previous})" if previous is not None and previous != version else "",
    )
