"""The built-in search strategies one sample at a time: step-beam, smc (FK steering's weights), reflect
(feedback or a rewritten prompt; the judge on the tiny VLM), and the registry's view of them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import runner_plugins

from harness import registry
from harness.plugins import GenerationRequest, SearchStrategy, Strategy, is_search_strategy, parse_params
from harness.runner import LoadedVerifier
from harness.search.runner import search_sample
from strategies.search.smc import effective_sample_size, fk_weights

SEARCHES = ("adaptive-n", "parm-prune", "reflect", "smc", "step-beam")


def stepper(steps: int = 6) -> runner_plugins.ShapesStepper:
    return runner_plugins.ShapesStepper(runner_plugins.ShapesStepper.Params(size=24, steps=steps))


def scripted(channel: int = 0) -> LoadedVerifier:
    return LoadedVerifier("scripted", "0" * 64, runner_plugins.ScriptedVerifier(
        runner_plugins.ScriptedVerifier.Params(channel=channel)), True)


def run(strategy: Any, gen: Any, verifiers: list[LoadedVerifier], tmp_path: Path, budget: int = 4, **kw: Any) -> Any:
    return search_sample(strategy, gen, verifiers, prompt="a photo of a cat", prompt_index=2, sample=0, budget=budget,
                         run_seed=0, images_dir=tmp_path, **kw)


def test_builtins_are_search_strategies_with_their_sources() -> None:
    for name in SEARCHES:
        cls = registry.strategies.get(name)
        assert is_search_strategy(cls) and not callable(getattr(cls, "select_key", None))
        assert isinstance(cls(parse_params(cls.Params, {})), SearchStrategy)
        assert not isinstance(cls(parse_params(cls.Params, {})), Strategy)  # not a selection rule
        assert "Source" in (__import__(cls.__module__, fromlist=["_"]).__doc__ or "")
    assert not is_search_strategy(registry.strategies.get("parm"))


def test_fk_weights_follow_the_reference_code() -> None:
    rewards, previous, lam = [0.2, 0.9, 0.5], [0.4, 0.1, 0.5], 10.0
    w, current = fk_weights(rewards, previous, "max", lam)
    assert current == [0.4, 0.9, 0.5] and w == pytest.approx([math.exp(4.0), math.exp(9.0), math.exp(5.0)])
    w, current = fk_weights(rewards, previous, "sum", lam)
    assert current == pytest.approx([0.6, 1.0, 1.0]) and w == pytest.approx([math.exp(6.0), math.exp(10), math.exp(10)])
    w, current = fk_weights(rewards, previous, "difference", lam)
    assert current == rewards and w == pytest.approx([math.exp(-2.0), math.exp(8.0), 1.0])
    w, _ = fk_weights([100.0, 1.0], [0.0, 0.0], "max", 10.0)
    assert w[0] == 1e10  # clamped as the code clamps
    assert effective_sample_size([1.0, 1.0, 1.0, 1.0]) == pytest.approx(4.0)
    assert effective_sample_size([1.0, 0.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_smc_resamples_by_forking_duplicates(tmp_path: Path) -> None:
    from strategies.search.smc import SmcStrategy

    strategy = SmcStrategy(SmcStrategy.Params(verifier="scripted", lam=50.0, points=2, ess_threshold=1.0))
    done = run(strategy, stepper(), [scripted()], tmp_path)
    notes = [e for e in done.events if e["event"] == "note"]
    resampled = [n for n in notes if n["kind"] == "resample"]
    assert resampled and all(len(n["drawn"]) == 4 for n in resampled)
    forks = [e for e in done.events if e["event"] == "fork"]
    duplicates = sum(len(n["drawn"]) - len(set(n["drawn"])) for n in resampled)
    assert len(forks) == duplicates > 0  # a particle drawn twice continues with fresh randomness
    assert done.ledger.generator_nfe == 4 * 6  # K particles, every step
    picked = notes[-1]
    assert picked["kind"] == "selected" and picked["row"] == int(np.argmax(picked["scores"]))


def test_step_beam_keeps_the_best_and_forks_them(tmp_path: Path) -> None:
    from strategies.search.beam import StepBeamStrategy

    strategy = StepBeamStrategy(StepBeamStrategy.Params(verifier="scripted", children=2, at=(2, 4)))
    done = run(strategy, stepper(), [scripted()], tmp_path)
    beams = [e for e in done.events if e["event"] == "note" and e["kind"] == "beam"]
    assert [b["step"] for b in beams] == [2, 4]
    for beam in beams:
        scores = beam["scores"]
        assert beam["kept"] == sorted(range(4), key=lambda r: (-scores[r], r))[:2]  # width = budget // children
    keeps = [e for e in done.events if e["event"] == "keep"]
    assert [len(k["dropped"]) for k in keeps] == [2, 2]
    assert done.ledger.generator_nfe == 4 * 6 and done.result.details["width"] == 2


class FeedbackStepper(runner_plugins.ShapesStepper):
    """A 'self-correcting' test double: it declares feedback and records what it got."""

    accepts_feedback: ClassVar[bool] = True

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.feedback: list[Any] = []

    def start(self, request: GenerationRequest) -> Any:
        self.feedback.append(request.feedback)
        return super().start(request)


class NoJudge:
    """A judge that always says no, with an explanation, a little less sure each round."""

    needs_previews = False

    def __init__(self) -> None:
        self.rounds = 0

    def judge(self, prompt: str, images: list[Any], max_new_tokens: int = 40) -> list[Any]:
        from harness.plugins import Cost
        from harness.verifiers.vlm import Judgement

        self.rounds += 1
        return [Judgement("no", 0.1 * self.rounds, "the cat is missing.", Cost(forward_passes=3)) for _ in images]


def test_reflect_gives_feedback_or_rewrites_the_prompt(tmp_path: Path) -> None:
    from harness.search.trace import rewrote_prompt
    from strategies.search.reflect import ReflectStrategy, rewrite

    strategy = ReflectStrategy(ReflectStrategy.Params(rounds=3))
    plain = stepper()
    done = run(strategy, plain, [LoadedVerifier("orm", "0" * 64, NoJudge(), False)], tmp_path, budget=4)
    rewritten = rewrite("a photo of a cat", "the cat is missing.")
    assert plain.started == ["a photo of a cat", rewritten, rewritten]  # rounds 2 and 3 from the rewritten prompt
    assert done.result.prompt == rewritten and done.result.details["round"] == 2  # no yes: the highest P("yes")
    assert rewrote_prompt(done.events, "a photo of a cat")  # what marks the entry "prompt rewriting: yes"
    assert done.ledger.generator_nfe == 3 * 6 and done.ledger.verifiers["orm"].forward_passes == 9

    correcting = FeedbackStepper(FeedbackStepper.Params(size=24, steps=6))
    done = run(strategy, correcting, [LoadedVerifier("orm", "0" * 64, NoJudge(), False)], tmp_path, budget=4)
    assert correcting.started == ["a photo of a cat"] * 3 and done.result.prompt is None
    assert not rewrote_prompt(done.events, "a photo of a cat")
    assert correcting.feedback[0] is None and all(f.text == "no: the cat is missing." for f in correcting.feedback[1:])


def test_reflect_stops_at_the_first_yes(tmp_path: Path) -> None:
    from harness.tiny.scripted_vlm import ScriptedYesNoEngine
    from harness.verifiers.vlm import OutcomeVerifier, VlmParams
    from strategies.search.reflect import ReflectStrategy

    verifier = OutcomeVerifier(VlmParams(model="scripted"), engine=ScriptedYesNoEngine(seed=3))
    strategy = ReflectStrategy(ReflectStrategy.Params())
    for sample in range(4):
        done = search_sample(strategy, stepper(), [LoadedVerifier("orm", "0" * 64, verifier, False)],
                             prompt="a red cup", prompt_index=0, sample=sample, budget=5, run_seed=0,
                             images_dir=tmp_path)
        answers = [e["answer"] for e in done.events if e["event"] == "note"]
        assert "yes" not in answers[:-1] and len(answers) == done.result.details["rounds"]
        assert done.result.details["accepted"] == (answers[-1] == "yes")


def test_the_judge_generates_on_the_tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The reflection judge is the orm engine through greedy generation: its first token's distribution is
    the one `answer` reads, and the cached decoding loop gives the tokens a full forward per step gives."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    from harness.tiny.vlm import write_tiny_llava_onevision
    from harness.verifiers.engine import Turn, YesNoQuery
    from harness.verifiers.vlm import OutcomeVerifier, VlmParams, judge_question

    model = write_tiny_llava_onevision(tmp_path_factory.mktemp("judge-vlm"))
    verifier = OutcomeVerifier(VlmParams(model=str(model), device="cpu", batch_size=2))
    images = [Image.new("RGB", (40, 30), (200, 30 * k, 10)) for k in range(3)]
    judged = verifier.judge("a red cup", images, max_new_tokens=6)
    queries = [YesNoQuery((Turn("user", judge_question("a red cup")),), im) for im in images]
    first = verifier.engine.answer(queries)
    assert [j.p_yes for j in judged] == pytest.approx([a.p_yes for a in first], abs=1e-5)
    assert all(j.answer in ("yes", "no", "other") and j.cost.forward_passes >= 1 for j in judged)

    engine = verifier.engine
    generated = engine.generate_text(queries[:1], max_new_tokens=4)[0]
    batch = engine._pad_batch(queries[:1], {})
    embeds, mask = batch.kwargs["inputs_embeds"], batch.attention_mask
    tokens = []
    with torch.inference_mode():
        for _ in range(4):  # greedy with the whole sequence each step: no cache
            positions = mask.long().cumsum(-1) - 1
            logits = engine.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1]
            token = logits.argmax(-1)
            tokens.append(int(token))
            embeds = torch.cat([embeds, engine.model.get_input_embeddings()(token[:, None])], dim=1)
            mask = torch.cat([mask, mask.new_ones((1, 1))], dim=1)
    stop = {engine.tokenizer.convert_tokens_to_ids("<|im_end|>"), engine.tokenizer.eos_token_id}
    cut = next((i for i, t in enumerate(tokens) if t in stop), len(tokens))
    assert generated.text == engine.tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()


class Probe:
    """Records the metadata its problem carried (it does not declare reading it)."""

    description: ClassVar[str] = "probe"
    verifiers: tuple[str, ...] = ("reader",)

    @classmethod
    def make(cls, declares: bool) -> Any:
        return type("DeclaringProbe" if declares else "Probe", (cls,), {"reads_metadata": declares})()

    def search(self, problem: Any, ctx: Any) -> Any:
        from harness.plugins import SearchResult

        gen = ctx.generator
        traj = gen.start(gen.request(problem.prompt, ctx.seeds(1)))
        (image,) = gen.finish(traj, [0])
        seen = ctx.verifiers["reader"].score(problem.prompt, [image])
        return SearchResult(image, details={"metadata": dict(problem.metadata), "verifier saw": seen[0].details})


class Reader:
    """A verifier that declares reading the metadata (as a task-specific verifier prompt would)."""

    needs_previews = False
    reads_metadata = True

    def score(self, prompt: str, images: list[Any], previews: Any, *, metadata: Any = None) -> list[Any]:
        from harness.plugins import VerifierScore

        return [VerifierScore(0.5, details={"tag": (metadata or {}).get("tag")}) for _ in images]


def test_metadata_goes_only_to_plug_ins_that_declare_it(tmp_path: Path) -> None:
    record = {"prompt": "a photo of a cat", "tag": "single_object", "include": [{"class": "cat", "count": 1}]}
    for declares in (False, True):
        done = run(Probe.make(declares), stepper(), [LoadedVerifier("reader", "0" * 64, Reader(), False)], tmp_path,
                   metadata=record)
        assert done.result.details["metadata"] == (record if declares else {})
        assert done.result.details["verifier saw"] == {"tag": "single_object"}  # the verifier declares it
