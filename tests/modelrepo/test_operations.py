"""The operations as a library (``xor-models`` covers them end to end in test_cli)."""

from __future__ import annotations

import pytest

from modelrepo.errors import UnknownVersion, UsageError
from modelrepo.operations import collect_garbage, plan_gc, promote, rollback, set_canary_percent
from modelrepo.repository import LocalRepository
from tests.modelrepo.conftest import Publish, drop_unverified


@pytest.mark.parametrize("keep", [0, -1, True])
def test_gc_keeps_at_least_one(repo: LocalRepository, keep: int) -> None:
    with pytest.raises(UsageError, match="--keep is an integer of at least 1"):
        plan_gc(repo, keep)


@pytest.mark.parametrize("percent", [-1, 101, True, 5.0])
def test_canary_percent_is_an_integer_0_to_100(repo: LocalRepository, percent: int) -> None:
    with pytest.raises(UsageError, match="the canary percentage is an integer 0 to 100"):
        set_canary_percent(repo, percent)


def test_promote_refuses_a_bad_label_name(repo: LocalRepository, publish: Publish) -> None:
    publish(1)
    with pytest.raises(UsageError, match="a label name is"):
        promote(repo, 1, "Stable")


def test_gc_deletes_unverified_versions_too_but_never_the_newest(
    repo: LocalRepository, publish: Publish
) -> None:
    drop_unverified(repo.path, 1)
    publish(2)
    publish(3)
    plan = collect_garbage(repo, 1)
    assert plan.delete == (1, 2)
    assert [info.version for info in repo.list_versions()] == [3]


def test_a_label_may_point_at_a_version_gc_keeps_for_it(
    repo: LocalRepository, publish: Publish
) -> None:
    for version in (1, 2, 3):
        publish(version)
    promote(repo, 1)
    collect_garbage(repo, 1)
    assert [info.version for info in repo.list_versions()] == [1, 3]
    promote(repo, 3)
    assert rollback(repo).after.labels["stable"] == 1


def test_promote_of_an_unknown_version(repo: LocalRepository) -> None:
    with pytest.raises(UnknownVersion, match="no version 4"):
        promote(repo, 4)
