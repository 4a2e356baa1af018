"""`stepwise strategies list`, `stepwise verifiers list`, `stepwise generators list`.

One click group per plug-in kind, each with a `list` subcommand that is `stepwise list KIND --load`:
name, package and version, the one-line description and the parameters of every plug-in of that
kind. Showing parameters imports each plug-in's class module (which, for stepwise's own and for
well-behaved plug-ins, imports no torch: models load in `__init__`); nothing is built, so no
model loads. `stepwise list KIND` shows names from metadata alone, without importing anything.
"""

from __future__ import annotations

import click

from harness.commands.plugins import list_command, plugin_option


def _list_subcommand(word: str) -> click.Command:
    """`stepwise WORD list`, which runs the `stepwise list` implementation for that kind."""

    about = (f"List the {word}: name, package and version, description and parameters.\n\n"
             f"Imports each plug-in's class to read its parameters, but builds none (no model loads); "
             f"`stepwise list {word}` reads names from metadata only. Exit 1 when a plug-in cannot be imported.")

    @click.command("list", short_help=f"The {word}: package, version, description and parameters.", help=about)
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
    @plugin_option
    @click.pass_context
    def list_kind(ctx: click.Context, as_json: bool, plugins: tuple[str, ...]) -> None:
        ctx.invoke(list_command, kind=word, as_json=as_json, load=True, plugins=plugins)

    return list_kind


def _group(word: str, about: str) -> click.Group:
    group = click.Group(word, help=about, context_settings={"help_option_names": ["-h", "--help"]})
    group.add_command(_list_subcommand(word))
    return group


strategies = _group("strategies", "Strategy plug-ins: selection rules over a candidate pool (`stepwise curve "
                                  "--strategy NAME`) and search strategies that act while images are made "
                                  "(`stepwise run --strategy NAME --budget B`).")
verifiers = _group("verifiers", "Verifier plug-ins: reward models that score candidates (`stepwise run --verifier "
                                "NAME`).")
generators = _group("generators", "Generator plug-ins: text-to-image models (`stepwise run --generator NAME`).")
