"""Shared helpers for the AppTest (headless Streamlit) tests: the app's entry point, the check every run passes,
and the page's plotly charts as decoded figure dicts."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "app" / "main.py")
PRE = REPO / "pretrained"


def ok(at):
    """Assert the last run raised nothing (not even into main.py's last guard, which shows "could not finish") and
    return the AppTest."""
    assert not at.exception, [e.value for e in at.exception]
    failed = [e.value for e in at.error if "could not finish" in e.value]
    assert not failed, failed
    return at


def decode(v):
    """Plotly JSON values: typed arrays ({dtype, bdata, shape}) to numpy, recursively."""
    if isinstance(v, dict):
        if "bdata" in v and "dtype" in v:
            a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
            if v.get("shape"):
                a = a.reshape([int(s) for s in str(v["shape"]).split(",")])
            return a
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def charts(at) -> list[dict]:
    """Every plotly chart on the page as a decoded figure dict."""
    return [decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def title(fig) -> str:
    t = fig["layout"].get("title", {})
    return t.get("text", "") if isinstance(t, dict) else str(t)


def chart(at, contains: str) -> dict:
    found = [f for f in charts(at) if contains in title(f)]
    assert found, f"no chart titled with {contains!r}; titles: {[title(f) for f in charts(at)]}"
    return found[0]
