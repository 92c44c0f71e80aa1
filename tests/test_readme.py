"""The README's examples run as written, and show what they print.

The README's ``console`` blocks (``$ `` commands and their output) and ``pycon`` blocks (Python
sessions) run against a live server set up as ``make run`` sets it up: in a fresh directory
with ``data/`` and the venv, ``python -m training --if-missing`` trains a first model with the
defaults into ``models/xor``, and ``python -m app`` serves it. The only change made to the
commands is the server's address (``127.0.0.1:8000`` becomes the test server's free port).
Every shown output must match what was printed, ``…`` standing for any run of characters.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.readme import Block, Command, blocks, shown_pattern
from tests.support.server import Server, start_server_in, stop_server

README = REPO / "README.md"
ADDRESS = "127.0.0.1:8000"
# The README shows at least this many runnable examples: a parser that finds fewer is broken.
MIN_COMMANDS = 15
MIN_SESSIONS = 2


def test_parser_splits_commands_outputs_and_continuations() -> None:
    markdown = "\n".join(
        [
            "text",
            "```console",
            "$ echo one",
            "one",
            "$ printf 'a\\nb' \\",
            "  | cat",
            "a",
            "…",
            "$ true",
            "```",
            "```sh",
            "$ not run",
            "```",
            "```pycon",
            ">>> 1 + 1",
            "2",
            "```",
        ]
    )
    console, session = blocks(markdown)
    assert [(c.line, c.text, c.shown) for c in console.commands] == [
        (3, "echo one", ["one"]),
        (5, "printf 'a\\nb' \\\n  | cat", ["a", "…"]),
        (9, "true", []),
    ]
    assert session.language == "pycon" and session.text == ">>> 1 + 1\n2\n"


def test_shown_output_matches_with_ellipsis_only_where_shown() -> None:
    command = Command(1, "curl", ['{"version":…,"p":[0.0002…]}'])
    assert command.matches('{"version":17,"p":[0.00022]}\n')
    assert not command.matches('{"version":17,"p":[0.00031]}')
    assert not command.matches('{"version":17,"p":[0.00022]} trailing')
    assert shown_pattern([]).fullmatch("")
    assert not Command(1, "true", []).matches("unexpected output")


def test_parser_refuses_output_before_any_command_and_unclosed_fences() -> None:
    with pytest.raises(ValueError, match="must start with a '\\$ ' command"):
        blocks("```console\noutput\n$ cmd\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks("```console\n$ cmd\n")


def test_every_example_against_the_service_is_a_tested_block() -> None:
    """A curl or client example outside the tested blocks could drift unnoticed (an address
    in a comment is fine)."""
    untested = [
        block
        for block in blocks(README.read_text(), languages=("", "sh", "bash", "python", "json"))
        if any(ADDRESS in line.partition(" #")[0] for line in block.text.splitlines())
    ]
    assert not untested, [f"README.md:{block.line}" for block in untested]


@dataclass
class Workdir:
    path: Path
    server: Server

    def localize(self, text: str) -> str:
        return text.replace(ADDRESS, self.server.url.removeprefix("http://"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workdir]:
    """A directory set up as ``make run`` leaves a fresh clone, with the server running."""
    path = tmp_path_factory.mktemp("readme")
    (path / "data").symlink_to(REPO / "data")
    (path / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("XOR_")}
    trained = subprocess.run(
        [sys.executable, "-m", "training", "--if-missing"],
        cwd=path,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr[-4000:]
    server = start_server_in(path, path, Path("models/xor"))  # relative, as make run has it
    try:
        yield Workdir(path, server)
    finally:
        stop_server(server)


def _run_console(block: Block, workdir: Workdir) -> list[tuple[Command, int, str]]:
    """Run a console block's commands in one shell, in order (a variable set by one is seen by
    the next); each command's exit status and output (stdout and stderr)."""
    script = []
    for index, command in enumerate(block.commands):
        script.append(f"printf '\\n@@readme-start {index}@@\\n'")
        script.append(workdir.localize(command.text))
        script.append(f"printf '\\n@@readme-end {index} %d@@\\n' $?")
    completed = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=workdir.path,
        env={**os.environ, "PATH": f"{Path(sys.prefix) / 'bin'}:{os.environ['PATH']}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    results = []
    for index, command in enumerate(block.commands):
        found = re.search(
            rf"\n@@readme-start {index}@@\n(.*)\n@@readme-end {index} (\d+)@@\n",
            completed.stdout,
            re.DOTALL,
        )
        assert found, f"README.md:{command.line}: did not run:\n{completed.stdout[-2000:]}"
        results.append((command, int(found.group(2)), found.group(1)))
    return results


@pytest.mark.slow
def test_readme_examples_run_and_show_what_they_print(workdir: Workdir, tmp_path: Path) -> None:
    found = blocks(README.read_text())
    commands = sum(len(block.commands) for block in found if block.language == "console")
    sessions = sum(1 for block in found if block.language == "pycon")
    assert commands >= MIN_COMMANDS and sessions >= MIN_SESSIONS, (commands, sessions)
    failures = []
    ran = 0
    for block in found:
        if block.language == "console":
            for command, status, output in _run_console(block, workdir):
                ran += 1
                if status != 0 or not command.matches(output):
                    failures.append(
                        f"README.md:{command.line}: $ {command.text}\n  exit {status}\n"
                        f"  shown:   {chr(10).join(command.shown)!r}\n  printed: {output!r}"
                    )
        else:
            session = tmp_path / f"session-{block.line}.txt"
            session.write_text(workdir.localize(block.text).replace("…", "..."))
            completed = subprocess.run(
                [sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(session)],
                cwd=workdir.path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            ran += 1
            if completed.returncode != 0:
                failures.append(f"README.md:{block.line}: session failed:\n{completed.stdout}")
    assert ran == commands + sessions
    assert not failures, "\n\n".join(failures)
