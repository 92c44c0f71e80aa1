"""The README's runnable examples: ``console`` blocks of shell commands and ``pycon`` blocks of
Python sessions, with the output each shows.

A ``console`` block is a sequence of commands, each a line starting with ``$ `` (continued on
the next lines while it ends with a backslash), each followed by the output it shows (possibly
none). A ``pycon`` block is a doctest session. Shown output may abbreviate any run of
characters with ``…``; everything else must be what the command printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ELLIPSIS = "…"
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Command:
    line: int  # where the command starts in the README (1-based)
    text: str
    shown: list[str] = field(default_factory=list)

    def matches(self, output: str) -> bool:
        """Whether ``output`` (trailing whitespace of each line ignored) is what is shown,
        with ``…`` standing for any run of characters."""
        return shown_pattern(self.shown).fullmatch(_normalize(output)) is not None


@dataclass
class Block:
    language: str  # "console" or "pycon"
    line: int  # the first line inside the fence (1-based)
    text: str
    commands: list[Command] = field(default_factory=list)


def _normalize(output: str) -> str:
    return "\n".join(line.rstrip() for line in output.strip("\n").splitlines())


def shown_pattern(shown: list[str]) -> re.Pattern[str]:
    text = _normalize("\n".join(shown))
    return re.compile(".*?".join(re.escape(part) for part in text.split(ELLIPSIS)), re.DOTALL)


def blocks(markdown: str, languages: tuple[str, ...] = ("console", "pycon")) -> list[Block]:
    """The fenced blocks of ``markdown`` in ``languages``, console blocks split into commands."""
    found: list[Block] = []
    language: str | None = None
    start = 0
    lines: list[str] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        fence = _FENCE.match(line)
        if language is None:
            if fence:
                language, start, lines = fence.group(1), number + 1, []
            continue
        if fence and not fence.group(1):  # the closing fence
            if language in languages:
                block = Block(language, start, "\n".join(lines) + "\n")
                if language == "console":
                    block.commands = _commands(lines, start)
                found.append(block)
            language = None
            continue
        lines.append(line)
    if language is not None:
        raise ValueError(f"a ``` block opened at line {start - 1} is never closed")
    return found


def _commands(lines: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    continuing = False
    for offset, line in enumerate(lines):
        if continuing:
            commands[-1].text += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(first_line + offset, line[2:]))
        elif commands:
            commands[-1].shown.append(line)
        elif line.strip():
            raise ValueError(
                f"line {first_line + offset}: a console block must start with a '$ ' command"
            )
        continuing = line.endswith("\\") and not commands[-1].shown if commands else False
    return commands
