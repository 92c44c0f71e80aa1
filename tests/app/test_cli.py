"""``python -m app`` as a person and as a machine see it start: real servers, their whole log.

(Invalid settings and ``--help`` are in tests/app/test_config.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support.server import running_server
from tests.support.waiting import wait_for

TIME = r"\d\d:\d\d:\d\d\.\d{3}"


def test_on_a_terminal_the_start_reads_as_text_with_the_first_commands(
    tmp_path: Path, trained_version: Path
) -> None:
    """Text lines; each old variable name warned about once; after uvicorn listens, the URL
    it really listens on and three commands to try; a request line; none of TensorFlow's
    start-up notices (TF_CPP_MIN_LOG_LEVEL empty counts as unset: the default applies)."""
    with running_server(
        tmp_path,
        trained_version,
        5,
        XOR_LOG_FORMAT="text",
        XOR_MAX_BATCH_SIZE="3",
        XOR_BATCH_MAX_SIZE="64",
        TF_CPP_MIN_LOG_LEVEL="",
    ) as server:
        url = server.url
        assert httpx.post(f"{url}/predict", json={"inputs": [0, 1]}).status_code == 200
        # The old name's value applies: 4 pairs are one too many.
        too_many = httpx.post(f"{url}/predict", json={"instances": [[0, 1]] * 4})
        assert too_many.status_code == 422
        assert "at most 3 allowed" in too_many.text
        wait_for(lambda: "POST /predict 422" in server.log.read_text(), what="request lines")
    text = server.log.read_text()
    lines = text.splitlines()

    deprecations = [line for line in lines if "deprecated" in line]
    assert [line.split(" ", 1)[1] for line in deprecations] == [
        "WARNING app.cli: XOR_MAX_BATCH_SIZE is deprecated: rename it XOR_MAX_REQUEST_PAIRS "
        "(same meaning)",
        "WARNING app.cli: XOR_BATCH_MAX_SIZE is deprecated: rename it XOR_BATCH_MAX_PAIRS "
        "(same meaning)",
    ]

    (start,) = [i for i, line in enumerate(lines) if f"listening on {url} (Ctrl-C stops)" in line]
    assert any("Uvicorn running on" in line for line in lines[:start])
    assert re.fullmatch(rf"{TIME} INFO  listening on {url} \(Ctrl-C stops\); .*", lines[start])
    assert lines[start + 1 : start + 5] == [
        f"  curl -s {url}/health",
        f"  curl -s {url}/predict -H 'Content-Type: application/json' -d '{{\"inputs\": [0, 1]}}'",
        f"  curl -s {url}/metrics | grep '^xor_model_evaluation_accuracy'",
        f"  and {url}/docs in a browser",
    ]

    assert re.search(rf"^{TIME} INFO  POST /predict 200 \d+\.\d ms$", text, re.MULTILINE)
    assert "absl::InitializeLog" not in text
    assert "oneDNN" not in text
    assert not any(line.startswith("{") for line in lines)  # no JSON line anywhere


def test_elsewhere_it_logs_json_with_the_address_it_listens_on(
    tmp_path: Path, trained_version: Path
) -> None:
    """Not a terminal (a file here, a pipe under compose): ``auto`` means JSON; the address is
    one event, without the commands meant for a person."""
    with running_server(tmp_path, trained_version, 5) as server:
        pass
    lines = server.log_lines()
    (listening,) = [line for line in lines if line.get("event") == "listening"]
    assert listening["message"] == f"listening on {server.url}"
    assert listening["url"] == server.url
    assert not any("deprecated" in line["message"] for line in lines)
    assert "curl" not in server.log.read_text()
