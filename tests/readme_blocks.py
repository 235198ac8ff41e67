"""The README's code blocks as data: each `console` block is a list of `$` commands, each with
the output lines the README shows under it (tests/e2e/test_readme.py runs them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\S*)\s*$")
# Blocks that hold commands must say so: an unlabelled block could hide an untested command.
KNOWN_LANGUAGES = {"console", "text"}


@dataclass
class Command:
    line: int
    text: str  # continuation lines joined, as the shell reads them
    output: list[str] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        return self.text.split("#", 1)[0].split()


@dataclass
class Block:
    line: int
    language: str
    heading: str
    commands: list[Command] = field(default_factory=list)


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    heading = ""
    current: Block | None = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        fence = FENCE.match(raw)
        if current is None:
            if raw.startswith("#"):
                heading = raw.lstrip("#").strip()
            elif fence:
                current = Block(number, fence.group(1), heading)
            continue
        if fence and not fence.group(1):
            found.append(current)
            current = None
            continue
        if current.language != "console":
            continue
        if pending:
            pending += " " + raw.strip()
        elif raw.startswith("$ "):
            pending = raw[2:].strip()
            current.commands.append(Command(number, ""))
        elif current.commands and raw.strip():
            current.commands[-1].output.append(raw.strip())
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        elif pending:
            current.commands[-1].text = pending
            pending = ""
    return found


def normalized(line: str) -> str:
    return " ".join(line.split())


def pattern(line: str) -> re.Pattern[str]:
    """An output line as the README shows it: spaces normalized, `...` stands for any text
    (an id or a time that differs on every run)."""
    return re.compile(".*".join(map(re.escape, normalized(line).split("..."))))


def shows(expected: list[str], printed: str) -> bool:
    """Every expected line appears, in order, among the printed lines."""
    lines = [normalized(x) for x in printed.splitlines()]
    at = 0
    for want in map(pattern, expected):
        while at < len(lines) and not want.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return False
        at += 1
    return True
