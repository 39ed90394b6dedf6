"""Shared helpers for the AppTest (headless Streamlit) tests: the app's entry point and the check every run passes."""
from __future__ import annotations

from pathlib import Path

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
