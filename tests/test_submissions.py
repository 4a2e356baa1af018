"""Leaderboard submissions: manifests, path confinement, exports, recomputation, `stepwise submit`/`validate`.

The reproduced entry comes from a real tiny `stepwise run` (the shapes generator, the scripted
verifier, tiny GenEval models) over GenEval's suite with one prompt per task after the 80 single
objects (85 prompts), pool 3; `stepwise submit` turns it into a folder once per module, and the
tests tamper with copies of that folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import REPORTED_MANIFEST as REPORTED
from helpers import stepwise

from harness.submissions import load as load_module
from harness.submissions.load import SubmissionError, load_all, load_entry
from harness.submissions.manifest import MAX_MANIFEST_BYTES, dump_manifest, parse_manifest
from harness.submissions.model import MANIFEST_NAME, TASKS
from harness.submissions.paths import PathProblem, confined

ROOT = Path(__file__).resolve().parents[1]
POOL = 3
N = 2



def problems_of(text: str) -> list[str]:
    manifest, problems = parse_manifest(text)
    assert (manifest is None) == bool(problems)
    return problems


def write_entry(root: Path, slug: str, text: str) -> Path:
    folder = root / slug
    folder.mkdir(parents=True)
    (folder / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return folder


def messages(folder: Path) -> str:
    with pytest.raises(SubmissionError) as err:
        load_entry(folder)
    return "\n".join(str(p) for p in err.value.problems)


# ---------------------------------------------------------------------------------------------
# reported manifests


def test_a_reported_manifest_loads_and_gets_the_mean_as_overall(tmp_path: Path) -> None:
    entry = load_entry(write_entry(tmp_path, "show-o-parm", REPORTED))
    assert entry.manifest.kind == "reported" and entry.manifest.system.verifiers == ("parm",)
    assert entry.manifest.sources[0].page is None and entry.manifest.sources[0].url is None
    assert list(entry.scores) == [*TASKS, "overall"]
    assert entry.scores["overall"] == pytest.approx((0.99 + 0.77 + 0.68 + 0.86 + 0.29 + 0.45) / 6)
    assert entry.intervals is None and entry.images == () and entry.curves == {} and entry.prompt_correct is None


def test_a_typed_overall_is_kept_and_partial_rows_get_none(tmp_path: Path) -> None:
    text = REPORTED.replace("color_attr = 0.45", "color_attr = 0.45\noverall = 0.70")
    typed = load_entry(write_entry(tmp_path, "a", text))
    assert typed.scores["overall"] == 0.70  # as published, even when not the mean of the six
    text = REPORTED.split("[scores]")[0] + "[scores]\noverall = 0.39\n"
    assert load_entry(write_entry(tmp_path, "b", text)).scores == {"overall": 0.39}
    text = REPORTED.split("[scores]")[0] + "[scores]\ncounting = 0.5\n"
    assert load_entry(write_entry(tmp_path, "c", text)).scores == {"counting": 0.5}


def test_dump_and_parse_round_trip() -> None:
    manifest, problems = parse_manifest(REPORTED)
    assert manifest is not None and not problems
    assert parse_manifest(dump_manifest(manifest)) == (manifest, [])


def test_hostile_looking_names_are_text_not_errors() -> None:
    name = '<script>alert("x")</script> & {{ 7*7 }} \\u0000 Ünïcødé 名前 🚀'
    text = REPORTED.replace('"Show-o + PARM, best-of-20"', json.dumps(name, ensure_ascii=False))
    manifest, problems = parse_manifest(text)
    assert not problems and manifest is not None and manifest.name == name
    multiline = REPORTED.replace('"Best of 20 by PARM."', '"""line one\nline two\twith a tab"""')
    assert not problems_of(multiline)


@pytest.mark.parametrize("edit,message", [
    (lambda t: "name = [", "not valid TOML"),
    (lambda t: t.replace('name = "Show-o + PARM, best-of-20"\n', ""), "name: missing (required)"),
    (lambda t: t.replace("n = 20", 'n = "20"'), "system.n: must be an integer, got a string"),
    (lambda t: t.replace("n = 20", "n = 0"), "system.n: must be >= 1"),
    (lambda t: t.replace('authors = ["Ziyu Guo"]', 'authors = "Ziyu Guo"'), "authors: must be a list of strings"),
    (lambda t: t.replace('authors = ["Ziyu Guo"]', "authors = [" + ", ".join(['"a"'] * 51) + "]"),
     "authors: at most 50 items"),
    (lambda t: t.replace("prompt_rewriting = false", 'prompt_rewriting = "no"'),
     "protocol.prompt_rewriting: must be true or false"),
    (lambda t: t.replace("name =", "nmae = 1\nname ="), "nmae: unknown key"),
    (lambda t: t.replace('verifiers = ["parm"]', 'verifiers = ["parm"]\nverifer = "parm"'),
     "system.verifer: unknown key"),
    (lambda t: t.replace('table = "Table 3"', 'table = "Table 3"\npgae = 7'), "source[0].pgae: unknown key"),
    (lambda t: t.replace('kind = "reported"', 'kind = "published"'), "kind: must be one of"),
    (lambda t: t.replace("[system]", "system = 3\n[x]"), "system: must be a table"),
    (lambda t: t.replace('verifiers = ["parm"]', 'verifiers = ["parm", "parm"]'), "an item appears twice"),
    (lambda t: t.replace('generator = "show-o"', 'generator = "Show O"'),
     "system.generator: 'Show O' is not a label"),
    (lambda t: t.replace('link = "https://arxiv.org/abs/2501.13926"', 'link = "javascript:alert(1)"'),
     "link: 'javascript:alert(1)' is not an http:// or https:// URL"),
    (lambda t: t.replace('"Show-o + PARM, best-of-20"', '"' + "x" * 121 + '"'), "name: is longer than 120"),
    (lambda t: t.replace('"Show-o + PARM, best-of-20"', '"tab\\there"'), "name: contains the control character U+0009"),
    (lambda t: t.replace('"Show-o + PARM, best-of-20"', '"evil\\u202Eeman"'), "control character U+202E"),
    (lambda t: t.replace('"Show-o + PARM, best-of-20"', '"   "'), "name: must not be blank"),
    (lambda t: t.replace('"Best of 20 by PARM."', '"bell\\u0007"'), "description: contains the control character"),
    (lambda t: t.replace('backend = "mmdet"', 'backend = "mmdet"\nsettings = { nested = { a = 1 } }'),
     "evaluator.settings.nested: must be a string, number or boolean"),
    (lambda t: t.replace('backend = "mmdet"', 'backend = "mmdet"\nsettings = 3'),
     "evaluator.settings: must be a table"),
    # reported-specific
    (lambda t: t.split("[[source]]")[0] + "[scores]\noverall = 0.5\n", "source: missing"),
    (lambda t: "source = []\n" + t.replace('[[source]]\ncitation = "Guo et al. (2025)"\ntable = "Table 3"\n', ""),
     "source: must be one or more [[source]] tables"),
    (lambda t: t.replace('citation = "Guo et al. (2025)"\n', ""), "source[0].citation: missing"),
    (lambda t: t.replace('table = "Table 3"', 'table = "Table 3"\npage = 0'), "source[0].page: must be >= 1"),
    (lambda t: t.split("[scores]")[0], "scores: missing (required)"),
    (lambda t: t.split("[scores]")[0] + "[scores]\n", "scores: empty"),
    (lambda t: t.replace("counting = 0.68", "counting = 68"),
     "scores.counting: must be a fraction in [0, 1] (0.53, not 53)"),
    (lambda t: t.replace("counting = 0.68", "counting = -0.1"), "scores.counting: must be a fraction in [0, 1]"),
    (lambda t: t.replace("counting = 0.68", 'counting = "0.68"'), "scores.counting: must be a number"),
    (lambda t: t.replace("counting = 0.68", "counting = nan"), "scores.counting: must be a fraction"),
    (lambda t: t.replace("counting = 0.68", "attribute_binding = 0.68"), "scores.attribute_binding: unknown task"),
    (lambda t: t + '\n[export]\npath = "export.jsonl"\n', "export: only reproduced entries carry an export"),
])
def test_reported_manifest_rejections(edit: Callable[[str], str], message: str) -> None:
    problems = problems_of(edit(REPORTED))
    assert any(message in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    text = (REPORTED.replace("n = 20", "n = 0").replace("counting = 0.68", "counting = 2")
            .replace("name =", "nmae = 1\nname ="))
    assert len(problems_of(text)) == 3


def test_reproduced_manifest_rejections() -> None:
    reproduced = REPORTED.replace('kind = "reported"', 'kind = "reproduced"')
    problems = problems_of(reproduced)
    assert any("scores: reproduced entries' numbers are recomputed, not typed" in p for p in problems)
    assert any("source: reproduced entries are run here" in p for p in problems)
    assert any("export: missing (required)" in p for p in problems)
    bare = reproduced.split("[[source]]")[0]
    assert problems_of(bare) == ["export: missing (required)"]
    assert problems_of(bare + "[export]\n") == ["export.path: missing (required)"]
    assert problems_of(bare + '[export]\npath = "e.jsonl"\nsha = 1\n') == [
        "export.sha: unknown key (known here: path)"]


def test_oversized_and_malformed_manifest_files(tmp_path: Path) -> None:
    big = write_entry(tmp_path, "big", REPORTED + "#" * MAX_MANIFEST_BYTES)
    assert f"a manifest may have at most {MAX_MANIFEST_BYTES}" in messages(big)
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / MANIFEST_NAME).write_bytes(b"name = \"\xff\xfe\"\n")
    assert "is not UTF-8 text" in messages(binary)
    empty = write_entry(tmp_path, "empty", "")
    assert "name: missing (required)" in messages(empty)


# ---------------------------------------------------------------------------------------------
# folders and paths


def test_folder_rules(tmp_path: Path) -> None:
    assert "is not a slug" in messages(write_entry(tmp_path, "Bad_Slug", REPORTED))
    assert "is not a slug" in messages(write_entry(tmp_path, "-leading-dash", REPORTED))
    assert "is not a slug" in messages(write_entry(tmp_path, "x" * 65, REPORTED))
    (tmp_path / "no-manifest").mkdir()
    assert "missing: every entry folder needs a submission.toml" in messages(tmp_path / "no-manifest")
    real = write_entry(tmp_path, "real", REPORTED)
    (tmp_path / "linked").symlink_to(real)
    assert "is a symlink" in messages(tmp_path / "linked")
    outside = tmp_path / "outside.toml"
    outside.write_text(REPORTED)
    (tmp_path / "escaping").mkdir()
    (tmp_path / "escaping" / MANIFEST_NAME).symlink_to(outside)
    assert "leads outside the submission folder" in messages(tmp_path / "escaping")


def test_load_all_collects_problems_and_skips_files(tmp_path: Path) -> None:
    write_entry(tmp_path, "good", REPORTED)
    write_entry(tmp_path, "bad", REPORTED.replace("n = 20", "n = 0"))
    (tmp_path / "README.md").write_text("# not an entry\n")
    (tmp_path / ".hidden").mkdir()
    entries, problems = load_all(tmp_path)
    assert [e.slug for e in entries] == ["good"]
    assert [(p.folder.name, p.file) for p in problems] == [("bad", MANIFEST_NAME)]
    assert "system.n: must be >= 1" in str(problems[0])


@pytest.mark.parametrize("path,message", [
    ("/etc/passwd", "is absolute"),
    ("C:/x.png", "is absolute"),
    ("../other/export.jsonl", "'..' segment"),
    ("images/../../x", "'..' segment"),
    ("./export.jsonl", "'.' or '..' segment"),
    ("images//x.png", "empty"),
    ("images/", "empty"),
    ("images\\x.png", "backslash"),
    ("", "empty"),
    ("images/.hidden", "may not start with '.'"),
    ("images/x y.png", "may hold only"),
])
def test_confined_refuses(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(PathProblem, match=message.replace("(", r"\(").replace("'", "'")):
        confined(tmp_path, path)


def test_confined_follows_symlinks(tmp_path: Path) -> None:
    folder = tmp_path / "entry"
    (folder / "images").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    (folder / "images" / "a.png").symlink_to(tmp_path / "secret.png")
    (folder / "linkdir").symlink_to(tmp_path)
    with pytest.raises(PathProblem, match="outside"):
        confined(folder, "images/a.png")
    with pytest.raises(PathProblem, match="outside"):
        confined(folder, "linkdir/secret.png")
    (folder / "images" / "b.png").write_bytes(b"y")
    (folder / "images" / "c.png").symlink_to(folder / "images" / "b.png")  # inside: fine
    assert confined(folder, "images/c.png") == folder / "images" / "c.png"
    assert confined(folder, "images/missing.png") == folder / "images" / "missing.png"


# ---------------------------------------------------------------------------------------------
# a reproduced entry from a real tiny run


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    runner_plugins.register_isolated(monkeypatch)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A whole (85-prompt) tiny run and the entry `stepwise submit` made of it."""
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        mp.setenv("STEPWISE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        flags = runner_plugins.tiny_model_flags(tmp_path_factory)
        base = tmp_path_factory.mktemp("run")
        db = f"sqlite:///{base / 's.db'}"
        code, output = stepwise("run", "--generator", "shapes", "--per-task", "1", "--pool", str(POOL),
                                "--verifier", "scripted", "--db", db, "--out", str(base / "out"), *flags)
        assert code == 0, output
        run_id = output.strip().splitlines()[-1]
        subs = base / "submissions"
        code, output = stepwise(*submit_args(run_id, db, flags, subs, "tiny"))
        assert code == 0, output
        yield {"run_id": run_id, "db": db, "flags": flags, "out": base / "out", "subs": subs,
               "folder": subs / "tiny", "output": output}


def submit_args(run_id: str, db: str, flags: list[str], out: Path, slug: str, *extra: str) -> list[str]:
    return ["submit", run_id, "--name", "<b>Tiny</b> & shapes", "--slug", slug, "--db", db, "--verifier", "scripted",
            "--n", str(N), "--out", str(out), "--author", "Test Author", *flags, *extra]


@pytest.fixture()
def entry_copy(run: dict[str, Any], tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    shutil.copytree(run["folder"], folder)
    return folder


def read_export(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = (folder / "export.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def write_export(folder: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    lines = [json.dumps(header)] + [json.dumps(r) for r in records]
    (folder / "export.jsonl").write_text("\n".join(lines) + "\n")


def edit_manifest(folder: Path, old: str, new: str) -> None:
    path = folder / MANIFEST_NAME
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new))


def test_submit_writes_a_folder_that_loads(run: dict[str, Any]) -> None:
    folder = run["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["export.jsonl", "images", MANIFEST_NAME]
    assert not (run["subs"] / "tiny.partial").exists()
    assert f"{folder}: overall" in run["output"]
    entry = load_entry(folder)
    manifest = entry.manifest
    assert manifest.kind == "reproduced" and manifest.name == "<b>Tiny</b> & shapes"
    assert manifest.authors == ("Test Author",) and manifest.sources == () and manifest.scores is None
    assert manifest.system.generator == "shapes" and manifest.system.verifiers == ("scripted",)
    assert manifest.system.n == N and manifest.protocol.images_per_prompt == POOL and manifest.protocol.seed == 0
    assert manifest.evaluator.backend == "hf" and manifest.evaluator.settings["threshold"] == 0.05
    assert not any(str(Path.home()) in str(v) or "/" in str(v) for v in manifest.evaluator.settings.values())
    assert len(entry.images) == 85 * POOL and all(r.image is not None for r in entry.images)
    assert len({r.image for r in entry.images}) == len(list((folder / "images").iterdir()))
    header, _ = read_export(folder)
    assert header["run_id"] == run["run_id"] and header["suite"]["prompts"] == 85
    assert set(header) >= {"run_id", "suite", "evaluator", "verifiers", "stepwise_version"}


def test_recomputed_scores_equal_curve_run(run: dict[str, Any]) -> None:
    entry = load_entry(run["folder"])
    code, output = stepwise("curve", "--run", run["run_id"], "--db", run["db"], "--verifier", "scripted",
                            "--n", f"1..{POOL}", "--json", "--bootstrap", "1000", "--seed", "0", *run["flags"])
    assert code == 0, output
    table = json.loads(output)
    assert set(entry.curves) == {"scripted", "random", "oracle"}
    for verifier, points in entry.curves.items():
        assert [p.n for p in points] == list(range(1, POOL + 1))
        for point in points:
            row = table[verifier][str(point.n)]
            assert point.overall == pytest.approx(row["overall"], abs=1e-12)
            assert point.tasks == pytest.approx({t: v for t, v in row.items() if t != "overall"}, abs=1e-12)
            assert point.low <= point.overall <= point.high
            assert point.seconds is not None and point.seconds > 0
    selected = table["scripted"][str(N)]
    assert list(entry.scores) == [*TASKS, "overall"]
    assert entry.scores == pytest.approx(selected, abs=1e-12)
    # the intervals are the bootstrap `curve` records with the same seed and resamples
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from harness.store import Result, open_store

    engine = open_store(run["db"])
    with Session(engine) as s:
        stored = s.scalars(select(Result).where(Result.verifier == "scripted", Result.n == N)
                           .order_by(Result.id.desc())).first()
        assert stored is not None
        assert entry.intervals is not None
        assert entry.intervals["overall"] == pytest.approx((stored.low, stored.high), abs=1e-12)
        for tag, (low, high) in stored.details["intervals"].items():
            assert entry.intervals[tag] == pytest.approx((low, high), abs=1e-12)
    engine.dispose()
    assert entry.prompt_correct is not None and sorted(entry.prompt_correct) == list(range(85))
    singles = [entry.prompt_correct[i] for i in range(80)]  # the 80 single-object prompts come first
    assert sum(singles) / 80 == pytest.approx(entry.scores["single_object"])


def test_editing_scores_in_the_export_changes_the_recomputed_numbers(entry_copy: Path) -> None:
    """Nothing typed is trusted: the numbers follow the export's verdicts and verifier scores."""
    before = load_entry(entry_copy)
    header, records = read_export(entry_copy)
    for r in records:  # make the verifier an oracle: the best of n is correct whenever one is
        r["scores"]["scripted"] = 1.0 if r["correct"] else 0.0
    write_export(entry_copy, header, records)
    after = load_entry(entry_copy)
    oracle = before.curves["oracle"][N - 1]
    assert after.scores["overall"] == pytest.approx(oracle.overall)
    assert after.scores["overall"] >= before.scores["overall"]


def test_changed_image_bytes_fail_provenance(entry_copy: Path) -> None:
    image = sorted((entry_copy / "images").iterdir())[0]
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF
    image.write_bytes(bytes(data))
    text = messages(entry_copy)
    assert "this is not the image that was judged" in text and image.name in text


def test_missing_image_is_reported(entry_copy: Path) -> None:
    image = sorted((entry_copy / "images").iterdir())[0]
    image.unlink()
    assert "the image file does not exist" in messages(entry_copy)


@pytest.mark.parametrize("image,message", [
    ("/etc/passwd", "is absolute"),
    ("../../etc/passwd", "'..' segment"),
    ("images\\x.png", "backslash"),
])
def test_image_paths_stay_inside(entry_copy: Path, image: str, message: str) -> None:
    header, records = read_export(entry_copy)
    records[0]["image"] = image
    write_export(entry_copy, header, records)
    assert message in messages(entry_copy)


def test_symlinked_image_leaving_the_folder(entry_copy: Path, tmp_path: Path) -> None:
    header, records = read_export(entry_copy)
    target = entry_copy / records[0]["image"]
    outside = tmp_path / "outside.png"
    shutil.copy(target, outside)  # same bytes: only the location is wrong
    for r in records:
        if r["image"] == records[0]["image"]:
            r["image"] = "images/link.png"
    (entry_copy / "images" / "link.png").symlink_to(outside)
    write_export(entry_copy, header, records)
    assert "leads outside the submission folder" in messages(entry_copy)


@pytest.mark.parametrize("path,message", [
    ("../export.jsonl", "'..' segment"),
    ("/tmp/export.jsonl", "is absolute"),
    ("missing.jsonl", "does not exist in the folder"),
])
def test_export_path_rules(entry_copy: Path, path: str, message: str) -> None:
    edit_manifest(entry_copy, 'path = "export.jsonl"', f"path = {json.dumps(path)}")
    text = messages(entry_copy)
    assert "export.path: " in text and message in text


def test_symlinked_export_leaving_the_folder(entry_copy: Path, tmp_path: Path) -> None:
    shutil.move(entry_copy / "export.jsonl", tmp_path / "export.jsonl")
    (entry_copy / "export.jsonl").symlink_to(tmp_path / "export.jsonl")
    assert "leads outside the submission folder" in messages(entry_copy)


def test_oversized_export(entry_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_module, "MAX_EXPORT_BYTES", 1000)
    assert "an export may have at most 1000" in messages(entry_copy)


def test_typed_scores_in_a_reproduced_manifest_are_refused(entry_copy: Path) -> None:
    (entry_copy / MANIFEST_NAME).write_text((entry_copy / MANIFEST_NAME).read_text() + "\n[scores]\noverall = 0.99\n")
    assert "reproduced entries' numbers are recomputed, not typed" in messages(entry_copy)


Records = list[dict[str, Any]]


def drop_prompt(h: dict[str, Any], rs: Records) -> None:
    rs[:] = [r for r in rs if r["prompt_index"] != 84]


def uneven(h: dict[str, Any], rs: Records) -> None:
    rs[:] = [r for r in rs if not (r["prompt_index"] == 3 and r["sample_index"] == 2)]


def repeat_sample(h: dict[str, Any], rs: Records) -> None:
    rs[1] = {**rs[1], "sample_index": 0}


def set_key(key: str, value: Any, where: int = 0) -> Callable[[dict[str, Any], Records], None]:
    def edit(h: dict[str, Any], rs: Records) -> None:
        rs[where][key] = value
    return edit


def set_header(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any], Records], None]:
    def edit(h: dict[str, Any], rs: Records) -> None:
        target = h
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def no_seed(h: dict[str, Any], rs: Records) -> None:
    del h["seed"]


def unknown_key(h: dict[str, Any], rs: Records) -> None:
    rs[0]["extra"] = 1


def missing_score(h: dict[str, Any], rs: Records) -> None:
    rs[0]["scores"] = {}


def partial_cost(h: dict[str, Any], rs: Records) -> None:
    rs[0].pop("cost")


@pytest.mark.parametrize("edit,message", [
    (drop_prompt, "1 prompt(s) of the suite have no candidates, the first 00084"),
    (uneven, "prompt 00003 has 2 candidates but most prompts have 3"),
    (repeat_sample, "prompt 00000: sample indices [0, 0, 2] are not 0..2"),
    (set_key("tag", "counting"), "tag/prompt 'counting'"),
    (set_key("prompt", "a photo of a cat"), "are not the suite's"),
    (set_key("tag", "attribute"), "tag 'attribute' is not one of GenEval's"),
    (set_key("correct", "yes"), "correct must be true or false"),
    (set_key("sha256", "abc"), "sha256 is malformed"),
    (set_key("detections", {"cup": [{"box": [1, 2, 3], "score": 0.5}]}), "needs box [x1, y1, x2, y2]"),
    (set_key("prompt_index", 999), "prompt_index 999 is outside the suite"),
    (unknown_key, "has unknown key(s) extra"),
    (no_seed, "the header lacks seed"),
    (missing_score, "scores are for [], but the header names verifiers ['scripted']"),
    (partial_cost, "carry a cost; give it on every line or on none"),
    (set_key("cost", {"generator_seconds": -1.0, "verifier_seconds": {"scripted": 0.1}}),
     "cost.generator_seconds must be >= 0.0"),
    (set_key("cost", {"generator_seconds": 1.0, "verifier_seconds": {}}), "give a time for every verifier"),
    (set_key("scores", {"scripted": "high"}), "the score of 'scripted' must be a finite number"),
    (set_key("reason", "x" * 2001), "reason is longer than 2000 characters"),
    (set_header(("evaluator", "settings"), {"options": {"a": 1}}), "evaluator.settings.options must be a string"),
    (set_header(("verifiers",), {"scripted": "short"}), "settings hash of verifier 'scripted' is malformed"),
    (set_header(("format",), "other"), "format must be 'stepwise-export'"),
    (set_header(("version",), 2), "is not one this harness reads"),
    (set_header(("suite", "hash"), "0" * 64), "is not that of GenEval's 85-prompt suite"),
    (set_header(("suite", "prompts"), 86), "is no size of GenEval's suite"),
    (set_header(("suite", "name"), "other"), "leaderboard entries are of 'geneval' or 'geneval2' runs"),
    (set_header(("run_id",), "not-a-hash"), "run_id is malformed"),
])
def test_export_rejections(entry_copy: Path, edit: Callable[[dict[str, Any], Records], None], message: str) -> None:
    header, records = read_export(entry_copy)
    edit(header, records)
    write_export(entry_copy, header, records)
    text = messages(entry_copy)
    assert message in text, text
    assert "export.jsonl" in text  # the problem names the file


def test_broken_json_in_an_export(entry_copy: Path) -> None:
    path = entry_copy / "export.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{oops", *lines[1:], "NaN"]) + "\n")
    text = messages(entry_copy)
    assert "line 2: not valid JSON" in text
    path.write_text("{oops\n")
    assert "line 1: not valid JSON" in messages(entry_copy)
    path.write_text("")
    assert "empty: expected a header line" in messages(entry_copy)


@pytest.mark.parametrize("old,new,message", [
    ('generator = "shapes"', 'generator = "show-o"', "system.generator 'show-o' is not the export's generator"),
    ("seed = 0", "seed = 1", "protocol.seed 1 is not the export's run seed 0"),
    (f"images_per_prompt = {POOL}", "images_per_prompt = 4", f"is not the export's {POOL} candidates per prompt"),
    ('backend = "hf"', 'backend = "mmdet"', "evaluator.backend 'mmdet' is not the export's 'hf'"),
    ("threshold = 0.05", "threshold = 0.3", "evaluator.settings differ"),
    ('strategy = "best-of-n"', 'strategy = "beam-search"', "cannot be recomputed from an export"),
    ('verifiers = ["scripted"]', 'verifiers = ["parm"]', "'parm' has no scores in the export"),
    ('verifiers = ["scripted"]', "verifiers = []", "best-of-n selects by exactly one verifier"),
    (f"n = {N}", "n = 4", f"{POOL} candidates per prompt, fewer than system.n = 4"),
])
def test_manifest_must_agree_with_the_export(entry_copy: Path, old: str, new: str, message: str) -> None:
    edit_manifest(entry_copy, old, new)
    assert message in messages(entry_copy)


def test_strategy_none_is_the_mean_over_images(entry_copy: Path) -> None:
    edit_manifest(entry_copy, 'strategy = "best-of-n"', 'strategy = "none"')
    edit_manifest(entry_copy, 'verifiers = ["scripted"]', "verifiers = []")
    assert "strategy 'none' means one sample" in messages(entry_copy)
    edit_manifest(entry_copy, f"n = {N}", "n = 1")
    entry = load_entry(entry_copy)
    assert entry.scores["overall"] == pytest.approx(entry.curves["random"][0].overall)


# ---------------------------------------------------------------------------------------------
# the commands


def test_submit_refuses_an_existing_slug_then_force_replaces(run: dict[str, Any]) -> None:
    args = submit_args(run["run_id"], run["db"], run["flags"], run["subs"], "tiny")
    code, output = stepwise(*args)
    assert code == 1 and "exists; choose another --slug or pass --force" in output
    before = sorted(p.name for p in run["folder"].iterdir())
    code, output = stepwise(*args, "--force", "--no-images")
    assert code == 0, output
    entry = load_entry(run["folder"])
    assert all(r.image is None for r in entry.images) and not (run["folder"] / "images").exists()
    assert not list(run["subs"].glob("tiny.*"))  # no .partial or .old left behind
    code, output = stepwise(*args, "--force")  # back to the fixture's state for the other tests
    assert code == 0, output
    assert sorted(p.name for p in run["folder"].iterdir()) == before


@pytest.mark.parametrize("extra,message", [
    (["--slug", "Bad Slug"], "1 to 64 of a-z"),
    (["--strategy", "none"], "--strategy none means one sample: --n 1"),
    (["--threshold", "0.3"], "have no verdict by hf with these evaluator settings"),
    (["--link", "ftp://x"], "--link: link:"),
    (["--alignment", "Iterative DPO"], "--alignment: system.alignment:"),
])
def test_submit_errors(run: dict[str, Any], tmp_path: Path, extra: list[str], message: str) -> None:
    code, output = stepwise(*submit_args(run["run_id"], run["db"], run["flags"], tmp_path, "other"), *extra)
    assert code != 0 and message in output, output
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.partial").exists()


def test_submit_needs_a_known_run_and_a_verifier(run: dict[str, Any], tmp_path: Path) -> None:
    code, output = stepwise(*submit_args("0" * 64, run["db"], run["flags"], tmp_path, "x"))
    assert code == 1 and "no run '000" in output
    args = [a for a in submit_args(run["run_id"], run["db"], run["flags"], tmp_path, "x") if a != "scripted"]
    args.remove("--verifier")
    code, output = stepwise(*args)
    assert code == 2 and "best-of-n needs a --verifier" in output


def test_submit_refuses_an_image_changed_after_judging(run: dict[str, Any], tmp_path: Path) -> None:
    out = shutil.copytree(run["out"], tmp_path / "moved")  # the run folder "moved": stored paths are stale
    image = sorted((out / "images").iterdir())[0]
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF
    image.write_bytes(bytes(data))
    original = run["out"] / "images" / image.name
    hidden = tmp_path / "hidden.png"
    shutil.move(original, hidden)
    try:
        code, output = stepwise(*submit_args(run["run_id"], run["db"], run["flags"], tmp_path, "x"),
                                "--run-dir", str(out))
        assert code == 1 and "no longer matches the stored sha256" in output and image.name in output
        assert "the file changed after it was judged" in output
        code, output = stepwise(*submit_args(run["run_id"], run["db"], run["flags"], tmp_path, "y"))
        assert code == 1 and f"image {original} is missing" in output and "with --run-dir" in output
    finally:
        shutil.move(hidden, original)
    assert not list(tmp_path.glob("[xy]*"))


def test_validate_command(run: dict[str, Any], tmp_path: Path) -> None:
    code, output = stepwise("validate", str(run["folder"]))
    assert code == 0 and "ok" in output and "1 valid, 0 invalid" in output
    write_entry(tmp_path, "bad", REPORTED.replace("counting = 0.68", "counting = 68"))
    write_entry(tmp_path, "good", REPORTED)
    code, output = stepwise("validate", str(tmp_path))
    assert code == 1
    assert f"{tmp_path / 'bad' / MANIFEST_NAME}: scores.counting: must be a fraction" in output
    assert "1 valid, 1 invalid" in output
    code, output = stepwise("validate", str(tmp_path / "good"), str(tmp_path / "nope"))
    assert code == 1 and "does not exist" in output


def test_every_shipped_entry_validates() -> None:
    code, output = stepwise("validate", str(ROOT / "submissions"))
    assert code == 0, output
    entries, problems = load_all(ROOT / "submissions")
    assert not problems and len(entries) >= 30
    assert all(e.manifest.kind == "reported" and e.manifest.sources for e in entries)
    # every source is cited with a link
    assert all(s.url and s.url.startswith("https://") for e in entries for s in e.manifest.sources)
    assert os.path.isfile(ROOT / "submissions" / "README.md")


def test_an_escaping_image_path_is_reported_against_the_export(entry_copy: Path) -> None:
    header, records = read_export(entry_copy)
    records[0]["image"] = "/etc/passwd"
    write_export(entry_copy, header, records)
    with pytest.raises(SubmissionError) as err:
        load_entry(entry_copy)
    (problem,) = err.value.problems
    assert problem.file == "export.jsonl" and str(problem).startswith(str(entry_copy / "export.jsonl"))
    assert "prompt 00000 sample 0: image '/etc/passwd' is absolute" in problem.message
