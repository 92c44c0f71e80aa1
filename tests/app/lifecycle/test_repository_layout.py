"""The server keeps working on a model repository: MANIFEST.json in each version, and
labels.json, index.json, the lock file and leftovers of interrupted runs at the root (not
versions: their names are not integers). Serving by label is a later step: the newest wins."""

from __future__ import annotations

import shutil
from pathlib import Path

from modelrepo.operations import promote
from modelrepo.repository import LocalRepository
from tests.support.apps import serving_client


def test_a_version_with_manifest_in_a_repository_is_served(
    model_dir: Path, trained_version: Path, trained_version_number: int
) -> None:
    repo = LocalRepository(model_dir)
    repo.publish(trained_version, trained_version_number)
    promote(repo, trained_version_number, "stable")
    leftover = model_dir / ".deleting-1-x"
    shutil.copytree(trained_version, leftover)  # a complete SavedModel, being deleted
    assert {p.name for p in model_dir.iterdir()} == {
        str(trained_version_number),
        "labels.json",
        "index.json",
        ".modelrepo.lock",
        ".deleting-1-x",
    }
    assert (model_dir / str(trained_version_number) / "MANIFEST.json").is_file()

    with serving_client(model_dir) as client:
        described = client.get("/model").json()
        assert described["model_version"] == trained_version_number
        assert described["path"] == str(model_dir / str(trained_version_number))
        response = client.post("/predict", json={"instances": [[0, 0], [0, 1], [1, 0], [1, 1]]})
        assert response.status_code == 200
        assert [p["class_id"] for p in response.json()["predictions"]] == [0, 1, 1, 0]
        assert client.get("/health").status_code == 200
