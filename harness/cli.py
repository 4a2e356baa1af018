"""The `stepwise` command: one click group whose subcommands are imported only when run.

The group knows each subcommand's import path and one-line help, so `stepwise --help`
lists them without importing any of them (and so without torch, transformers or mmdet).
"""

from __future__ import annotations

import importlib

import click

from harness import __version__

# name -> ("module:attribute", one-line help shown by `stepwise --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "prompts": ("harness.commands.prompts:prompts",
                "Write prompt suites (GenEval's, byte-identical; GenEval 2's from your copy)."),
    "eval": ("harness.commands.evaluate:eval_command",
             "Evaluate a GenEval (or --suite geneval2) image folder; write results.jsonl."),
    "rescore": ("harness.commands.rescore:rescore",
                "Re-judge stored detections with other thresholds (no model)."),
    "summary": ("harness.commands.summary:summary",
                "Print GenEval's (or GenEval 2's) summary scores of a results.jsonl."),
    "curve": ("harness.commands.curve:curve",
              "Exact best-of-n curves per verifier from a candidate pool, with intervals."),
    "analyze": ("harness.commands.analyze:analyze",
                "How well each verifier judges a pool: AUROC, calibration, regret vs oracle, agreement, steps."),
    "doctor": ("harness.commands.doctor:doctor",
               "Check torch/CUDA, detector backends and local model weights."),
    "generate": ("harness.commands.generate:generate_command",
                 "Write a generator's samples in GenEval's folder layout (resumable; same seeds as run)."),
    "run": ("harness.commands.run:run_command",
            "Generate a candidate pool, judge it with GenEval, score it with verifiers; store it (resumable)."),
    "merge": ("harness.commands.merge:merge",
              "Combine stores (e.g. per-rank SQLite files of a torchrun run) into one, by natural keys."),
    "migrate": ("harness.commands.migrate:migrate",
                "Upgrade a results store to this version's schema (readers such as curve never do)."),
    "convert-llava": ("harness.commands.convert_llava:convert_llava",
                      "Convert an lmms-lab LLaVA-NeXT checkpoint (the paper's ORM/PARM) for transformers."),
    "align": ("harness.commands.align:align",
              "Align a generator to preference pairs (DPO, the paper's 'reinforce'); writes a loadable checkpoint."),
    "leaderboard": ("harness.commands.leaderboard:leaderboard",
                    "Build the static leaderboard site from submissions/, or preview it on localhost."),
    "curate": ("harness.commands.curate:curate",
               "Ranking data from a judged pool: ORM records, DPO pairs, PARM examples (LLaVA format)."),
    "submit": ("harness.commands.submit:submit",
               "Turn a stored run into a reproduced leaderboard entry (submissions/SLUG/)."),
    "validate": ("harness.commands.validate:validate",
                 "Check leaderboard submission folders; recompute reproduced scores."),
    "list": ("harness.commands.plugins:list_command",
             "List generators, verifiers, strategies and detector backends."),
    "strategies": ("harness.commands.plugin_groups:strategies",
                   "Strategy plug-ins: `stepwise strategies list` shows them with their parameters."),
    "verifiers": ("harness.commands.plugin_groups:verifiers",
                  "Verifier plug-ins: `stepwise verifiers list` shows them with their parameters."),
    "generators": ("harness.commands.plugin_groups:generators",
                   "Generator plug-ins: `stepwise generators list` shows them with their parameters."),
}


BUG_LINE = ("stepwise {version}: this is a bug in stepwise, not a problem with your input or setup; please report "
            "it with the command line and the traceback below")


def user_error(err: BaseException) -> str | None:
    """The one line for an exception that is the user's or the machine's to fix (a file that cannot be
    written, a full disk, a store that cannot be written), or None for everything else: a bug."""
    from sqlalchemy.exc import DBAPIError

    from harness.store import StoreError

    if isinstance(err, StoreError):
        return " ".join(str(err).split())
    if isinstance(err, DBAPIError):
        reason = " ".join(str(err.orig).split())
        if "readonly database" in reason or "read-only transaction" in reason:
            return f"store is read-only: {reason}"
        return f"the store failed: {reason}"
    if isinstance(err, NotADirectoryError | FileExistsError) and err.filename is not None:
        # mkdir of an output below an existing regular file (`-o notes.txt/out.jsonl`)
        return (f"{err.filename}: cannot be made a folder: it, or a folder above it, is an existing file "
                f"({err.strerror})")
    if isinstance(err, OSError) and (err.filename is not None or err.strerror):
        where = f"{err.filename}: " if err.filename is not None else ""
        also = f" (and {err.filename2})" if getattr(err, "filename2", None) else ""
        return f"{where}{err.strerror or err}{also}"
    if isinstance(err, MemoryError):
        return "out of memory"
    return None


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand. A user's error never ends in a traceback: click's own errors and our
        ClickExceptions print one line; an OSError or store error that escaped a command becomes one line
        too (`user_error`). Anything else is a bug: one line asking for a report, then its traceback."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit,
                KeyboardInterrupt):
            raise
        except Exception as err:
            message = user_error(err)
            if message is not None:
                raise click.ClickException(message) from None
            click.echo(BUG_LINE.format(version=__version__), err=True)
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name][0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name][0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's default imports every command to read its short help; ours is in COMMANDS.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stepwise")
def main() -> None:
    """stepwise: benchmark reasoning strategies for text-to-image generation on GenEval.

    \b
    Typical session:
      stepwise prompts geneval -o prompts/          # GenEval's 553 prompts
      stepwise eval IMAGES/ -o results.jsonl --backend hf
      stepwise summary results.jsonl
      stepwise rescore results.jsonl --threshold 0.4 | stepwise summary -
    """
