"""Where stepwise finds its plug-ins: one typed registry per kind, filled with placeholders.

    generators  Registry[type[Generator]]        entry-point group stepwise.generators
    verifiers   Registry[type[Verifier]]         entry-point group stepwise.verifiers
    strategies  Registry[type[Strategy]]         entry-point group stepwise.strategies
    suites      Registry[type[Suite]]            entry-point group stepwise.suites
    backends    Registry[type[DetectorBackend]]  built-in GenEval detector backends only

A registry entry is a placeholder: a "module:attr" string (built-ins, registered below with a
one-line description), an `importlib.metadata.EntryPoint` (third-party packages), or an object.
Nothing is imported until `get(name)`, which imports the target, checks it against the kind's
Protocol, caches it, and raises errors that name what is available and where things came from.

Finding and loading are separate steps. `discover()` reads installed package metadata only
(no import) and returns sorted `PluginInfo(kind, name, package, version, value, ...)` records;
a registry folds them in on its first lookup. Every entry keeps its provenance, so a run can
store the package name and version of each plug-in it used (`registry.info(name).provenance()`).

Third-party entry points load automatically unless
  * `STEPWISE_DISABLE_PLUGIN_AUTOLOAD=1` is set (tests/conftest.py sets it), or
  * an allowlist is given, by `STEPWISE_PLUGINS=pkg1,pkg2`, by `configure(plugins=[...])` or by a
    `plugins=` argument: then exactly the listed packages load, autoload or not, so a leaderboard
    re-run names every third-party package it depends on.
stepwise's own package ("stepwise-bench") is always enabled. `require_plugin("pkg")` fails early,
with what to do, when a package is missing, has no stepwise entry points, or is not enabled.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from harness import __version__

if TYPE_CHECKING:
    from harness.geneval.backends.base import DetectorBackend
    from harness.plugins import Generator, Strategy, Verifier
    from harness.suites import Suite

__all__ = [
    "ALLOW_ENV",
    "AUTOLOAD_ENV",
    "BUILTIN_PACKAGE",
    "GROUPS",
    "REGISTRIES",
    "PluginConflictError",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PluginRequiredError",
    "Registry",
    "UnknownPluginError",
    "backend_class",
    "backends",
    "configure",
    "configured",
    "discover",
    "generators",
    "require_plugin",
    "reset",
    "strategies",
    "suites",
    "verifiers",
]

T = TypeVar("T")

#: plug-in kind -> entry-point group third-party packages declare their plug-ins in
GROUPS: dict[str, str] = {
    "generator": "stepwise.generators",
    "verifier": "stepwise.verifiers",
    "strategy": "stepwise.strategies",
    "suite": "stepwise.suites",
}
AUTOLOAD_ENV = "STEPWISE_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "STEPWISE_PLUGINS"
#: our own distribution: its plug-ins are built-ins, enabled whatever the autoload settings say
BUILTIN_PACKAGE = "stepwise-bench"


# ---------------------------------------------------------------------------------------------
# errors


class PluginError(Exception):
    """Base of the registry's errors; the message says what to do."""


class UnknownPluginError(PluginError, LookupError, ValueError):
    """No plug-in of that kind has that name (or alias). Also a ValueError, as before the registry."""


class PluginConflictError(PluginError):
    """Two sources claim one name; the message names both."""


class PluginLoadError(PluginError, ImportError):
    """A plug-in could not be imported, or is not what its kind requires."""

    def __init__(self, message: str, info: PluginInfo) -> None:
        super().__init__(message)
        self.info = info
        self.package = info.package
        self.entry_point = info.value


class PluginRequiredError(PluginError):
    """`require_plugin` found the package missing, without stepwise plug-ins, or not enabled."""


# ---------------------------------------------------------------------------------------------
# what is known about a plug-in without importing it


@dataclass(frozen=True, order=True)
class PluginInfo:
    """One registered or discovered plug-in, from metadata alone. Sorts by kind, name, package."""

    kind: str  # "generator", "verifier", "strategy", "suite" or "backend"
    name: str
    package: str  # distribution name, e.g. "stepwise-bench"
    version: str  # distribution version
    value: str  # the target, "module:attr" (an entry point's value)
    description: str = ""  # one line: the built-in's own, or the third-party distribution's Summary
    aliases: tuple[str, ...] = ()
    builtin: bool = False  # shipped with stepwise itself
    enabled: bool = True  # False: installed but not loaded (autoload off, or not in the allowlist)

    def provenance(self) -> dict[str, str]:
        """What a run stores about the plug-in it used."""
        return {"kind": self.kind, "name": self.name, "package": self.package, "version": self.version,
                "entry_point": self.value}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        return out

    def source(self) -> str:
        """Where the entry comes from, for error messages."""
        group = GROUPS.get(self.kind)
        if self.builtin or group is None:
            return f"{self.package} {self.version} ({self.value})"
        return f"package {self.package} {self.version} (entry point '{self.name} = {self.value}' in {group})"


def _normalize(package: str) -> str:
    """PEP 503 name normalisation: "Stepwise_Example" and "stepwise-example" are one package."""
    return re.sub(r"[-_.]+", "-", package).lower().strip()


# ---------------------------------------------------------------------------------------------
# autoload settings and discovery (metadata only, never an import)

_configured: frozenset[str] | None = None  # set by configure(plugins=...)


def autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def allowed_packages(plugins: Iterable[str] | None = None) -> frozenset[str] | None:
    """The explicit allowlist (env, configure() and `plugins` together), or None when none is given."""
    names: set[str] = set()
    given = False
    env = os.environ.get(ALLOW_ENV, "")
    if env.strip():
        given = True
        names.update(n for n in env.split(",") if n.strip())
    if _configured is not None:
        given = True
        names.update(_configured)
    if plugins is not None:
        given = True
        names.update(plugins)
    return frozenset(_normalize(n) for n in names) if given else None


def _enabled(package: str, allowed: frozenset[str] | None) -> bool:
    if _normalize(package) == BUILTIN_PACKAGE:
        return True
    if allowed is not None:
        return _normalize(package) in allowed
    return not autoload_disabled()


def not_loaded_reason(plugins: Iterable[str] | None = None) -> str:
    """Why an installed third-party plug-in is not enabled, and what to do about it."""
    if allowed_packages(plugins) is not None:
        why = f"not in the allowed plug-in packages ({ALLOW_ENV} / --plugin)"
    else:
        why = f"{AUTOLOAD_ENV} is set"
    return f"{why}; allow a package with --plugin PACKAGE or {ALLOW_ENV}=PACKAGE"


def _iter_entry_points(kinds: Iterable[str], allowed: frozenset[str] | None,
                       include_disabled: bool) -> Iterator[tuple[PluginInfo, md.EntryPoint]]:
    summaries: dict[str, str] = {}
    for kind in kinds:
        # entry_points() keeps the first distribution of each name on sys.path, as imports do.
        for ep in md.entry_points(group=GROUPS[kind]):
            dist = ep.dist
            package = dist.name if dist is not None else "(unknown package)"
            version = dist.version if dist is not None else "?"
            if package not in summaries:
                summary = (dist.metadata.get_all("Summary") or [""])[0] if dist is not None else ""
                summaries[package] = " ".join(str(summary).split())
            enabled = _enabled(package, allowed)
            if enabled or include_disabled:
                builtin = _normalize(package) == BUILTIN_PACKAGE
                yield PluginInfo(kind, ep.name, package, version, ep.value, summaries[package],
                                 builtin=builtin, enabled=enabled), ep


def discover(kinds: Iterable[str] | None = None, *, plugins: Iterable[str] | None = None,
             include_disabled: bool = False) -> list[PluginInfo]:
    """Entry-point plug-ins of installed packages, sorted, from package metadata alone (no import).

    kinds: a subset of GROUPS' keys (default: all of them). plugins: an allowlist of package names
    added to the environment's. include_disabled: also list installed plug-ins that are not
    enabled (their `enabled` is False).
    """
    kinds = list(GROUPS) if kinds is None else list(kinds)
    unknown = [k for k in kinds if k not in GROUPS]
    if unknown:
        raise ValueError(f"no entry-point group for {', '.join(unknown)}; kinds: {', '.join(GROUPS)}")
    allowed = allowed_packages(plugins)
    return sorted(info for info, _ in _iter_entry_points(kinds, allowed, include_disabled))


def _split_requirement(requirement: str) -> tuple[str, str | None]:
    name, sep, version = requirement.partition("==")
    return name.strip(), (version.strip() or None) if sep else None


def require_plugin(requirement: str, *, plugins: Iterable[str] | None = None) -> list[PluginInfo]:
    """Fail early unless package `requirement` ("pkg" or "pkg==1.2") provides enabled stepwise plug-ins.

    Returns its plug-ins. The message says whether to install it, fix the version, or allow it.
    """
    package, version = _split_requirement(requirement)
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        raise PluginRequiredError(
            f"plug-in package {package!r} is required but not installed (pip install {package})") from None
    if version is not None and dist.version != version:
        raise PluginRequiredError(f"plug-in package {package} {version} is required, but {dist.version} "
                                  f"is installed (pip install '{package}=={version}')")
    mine = [i for i in discover(plugins=plugins, include_disabled=True) if _normalize(i.package) ==
            _normalize(package)]
    if not mine:
        raise PluginRequiredError(f"package {package} {dist.version} is installed but declares no stepwise "
                                  f"plug-ins (entry-point groups: {', '.join(GROUPS.values())})")
    if not all(i.enabled for i in mine):
        raise PluginRequiredError(f"plug-in package {package} {dist.version} is installed but not loaded: "
                                  f"{not_loaded_reason(plugins)}")
    return mine


def configure(plugins: Iterable[str] | None) -> None:
    """Set the process-wide plug-in allowlist (the CLI's --plugin), checking each package first.

    None clears it. Registries re-read entry points on their next lookup.
    """
    global _configured
    names = None if plugins is None else frozenset(_split_requirement(p)[0] for p in plugins)
    for requirement in plugins or ():
        require_plugin(requirement, plugins=names)
    _configured = names
    for reg in REGISTRIES.values():
        reg.forget_discovered()


@contextmanager
def configured(plugins: Iterable[str] | None) -> Iterator[None]:
    """`configure(plugins)` for a block, then the previous allowlist again (commands and tests)."""
    global _configured
    before = _configured
    configure(plugins)
    try:
        yield
    finally:
        _configured = before
        for reg in REGISTRIES.values():
            reg.forget_discovered()


def reset() -> None:
    """Forget the allowlist and every discovered entry point (tests; after installing a package)."""
    global _configured
    _configured = None
    for reg in REGISTRIES.values():
        reg.forget_discovered()


# ---------------------------------------------------------------------------------------------
# conformance to a kind's Protocol


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return re.match(r"^\s*(typing\.)?ClassVar\b", annotation) is not None
    return getattr(annotation, "__origin__", None) is ClassVar or annotation is ClassVar


def _protocol_members(proto: type) -> tuple[list[str], list[str]]:
    """(methods, class attributes) a Protocol declares; instance attributes can't be checked on a class."""
    methods: list[str] = []
    class_attrs: list[str] = []
    for klass in reversed(proto.__mro__):
        if not getattr(klass, "_is_protocol", False) or klass.__name__ in ("Protocol", "Generic"):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and callable(value) and name not in methods:
                methods.append(name)
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if not name.startswith("_") and _is_classvar(annotation) and name not in class_attrs:
                class_attrs.append(name)
    return methods, class_attrs


def conformance_problems(obj: Any, base: type) -> list[str]:
    """What keeps class `obj` from being a `base` (a Protocol: checked structurally); [] when nothing."""
    if not isinstance(obj, type):
        return [f"expected a class, got {type(obj).__name__} {obj!r}"]
    if not getattr(base, "_is_protocol", False):
        return [] if issubclass(obj, base) else [f"{obj.__qualname__} is not a subclass of {base.__qualname__}"]
    methods, class_attrs = _protocol_members(base)
    problems = [f"missing method {m}()" for m in methods if not callable(getattr(obj, m, None))]
    problems += [f"missing class attribute {a}" for a in class_attrs if not hasattr(obj, a)]
    if "Params" in class_attrs and hasattr(obj, "Params"):
        from harness.plugins import check_params_class

        try:
            check_params_class(obj.Params)
        except TypeError as err:
            problems.append(str(err))
    return problems


def _import_target(value: str) -> Any:
    module_name, _, attr = value.partition(":")
    obj = importlib.import_module(module_name.strip())
    for part in attr.strip().split(".") if attr.strip() else ():
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------
# the registry


@dataclass
class _Entry:
    info: PluginInfo
    target: Any  # object, "module:attr" or md.EntryPoint
    discovered: bool = False  # came from an entry point (dropped by forget_discovered)


@dataclass(eq=False)
class Registry(Generic[T]):
    """Named placeholders for one kind of plug-in, imported on `get` and checked against `base`.

    base: the class or Protocol every entry must satisfy, or its "module:attr" (imported at the
    first `get`, so that declaring a registry imports nothing); a tuple of them when an entry may
    satisfy any one (a strategy is a selection rule or a search strategy). group: the entry-point
    group to discover third-party entries from (None: built-ins only).
    """

    kind: str
    base: type | str | tuple[type | str, ...]
    group: str | None = None
    _entries: dict[str, _Entry] = field(default_factory=dict, repr=False)
    _names: dict[str, str] = field(default_factory=dict, repr=False)  # name or alias -> canonical name
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)
    _discovered: bool = field(default=False, repr=False)

    # ---- registering

    def register(self, name: str, target: Any, *, description: str = "", aliases: Sequence[str] = (),
                 package: str = BUILTIN_PACKAGE, version: str = __version__) -> PluginInfo:
        """Add a placeholder: an object, a "module:attr" string or an EntryPoint. Nothing is imported.

        A name or alias already taken by another target raises PluginConflictError naming both;
        registering the same target under the same name again is a no-op.
        """
        if isinstance(target, md.EntryPoint):
            value = target.value
        elif isinstance(target, str):
            if ":" not in target:
                raise ValueError(f"{self.kind} {name!r}: target {target!r} is not 'module:attr'")
            value = target
        else:
            value = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
        info = PluginInfo(self.kind, name, package, version, value, description, tuple(aliases),
                          builtin=_normalize(package) == BUILTIN_PACKAGE)
        return self._add(info, target, discovered=False)

    def _add(self, info: PluginInfo, target: Any, *, discovered: bool) -> PluginInfo:
        if not info.name or any(c.isspace() for c in info.name):
            raise ValueError(f"{self.kind} name {info.name!r} from {info.source()} is empty or has spaces")
        for key in (info.name, *info.aliases):
            owner = self._names.get(key)
            if owner is None:
                continue
            other = self._entries[owner].info
            if other.name == info.name and other.value == info.value:
                return other  # the same plug-in twice (e.g. a built-in also listed in our pyproject)
            raise PluginConflictError(f"{self.kind} name {key!r} is claimed twice: by {other.source()} "
                                      f"and by {info.source()}; uninstall one, or rename it")
        if len(set(info.aliases) | {info.name}) != len(info.aliases) + 1:
            raise PluginConflictError(f"{self.kind} {info.name!r}: repeated name in aliases {info.aliases}")
        self._entries[info.name] = _Entry(info, target, discovered)
        for key in (info.name, *info.aliases):
            self._names[key] = info.name
        return info

    def _ensure_discovered(self) -> None:
        if self._discovered or self.group is None:
            return
        self._discovered = True  # set first: a conflict below must not leave a half-read state behind
        try:
            for info, ep in _iter_entry_points([self.kind], allowed_packages(), include_disabled=False):
                self._add(info, ep, discovered=True)
        except PluginConflictError:
            self.forget_discovered()
            raise

    def forget_discovered(self) -> None:
        """Drop entry-point entries (and what was loaded from them); they are re-read on the next lookup."""
        for name in [n for n, e in self._entries.items() if e.discovered]:
            del self._entries[name]
            self._loaded.pop(name, None)
        self._names = {k: v for k, v in self._names.items() if v in self._entries}
        self._discovered = False

    # ---- reading without importing

    def names(self) -> list[str]:
        """Canonical names, sorted (aliases not included)."""
        self._ensure_discovered()
        return sorted(self._entries)

    def infos(self) -> list[PluginInfo]:
        self._ensure_discovered()
        return sorted(e.info for e in self._entries.values())

    def info(self, name: str) -> PluginInfo:
        """Provenance and description of `name` (or an alias), without importing it."""
        return self._entries[self._canonical(name)].info

    def __contains__(self, name: object) -> bool:
        self._ensure_discovered()
        return isinstance(name, str) and name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _canonical(self, name: str) -> str:
        self._ensure_discovered()
        if name in self._names:
            return self._names[name]
        available = ", ".join(self.names()) or "(none)"
        message = f"unknown {self.kind} {name!r}; available: {available}"
        close = difflib.get_close_matches(name, list(self._names), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        if self.group is not None:
            hidden = [i for i, _ in _iter_entry_points([self.kind], allowed_packages(), include_disabled=True)
                      if i.name == name and not i.enabled]
            for i in hidden:
                message += (f". {self.kind.capitalize()} {name!r} is installed by {i.package} {i.version} "
                            f"but not loaded: {not_loaded_reason()}")
        raise UnknownPluginError(message)

    # ---- loading

    def _resolved_base(self) -> type | tuple[type, ...]:
        """The base, imported (a tuple of bases stays a tuple)."""
        bases = self.base if isinstance(self.base, tuple) else (self.base,)
        resolved = tuple(cast(type, _import_target(b)) if isinstance(b, str) else b for b in bases)
        self.base = resolved if isinstance(self.base, tuple) else resolved[0]
        return self.base

    def _bases(self) -> tuple[type, ...]:
        base = self._resolved_base()
        return base if isinstance(base, tuple) else (base,)

    def get(self, name: str) -> T:
        """Import `name` (or an alias), check it against the kind's base, cache and return it."""
        canonical = self._canonical(name)
        if canonical in self._loaded:
            return cast(T, self._loaded[canonical])
        entry = self._entries[canonical]
        info = entry.info
        try:
            if isinstance(entry.target, md.EntryPoint):
                obj = entry.target.load()
            elif isinstance(entry.target, str):
                obj = _import_target(entry.target)
            else:
                obj = entry.target
        except Exception as err:
            raise PluginLoadError(f"cannot load {self.kind} {info.name!r} from {info.source()}: "
                                  f"{type(err).__name__}: {err}", info) from err
        bases = self._bases()
        found = [conformance_problems(obj, base) for base in bases]
        if all(found):  # it must be one of them (usually there is one)
            why = "; nor ".join(f"a {base.__qualname__}: {'; '.join(problems)}"
                                for base, problems in zip(bases, found, strict=True))
            raise PluginLoadError(f"{self.kind} {info.name!r} from {info.source()} is not {why}", info)
        self._loaded[canonical] = obj
        return cast(T, obj)


# ---------------------------------------------------------------------------------------------
# the registries, and the built-ins (one registration path: a string and a one-line description)

generators: Registry[type[Generator]] = Registry("generator", "harness.plugins:Generator", GROUPS["generator"])
verifiers: Registry[type[Verifier]] = Registry("verifier", "harness.plugins:Verifier", GROUPS["verifier"])
# A strategy is a selection rule (select_key) or a search strategy (search); either may have prepare().
strategies: Registry[type[Strategy]] = Registry("strategy", ("harness.plugins:Strategy",
                                                             "harness.plugins:SearchStrategy"), GROUPS["strategy"])
backends: Registry[type[DetectorBackend]] = Registry("backend", "harness.geneval.backends.base:DetectorBackend")
suites: Registry[type[Suite]] = Registry("suite", "harness.suites:Suite", GROUPS["suite"])

REGISTRIES: dict[str, Registry[Any]] = {
    "generator": generators,
    "verifier": verifiers,
    "strategy": strategies,
    "suite": suites,
    "backend": backends,
}

backends.register("mmdet", "harness.geneval.backends.mmdet_backend:MMDetBackend",
                  description="GenEval's reference detector: Mask2Former Swin-S through mmdetection "
                              "(needs the mmdet extra).")
backends.register("hf", "harness.geneval.backends.hf_backend:HFMask2FormerBackend",
                  description="Mask2Former Swin-S via transformers (HF weights, not GenEval's), "
                              "post-processed as mmdet does.")

suites.register("geneval", "harness.geneval.suite:GenevalSuite",
                description="GenEval: 553 prompts in six tasks, judged by an object detector and a colour "
                            "classifier (overall: the mean over tasks).")
suites.register("geneval2", "harness.geneval2.suite:Geneval2Suite",
                description="GenEval 2: 800 prompts from the user's data file (data=PATH), Soft-TIFA on Qwen3-VL "
                            "(overall: Soft-TIFA GM).")

generators.register("showo", "harness.generators.showo.generator:ShowoGenerator",
                    description="Show-o (Phi-1.5 + MAGVIT-v2 tokens, MaskGIT decoding), the paper's baseline; "
                                "DPO checkpoints are a `model` parameter.")
generators.register("janus", "harness.generators.janus:JanusGenerator",
                    description="Janus-Pro 1B/7B through transformers (raster-order image tokens, CFG).")
generators.register("diffusers", "harness.generators.diffusion.generator:DiffusersGenerator",
                    description="Diffusion/flow pipelines through diffusers (SD 1.5/2.1, SDXL, SD3, FLUX, PixArt, "
                                "Sana): per-candidate seeds, x0 previews, step control.")
generators.register("folder", "harness.generators.folder:FolderGenerator",
                    description="Images made elsewhere, read from a GenEval-layout folder (no model runs).")

verifiers.register("orm", "harness.verifiers.vlm:OutcomeVerifier",
                   description="Outcome reward: a VLM's P(\"yes\") that the final image matches the prompt "
                               "(the paper's ORM question; LLaVA-OneVision, Qwen2-VL, ...).")
verifiers.register("prm", "harness.verifiers.vlm:ProcessVerifier",
                   description="Process reward: the ORM question on every step preview, aggregated (min, mean, last).")
verifiers.register("parm", "harness.verifiers.vlm:ParmVerifier",
                   description="PARM: clarity judgement, potential assessment at the first clear step, then the ORM "
                               "score among survivors (fallback: lowest P(\"no\")).")
verifiers.register("clipscore", "harness.verifiers.clipscore:ClipScoreVerifier",
                   description="CLIPScore: cosine similarity of open_clip image and prompt embeddings "
                               "(ViT-L-14-quickgelu, openai).")
verifiers.register("vqascore", "harness.verifiers.vqascore:VqaScoreVerifier",
                   description="VQAScore: a VLM's P(\"Yes\") that the image shows the prompt (any transformers VLM).")
verifiers.register("pickscore", "harness.verifiers.preference:PickScoreVerifier",
                   description="PickScore: logit scale x cosine of PickScore's CLIP-H image and prompt embeddings.")
verifiers.register("hpsv2", "harness.verifiers.preference:HpsV2Verifier",
                   description="HPS v2/v2.1: cosine of the HPS-tuned open_clip ViT-H-14 image and prompt embeddings.")
verifiers.register("ensemble", "harness.verifiers.ensemble:EnsembleVerifier",
                   description="Ensemble of the run's other verifiers' scores within a prompt (rank mean or z-sum).")
verifiers.register("oracle", "harness.verifiers.reference:OracleVerifier",
                   description="GenEval's own verdict (1 correct, 0 not): what a perfect verifier reaches.")
verifiers.register("random", "harness.verifiers.reference:RandomVerifier",
                   description="A seeded uniform score: the floor; its exact curve equals the mean accuracy.")


strategies.register("baseline", "strategies.builtin:BaselineStrategy",
                    description="The generator alone: one candidate per sample (any candidate: the curve is flat at "
                                "the mean accuracy).")
strategies.register("best-of-n", "strategies.builtin:BestOfNStrategy",
                    description="Best-of-N: the candidate one verifier scores highest.")
strategies.register("parm", "strategies.builtin:ParmStrategy",
                    description="PARM's selection: potential filter, ORM score among survivors, fallback to the "
                                "lowest P(\"no\").")
strategies.register("oracle", "strategies.builtin:OracleStrategy",
                    description="GenEval itself as the selector: the upper bound a perfect verifier reaches.")
strategies.register("random", "strategies.builtin:RandomStrategy",
                    description="A uniformly random candidate: the floor (its curve is the mean accuracy).")
strategies.register("dpo", "strategies.alignment:DPOStrategy",
                    description="DPO: trains the generator on preference pairs before the run (prepare stage), "
                                "then the generator alone or best-of-n with `verifier`.")
strategies.register("parm-prune", "strategies.search.parm_prune:ParmPruneStrategy",
                    description="Search: PARM with real truncation (a 'no' potential stops the path's generation); "
                                "ORM among survivors, else the lowest P(no).")
strategies.register("step-beam", "strategies.search.beam:StepBeamStrategy",
                    description="Search: beam search over generation steps, a verifier on previews, forks of the "
                                "k best.")
strategies.register("noise-search", "strategies.search.noise:NoiseSearchStrategy",
                    description="Search: over the initial noise (Ma et al. 2025), random (= best-of-n) or zero-order "
                                "(neighbours of a pivot noise).")
strategies.register("smc", "strategies.search.smc:SmcStrategy",
                    description="Search: particle resampling by intermediate rewards in the style of FK steering.")
strategies.register("adaptive-n", "strategies.search.adaptive:AdaptiveNStrategy",
                    description="Search: candidates in batches until the verifier's score passes tau (or the budget).")
strategies.register("reflect", "strategies.search.reflect:ReflectStrategy",
                    description="Search: PARM++-style reflection (substitute judge: the orm engine, yes/no + one "
                                "sentence); feedback or a rewritten prompt.")
strategies.register("iterative-dpo", "strategies.alignment:IterativeDPOStrategy",
                    description="Iterative DPO: rounds of run, curate and DPO on a training suite before the run "
                                "(prepare stage), then the generator alone or best-of-n with `verifier`.")


def backend_class(name: str) -> type[DetectorBackend]:
    """Import and return the detector backend class registered under `name` in `backends`.

    Raises UnknownPluginError (a ValueError) listing the available names.
    """
    return backends.get(name)
