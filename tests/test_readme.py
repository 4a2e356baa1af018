"""The README's five-minute tour names only commands and flags that exist.

The tour needs real weights (and a GPU to be quick), so the tests cannot run it; `make demo` runs
the same steps on tiny models. What can drift silently is the text: a renamed flag or command
would leave a newcomer with an error in their first five minutes. This parses every `stepwise`
line of the tour (shell variables expanded) against the click commands themselves.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parent.parent


def tour_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "the README's tour has no bash block"
    return match.group(1)


def tour_commands() -> list[list[str]]:
    """Each `stepwise ...` line of the tour as argv (after `stepwise`), with the block's variables expanded."""
    variables: dict[str, str] = {}
    commands = []
    for line in tour_block().replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if assignment := re.fullmatch(r"(\w+)=(\".*\"|\S+)", line):
            variables[assignment.group(1)] = shlex.split(assignment.group(2))[0]
        elif line.startswith("stepwise "):
            expanded = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], line)
            commands.append(shlex.split(expanded)[1:])
    return commands


def resolve(argv: list[str]) -> tuple[click.Command, click.Context, list[str]]:
    """The click command an argv names (descending through groups), its parent context (which carries
    the group's settings, e.g. `-h` for help) and the arguments left for it."""
    command: click.Command = main
    ctx = main.make_context("stepwise", [], resilient_parsing=True)
    while isinstance(command, click.Group) and argv and not argv[0].startswith("-"):
        sub = command.get_command(ctx, argv[0])
        assert sub is not None, f"`stepwise ... {argv[0]}` is not a command"
        if isinstance(sub, click.Group):
            ctx = sub.make_context(argv[0], [], parent=ctx, resilient_parsing=True)
        command, argv = sub, argv[1:]
    return command, ctx, argv


def test_the_tour_covers_the_five_steps() -> None:
    names = [" ".join(a for a in argv[:2] if not a.startswith("-")) for argv in tour_commands()]
    for step in ("eval", "run", "curve", "submit", "leaderboard build"):
        assert any(name == step or name.startswith(step + " ") for name in names), (step, names)


def test_every_tour_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    for argv in tour_commands():
        command, parent, args = resolve(argv)
        assert not isinstance(command, click.Group), f"`stepwise {' '.join(argv)}` names a group, not a command"
        # make_context parses and type-checks every option as a real invocation would, without running it;
        # the tour's inputs are made by its earlier steps, so paths need not exist here
        for param in command.params:
            if isinstance(param.type, click.Path):
                monkeypatch.setattr(param.type, "exists", False)
        try:
            command.make_context(command.name, list(args), parent=parent)
        except click.UsageError as err:
            raise AssertionError(f"`stepwise {' '.join(argv)}`: {err.format_message()}") from None
