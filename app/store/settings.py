"""Kernel settings as the Models page's settings box takes them, and their canonical form for cache keys.

No cache here: `settings_key` is the settings part of every cache key (sorted-key JSON).
"""
from __future__ import annotations

import json
import re

from sgconv_core.settings import OFFERED

#: Official kernel settings a foreign file may not hold, as the Models page's settings box offers them:
#: name -> (choices, help); the one table of load settings is `sgconv_core.settings`.
SETTINGS_CHOICES: dict[str, tuple[list, str]] = dict(OFFERED)

#: The box's title on the Models page (load warnings point to it).
SETTINGS_BOX = "Kernel settings the file may not hold"

_PASS_TO_OVERRIDE = re.compile(r"Pass ([A-Za-z_][A-Za-z0-9_]*)=\.\.\. to override\.?")


def app_wording(message: str) -> str:
    """A loader message in the app's words: "Pass dt_transform=... to override." (the Python API's wording)
    becomes where to choose that setting on the Models page."""
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name in SETTINGS_CHOICES:
            return (f"To override, choose {name} under '{SETTINGS_BOX}' on the Models page and load the file "
                    "again.")
        return (f"To override, give {name}=... under 'Other settings' in '{SETTINGS_BOX}' on the Models page "
                "and load the file again.")

    return _PASS_TO_OVERRIDE.sub(repl, str(message))

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def settings_key(settings: dict | None) -> str:
    """Canonical JSON of a settings dict (sorted keys) for cache keys."""
    return json.dumps(settings or {}, sort_keys=True, default=str)


def clean_settings(values: dict) -> dict:
    """Drop settings left at 'from the file' (None or '') so only the ones the user chose reach the loader."""
    return {k: v for k, v in values.items() if v is not None and v != ""}


def parse_extra_settings(text: str) -> dict:
    """Parse the free-form 'other settings' box: JSON object, or ``key=value`` pairs split by commas/newlines.

    Values are read as JSON where possible (numbers, true/false, null), else kept as strings.
    Raises ValueError with a readable message.
    """
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        return _parse_json_object(text)
    out = {}
    for part in re.split(r"[,\n]", text):
        part = part.strip()
        if part:
            k, v = _parse_pair(part)
            out[k] = v
    return out


def _parse_json_object(text: str) -> dict:
    try:
        out = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"other settings: not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(out, dict):
        raise ValueError("other settings: expected a JSON object such as {\"mode\": \"cat_randn\"}")
    return out


def _parse_pair(part: str) -> tuple[str, object]:
    """One ``key=value`` of the box: the value as JSON where it parses, else the string."""
    if "=" not in part:
        raise ValueError(f"other settings: {part!r} is not of the form key=value")
    k, v = (s.strip() for s in part.split("=", 1))
    if not _SETTING_NAME.fullmatch(k):
        raise ValueError(f"other settings: {k!r} is not a setting name")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v
