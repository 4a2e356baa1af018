"""`stepwise align`: preference alignment of image-token generators (the paper's "reinforce")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from harness.commands.options import apply_options, evaluator_from_flags, parse_pairs, stored_evaluator_options

F = TypeVar("F", bound=Callable[..., Any])


def dpo_options(command: F) -> F:
    """DPO's hyper-parameters (the paper's and the official config's defaults), shared by `align dpo`
    and `align iterate`."""
    return apply_options(command, [
        click.option("--beta", type=float, default=0.1, show_default=True, help="DPO's β."),
        click.option("--lr", type=float, default=1e-5, show_default=True, help="Peak learning rate (AdamW)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=10, show_default=True,
                     help="Pairs per micro-batch."),
        click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Passes over the pairs."),
    ])


def reward_options(command: F) -> F:
    """Reward-model guidance flags, shared by `align dpo` and `align iterate`."""
    options = [
        click.option("--reward-verifier", default=None, metavar="NAME",
                     help="Reward guidance (the paper's sec. 2.4): online DPO on policy samples judged by this "
                          "verifier plug-in (orm, parm, clipscore, ...), added to the DPO loss; the official "
                          "code's term carries no gradient. Off by default."),
        click.option("--reward-param", "reward_params", multiple=True, metavar="KEY=VALUE",
                     help="Parameter of the --reward-verifier, as for `stepwise run --verifier-param`. Repeatable."),
        click.option("--reward-coef", type=float, default=0.1, show_default=True,
                     help="Weight of the online DPO loss (the official config's reward_coef)."),
        click.option("--reward-samples", type=int, default=2, show_default=True,
                     help="Policy samples per prompt and micro-batch; the verifier's best and worst make the "
                          "online pair."),
        click.option("--reward-prompts", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Prompts to sample for guidance: a metadata file (`stepwise prompts train`); pair i "
                          "samples prompt i mod their count. Default: the pairs' own prompts."),
    ]
    return apply_options(command, options)


def reward_settings(reward_verifier: str | None, reward_params: tuple[str, ...], reward_coef: float,
                    reward_samples: int, reward_prompts: Path | None) -> dict[str, Any]:
    """The DPOConfig fields of the reward flags."""
    return {"reward_verifier": reward_verifier, "reward_params": parse_pairs(reward_params, "--reward-param"),
            "reward_coef": reward_coef, "reward_samples": reward_samples, "reward_prompts": reward_prompts}


@click.group()
def align() -> None:
    """Align a generator to preference pairs; the result is a checkpoint the generator loads."""


@align.command("dpo")
@click.option("--generator", required=True, type=click.Choice(["showo", "janus"]),
              help="The generator to train (its model is the policy's start and the frozen reference).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Generator parameter, as for `stepwise generate` (model, vq_model, llm, resolution, device). "
                   "Repeatable.")
@click.option("--pairs", "pairs_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="DPO pairs (JSONL: prompt, chosen, rejected, chosen_sha256, rejected_sha256), e.g. "
                   "`stepwise curate`'s dpo.jsonl.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoint folder to write (the generator's own layout; `--param model=OUT` loads it).")
@dpo_options
@click.option("--grad-accumulation", type=click.IntRange(min=1), default=1, show_default=True,
              help="Micro-batches per optimizer step.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds each pair's token masks and prompt dropout (and the shuffle).")
@click.option("--weight-decay", type=float, default=0.01, show_default=True, help="AdamW weight decay.")
@click.option("--warmup-ratio", type=float, default=0.1, show_default=True,
              help="Share of the optimizer steps spent warming the learning rate up linearly.")
@click.option("--scheduler", type=click.Choice(["cosine", "linear", "constant", "constant_with_warmup"]),
              default="cosine", show_default=True, help="Learning-rate decay after warmup (transformers' schedules).")
@click.option("--max-grad-norm", type=float, default=None, help="Clip gradients to this norm [off, as official].")
@click.option("--cond-dropout", type=float, default=0.1, show_default=True,
              help="Probability that an image is scored under the empty prompt (Show-o's training dropout).")
@click.option("--min-masking-rate", type=float, default=0.0, show_default=True,
              help="Show-o: lower bound of the masked share of image tokens.")
@click.option("--shared-mask/--independent-masks", default=False, show_default=True,
              help="Show-o: one mask (and dropout draw) for a pair's chosen and rejected image; the official "
                   "code draws them independently.")
@click.option("--shuffle/--no-shuffle", default=False, show_default=True,
              help="Shuffle the pairs each epoch (seeded); the official loader keeps file order.")
@click.option("--mixed-precision", type=click.Choice(["no", "bf16"]), default="no", show_default=True,
              help="Compute under bfloat16 autocast (weights stay float32), as the official run on GPUs.")
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Write a checkpoint every this many optimizer steps (0: only at the end).")
@click.option("--stop-after", type=click.IntRange(min=1), default=None,
              help="Stop once this many optimizer steps are done in total (checkpoint written; --resume goes on).")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in OUT (same settings); start if OUT is empty.")
@reward_options
def dpo(generator: str, params: tuple[str, ...], pairs_path: Path, out: Path, beta: float, lr: float,
        batch_size: int, epochs: int, grad_accumulation: int, seed: int, weight_decay: float, warmup_ratio: float,
        scheduler: str, max_grad_norm: float | None, cond_dropout: float, min_masking_rate: float,
        shared_mask: bool, shuffle: bool, mixed_precision: Literal["no", "bf16"], save_every: int,
        stop_after: int | None, resume: bool, **reward: Any) -> None:
    """Train a generator with DPO on preference pairs; write a checkpoint it loads.

    \b
    Show-o's log-likelihood of an image is its masked-token objective, as the official
    Image-Generation-CoT train_dpo.py computes it: the image's MAGVIT-v2 tokens, a random mask
    drawn with the training (cosine) schedule, the sum of log p of the true tokens at the
    masked positions (plus <|soi|>/<|eoi|>). Policy and frozen reference see the same mask.
    Janus's is the teacher-forced next-token log-likelihood of its VQ tokens after the prompt.

    \b
      stepwise align dpo --generator showo --pairs curated/dpo.jsonl -o ckpts/showo-dpo
      stepwise run --generator showo --param model=ckpts/showo-dpo ...

    OUT holds the weights in the generator's layout, stepwise-alignment.json (data sha256,
    parameters, parent model hashes, steps, metrics) and trainer_state.pt. Checkpoints are
    written whole and swapped in; `--resume` continues exactly where the last one stopped.
    Defaults are the paper's: one epoch, batch 10, lr 1e-5, β 0.1, cosine schedule with 10%
    warmup.

    With --reward-verifier (the paper's DPO with reward-model guidance) each micro-batch also
    samples --reward-samples images per prompt with the current policy; the verifier's best and
    worst make an online pair, and --reward-coef times their DPO loss is added to the loss.
    """
    from harness.alignment.pairs import PairsError
    from harness.alignment.train import AlignmentError, DPOConfig, DPOTrainer
    from harness.runner import RunError
    from harness.weights import MissingWeightsError

    config = DPOConfig(
        generator=generator, pairs=pairs_path, out=out, params=parse_pairs(params, "--param"), beta=beta, lr=lr,
        batch_size=batch_size, epochs=epochs, grad_accumulation=grad_accumulation, seed=seed,
        weight_decay=weight_decay, warmup_ratio=warmup_ratio, scheduler=scheduler, max_grad_norm=max_grad_norm,
        cond_dropout=cond_dropout, min_masking_rate=min_masking_rate, shared_mask=shared_mask, shuffle=shuffle,
        mixed_precision=mixed_precision, resume=resume, save_every=save_every, stop_after=stop_after,
        **reward_settings(**reward))
    try:
        manifest = DPOTrainer(config).train()
    except (AlignmentError, PairsError, RunError, MissingWeightsError) as err:
        raise click.ClickException(str(err)) from None
    steps = manifest["steps"]
    last = (manifest["metrics"] or {}).get("last") or {}
    state = "finished" if manifest["finished"] else "stopped; --resume continues"
    summary = f"; last step loss {last['loss']:.4f}, accuracy {last['accuracy']:.2f}" if last else ""
    if last.get("online_loss") is not None:
        summary += f", online loss {last['online_loss']:.4f} ({last['online_pairs']} online pairs)"
    timing = manifest.get("timing") or {}
    if timing.get("seconds_per_step") is not None:
        summary += (f"; {timing['seconds_per_step']:.2f} s/step on {timing['device']} (one epoch = "
                    f"{steps['per_epoch']} steps, about {_duration(timing['seconds_per_epoch'])})")
    click.echo(f"{out}: {steps['done']} of {steps['total']} steps ({state}){summary}", err=True)


@align.command("iterate")
@click.option("--generator", required=True, type=click.Choice(["showo", "janus"]),
              help="The generator to run and train.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Generator parameter (model= is round 1's model; later rounds replace it with the previous "
                   "round's checkpoint). Repeatable.")
@click.option("--suite", required=True,
              help="Training prompts: a metadata file from `stepwise prompts train` (DIR/evaluation_metadata.jsonl).")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Rounds of run, curate, DPO (the paper: 2).")
@click.option("--pool", type=click.IntRange(min=1), required=True, help="Candidates per prompt each round.")
@click.option("-o", "--out", "workdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Work folder: store.db, round-R/{run,data,ckpt}, iterate.json. Re-running continues it.")
@stored_evaluator_options("GenEval judge of each round's pool")
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per detector call.")
@dpo_options
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the candidates (as `stepwise run --seed`), the pair draws and the DPO masks.")
@reward_options
def iterate(generator: str, params: tuple[str, ...], suite: str, rounds: int, pool: int, workdir: Path,
            eval_batch_size: int, beta: float, lr: float, batch_size: int, epochs: int, seed: int,
            reward_verifier: str | None, reward_params: tuple[str, ...], reward_coef: float, reward_samples: int,
            reward_prompts: Path | None, **evaluator_flags: Any) -> None:
    """The paper's iterative DPO: each round runs the current model on training prompts, curates
    its DPO pairs and trains from (and against) the current model; prints the final checkpoint.

    \b
    Round R: `stepwise run` (store OUT/store.db, images OUT/round-R/run), `stepwise curate
    --parm skip` into OUT/round-R/data, `stepwise align dpo` into OUT/round-R/ckpt. Round 1
    starts from --param model; round R+1 from round R's checkpoint, which is also its frozen
    reference. OUT/iterate.json records each finished round (run id, pairs and their sha256,
    checkpoint, GenEval accuracy of the pool, DPO metrics); running the same command again skips
    them and finishes a round that was cut short. A round whose prompts all got a single label
    has no pairs: the loop stops there with an error.

    \b
      stepwise prompts train -o train
      stepwise align iterate --generator showo --suite train/evaluation_metadata.jsonl \\
          --pool 4 --rounds 2 -o work --backend hf
    """
    from harness.alignment.iterate import IterateConfig, IterateError
    from harness.alignment.iterate import iterate as run_iterate

    dpo: dict[str, Any] = {"beta": beta, "lr": lr, "batch_size": batch_size, "epochs": epochs}
    reward = reward_settings(reward_verifier, reward_params, reward_coef, reward_samples,
                             reward_prompts.resolve() if reward_prompts is not None else None)
    # recorded in iterate.json only when given (loops from before guidance re-run as they were); a reward
    # flag without --reward-verifier still reaches the check, which names it
    defaults = reward_settings(None, (), 0.1, 2, None)
    dpo.update({key: value for key, value in reward.items() if reward_verifier is not None or value != defaults[key]})
    config = IterateConfig(
        generator=generator, params=parse_pairs(params, "--param"), suite=suite, rounds=rounds, pool=pool,
        workdir=workdir, evaluator=evaluator_from_flags(evaluator_flags), seed=seed, eval_batch_size=eval_batch_size,
        dpo=dpo)
    try:
        state = run_iterate(config, log=lambda message: click.echo(message, err=True))
    except IterateError as err:
        raise click.ClickException(str(err)) from None
    click.echo(state["final_checkpoint"])


def _duration(seconds: float) -> str:
    """12.3 s, 4.5 min or 2.1 h."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
