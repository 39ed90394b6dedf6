"""The builtins, collections and _codecs names a pickle may call: constructors that copy a container the pickle
already holds, within the node budget (`MAX_NODES`), and plain scalar constructors."""
from __future__ import annotations

import collections

from .budget import Refused, _spend
from .stubs import _Global

_SCALARS = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _sized(x, what: str):
    if not isinstance(x, (str, bytes, bytearray, list, tuple, set, frozenset, dict, range)):
        raise Refused(f"{what}({type(x).__name__}) in the pickle: constructors only copy containers")
    _spend(len(x), what)
    return x


def _container(kind: type, what: str):
    def build(x=(), *rest, **kwargs):
        if rest or kwargs and kind not in (dict, collections.OrderedDict):
            raise Refused(f"{what} with extra arguments in the pickle")
        _spend(len(kwargs), what)
        return kind(_sized(x, what), **kwargs)
    return build


def _bytes_like(kind: type, what: str):
    def build(x=b"", *rest):
        if isinstance(x, int) or len(rest) > 2 or not all(isinstance(r, str) for r in rest):
            raise Refused(f"{what}({x!r:.40}) in the pickle: only copies of bytes or text are built")
        return kind(_sized(x, what), *rest)
    return build


def _scalar(kind: type, what: str):
    def build(*args):
        if len(args) > 3 or not all(isinstance(a, _SCALARS) for a in args):
            raise Refused(f"{what}(...) of something other than plain values in the pickle")
        return kind(*args)
    return build


def _defaultdict(*args):  # the default factory is dropped: nothing from the file is ever called later
    return collections.defaultdict()


def _codecs_encode(text=None, encoding="utf-8", errors="strict"):
    """_codecs.encode(str, 'latin1'): how protocol-2 pickles spell bytes (numpy scalars' data, for one)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise Refused("_codecs.encode other than of a str to latin1 bytes")
    return text.encode("latin1")


_BUILTINS = {name: _Global(f"builtins.{name}", make(kind, f"builtins.{name}"), kind) for name, kind, make in (
    ("list", list, _container), ("tuple", tuple, _container), ("set", set, _container),
    ("frozenset", frozenset, _container), ("dict", dict, _container),
    ("bytes", bytes, _bytes_like), ("bytearray", bytearray, _bytes_like),
    ("int", int, _scalar), ("float", float, _scalar), ("complex", complex, _scalar), ("bool", bool, _scalar),
    ("str", str, _scalar), ("slice", slice, _scalar), ("range", range, _scalar))}
_COLLECTIONS = {"OrderedDict": _Global("collections.OrderedDict",
                                       _container(collections.OrderedDict, "OrderedDict"), collections.OrderedDict),
                "defaultdict": _Global("collections.defaultdict", _defaultdict, collections.defaultdict)}
_CODECS_ENCODE = _Global("_codecs.encode", _codecs_encode)
