"""``xor-predict`` against real servers: its output, and its exit codes 0, 1, 2 and 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import LIMIT, VERSION, run_cli, xor
from tests.support.server import Server, start_server
from tests.support.versions import publish_copy
from tests.support.waiting import finishes

NOWHERE = "http://127.0.0.1:1"


def test_one_pair_prints_its_class_probability_and_version(server: Server) -> None:
    result = run_cli("--url", server.url, "0", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert line.startswith("0 1 -> 1 (p=0.9") and line.endswith(f", model {VERSION})")


def test_json_prints_one_object_per_pair(server: Server) -> None:
    result = run_cli("--url", server.url, "--json", "1", "1")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert list(document) == ["inputs", "class_id", "probabilities", "model_version"]
    assert (document["inputs"], document["class_id"], document["model_version"]) == (
        [1, 1],
        0,
        VERSION,
    )


def test_the_url_comes_from_xor_url_too(server: Server) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xor_client", "0", "0"],
        capture_output=True,
        text=True,
        env={"XOR_URL": server.url, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0 0 -> 0 ")


def test_a_file_of_pairs_in_batches_of_the_services_limit(server: Server, tmp_path: Path) -> None:
    """More pairs than the service takes in one request: one output line per pair, in order;
    a header, blank lines, comments and `x1 x2` lines are fine."""
    pairs = [((i >> 1) & 1, i & 1) for i in range(3 * LIMIT)]
    lines = ["x1,x2", "", "# the pairs"] + [f"{a},{b}" for a, b in pairs[:-1]]
    lines.append(f" {pairs[-1][0]} {pairs[-1][1]} ")
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run_cli("--url", server.url, "--file", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert [line.split(" -> ")[0] for line in out] == [f"{a} {b}" for a, b in pairs]
    assert [int(line.split(" -> ")[1][0]) for line in out] == [xor(p) for p in pairs]
    # The service's 422 taught the client its limit; said once on stderr.
    assert result.stderr.startswith(f"xor-predict: the service refused {len(pairs)} pairs")
    assert result.stderr.endswith(f"sending {LIMIT} at a time\n")


def test_stdin_with_json(server: Server) -> None:
    result = run_cli("--url", server.url, "--json", "--version", str(VERSION), "-f", "-",
                     stdin="0,0\n1,1\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["inputs"], d["class_id"]) for d in documents] == [([0, 0], 0), ([1, 1], 0)]


def test_an_empty_file_prints_nothing(tmp_path: Path) -> None:
    result = run_cli("--url", NOWHERE, "--file", "-", stdin="x1,x2\n\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "99", "0", "1"], "the service refused the request (404 version_not_loaded): "
         f"version 99 is not loaded (loaded versions: {VERSION})"),
        (["--label", "canary", "0", "1"], "the service refused the request (404 label_not_found): "
         "label 'canary' is not served by any loaded version (labels served: none)"),
    ],
)  # fmt: skip
def test_exit_1_when_the_service_refuses(server: Server, args: list[str], message: str) -> None:
    result = run_cli("--url", server.url, *args)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"xor-predict: error: {message}\n"


def test_exit_1_when_no_model_is_loaded_after_the_retries(unready_server: Server) -> None:
    """Each wait of a second (the service's Retry-After) is said on stderr, then the error."""
    result = run_cli("--url", unready_server.url, "0", "1")
    assert (result.returncode, result.stdout) == (1, "")
    *notices, error = result.stderr.splitlines()
    assert len(notices) == 4
    assert notices[0].startswith("xor-predict: 503 model_unavailable: no model is loaded")
    assert notices[0].endswith("; retrying in 1 s (attempt 2 of 5)")
    assert error.startswith(
        "xor-predict: error: service unavailable (503 model_unavailable, 5 attempts): "
        "no model is loaded"
    )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["0", "2"], None, "x2 must be 0 or 1, got '2'"),
        (["1"], None, "give one pair as two bits (xor-predict 0 1) or --file; got 1"),
        ([], None, "give one pair as two bits (xor-predict 0 1) or --file; got nothing"),
        (["0", "1", "--file", "-"], "", "give a pair (X1 X2) or --file, not both"),
        (["--file", "-"], "0,1\n1,true\n", "<stdin>:2: x2 must be 0 or 1, got 'true'"),
        (["--file", "-"], "0,1,1\n", "<stdin>:1: expected two bits like 0,1, got '0,1,1'"),
        (["--file", "/nonexistent/pairs.csv"], None,
         "cannot read /nonexistent/pairs.csv: No such file or directory"),
        (["--bogus"], None, "unrecognized arguments: --bogus (see xor-predict --help)"),
        (["--version", "0", "0", "1"], None,
         "argument --version: must be greater than 0, got '0' (see xor-predict --help)"),
        (["--version", "1", "--label", "stable", "0", "1"], None,
         "argument --label: not allowed with argument --version (see xor-predict --help)"),
        (["--url", "ftp://x", "0", "1"], None, "url: must be an http:// or https:// URL, got "
         "'ftp://x'"),
    ],
)  # fmt: skip
def test_exit_2_on_a_bad_pair_file_or_flag(
    args: list[str], stdin: str | None, message: str
) -> None:
    """Found before anything is sent: nothing listens at NOWHERE, and it does not matter."""
    result = run_cli("--url", NOWHERE, *args, stdin=stdin)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"xor-predict: error: {message}\n"


def test_exit_3_when_nothing_listens() -> None:
    result = run_cli("--url", NOWHERE, "0", "1")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (
        f"xor-predict: error: service unreachable at {NOWHERE} (connection refused, 5 attempts);"
        " is the server running?\n"
    )


def test_exit_3_when_the_service_does_not_answer_in_time() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = run_cli("--url", url, "--timeout", "0.2", "0", "1")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (
        f"xor-predict: error: service unreachable at {url} "
        "(timed out waiting for the answer, 5 attempts)\n"
    )


def test_exit_3_when_the_server_goes_away_mid_batch(tmp_path: Path, trained_version: Path) -> None:
    """SIGKILL after the first batch is printed: every batch answered before stays printed
    (whole batches, in order), and stderr says how many of the pairs were answered."""
    publish_copy(trained_version, tmp_path / "xor", VERSION)
    server = start_server(tmp_path, tmp_path / "xor")
    batch, total = 500, 100_000
    pairs = [((i >> 1) & 1, i & 1) for i in range(total)]
    path = tmp_path / "pairs.csv"
    path.write_text("".join(f"{a},{b}\n" for a, b in pairs))
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "xor_client", "--url", server.url, "--batch-size", str(batch),
             "--file", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert process.stdout is not None
        stdout = process.stdout
        first = finishes(lambda: [stdout.readline() for _ in range(batch)], what="first batch")
        server.process.kill()
        server.process.wait()
        rest, stderr = process.communicate(timeout=60)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    assert process.returncode == 3, stderr
    out = first + rest.splitlines(keepends=True)
    answered = len(out)
    assert batch <= answered < total and answered % batch == 0
    assert [line.split(" -> ")[0] for line in out] == [f"{a} {b}" for a, b in pairs[:answered]]
    assert [int(line.split(" -> ")[1][0]) for line in out] == [xor(p) for p in pairs[:answered]]
    assert stderr.splitlines()[-1] == (
        f"xor-predict: error: service unreachable at {server.url} (connection refused, "
        f"5 attempts); {answered} of {total} pairs answered (printed above), the other "
        f"{total - answered} not"
    )


def test_help_names_the_exit_codes() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "Exit codes: 0 answered, 1 the service refused, 2 usage" in " ".join(
        result.stdout.split()
    )
