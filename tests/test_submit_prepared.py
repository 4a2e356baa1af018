"""A leaderboard entry from a prepared run says which checkpoint made its images.

One module-wide `stepwise run --strategy dpo` trains a tiny Show-o on four pairs and generates one
image for each of GenEval's 85 prompts (`--per-task 1`), judged by the tiny GenEval models; `stepwise
submit --strategy none` turns it into an entry once. The tests check the entry's manifest, the
export header's `preparation` (against the store's link), `validate`, the built site, the refused
flags, and tamper with copies of the folder and the store.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise, tiny_showo_with_pairs
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.preparation import checkpoint_sha256
from harness.store import Preparation, open_store
from harness.submissions.load import SubmissionError, load_entry, names_verifier
from harness.submissions.model import MANIFEST_NAME

PROMPTS = ("a photo of a cup", "a photo of a red dog", "a photo of two cats", "a photo of a bench")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The dpo run over the whole 85-prompt suite (pool 1) and the entry `submit` made of it."""
    root = tmp_path_factory.mktemp("submit-prepared")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEPWISE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        params, pairs = tiny_showo_with_pairs(root, PROMPTS)
        flags = runner_plugins.tiny_model_flags(tmp_path_factory)
        db = f"sqlite:///{root / 'store.db'}"
        code, output = stepwise(
            "run", "--generator", "showo", *(a for k, v in params.items() for a in ("--param", f"{k}={v}")),
            "--per-task", "1", "--pool", "1", "--db", db, "--out", str(root / "out"), *flags,
            "--strategy", "dpo", "--strategy-param", f"pairs={pairs}", "--strategy-param", "batch_size=2",
            "--strategy-param", "lr=1e-3")
        assert code == 0, output
        run_id = output.strip().splitlines()[-1]
        (ckpt,) = (root / "out" / "prepare").iterdir()
        subs = root / "submissions"
        code, output = stepwise(*submit_args(run_id, db, flags, subs, "tiny-dpo"))
        assert code == 0, output
        yield {"root": root, "run_id": run_id, "db": db, "flags": flags, "pairs": pairs, "ckpt": ckpt,
               "subs": subs, "folder": subs / "tiny-dpo", "output": output}


def submit_args(run_id: str, db: str, flags: list[str], out: Path, slug: str, *extra: str) -> list[str]:
    return ["submit", run_id, "--name", "Tiny Show-o after DPO", "--slug", slug, "--db", db, "--strategy", "none",
            "--n", "1", "--out", str(out), *flags, *extra]


def read_export(folder: Path) -> tuple[dict[str, Any], list[str]]:
    lines = (folder / "export.jsonl").read_text().splitlines()
    return json.loads(lines[0]), lines[1:]


def write_header(folder: Path, header: dict[str, Any]) -> None:
    _, rest = read_export(folder)
    (folder / "export.jsonl").write_text("\n".join([json.dumps(header), *rest]) + "\n")


def edit_manifest(folder: Path, old: str, new: str) -> None:
    path = folder / MANIFEST_NAME
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new))


def problems(folder: Path) -> str:
    with pytest.raises(SubmissionError) as err:
        load_entry(folder)
    return "\n".join(str(p) for p in err.value.problems)


def stored_link(db: str) -> Any:
    engine = open_store(db, upgrade_schema=False)
    try:
        with Session(engine) as s:
            (link,) = s.scalars(select(Preparation)).all()
            s.expunge_all()
            return link
    finally:
        engine.dispose()


@pytest.fixture()
def entry_copy(prepared: dict[str, Any], tmp_path: Path) -> Path:
    return shutil.copytree(prepared["folder"], tmp_path / "tiny-dpo")


def test_submit_carries_the_checkpoint_into_the_entry(prepared: dict[str, Any]) -> None:
    entry = load_entry(prepared["folder"])
    system = entry.manifest.system
    assert (system.alignment, system.reward_guidance, system.strategy, system.n) == ("dpo", "none", "none", 1)
    link = stored_link(prepared["db"])
    header, _ = read_export(prepared["folder"])
    prep = header["preparation"]
    assert list(header)[-1] == "preparation"
    assert prep["checkpoint_sha256"] == link.checkpoint_sha256 == checkpoint_sha256(prepared["ckpt"])
    assert (prep["strategy"], prep["settings_hash"], prep["checkpoint"]) == (
        "dpo", link.settings_hash, str(prepared["ckpt"]))
    training = prep["training"]
    assert training["data"] == {"sha256": hashlib.sha256(prepared["pairs"].read_bytes()).hexdigest(), "pairs": 4}
    assert training["parameters"] == link.manifest["parameters"] and training["parameters"]["batch_size"] == 2
    assert training["parent"] == link.manifest["parent"] and "config.json" in training["parent"]["model_files"]
    assert training["steps"] == {"done": 2, "total": 2} and training["finished"] is True
    assert entry.preparation is not None and entry.preparation.checkpoint_sha256 == link.checkpoint_sha256
    assert f"generator checkpoint {link.checkpoint_sha256[:12]}… by dpo" in prepared["output"]
    assert "trained by dpo" in entry.manifest.description
    code, output = stepwise("validate", str(prepared["folder"]))
    assert code == 0 and "1 valid, 0 invalid" in output, output


def test_the_site_shows_the_alignment_block(prepared: dict[str, Any], tmp_path: Path) -> None:
    code, output = stepwise("leaderboard", "build", "--submissions", str(prepared["subs"]), "--out",
                            str(tmp_path / "site"), "--strict")
    assert code == 0, output
    digest = stored_link(prepared["db"]).checkpoint_sha256
    page = (tmp_path / "site" / "entry" / "tiny-dpo.html").read_text()
    block = page[page.index('<section id="alignment"'):page.index('<section id="provenance"')]
    assert f'data-strategy="dpo" data-checkpoint-sha256="{digest}"' in block
    assert f'<code class="sha256" title="{digest}" data-value="{digest}">{digest[:12]}…</code>' in block
    pairs_sha = hashlib.sha256(prepared["pairs"].read_bytes()).hexdigest()
    for text in ("<dd>dpo</dd>", "Training data sha256", f'title="{pairs_sha}"', "Parent model",
                 "Reward guidance verifier</dt>\n  <dd>none</dd>", "2 of 2 (finished)"):
        assert text in block, text
    (row,) = json.loads((tmp_path / "site" / "leaderboard.json").read_text())["entries"]
    assert row["preparation"]["checkpoint_sha256"] == digest and row["system"]["alignment"] == "dpo"


@pytest.mark.parametrize("extra,message", [
    (["--alignment", "none"], "--alignment: system.alignment is 'none', but the export's run generated with "
                              "checkpoint"),
    (["--alignment", "iterative-dpo"], "it must be 'dpo'"),
    (["--reward-guidance", "orm"], "--reward-guidance: system.reward_guidance is 'orm', but the checkpoint"),
])
def test_flags_that_contradict_the_run_are_refused(prepared: dict[str, Any], tmp_path: Path, extra: list[str],
                                                   message: str) -> None:
    code, output = stepwise(*submit_args(prepared["run_id"], prepared["db"], prepared["flags"], tmp_path, "x"),
                            *extra)
    assert code == 2 and message in output, output
    assert f"run {prepared['run_id'][:12]}… generated its images with generator checkpoint" in output
    assert "Leave the flag out" in output and not list(tmp_path.iterdir())


def test_flags_that_agree_with_the_run_are_taken(prepared: dict[str, Any], tmp_path: Path) -> None:
    code, output = stepwise(*submit_args(prepared["run_id"], prepared["db"], prepared["flags"], tmp_path, "x"),
                            "--alignment", "dpo", "--reward-guidance", "none", "--no-images")
    assert code == 0, output
    assert load_entry(tmp_path / "x").manifest.system.alignment == "dpo"


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        target = header["preparation"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        del header["preparation"][key]
    return edit


def _null(header: dict[str, Any]) -> None:
    header["preparation"] = None


@pytest.mark.parametrize("edit,message", [
    (_set(("checkpoint_sha256",), "abc123"), "preparation.checkpoint_sha256 is malformed: 'abc123'"),
    (_set(("checkpoint_sha256",), "A" * 64), "preparation.checkpoint_sha256 is malformed"),
    (_set(("settings_hash",), 7), "preparation.settings_hash must be a string"),
    (_set(("origin",), "x"), "preparation has unknown key(s) origin"),
    (_drop("checkpoint"), "preparation lacks checkpoint"),
    (_null, "preparation (leave the key out for a run without one) must be a JSON object"),
    (_set(("strategy",), "Dee PO"), "preparation.strategy is malformed"),
    (_set(("checkpoint",), "x" * 513), "preparation.checkpoint is longer than 512 characters"),
    (_set(("training", "data", "sha256"), "0" * 63), "preparation.training.data.sha256 is malformed"),
    (_set(("training", "data", "path"), "/secret"), "preparation.training.data has unknown key(s) path"),
    (_set(("training", "parameters", "beta"), [0.1]), "preparation.training.parameters.beta must be a string, "
                                                      "number, boolean, null or a flat object of strings"),
    (_set(("training", "parameters", "reward_params"), {"model": {"x": 1}}),
     "preparation.training.parameters.reward_params.model must be a string"),
    (_set(("training", "parent", "model_files"), {"config.json": "nope"}),
     "the sha256 of preparation.training.parent.model_files.config.json is malformed"),
    (_set(("training", "steps", "done"), -1), "preparation.training.steps.done must be an integer >= 0"),
    (_set(("training", "finished"), "yes"), "preparation.training.finished must be true or false"),
])
def test_a_malformed_preparation_fails_validation(entry_copy: Path, edit: Callable[[dict[str, Any]], None],
                                                  message: str) -> None:
    header, _ = read_export(entry_copy)
    edit(header)
    write_header(entry_copy, header)
    text = problems(entry_copy)
    assert f"{entry_copy / 'export.jsonl'}: line 1 (the header): " in text and message in text, text
    code, output = stepwise("validate", str(entry_copy))
    assert code == 1 and message in output and "0 valid, 1 invalid" in output


def test_a_manifest_must_agree_with_the_preparation(entry_copy: Path) -> None:
    edit_manifest(entry_copy, 'alignment = "dpo"', 'alignment = "none"')
    text = problems(entry_copy)
    assert f"{entry_copy / MANIFEST_NAME}: system.alignment is 'none', but the export's run generated with " \
           "checkpoint" in text and "inconsistent; it must be 'dpo'" in text
    edit_manifest(entry_copy, 'alignment = "none"', 'alignment = "dpo"')
    edit_manifest(entry_copy, 'reward_guidance = "none"', 'reward_guidance = "parm"')
    assert "was trained without reward guidance" in problems(entry_copy)
    header, _ = read_export(entry_copy)  # as if training had been guided by the orm verifier
    header["preparation"]["training"]["parameters"]["reward_verifier"] = "orm"
    write_header(entry_copy, header)
    assert "with reward guidance by verifier 'orm': inconsistent; it must name it" in problems(entry_copy)
    edit_manifest(entry_copy, 'reward_guidance = "parm"', 'reward_guidance = "ft-orm"')
    entry = load_entry(entry_copy)
    assert entry.preparation is not None and entry.preparation.reward_verifier == "orm"


def test_an_export_without_a_preparation_still_loads(entry_copy: Path) -> None:
    """Exports written before `preparation` existed (or of runs without one) are as they were."""
    header, _ = read_export(entry_copy)
    del header["preparation"]
    write_header(entry_copy, header)
    entry = load_entry(entry_copy)
    assert entry.preparation is None and entry.manifest.system.alignment == "dpo"  # a free label, as before


def test_names_verifier() -> None:
    assert names_verifier("orm", "orm") and names_verifier("ft-orm", "orm") and names_verifier("orm-ft", "orm")
    assert names_verifier("ft-orm-v2", "orm") and names_verifier("x-orm-zero", "orm-zero")
    assert not any(names_verifier(label, "orm") for label in ("parm", "storm", "none", "orm_ft"))


def _add_link(db: str, **changes: Any) -> None:
    """Another link for the run, a copy of the first with `changes` (written directly: `add_preparation`
    refuses other weights)."""
    engine = open_store(db, upgrade_schema=False)
    try:
        with Session(engine) as s, s.begin():
            link = s.scalars(select(Preparation).order_by(Preparation.id)).first()
            fields = {f: getattr(link, f) for f in ("run_id", "strategy", "settings_hash", "params", "checkpoint",
                                                    "checkpoint_sha256", "manifest")}
            s.add(Preparation(**{**fields, **changes}))
    finally:
        engine.dispose()


def test_several_links_to_one_checkpoint_are_used_and_different_ones_refused(prepared: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    db_file = tmp_path / "copy.db"
    shutil.copy(prepared["root"] / "store.db", db_file)
    db = f"sqlite:///{db_file}"
    link = stored_link(db)
    # the same weights with a selection verifier (what `--strategy-param verifier=...` records)
    _add_link(db, settings_hash="1" * 64, params={**link.params, "verifier": "clipscore"})
    code, output = stepwise(*submit_args(prepared["run_id"], db, prepared["flags"], tmp_path / "subs", "two"),
                            "--no-images")
    assert code == 0, output
    header, _ = read_export(tmp_path / "subs" / "two")
    assert header["preparation"]["settings_hash"] == link.settings_hash  # the link selecting as the entry does
    _add_link(db, settings_hash="2" * 64, checkpoint="elsewhere/ckpt", checkpoint_sha256="3" * 64)
    code, output = stepwise(*submit_args(prepared["run_id"], db, prepared["flags"], tmp_path / "subs", "three"))
    assert code == 1, output
    assert f"run {prepared['run_id'][:12]}… is linked to 3 prepared checkpoints that differ" in output
    assert f"{prepared['ckpt']}, sha256 {link.checkpoint_sha256[:12]}…" in output
    assert "elsewhere/ckpt, sha256 333333333333…" in output and "cannot be submitted" in output
    assert not (tmp_path / "subs" / "three").exists()
