"""Reading checkpoint files without ever running code from them.

- `.safetensors`: parsed by the safetensors library (no code at all).
- `torch.save` files (zip or legacy): first `torch.load(weights_only=True)`. Genuine state-spaces Lightning
  checkpoints fail that, because their `hyper_parameters` (and the optimizer's `betas`) are pickled OmegaConf
  DictConfig / ListConfig objects. For those we unpickle again with `RestrictedUnpickler`, which resolves only
  an allow-list of globals: torch's tensor-rebuild functions, plain containers, numpy scalars, and the OmegaConf
  classes, which it replaces by inert stand-ins (omegaconf is never imported) that `to_plain` then turns into
  plain dicts and lists. Any other global (``os.system``, ``builtins.eval``, a user class, ...) is refused
  before it can be called, and the whole file is refused.
"""
from __future__ import annotations

import _compat_pickle
import collections
import os
import pickle
import re
import struct
import types

import torch

from ..errors import CheckpointError

# ----------------------------------------------------------------------------------------------- sniffing

def sniff_format(path: str | os.PathLike) -> str:
    """'safetensors' | 'torch-zip' | 'torch-legacy' | 'unknown', from the first bytes of the file.

    Raises CheckpointError if the file is missing, unreadable or empty.
    """
    source = os.fspath(path)
    try:
        size = os.path.getsize(source)
        with open(source, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise CheckpointError(f"{source}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(f"{source}: the file is empty")
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch-legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n and head[8:9] == b"{":
            return "safetensors"  # a truncated one is reported by read_safetensors_file
    return "unknown"


def _check_size(path: str | os.PathLike, max_bytes: int) -> None:
    size = os.path.getsize(path)
    if size > max_bytes:
        raise CheckpointError(
            f"{os.fspath(path)}: the file is {size / 2**30:.2f} GiB, over the {max_bytes / 2**30:.2f} GiB limit "
            "(pass max_bytes=... to load a larger file)"
        )


# ----------------------------------------------------------------------------------------------- safetensors

def read_safetensors_file(path: str | os.PathLike, max_bytes: int = 4 << 30) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors of a .safetensors file (on CPU) and its metadata dict (str -> str)."""
    from safetensors import safe_open

    source = os.fspath(path)
    _check_size(path, max_bytes)
    try:
        with safe_open(source, framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise CheckpointError(f"{source}: corrupt or truncated safetensors file ({e})") from None
    return tensors, meta


# ----------------------------------------------------------------------------------------------- torch files

class Inert:
    """Stand-in for an allow-listed foreign class (OmegaConf containers, typing markers).

    Unpickling it records the constructor arguments and the pickled state and runs nothing else.
    """

    qualname = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _inert(module: str, name: str) -> type:
    return type(name, (Inert,), {"qualname": f"{module}.{name}", "__module__": __name__})


_OMEGACONF_CLASSES = {
    "DictConfig", "ListConfig", "AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode",
    "PathNode", "EnumNode", "ValueNode", "Metadata", "ContainerMetadata", "Node", "Container",
    "UnionNode", "InterpolationResultNode",
}
_TYPING_NAMES = {"Any", "Dict", "List", "Tuple", "Optional", "Union", "Sequence", "Mapping"}
_BUILTINS = {"set", "frozenset", "complex", "slice", "range", "bytearray", "bytes", "int", "float", "bool", "str",
             "dict", "list", "tuple"}
_TORCH_FUNCS = {
    "torch._utils": {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                     "_rebuild_parameter_with_state"},
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch.nn.parameter": {"Parameter"},
}
_NUMPY = {"scalar", "_reconstruct", "dtype", "ndarray"}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        self.global_name = f"{module}.{name}"
        super().__init__(f"refused global '{self.global_name}'")


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that resolves only allow-listed globals (see the module docstring)."""

    _inert_cache: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        # protocol-2 pickles name Python 2 modules (`__builtin__.long`); map them as pickle's own find_class does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module.split(".")[0] == "omegaconf" and name in _OMEGACONF_CLASSES:
            return self._inert_cache.setdefault((module, name), _inert(module, name))
        if module == "typing" and name in _TYPING_NAMES:
            return self._inert_cache.setdefault((module, name), _inert(module, name))
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return getattr(collections, name)
        if name in _TORCH_FUNCS.get(module, ()):
            mod = {"torch._utils": torch._utils, "torch._tensor": torch._tensor, "torch.nn.parameter": torch.nn.parameter}[module]
            return getattr(mod, name)
        if module == "torch":
            obj = getattr(torch, name, None)
            if isinstance(obj, torch.dtype) or name in ("Size", "device", "Tensor"):
                return obj
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and name in _NUMPY:
            return _NUMPY_GLOBALS[name]
        if module == "_codecs" and name == "encode":
            return _CODECS_ENCODE
        raise RefusedGlobal(module, name)


class _Stub:
    """A placeholder the restricted unpickler puts on the pickle's stack instead of a numpy object.

    numpy objects trust the state a pickle hands them (a dtype's flags decide whether an array's bytes are
    object pointers: a 235-byte file crashed the process that way). Placeholders check their arguments, refuse a
    pickled state they do not expect, and become real numpy objects only in `to_plain`, from validated parts.
    """

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refused: the pickle sets the state of {self!r}")


_NUMERIC_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f(2|4|8|16)|c(8|16|32))")


class _NumpyDType(_Stub):
    """numpy.dtype(code, align, copy) for a plain numeric code ('f8', 'i4', 'b1', ...); of its pickled state only
    the byte order is used (flags must be 0, no fields or sub-array; nothing of it is handed to numpy)."""

    __slots__ = ("dtype", "_stated")

    def __init__(self, code=None, align=False, copy=True):
        import numpy as np

        if not isinstance(code, str) or not _NUMERIC_DTYPE.fullmatch(code):
            raise pickle.UnpicklingError(f"refused numpy dtype {code!r}: only plain numeric dtypes are read")
        self.dtype, self._stated = np.dtype(code), False

    def __setstate__(self, state):
        if self._stated or not isinstance(state, tuple) or len(state) < 8:
            raise pickle.UnpicklingError("refused: a malformed numpy dtype state")
        endian, subarray, names, fields, flags = *state[1:5], state[7]
        if endian not in ("<", ">", "|", "=") or (subarray, names, fields) != (None, None, None):
            raise pickle.UnpicklingError("refused: a numpy dtype state with fields or a sub-array")
        if flags != 0:  # plain numeric dtypes have none; 0x01 without 0x02 made numpy read bytes as pointers
            raise pickle.UnpicklingError(f"refused: a numpy dtype state with flags {flags!r} (numeric dtypes have 0)")
        if endian in "<>":
            self.dtype = self.dtype.newbyteorder(endian)
        self._stated = True

    def __repr__(self) -> str:
        return f"<numpy dtype {self.dtype}>"


class _NumpyValue(_Stub):
    """numpy.core.multiarray.scalar(dtype, bytes): a numeric scalar, read from exactly itemsize bytes."""

    __slots__ = ("value",)

    def __init__(self, dtype=None, data=None):
        import numpy as np

        if type(dtype) is not _NumpyDType or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
            raise pickle.UnpicklingError("refused: a numpy scalar that is not a plain numeric value")
        self.value = np.frombuffer(data, dtype.dtype)[0]

    def __repr__(self) -> str:
        return "<numpy scalar>"


class _NumpyArray(_Stub):
    """numpy.core.multiarray._reconstruct(ndarray, ...) then BUILD: a numeric array from raw bytes of its size."""

    __slots__ = ("value",)

    def __init__(self, subtype=None, shape=None, code=None):
        if subtype is not _NUMPY_GLOBALS["ndarray"]:
            raise pickle.UnpicklingError("refused: numpy _reconstruct of something other than an ndarray")
        self.value = None

    def __setstate__(self, state):
        import numpy as np

        if self.value is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("refused: a malformed numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        if (type(dtype) is not _NumpyDType or not isinstance(shape, tuple) or len(shape) > 64
                or not all(type(n) is int and 0 <= n < 2**63 for n in shape) or not isinstance(raw, bytes)):
            raise pickle.UnpicklingError("refused: a numpy array that is not a plain numeric array")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.dtype.itemsize != len(raw):
            raise pickle.UnpicklingError("refused: a numpy array whose data does not match its shape")
        self.value = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran else "C").copy()

    def __repr__(self) -> str:
        return "<numpy array>"


class _Global(_Stub):
    """An allow-listed callable as the pickle sees it: calling it calls `fn`, which checks its arguments before it
    builds anything (no `fn`: calling is refused, the name is only a value); not a type, so NEWOBJ refuses it."""

    __slots__ = ("name", "fn")

    def __init__(self, name, fn=None):
        self.name, self.fn = name, fn

    def __call__(self, *args, **kwargs):
        if self.fn is None:
            raise pickle.UnpicklingError(f"refused: the pickle calls {self.name}")
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _codecs_encode(text=None, encoding="utf-8", errors="strict"):
    """_codecs.encode(str, 'latin1'): how protocol-2 pickles spell bytes (numpy scalars' data, for one)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("refused: _codecs.encode other than of a str to latin1 bytes")
    return text.encode("latin1")


_CODECS_ENCODE = _Global("_codecs.encode", _codecs_encode)


#: numpy names the restricted unpickler resolves, to placeholders (never to numpy's own objects)
_NUMPY_GLOBALS = {"dtype": _Global("numpy.dtype", _NumpyDType), "scalar": _Global("numpy.scalar", _NumpyValue),
                  "_reconstruct": _Global("numpy._reconstruct", _NumpyArray), "ndarray": _Global("numpy.ndarray")}


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


#: Passed to torch.load as pickle_module: torch subclasses our Unpickler, so every global goes through it.
restricted_pickle = types.ModuleType("kernelscope_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError


def to_plain(obj, _memo=None):
    """Replace inert OmegaConf stand-ins by plain dicts / lists / values, recursively (other objects as is)."""
    memo = {} if _memo is None else _memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _NumpyDType):
        return obj.dtype
    if isinstance(obj, (_NumpyValue, _NumpyArray)):
        if obj.value is None:
            raise pickle.UnpicklingError("refused: a numpy array without its data")
        return obj.value
    if isinstance(obj, type) and issubclass(obj, Inert):
        return obj.qualname  # e.g. hparams_type: the DictConfig class itself
    if isinstance(obj, Inert):
        state = obj.state if isinstance(obj.state, dict) else {}
        kind = type(obj).__name__
        if kind == "DictConfig":
            content = state.get("_content")
            out = {} if isinstance(content, dict) else None
            memo[id(obj)] = out
            if out is None:
                return to_plain(content, memo)  # None, '???' (missing) or an interpolation string
            for k, v in content.items():
                out[to_plain(k, memo)] = to_plain(v, memo)
            return out
        if kind == "ListConfig":
            content = state.get("_content")
            if not isinstance(content, (list, tuple)):
                return to_plain(content, memo)
            out = []
            memo[id(obj)] = out
            out.extend(to_plain(v, memo) for v in content)
            return out
        if "_val" in state:
            return to_plain(state["_val"], memo)
        return None  # metadata and typing markers carry no data we use
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, collections.OrderedDict) else {}
        memo[id(obj)] = out
        for k, v in obj.items():
            out[to_plain(k, memo)] = to_plain(v, memo)
        return out
    if isinstance(obj, list):
        out = []
        memo[id(obj)] = out
        out.extend(to_plain(v, memo) for v in obj)
        return out
    if isinstance(obj, tuple):
        return tuple(to_plain(v, memo) for v in obj)
    return obj


_INTERP = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def resolve_interpolations(cfg, root=None, depth: int = 0):
    """Resolve plain OmegaConf references "${a.b}" in a plain config against its root; others stay strings."""
    root = cfg if root is None else root
    if depth > 20:
        return cfg
    if isinstance(cfg, dict):
        return {k: resolve_interpolations(v, root, depth + 1) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [resolve_interpolations(v, root, depth + 1) for v in cfg]
    if isinstance(cfg, str):
        m = _INTERP.match(cfg)
        if m:
            node = root
            for part in m.group(1).split("."):
                if not isinstance(node, dict) or part not in node:
                    return cfg
                node = node[part]
            return resolve_interpolations(node, root, depth + 1)
    return cfg


def read_torch_file(path: str | os.PathLike, max_bytes: int = 4 << 30):
    """The object a torch.save file holds, with OmegaConf containers turned into plain dicts / lists.

    Never executes code from the file: weights-only unpickling, else the restricted unpickler.
    Raises CheckpointError naming the file and the problem (corrupt, truncated, refused global).
    """
    source = os.fspath(path)
    _check_size(path, max_bytes)
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # typically the OmegaConf config of a Lightning checkpoint: retry with our allow-list below
    except Exception as e:
        raise CheckpointError(f"{source}: corrupt, truncated or not a torch checkpoint ({_short(e)})") from None
    try:
        obj = torch.load(source, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    except RefusedGlobal as e:
        raise CheckpointError(
            f"{source}: refused to load: the pickle references '{e.global_name}', which could run code; "
            "kernelscope only reads tensors, plain containers and OmegaConf configs"
        ) from None
    except Exception as e:
        raise CheckpointError(f"{source}: corrupt, truncated or not a torch checkpoint ({_short(e)})") from None
    obj = to_plain(obj)
    if isinstance(obj, dict) and isinstance(obj.get("hyper_parameters"), dict):
        obj["hyper_parameters"] = resolve_interpolations(obj["hyper_parameters"])
    return obj


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
