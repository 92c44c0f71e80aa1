"""What ``xor-models`` and training do to a repository, on the ``Repository`` interface.

Every change is a read-modify-write under the repository's lock, so two processes at once
never lose an update. Each first runs once without the lock and without writing (a dry run):
every error a request can meet (an unknown version, a version failing its manifest, a broken
labels.json, a bad percentage) is found there, before anything is created or changed; then it
runs again, for real, under the lock, on what the repository holds by then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from modelrepo.errors import NothingToRollBack, UnknownVersion, UsageError
from modelrepo.format import (
    CANARY_LABEL,
    DEFAULT_LABEL,
    LABELS_FILE,
    Index,
    Labels,
    check_label_name,
)
from modelrepo.repository import Repository


@dataclass(frozen=True)
class LabelChange:
    """labels.json before and after (equal when there was nothing to change), and warnings."""

    before: Labels
    after: Labels
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.before != self.after


Change = Callable[[Labels], tuple[Labels, tuple[str, ...]]]


def _update_labels(repo: Repository, change: Change) -> LabelChange:
    current = repo.read_labels()
    planned, warnings = change(current)  # the dry run: raises before anything is touched
    if planned == current:  # nothing to do: no lock taken (it may create the lock file)
        return LabelChange(current, current, warnings)
    with repo.locked():
        before = repo.read_labels()
        after, warnings = change(before)
        if after != before:
            repo.write_labels(after)
    return LabelChange(before, after, warnings)


def check_servable(repo: Repository, version: int) -> tuple[str, ...]:
    """Raise unless ``version`` exists and, if it has a manifest, its files match it.

    UnknownVersion, VerificationError or FormatError; returns a warning for a version without
    a manifest (a plain local directory's: it loads, but nothing vouches for its files).
    """
    info = repo.get_version(version)
    if not info.has_manifest:
        return (f"version {version} has no MANIFEST.json: its files were not checked",)
    repo.verify_version(version)
    return ()


def promote(repo: Repository, version: int, label: str = DEFAULT_LABEL) -> LabelChange:
    """Point ``label`` at ``version``, its previous value kept in its history."""
    check_label_name(label)

    def change(labels: Labels) -> tuple[Labels, tuple[str, ...]]:
        warnings = check_servable(repo, version)
        return labels.with_label(label, version), warnings

    return _update_labels(repo, change)


def rollback(repo: Repository, label: str = DEFAULT_LABEL) -> LabelChange:
    """Point ``label`` back at the newest value of its history (which leaves the history)."""
    check_label_name(label)

    def change(labels: Labels) -> tuple[Labels, tuple[str, ...]]:
        previous = labels.history.get(label, ())
        if not previous:
            raise NothingToRollBack(
                f"{repo.location}: {label} has no previous version in {LABELS_FILE}'s "
                "history: nothing to roll back to"
            )
        try:
            warnings = check_servable(repo, previous[-1])
        except UnknownVersion as exc:
            raise UnknownVersion(
                f"{repo.location}: version {previous[-1]}, the previous value of {label}, "
                "is no longer in the repository"
            ) from exc
        return labels.rolled_back(label), warnings

    return _update_labels(repo, change)


def set_canary_percent(repo: Repository, percent: int) -> LabelChange:
    """Send ``percent`` of unpinned requests to the ``canary`` label.

    Above 0, a ``canary`` label must exist: a share for nobody would be silently ignored by
    the server, and the person setting it would believe a canary runs. 0 is always accepted.
    """
    if type(percent) is not int or not 0 <= percent <= 100:
        raise UsageError(f"the canary percentage is an integer 0 to 100, got {percent!r}")

    def change(labels: Labels) -> tuple[Labels, tuple[str, ...]]:
        if percent > 0 and CANARY_LABEL not in labels.labels:
            raise UsageError(
                f"{repo.location}: no {CANARY_LABEL!r} label to send {percent} % to: point "
                f"one at a version first (xor-models promote REPO VERSION --label {CANARY_LABEL})"
            )
        return replace(labels, canary_percent=percent), ()

    return _update_labels(repo, change)


@dataclass(frozen=True)
class GcPlan:
    """What gc deletes, what it keeps beyond the newest N and why, and leftovers it removes."""

    delete: tuple[int, ...]
    protected: tuple[tuple[int, str], ...]
    leftovers: tuple[str, ...]


def plan_gc(repo: Repository, keep: int) -> GcPlan:
    """The versions beyond the newest ``keep`` go, except those a label points at or keeps in
    its history (rollback must still find them)."""
    if type(keep) is not int or keep < 1:
        raise UsageError(f"--keep is an integer of at least 1, got {keep!r}")
    versions = [info.version for info in repo.list_versions()]
    in_use = repo.read_labels().versions_in_use()
    older = versions[:-keep]
    protected = tuple((v, ", ".join(in_use[v])) for v in older if v in in_use)
    delete = tuple(v for v in older if v not in in_use)
    return GcPlan(delete, protected, tuple(repo.leftovers()))


def collect_garbage(repo: Repository, keep: int, *, dry_run: bool = False) -> GcPlan:
    """Carry out ``plan_gc`` (nothing is touched with ``dry_run``, nor when there is nothing
    to do), then rewrite index.json."""
    plan = plan_gc(repo, keep)
    if dry_run or not (plan.delete or plan.leftovers):
        return plan
    with repo.locked():
        plan = plan_gc(repo, keep)
        for version in plan.delete:
            repo.delete_version(version)
        for name in plan.leftovers:
            repo.remove_leftover(name)
        repo.rewrite_index()
    return plan


def refresh_index(repo: Repository) -> Index:
    """Rewrite index.json from a listing, under the lock (after a version was published)."""
    with repo.locked():
        return repo.rewrite_index()
