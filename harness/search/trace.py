"""A search's trace read back as paths: where each was pruned, the previews it showed, its scores.

`trace_paths(events)` follows the path ids the harness wrote into the trace
(`harness.search.ledger`): a path is started (seed) or forked (parent, seed), advanced, previewed,
scored by verifiers, kept or dropped, finished, and maybe picked. The entry page's per-prompt trace
view shows one row per path. Only JSON is read; nothing is trusted beyond its shape (a trace in a
submission is data from strangers: odd events are skipped, never an error).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PathView", "result_text", "rewrote_prompt", "trace_paths"]


def rewrote_prompt(events: Iterable[Any], prompt: str) -> bool:
    """Whether a search generated from a prompt other than `prompt` (the harness's start events say)."""
    return any(isinstance(e, Mapping) and e.get("event") == "start" and isinstance(e.get("prompt"), str)
               and e["prompt"] != prompt for e in events)


@dataclass
class PathView:
    path: str
    traj: int
    seed: int | None = None
    parent: str | None = None
    reached: int = 0  # steps done when last seen
    fate: str = "stopped"  # picked, finished, complete (ran every step), dropped, stopped (truncated early)
    fate_step: int = 0
    previews: list[tuple[int, str]] = field(default_factory=list)  # (step, image sha256) in order
    scores: list[tuple[int | None, str]] = field(default_factory=list)  # (step, "verifier.method: result")


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


def result_text(result: Any) -> str:
    """A verifier result of the trace in a few words: its scalar fields, as `key value`."""
    if not isinstance(result, Mapping):
        return _number(result)
    parts = [f"{k} {_number(v)}" for k, v in result.items()
             if isinstance(v, bool | int | float | str) and k != "details"]
    return ", ".join(parts[:6])


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def trace_paths(events: Iterable[Any]) -> list[PathView]:
    """One PathView per path of the trace, in the order the paths appeared."""
    paths: dict[str, PathView] = {}
    total: int | None = None
    for event in events:
        if not isinstance(event, Mapping):
            continue
        kind = event.get("event")
        ids = _strs(event.get("paths"))
        traj = event.get("traj") if isinstance(event.get("traj"), int) else 0
        if kind == "start":
            if isinstance(event.get("total_steps"), int):
                total = event["total_steps"]
            seeds = event.get("seeds") if isinstance(event.get("seeds"), list) else []
            for i, path in enumerate(ids):
                seed = seeds[i] if i < len(seeds) and isinstance(seeds[i], int) else None
                paths[path] = PathView(path, traj, seed)
        elif kind == "fork":
            parent = event.get("parent") if isinstance(event.get("parent"), str) else None
            at = event.get("at") if isinstance(event.get("at"), int) else 0
            for path in ids:
                seed = event.get("seed") if isinstance(event.get("seed"), int) else None
                paths[path] = PathView(path, traj, seed, parent, at)
        elif kind == "keep":
            copies = event.get("copies") if isinstance(event.get("copies"), Mapping) else {}
            for new, old in copies.items():
                if isinstance(old, str) and old in paths and new not in paths:
                    source = paths[old]
                    paths[new] = PathView(new, traj, source.seed, old, source.reached)
            for path in _strs(event.get("dropped")):
                if path in paths:
                    paths[path].fate, paths[path].fate_step = "dropped", paths[path].reached
        elif kind in ("advance", "finish"):
            reached = event.get("to") if isinstance(event.get("to"), list) else None
            for i, path in enumerate(ids):
                if path not in paths:
                    continue
                view = paths[path]
                if kind == "finish":
                    steps = event.get("steps") if isinstance(event.get("steps"), list) else []
                    if i < len(steps) and isinstance(steps[i], int):
                        view.reached += steps[i]
                    view.fate, view.fate_step = "finished", view.reached
                elif reached is not None and i < len(reached) and isinstance(reached[i], int):
                    view.reached = reached[i]
        elif kind == "preview":
            at = event.get("at") if isinstance(event.get("at"), list) else []
            for i, (path, sha) in enumerate(zip(ids, _strs(event.get("images")), strict=False)):
                if path in paths:
                    step = at[i] if i < len(at) and isinstance(at[i], int) else paths[path].reached
                    paths[path].previews.append((step, sha))
        elif kind == "score":
            where = event.get("paths") if isinstance(event.get("paths"), list) else []
            at = event.get("at") if isinstance(event.get("at"), list) else []
            results = event.get("results") if isinstance(event.get("results"), list) else []
            name = f"{event.get('verifier')}.{event.get('method')}"
            for i, path in enumerate(where):
                if isinstance(path, str) and path in paths and i < len(results):
                    step = at[i] if i < len(at) and isinstance(at[i], int) else None
                    paths[path].scores.append((step, f"{name}: {result_text(results[i])}"))
        elif kind == "pick":
            path = event.get("path")
            if isinstance(path, str) and path in paths:
                paths[path].fate, paths[path].fate_step = "picked", paths[path].reached
    for view in paths.values():
        if view.fate == "stopped":
            view.fate_step = view.reached
            if total is not None and view.reached >= total:
                view.fate = "complete"  # ran every step without finish(): e.g. PARM's never-clear paths
    return list(paths.values())
