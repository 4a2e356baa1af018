"""The paper's iterative DPO as one resumable loop: run, curate, train, and again from the new model.

Round r (1..rounds), all under WORKDIR:

1. ``stepwise run`` the current model (round 1: the given ``--param model``; later: the previous
   round's checkpoint) on the training suite with the pool, store ``WORKDIR/store.db``, images
   under ``WORKDIR/round-r/run``;
2. ``stepwise curate --parm skip`` its candidates into ``WORKDIR/round-r/data`` (``dpo.jsonl``:
   per prompt one "yes" and one "no" image; prompts whose images share a label are dropped);
3. no pairs at all: stop with `IterateError` (nothing to learn from; recorded in iterate.json);
4. ``stepwise align dpo`` from the current model, with the current model as the frozen
   reference (the paper's second round starts from, and is anchored to, the round-1 model),
   into ``WORKDIR/round-r/ckpt``.

``WORKDIR/iterate.json`` is rewritten (atomically) after every round::

    {"format": "stepwise-align-iterate", "format_version": 1,
     "settings": {...what decides the result; compared on re-runs...},
     "rounds": [{"round": 1, "model": "<the model the round started from>", "run_id": "...",
                 "run": {"generated": 8, "evaluated": 8}, "data": ".../round-1/data",
                 "pairs": 3, "pairs_sha256": "<sha256 of dpo.jsonl>", "checkpoint": ".../round-1/ckpt",
                 "metrics": {"geneval_accuracy": 0.5, "yes": 4, "no": 4, "prompts": 4,
                             "dropped_all_yes": 0, "dropped_all_no": 1, "dpo": {...the checkpoint's metrics...}}}],
     "final_checkpoint": ".../round-1/ckpt", "stopped": null}

Re-running skips the rounds listed there (their checkpoints must still be finished DPO
checkpoints); a round cut short goes on where it stopped: the run continues its stored pool,
curation is deterministic, and training resumes its checkpoint. ``--rounds`` may grow between
invocations; every other setting must stay the same.

Reward guidance (``--reward-verifier`` ...: online DPO on policy samples judged by a verifier, see
harness.alignment.guidance) applies to every round's DPO; its settings go into ``settings.dpo``
(only when a verifier is given, so loops started before guidance existed re-run as they were) and
are checked, with the verifier's name and params, before round 1 runs anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "stepwise-align-iterate"
FORMAT_VERSION = 1
STATE_NAME = "iterate.json"
STORE_NAME = "store.db"


class IterateError(RuntimeError):
    """The loop cannot start or go on, with a message meant for the user."""


@dataclass(frozen=True)
class IterateConfig:
    generator: str  # "showo" or "janus"
    params: Mapping[str, str]  # the generator's --param values (round 1's model)
    suite: str  # a training metadata file (`stepwise prompts train`)
    rounds: int
    pool: int
    workdir: Path
    evaluator: Any  # harness.geneval.evaluator.EvaluatorSpec
    seed: int = 0  # the run seed (candidate seeds), the pair draws and the DPO masks
    eval_batch_size: int = 8  # images per detector call
    # DPOConfig fields: beta, lr, batch_size, epochs, ...; with reward guidance also reward_verifier,
    # reward_params, reward_coef, reward_samples and reward_prompts
    dpo: Mapping[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """What decides the rounds' results (recorded; compared when the loop is run again)."""
        from harness.submissions.build import evaluator_settings

        dpo = {key: _plain(value) for key, value in sorted(self.dpo.items())}
        return {"generator": self.generator, "params": dict(sorted(self.params.items())), "suite": self.suite,
                "pool": self.pool, "seed": self.seed, "evaluator": evaluator_settings(self.evaluator),
                "evaluator_key": self.evaluator.key(), "dpo": dpo}

    def dpo_fields(self) -> dict[str, Any]:
        """`dpo` as DPOConfig takes it (reward_prompts a Path)."""
        fields = dict(self.dpo)
        if fields.get("reward_prompts") is not None:
            fields["reward_prompts"] = Path(fields["reward_prompts"])
        return fields


def _plain(value: Any) -> Any:
    """JSON's form of a DPO setting: paths as text, mappings as sorted dicts."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    return value


def round_dir(workdir: Path, r: int) -> Path:
    return workdir / f"round-{r}"


def read_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise IterateError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise IterateError(f"{path}: not a {FORMAT} file")
    return state


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Written whole and swapped in: a crash leaves the previous state, never half a file."""
    from harness.jsonl import write_atomic

    write_atomic(path, json.dumps(state, indent=2, ensure_ascii=False) + "\n")


def _check_done(entry: Mapping[str, Any]) -> None:
    from harness.alignment.train import AlignmentError, read_manifest

    ckpt = Path(entry["checkpoint"])
    try:
        manifest = read_manifest(ckpt)
    except AlignmentError as err:
        raise IterateError(f"round {entry['round']} is recorded as done, but {err}") from None
    if manifest is None or not manifest.get("finished"):
        raise IterateError(f"round {entry['round']} is recorded as done, but {ckpt} holds no finished DPO "
                           "checkpoint; remove the round from iterate.json (or the whole WORKDIR) to redo it")


def iterate(config: IterateConfig, *, log: Any = None) -> dict[str, Any]:
    """Run the rounds iterate.json lacks; returns the final state. IterateError when a round has no pairs."""
    say = log or (lambda message: None)
    if config.rounds < 1 or config.pool < 1:
        raise IterateError(f"--rounds and --pool must be >= 1 (got {config.rounds}, {config.pool})")
    if "model" not in config.params:
        raise IterateError("--param model=... is required: the model round 1 starts from")
    _check_dpo(config)
    workdir = config.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / STATE_NAME
    settings = json.loads(json.dumps(config.settings()))  # as it reads back
    state = read_state(path)
    if state is None:
        state = {"format": FORMAT, "format_version": FORMAT_VERSION, "settings": settings, "rounds": [],
                 "final_checkpoint": None, "stopped": None}
    elif state.get("settings") != settings:
        changed = sorted(k for k in settings.keys() | state.get("settings", {}).keys()
                         if settings.get(k) != state.get("settings", {}).get(k))
        raise IterateError(f"{workdir} was iterated with other settings ({', '.join(changed)}); use the same ones "
                           "or another -o")
    done = list(state["rounds"])
    for entry in done:
        _check_done(entry)
    model = done[-1]["checkpoint"] if done else config.params["model"]
    for r in range(len(done) + 1, config.rounds + 1):
        if done:
            say(f"rounds 1..{len(done)} done; round {r} starts from {model}")
        entry = _round(config, workdir, r, model, say)
        if isinstance(entry, str):
            write_state(path, {**state, "rounds": done, "stopped": entry})
            raise IterateError(entry)
        done.append(entry)
        model = entry["checkpoint"]
        state = {**state, "rounds": done, "final_checkpoint": model, "stopped": None}
        write_state(path, state)
    if len(done) > config.rounds:
        say(f"{len(done)} rounds are done already (more than --rounds {config.rounds})")
    state = {**state, "rounds": done, "final_checkpoint": done[-1]["checkpoint"] if done else None}
    return state


def _check_dpo(config: IterateConfig) -> None:
    """The DPO settings (reward guidance's verifier and prompts included) checked before anything runs."""
    from harness.alignment.guidance import check_verifier, read_reward_prompts
    from harness.alignment.train import AlignmentError, DPOConfig, check_config
    from harness.runner import RunError

    try:
        dpo = DPOConfig(generator=config.generator, pairs=Path("dpo.jsonl"), out=config.workdir,
                        params=config.params, seed=config.seed, **config.dpo_fields())
        check_config(dpo)
        if dpo.reward_verifier is not None:
            check_verifier(dpo.reward_verifier, dpo.reward_params)
            if dpo.reward_prompts is not None:
                read_reward_prompts(dpo.reward_prompts)
    except (AlignmentError, RunError) as err:
        raise IterateError(str(err)) from None


def _round(config: IterateConfig, workdir: Path, r: int, model: str, say: Any) -> dict[str, Any] | str:
    """One round's record, or the message why it stopped (no pairs)."""
    from sqlalchemy.orm import Session

    from harness.alignment.pairs import PairsError
    from harness.alignment.train import AlignmentError, DPOConfig, train_dpo
    from harness.curation import DPO_FILE, CurationError, CurationOptions, curate, read_pool
    from harness.runner import RunConfig, RunError, Shard, run
    from harness.store import StoreError, open_store
    from harness.submissions.build import evaluator_settings

    folder = round_dir(workdir, r)
    params = {**config.params, "model": str(model)}
    db = f"sqlite:///{workdir / STORE_NAME}"
    run_config = RunConfig(generator=config.generator, evaluator=config.evaluator, pool=config.pool, params=params,
                           suite=config.suite, seed=config.seed, db=db, out=folder / "run",
                           batch_size=config.eval_batch_size)
    say(f"round {r}: run {config.generator} ({model}) on {config.suite}, pool {config.pool}")
    try:
        summary = run(run_config, shard=Shard())  # one process: the whole suite
    except RunError as err:
        raise IterateError(f"round {r}: {err}") from None

    try:
        engine = open_store(db, upgrade_schema=False)
    except StoreError as err:
        raise IterateError(str(err)) from None
    try:
        with Session(engine) as s:
            pool = read_pool(s, summary.run_id, config.evaluator, max_samples=config.pool, run_dir=run_config.out)
    except CurationError as err:
        raise IterateError(f"round {r}: {err}") from None
    finally:
        engine.dispose()
    data = folder / "data"
    try:  # deterministic: a re-run after a crash writes the same bytes
        curated = curate(pool, data, CurationOptions(seed=config.seed, max_samples=config.pool), judge=None,
                         evaluator_settings=evaluator_settings(config.evaluator), force=True)
    except CurationError as err:
        raise IterateError(f"round {r}: {err}") from None
    counts = curated["counts"]
    metrics = {"geneval_accuracy": counts["yes"] / max(counts["candidates"], 1), "yes": counts["yes"],
               "no": counts["no"], "prompts": counts["prompts"], "dropped_all_yes": counts["dpo_dropped_all_yes"],
               "dropped_all_no": counts["dpo_dropped_all_no"]}
    say(f"round {r}: run {summary.run_id[:12]}…: {counts['yes']} of {counts['candidates']} images correct; "
        f"{counts['dpo']} DPO pairs")
    if counts["dpo"] == 0:
        message = (f"round {r}: no DPO pairs: every one of the {counts['prompts']} prompts got a single label over "
                   f"its pool of {config.pool} ({counts['dpo_dropped_all_yes']} all yes, "
                   f"{counts['dpo_dropped_all_no']} all no), so there is nothing to train on; a larger --pool or "
                   f"more prompts may help (run {summary.run_id}, data {data})")
        return message

    ckpt = folder / "ckpt"
    dpo_config = DPOConfig(generator=config.generator, pairs=data / DPO_FILE, out=ckpt, params=params,
                           seed=config.seed, resume=True, **config.dpo_fields())
    say(f"round {r}: DPO from {model} (also the frozen reference) into {ckpt}")
    try:
        manifest = train_dpo(dpo_config)
    except (AlignmentError, PairsError, RunError) as err:
        raise IterateError(f"round {r}: {err}") from None
    if not manifest.get("finished"):
        raise IterateError(f"round {r}: training stopped before the end ({ckpt}); run again to continue")
    metrics["dpo"] = manifest.get("metrics")
    return {"round": r, "model": str(model), "run_id": summary.run_id,
            "run": {"generated": summary.generated, "evaluated": summary.evaluated}, "data": str(data),
            "pairs": counts["dpo"], "pairs_sha256": curated["files"][DPO_FILE], "checkpoint": str(ckpt),
            "metrics": metrics}
