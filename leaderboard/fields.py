"""Small pieces every page module shares: fragment-safe ids and labelled fields. Below `summarize` and
the page views (`search_view`, `verifiers`), which all import it and not each other for these."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Field", "html_id", "settings_text"]


def html_id(text: str) -> str:
    """A fragment-safe id part: lower-case letters, digits and '-' (for backends, verifiers)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


@dataclass(frozen=True)
class Field:
    label: str
    text: str
    url: str | None = None  # shown as a link when http(s)
    full: str | None = None  # a shortened hash's full value: shown as <code> with it in its title


def settings_text(value: Any) -> str:
    """A settings object as one line of sorted JSON (what the pages show of parameters)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
