"""`stepwise list`: the plug-ins this installation can use, from metadata alone (no torch).

Built-ins show the one-line description stored with their registry placeholder; third-party
plug-ins show their entry point and their distribution's summary. `--load` imports each one to
check it against its kind's Protocol and to show its parameters (that may import torch).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from harness.registry import PluginInfo

F = Callable[..., Any]

#: command-line word -> registry kind
KIND_WORDS: dict[str, str] = {
    "generators": "generator",
    "verifiers": "verifier",
    "strategies": "strategy",
    "suites": "suite",
    "backends": "backend",
}


def plugin_option(f: F) -> F:
    """--plugin PACKAGE (repeatable): allow a third-party plug-in package, for any command that loads plug-ins."""
    return click.option(
        "--plugin", "plugins", multiple=True, metavar="PACKAGE",
        help="Load plug-ins from this package (repeatable; PACKAGE==VERSION pins it). When given, only the "
             "listed third-party packages load, with or without STEPWISE_DISABLE_PLUGIN_AUTOLOAD.",
    )(f)


@contextmanager
def plugins_allowed(plugins: Iterable[str]) -> Iterator[None]:
    """Run a block with the --plugin allowlist in force (unchanged when none was given).

    Any PluginError, from checking the named packages or from the block, becomes a click error.
    """
    from harness import registry

    plugins = list(plugins)
    try:
        with registry.configured(plugins) if plugins else nullcontext():
            yield
    except registry.PluginError as err:
        raise click.ClickException(str(err)) from None


def _parameters(obj: Any) -> list[dict[str, Any]] | str:
    """The `Params` fields of a loaded plug-in, or its constructor's signature when it has none."""
    from harness.plugins import params_schema

    params_cls = getattr(obj, "Params", None)
    if params_cls is None:
        return _signature(obj)
    out = []
    for p in params_schema(params_cls):
        default = None if p.required else _shown(p.default)
        out.append({"name": p.name, "type": p.type, "required": p.required, "default": default, "help": p.help})
    return out


def _signature(obj: Any) -> str:
    """`Name(arg: type = default, ...)` for a class without `Params` (annotations shown as written)."""
    parts = []
    star = False
    for p in inspect.signature(obj).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = p.name
        if p.annotation is not p.empty:
            text += f": {p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        parts.append(text)
    return f"{getattr(obj, '__name__', 'plug-in')}({', '.join(parts)})"


def _shown(value: Any) -> Any:
    """A parameter default as JSON: plain values as they are, tuples as lists, anything else as its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_shown(v) for v in value]
    return repr(value)


def _row(info: PluginInfo) -> dict[str, Any]:
    row = info.to_dict()
    del row["enabled"]
    return row


@click.command("list")
@click.argument("kind", type=click.Choice([*KIND_WORDS, "all"]), default="all")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--load", is_flag=True,
              help="Import each plug-in, check it and show its parameters (may import torch; exit 1 on a failure).")
@plugin_option
def list_command(kind: str, as_json: bool, load: bool, plugins: tuple[str, ...]) -> None:
    """List generators, verifiers, strategies, suites and detector backends (KIND, default all).

    Reads names, packages and versions from metadata only, without importing any plug-in.
    """
    from harness import registry

    kinds = list(KIND_WORDS.values()) if kind == "all" else [KIND_WORDS[kind]]
    with plugins_allowed(plugins):
        rows, failed = _rows(kinds, load)
        not_loaded = [_row(i) for i in registry.discover([k for k in kinds if k in registry.GROUPS],
                                                          include_disabled=True) if not i.enabled]
        reason = registry.not_loaded_reason()
    if as_json:
        click.echo(json.dumps({"plugins": rows, "not_loaded": not_loaded}, indent=2))
    else:
        _print_table(kinds, rows, not_loaded, reason)
    if failed:
        raise SystemExit(1)


def _rows(kinds: list[str], load: bool) -> tuple[list[dict[str, Any]], bool]:
    """One row per plug-in of `kinds`; with `load`, each is imported for its parameters. (rows, any failed)"""
    from harness import registry

    rows: list[dict[str, Any]] = []
    failed = False
    for k in kinds:
        reg = registry.REGISTRIES[k]
        for info in reg.infos():
            row = _row(info)
            if load:
                try:
                    obj = reg.get(info.name)
                    row["parameters"] = _parameters(obj)
                    if isinstance(getattr(obj, "description", None), str):
                        row["description"] = obj.description
                except registry.PluginError as err:
                    row["error"] = str(err)
                    failed = True
            rows.append(row)
    return rows, failed


def _print_table(kinds: list[str], rows: list[dict[str, Any]], not_loaded: list[dict[str, Any]],
                 reason: str) -> None:
    width = max([len(r["name"]) for r in rows] + [4])
    plural = {v: k for k, v in KIND_WORDS.items()}
    for k in kinds:
        mine = [r for r in rows if r["kind"] == k]
        click.echo(click.style(plural[k], bold=True))
        if not mine:
            click.echo("  (none)")
        for r in mine:
            source = f"{r['package']} {r['version']}"
            about = r["description"] if r["builtin"] else f"{r['value']}  {r['description']}".rstrip()
            aliases = f" (alias: {', '.join(r['aliases'])})" if r["aliases"] else ""
            click.echo(f"  {r['name']:<{width}}  {source}  {about}{aliases}")
            if "error" in r:
                click.echo(click.style(f"  {'':<{width}}  ! {r['error']}", fg="red"))
            params = r.get("parameters") or []
            if isinstance(params, str):
                click.echo(f"  {'':<{width}}    {params}")
                params = []
            for p in params:
                value = "required" if p["required"] else f"= {p['default']!r}"
                click.echo(f"  {'':<{width}}    {p['name']}: {p['type']} {value}  {p['help']}".rstrip())
    if not_loaded:
        names = ", ".join(sorted({f"{r['package']} {r['version']}" for r in not_loaded}))
        click.echo(f"\nInstalled but not loaded: {names} ({reason}).")
