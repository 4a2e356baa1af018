"""The built-in plug-ins together: `stepwise run` with Show-o, the GenEval evaluator and every verifier,
then `stepwise curve --run` over the stored pool. Tiny random models throughout (the scores mean
nothing); what is checked is that the pieces fit: previews reach the process verifiers, details and
per-step scores are stored, and curves come out for every verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import runner_plugins
from helpers import stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.store import Candidate, VerifierScore, open_store

PROMPTS = "0,80,81"  # a single object, two objects, counting (with --per-task 1)
VERIFIERS = ("orm", "prm", "parm", "clipscore", "oracle", "random")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from harness.tiny.magvit import TINY_MAGVIT_IMAGE_SIZE, write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo
    from harness.tiny.vlm import write_tiny_llava_onevision

    root = tmp_path_factory.mktemp("tiny")
    flags = runner_plugins.tiny_model_flags(tmp_path_factory)
    return {"showo": write_tiny_showo(root / "showo"), "magvit": write_tiny_magvit(root / "magvit"),
            "size": TINY_MAGVIT_IMAGE_SIZE, "vlm": write_tiny_llava_onevision(root / "vlm"), "flags": flags}


def ok(*args: str) -> str:
    code, output = stepwise(*args)
    assert code == 0, output
    return output


def test_showo_pool_scored_by_every_verifier_then_curves(tiny: dict, tmp_path: Path) -> None:
    flags = tiny["flags"]
    arch, clip_weights = flags[flags.index("--clip-arch") + 1], flags[flags.index("--clip-weights") + 1]
    db = f"sqlite:///{tmp_path / 'store.db'}"
    verifier_params = [f"orm:model={tiny['vlm']}", f"prm:model={tiny['vlm']}", f"parm:model={tiny['vlm']}",
                       f"clipscore:arch={arch}", f"clipscore:weights={clip_weights}"]
    output = ok(
        "run", "--generator", "showo", "--param", f"model={tiny['showo']}", "--param", f"vq_model={tiny['magvit']}",
        "--param", f"resolution={tiny['size']}", "--param", "steps=4", "--per-task", "1", "--prompts", PROMPTS,
        "--pool", "3", *[a for v in VERIFIERS for a in ("--verifier", v)],
        *[a for p in verifier_params for a in ("--verifier-param", p)], "--db", db, "--out", str(tmp_path / "out"),
        *flags)
    run_id = output.strip().splitlines()[-1]

    engine = open_store(db)
    with Session(engine) as s:
        candidates = s.scalars(select(Candidate)).all()
        assert len(candidates) == 9 and all(len(c.step_previews) == 4 for c in candidates)  # previews stored
        scores = s.scalars(select(VerifierScore)).all()
        by = {v: [x for x in scores if x.verifier == v] for v in VERIFIERS}
        assert all(len(rows) == 9 for rows in by.values())
        assert all(len(x.step_scores) == 4 for x in by["prm"])
        assert all(x.score == min(x.step_scores) for x in by["prm"])  # aggregate=min
        assert all(0.0 <= x.score <= 1.0 and set(x.details) >= {"p_yes", "p_no", "answer"} for x in by["orm"])
        assert all({"clear_step", "potential", "no_prob", "survivor"} <= set(x.details) for x in by["parm"])
        assert {x.score for x in by["oracle"]} <= {0.0, 1.0}
        assert all(x.cost["forward_passes"] >= 1 for x in by["orm"])
    engine.dispose()

    curves = json.loads(ok("curve", "--run", run_id, "--db", db,
                                 *[a for v in VERIFIERS for a in ("--verifier", v)],
                                 *[a for p in verifier_params for a in ("--verifier-param", p)], "--n", "1..3",
                                 "--json", *flags))
    assert set(VERIFIERS) <= set(curves)
    for verifier in VERIFIERS:
        assert set(curves[verifier]) == {"1", "2", "3"}
    # every verifier at n = 1 is the mean accuracy (one random candidate, whatever the score)
    assert len({round(curves[v]["1"]["overall"], 9) for v in VERIFIERS}) == 1
    # the oracle is the ceiling
    assert all(curves["oracle"]["3"]["overall"] >= curves[v]["3"]["overall"] - 1e-9 for v in VERIFIERS)
