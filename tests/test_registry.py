"""Plug-in registries, discovery, autoload control, parameters and `stepwise list`.

Third-party plug-ins come from tests/fixtures/example_plugin without pip: each test writes a
`*.dist-info` (METADATA + entry_points.txt) into a temporary folder put on sys.path, which is
all importlib.metadata needs to find a distribution. Hermetic, fast, nothing installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from click.testing import CliRunner

from harness import registry
from harness.cli import main
from harness.plugins import (
    Cost,
    GenerationRequest,
    Generator,
    ParamsError,
    Strategy,
    Verifier,
    VerifierScore,
    canonical_json,
    param,
    params_schema,
    parse_params,
)
from harness.registry import (
    PluginConflictError,
    PluginLoadError,
    PluginRequiredError,
    Registry,
    UnknownPluginError,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).parent / "fixtures" / "example_plugin"
EXAMPLE_MODULE = "stepwise_example"


def third_party(reg: registry.Registry) -> list[str]:
    """The names a registry holds besides stepwise's own built-ins (which grow issue by issue)."""
    return [name for name in reg.names() if not reg.info(name).builtin]



def write_dist(site: Path, name: str, version: str, entry_points: Mapping[str, Mapping[str, str]],
               summary: str = "") -> Path:
    """An installed-looking distribution: what pip would leave in site-packages, minus the code."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n")
    lines = []
    for group, eps in entry_points.items():
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in eps.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


def _forget_example_modules() -> None:
    for name in [m for m in sys.modules if m == EXAMPLE_MODULE or m.startswith(EXAMPLE_MODULE + ".")]:
        del sys.modules[name]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty site folder on sys.path; autoload as tests/conftest.py sets it (off), no allowlist."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))  # also invalidates importlib's caches
    monkeypatch.delenv(registry.ALLOW_ENV, raising=False)
    monkeypatch.setenv(registry.AUTOLOAD_ENV, "1")
    _forget_example_modules()
    registry.reset()
    yield folder
    registry.reset()
    _forget_example_modules()


@pytest.fixture
def example(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example plug-in package 'installed' into `site`, with entry points read from its pyproject."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    write_dist(site, project["name"], project["version"], project["entry-points"], project["description"])
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return site


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.AUTOLOAD_ENV)
    registry.reset()


# ----------------------------------------------------------------------------- discovery


def test_discovery_reads_metadata_without_importing(example: Path, autoload: None) -> None:
    infos = registry.discover()
    assert [(i.kind, i.name, i.package, i.version, i.value) for i in infos] == [
        ("generator", "solid", "stepwise-example", "0.3.0", "stepwise_example:SolidColorGenerator"),
        ("strategy", "best-score", "stepwise-example", "0.3.0", "stepwise_example:BestScore"),
        ("verifier", "brightness", "stepwise-example", "0.3.0", "stepwise_example:BrightnessVerifier"),
    ]
    assert all(i.enabled and not i.builtin and i.description.startswith("Example stepwise") for i in infos)
    assert third_party(registry.generators) == ["solid"]
    assert registry.generators.info("solid").provenance() == {
        "kind": "generator", "name": "solid", "package": "stepwise-example", "version": "0.3.0",
        "entry_point": "stepwise_example:SolidColorGenerator"}
    assert "solid" in registry.generators
    assert EXAMPLE_MODULE not in sys.modules


def test_get_imports_checks_and_caches(example: Path, autoload: None) -> None:
    from stepwise_example import BestScore, BrightnessVerifier, SolidColorGenerator

    generator_cls = registry.generators.get("solid")
    assert generator_cls is SolidColorGenerator
    assert registry.generators.get("solid") is generator_cls
    assert registry.verifiers.get("brightness") is BrightnessVerifier
    assert registry.strategies.get("best-score") is BestScore

    # The classes do what the Protocols say, end to end.
    generator = generator_cls(parse_params(generator_cls.Params, {"steps": "2"}))
    assert isinstance(generator, Generator)
    [result] = generator.generate([GenerationRequest("a red cube", seeds=(1, 2, 3), previews=True)])
    assert len(result.images) == 3 and [len(p) for p in result.previews] == [2, 2, 2]
    assert result.cost == Cost(forward_passes=6)
    verifier = BrightnessVerifier(parse_params(BrightnessVerifier.Params, {}))
    assert isinstance(verifier, Verifier) and verifier.needs_previews
    scores = verifier.score("a red cube", result.images, result.previews)
    assert len(scores) == 3 and all(len(s.step_scores) == 2 for s in scores)
    strategy = BestScore(parse_params(BestScore.Params, {"verifier": "brightness"}))
    assert isinstance(strategy, Strategy)
    assert strategy.select_key({"brightness": scores}) == [s.score for s in scores]


def test_broken_entry_point_names_package_and_entry_point(site: Path, autoload: None) -> None:
    write_dist(site, "broken-plugin", "1.2", {"stepwise.verifiers": {"bad": "broken_plugin_missing.mod:Nope"}})
    assert third_party(registry.verifiers) == ["bad"]  # listing still works: nothing imported yet
    with pytest.raises(PluginLoadError) as caught:
        registry.verifiers.get("bad")
    message = str(caught.value)
    assert "broken-plugin 1.2" in message
    assert "'bad = broken_plugin_missing.mod:Nope' in stepwise.verifiers" in message
    assert "ModuleNotFoundError" in message
    assert caught.value.package == "broken-plugin"
    assert caught.value.entry_point == "broken_plugin_missing.mod:Nope"


def test_entry_point_that_is_not_the_right_kind(example: Path, site: Path, autoload: None) -> None:
    write_dist(site, "confused", "0.1", {"stepwise.generators": {"not-a-generator": "stepwise_example:BestScore"}})
    with pytest.raises(PluginLoadError, match=r"confused 0\.1.*is not a Generator: missing method generate\(\)"):
        registry.generators.get("not-a-generator")


def test_params_must_be_a_frozen_dataclass() -> None:
    class Loose:
        description: ClassVar[str] = "x"

        @dataclass
        class Params:
            steps: int = 1

        def generate(self, requests: list[GenerationRequest]) -> list:
            return []

    reg: Registry[type] = Registry("generator", Generator)
    reg.register("loose", Loose)
    with pytest.raises(PluginLoadError, match="must be a frozen dataclass"):
        reg.get("loose")


def test_two_packages_claiming_one_name(example: Path, site: Path, autoload: None) -> None:
    write_dist(site, "copycat", "9.9", {"stepwise.generators": {"solid": "copycat:Solid"}})
    with pytest.raises(PluginConflictError) as caught:
        third_party(registry.generators)
    message = str(caught.value)
    assert "generator name 'solid' is claimed twice" in message
    assert "stepwise-example 0.3.0" in message and "copycat 9.9" in message
    # `stepwise list` reports it as an error, not a traceback.
    result = CliRunner().invoke(main, ["list", "generators"])
    assert result.exit_code == 1 and "claimed twice" in result.output


def test_builtin_and_alias_collisions_name_both_sources() -> None:
    reg: Registry[type] = Registry("verifier", Verifier)
    reg.register("orm", "pkg.orm:ORM", aliases=("outcome",), description="outcome reward model")
    reg.register("orm", "pkg.orm:ORM")  # the same target again is harmless
    with pytest.raises(PluginConflictError, match=r"'orm' is claimed twice: by stepwise-bench .*pkg\.orm:ORM.*other:X"):
        reg.register("orm", "other:X")
    with pytest.raises(PluginConflictError, match=r"'outcome' is claimed twice.*other:Y"):
        reg.register("orm2", "other:Y", aliases=("outcome",))
    assert reg.names() == ["orm"] and "outcome" in reg and reg.info("outcome").name == "orm"


def test_unknown_name_lists_available(example: Path, autoload: None) -> None:
    with pytest.raises(UnknownPluginError,
                       match=r"unknown generator 'soild'; available: .*solid \(did you mean 'solid'\?\)"):
        registry.generators.get("soild")
    with pytest.raises(UnknownPluginError, match=r"unknown verifier 'bightness'; available: .*brightness.* "
                                                 r"\(did you mean 'brightness'\?\)"):
        registry.verifiers.info("bightness")
    with pytest.raises(ValueError, match="unknown backend 'nope'; available: hf, mmdet"):
        registry.backends.get("nope")


# ----------------------------------------------------------------------------- autoload control


def test_autoload_disabled_hides_third_party_plugins(example: Path) -> None:
    assert registry.discover() == []
    hidden = registry.discover(include_disabled=True)
    assert {i.name for i in hidden} == {"solid", "brightness", "best-score"}
    assert not any(i.enabled for i in hidden)
    assert third_party(registry.generators) == []
    with pytest.raises(UnknownPluginError, match=r"installed by stepwise-example 0\.3\.0 but not loaded: "
                                                 r"STEPWISE_DISABLE_PLUGIN_AUTOLOAD is set; allow"):
        registry.generators.get("solid")
    assert registry.backends.names() == ["hf", "mmdet"]  # built-ins are never hidden
    assert EXAMPLE_MODULE not in sys.modules


@pytest.mark.parametrize("how", ["env", "argument", "configure"])
def test_allowlist_enables_named_packages(example: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "env":
        monkeypatch.setenv(registry.ALLOW_ENV, "other-package, Stepwise_Example")  # names normalise
        assert [i.name for i in registry.discover(["generator"])] == ["solid"]
        assert third_party(registry.generators) == ["solid"]
    elif how == "argument":
        assert [i.name for i in registry.discover(["generator"], plugins=["stepwise-example"])] == ["solid"]
    else:
        registry.configure(["stepwise-example==0.3.0"])
        assert third_party(registry.generators) == ["solid"]
        assert registry.verifiers.get("brightness").needs_previews


def test_allowlist_restricts_even_with_autoload_on(example: Path, site: Path, autoload: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_dist(site, "other-plugin", "1.0", {"stepwise.generators": {"other": "other_plugin:Gen"}})
    assert third_party(registry.generators) == ["other", "solid"]
    monkeypatch.setenv(registry.ALLOW_ENV, "stepwise-example")
    registry.reset()
    assert third_party(registry.generators) == ["solid"]
    with pytest.raises(UnknownPluginError, match="not in the allowed plug-in packages"):
        registry.generators.get("other")


def test_require_plugin_fails_early_and_clearly(example: Path, site: Path) -> None:
    with pytest.raises(PluginRequiredError, match=r"'no-such-plugin' is required but not installed \(pip install"):
        registry.require_plugin("no-such-plugin")
    with pytest.raises(PluginRequiredError, match="installed but not loaded: STEPWISE_DISABLE_PLUGIN_AUTOLOAD"):
        registry.require_plugin("stepwise-example")
    with pytest.raises(PluginRequiredError, match=r"stepwise-example 0\.2 is required, but 0\.3\.0 is installed"):
        registry.require_plugin("stepwise-example==0.2", plugins=["stepwise-example"])
    write_dist(site, "unrelated", "1.0", {"console_scripts": {"x": "y:z"}})
    with pytest.raises(PluginRequiredError, match="declares no stepwise plug-ins"):
        registry.require_plugin("unrelated")
    infos = registry.require_plugin("stepwise-example", plugins=["stepwise-example"])
    assert {i.kind for i in infos} == {"generator", "verifier", "strategy"}
    with pytest.raises(PluginRequiredError):
        registry.configure(["no-such-plugin"])


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True, kw_only=True)
class _Params:
    steps: int = param(50, help="Denoising steps.")
    guidance: float = param(7.5, help="CFG scale.")
    half: bool = param(False, help="fp16.")
    seeds: tuple[int, ...] = param((0,), help="Seeds.")
    scheduler: Literal["ddim", "euler"] = param("ddim", help="Sampler.")
    lora: str | None = param(None, help="LoRA weights.")
    model: str = param(help="Weights folder or hub id.")


def test_parse_params_converts_strings_and_checks_values() -> None:
    got = parse_params(_Params, {"model": "sd-1.5", "steps": "30", "guidance": "4", "half": "true",
                                 "seeds": "1, 2,3", "scheduler": "euler", "lora": "none"})
    assert got == _Params(model="sd-1.5", steps=30, guidance=4.0, half=True, seeds=(1, 2, 3), scheduler="euler")
    assert parse_params(_Params, {"model": "m", "guidance": 3, "seeds": [4]}) == _Params(model="m", guidance=3.0,
                                                                                        seeds=(4,))
    assert [p.name for p in params_schema(_Params) if p.required] == ["model"]
    assert params_schema(_Params)[0].help == "Denoising steps."


@pytest.mark.parametrize(("values", "keys", "text"), [
    ({"model": "m", "stpes": "3"}, ("stpes",), "unknown parameter 'stpes'; accepted: steps, guidance"),
    ({"model": "m", "steps": "many"}, ("steps",), "parameter 'steps': expected an integer, got 'many'"),
    ({"model": "m", "steps": True}, ("steps",), "expected an integer, got True"),
    ({"model": "m", "half": "maybe"}, ("half",), "parameter 'half': expected a boolean"),
    ({"model": "m", "scheduler": "heun"}, ("scheduler",), "expected one of 'ddim', 'euler', got 'heun'"),
    ({"model": "m", "seeds": "1,x"}, ("seeds",), "parameter 'seeds': expected an integer, got 'x'"),
    ({"steps": "3"}, ("model",), "missing required parameter 'model'"),
    ({"guidance": "x", "bogus": 1}, ("bogus", "model", "guidance"), "unknown parameter 'bogus'"),
])
def test_parse_params_names_the_bad_keys(values: dict, keys: tuple[str, ...], text: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(_Params, values, owner="generator 'sd'")
    assert sorted(caught.value.keys) == sorted(keys)
    assert str(caught.value).startswith("generator 'sd': ")
    assert text in str(caught.value)


def test_canonical_json_is_stable_and_strict() -> None:
    a = parse_params(_Params, {"model": "m", "seeds": "1,2"})
    b = _Params(seeds=(1, 2), model="m")
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == ('{"guidance":7.5,"half":false,"lora":null,"model":"m","scheduler":"ddim",'
                                 '"seeds":[1,2],"steps":50}')
    with pytest.raises(ValueError, match="canonical JSON"):
        canonical_json(_Params(model="m", guidance=float("nan")))

    @dataclass(frozen=True)
    class Odd:
        thing: object = object()

    with pytest.raises(TypeError, match=r"Odd\.thing: object has no canonical JSON form"):
        canonical_json(Odd())
    with pytest.raises(TypeError, match="frozen dataclass"):
        parse_params(dict, {})


def test_generation_request_checks_seeds() -> None:
    assert GenerationRequest("p", (3, 4)).n_candidates == 2
    with pytest.raises(ValueError, match="at least one seed"):
        GenerationRequest("p", ())
    assert VerifierScore(0.5).cost + Cost(1, 2, 0.5) == Cost(1, 2, 0.5)


# ----------------------------------------------------------------------------- stepwise list


def test_list_shows_builtins_and_third_party(example: Path) -> None:
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\n  hf +stepwise-bench 0\.1\.0  Mask2Former Swin-S via transformers", result.output)
    assert re.search(r"\n  showo +stepwise-bench 0\.1\.0  Show-o", result.output)
    assert "solid" not in result.output.split("Installed but not loaded")[0]
    assert "Installed but not loaded: stepwise-example 0.3.0 (STEPWISE_DISABLE_PLUGIN_AUTOLOAD is set" in result.output

    result = CliRunner().invoke(main, ["list", "generators", "--plugin", "stepwise-example"])
    assert result.exit_code == 0, result.output
    assert re.search(r"solid +stepwise-example 0\.3\.0 +stepwise_example:SolidColorGenerator +Example stepwise",
                     result.output)
    assert "backends" not in result.output
    assert EXAMPLE_MODULE not in sys.modules


def test_list_json(example: Path) -> None:
    result = CliRunner().invoke(main, ["list", "all", "--json", "--plugin", "stepwise-example"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["not_loaded"] == []
    rows = {(r["kind"], r["name"]): r for r in data["plugins"]}
    assert {key for key, row in rows.items() if not row["builtin"]} == {
        ("generator", "solid"), ("verifier", "brightness"), ("strategy", "best-score")}
    assert {("backend", "hf"), ("backend", "mmdet"), ("generator", "showo"), ("generator", "folder")} <= set(rows)
    assert rows["verifier", "brightness"]["package"] == "stepwise-example"
    assert rows["verifier", "brightness"]["version"] == "0.3.0"
    assert rows["backend", "mmdet"]["builtin"] is True
    assert "parameters" not in rows["generator", "solid"]
    assert EXAMPLE_MODULE not in sys.modules

    hidden = json.loads(CliRunner().invoke(main, ["list", "verifiers", "--json"]).output)
    assert not [r for r in hidden["plugins"] if not r["builtin"]]
    assert [r["name"] for r in hidden["not_loaded"]] == ["brightness"]


def test_list_load_shows_parameters_and_failures(example: Path, site: Path) -> None:
    result = CliRunner().invoke(main, ["list", "strategies", "--load", "--json", "--plugin", "stepwise-example"])
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.output)["plugins"] if not r["builtin"]]
    assert row["description"] == "Best-of-n by one verifier's score."
    assert row["parameters"] == [{"name": "verifier", "type": "str", "required": True, "default": None,
                                  "help": "The verifier whose score is the key."}]

    result = CliRunner().invoke(main, ["list", "generators", "--load", "--plugin", "stepwise-example"])
    assert "size: int = 8  Image width and height in pixels." in result.output

    write_dist(site, "broken-plugin", "1.2", {"stepwise.verifiers": {"bad": "broken_plugin_missing:Nope"}})
    result = CliRunner().invoke(main, ["list", "verifiers", "--load", "--plugin", "broken-plugin"])
    assert result.exit_code == 1
    assert "! cannot load verifier 'bad' from package broken-plugin 1.2" in result.output


def test_list_plugin_option_rejects_missing_package(site: Path) -> None:
    result = CliRunner().invoke(main, ["list", "--plugin", "no-such-plugin"])
    assert result.exit_code == 1
    assert "'no-such-plugin' is required but not installed" in result.output


def test_list_all_does_not_import_torch_or_plugins(example: Path) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from harness.cli import main\n"
        "for args in (['list', 'all'], ['list', 'all', '--json']):\n"
        "    r = CliRunner().invoke(main, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "    assert 'solid' in r.output and 'mmdet' in r.output, r.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'mmdet', 'numpy', 'PIL', 'stepwise_example',\n"
        "                     'harness.geneval.backends.base') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example), str(EXAMPLE), str(REPO)]),
           registry.ALLOW_ENV: "stepwise-example"}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, timeout=120)


# ----------------------------------------------------------------------------- detector backends


def test_backend_class_still_works() -> None:
    from harness.geneval.backends.base import DetectorBackend
    from harness.geneval.backends.hf_backend import HFMask2FormerBackend
    from harness.registry import backend_class
    from harness.registry import backends as BACKENDS

    assert backend_class("hf") is HFMask2FormerBackend
    assert "hf" in BACKENDS and "mmdet" in BACKENDS and ", ".join(BACKENDS) == "hf, mmdet"
    assert registry.backends.info("mmdet").description.startswith("GenEval's reference detector")
    assert registry.backends._resolved_base() is DetectorBackend
    with pytest.raises(ValueError, match="unknown backend 'yolo'; available: hf, mmdet"):
        backend_class("yolo")


def test_strategy_protocol_shape() -> None:
    class Mean:
        description: ClassVar[str] = "mean of two verifiers"

        @dataclass(frozen=True)
        class Params:
            pass

        def __init__(self, params: Params) -> None:
            self.verifiers = ("a", "b")

        def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
            return [(x.score + y.score) / 2 for x, y in zip(scores["a"], scores["b"], strict=True)]

    reg: Registry[type] = Registry("strategy", Strategy)
    reg.register("mean", Mean, description="mean")
    strategy = reg.get("mean")(Mean.Params())
    assert isinstance(strategy, Strategy)
    assert strategy.select_key({"a": [VerifierScore(1.0)], "b": [VerifierScore(0.0)]}) == [0.5]
    assert reg.info("mean").value.endswith(":test_strategy_protocol_shape.<locals>.Mean")
