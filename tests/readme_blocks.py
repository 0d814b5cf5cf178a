"""The README's code blocks and how the tests run them.

Every fenced block in a language listed in ``LANGUAGES`` carries a directive on the line
just before its opening fence (blank lines between are allowed)::

    <!-- readme-test: run -->                run as written
    <!-- readme-test: run smoke -->          shell: `nrnn verify|figures|bench` at the smoke
                                             profile, with a temporary --store and --out
    <!-- readme-test: file leaky_gated.py --> Python: write the block to that file (importable)
    <!-- readme-test: parse -->              TOML: parse it
    <!-- readme-test: skip installs packages -->  skip, with a reason from SKIP_REASONS

Python blocks run in order in one namespace, in a temporary directory that is the working
directory and is on ``sys.path``; shell blocks run command by command (a trailing ``\\``
continues a command, ``#`` starts a comment line) in the same directory, with the
repository's virtual environment first on PATH.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = {
    "python": "python",
    "py": "python",
    "bash": "shell",
    "sh": "shell",
    "shell": "shell",
    "console": "shell",
    "toml": "toml",
}
"""Fenced-block languages that need a directive, and the kind of runner each gets."""

SKIP_REASONS = (
    "installs packages",
    "needs a Ray cluster",
    "needs a SLURM allocation",
    "is what make test runs",
    "runs for hours",
    "runs for days",
)
"""The only reasons a block may be skipped for."""

ACTIONS = {
    "python": ("run", "file", "skip"),
    "shell": ("run", "run smoke", "skip"),
    "toml": ("parse", "skip"),
}

EXPERIMENT_COMMANDS = ("verify", "figures", "bench")
"""The `nrnn` subcommands that take the common flags (--profile, --store, --out)."""

_DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(?P<text>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<language>[\w+-]*)")


@dataclass(frozen=True)
class Block:
    """One fenced block: its first line number (of the opening fence), language, kind
    (``LANGUAGES``), code, and the directive text before it (None if there is none)."""

    line: int
    language: str
    kind: str | None
    code: str
    directive: str | None

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.language})"


@dataclass(frozen=True)
class Directive:
    """A parsed directive: ``action`` in ``ACTIONS[kind]`` and its argument (a file name
    or a skip reason; empty otherwise)."""

    action: str
    argument: str = ""


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown`` in order, with the directive just before it."""
    lines = markdown.splitlines()
    found, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, language = opening["fence"], opening["language"].lower()
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        directive = _DIRECTIVE.match(lines[before]) if before >= 0 else None
        found.append(
            Block(
                line=index + 1,
                language=language,
                kind=LANGUAGES.get(language),
                code="\n".join(lines[index + 1 : end]) + "\n",
                directive=directive["text"] if directive else None,
            )
        )
        index = end + 1
    return found


def parse_directive(block: Block) -> Directive:
    """The block's directive; ValueError with the block's line if it is missing or not
    one this module understands for the block's language."""
    if block.directive is None:
        raise ValueError(
            f"{block.where}: no `<!-- readme-test: ... -->` line before the block "
            f"(one of {', '.join(ACTIONS[block.kind or 'python'])})"
        )
    text = " ".join(block.directive.split())
    allowed = ACTIONS[block.kind] if block.kind else ()
    if text in allowed:
        return Directive(text)
    action, _, argument = text.partition(" ")
    if action == "skip" and "skip" in allowed:
        if argument not in SKIP_REASONS:
            raise ValueError(
                f"{block.where}: skip reason {argument!r} is not one of {list(SKIP_REASONS)}"
            )
        return Directive("skip", argument)
    if action == "file" and "file" in allowed and re.fullmatch(r"[\w./-]+\.py", argument):
        return Directive("file", argument)
    raise ValueError(
        f"{block.where}: directive {text!r} not understood; for {block.language} blocks "
        f"use one of {', '.join(allowed)}"
    )


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: backslash continuations joined, comment and blank
    lines dropped."""
    commands, pending = [], ""
    for line in code.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append(" ".join((pending + line).split()))
        pending = ""
    if pending:
        commands.append(" ".join(pending.split()))
    return commands


def smoke_command(command: str, scratch: Path) -> str:
    """``nrnn verify|figures|bench ...`` at the smoke profile, writing into ``scratch``:
    any --profile/--quick/--full becomes --profile smoke, and --store and --out point into
    ``scratch``. Other commands are returned unchanged."""
    words = shlex.split(command)
    if len(words) < 2 or words[0] != "nrnn" or words[1] not in EXPERIMENT_COMMANDS:
        return command
    kept, skip_next = [], False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if word in ("--profile", "--store", "--out"):
            skip_next = True
            continue
        if word in ("--quick", "--full") or word.startswith(("--profile=", "--store=", "--out=")):
            continue
        kept.append(word)
    kept += ["--profile", "smoke", "--store", str(scratch / "store"), "--out", str(scratch / "out")]
    return shlex.join(kept)
