"""`stepwise submit`: turn a run in the store into a reproduced leaderboard entry (submissions/SLUG/)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from harness.commands.options import (
    parse_pairs,
    stored_evaluator_options,
    stored_settings,
    suite_param_option,
    verifier_keys,
)


@click.command("submit")
@click.argument("run_id")
@click.option("--name", required=True, help="Display name of the entry (any text; the site escapes it).")
@click.option("--slug", required=True, help="Folder name of the entry: a-z, 0-9 and '-', at most 64.")
@click.option("--db", default=None, help="Store URL [$STEPWISE_DB or sqlite:///stepwise.db].")
@click.option("--verifier", "verifiers", multiple=True,
              help="A verifier whose stored scores to export; the first selects for best-of-n. Repeatable.")
@click.option("--verifier-param", "verifier_params", multiple=True, metavar="V:KEY=VALUE",
              help="A parameter of verifier V, as given to `stepwise run`. Repeatable.")
@click.option("--strategy", type=click.Choice(["best-of-n", "none"]), default="best-of-n", show_default=True,
              help="Selection: best of n by the first --verifier, or none (one sample: n = 1).")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="Candidates the strategy chooses from [20 for best-of-n, 1 for none].")
@click.option("--pool", "max_samples", type=click.IntRange(min=1), default=None,
              help="Export sample indices below this only [all stored].")
@click.option("--alignment", default="none", show_default=True,
              help="Label of the generator's preference alignment, e.g. dpo, iterative-dpo. A run made with "
                   "`stepwise run --strategy dpo|iterative-dpo` takes its strategy (a contradicting value is refused).")
@click.option("--reward-guidance", default="none", show_default=True,
              help="Label of the reward model that guided alignment, e.g. ft-orm, parm. A prepared run takes the "
                   "verifier that guided its training, or none; a label must name that verifier (ft-orm for orm).")
@stored_evaluator_options()
@suite_param_option
@click.option("--plugin", "plugins", multiple=True, metavar="PKG[==VER]", help="Allow this plug-in package.")
@click.option("--images/--no-images", default=True, show_default=True,
              help="Copy every candidate's PNG into SLUG/images/ (named by sha256) so the site can show them.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run's --out folder (images/<sha256>.png), when the store does not find it where it was "
                   "(the store and the run folder moved apart).")
@click.option("--author", "authors", multiple=True, help="An author. Repeatable.")
@click.option("--link", default=None, help="An http(s) link for the entry (paper, code).")
@click.option("--description", default=None, help="What the entry is [a generated one-line summary].")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("submissions"),
              show_default=True, help="The submissions folder.")
@click.option("--force", is_flag=True, help="Replace an existing entry of that slug.")
@click.option("--search", "search", default=None, metavar="NAME",
              help="Export the run's search by this search strategy (`stepwise run --strategy NAME --budget B`): its "
                   "picks, verdicts, ledgers and traces, instead of a pool.")
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="With --search: the search's budget (when the run has several).")
@click.option("--search-settings", default=None, metavar="PREFIX",
              help="With --search: a prefix of the search's settings hash (when the run has several settings).")
def submit(run_id: str, name: str, slug: str, db: str | None, verifiers: tuple[str, ...],
           verifier_params: tuple[str, ...], strategy: str, n: int | None, max_samples: int | None, alignment: str,
           reward_guidance: str, plugins: tuple[str, ...], images: bool, run_dir: Path | None,
           authors: tuple[str, ...], link: str | None, description: str | None, out: Path, force: bool,
           search: str | None, budget: int | None, search_settings: str | None, suite_params: tuple[str, ...],
           **evaluator_flags: Any) -> None:
    """Write OUT/SLUG/: submission.toml, export.jsonl and images/ from run RUN_ID in the store.

    The evaluator flags and --verifier/--verifier-param name the stored verdicts and scores the
    way `stepwise curve --run` does. The folder is written as OUT/SLUG.partial, checked by
    loading it (scores recomputed, image hashes verified), then renamed to OUT/SLUG.

    A run whose generator checkpoint a strategy trained (`stepwise run --strategy dpo`) carries
    that link into the export's header (`preparation`: checkpoint sha256, training data, parameters,
    parent model), and --alignment / --reward-guidance default to what trained it.

    --search NAME exports a search run instead (`stepwise run --strategy NAME --budget B`): one pick
    per GenEval sample with its verdict, ledger and trace hash (export.jsonl), the traces themselves
    (traces.jsonl) and, with --images, the picks and the previews the search saw; system.strategy is
    the search strategy, system.n its budget, system.verifiers the verifiers it used.

    A GenEval 2 run (`stepwise run --suite geneval2`) exports its Soft-TIFA verdicts: each candidate's
    Soft-TIFA GM and per-question scores; --suite-param model=... names them when the run was judged
    with several VQA models, and --suite-param data=DIR (the run's suite folder) checks the entry's
    prompts and questions before it is written. Its entry is ranked in GenEval 2's own table.
    """
    from harness.submissions.manifest import SLUG

    if not SLUG.fullmatch(slug):
        raise click.BadParameter(f"{slug!r}: 1 to 64 of a-z, 0-9 and '-', starting with a letter or digit",
                                 param_hint="--slug")
    if search is not None:
        for flag in ("verifiers", "verifier_params", "strategy", "n", "max_samples"):
            if _given(flag):
                raise click.UsageError(f"--{flag.replace('_', '-')} is for pool entries; a --search names its own "
                                       "verifiers, budget and picks")
        submit_search(run_id, search, budget, search_settings, db=db, name=name, slug=slug, alignment=alignment,
                      reward_guidance=reward_guidance, plugins=plugins, images=images, run_dir=run_dir,
                      authors=authors, link=link, description=description, out=out, force=force,
                      evaluator_flags=evaluator_flags, suite_params=suite_params)
        return
    if budget is not None or search_settings is not None:
        raise click.UsageError("--budget and --search-settings need --search NAME")
    n = n if n is not None else (20 if strategy == "best-of-n" else 1)
    if strategy == "best-of-n" and not verifiers:
        raise click.UsageError("best-of-n needs a --verifier to select by")
    if strategy == "none" and n != 1:
        raise click.UsageError("--strategy none means one sample: --n 1")
    final = out / slug
    if final.exists() and not force:
        raise click.ClickException(f"{final} exists; choose another --slug or pass --force to replace it")

    suite = _check_suite(db, run_id)  # before the evaluator flags: a GenEval 2 run needs none
    if suite != "geneval" and _given_evaluator_flags(evaluator_flags):
        raise click.UsageError(f"run {run_id[:12]}… is on suite {suite!r}, not judged by GenEval's evaluator: its "
                               "verdicts are named by --suite-param, not by the detector flags")
    params = parse_pairs(suite_params, "--suite-param")
    data = Path(params.pop("data")) if params.get("data") else None  # checks the entry; names no verdicts
    if suite == "geneval":
        spec, keys = stored_settings(evaluator_flags, verifiers, verifier_params, plugins)
    else:  # the verdicts' key is the stored suite's evaluator's (a verifier reading verdicts hashes it)
        spec = None
        keys = verifier_keys(verifiers, verifier_params, plugins, _suite_key(db, run_id, params))
    export = _read(db, run_id, spec, keys, max_samples, _recorded(verifiers, verifier_params, plugins), run_dir,
                   params)
    export, alignment, reward_guidance = _with_preparation(
        export, run_id, verifiers[0] if strategy == "best-of-n" else None, alignment, reward_guidance)
    manifest_text = _manifest_text(export, name=name, authors=authors, link=link, description=description,
                                   strategy=strategy, verifiers=verifiers, n=n, alignment=alignment,
                                   reward_guidance=reward_guidance)
    entry = _write_and_check(out, slug, export, manifest_text, images=images, geneval2_data=data)
    low, high = entry.intervals["overall"] if entry.intervals else (float("nan"), float("nan"))
    prepared = export.header.preparation
    checkpoint = (f", generator checkpoint {prepared.checkpoint_sha256[:12]}… by {prepared.strategy}"
                  if prepared is not None else "")
    figure = "soft_tifa_gm" if suite == "geneval2" else "overall"
    click.echo(f"{final}: {figure} {entry.scores['overall']:.4f} [{low:.4f}, {high:.4f}] "
               f"({strategy} at n = {n}, {len(entry.images)} candidates{checkpoint})")


def _check_suite(db: str | None, run_id: str) -> str:
    from harness.commands.stored import read_store
    from harness.submissions.build import SubmitError, check_exportable_suite

    return str(read_store(db, lambda s: check_exportable_suite(s, run_id), (SubmitError,)))


def _suite_key(db: str | None, run_id: str, params: dict[str, str]) -> str:
    """The key of the run's stored verdicts by its suite's evaluator (`harness.suite_store.resolve`)."""
    from harness import suite_store
    from harness.commands.stored import read_store

    def key(s: Any) -> str:
        try:
            return suite_store.resolve(s, run_id, geneval_spec=lambda: None, suite_params=params).key
        except ValueError as err:
            raise click.ClickException(str(err)) from None

    return str(read_store(db, key, (click.ClickException,)))


def _given_evaluator_flags(flags: dict[str, Any]) -> bool:
    """Whether a GenEval evaluator flag (other than --device) was given on the command line."""
    return any(_given(name) for name in flags if name != "device")


def _read(db: str | None, run_id: str, spec: Any, keys: dict[str, str], max_samples: int | None,
          recorded: dict[str, Any], run_dir: Path | None, suite_params: dict[str, str]) -> Any:
    from harness.commands.stored import read_store
    from harness.submissions.build import SubmitError, read_run

    return read_store(db, lambda s: read_run(s, run_id, spec, keys, max_samples=max_samples,
                                             verifier_settings=recorded, run_dir=run_dir,
                                             suite_params=suite_params), (SubmitError,))


def _recorded(verifiers: tuple[str, ...], verifier_params: tuple[str, ...], plugins: tuple[str, ...]) -> dict[str, Any]:
    """The header's verifier_settings: how a maintainer builds each verifier again to re-score the images."""
    import contextlib

    from harness import registry
    from harness.commands.run import parse_verifier_params
    from harness.submissions.build import recorded_verifiers

    with registry.configured(plugins) if plugins else contextlib.nullcontext():
        return recorded_verifiers(verifiers, parse_verifier_params(verifier_params))


def _given(name: str) -> bool:
    """Whether the command line (not the default) gave parameter `name`."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _with_preparation(export: Any, run_id: str, selecting: str | None, alignment: str,
                      reward_guidance: str) -> tuple[Any, str, str]:
    """The export with its header's `preparation` when the store links the run to a prepared checkpoint,
    and the alignment and reward-guidance labels: taken from the link when not given, refused
    (UsageError) when given and contradicting it. Without a link, everything as given."""
    import dataclasses

    from harness.preparation import describe
    from harness.submissions.build import SubmitError, choose_preparation, prepared_checkpoint
    from harness.submissions.load import preparation_disagreements

    try:
        link = choose_preparation(run_id, export.preparations, selecting)
        prepared = prepared_checkpoint(run_id, link) if link is not None else None
    except SubmitError as err:
        raise click.ClickException(str(err)) from None
    if prepared is None:
        return export, alignment, reward_guidance
    if not _given("alignment"):
        alignment = prepared.strategy
    if not _given("reward_guidance"):
        reward_guidance = prepared.reward_verifier or "none"
    problems = preparation_disagreements(alignment, reward_guidance, prepared)
    if problems:
        flags = {"system.alignment": "--alignment", "system.reward_guidance": "--reward-guidance"}
        raise click.UsageError(
            f"run {run_id[:12]}… generated its images with "
            f"{describe(prepared.strategy, prepared.settings_hash, prepared.checkpoint, prepared.checkpoint_sha256)}"
            f"; {'; '.join(_flag_problem(p, flags) for p in problems)}. Leave the flag out to take it from the run.")
    header = dataclasses.replace(export.header, preparation=prepared)
    return dataclasses.replace(export, header=header), alignment, reward_guidance


def _manifest_text(export: Any, *, name: str, authors: tuple[str, ...], link: str | None, description: str | None,
                   strategy: str, verifiers: tuple[str, ...], n: int, alignment: str, reward_guidance: str) -> str:
    from harness.submissions.build import EXPORT_NAME
    from harness.submissions.manifest import dump_manifest, parse_manifest
    from harness.submissions.model import Evaluator, Manifest, Protocol, System

    head = export.header
    m = len(export.records) // head.prompts
    if description is None:
        how = f"best of {n} by {verifiers[0]}" if strategy == "best-of-n" else "one sample per image"
        judged = "GenEval 2 Soft-TIFA verdicts" if head.suite == "geneval2" else "GenEval verdicts"
        description = (f"Reproduced with stepwise {head.stepwise_version} from run {head.run_id[:12]}: {how}, "
                       f"{m} candidates per prompt, {judged} by {head.evaluator_backend}.")
        if head.preparation is not None:
            description += (f" The generator checkpoint was trained by {head.preparation.strategy} (weights sha256 "
                            f"{head.preparation.checkpoint_sha256[:12]}…).")
    manifest = Manifest(
        name=name, authors=authors, link=link, description=description, kind="reproduced",
        system=System(generator=head.generator["name"], strategy=strategy,
                      verifiers=verifiers[:1] if strategy == "best-of-n" else (), n=n, alignment=alignment,
                      reward_guidance=reward_guidance),
        evaluator=Evaluator(backend=head.evaluator_backend, settings=head.evaluator_settings),
        protocol=Protocol(images_per_prompt=m, seed=head.seed, resolution=export.resolution, prompt_rewriting=False),
        sources=(), scores=None, export=EXPORT_NAME, suite="geneval2" if head.suite == "geneval2" else "geneval")
    text = dump_manifest(manifest)
    # The flags end up in the manifest: check them as `validate` will, and say which flag is wrong.
    _parsed, problems = parse_manifest(text)
    if problems:
        flags = {"name": "--name", "authors": "--author", "link": "--link", "description": "--description",
                 "system.alignment": "--alignment", "system.reward_guidance": "--reward-guidance"}
        raise click.UsageError("; ".join(_flag_problem(p, flags) for p in problems))
    return text


def _flag_problem(problem: str, flags: dict[str, str]) -> str:
    for field, flag in flags.items():
        if problem.startswith(field):
            return f"{flag}: {problem}"
    return problem


def _write_and_check(out: Path, slug: str, export: Any, manifest_text: str, *, images: bool,
                     geneval2_data: Path | None = None) -> Any:
    from harness.submissions.build import SubmitError, replace_folder, write_folder
    from harness.submissions.load import SubmissionError, load_entry

    partial = out / f"{slug}.partial"
    if partial.exists():
        shutil.rmtree(partial)  # what an interrupted submit left
    try:
        write_folder(partial, export, manifest_text, images=images)
        entry = load_entry(partial, slug=slug, geneval2_data=geneval2_data)
    except (SubmitError, SubmissionError) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise click.ClickException(str(err)) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_folder(partial, out / slug)
    return entry


def submit_search(run_id: str, strategy: str, budget: int | None, settings: str | None, *, db: str | None, name: str,
                  slug: str, alignment: str, reward_guidance: str, plugins: tuple[str, ...], images: bool,
                  run_dir: Path | None, authors: tuple[str, ...], link: str | None, description: str | None,
                  out: Path, force: bool, evaluator_flags: dict[str, Any], suite_params: tuple[str, ...] = ()) -> None:
    """`stepwise submit RUN --search NAME`: a search entry (harness.submissions.search_build)."""
    from harness.commands.stored import read_store
    from harness.submissions.build import SubmitError, replace_folder
    from harness.submissions.load import SubmissionError, load_entry
    from harness.submissions.search_build import choose_search, read_search, write_search_folder

    final = out / slug
    if final.exists() and not force:
        raise click.ClickException(f"{final} exists; choose another --slug or pass --force to replace it")
    suite = _check_suite(db, run_id)  # before the GenEval flags are read: a GenEval 2 run needs none
    params = parse_pairs(suite_params, "--suite-param")
    data = Path(params.pop("data")) if params.get("data") else None
    spec = stored_settings(evaluator_flags, (), (), plugins)[0] if suite == "geneval" else None

    def read(s: Any) -> Any:
        return read_search(s, run_id, choose_search(s, run_id, strategy, budget, settings), spec, run_dir, params)

    export = read_store(db, read, (SubmitError,))
    text = _search_manifest_text(export, name=name, authors=authors, link=link, description=description,
                                 alignment=alignment, reward_guidance=reward_guidance)
    partial = out / f"{slug}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        write_search_folder(partial, export, text, images=images)
        entry = load_entry(partial, slug=slug, geneval2_data=data)
    except (SubmitError, SubmissionError) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise click.ClickException(str(err)) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_folder(partial, final)
    low, high = entry.intervals["overall"] if entry.intervals else (float("nan"), float("nan"))
    info = entry.search
    figure = "soft_tifa_gm" if suite == "geneval2" else "overall"
    click.echo(f"{final}: {figure} {entry.scores['overall']:.4f} [{low:.4f}, {high:.4f}] (search {info.strategy} at "
               f"budget {info.budget}, {len(entry.images)} picks, {info.nfe:.1f} generator NFE and "
               f"{info.seconds:.3g} s per pick)")


def _search_manifest_text(export: Any, *, name: str, authors: tuple[str, ...], link: str | None,
                          description: str | None, alignment: str, reward_guidance: str) -> str:
    from harness.search.ledger import Ledger
    from harness.submissions.build import EXPORT_NAME
    from harness.submissions.manifest import dump_manifest, parse_manifest
    from harness.submissions.model import Evaluator, Manifest, Protocol, System

    head, search = export.header, export.search
    if description is None:
        ledgers = [Ledger.from_json(p.ledger) for p in export.picks]
        nfe = sum(x.generator_nfe for x in ledgers) / len(ledgers)
        description = (f"Reproduced with stepwise {head.stepwise_version} from run {head.run_id[:12]}: search "
                       f"{search.strategy} at budget {search.budget} (at most best-of-{search.budget}'s generator "
                       f"compute; {nfe:.1f} NFE per pick on average), {search.samples} picks per prompt, "
                       f"{'GenEval 2 Soft-TIFA' if head.suite == 'geneval2' else 'GenEval'} verdicts by "
                       f"{head.evaluator_backend}.")
    manifest = Manifest(
        name=name, authors=authors, link=link, description=description, kind="reproduced",
        system=System(generator=head.generator["name"], strategy=search.strategy,
                      verifiers=tuple(sorted(head.verifiers)), n=search.budget, alignment=alignment,
                      reward_guidance=reward_guidance),
        evaluator=Evaluator(backend=head.evaluator_backend, settings=head.evaluator_settings),
        protocol=Protocol(images_per_prompt=search.samples, seed=head.seed, resolution=export.resolution,
                          prompt_rewriting=export.prompt_rewriting),
        sources=(), scores=None, export=EXPORT_NAME, suite="geneval2" if head.suite == "geneval2" else "geneval")
    text = dump_manifest(manifest)
    _parsed, problems = parse_manifest(text)
    if problems:
        flags = {"name": "--name", "authors": "--author", "link": "--link", "description": "--description",
                 "system.alignment": "--alignment", "system.reward_guidance": "--reward-guidance"}
        raise click.UsageError("; ".join(_flag_problem(p, flags) for p in problems))
    return text
