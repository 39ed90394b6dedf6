"""The page link: the loaded models and the page's main choices as query parameters.

Models (``?model=<pretrained name>``, ``?path=<file>``): `load_from_query` loads what a link names into the session
(once per session and set of names, remembered in ``st.session_state['ks_query_loaded']``); `write_link` keeps
``st.query_params`` equal to the session's models. No cache of its own: loading goes through `app.store.loading`.

Choices (``?layer=1&L=4096&h=0&h=3&axes=log-log``): a widget made by one of `app.ui`'s linked helpers takes its
first value from the link (`initial`, validated by a parser; a bad value falls back to the default with a note,
never an exception) and writes its value back on every run (`remember`; a default value is left out of the URL).
`begin_run` / `drop_unused` (app/main.py, around the page) remove the choices of another page from the URL.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from app.store.files import check_readable_path, find_pretrained
from app.store.loading import ModelEntry, load_path
from app.store.session import add_model, models

#: The query parameters a link (and the page's own URL) carries the loaded models in: pretrained names, paths.
LINK_PARAMS = ("model", "path")
_LINK_MAX = 8  # per parameter
_DONE_KEY = "ks_query_loaded"


def _link_values(values) -> list[str]:
    return [str(v).strip() for v in values or [] if str(v).strip()][:_LINK_MAX]


def load_from_query(names, paths=()) -> list[str]:
    """Load the models a link names into the session; returns the errors (messages, never a traceback).

    ``names``: checkpoints of the pretrained folder (``?model=a&model=b``, by stem or file name); ``paths``: files
    on this machine (``?path=/data/x.safetensors``), loaded as the Models page's 'Path on disk' does. Runs once
    per session and set of names and paths, so that removing a model later does not bring it back."""
    names, paths = _link_values(names), _link_values(paths)
    done = st.session_state.setdefault(_DONE_KEY, set())
    key = (tuple(names), tuple(paths))
    if not (names or paths) or key in done:
        return []
    done.add(key)
    return _load_names(names) + _load_paths(paths)


def _load_names(names: list[str]) -> list[str]:
    """Load pretrained checkpoints by name into the session; returns the errors."""
    errors = []
    for n in names:
        path = find_pretrained(n)
        if path is None:
            errors.append(f"{n}: no checkpoint of that name in the pretrained folder (link parameter ?model={n}).")
            continue
        res = load_path(path, source="pretrained")
        if res.ok:
            add_model(res.entry)
        else:
            errors.append(res.error)
    return errors


def _load_paths(paths: list[str]) -> list[str]:
    """Load files on this machine into the session; returns the errors."""
    errors = []
    for p in paths:
        try:
            target = check_readable_path(p)  # $KERNELSCOPE_ALLOWED_DIRS holds for links as for the path box
        except ValueError as e:
            errors.append(f"{str(e).rstrip('.')}; the link names it in ?path=.")
            continue
        res = load_path(target, source="path")
        if res.ok:
            add_model(res.entry)
        else:
            errors.append(f"{res.error.rstrip('.')}; the link names it in ?path=.")
    return errors


def link_params(loaded: dict[str, ModelEntry] | None = None) -> dict[str, list[str]]:
    """The query parameters that load these models again (default: the session's): {'model': [pretrained names],
    'path': [files]}, in load order. Uploads are left out (a link cannot carry a file), and so are models loaded
    with kernel settings (reloading them without the settings would give another model)."""
    loaded = models() if loaded is None else loaded
    out: dict[str, list[str]] = {k: [] for k in LINK_PARAMS}
    for entry in loaded.values():
        if entry.settings or entry.source == "upload":
            continue
        if entry.source == "pretrained":
            p = Path(entry.path)
            out["model"].append(p.stem if find_pretrained(p.stem) == p else p.name)
        else:
            out["path"].append(entry.path)
    return {k: v[:_LINK_MAX] for k, v in out.items()}


def write_link() -> None:
    """Keep the page's URL (``st.query_params``) equal to `link_params`, so that a reload (F5), a page link or a
    shared URL loads the same models. Writes only what changed; other query parameters are left alone."""
    for key, values in link_params().items():
        if st.query_params.get_all(key) == values:
            continue
        if values:
            st.query_params[key] = values
        else:
            del st.query_params[key]


# ---------------------------------------------------------------------------------------------------- choices
_USED_KEY = "ks_link_used"  # the choice parameters this run's widgets read or wrote
_KNOWN: set[str] = set()  # every choice parameter a linked widget has used (process-wide; names, not values)


def begin_run() -> None:
    """Start a run: no choice parameter is in use yet (app/main.py, before the page runs)."""
    st.session_state[_USED_KEY] = set()


def _used() -> set[str]:
    return st.session_state.setdefault(_USED_KEY, set())


def initial(param: str, key: str, default: Any, parse: Callable[[list[str]], Any]) -> tuple[Any, str | None]:
    """The first value of the widget ``key`` linked to ``?param=``: (value, note or None).

    ``parse(values)`` turns the parameter's strings into the widget's value or raises ValueError with the reason.
    The link is read only while the widget has no state of its own (its first run in this session, e.g. after a
    reload); afterwards the widget keeps its value and ``default`` is returned unread. Without the parameter,
    or with a value ``parse`` refuses, it is ``default`` (the note then names the parameter and the reason)."""
    _KNOWN.add(param)
    _used().add(param)
    if key in st.session_state:
        return default, None
    raw = [str(v) for v in st.query_params.get_all(param)]
    if not raw:
        return default, None
    try:
        return parse(raw), None
    except (ValueError, TypeError) as e:
        shown = "&".join(f"{param}={v}" for v in raw)[:80]
        return default, f"The link's {shown} was not used ({e}); showing the default."


def remember(param: str, values: Sequence[str] | None) -> None:
    """Write ``?param=values`` into the URL (None or [] removes it); writes only a change."""
    _KNOWN.add(param)
    _used().add(param)
    values = [str(v) for v in values or []]
    if st.query_params.get_all(param) == values:
        return
    if values:
        st.query_params[param] = values
    elif param in st.query_params:
        del st.query_params[param]


def drop_unused() -> None:
    """Remove from the URL the choice parameters no widget of this run used (another page's, after a switch)."""
    used = _used()
    for param in sorted(_KNOWN - used - set(LINK_PARAMS)):
        if param in st.query_params:
            del st.query_params[param]


def parse_int(lo: int, hi: int, prefix: str = "") -> Callable[[list[str]], int]:
    """A parser of one whole number in [lo, hi] (an optional ``prefix`` such as 'layers.' is accepted)."""
    def parse(values: list[str]) -> int:
        text = values[-1].strip()
        if prefix and text.startswith(prefix):
            text = text[len(prefix):]
        try:
            v = int(text)
        except ValueError:
            raise ValueError("not a whole number") from None
        if not lo <= v <= hi:
            raise ValueError(f"not between {lo:,} and {hi:,}")
        return v
    return parse


def parse_int_list(lo: int, hi: int, max_n: int = 64) -> Callable[[list[str]], list[int]]:
    """A parser of whole numbers in [lo, hi] (repeated parameters or one comma-separated list; 'none': no
    number), without repeats."""
    one = parse_int(lo, hi)

    def parse(values: list[str]) -> list[int]:
        if [v.strip().lower() for v in values] == ["none"]:  # an empty choice
            return []
        items = [t for v in values for t in v.split(",") if t.strip()]
        if len(items) > max_n:
            raise ValueError(f"more than {max_n} values")
        return list(dict.fromkeys(one([t]) for t in items))
    return parse


def parse_option(options: Sequence[str], tokens: Sequence[str]) -> Callable[[list[str]], str]:
    """A parser of one of ``options`` named by its token (or its full label)."""
    def parse(values: list[str]) -> str:
        text = values[-1].strip()
        for opt, tok in zip(options, tokens, strict=True):
            if text.lower() in (tok.lower(), str(opt).lower()):
                return opt
        raise ValueError("choose one of " + ", ".join(tokens))
    return parse


def parse_bool(values: list[str]) -> bool:
    """'1' / 'true' / 'yes' / 'on' or '0' / 'false' / 'no' / 'off'."""
    text = values[-1].strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("use 1 or 0")


def parse_names(names: Sequence[str], max_n: int) -> Callable[[list[str]], list[str]]:
    """A parser of up to ``max_n`` of ``names`` (e.g. the loaded models), in the link's order."""
    def parse(values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in names]
        if unknown:
            raise ValueError(f"no loaded model {unknown[0]!r}")
        chosen = list(dict.fromkeys(values))
        if len(chosen) > max_n:
            raise ValueError(f"at most {max_n} models at once")
        return chosen
    return parse


def option_tokens(options: Sequence[str]) -> list[str]:
    """Short URL names of options: the first word of each label, lower case ('log-log (|k|)' -> 'log-log'), or
    the option's index when first words repeat."""
    tokens = [(re.split(r"[\s(]+", str(o).strip()) or [""])[0].lower() or str(i) for i, o in enumerate(options)]
    return tokens if len(set(tokens)) == len(tokens) else [str(i) for i in range(len(options))]
