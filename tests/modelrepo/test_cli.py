"""``xor-models``: each command through ``main``, each bad input (clear one-line message, exit
code, repository unchanged byte for byte), and a few runs as real processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelrepo.cli import main
from modelrepo.repository import LocalRepository
from tests.modelrepo.conftest import Publish, drop_unverified, snapshot, write_source
from tests.support import REPO


@pytest.fixture
def versions(repo: LocalRepository, publish: Publish) -> Path:
    """Versions 1 to 4, published; no labels yet, and no lock file (removed, so that a
    command creating it shows in a snapshot)."""
    for version in (1, 2, 3, 4):
        publish(version, accuracy=0.75 if version == 1 else 1.0)
    (repo.path / ".modelrepo.lock").unlink()
    return repo.path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def labels_of(repo_dir: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads((repo_dir / "labels.json").read_text())
    return document


def refused(
    capsys: pytest.CaptureFixture[str], repo_dir: Path, code: int, *argv: str | Path
) -> str:
    """Run a command that must fail with ``code``: one line on stderr, nothing on stdout,
    nothing in the repository changed. Returns the message."""
    before = snapshot(repo_dir)
    got, out, err = run(capsys, *argv)
    assert got == code, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xor-models: error: "), err
    assert snapshot(repo_dir) == before
    return lines[0]


# --- list ----------------------------------------------------------------------------------------


def test_list_shows_versions_status_size_accuracy_and_labels(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    drop_unverified(versions, 7)
    assert run(capsys, "promote", versions, "2")[0] == 0
    code, out, _ = run(capsys, "list", versions)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "STATUS", "SIZE", "ACCURACY", "LABELS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["1"][1] == "verified" and rows["1"][4] == "0.7500" and rows["1"][5] == "-"
    assert rows["2"][1:] == ["verified", *rows["2"][2:4], "1.0000", "stable"]
    assert rows["7"] == ["7", "unverified", "19", "B", "-", "-"]


def test_list_json_and_a_failing_version(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    (versions / "3" / "assets.extra" / "evaluation.json").write_text('{"metrics": {}}')
    code, out, _ = run(capsys, "list", versions, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["repository"] == str(versions)
    assert document["labels"] == {} and document["canary_percent"] == 0
    third = document["versions"][2]
    assert third["version"] == 3 and third["status"] == "failed"
    assert "assets.extra/evaluation.json: " in third["problem"]
    assert document["versions"][0]["accuracy"] == 0.75
    assert document["versions"][0]["files"] == 4
    code, out, _ = run(capsys, "list", versions)
    assert f"3: {versions}/3: fails its manifest: assets.extra/evaluation.json" in out


def test_list_of_an_empty_repository(capsys: pytest.CaptureFixture[str], repo_dir: Path) -> None:
    assert run(capsys, "list", repo_dir) == (0, f"{repo_dir}: no versions\n", "")


# --- promote, rollback, labels -------------------------------------------------------------------


def test_promote_records_the_previous_value(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    assert run(capsys, "promote", versions, "2") == (0, "stable: (none) -> 2 (promoted)\n", "")
    assert run(capsys, "promote", versions, "3")[1] == "stable: 2 -> 3 (promoted)\n"
    assert run(capsys, "promote", versions, "4", "--label", "canary")[0] == 0
    assert labels_of(versions) == {
        "labels": {"canary": 4, "stable": 3},
        "canary_percent": 0,
        "history": {"stable": [2]},
    }
    code, out, _ = run(capsys, "promote", versions, "3")
    assert (code, out) == (0, "stable already points at 3: nothing changed\n")


def test_rollback_goes_back_through_the_history(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    for version in ("1", "2", "3"):
        run(capsys, "promote", versions, version)
    assert run(capsys, "rollback", versions)[1] == "stable: 3 -> 2 (rolled back)\n"
    assert labels_of(versions)["history"] == {"stable": [1]}
    assert run(capsys, "rollback", versions, "--label", "stable")[0] == 0
    assert labels_of(versions)["labels"] == {"stable": 1}
    message = refused(capsys, versions, 2, "rollback", versions)
    assert message.endswith(
        "stable has no previous version in labels.json's history: nothing to roll back to"
    )


def test_rollback_to_a_version_that_is_gone_is_refused(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    run(capsys, "promote", versions, "1")
    run(capsys, "promote", versions, "2")
    LocalRepository(versions).delete_version(1)
    message = refused(capsys, versions, 2, "rollback", versions)
    assert "version 1, the previous value of stable, is no longer in the repository" in message


def test_labels_shows_labels_json(capsys: pytest.CaptureFixture[str], versions: Path) -> None:
    assert run(capsys, "labels", versions)[1] == (
        f"{versions}: no labels (the server serves the newest version)\n"
    )
    run(capsys, "promote", versions, "1")
    run(capsys, "promote", versions, "2")
    run(capsys, "promote", versions, "4", "--label", "canary")
    run(capsys, "canary", versions, "10")
    code, out, _ = run(capsys, "labels", versions)
    assert (code, out) == (
        0,
        "canary  4\nstable  2  (previous, newest last: 1)\ncanary_percent: 10\n",
    )
    code, out, _ = run(capsys, "labels", versions, "--json")
    assert json.loads(out) == labels_of(versions)


def test_promote_of_a_version_without_manifest_warns(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    drop_unverified(versions, 9)
    code, out, err = run(capsys, "promote", versions, "9")
    assert (code, out) == (0, "stable: (none) -> 9 (promoted)\n")
    assert err == (
        "xor-models: warning: version 9 has no MANIFEST.json: its files were not checked\n"
    )


# --- canary --------------------------------------------------------------------------------------


def test_canary_percent_needs_a_canary_label(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    message = refused(capsys, versions, 2, "canary", versions, "25")
    assert "no 'canary' label to send 25 % to" in message
    run(capsys, "promote", versions, "4", "--label", "canary")
    assert run(capsys, "canary", versions, "25")[1] == (
        "canary_percent: 0 -> 25 to canary (version 4)\n"
    )
    assert labels_of(versions)["canary_percent"] == 25
    assert run(capsys, "canary", versions, "0")[0] == 0
    assert labels_of(versions)["canary_percent"] == 0


def test_canary_zero_without_labels_writes_nothing(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    before = snapshot(versions)
    assert run(capsys, "canary", versions, "0") == (
        0,
        "canary_percent is 0 already: nothing changed\n",
        "",
    )
    assert snapshot(versions) == before


# --- gc ------------------------------------------------------------------------------------------


def test_gc_never_deletes_a_labelled_version_nor_one_in_a_history(
    capsys: pytest.CaptureFixture[str], repo: LocalRepository, publish: Publish
) -> None:
    for version in range(1, 9):
        publish(version)
    for promoted in ("1", "3"):
        run(capsys, "promote", repo.path, promoted)  # stable 3, history [1]
    run(capsys, "promote", repo.path, "2", "--label", "canary")

    before = snapshot(repo.path)
    code, out, _ = run(capsys, "gc", repo.path, "--keep", "2", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "would delete version 4",
        "would delete version 5",
        "would delete version 6",
        "kept version 1 (history of stable)",
        "kept version 2 (label canary)",
        "kept version 3 (label stable)",
    ]
    assert snapshot(repo.path) == before

    code, out, _ = run(capsys, "gc", repo.path, "--keep", "2")
    assert out.splitlines()[:3] == ["deleted version 4", "deleted version 5", "deleted version 6"]
    assert [info.version for info in repo.list_versions()] == [1, 2, 3, 7, 8]
    index = json.loads((repo.path / "index.json").read_text())
    assert [entry["version"] for entry in index["versions"]] == [1, 2, 3, 7, 8]
    assert run(capsys, "gc", repo.path, "--keep", "2")[1].endswith(
        "nothing to delete (keeping the newest 2)\n"
    )


def test_gc_removes_what_interrupted_runs_left(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    (versions / ".deleting-3-abc").mkdir()
    (versions / ".deleting-3-abc" / "saved_model.pb").write_bytes(b"")
    assert (
        run(capsys, "gc", versions, "--keep", "10")[1]
        == "removed .deleting-3-abc (left by an interrupted run)\n"
    )
    assert not (versions / ".deleting-3-abc").exists()


def test_gc_with_a_corrupt_labels_file_deletes_nothing(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    (versions / "labels.json").write_text('{"labels": {"stable": 1.0}}')
    message = refused(capsys, versions, 1, "gc", versions, "--keep", "1")
    assert message.endswith(
        "labels.json: labels['stable']: must be a version, an integer 1 to 2**63-1, got 1.0"
    )


# --- bad input: a clear line, an exit code, nothing changed --------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["promote", "{repo}", "9"], 2, "{repo}: no version 9"),
        (["promote", "{repo}", "abc"], 2, "argument VERSION: a version is an integer 1 to"),
        (["promote", "{repo}", "0"], 2, "argument VERSION: a version is an integer 1 to"),
        (["promote", "{repo}", "1", "--label", "Stable"], 2, "argument --label: a label name is"),
        (["promote", "{repo}", "1", "--label", "a" * 64], 2, "at most 63 characters"),
        (["rollback", "{repo}", "--label", "-x"], 2, "expected one argument"),
        (["canary", "{repo}", "101"], 2, "argument PERCENT: the canary percentage is an integer"),
        (["canary", "{repo}", "-5"], 2, "argument PERCENT: the canary percentage is an integer"),
        (["gc", "{repo}", "--keep", "0"], 2, "argument --keep: --keep is an integer 1 to"),
        (["gc", "{repo}"], 2, "the following arguments are required: --keep"),
        (["gc", "{repo}", "--keep", "1", "--force"], 2, "unrecognized arguments: --force"),
        (["promote", "s3://Bad_Bucket/models", "1"], 2, "the bucket name must be"),
        (["publish", "{repo}"], 2, "argument COMMAND: invalid choice: 'publish'"),
        ([], 2, "the following arguments are required: COMMAND"),
    ],
)
def test_bad_input_is_refused_clearly(
    capsys: pytest.CaptureFixture[str], versions: Path, argv: list[str], code: int, message: str
) -> None:
    argv = [arg.format(repo=versions) for arg in argv]
    line = refused(capsys, versions, code, *argv)
    assert message.format(repo=versions) in line


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "{repo}"],
        ["labels", "{repo}"],
        ["promote", "{repo}", "1"],
        ["rollback", "{repo}"],
        ["canary", "{repo}", "0"],
        ["gc", "{repo}", "--keep", "1"],
    ],
)
def test_a_nonexistent_repository_fails_each_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    missing = tmp_path / "missing"
    line = refused(capsys, tmp_path, 1, *(arg.format(repo=missing) for arg in argv))
    assert line == f"xor-models: error: {missing}: no such repository"
    assert not missing.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "{repo}"],
        ["labels", "{repo}"],
        ["promote", "{repo}", "1"],
        ["rollback", "{repo}"],
        ["canary", "{repo}", "0"],
        ["gc", "{repo}", "--keep", "1"],
    ],
)
def test_a_corrupt_labels_file_fails_each_command(
    capsys: pytest.CaptureFixture[str], versions: Path, argv: list[str]
) -> None:
    (versions / "labels.json").write_bytes(b'{"labels": {"stable": 1}, "canary_percent": tru')
    line = refused(capsys, versions, 1, *(arg.format(repo=versions) for arg in argv))
    assert line.startswith(f"xor-models: error: {versions}/labels.json: not valid JSON: ")


def test_promoting_a_version_that_fails_its_manifest_is_refused(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    (versions / "2" / "variables" / "variables.index").write_bytes(b"index 9")
    line = refused(capsys, versions, 1, "promote", versions, "2")
    assert line == (
        f"xor-models: error: {versions}/2: fails its manifest: variables/variables.index: "
        f"sha256 {hashlib.sha256(b'index 9').hexdigest()} differs from the manifest's"
    )


def test_a_failure_to_lock_fails_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], versions: Path
) -> None:
    """The request is fine (the dry run passes), the repository cannot be locked: nothing is
    written. A directory in the lock file's place fails even for root."""
    (versions / ".modelrepo.lock").mkdir()
    line = refused(capsys, versions, 1, "promote", versions, "1")
    assert line.startswith(f"xor-models: error: {versions}/.modelrepo.lock: cannot lock the ")
    assert "Is a directory" in line


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "promote" in out and "Exit codes" in out


# --- as processes --------------------------------------------------------------------------------


def command(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelrepo", *map(str, argv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_python_m_modelrepo_end_to_end(versions: Path) -> None:
    promoted = command("promote", versions, "3")
    assert (promoted.returncode, promoted.stdout) == (0, "stable: (none) -> 3 (promoted)\n")
    listed = command("list", versions, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["versions"]
    assert [(row["version"], row["labels"]) for row in rows] == [
        (1, []),
        (2, []),
        (3, ["stable"]),
        (4, []),
    ]
    unknown = command("promote", versions, "5")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == f"xor-models: error: {versions}: no version 5\n"


def test_the_console_script_is_installed(versions: Path) -> None:
    script = Path(sys.executable).parent / "xor-models"
    completed = subprocess.run(
        [str(script), "labels", str(versions), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"labels": {}, "canary_percent": 0, "history": {}}


def test_concurrent_promotes_are_all_recorded(repo: LocalRepository, tmp_path: Path) -> None:
    """Each promote reads labels.json, verifies the version (hashing a few MiB: time in which
    another process would write) and writes labels.json back: without the lock, updates are
    lost."""
    count = 8
    for version in range(1, count + 1):
        source = write_source(tmp_path, version)
        (source / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(4 << 20))
        repo.publish(source, version)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "modelrepo", "promote", str(repo.path), str(version)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for version in range(1, count + 1)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    labels = repo.read_labels()
    recorded = [*labels.history["stable"], labels.labels["stable"]]
    assert sorted(recorded) == list(range(1, count + 1))


@pytest.mark.parametrize("argv", [["list", "{repo}"], ["labels", "{repo}", "--json"]])
def test_reading_commands_change_nothing(
    capsys: pytest.CaptureFixture[str], versions: Path, argv: list[str]
) -> None:
    before = snapshot(versions)
    assert run(capsys, *(arg.format(repo=versions) for arg in argv))[0] == 0
    assert snapshot(versions) == before  # not even a lock file
