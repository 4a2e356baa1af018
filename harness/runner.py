"""The runner: fill a run's candidate pool, evaluate it with its suite's evaluator and score it with verifiers.

    config = RunConfig(generator="solid", params={"size": "64"}, pool=4, verifiers=("brightness",),
                       evaluator=EvaluatorSpec(backend="hf", ...), db="sqlite:///stepwise.db", out=Path("out"))
    summary = run(config)

For every prompt of this rank's shard that is not complete in the store, the runner generates
only the missing sample indices, evaluates the candidates that lack a verdict and scores those
that lack a verifier's score, then writes that prompt's rows in ONE transaction.

The suite is a plug-in (`harness.suites`, `registry.suites`): `config.suite` names it ("geneval",
"geneval2", a third-party one) or is a GenEval-format metadata .jsonl; `config.suite_params` are its
parameters (geneval2: `data`, the suite folder). Its records are the prompts, its `group` their
stored tag, and its evaluator judges every candidate; verdicts are filed under the evaluator's name
and key, with the verdict's score (GenEval: 1.0 / 0.0; GenEval 2: Soft-TIFA GM). So a run killed
at any moment resumes where it stopped, raising the pool or adding a verifier reuses every stored
row, and the final rows are the same as an uninterrupted run's: a candidate's seed depends only
on (run seed, prompt index, sample index), and its image is stored under its sha256.

A verifier that declares `needs_verdicts = True` (the `oracle`) is handed GenEval's verdict of
each image it scores: the one computed for this prompt a moment earlier, or the stored one for a
candidate judged before (read, not recomputed). Its scores depend on the evaluator, so its
settings hash includes the evaluator's key (`settings_hash`).

A verifier that declares `reads_scores = True` (the `ensemble`) is handed the scores of the
verifiers it names (`score_inputs(params)`, each a verifier of the same run): it is scored after
them, on all of a prompt's candidates whenever any lacks its score (its scores depend on the
whole pool), and its stored rows for the prompt are replaced. Its settings hash includes theirs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image
    from sqlalchemy import Engine

    from harness.geneval.evaluator import EvaluatorSpec, Models
    from harness.plugins import Generator, Verifier
    from harness.store import RunSpec
    from harness.store.models import Candidate
    from harness.suites import Suite, SuiteEvaluator, Verdict

_SEED_MASK = (1 << 63) - 1  # candidates.seed is a signed 64-bit column


class RunError(RuntimeError):
    """A run that cannot start or go on, with a message meant for the user."""


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class RunConfig:
    """Everything `stepwise run` is told (flags or a TOML run spec)."""

    generator: str
    evaluator: EvaluatorSpec | None  # GenEval's settings (the run's flags); None for a suite judged otherwise
    pool: int
    params: Mapping[str, Any] = field(default_factory=dict)
    verifiers: Sequence[str] = ()
    verifier_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    suite: str = "geneval"  # a suite plug-in's name, or a GenEval-format metadata .jsonl
    suite_params: Mapping[str, Any] = field(default_factory=dict)  # the suite plug-in's parameters
    per_task: int = 100  # geneval's per_task (unless suite_params gives it)
    prompts: Sequence[int] | None = None  # work on these suite indices only (None: all)
    seed: int = 0
    db: str | None = None
    out: Path = Path("stepwise-out")
    batch_size: int = 8  # images per evaluator call
    device: str | None = None  # of the suite's evaluator models, unless the suite's params say otherwise


@dataclass(frozen=True)
class Shard:
    """This process's share of the prompts under torchrun (RANK/WORLD_SIZE), else everything."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Shard:
        env = os.environ if env is None else env
        try:
            rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
        except ValueError:
            raise RunError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} "
                           "are not integers") from None
        if world < 1 or not 0 <= rank < world:
            raise RunError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
        return cls(rank, world)

    def owns(self, prompt_index: int) -> bool:
        return prompt_index % self.world_size == self.rank


@contextlib.contextmanager
def process_group(shard: Shard) -> Iterator[None]:
    """Under torchrun (WORLD_SIZE > 1), join a gloo process group and wait for every rank at the end.

    The ranks never exchange data (each writes its own prompts), but the final barrier lets
    rank 0 report only once the whole run is done. A rank that fails makes torchrun stop the others.
    """
    if shard.world_size == 1 or "MASTER_ADDR" not in os.environ:
        yield
        return
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world_size)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


@dataclass
class RunSummary:
    run_id: str
    prompts: int = 0  # prompts of this shard
    written: int = 0  # prompts that needed work
    generated: int = 0
    evaluated: int = 0
    scored: int = 0


def candidate_seed(run_seed: int, prompt_index: int, sample_index: int) -> int:
    """A candidate's generator seed: stable across runs, Python versions and pool sizes."""
    digest = hashlib.sha256(f"stepwise-candidate:{run_seed}:{prompt_index}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


# ---------------------------------------------------------------------------------------------
# plug-ins


@dataclass(frozen=True)
class LoadedVerifier:
    name: str
    settings_hash: str  # names this verifier + params (+ the evaluator, see settings_hash) in the store
    instance: Verifier
    needs_previews: bool
    needs_verdicts: bool = False  # `score` also gets GenEval's verdicts (harness.plugins.Verifier)
    reads: tuple[str, ...] = ()  # verifiers whose scores `score` also gets (a `reads_scores` verifier)


def needs_verdicts(cls: Any) -> bool:
    """Whether a verifier class asks for GenEval's verdicts: an optional class attribute, False if absent."""
    return bool(getattr(cls, "needs_verdicts", False))


def score_inputs(cls: Any, params: Any) -> tuple[str, ...]:
    """The verifiers whose scores a `reads_scores` verifier combines (() for any other verifier)."""
    if not getattr(cls, "reads_scores", False):
        return ()
    return tuple(cls.score_inputs(params))


def _plugin(kind: str, name: str, values: Mapping[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(class, parsed params, provenance) of a registered plug-in; RunError on unknown name or bad params."""
    from harness import registry
    from harness.plugins import ParamsError, parse_params

    reg = registry.REGISTRIES[kind]
    try:
        cls = reg.get(name)
        info = reg.info(name)
    except (registry.UnknownPluginError, registry.PluginLoadError) as err:
        raise RunError(str(err)) from None
    try:
        params = parse_params(cls.Params, values, owner=f"{kind} {info.name!r}")
    except ParamsError as err:
        raise RunError(str(err)) from None
    return cls, params, info.provenance()


def settings_hash(provenance: Mapping[str, str], params: Any, evaluator_key: str | None = None,
                  inputs: Mapping[str, str] | None = None) -> str:
    """What names a verifier's scores: its package, version and canonical params, for a verifier
    that scores by GenEval's verdicts the evaluator's key too (other evaluator settings, other scores),
    and for one that combines other verifiers' scores their settings hashes (`inputs`)."""
    from harness.plugins import canonical_json
    from harness.store import content_hash

    named: dict[str, Any] = {"name": provenance["name"], "package": provenance["package"],
                             "version": provenance["version"], "params": json.loads(canonical_json(params))}
    if evaluator_key is not None:
        named["evaluator"] = evaluator_key
    if inputs:
        named["inputs"] = dict(inputs)
    return content_hash(named)


def _verifier_specs(names: Sequence[str], params: Mapping[str, Mapping[str, Any]],
                    evaluator_key: str | None) -> list[tuple[str, Any, Any, str]]:
    """(name, class, parsed params, settings hash) per verifier, checked; nothing is instantiated."""
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise RunError(f"--verifier-param for {', '.join(unknown)}, which is not a --verifier of this run")
    if len(set(names)) != len(names):
        raise RunError(f"a verifier is named twice: {', '.join(names)}")
    loaded = {name: _plugin("verifier", name, params.get(name, {})) for name in names}
    hashes: dict[str, str] = {}
    # Verifiers that combine others' scores are hashed after those, whatever the order given.
    for name in sorted(names, key=lambda n: bool(getattr(loaded[n][0], "reads_scores", False))):
        cls, parsed, provenance = loaded[name]
        key = None
        if needs_verdicts(cls):
            if evaluator_key is None:
                raise RunError(f"verifier {name!r} scores by GenEval's verdicts, so its scores are stored per "
                               "evaluator settings; the evaluator's key is needed to find them")
            key = evaluator_key
        hashes[name] = settings_hash(provenance, parsed, key, _input_hashes(name, cls, parsed, loaded, hashes))
    return [(name, loaded[name][0], loaded[name][1], hashes[name]) for name in names]


def _input_hashes(name: str, cls: Any, parsed: Any, loaded: Mapping[str, tuple[Any, Any, Any]],
                  hashes: Mapping[str, str]) -> dict[str, str] | None:
    """{input verifier: its settings hash} for a verifier that reads others' scores, checked; None otherwise."""
    try:
        inputs = score_inputs(cls, parsed)
    except ValueError as err:
        raise RunError(f"verifier {name!r}: {err}") from None
    if not inputs:
        return None
    absent = [v for v in inputs if v not in loaded]
    if absent:
        raise RunError(f"verifier {name!r} combines the scores of {', '.join(inputs)}: name {', '.join(absent)} "
                       "with --verifier too (with the same --verifier-param as the run that scored them)")
    nested = [v for v in inputs if getattr(loaded[v][0], "reads_scores", False)]
    if nested:
        raise RunError(f"verifier {name!r} combines {', '.join(nested)}, which itself combines other verifiers' "
                       "scores; combine the underlying verifiers instead")
    return {v: hashes[v] for v in inputs}


def verifier_settings_hashes(names: Sequence[str], params: Mapping[str, Mapping[str, Any]], *,
                             evaluator_key: str | None = None) -> dict[str, str]:
    """The hashes the verifiers' scores are stored under, without building them (no model is loaded).

    evaluator_key (`EvaluatorSpec.key()`) is required when a verifier needs GenEval's verdicts.
    """
    return {name: digest for name, _cls, _parsed, digest in _verifier_specs(names, params, evaluator_key)}


def instantiate(kind: str, name: str, cls: Any, params: Any) -> Any:
    """Build a plug-in; the errors of its construction that are the user's to fix (missing or broken
    weights, parameter values it refuses) become one RunError naming the plug-in, not a traceback."""
    try:
        return cls(params)
    except (OSError, ValueError) as err:
        raise RunError(f"{kind} {name!r}: {err}") from err


def load_verifiers(names: Sequence[str], params: Mapping[str, Mapping[str, Any]],
                   evaluator_key: str | None = None) -> list[LoadedVerifier]:
    return [LoadedVerifier(name, digest, instantiate("verifier", name, cls, parsed), bool(cls.needs_previews),
                           needs_verdicts(cls), score_inputs(cls, parsed))
            for name, cls, parsed, digest in _verifier_specs(names, params, evaluator_key)]


# ---------------------------------------------------------------------------------------------
# images on disk


def save_png(image: Image, images_dir: Path) -> tuple[Path, str]:
    """Write `image` as OUT/images/<sha256>.png (atomically; an existing file is kept); (path, sha256)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = images_dir / f"{digest}.png"
    if not path.exists():
        tmp = path.with_name(f".{digest}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a crash never leaves a half-written file under the final name
    return path.resolve(), digest


def _open(path: str) -> Image:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as err:
        raise RunError(f"stored image {path} cannot be read ({err}); was the run folder moved?") from None


# ---------------------------------------------------------------------------------------------
# the plan: what each prompt still needs


@dataclass
class PromptWork:
    """One prompt's missing work: new sample indices, and stored candidates lacking a verdict / score."""

    index: int
    prompt_id: int
    metadata: dict[str, Any]
    generate: list[int] = field(default_factory=list)
    evaluate: list[Candidate] = field(default_factory=list)
    score: dict[str, list[Candidate]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.generate or self.evaluate or any(self.score.values()))


def load_suite(config: RunConfig) -> Suite:
    """The run's suite plug-in, built with its params; RunError on an unknown suite or bad params."""
    values = dict(config.suite_params)
    if config.suite.endswith(".jsonl"):  # a metadata file, e.g. `stepwise prompts train`'s; per_task unused
        name, values = "geneval", {**values, "data": config.suite}
    else:
        name = config.suite
        if name == "geneval":
            values.setdefault("per_task", config.per_task)
    try:
        cls, params, _ = _plugin("suite", name, values)
    except RunError as err:
        if name != config.suite or name in _suite_names():
            raise
        raise RunError(f"{err} (or a GenEval-format metadata .jsonl file)") from None
    return instantiate("suite", name, cls, params)  # type: ignore[no-any-return]


def _suite_names() -> list[str]:
    from harness import registry

    return registry.suites.names()


def suite_records(suite: Suite, config: RunConfig) -> list[dict[str, Any]]:
    """The suite's records, every one checked for "prompt"; read errors as one RunError line."""
    try:
        records = suite.records()
    except OSError as err:
        where = getattr(err, "filename", None) or config.suite
        raise RunError(f"cannot read suite file {where}: {err.strerror}") from None
    except ValueError as err:  # names the file and line
        raise RunError(str(err)) from None
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise RunError(f"suite {config.suite!r}: record {i} has no \"prompt\" string")
    if not records:
        raise RunError(f"suite {config.suite!r} has no prompts")
    return records


def suite_samples(config: RunConfig) -> list[dict[str, Any]]:
    """The records of the run's suite (its prompts, in order)."""
    return suite_records(load_suite(config), config)


def suite_evaluator(config: RunConfig, suite: Suite | None = None) -> SuiteEvaluator:
    """The evaluator of the run's suite, in the run's context; builds no model."""
    from harness.suites import EvaluatorContext

    suite = suite or load_suite(config)
    device = config.device or (config.evaluator.device if config.evaluator is not None else None)
    try:
        return suite.evaluator(EvaluatorContext(geneval=config.evaluator, batch_size=config.batch_size,
                                                device=device))
    except ValueError as err:
        raise RunError(f"suite {config.suite!r}: {err}") from None


def evaluator_key(config: RunConfig) -> str:
    """The key the run's verdicts are filed under (what a verdict-reading verifier's hash includes)."""
    return suite_evaluator(config).key()


def plan(engine: Engine, run_id: str, prompt_ids: Mapping[int, int], samples: Sequence[dict[str, Any]],
         config: RunConfig, verifiers: Sequence[LoadedVerifier], evaluator: SuiteEvaluator) -> list[PromptWork]:
    """The work left for `prompt_ids` ({suite index: prompt id}), from three store queries."""
    from sqlalchemy.orm import Session

    from harness.store import missing_evaluations, missing_scores, stored_samples

    work = {pid: PromptWork(index, pid, samples[index]) for index, pid in prompt_ids.items()}
    with Session(engine) as s:
        stored = stored_samples(s, run_id)
        for pid, item in work.items():
            item.generate = [i for i in range(config.pool) if i not in stored.get(pid, set())]
        for cand in missing_evaluations(s, run_id, evaluator.name, evaluator.key(), max_samples=config.pool):
            if cand.prompt_id in work:
                work[cand.prompt_id].evaluate.append(cand)
        for v in verifiers:
            for cand in missing_scores(s, run_id, v.name, v.settings_hash, max_samples=config.pool):
                if cand.prompt_id in work:
                    work[cand.prompt_id].score.setdefault(v.name, []).append(cand)
        s.expunge_all()  # the candidates are read after the session closes
    return [w for w in sorted(work.values(), key=lambda w: w.index) if not w.empty()]


# ---------------------------------------------------------------------------------------------
# one prompt


@dataclass
class Item:
    """A candidate the runner works on: stored (candidate_id set) or new."""

    sample_index: int
    path: str
    sha256: str
    previews: list[str]
    candidate_id: int | None = None
    seed: int | None = None
    cost: dict[str, Any] = field(default_factory=dict)


def _generate(generator: Generator, work: PromptWork, config: RunConfig, images_dir: Path,
              previews: bool) -> list[Item]:
    from harness.plugins import GenerationRequest

    seeds = tuple(candidate_seed(config.seed, work.index, i) for i in work.generate)
    request = GenerationRequest(work.metadata["prompt"], seeds, dict(work.metadata), previews=previews,
                                prompt_index=work.index, sample_indices=tuple(work.generate))
    started = time.perf_counter()
    (result,) = generator.generate([request])
    seconds = time.perf_counter() - started
    if len(result.images) != len(seeds):
        raise RunError(f"generator returned {len(result.images)} images for {len(seeds)} seeds "
                       f"(prompt {work.index:05d})")
    share = len(seeds)
    cost = {"forward_passes": result.cost.forward_passes / share, "tokens": result.cost.tokens / share,
            "seconds": (result.cost.seconds or seconds) / share}
    items = []
    for k, (sample, seed, image) in enumerate(zip(work.generate, seeds, result.images, strict=True)):
        path, digest = save_png(image, images_dir)
        steps = result.previews[k] if previews and k < len(result.previews) else []
        preview_paths = [str(save_png(p, images_dir)[0]) for p in steps]
        items.append(Item(sample, str(path), digest, preview_paths, seed=seed, cost=dict(cost)))
    return items


def _stored_item(cand: Candidate, folder: Path) -> Item:
    """A stored candidate to judge or score again, its (relative) paths resolved against the run folder
    and its image checked against the stored sha256 (RunError naming it when missing or changed)."""
    from harness.store.folders import ImageProblem, resolve_image, resolve_previews

    what = f"prompt {cand.prompt.index:05d} sample {cand.sample_index}" if cand.prompt else f"candidate {cand.id}"
    try:
        image = resolve_image(folder, cand.image_path, cand.image_sha256, what)
        previews = resolve_previews(folder, list(cand.step_previews), what)
    except ImageProblem as err:
        raise RunError(f"{err}; give the run folder that holds it as --out") from None
    return Item(cand.sample_index, str(image), cand.image_sha256, [str(p) for p in previews], cand.id)


def _evaluate(models: Models, spec: EvaluatorSpec, items: list[Item], metadata: dict[str, Any],
              batch_size: int) -> list[tuple[Item, Any, Any]]:
    from harness.geneval.evaluator import judge_batch
    from harness.geneval.folder import decode_image

    out = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        # Decoded from the saved PNG, exactly as `stepwise eval` reads a folder: same pixels, same verdict.
        arrays = [decode_image(Path(item.path)).rgb for item in batch]
        results = judge_batch(models, arrays, [metadata] * len(batch), spec)
        out.extend((item, det, verdict) for item, (det, verdict) in zip(batch, results, strict=True))
    return out


def _judge(evaluator: SuiteEvaluator, items: list[Item], metadata: dict[str, Any],
           batch_size: int) -> list[tuple[Item, Verdict]]:
    """The suite evaluator's verdict of each item, `batch_size` images per call, each checked."""
    from harness.suites import check_verdict

    out = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        verdicts = evaluator.judge([Path(item.path) for item in batch], [metadata] * len(batch))
        if len(verdicts) != len(batch):
            raise RunError(f"evaluator {evaluator.name!r} returned {len(verdicts)} verdicts for {len(batch)} images")
        try:
            out.extend((item, check_verdict(v, f"image {item.path}")) for item, v in zip(batch, verdicts, strict=True))
        except ValueError as err:
            raise RunError(str(err)) from None
    return out


@dataclass(frozen=True)
class Scored:
    """One verifier's judgement of one item, ready to store."""

    item: Item
    score: Any  # harness.plugins.VerifierScore
    cost: dict[str, Any]
    details: dict[str, Any]  # the score's details, checked JSON-able


def _score(verifier: LoadedVerifier, items: list[Item], prompt: str, correct: Mapping[int, bool],
           inputs: Mapping[str, Mapping[int, float]] | None = None) -> list[Scored]:
    """Each item's score and cost; seconds measured here (shared evenly) unless the plug-in reports them.

    correct: GenEval's verdict by sample index (read only when the verifier needs verdicts).
    inputs: {verifier: {sample index: score}} of the verifiers a `reads_scores` verifier combines.
    """
    from harness.store.data import json_details

    images = [_open(item.path) for item in items]
    previews = [[_open(p) for p in item.previews] for item in items] if verifier.needs_previews else None
    extra: dict[str, Any] = {}
    if verifier.needs_verdicts:
        extra["verdicts"] = [correct[item.sample_index] for item in items]
    if verifier.reads:
        assert inputs is not None
        extra["scores"] = {name: [inputs[name][item.sample_index] for item in items] for name in verifier.reads}
    started = time.perf_counter()
    scores = verifier.instance.score(prompt, images, previews, **extra)
    measured = (time.perf_counter() - started) / max(len(items), 1)
    if len(scores) != len(items):
        raise RunError(f"verifier {verifier.name!r} returned {len(scores)} scores for {len(items)} images")
    out = []
    for item, sc in zip(items, scores, strict=True):
        try:  # checked here, before the prompt's transaction: a bad plug-in stores nothing for this prompt
            details = json_details(verifier.name, sc.details, f"image {item.path}")
        except ValueError as err:
            raise RunError(str(err)) from None
        out.append(Scored(item, sc, _cost_dict(sc.cost, measured), details))
    return out


def _cost_dict(cost: Any, measured_seconds: float) -> dict[str, Any]:
    return {"forward_passes": cost.forward_passes, "tokens": cost.tokens,
            "seconds": cost.seconds or measured_seconds}


def process_prompt(engine: Engine, run_id: str, work: PromptWork, ctx: RunContext, bars: Bars) -> tuple[int, int, int]:
    """Generate, evaluate and score what `work` lacks, then write it all in one transaction.

    Returns (generated, evaluated, scored) counts.
    """
    from sqlalchemy.orm import Session

    from harness.store import (
        NewCandidate,
        NewEvaluation,
        NewScore,
        add_candidates,
        add_evaluations,
        add_verifier_scores,
    )
    from harness.store.data import replace_verifier_scores
    from harness.store.folders import relative_image_path

    new = _generate(ctx.generator(), work, ctx.config, ctx.images_dir, ctx.wants_previews) if work.generate else []
    bars.update("generate", len(new))
    to_eval = [_stored_item(c, ctx.config.out) for c in work.evaluate] + new
    verdicts = _judge(ctx.evaluator, to_eval, work.metadata, ctx.config.batch_size) if to_eval else []
    bars.update("evaluate", len(verdicts))
    # Evaluated before scoring: verifiers that need the suite's verdict (the oracle) read it from here.
    correct = {item.sample_index: bool(v.correct) for item, v in verdicts}
    correct.update(_stored_verdicts(engine, work, ctx, known=correct))
    scored: dict[str, list[Scored]] = {}
    for v in sorted(ctx.verifiers, key=lambda v: bool(v.reads)):  # combining verifiers after their inputs
        todo = [_stored_item(c, ctx.config.out) for c in work.score.get(v.name, [])] + new
        if todo and v.reads:
            todo, inputs = _whole_prompt(engine, run_id, work, ctx, v, new, scored)
            scored[v.name] = _score(v, todo, work.metadata["prompt"], correct, inputs)
        elif todo:
            scored[v.name] = _score(v, todo, work.metadata["prompt"], correct)
        bars.update("score", len(todo))

    evaluator = ctx.evaluator
    with Session(engine) as s, s.begin():
        out = ctx.config.out  # the store keeps paths relative to the run folder: it may move
        ids = add_candidates(s, run_id, work.prompt_id, [
            NewCandidate(i.sample_index, relative_image_path(i.path, out), i.sha256,
                         [relative_image_path(p, out) for p in i.previews], i.cost, i.seed) for i in new])

        def cid(item: Item) -> int:
            return item.candidate_id if item.candidate_id is not None else ids[item.sample_index]

        add_evaluations(s, evaluator.name, evaluator.key(), [
            NewEvaluation(cid(i), bool(v.correct), v.reason, _verdict_details(v, i), _detections(v, i), float(v.score))
            for i, v in verdicts])
        for v in ctx.verifiers:
            write = replace_verifier_scores if v.reads else add_verifier_scores
            write(s, v.name, v.settings_hash, [
                NewScore(cid(x.item), x.score.score, tuple(x.score.step_scores), x.cost, x.details)
                for x in scored.get(v.name, [])])
    return len(new), len(verdicts), sum(len(x) for x in scored.values())


def _whole_prompt(engine: Engine, run_id: str, work: PromptWork, ctx: RunContext, verifier: LoadedVerifier,
                  new: list[Item], scored: Mapping[str, list[Scored]]
                  ) -> tuple[list[Item], dict[str, dict[int, float]]]:
    """Every candidate of the prompt (stored, below --pool, then new) and {input verifier: {sample index:
    score}}: just computed where `scored` has it, else stored. For a verifier that reads other
    verifiers' scores: its scores depend on the prompt's whole pool, so all are made again."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from harness.store.models import Candidate
    from harness.store.models import VerifierScore as StoredScore

    hashes = {v.name: v.settings_hash for v in ctx.verifiers}
    with Session(engine) as s:
        stored = list(s.scalars(select(Candidate).where(
            Candidate.run_id == run_id, Candidate.prompt_id == work.prompt_id,
            Candidate.sample_index < ctx.config.pool).order_by(Candidate.sample_index)))
        by_id = {c.id: c.sample_index for c in stored}
        inputs: dict[str, dict[int, float]] = {name: {} for name in verifier.reads}
        for name in verifier.reads:
            rows = s.execute(select(StoredScore.candidate_id, StoredScore.score).where(
                StoredScore.candidate_id.in_(list(by_id)), StoredScore.verifier == name,
                StoredScore.settings_hash == hashes[name]))
            inputs[name].update({by_id[cid]: float(score) for cid, score in rows})
        items = [_stored_item(c, ctx.config.out) for c in stored]
    for name in verifier.reads:
        inputs[name].update({x.item.sample_index: float(x.score.score) for x in scored.get(name, [])})
    items += new
    lacking = sorted({item.sample_index for item in items for name in verifier.reads
                      if item.sample_index not in inputs[name]})
    if lacking:  # its inputs are verifiers of this run, scored before it: a bug, not the user's
        raise RunError(f"prompt {work.index:05d}: verifier {verifier.name!r} lacks scores of "
                       f"{', '.join(verifier.reads)} for sample(s) {lacking}")
    return items, inputs


def _stored_verdicts(engine: Engine, work: PromptWork, ctx: RunContext, known: Mapping[int, bool]) -> dict[int, bool]:
    """{sample index: correct} from the store, for the stored candidates that a verdict-reading
    verifier will score and that were not judged just now (`known`); no query when there are none."""
    from sqlalchemy.orm import Session

    from harness.store.data import stored_verdicts

    wanted = {c.sample_index: c.id for v in ctx.verifiers if v.needs_verdicts
              for c in work.score.get(v.name, []) if c.sample_index not in known}
    if not wanted:
        return {}
    evaluator = ctx.evaluator
    with Session(engine) as s:
        found = stored_verdicts(s, list(wanted.values()), evaluator.name, evaluator.key())
    lacking = sorted(sample for sample, cid in wanted.items() if cid not in found)
    if lacking:  # plan() puts every candidate without a verdict in `evaluate`: this is a bug, not the user's
        raise RunError(f"prompt {work.index:05d}: no stored verdict for sample(s) {lacking} by {evaluator.name} "
                       f"({evaluator.key()[:12]}…)")
    return {sample: found[cid] for sample, cid in wanted.items()}


# ---------------------------------------------------------------------------------------------
# the whole run


class Bars:
    """One tqdm bar per stage (hidden when stderr is not a terminal)."""

    def __init__(self, totals: Mapping[str, int]) -> None:
        from tqdm import tqdm

        self._bars = {name: tqdm(total=total, desc=name, unit="img", disable=None, leave=True)
                      for name, total in totals.items()}

    def update(self, stage: str, n: int) -> None:
        if n:
            self._bars[stage].update(n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


@dataclass
class RunContext:
    config: RunConfig
    generator_cls: Any
    generator_params: Any
    verifiers: list[LoadedVerifier]
    evaluator: SuiteEvaluator
    images_dir: Path
    _generator: Any = None

    @property
    def wants_previews(self) -> bool:
        return any(v.needs_previews for v in self.verifiers)

    def generator(self) -> Generator:
        # Built on first use: a run with nothing left to generate never loads the generator's weights.
        if self._generator is None:
            self._generator = instantiate("generator", self.config.generator, self.generator_cls,
                                          self.generator_params)
        return self._generator  # type: ignore[no-any-return]


def _verdict_details(verdict: Verdict, item: Item) -> dict[str, Any]:
    from harness.store.data import json_details

    try:
        return json_details("the suite evaluator", verdict.details, f"image {item.path}")
    except ValueError as err:
        raise RunError(str(err)) from None


def _detections(verdict: Verdict, item: Item) -> dict[str, Any] | None:
    return None if verdict.detections is None else _verdict_details(
        dataclasses.replace(verdict, details=verdict.detections), item)


def run_spec(config: RunConfig, samples: list[dict[str, Any]], provenance: Mapping[str, str],
             params: Any) -> RunSpec:
    """What names the run of `config` (its id is the spec's hash): suite, generator, params, seed."""
    from harness.plugins import canonical_json
    from harness.store import RunSpec, content_hash

    return RunSpec(config.suite, content_hash(samples), provenance["name"], provenance["package"],
                   provenance["version"], json.loads(canonical_json(params)), config.seed)


def planned_run_id(config: RunConfig) -> str:
    """The id `run(config)` will store its work under, computed without touching the store or a model."""
    _, params, provenance = _plugin("generator", config.generator, config.params)
    return run_spec(config, suite_samples(config), provenance, params).run_id


def register_run(engine: Engine, config: RunConfig) -> str:
    """Store the run's suite, prompts and run row as `run(config)` does (idempotent), before any
    candidate exists, so that rows about the run (a prepared checkpoint's link) can precede its work."""
    _, params, provenance = _plugin("generator", config.generator, config.params)
    suite = load_suite(config)
    run_id, _ = prepare(engine, config, suite_records(suite, config), provenance, params, suite)
    return run_id


def prepare(engine: Engine, config: RunConfig, samples: list[dict[str, Any]],
            provenance: Mapping[str, str], params: Any, suite: Suite | None = None) -> tuple[str, dict[int, int]]:
    """Store the suite, its prompts and the run (idempotent); (run id, {suite index: prompt id}).

    A prompt's stored tag is its group in the suite (`suite.group(record)`; GenEval: the task tag)."""
    from sqlalchemy.orm import Session

    from harness import __version__
    from harness.store import NewPrompt, add_prompts, get_or_create_run, get_or_create_suite
    from harness.store.folders import record_run_folder

    spec = run_spec(config, samples, provenance, params)
    with Session(engine) as s, s.begin():
        stored = get_or_create_suite(s, config.suite, spec.suite_hash)
        suite = suite or load_suite(config)
        new = [NewPrompt(i, str(suite.group(x)), x["prompt"], x) for i, x in enumerate(samples)]
        ids = add_prompts(s, stored.id, new)
        get_or_create_run(s, spec, __version__)
        record_run_folder(s, spec.run_id, config.out)  # --out is where this run's images are now
    return spec.run_id, dict(enumerate(ids))


def selected(config: RunConfig, n_prompts: int, shard: Shard) -> list[int]:
    wanted = range(n_prompts) if config.prompts is None else sorted(set(config.prompts))
    bad = [i for i in wanted if not 0 <= i < n_prompts]
    if bad:
        raise RunError(f"prompt index {bad[0]} is outside the suite (0..{n_prompts - 1})")
    return [i for i in wanted if shard.owns(i)]


def run(config: RunConfig, *, shard: Shard | None = None, engine: Engine | None = None,
        log: Any = None) -> RunSummary:
    """Fill, evaluate and score this shard's part of the run; returns what was done."""
    from harness.store import StoreError, open_store

    if config.pool < 1:
        raise RunError(f"--pool must be >= 1, got {config.pool}")
    shard = shard or Shard.from_env()
    gen_cls, gen_params, provenance = _plugin("generator", config.generator, config.params)
    suite = load_suite(config)
    evaluator = suite_evaluator(config, suite)
    verifiers = load_verifiers(config.verifiers, config.verifier_params, evaluator.key())
    samples = suite_records(suite, config)
    indices = selected(config, len(samples), shard)
    own_engine = engine is None
    if engine is None:
        try:
            engine = open_store(config.db)
        except StoreError as err:
            raise RunError(str(err)) from None
    try:
        run_id, prompt_ids = prepare(engine, config, samples, provenance, gen_params, suite)
        mine = {i: prompt_ids[i] for i in indices}
        work = plan(engine, run_id, mine, samples, config, verifiers, evaluator)
        images_dir = config.out / "images"
        images_dir.mkdir(parents=True, exist_ok=True)
        ctx = RunContext(config, gen_cls, gen_params, verifiers, evaluator, images_dir)
        summary = RunSummary(run_id, prompts=len(mine), written=len(work))
        bars = Bars(_totals(work, verifiers))
        try:
            for item in work:
                g, e, s = process_prompt(engine, run_id, item, ctx, bars)
                summary.generated += g
                summary.evaluated += e
                summary.scored += s
        finally:
            bars.close()
        return summary
    finally:
        if own_engine:
            engine.dispose()


def _totals(work: Iterable[PromptWork], verifiers: Sequence[LoadedVerifier]) -> dict[str, int]:
    work = list(work)
    generate = sum(len(w.generate) for w in work)
    evaluate = sum(len(w.evaluate) + len(w.generate) for w in work)
    score = sum(len(w.score.get(v.name, [])) + len(w.generate) for w in work for v in verifiers)
    return {"generate": generate, "evaluate": evaluate, "score": score}
