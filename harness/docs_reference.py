"""The reference pages of the docs that are generated from the code itself, so they cannot drift:

    docs/reference/cli.md     every command's `--help` (click formats it at a fixed width)
    docs/reference/store.md   the results store's tables and columns (the SQLAlchemy models)
    docs/reference/formats.md submission.toml and the export formats (the parsers' own docstrings)
    docs/reference/run-spec.md the keys of a `stepwise run --spec` TOML file (the run command's options)

    python -m harness.docs_reference docs/reference          # what `make docs` runs
    python -m harness.docs_reference --check docs/reference  # what tests/test_docs.py asserts

A test compares the checked-in pages with a fresh rendering, so a new option or column without a
docs update fails the tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

__all__ = ["PAGES", "WIDTH", "commands", "render", "render_formats", "render_run_spec", "render_store"]

WIDTH = 100  # columns click wraps help at; fixed so the page does not depend on the terminal

_HEADER = """# CLI reference

Every `stepwise` command with its options, as `stepwise COMMAND --help` prints them. This page is
generated from the commands (`make docs` runs `python -m harness.docs_reference`) and a test checks
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


_STORE_HEADER = """# Store schema

The results store's tables (SQLAlchemy 2.0 typed models in `harness/store/models.py`, created and
upgraded by the ordered migrations in `harness/store/migrations.py`). This page is generated from
the models (`python -m harness.docs_reference`), and a test checks that it matches them. What the
tables hold and how runs resume: [Pools and curves](../guide/pools-and-curves.md#results-store).
"""


def render_store() -> str:
    """The store page (Markdown): the schema version, then per table its columns and keys."""
    from harness.store.migrations import MIGRATIONS, SCHEMA_VERSION
    from harness.store.models import Base

    out = [_STORE_HEADER, f"Schema version: **{SCHEMA_VERSION}**.", "", "| version | migration |", "| --- | --- |"]
    out += [f"| {m.version} | {m.description} |" for m in MIGRATIONS]
    out.append("")
    for table in Base.metadata.sorted_tables:
        out += [f"## {table.name}", ""]
        doc = _model_doc(table.name)
        if doc:
            out += [doc, ""]
        out += ["| column | type | null | key |", "| --- | --- | --- | --- |"]
        for column in table.columns:
            keys = []
            if column.primary_key:
                keys.append("primary key")
            keys += [f"→ {fk.target_fullname}" for fk in column.foreign_keys]
            out.append(f"| `{column.name}` | {column.type!s} | {'yes' if column.nullable else 'no'} | "
                       f"{', '.join(keys)} |")
        unique = [c for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"]
        for constraint in unique:
            out.append("")
            out.append(f"Unique: ({', '.join(c.name for c in constraint.columns)})")
        out.append("")
    return "\n".join(out)


def _model_doc(table_name: str) -> str:
    """The first paragraph of the model class's docstring, on one line."""
    from harness.store.models import Base

    for mapper in Base.registry.mappers:
        cls = mapper.class_
        if getattr(cls, "__tablename__", None) == table_name and cls.__doc__:
            return " ".join(cls.__doc__.strip().split("\n\n")[0].split())
    return ""


_FORMATS_HEADER = """# Submission and export formats

What a leaderboard entry's folder holds, as the code that reads it documents it: these sections are
the parsers' own docstrings (`harness/submissions/manifest.py`, `export.py`, `search_export.py`),
generated into this page (`python -m harness.docs_reference`) and checked by a test. How entries are
made and checked: [Submissions and the leaderboard](../guide/leaderboard.md).
"""


def render_formats() -> str:
    """The formats page: each format's module docstring, as a literal block under its file name."""
    import importlib

    out = [_FORMATS_HEADER]
    for title, module in (("submission.toml", "harness.submissions.manifest"),
                          ("export.jsonl of a pool entry", "harness.submissions.export"),
                          ("export.jsonl and traces.jsonl of a search entry", "harness.submissions.search_export")):
        doc = importlib.import_module(module).__doc__ or ""
        out += [f"## {title}", "", f"From `{module}`:", "", "```text", doc.strip("\n"), "```", ""]
    return "\n".join(out)


_RUN_SPEC_HEADER = """# Run specs

`stepwise run --spec FILE.toml` reads the same settings as its flags from a TOML file; flags given on
the command line override the file, and an unknown key is refused naming the file. Parameters of the
generator, verifiers and strategy are tables. `specs/` holds the paper's combinations, e.g.:

```toml
generator = "showo"
pool = 20
verifiers = ["parm"]
seed = 0

[params]
model = "showlab/show-o"

[verifier_params.parm]
model = "ckpts/parm-hf"
```

The keys, with the flag each one stands for (this table is generated from the run command,
`python -m harness.docs_reference`, and checked by a test):
"""


def render_run_spec() -> str:
    """The run-spec page: every key `stepwise run --spec` accepts, with its flag and the flag's help."""
    from harness.commands.run import run_command
    from harness.run_spec import SPEC_KEYS

    by_name = {param.name: param for param in run_command.params}
    aliases = {"params": "params", "verifiers": "verifiers", "verifier_params": "verifier_params",
               "strategy_params": "strategy_params", "prompts": "prompts_text", "plugins": "plugins",
               "budget": "budgets"}
    out = [_RUN_SPEC_HEADER, "| key | flag | what it is |", "| --- | --- | --- |"]
    for key in sorted(SPEC_KEYS):
        param = by_name.get(key) or by_name.get(aliases.get(key, key))
        flag = "/".join(f"`{o}`" for o in getattr(param, "opts", [])) if param is not None else "—"
        text = " ".join((getattr(param, "help", None) or "").split()).replace("|", "\\|")
        out.append(f"| `{key}` | {flag} | {text} |")
    out.append("")
    return "\n".join(out)


#: page file name -> its renderer
PAGES = {"cli.md": render, "store.md": render_store, "formats.md": render_formats,
         "run-spec.md": render_run_spec}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    if len(paths) != 1:
        print("usage: python -m harness.docs_reference [--check] FOLDER", file=sys.stderr)
        return 2
    folder = Path(paths[0])
    stale = []
    for name, renderer in PAGES.items():
        path, text = folder / name, renderer()
        if check:
            current = path.read_text(encoding="utf-8") if path.is_file() else ""
            if current != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}: run `make docs` (python -m harness.docs_reference {folder})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
