"""`stepwise generate`: write a generator's samples in GenEval's folder layout (resumable).

Flags in, `harness.generation.generate_folder` writes, this prints.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from harness.commands.options import parse_pairs, parse_prompts


@click.command("generate")
@click.option("--generator", required=True, help="Generator plug-in name (see `stepwise list generators`).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Generator parameter. Repeatable.")
@click.option("--suite", type=click.Choice(["geneval", "geneval2"]), default="geneval", show_default=True,
              help="Prompt suite. geneval2 needs --suite-param data=DIR (the folder `stepwise prompts geneval2` "
                   "wrote).")
@click.option("--suite-param", "suite_params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of the suite, e.g. data=geneval2/ for geneval2. Repeatable.")
@click.option("--per-task", type=click.IntRange(min=0), default=100, show_default=True,
              help="Prompts per GenEval task after the 80 single objects (100: GenEval's 553 prompts).")
@click.option("--prompts", "prompts_text", default=None, metavar="0..9,80",
              help="Write these suite indices only [all].")
@click.option("--n", type=click.IntRange(min=1), default=4, show_default=True,
              help="Samples per prompt (GenEval uses 4).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (created; resumed when it exists).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Run seed; sample k of prompt i uses the candidate seed `stepwise run` gives it.")
@click.option("--previews/--no-previews", default=False, show_default=True,
              help="Also write step previews as process/{k:05}_step{s}.png (for process reward models).")
@click.option("--plugin", "plugins", multiple=True, metavar="PKG[==VER]",
              help="Allow (and require) this plug-in package. Repeatable.")
def generate_command(generator: str, params: tuple[str, ...], suite: str, suite_params: tuple[str, ...],
                     per_task: int, prompts_text: str | None, n: int, out: Path, seed: int, previews: bool,
                     plugins: tuple[str, ...]) -> None:
    """Write --n samples per prompt of a generator in GenEval's folder layout.

    \b
      OUT/NNNNN/metadata.jsonl           the prompt's record, as GenEval writes it
      OUT/NNNNN/samples/00000.png        sample 0, 1, ... ({k:05}.png)
      OUT/NNNNN/process/00000_step0.png  with --previews: step previews
      OUT/stepwise-generate.json         generator, params, seed and suite of the folder

    The folder works with GenEval's evaluate_images.py, `stepwise eval OUT`, and as a pool:
    `stepwise run --generator folder --param path=OUT`. Sample k of prompt i is drawn from the
    seed `stepwise run --seed S` gives that candidate, so both make the same images.

    Re-running the command keeps every sample already written and generates only the missing
    ones (raise --n or widen --prompts to add more); files are written under a temporary name
    and renamed, so an interrupted run leaves a valid folder. A folder written with another
    generator, other params, seed or suite is refused. Under torchrun each rank writes the
    prompts with index % WORLD_SIZE == RANK.

    With --suite geneval2 each metadata.jsonl holds the prompt's GenEval 2 record (prompt,
    atom_count, vqa_list, skills), the layout `stepwise eval --suite geneval2 OUT` reads.
    """
    from harness import registry
    from harness.generation import GenerateConfig, generate_folder
    from harness.runner import RunError

    suite_values = parse_pairs(suite_params, "--suite-param")
    if suite == "geneval2" and not suite_values.get("data"):
        raise click.UsageError("--suite geneval2 needs --suite-param data=DIR: the folder `stepwise prompts geneval2 "
                               "--from geneval2_data.jsonl -o DIR` wrote (the data is not shipped)")
    config = GenerateConfig(generator=generator, out=out, n=n, params=parse_pairs(params, "--param"), suite=suite,
                            per_task=per_task, prompts=parse_prompts(prompts_text), seed=seed, previews=previews,
                            suite_params=suite_values)
    try:
        with registry.configured(plugins) if plugins else contextlib.nullcontext():
            summary = generate_folder(config)
    except (RunError, registry.PluginError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{out}: {summary.prompts} prompts, {summary.written} needed work; {summary.generated} samples "
               f"generated, {summary.kept} kept", err=True)
