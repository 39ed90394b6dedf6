"""What was unpickled, turned into plain containers: stand-ins replaced (`to_plain`), and OmegaConf's "${a.b}"
references in the hyper-parameters resolved (`resolve_interpolations`).

Both walks are memoised (a shared sub-object is converted once and stays shared) but count the result as a tree
against `MAX_NODES`, stop at `MAX_DEPTH` levels and refuse a reference cycle, so a DAG of shared tuples or a web of
``${x}`` interpolations cannot blow up here or in any later walk over the result. Each walk has one recursive
function, called once per level: its Python stack stays within MAX_DEPTH frames.
"""
from __future__ import annotations

import collections
import re

import torch

from .budget import MAX_DEPTH, MAX_NODES, BudgetExceeded, Refused
from .numpy_rebuild import _NumpyArray, _NumpyDType
from .stubs import Inert, _Stub
from .torch_rebuild import _StorageRef, _TensorRef, check_view

_LEAVES = frozenset((str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, torch.Size))


def _visited(memo: dict[int, tuple], obj):
    """The memo's (converted, tree size) of an object met before, or None; raises BudgetExceeded for one still
    being converted (it contains itself)."""
    hit = memo.get(id(obj))
    if hit is not None and hit[1] is None:
        raise BudgetExceeded("a container contains itself (a reference cycle)")
    return hit


# ----------------------------------------------------------------------------------------------- to_plain

def to_plain(obj):
    """The unpickled object with stand-ins replaced: OmegaConf containers by plain dicts / lists, placeholders by
    the tensors, storages, numpy values and globals they stand for; other objects as they are.

    Shared sub-objects are converted once (and stay shared) but counted each time they appear; raises
    BudgetExceeded for nesting deeper than MAX_DEPTH, more than MAX_NODES values as a tree, or a cycle.
    """
    return _conv(obj, 0, {})[0]


def _conv(obj, depth: int, memo: dict[int, tuple]) -> tuple[object, int]:
    """(converted obj, its size as a tree). memo: id -> (converted, tree size), size None while in progress."""
    if type(obj) in _LEAVES:
        return obj, 1
    if depth > MAX_DEPTH:
        raise BudgetExceeded(f"nesting deeper than {MAX_DEPTH:,} levels")
    hit = _visited(memo, obj)
    if hit is not None:
        return hit
    memo[id(obj)] = (None, None)
    size, groups, put, finish = _recipe(obj)
    for group in groups:
        converted = []
        for child in group:
            out, n = _conv(child, depth + 1, memo)
            converted.append(out)
            size += n
        put(converted)
        if size > MAX_NODES:
            break
    if size > MAX_NODES:
        raise BudgetExceeded(f"more than {MAX_NODES:,} values (counting shared ones each time they appear)")
    out = finish()
    memo[id(obj)] = (out, size)
    return out, size


def _recipe(obj):
    """How to convert a non-leaf object, without recursing: (its own size, its children in groups, put(converted
    group), finish() -> the converted object). The node budget is checked after each group (a dict's key and
    value together)."""
    if isinstance(obj, _Stub):
        return _as(_unstub(obj))
    if isinstance(obj, type) and issubclass(obj, Inert):
        return _as(obj.qualname)  # e.g. hparams_type: the DictConfig class itself
    if isinstance(obj, Inert):
        return _inert_recipe(obj)
    if isinstance(obj, dict):
        out = collections.OrderedDict() if type(obj) is collections.OrderedDict else {}
        return 1, obj.items(), lambda kv: out.__setitem__(*kv), lambda: out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = []
        return 1, ((v,) for v in obj), items.extend, lambda: _sequence(obj, items)
    if isinstance(obj, torch.Tensor):
        check_view(obj.untyped_storage().nbytes() // obj.element_size(), obj.storage_offset(),
                   tuple(obj.shape), obj.stride())
    return _as(obj)


def _as(out):
    """The recipe of an object with no children, converted to `out`."""
    return 1, (), None, lambda: out


def _inert_recipe(obj: Inert):
    """An OmegaConf node is what it holds (a container's ``_content``, a value node's ``_val``) and adds no size
    of its own; metadata and typing markers carry no data we use (None)."""
    state = obj.state if isinstance(obj.state, dict) else {}
    kind = type(obj).__name__
    content = state.get("_content")
    if kind == "DictConfig" and isinstance(content, dict):
        cast = dict  # the content converted: a dict, or an OrderedDict made plain
    elif kind == "ListConfig" and isinstance(content, (list, tuple)):
        cast = list
    elif kind in ("DictConfig", "ListConfig"):
        cast = None  # None, '???' (missing) or an interpolation string, as it is
    elif "_val" in state:
        content, cast = state["_val"], None
    else:
        return _as(None)
    held = []
    return 0, ((content,),), held.extend, lambda: held[0] if cast is None or type(held[0]) is cast else cast(held[0])


def _sequence(obj, items: list):
    """A list for a list (subclasses included), the same kind for a tuple / set / frozenset, else a tuple."""
    if isinstance(obj, list):
        return items
    return type(obj)(items) if type(obj) in (tuple, set, frozenset) else tuple(items)


def _unstub(obj: _Stub):
    if isinstance(obj, _NumpyDType):
        return obj.dtype
    if isinstance(obj, _TensorRef):
        return obj.tensor
    if isinstance(obj, _StorageRef):
        return obj.storage
    if isinstance(obj, _NumpyArray) and obj.value is None:
        raise Refused("a numpy array without its data")
    return obj.value  # _Global, _NumpyValue, _NumpyArray


# ----------------------------------------------------------------------------------------------- interpolations

_INTERP = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def resolve_interpolations(cfg, root=None):
    """Resolve plain OmegaConf references "${a.b}" in a plain config against its root; others stay strings.

    A reference to itself (directly or round a loop) stays a string. Each referenced node is resolved once and
    shared; the result counts as a tree within MAX_NODES, and references nest at most MAX_DEPTH deep
    (BudgetExceeded otherwise).
    """
    return _Resolver(cfg if root is None else root).res(cfg, 0)[0]


class _Resolver:
    """One resolve_interpolations walk; `res` is its only recursive method (one call per level or reference)."""

    def __init__(self, root):
        self.root = root
        self.memo: dict[int, tuple] = {}  # id(container) -> (resolved, tree size); size None while in progress
        self.resolving: set[str] = set()  # reference paths being resolved

    def res(self, node, depth: int) -> tuple[object, int]:
        """(node resolved, its size as a tree)."""
        if depth > MAX_DEPTH:
            raise BudgetExceeded(f"interpolations nest deeper than {MAX_DEPTH:,} levels")
        if isinstance(node, str):
            path, target = self._target(node)
            if path is None:
                return node, 1
            self.resolving.add(path)
            try:
                return self.res(target, depth + 1)
            finally:
                self.resolving.discard(path)
        if not isinstance(node, (dict, list)):
            return node, 1
        hit = _visited(self.memo, node)
        if hit is not None:
            return hit
        self.memo[id(node)] = (None, None)
        size, keys, values = 1, [], []
        for key, value in (node.items() if isinstance(node, dict) else enumerate(node)):
            resolved, n = self.res(value, depth + 1)
            keys.append(key)
            values.append(resolved)
            size += n
            if size > MAX_NODES:
                break
        if size > MAX_NODES:
            raise BudgetExceeded(f"the hyper-parameters expand to more than {MAX_NODES:,} values once their "
                                 "interpolations are resolved")
        out = dict(zip(keys, values)) if isinstance(node, dict) else values
        self.memo[id(node)] = (out, size)
        return out, size

    def _target(self, text: str):
        """(path, the node it names) for a "${path}" reference to follow now; (None, None) for any other string,
        a reference already being resolved, a path the root does not hold, or a container holding the reference."""
        m = _INTERP.match(text)
        if m is None or m.group(1) in self.resolving:
            return None, None
        target = self.root
        for part in m.group(1).split("."):
            if not isinstance(target, dict) or part not in target:
                return None, None
            target = target[part]
        if isinstance(target, (dict, list)) and self.memo.get(id(target), (0, 0))[1] is None:
            return None, None  # refers to a container that holds the reference
        return m.group(1), target
