"""The CLI reference page of the docs, generated from the click commands themselves.

    python -m harness.cli_reference docs/reference/cli.md     # what `make docs` runs
    python -m harness.cli_reference --check docs/reference/cli.md

Each command's section is its own `--help` text (click formats it at a fixed width), so the page
says exactly what the installed `stepwise` says; a test compares the checked-in page with a fresh
rendering, so a new option without a docs update fails the tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

__all__ = ["WIDTH", "commands", "render"]

WIDTH = 100  # columns click wraps help at; fixed so the page does not depend on the terminal

_HEADER = """# CLI reference

Every `stepwise` command with its options, as `stepwise COMMAND --help` prints them. This page is
generated from the commands (`make docs` runs `python -m harness.cli_reference`) and a test checks
that it matches them, so it cannot drift.
"""


def commands() -> Iterator[tuple[str, click.Command, click.Context]]:
    """(full name, command, its context) for `stepwise` and every subcommand, depth first, sorted."""
    from harness.cli import main

    # The group's own context settings (help_option_names: -h, --help), as `stepwise --help` runs with;
    # subcommands' contexts inherit them from their parent, as click's do.
    root = click.Context(main, info_name="stepwise", terminal_width=WIDTH, max_content_width=WIDTH,
                         **main.context_settings)
    yield from _walk("stepwise", main, root)


def _walk(name: str, command: click.Command, ctx: click.Context) -> Iterator[tuple[str, click.Command, click.Context]]:
    yield name, command, ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=sub_name, parent=ctx, terminal_width=WIDTH,
                                    max_content_width=WIDTH)
            yield from _walk(f"{name} {sub_name}", sub, sub_ctx)


def _anchor(name: str) -> str:
    return name.replace(" ", "-")


def render() -> str:
    """The whole page (Markdown): a table of contents, then one section per command."""
    entries = list(commands())
    out = [_HEADER]
    for name, command, _ctx in entries[1:]:
        summary = command.get_short_help_str(limit=90)
        out.append(f"- [`{name}`](#{_anchor(name)}): {summary}")
    out.append("")
    for name, command, ctx in entries:
        out.append(f"## {name} {{#{_anchor(name)}}}")
        out.append("")
        out.append("```text")
        out.append(command.get_help(ctx).rstrip())
        out.append("```")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    if len(paths) != 1:
        print("usage: python -m harness.cli_reference [--check] PATH.md", file=sys.stderr)
        return 2
    path = Path(paths[0])
    text = render()
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            print(f"{path} is out of date: run `make docs` (python -m harness.cli_reference {path})", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
