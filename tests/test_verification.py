"""A leaderboard that cannot be lied to: forged exports of an honest tiny entry are refused.

The honest entry comes from a real tiny `stepwise run` (the shapes generator, GenEval's tiny hf
detector and tiny CLIP, the `clipscore` verifier on the tiny CLIP and `random`) over GenEval's suite
with one prompt per task after the 80 single objects (85 prompts), pool 2, turned into a folder by
`stepwise submit`. The model files lie in one folder, which `--models` names for the re-check.
Each test forges a copy: the model-free consistency checks refuse what they can see, the re-check
with the tiny models refuses what only the images can tell, and an entry whose models are missing
is shown apart, never ranked among re-checked ones.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.submissions.consistency import CHECKS
from harness.submissions.load import SubmissionError, load_entry

POOL = 2
Records = list[dict[str, Any]]
Header = dict[str, Any]


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    runner_plugins.register_isolated(monkeypatch)


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The honest entry, its models folder and the run it came from."""
    from harness.tiny.clip import write_tiny_clip
    from harness.tiny.hf_detector import write_tiny_hf_detector

    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        mp.setenv("STEPWISE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        root = tmp_path_factory.mktemp("honest")
        models = root / "models"
        arch, weights = write_tiny_clip(models)
        detector = write_tiny_hf_detector(models / "tiny-detector")
        flags = ["--backend", "hf", "--detector", str(detector), "--clip-arch", arch, "--clip-weights", str(weights),
                 "--threshold", "0.05"]
        verifiers = ["--verifier", "clipscore", "--verifier", "random",
                     "--verifier-param", f"clipscore:arch={arch}", "--verifier-param", f"clipscore:weights={weights}",
                     "--verifier-param", "clipscore:device=cpu"]
        db = f"sqlite:///{root / 's.db'}"
        code, output = stepwise("run", "--generator", "shapes", "--per-task", "1", "--pool", str(POOL), *verifiers,
                                "--db", db, "--out", str(root / "out"), *flags)
        assert code == 0, output
        run_id = output.strip().splitlines()[-1]
        code, output = stepwise("submit", run_id, "--name", "Honest tiny", "--slug", "honest", "--db", db, *verifiers,
                                "--n", str(POOL), "--out", str(root / "subs"), *flags)
        assert code == 0, output
        yield {"folder": root / "subs" / "honest", "models": models, "entry": load_entry(root / "subs" / "honest")}


def read_export(folder: Path) -> tuple[Header, Records]:
    lines = (folder / "export.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def write_export(folder: Path, header: Header, records: Records) -> None:
    (folder / "export.jsonl").write_text("\n".join(json.dumps(x) for x in [header, *records]) + "\n")


def forged(honest: dict[str, Any], tmp_path: Path, edit: Callable[[Header, Records], None],
           slug: str = "forged") -> Path:
    folder = tmp_path / slug
    shutil.copytree(honest["folder"], folder)
    header, records = read_export(folder)
    edit(header, records)
    write_export(folder, header, records)
    return folder


def validate(folder: Path, *flags: str) -> tuple[int, str]:
    return stepwise("validate", str(folder), *flags)


def with_models(honest: dict[str, Any]) -> list[str]:
    return ["--models", str(honest["models"]), "--recheck", "all"]


def suite() -> list[dict[str, Any]]:
    from harness.prompts import geneval_suite

    return geneval_suite(per_task=1)


def judged_correct(metadata: dict[str, Any], detections: dict[str, Any]) -> tuple[bool, str]:
    from harness.geneval.rescore import parse_detections
    from harness.geneval.rules import EvalOptions, evaluate

    verdict = evaluate(metadata, parse_detections(detections), EvalOptions(threshold=0.05))
    return verdict.correct, verdict.reason


def made_up_detections(metadata: dict[str, Any]) -> dict[str, Any]:
    """Detections a forger would type so that GenEval's rules say "correct": the prompt's objects, in
    its colours, side by side in a 48 px image (a position clause's object placed to its target's side)."""
    out: dict[str, list[dict[str, Any]]] = {}
    offsets = {"left of": (-16, 0), "right of": (16, 0), "above": (0, -16), "below": (0, 16)}
    for clause in metadata.get("include", []):
        x, y = 24.0, 24.0
        if "position" in clause:
            dx, dy = offsets[clause["position"][0]]
            x, y = x + dx, y + dy
        for j in range(clause["count"]):
            det: dict[str, Any] = {"box": [x - 4 + j, y - 4, x + 4 + j, y + 4], "score": 0.99}
            if "color" in clause:
                det["color"] = clause["color"]
            out.setdefault(clause["class"], []).append(det)
    return out


# ---------------------------------------------------------------------------------------------
# the honest entry


def test_every_builtin_verifier_declares_its_score_range() -> None:
    from harness import registry
    from harness.submissions.consistency import declared_ranges

    builtin = [name for name in registry.verifiers.names() if registry.verifiers.info(name).builtin]
    assert {"orm", "prm", "parm", "clipscore", "oracle", "random"} <= set(builtin)
    ranges = declared_ranges(builtin)
    assert all(ranges[name] is not None for name in builtin), ranges
    assert ranges["parm"] == (-50.0, 2.0) and ranges["clipscore"] == (0.0, 2.5) and ranges["orm"] == (0.0, 1.0)


def test_the_honest_entry_is_rechecked(honest: dict[str, Any]) -> None:
    code, output = validate(honest["folder"], *with_models(honest), "--require-recheck")
    assert code == 0, output
    assert "re-checked: 170 of 170 images re-judged, 170 of 170 re-scored by clipscore, 170 of 170 re-scored by " \
           "random" in output
    assert "re-check seed " in output and "1 valid, 0 invalid" in output


def test_without_the_models_it_is_only_consistency_checked(honest: dict[str, Any]) -> None:
    code, output = validate(honest["folder"])
    assert code == 0, output
    assert "NOT re-checked" in output and "not in the --models folders (none given)" in output
    assert "1 not re-checked" in output
    code, output = validate(honest["folder"], "--require-recheck")
    assert code == 1  # what a maintainer runs before merging
    code, output = validate(honest["folder"], "--recheck", "none")
    assert code == 0 and "re-check skipped (--recheck none)" in output and "re-check seed" not in output


def test_the_seed_repeats_a_draw(honest: dict[str, Any]) -> None:
    from harness.submissions.verify import sample

    entry = honest["entry"]
    first = sample(entry, 5, 123)
    assert sample(entry, 5, 123) == first and sample(entry, 5, 124) != first
    assert len(sample(entry, None, 1)) == 170 and sample(entry, 0, 1) == []
    code, output = validate(honest["folder"], "--recheck", "3", "--recheck-seed", "123", *with_models(honest)[:2])
    assert code == 0 and "re-check seed 123 " in output and "3 of 170 images re-judged" in output
    code, output = validate(honest["folder"], "--recheck", "lots")
    assert code == 2 and "'lots' is not a number of images, 'all' or 'none'" in output


# ---------------------------------------------------------------------------------------------
# forgeries the consistency checks refuse (no model needed)


def all_correct(h: Header, rs: Records) -> None:
    for r in rs:
        r["correct"], r["reason"] = True, ""


def top_pick_correct(h: Header, rs: Records) -> None:
    """Only the candidate best-of-n picks (the top clipscore of each prompt) marked correct."""
    for p in {r["prompt_index"] for r in rs}:
        best = max((r for r in rs if r["prompt_index"] == p), key=lambda r: r["scores"]["clipscore"])
        best["correct"], best["reason"] = True, ""


def extreme_scores(h: Header, rs: Records) -> None:
    for r in rs:
        r["scores"]["clipscore"] = 1e308 if r["correct"] else -1e308


def one_correct_image(h: Header, rs: Records) -> None:
    """Every record points at one correct candidate's image (sha256 and detections fixed up)."""
    good = next(r for r in rs if r["correct"])
    for r in rs:
        r.update(image=good["image"], sha256=good["sha256"], detections=good["detections"], correct=True, reason="")


def one_image_per_prompt(h: Header, rs: Records) -> None:
    """Within each prompt, every sample points at the first sample's image (a variant: no prompt shared)."""
    first = {r["prompt_index"]: r for r in rs if r["sample_index"] == 0}
    for r in rs:
        keep = first[r["prompt_index"]]
        r.update(image=keep["image"], sha256=keep["sha256"], detections=keep["detections"],
                 correct=keep["correct"], reason=keep["reason"])


def set_detection(**values: Any) -> Callable[[Header, Records], None]:
    def edit(h: Header, rs: Records) -> None:
        r = next(r for r in rs if any(r["detections"].values()))
        name = next(n for n, boxes in r["detections"].items() if boxes)
        r["detections"][name][0].update(values)
    return edit


def rename_class(h: Header, rs: Records) -> None:
    r = next(r for r in rs if r["detections"])
    name = next(iter(r["detections"]))
    r["detections"]["unicorn"] = r["detections"].pop(name)


def too_many_detections(h: Header, rs: Records) -> None:
    rs[0]["detections"] = {"kite": [{"box": [1.0, 1.0, 2.0, 2.0], "score": 0.06}] * 101}


def edited_reason(h: Header, rs: Records) -> None:
    r = next(r for r in rs if not r["correct"])
    r["reason"] = "expected nothing, found nothing"


def negative_score(h: Header, rs: Records) -> None:
    rs[3]["scores"]["clipscore"] = -0.5


def random_above_one(h: Header, rs: Records) -> None:
    rs[3]["scores"]["random"] = 1.5


@pytest.mark.parametrize("edit,message", [
    (all_correct, "correct is true, but GenEval's rules give false from its stored detections"),
    (top_pick_correct, "correct is true, but GenEval's rules give false from its stored detections"),
    (extreme_scores, "scores.clipscore: -1e+308 is outside the range its verifier declares ([0, 2.5])"),
    (one_correct_image, "is also the image of prompt 00000 sample 0: one image cannot stand for two prompts"),
    (one_image_per_prompt, "is also the image of sample 0: each sample is drawn from its own seed"),
    (set_detection(box=[10.0, 10.0, 400.0, 20.0]), "leaves the 48 x 48 image"),
    (set_detection(box=[30.0, 10.0, 20.0, 20.0]), "x1 <= x2 and y1 <= y2"),
    (set_detection(score=1.5), "score 1.5 is not in [0, 1]"),
    (set_detection(score=0.01), "is not above the recorded threshold 0.05"),
    (set_detection(color="magenta"), "colour 'magenta' is not one of GenEval's"),
    (rename_class, "'unicorn' is not one of GenEval's 80 class names"),
    (too_many_detections, "101 detections; the detector keeps at most 100 per image"),
    (edited_reason, "is not the one GenEval's rules give from its stored detections"),
    (negative_score, "scores.clipscore: -0.5 is outside the range its verifier declares"),
    (random_above_one, "scores.random: 1.5 is outside the range its verifier declares ([0, 1])"),
])
def test_forgeries_the_consistency_checks_refuse(honest: dict[str, Any], tmp_path: Path,
                                                 edit: Callable[[Header, Records], None], message: str) -> None:
    folder = forged(honest, tmp_path, edit)
    code, output = validate(folder)
    assert code == 1 and message in output, output
    assert "export.jsonl: prompt " in output or "export.jsonl" in output  # one line naming the record and field
    assert "0 valid, 1 invalid" in output
    assert output.count("error  ") <= 21 * len(CHECKS)  # capped: 20 lines a check, and how many more


def test_a_missing_threshold_cannot_pass_for_consistent(honest: dict[str, Any], tmp_path: Path) -> None:
    def no_threshold(h: Header, rs: Records) -> None:
        del h["evaluator"]["settings"]["counting_threshold"]

    folder = forged(honest, tmp_path, no_threshold)
    manifest = folder / "submission.toml"
    manifest.write_text("\n".join(line for line in manifest.read_text().splitlines()
                                  if not line.startswith("counting_threshold")) + "\n")
    code, output = validate(folder)
    assert code == 1 and "evaluator.settings.counting_threshold: missing" in output, output


# ---------------------------------------------------------------------------------------------
# forgeries only the re-check with the models can see


def rewritten_scores(h: Header, rs: Records) -> None:
    """Verdicts kept, the selecting verifier's scores rewritten: best-of-n always picks a correct image."""
    for r in rs:
        r["scores"]["clipscore"] = 1.0 if r["correct"] else 0.0


def made_up_correct(h: Header, rs: Records) -> None:
    """Verdicts set to correct together with detections typed to fit them."""
    samples = suite()
    for r in rs:
        detections = made_up_detections(samples[r["prompt_index"]])
        correct, reason = judged_correct(samples[r["prompt_index"]], detections)
        if correct:
            r.update(detections=detections, correct=True, reason=reason)


def swapped_images(h: Header, rs: Records) -> None:
    """Two samples of one prompt, one correct and one not, swap their images (sha256 and the pixel-seeded
    `random` scores included, so that nothing but the verdicts betrays them)."""
    by_prompt: dict[int, Records] = {}
    for r in rs:
        by_prompt.setdefault(r["prompt_index"], []).append(r)
    a, b = next(group for group in by_prompt.values() if len({r["correct"] for r in group}) == 2)
    for key in ("image", "sha256"):
        a[key], b[key] = b[key], a[key]
    a["scores"]["random"], b["scores"]["random"] = b["scores"]["random"], a["scores"]["random"]


@pytest.mark.parametrize("edit,message", [
    (rewritten_scores, "verifier 'clipscore' scores this image"),
    (made_up_correct, "the recorded evaluator judges this image false"),
    (swapped_images, "the recorded evaluator judges this image"),
])
def test_forgeries_the_recheck_refuses(honest: dict[str, Any], tmp_path: Path,
                                       edit: Callable[[Header, Records], None], message: str) -> None:
    folder = forged(honest, tmp_path, edit)
    code, output = validate(folder)  # consistent with itself: no model-free check can tell
    assert code == 0 and "NOT re-checked" in output, output
    code, output = validate(folder, *with_models(honest))
    assert code == 1 and message in output, output
    assert f"{folder / 'images'}/" in output  # the line names the image


def test_the_recheck_catches_one_edited_score_and_one_edited_verdict(honest: dict[str, Any], tmp_path: Path) -> None:
    _header, records = read_export(honest["folder"])
    target = next(r for r in records if r["scores"]["clipscore"] < 1.5 and not r["correct"])

    def one_score(h: Header, rs: Records) -> None:
        r = next(x for x in rs if x["sha256"] == target["sha256"])
        r["scores"]["clipscore"] += 0.5

    code, output = validate(forged(honest, tmp_path, one_score, "score"), *with_models(honest))
    assert code == 1 and f"images/{target['sha256']}.png" in output and "verifier 'clipscore'" in output, output
    assert output.count("error  ") == 1

    samples = suite()

    def one_verdict(h: Header, rs: Records) -> None:
        r = next(x for x in rs if x["sha256"] == target["sha256"])
        detections = made_up_detections(samples[r["prompt_index"]])
        correct, reason = judged_correct(samples[r["prompt_index"]], detections)
        assert correct
        r.update(detections=detections, correct=True, reason=reason)

    folder = forged(honest, tmp_path, one_verdict, "verdict")
    assert validate(folder)[0] == 0  # consistent: its detections were forged to fit
    code, output = validate(folder, *with_models(honest))
    assert code == 1 and f"images/{target['sha256']}.png" in output and "judges this image false" in output, output


def test_a_forgery_whose_models_are_missing_is_shown_only_as_unverified(honest: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    """Scores rewritten and the verifier's weights renamed to a file the maintainer does not have: it
    cannot be re-scored, so it is shown apart, labelled, never ranked above the re-checked entry."""
    def forge(h: Header, rs: Records) -> None:
        rewritten_scores(h, rs)
        h["verifier_settings"]["clipscore"]["params"]["weights"] = "secret-reward-model.pt"

    subs = tmp_path / "subs"
    shutil.copytree(honest["folder"], subs / "honest")
    folder = forged(honest, subs, forge, "forged")
    code, output = validate(folder, *with_models(honest))
    assert code == 0 and "NOT re-checked" in output
    assert "verifier clipscore: its weights 'secret-reward-model.pt' is not in the --models folders" in output
    code, output = stepwise("leaderboard", "build", "--submissions", str(subs), "--out", str(tmp_path / "site"),
                            *with_models(honest), "--strict")
    assert code == 0, output
    data = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    rows = {e["slug"]: e for e in data["entries"]}
    assert rows["forged"]["scores"]["overall"] > rows["honest"]["scores"]["overall"]  # the lie pays ...
    assert (rows["honest"]["table"], rows["honest"]["rank"]) == ("rechecked", 1)  # ... but is not ranked
    assert rows["forged"]["table"] == "unverified" and rows["forged"]["verification"]["level"] == "consistent"
    assert rows["forged"]["verification"]["candidates_rescored"]["clipscore"] == [0, 170]
    assert rows["forged"]["verification"]["images_rejudged"] == [170, 170]  # its verdicts were re-judged
    index = (tmp_path / "site" / "index.html").read_text()
    main, apart = index.split('id="board-unverified"')
    assert 'data-slug="honest"' in main and 'data-slug="forged"' not in main
    assert 'data-slug="forged"' in apart and "not re-checked" in apart


def test_records_without_images_keep_an_entry_from_being_rechecked(honest: dict[str, Any], tmp_path: Path) -> None:
    """Ship the images of the honest records only, and forge the others: the sample is drawn from the
    shipped images, so it cannot vouch for the rest; the entry is not re-checked."""
    def forge(h: Header, rs: Records) -> None:
        samples = suite()
        for r in rs:
            if r["prompt_index"] >= 40:
                detections = made_up_detections(samples[r["prompt_index"]])
                correct, reason = judged_correct(samples[r["prompt_index"]], detections)
                if correct:
                    r.update(detections=detections, correct=True, reason=reason)
                r["image"] = None

    code, output = validate(forged(honest, tmp_path, forge), *with_models(honest))
    assert code == 0 and "NOT re-checked" in output and "90 of 170 candidates ship no image" in output, output


# ---------------------------------------------------------------------------------------------
# any single-field edit: refused, or the shown scores do not move


FIELDS = ("correct", "reason", "sha256", "image", "clipscore", "random", "detection-score", "detection-box",
          "drop-detection", "prompt_index", "sample_index", "tag", "prompt")


@pytest.fixture(scope="module")
def checker(honest: dict[str, Any]) -> Any:
    from harness.submissions.verify import Rechecker, RecheckPlan

    return Rechecker(RecheckPlan(count=None, seed=0, models=(honest["models"],)))  # --recheck all


def apply_edit(records: Records, index: int, field: str, data: st.DataObject) -> None:
    r = records[index]
    if field == "correct":
        r["correct"] = not r["correct"]
    elif field == "reason":
        r["reason"] = data.draw(st.text(max_size=40).filter(lambda t: t != r["reason"]))
    elif field == "sha256":
        r["sha256"] = data.draw(st.sampled_from([x["sha256"] for x in records if x["sha256"] != r["sha256"]]))
    elif field == "image":
        r["image"] = data.draw(st.sampled_from([x["image"] for x in records if x["image"] != r["image"]]))
    elif field in ("clipscore", "random"):
        r["scores"][field] = data.draw(st.floats(-1.0, 3.0, allow_nan=False))
    elif field in ("detection-score", "detection-box", "drop-detection"):
        boxes = [(name, i) for name, dets in r["detections"].items() for i in range(len(dets))]
        if not boxes:
            r["detections"] = {"person": [{"box": [1.0, 1.0, 20.0, 20.0], "score": 0.99}]}
            return
        name, i = data.draw(st.sampled_from(boxes))
        if field == "detection-score":
            r["detections"][name][i]["score"] = data.draw(st.floats(0.0, 1.0))  # a verdict may not change
        elif field == "detection-box":
            r["detections"][name][i]["box"] = data.draw(st.lists(st.floats(-5.0, 60.0), min_size=4, max_size=4))
        else:
            del r["detections"][name][i]
    elif field in ("prompt_index", "sample_index"):
        r[field] = data.draw(st.integers(0, 84 if field == "prompt_index" else POOL))
    elif field == "tag":
        r["tag"] = data.draw(st.sampled_from(["single_object", "two_object", "counting", "colors", "position"]))
    else:
        r["prompt"] = data.draw(st.sampled_from([x["prompt"] for x in records]))


@pytest.mark.parametrize("field", FIELDS)
@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_field_edit_is_refused_or_changes_no_shown_score(honest: dict[str, Any], checker: Any,
                                                                   tmp_path_factory: pytest.TempPathFactory,
                                                                   field: str, data: st.DataObject) -> None:
    """With every image re-checked (--recheck all), an edit of one field of one record is refused, or
    the entry's shown scores are the honest ones (edits within the score tolerance are not lies the
    re-check can see: see harness.submissions.verify)."""
    header, records = read_export(honest["folder"])
    index = data.draw(st.integers(0, len(records) - 1), label="record")
    apply_edit(records, index, field, data)
    folder = tmp_path_factory.mktemp("edit") / "edited"
    shutil.copytree(honest["folder"], folder)
    write_export(folder, header, records)
    try:
        entry = checker.recheck(load_entry(folder))
    except SubmissionError:
        return  # refused
    assert entry.scores == honest["entry"].scores
