"""Alignment strategies: a prepare stage trains the generator with DPO, then a built-in selection rule.

    dpo            DPO from the run's generator on a pairs file (`stepwise curate`'s dpo.jsonl),
                   as `stepwise align dpo` trains it
    iterative-dpo  the paper's iterative DPO on a training suite (`stepwise prompts train`), as
                   `stepwise align iterate` runs it: run, curate, train, and again from the new model

`stepwise run --strategy dpo --strategy-param pairs=data/dpo.jsonl ...` (or a spec's `strategy` and
`[strategy_params]`) trains the checkpoint, or finds it finished, generates the run's pool with it
and records the link in the store (`harness.preparation`). Training resumes where it stopped; a
finished checkpoint with the same settings is used as it is, checked without loading a model.

Selection, in `stepwise curve --run RUN_ID --strategy dpo`: with `verifier` unset, the generator
alone (the `baseline` rule: every candidate ties); with `verifier=orm`, best-of-n by that verifier
(the `best-of-n` rule; `verifier=parm` is PARM's rule, as the `parm` strategy). The paper's "2nd
integration" (verification after DPO) is `verifier` set and the run scored by that verifier; reward
guidance in training (the "1st integration") is `reward_verifier` with its `reward_params`
(`harness.alignment.guidance`); the "3rd" is both.

`verifier` only changes selection and `rounds` only how far the work folder's rounds go, so both are
left out of the work folder's name (`work_folder_ignores`): `dpo` with and without a verifier share
one checkpoint, and so one run. Nothing here imports torch: `stepwise strategies list` and the run
specs' checks build the params only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.plugins import VerifierScore, param
from harness.preparation import Preparation, PrepareContext, PrepareError
from strategies.builtin import BaselineStrategy, BestOfNStrategy, ParmStrategy

if TYPE_CHECKING:
    pass

__all__ = ["DPOStrategy", "IterativeDPOStrategy"]

#: the reward-guidance settings, passed to the DPO trainer only when `reward_verifier` is set
REWARD_FIELDS = ("reward_verifier", "reward_params", "reward_coef", "reward_samples", "reward_prompts")


@dataclass(frozen=True, kw_only=True)
class _Settings:
    """What `dpo` and `iterative-dpo` share: the DPO hyper-parameters, reward guidance and selection."""

    beta: float = param(0.1, help="DPO's beta (the KL weight).")
    lr: float = param(1e-5, help="AdamW learning rate.")
    batch_size: int = param(10, help="Pairs per optimizer step.")
    epochs: int = param(1, help="Passes over the pairs.")
    reward_verifier: str | None = param(None, help="Reward guidance in training: this verifier plug-in (e.g. orm); "
                                                   "none: no guidance.")
    # RUF009 (here and below): tuples and paths are immutable, which ruff cannot tell from the annotation.
    reward_params: tuple[str, ...] = param((), help="The reward verifier's parameters as "
                                                    "KEY=VALUE items, e.g. model=ckpts/orm_ft-hf,layout=pad.")
    reward_coef: float = param(0.1, help="Weight of the online DPO loss (with reward_verifier; the official "
                                                 "config's reward_coef).")
    reward_samples: int = param(2, help="Policy samples per pair's prompt that the reward verifier judges "
                                                   "(with reward_verifier).")
    reward_prompts: Path | None = param(None, help="Prompts to sample for the reward term "  # noqa: RUF009
                                                   "(with reward_verifier); none: each pair's own prompt.")
    verifier: str | None = param(None, help="Selection: none, the generator alone (as `baseline`); parm, PARM's "
                                            "rule (as `parm`); another verifier, best-of-n by its score.")


def selection_rule(verifier: str | None) -> Any:
    """The built-in rule `verifier` names: none, the `baseline`'s; `parm`, PARM's (`parm` strategy); any other,
    `best-of-n` by that verifier's score."""
    if verifier is None:
        return BaselineStrategy(BaselineStrategy.Params())
    if verifier == "parm":
        return ParmStrategy(ParmStrategy.Params())
    return BestOfNStrategy(BestOfNStrategy.Params(verifier=verifier))


class _AlignmentStrategy:
    """Selection by a built-in rule, as `verifier` says (`selection_rule`); subclasses add `prepare`."""

    work_folder_ignores: ClassVar[tuple[str, ...]] = ("verifier",)

    def __init__(self, params: Any) -> None:
        self.params = params
        self._rule = selection_rule(params.verifier)
        self.verifiers: tuple[str, ...] = tuple(self._rule.verifiers)

    def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
        return list(self._rule.select_key(scores))


def _reward_settings(params: _Settings, name: str, *, as_text: bool = False) -> dict[str, Any]:
    """The reward-guidance fields for DPOConfig: none unless `reward_verifier` is set.

    as_text: reward_prompts as a string (iterate's settings are JSON)."""
    from harness.alignment.train import DPOConfig

    defaults = {f.name: f.default for f in dataclasses.fields(_Settings)}
    if params.reward_verifier is None:
        stray = [key for key in REWARD_FIELDS[1:] if getattr(params, key) != defaults[key]]
        if stray:
            raise PrepareError(f"strategy {name!r}: {', '.join(stray)} apply only with reward_verifier set")
        return {}
    if "reward_verifier" not in {f.name for f in dataclasses.fields(DPOConfig)}:
        raise PrepareError(f"strategy {name!r}: reward_verifier={params.reward_verifier!r}, but this stepwise's DPO "
                           "trainer has no reward guidance")
    values: dict[str, str] = {}
    for item in params.reward_params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PrepareError(f"strategy {name!r}: reward_params item {item!r} is not KEY=VALUE")
        values[key.strip()] = value
    prompts: Any = params.reward_prompts
    if prompts is not None and as_text:
        prompts = str(prompts)
    return {"reward_verifier": params.reward_verifier, "reward_params": values, "reward_coef": params.reward_coef,
            "reward_samples": params.reward_samples, "reward_prompts": prompts}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


@contextmanager
def _user_errors(name: str, where: str) -> Iterator[None]:
    """Training's errors as one PrepareError line naming the strategy and its folder."""
    from harness.alignment.iterate import IterateError
    from harness.alignment.pairs import PairsError
    from harness.alignment.train import AlignmentError
    from harness.runner import RunError
    from harness.weights import MissingWeightsError

    try:
        yield
    except (AlignmentError, PairsError, IterateError, RunError, MissingWeightsError) as err:
        raise PrepareError(f"strategy {name!r} ({where}): {_one_line(err)}") from None


class DPOStrategy(_AlignmentStrategy):
    """DPO from the run's generator on a pairs file, then the generator alone or best-of-n."""

    description: ClassVar[str] = ("DPO: trains the generator on preference pairs before the run (prepare stage), "
                                  "then the generator alone or best-of-n with `verifier`.")

    @dataclass(frozen=True, kw_only=True)
    class Params(_Settings):
        pairs: Path = param(help="DPO pairs file (`stepwise curate`'s dpo.jsonl).")  # noqa: RUF009
        out: Path | None = param(None, help="Checkpoint folder; none: OUT/prepare/dpo-HASH under "  # noqa: RUF009
                                            "the run's --out.")

    def prepare(self, context: PrepareContext) -> Preparation:
        from harness.alignment.train import DPOConfig, finished_checkpoint, read_manifest, train_dpo

        p = self.params
        out = Path(p.out) if p.out is not None else context.workdir
        name = context.strategy
        reward = _reward_settings(p, name)
        config = DPOConfig(generator=context.generator, pairs=Path(p.pairs), out=out, params=dict(context.params),
                           beta=p.beta, lr=p.lr, batch_size=p.batch_size, epochs=p.epochs, seed=context.seed,
                           resume=True, **reward)
        manifest = finished_checkpoint(config)
        reused = manifest is not None
        where = f"pairs {p.pairs}, checkpoint {out}"
        with _user_errors(name, where):
            if manifest is None:
                before = read_manifest(out) if out.exists() else None
                reused = bool(before and before.get("finished"))
                if not reused and not context.may_train:
                    raise PrepareError(
                        f"strategy {name!r}: {out} holds no finished DPO checkpoint, and training under torchrun "
                        "(WORLD_SIZE > 1) is refused: prepare first in one process (the same `stepwise run` "
                        "without torchrun, e.g. with --prompts 0), then start torchrun")
                context.log(f"{name}: {'checking' if reused else 'training'} {out} from "
                            f"{context.params.get('model', 'the default model')} on {p.pairs}")
                manifest = train_dpo(config)  # resumes; a finished checkpoint is checked, not trained
        if not manifest.get("finished"):
            raise PrepareError(f"strategy {name!r}: training of {out} stopped before the end; run again to continue")
        if reused:
            context.log(f"{name}: using the finished checkpoint {out}")
        return Preparation({**context.params, "model": str(out)}, out, manifest, "dpo", reused)


class IterativeDPOStrategy(_AlignmentStrategy):
    """The paper's iterative DPO on a training suite, then the generator alone or best-of-n."""

    description: ClassVar[str] = ("Iterative DPO: rounds of run, curate and DPO on a training suite before the run "
                                  "(prepare stage), then the generator alone or best-of-n with `verifier`.")
    work_folder_ignores: ClassVar[tuple[str, ...]] = ("verifier", "rounds")

    @dataclass(frozen=True, kw_only=True)
    class Params(_Settings):
        train_suite: Path = param(help="Training prompts: the evaluation_metadata.jsonl of "  # noqa: RUF009
                                       "`stepwise prompts train`.")
        rounds: int = param(2, help="Rounds of run, curate and DPO; the run generates with the last round's model.")
        train_pool: int = param(4, help="Candidates per training prompt in each round.")
        out: Path | None = param(None, help="Work folder (iterate.json, round-R/...); none: "  # noqa: RUF009
                                            "OUT/prepare/iterative-dpo-HASH under the run's --out.")

    def prepare(self, context: PrepareContext) -> Preparation:
        from harness.alignment.iterate import STATE_NAME, IterateConfig, iterate, read_state, round_dir
        from harness.alignment.train import read_manifest

        p = self.params
        name = context.strategy
        if p.rounds < 1 or p.train_pool < 1:
            raise PrepareError(f"strategy {name!r}: rounds and train_pool must be >= 1 "
                               f"(got {p.rounds}, {p.train_pool})")
        workdir = Path(p.out) if p.out is not None else context.workdir
        dpo = {"beta": p.beta, "lr": p.lr, "batch_size": p.batch_size, "epochs": p.epochs,
               **_reward_settings(p, name, as_text=True)}
        config = IterateConfig(generator=context.generator, params=dict(context.params), suite=str(p.train_suite),
                               rounds=p.rounds, pool=p.train_pool, workdir=workdir, evaluator=context.evaluator,
                               seed=context.seed, eval_batch_size=context.eval_batch_size, dpo=dpo)
        checkpoint = round_dir(workdir, p.rounds) / "ckpt"
        with _user_errors(name, f"train suite {p.train_suite}, work folder {workdir}"):
            state = read_state(workdir / STATE_NAME)
            reused = state is not None and len(state.get("rounds") or []) >= p.rounds
            if not reused and not context.may_train:
                raise PrepareError(
                    f"strategy {name!r}: {workdir} has not finished {p.rounds} round(s), and training under torchrun "
                    "(WORLD_SIZE > 1) is refused: prepare first in one process (the same `stepwise run` without "
                    "torchrun, e.g. with --prompts 0), then start torchrun")
            context.log(f"{name}: {'checking' if reused else 'running'} {p.rounds} round(s) in {workdir}")
            state = iterate(config, log=context.log)
            entry = state["rounds"][p.rounds - 1]
            if Path(entry["checkpoint"]).resolve() != checkpoint.resolve():
                raise PrepareError(f"strategy {name!r}: {workdir / STATE_NAME} records round {p.rounds}'s checkpoint "
                                   f"at {entry['checkpoint']}, not {checkpoint}; was the folder moved?")
            manifest = read_manifest(checkpoint)
        if manifest is None or not manifest.get("finished"):
            raise PrepareError(f"strategy {name!r}: {checkpoint} holds no finished DPO checkpoint")
        return Preparation({**context.params, "model": str(checkpoint)}, checkpoint, manifest, "iterative-dpo",
                           reused)
