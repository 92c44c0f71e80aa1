"""Training under faults: SIGKILL during export, an unwritable or full disk.

tests/training/test_cli.py already kills runs during steps and checkpoint writes; here the
kills land in the export, while a reader polls the published versions as the api does.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tensorflow as tf

from app.lifecycle.discovery import find_versions
from app.lifecycle.loading import load_version
from tests.support import REPO
from training.cli import main
from training.export import TEMP_PREFIX, remove_stale_staging

pytestmark = pytest.mark.slow


def command(model_dir: Path, export_dir: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training",
        f"--model-dir={model_dir}",
        f"--export-dir={export_dir}",
        "--min-accuracy=0",
        *flags,
    ]


def environment() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("XOR_")}
    return {**clean, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``argv`` in the repository, output captured; the exit code is the test's to check."""
    return subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, env=environment(), timeout=120, check=False
    )


def train_briefly(model_dir: Path, export_dir: Path) -> subprocess.CompletedProcess[str]:
    """Five steps in a subprocess."""
    return run(command(model_dir, export_dir, "--steps=5"))


def newest_step(model_dir: Path) -> int:
    return int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])


class Reader(threading.Thread):
    """Polls the export dir as the api does; records any version that is not complete."""

    def __init__(self, export_dir: Path) -> None:
        super().__init__(daemon=True)
        self.export_dir = export_dir
        self.stop = threading.Event()
        self.seen: set[int] = set()
        self.partial: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for version, path in find_versions(self.export_dir):
                if version in self.seen:
                    continue
                self.seen.add(version)
                try:
                    document = json.loads((path / "assets.extra" / "evaluation.json").read_text())
                    assert document["model_version"] == version
                    assert any((path / "variables").glob("variables.data-*"))
                    assert (path / "variables" / "variables.index").is_file()
                except Exception as exc:
                    self.partial.append(f"{path}: {exc!r}")
            time.sleep(0.005)


def test_sigkill_during_export_never_publishes_a_partial_version(tmp_path: Path) -> None:
    model_dir, export_dir = tmp_path / "training", tmp_path / "xor"
    reader = Reader(export_dir)
    reader.start()
    rng = random.Random(os.getpid())
    delays = []
    try:
        for _ in range(3):
            process = subprocess.Popen(
                command(model_dir, export_dir, "--steps=20", "--save-checkpoints-steps=10"),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=environment(),
            )
            assert process.stderr is not None
            for line in process.stderr:  # the last checkpoint is written: the export is next
                if "Loss for final step" in line:
                    break
            # The export takes ~1 s (save, load back, evaluate, fsync, rename): kill inside it.
            delay = rng.uniform(0.0, 1.2)
            delays.append(round(delay, 2))
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            process.stderr.close()
    finally:
        reader.stop.set()
        reader.join(timeout=5)
    assert reader.partial == [], delays
    # Whatever got published loads and passes every check the api makes.
    for version, path in find_versions(export_dir):
        assert load_version(path, version).version == version
    # The checkpoints survived; the next run resumes from the newest one and publishes.
    killed_at = newest_step(model_dir)
    assert killed_at >= 20
    flags = [f"--model-dir={model_dir}", f"--export-dir={export_dir}", "--steps=5"]
    assert main([*flags, "--min-accuracy=0"]) == 0
    assert newest_step(model_dir) == killed_at + 5
    print(f"kill delays {delays}; versions {sorted(reader.seen)}")


def test_stale_staging_dirs_of_killed_exports_are_removed(tmp_path: Path) -> None:
    old = tmp_path / f"{TEMP_PREFIX}old"
    young = tmp_path / f"{TEMP_PREFIX}young"
    for path in (old, young):
        (path / "variables").mkdir(parents=True)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    remove_stale_staging(tmp_path)
    assert not old.exists() and young.exists()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir an unprivileged user can reach (pytest's own is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="xor-reliability-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    return run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", *args]
    )


def test_unwritable_export_dir_is_a_clear_error(shared_tmp: Path) -> None:
    model_dir, export_dir = shared_tmp / "training", shared_tmp / "xor"
    model_dir.mkdir()
    os.chown(model_dir, 65534, 65534)
    export_dir.mkdir(mode=0o755)  # root's: not writable by nobody
    completed = run_as_nobody(*command(model_dir, export_dir, "--steps=5"))
    assert completed.returncode == 1, completed.stderr
    assert f"{export_dir}: cannot write versions here: Permission denied" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert list(export_dir.iterdir()) == []
    assert newest_step(model_dir) == 5  # the training itself is kept


def test_unreadable_model_dir_is_a_clear_error(shared_tmp: Path) -> None:
    model_dir, export_dir = shared_tmp / "training", shared_tmp / "xor"
    model_dir.mkdir(mode=0o000)
    completed = run_as_nobody(*command(model_dir, export_dir, "--steps=5"))
    assert completed.returncode == 2, completed.stderr
    assert f"{model_dir}: cannot use as model dir: Permission denied" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not export_dir.exists()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 KiB tmpfs: room for a lock file and little else."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    completed = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if completed.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {completed.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_for_checkpoints_is_a_clear_error(tmp_path: Path, tiny_disk: Path) -> None:
    model_dir, export_dir = tiny_disk / "training", tmp_path / "xor"
    completed = train_briefly(model_dir, export_dir)
    assert completed.returncode == 1, completed.stderr
    assert "cannot write the checkpoint of step 5: No space left on device" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not [p for p in model_dir.iterdir() if p.name.startswith("model.ckpt")]
    assert not export_dir.exists()


def test_full_disk_for_the_export_is_a_clear_error(tmp_path: Path, tiny_disk: Path) -> None:
    model_dir, export_dir = tmp_path / "training", tiny_disk / "xor"
    completed = train_briefly(model_dir, export_dir)
    assert completed.returncode == 1, completed.stderr
    assert f"{export_dir}: cannot write the SavedModel: No space left on device" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert list(export_dir.iterdir()) == []  # no version, no staging dir
    assert newest_step(model_dir) == 5
