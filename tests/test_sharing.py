"""Serving the app to a team (issue 12.6): the folders the path box may read ($KERNELSCOPE_ALLOWED_DIRS, resolved so
that ``..`` and symbolic links cannot escape), the upload folder kept within a size and an age (oldest first, never
a file a live session has loaded), and load warnings in the app's words (issue 12: settings, ``bandlimit``)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from app.store import files
from app.store.files import ALLOWED_DIRS_ENV, check_readable_path, clean_uploads

REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "app" / "main.py")


# ---------------------------------------------------------------------------------------------------- allowed dirs
def test_unrestricted_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv(ALLOWED_DIRS_ENV, raising=False)
    assert files.allowed_dirs() is None
    assert check_readable_path(f" {tmp_path}/../x.pt ") == Path(f"{tmp_path}/../x.pt")  # as typed, trimmed
    for bad, msg in (("", "Give the path"), ("   ", "Give the path"), ("a\x00b", "NUL")):
        with pytest.raises(ValueError, match=msg):
            check_readable_path(bad)


def test_allowed_dirs_resolve_dotdot_and_symlinks(monkeypatch, tmp_path):
    ok_dir, other, secret = tmp_path / "models", tmp_path / "more", tmp_path / "secret"
    for d in (ok_dir, other, secret):
        d.mkdir()
    (ok_dir / "sub").mkdir()
    (ok_dir / "a.pt").write_bytes(b"x")
    (secret / "s.pt").write_bytes(b"x")
    (ok_dir / "link-out.pt").symlink_to(secret / "s.pt")  # a link inside pointing outside
    (ok_dir / "dir-out").symlink_to(secret)
    alias = tmp_path / "alias"
    alias.symlink_to(ok_dir)  # the allowed folder named through a link
    monkeypatch.setenv(ALLOWED_DIRS_ENV, f"{alias}{os.pathsep} {other} ")
    assert files.allowed_dirs() == (ok_dir.resolve(), other.resolve())
    assert check_readable_path(str(ok_dir / "a.pt")) == (ok_dir / "a.pt").resolve()
    assert check_readable_path(str(alias / "sub" / ".." / "a.pt")) == (ok_dir / "a.pt").resolve()
    assert check_readable_path(str(other / "new.pt")) == (other / "new.pt").resolve()
    for escape in (ok_dir / ".." / "secret" / "s.pt", ok_dir / "link-out.pt", ok_dir / "dir-out" / "s.pt",
                   Path("/etc/passwd"), Path(f"{ok_dir}-evil/a.pt")):
        with pytest.raises(ValueError, match=f"reads checkpoint files only from .*\\${ALLOWED_DIRS_ENV}"):
            check_readable_path(str(escape))


def test_models_page_path_box_respects_allowed_dirs(app_env, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(app_env / "digits-s4.safetensors", outside / "s4.safetensors")
    monkeypatch.setenv(ALLOWED_DIRS_ENV, str(app_env))
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    assert not at.exception
    for path in (outside / "s4.safetensors", app_env / ".." / outside.name / "s4.safetensors"):
        at.text_input(key="path-input").set_value(str(path))
        at.button[[b.label for b in at.button].index("Load")].click().run()
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and "reads checkpoint files only from" in errors[0], errors
        assert not at.session_state["ks_models"]
    at.text_input(key="path-input").set_value(str(app_env / "digits-s4.safetensors"))
    at.button[[b.label for b in at.button].index("Load")].click().run()
    assert not at.error and [s.value for s in at.success] == ["Loaded **digits-s4**."]


# ---------------------------------------------------------------------------------------------------- uploads
def _put(folder: Path, name: str, size: int, age_s: float, now: float) -> Path:
    p = folder / name[:4] / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\0" * size)
    os.utime(p, (now - age_s, now - age_s))
    return p


def test_clean_uploads_age_then_size_oldest_first(tmp_path):
    now = time.time()
    up = tmp_path / "uploads"
    old = _put(up, "old1.pt", 100, 30 * 3600, now)            # over the age
    a = _put(up, "aaaa.pt", 400, 3 * 3600, now)               # oldest within the age
    b = _put(up, "bbbb.pt", 400, 2 * 3600, now)
    c = _put(up, "cccc.pt", 400, 1 * 3600, now)               # newest
    removed = clean_uploads(up, max_bytes=900, max_age_s=24 * 3600, now=now)
    assert removed == [old, a]  # age first, then the oldest until 800 <= 900 bytes
    assert not old.parent.exists() and not a.parent.exists()  # their (now empty) folders too
    assert b.exists() and c.exists()
    assert clean_uploads(up, max_bytes=900, max_age_s=24 * 3600, now=now) == []  # within limits: nothing


def test_clean_uploads_never_removes_a_file_in_use(tmp_path):
    now = time.time()
    up = tmp_path / "uploads"
    a = _put(up, "aaaa.pt", 500, 48 * 3600, now)
    b = _put(up, "bbbb.pt", 500, 2 * 3600, now)
    c = _put(up, "cccc.pt", 500, 1 * 3600, now)
    files.mark_uploads_in_use("session-1", [a])  # a live session has loaded the oldest file
    try:
        removed = clean_uploads(up, keep=[c], max_bytes=0, max_age_s=24 * 3600, now=now)
        assert removed == [b] and a.exists() and c.exists()
        files.mark_uploads_in_use("session-1", [])  # the session removed it: it may go now
        assert clean_uploads(up, max_bytes=10**6, max_age_s=24 * 3600, now=now) == [a]
    finally:
        files.mark_uploads_in_use("session-1", [])


def test_upload_limits_from_the_environment(monkeypatch):
    monkeypatch.delenv(files.UPLOADS_MAX_MB_ENV, raising=False)
    monkeypatch.delenv(files.UPLOADS_MAX_AGE_ENV, raising=False)
    assert files.upload_limits() == (2048 * 2**20, 24 * 3600.0)
    monkeypatch.setenv(files.UPLOADS_MAX_MB_ENV, "1.5")
    monkeypatch.setenv(files.UPLOADS_MAX_AGE_ENV, "0.5")
    assert files.upload_limits() == (int(1.5 * 2**20), 1800.0)
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(files.UPLOADS_MAX_MB_ENV, bad)
        with pytest.raises(ValueError, match=files.UPLOADS_MAX_MB_ENV):
            files.upload_limits()


# ---------------------------------------------------------------------------------------------------- wording
def test_load_warnings_in_the_apps_words():
    from app.store.settings import SETTINGS_BOX, SETTINGS_CHOICES, app_wording

    w = "S4D v4: 'dt_transform' is not stored in x.ckpt; assumed 'softplus' (v4 config). Pass dt_transform=... to override."
    out = app_wording(w)
    assert "Pass" not in out and "=..." not in out
    assert out.startswith("S4D v4: 'dt_transform' is not stored in x.ckpt; assumed 'softplus' (v4 config). ")
    assert f"choose dt_transform under '{SETTINGS_BOX}' on the Models page" in out
    assert "under 'Other settings'" in app_wording("x. Pass l_max=... to override.")  # not in the choices
    assert app_wording("nothing to change") == "nothing to change"
    assert "bandlimit" in SETTINGS_CHOICES and 0.5 in SETTINGS_CHOICES["bandlimit"][0]


def test_models_page_offers_bandlimit(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60).run()
    assert not at.exception
    box = at.selectbox(key="setting-bandlimit")
    assert box.value is None  # "from the file" unless chosen
    assert box.options == ["from the file", "0.5", "1.0", "2.0"]
