"""Reading checkpoint files without ever running code from them, within a resource budget.

- `.safetensors`: parsed by the safetensors library (no code at all).
- `torch.save` files (zip or legacy): torch.load reads the container format, but every pickle in the file goes
  through `RestrictedUnpickler`, which resolves only an allow-list of globals: torch's tensor-rebuild
  functions, plain containers, numpy's numeric scalars / arrays, and the OmegaConf classes of Lightning
  checkpoints' ``hyper_parameters``, replaced by inert stand-ins (omegaconf is never imported) that `to_plain`
  turns into plain dicts and lists. Any other global (``os.system``, ``builtins.eval``, a user class, ...) is
  refused before it can be called, and the whole file is refused. torch's own ``weights_only`` unpickler is not
  used: it calls ``torch.Tensor(n)``, ``bytearray(n)`` and ``Tensor.set_`` as the pickle asks, i.e. allocates
  whatever a 200-byte file requests, before anything could check it.

Hostile files cost at most a `CheckpointError` naming the file and the budget: every allow-listed callable is a
`_Global` whose function checks its arguments before it builds anything, and what the pickle builds never
reaches numpy's or torch's own ``__setstate__`` (placeholders, converted by `to_plain` from checked parts).
Checks made before anything is allocated:

- only regular files are opened (a FIFO, device or directory is refused from its ``stat``, never opened);
- a zip archive's directory is read first: a record whose declared size is over a budget is refused before it is
  inflated; a TorchScript archive (torch.load would hand it to torch.jit.load) and an old tar-format file are
  refused;
- a tensor's storage must be a record of the archive (zip; at most the record's bytes) or fit in the file
  (legacy); a tensor view must lie inside its storage without overlapping itself (no stride-0 ``expand`` or
  ``as_strided`` view that would materialise as terabytes);
- constructor calls in the pickle (``list(range(n))``, ``bytes(...)``, ``torch.Size(...)``) count against a node
  budget; ``torch.Tensor(...)`` and ``bytes(n)`` are refused;
- the unpickled object's nesting depth and its size *as a tree* are bounded while it is converted (shared
  sub-objects are converted once but counted each time they appear, so a DAG of shared tuples or a web of
  ``${x}`` interpolations cannot blow up here or in any later walk over it); a reference cycle is refused.

Budgets (module constants):

| name               | default     | bounds                                                                       |
|--------------------|-------------|------------------------------------------------------------------------------|
| `MAX_DEPTH`        | 200         | nesting of the object (every container and OmegaConf node is a level); keeps |
|                    |             | recursive walks far from Python's 1,000-frame limit; real files nest < 30    |
| `MAX_NODES`        | 1,000,000   | values built by constructor calls, and the converted object / resolved       |
|                    |             | hyper-parameters counted as a tree; real checkpoints have < 100,000          |
| `MAX_INFLATED_BYTES` | 1 GiB     | compressed (DEFLATE) zip records, declared sizes in total: torch.save stores |
|                    |             | records uncompressed, so only a re-zipped file has any                       |
| ``max_bytes``      | 4 GiB       | the file (`DEFAULT_MAX_BYTES`), and all zip records' declared sizes in total |
| `MAX_RECORDS`      | 100,000     | entries of a zip directory (one per tensor storage in a torch.save file)     |
| `MAX_DIMS`         | 64          | dimensions of a tensor or array (torch's own limit)                          |
"""
from __future__ import annotations

import _compat_pickle
import collections
import contextvars
import os
import pickle
import re
import stat
import struct
import types

import torch

from ..errors import CheckpointError

MAX_DEPTH = 200
MAX_NODES = 1_000_000
MAX_INFLATED_BYTES = 1 << 30
MAX_RECORDS = 100_000
MAX_DIMS = 64


class Refused(pickle.UnpicklingError):
    """The file asks for something refused on principle (a global, a numpy object dtype, a constructor call)."""


class RefusedGlobal(Refused):
    """The pickle names a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        self.global_name = f"{module}.{name}"
        super().__init__(f"refused global '{self.global_name}'")


class BudgetExceeded(Exception):
    """The file asks for more than a budget allows; the message says what exceeded which budget."""


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,} bytes"


# ----------------------------------------------------------------------------------------------- the file itself

_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _require_regular(source: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")
        raise CheckpointError(f"{source}: not a checkpoint file but {kind}; only regular files are read")


def check_file(path: str | os.PathLike, max_bytes: int | None = None) -> int:
    """The size of a regular file, from its ``stat`` alone (nothing is opened: a FIFO would block).

    Raises CheckpointError if the path is missing, not a regular file, or (given max_bytes) larger than that.
    """
    source = os.fspath(path)
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise CheckpointError(f"{source}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    _require_regular(source, st.st_mode)
    if max_bytes is not None and st.st_size > max_bytes:
        raise CheckpointError(
            f"{source}: the file is {st.st_size / 2**30:.2f} GiB, over the {max_bytes / 2**30:.2f} GiB limit "
            "(pass max_bytes=... to load a larger file)"
        )
    return st.st_size


def _open_regular(source: str):
    """Open for reading without blocking, and check again on the open file (the path may have changed since)."""
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    try:
        _require_regular(source, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


# ----------------------------------------------------------------------------------------------- sniffing

def sniff_format(path: str | os.PathLike) -> str:
    """'safetensors' | 'torch-zip' | 'torch-legacy' | 'unknown', from the first bytes of the file.

    Raises CheckpointError if the file is missing, not a regular file, unreadable or empty.
    """
    source = os.fspath(path)
    size = check_file(source)
    try:
        with _open_regular(source) as f:
            head = f.read(16)
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


# ----------------------------------------------------------------------------------------------- safetensors

def read_safetensors_file(path: str | os.PathLike, max_bytes: int = 4 << 30) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors of a .safetensors file (on CPU) and its metadata dict (str -> str)."""
    from safetensors import safe_open

    source = os.fspath(path)
    check_file(source, max_bytes)
    try:
        with safe_open(source, framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise CheckpointError(f"{source}: corrupt or truncated safetensors file ({e})") from None
    return tensors, meta


# ----------------------------------------------------------------------------------------------- zip directory

def _zip_records(f, file_size: int, max_bytes: int) -> dict[str, int]:
    """{record name below the archive folder: declared size} from a zip's directory, before torch reads any.

    Raises BudgetExceeded / Refused / zipfile.BadZipFile.
    """
    import zipfile

    end = getattr(zipfile, "_EndRecData", None)  # the end record, read before the directory is
    if end is not None:
        rec = end(f)
        if rec and rec[zipfile._ECD_ENTRIES_TOTAL] > MAX_RECORDS:
            raise BudgetExceeded(f"the archive lists {rec[zipfile._ECD_ENTRIES_TOTAL]:,} records, over the "
                                 f"{MAX_RECORDS:,} budget")
    infos = zipfile.ZipFile(f).infolist()
    if len(infos) > MAX_RECORDS:
        raise BudgetExceeded(f"the archive lists {len(infos):,} records, over the {MAX_RECORDS:,} budget")
    if not infos:
        raise zipfile.BadZipFile("an empty archive")
    prefix = infos[0].filename.split("/", 1)[0] + "/"  # torch's reader takes the first entry's folder
    inflate_budget = min(MAX_INFLATED_BYTES, max_bytes)
    records: dict[str, int] = {}
    total = inflated = 0
    for info in infos:
        name = info.filename
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size or info.header_offset + info.compress_size > file_size:
                raise zipfile.BadZipFile(f"record '{name}' declares {info.file_size:,} bytes the file does not hold")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            inflated += info.file_size
            if info.file_size > inflate_budget:
                raise BudgetExceeded(f"record '{name}' would inflate to {_bytes(info.file_size)}, over the "
                                     f"{_bytes(inflate_budget)} budget for compressed records")
            if inflated > inflate_budget:
                raise BudgetExceeded(f"compressed records would inflate to {_bytes(inflated)} in total, over the "
                                     f"{_bytes(inflate_budget)} budget")
        else:
            raise zipfile.BadZipFile(f"record '{name}' uses compression method {info.compress_type}")
        total += info.file_size
        if total > max_bytes:
            raise BudgetExceeded(f"the archive's records would take {_bytes(total)}, over the {_bytes(max_bytes)} "
                                 "limit (max_bytes)")
        if name.startswith(prefix):
            key = name[len(prefix):]
            if key in records:
                raise zipfile.BadZipFile(f"record '{name}' appears twice")
            records[key] = info.file_size
    if "constants.pkl" in records:
        raise Refused("a TorchScript archive: torch.load would hand it to torch.jit.load, which runs code from "
                      "the file")
    return records


def _is_tar(f) -> bool:
    """The pre-2018 torch format, a tar archive: torch.load would extract it and trust its storage sizes."""
    import tarfile

    try:
        return tarfile.is_tarfile(f)
    finally:
        f.seek(0)


# ----------------------------------------------------------------------------------------------- the unpickler

class _LoadState:
    """What one file has spent so far: constructor-built values and storage bytes; what its archive holds."""

    def __init__(self, file_size: int = 0, records: dict[str, int] | None = None):
        self.file_size, self.records = file_size, records  # records: None for a legacy (non-zip) file
        self.nodes = 0
        self.storages: dict[object, int] = {}  # legacy root key -> elements

    def spend(self, n: int, what: str) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise BudgetExceeded(f"{what}: the pickle builds more than {MAX_NODES:,} values, over the budget")


_STATE: contextvars.ContextVar[_LoadState] = contextvars.ContextVar("kernelscope_load_state")


def _spend(n: int, what: str) -> None:
    _STATE.get().spend(n, what)


class Inert:
    """Stand-in for an allow-listed foreign class (OmegaConf containers, typing markers).

    Unpickling it records the constructor arguments and the pickled state and runs nothing else.
    """

    qualname = "?"
    args: tuple = ()
    kwargs: dict = {}
    state = None

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _inert(module: str, name: str) -> type:
    return type(name, (Inert,), {"qualname": f"{module}.{name}", "__module__": __name__})


class _Stub:
    """What the restricted unpickler puts on the pickle's stack instead of numpy and torch objects.

    numpy and torch objects trust the state a pickle hands them: a numpy dtype's flags decide whether an array's
    bytes are object pointers (a 138-byte file segfaulted the process), ``Tensor.__setstate__`` calls ``set_``,
    which grows a storage to any size. Placeholders check their arguments, refuse a pickled state they do not
    expect, and become real objects only in `to_plain`, from checked parts.
    """

    __slots__ = ()

    def __setstate__(self, state):
        raise Refused(f"the pickle sets the state of {self!r}")


class _Global(_Stub):
    """An allow-listed global as the pickle sees it: calling it calls `fn`, which checks its arguments before it
    builds anything (no `fn`: calling is refused, the global is only a value); `value` is what it stands for
    after loading. Not a type, so NEWOBJ refuses it."""

    __slots__ = ("name", "fn", "value")

    def __init__(self, name, fn=None, value=None):
        self.name, self.fn, self.value = name, fn, value

    def __call__(self, *args, **kwargs):
        if self.fn is None:
            raise Refused(f"the pickle calls {self.name}(...)")
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.name}>"


# --- builtins: constructors copy a container the pickle already holds, within the node budget

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


# --- torch: storages from the archive only, tensor views inside their storage

class _StorageRef(_Stub):
    """A storage torch read from the archive (persistent id), as the pickle sees it."""

    __slots__ = ("storage",)

    def __init__(self, storage):
        self.storage = storage

    def __repr__(self) -> str:
        return "<storage>"


class _TensorRef(_Stub):
    """A tensor rebuilt from a checked view of a `_StorageRef`, as the pickle sees it (no BUILD: no ``set_``)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor):
        self.tensor = tensor

    def __repr__(self) -> str:
        return "<tensor>"


def _index(x, what: str) -> int:
    if type(x) is not int or not 0 <= x < 1 << 62:
        raise Refused(f"tensor {what} {x!r:.60} is not a non-negative integer")
    return x


def _shape(x, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)) or len(x) > MAX_DIMS:
        raise Refused(f"tensor {what} {x!r:.60} is not a tuple of at most {MAX_DIMS} integers")
    return tuple(_index(n, what) for n in x)


def check_view(storage_elements: int, offset, size, stride) -> tuple[int, tuple, tuple]:
    """(offset, size, stride) of a view that lies inside a storage of that many elements and does not overlap
    itself (no stride 0 across more than one element); raises BudgetExceeded / Refused otherwise."""
    offset, size, stride = _index(offset, "offset"), _shape(size, "size"), _shape(stride, "stride")
    if len(size) != len(stride):
        raise Refused(f"tensor size {size} and stride {stride} differ in length")
    if 0 in size:
        if offset > storage_elements:
            raise BudgetExceeded(f"an empty tensor starts at element {offset:,} of a storage of "
                                 f"{storage_elements:,}")
        return offset, size, stride
    reach = 0  # the highest element the view touches, relative to offset; dims by stride: each must clear the rest
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda d: d[1]):
        if s <= reach:
            raise BudgetExceeded(f"a tensor view (size {size}, stride {stride}) overlaps itself: a stride-0 or "
                                 "overlapping view, which would be materialised element by element")
        reach += (n - 1) * s
    if offset + reach >= storage_elements:
        raise BudgetExceeded(f"a tensor view (size {size}, stride {stride}, offset {offset:,}) reaches element "
                             f"{offset + reach:,} of a storage of {storage_elements:,}")
    return offset, size, stride


def _view(storage, offset, size, stride, dtype: torch.dtype | None = None) -> torch.Tensor:
    if type(storage) is not _StorageRef:
        raise Refused("a tensor rebuilt from something other than a storage of the archive")
    typed = storage.storage
    untyped = typed._untyped_storage
    dtype = typed.dtype if dtype is None else dtype
    if not isinstance(dtype, torch.dtype):
        raise Refused(f"tensor dtype {dtype!r:.40}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    offset, size, stride = check_view(untyped.nbytes() // itemsize, offset, size, stride)
    return torch.empty((0,), dtype=dtype, device=untyped.device).set_(untyped, offset, size, stride)


def _metadata(tensor: torch.Tensor, metadata) -> None:
    if metadata:
        if not isinstance(metadata, dict) or not all(type(k) is str and type(v) is bool for k, v in metadata.items()):
            raise Refused("tensor metadata other than flags")
        torch._utils.set_tensor_metadata(tensor, metadata)


def _requires_grad(tensor: torch.Tensor, flag) -> torch.Tensor:
    if flag:
        tensor.requires_grad_(bool(flag))
    return tensor


# backward hooks and Python attributes a pickle gives a tensor are dropped: nothing from the file is called later
def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(_view(storage, storage_offset, size, stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    t = _view(storage, storage_offset, size, stride)
    _metadata(t, metadata)
    return _TensorRef(_requires_grad(t, requires_grad))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       dtype=None, metadata=None):
    t = _view(storage, storage_offset, size, stride, dtype)
    _metadata(t, metadata)
    return _TensorRef(_requires_grad(t, requires_grad))


def _tensor_of(data, what: str) -> torch.Tensor:
    if type(data) is not _TensorRef:
        raise Refused(f"{what} of something other than a tensor of the archive")
    return data.tensor


def _parameter(data=None, requires_grad=True, *rest):
    data = torch.empty(0) if data is None else _tensor_of(data, "Parameter")
    return _TensorRef(torch.nn.Parameter(data, requires_grad=bool(requires_grad)))


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state=None):
    return _parameter(data, requires_grad)


_TENSOR = _Global("torch.Tensor", None, torch.Tensor)  # a value (_rebuild_from_type_v2); torch.Tensor(n) is refused
_PARAMETER = _Global("torch.nn.Parameter", _parameter, torch.nn.Parameter)
_TORCH_FUNCS = {
    "torch._utils": {f.__name__: _Global(f"torch._utils.{f.__name__}", f) for f in (
        _rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3)},
}
_TORCH_FUNCS["torch._utils"]["_rebuild_parameter"] = _Global("torch._utils._rebuild_parameter", _parameter)
_TORCH_FUNCS["torch._utils"]["_rebuild_parameter_with_state"] = _Global(
    "torch._utils._rebuild_parameter_with_state", _rebuild_parameter_with_state)
_TORCH_FUNCS["torch.nn.parameter"] = {"Parameter": _PARAMETER}


def _rebuild_from_type_v2(func, new_type, args, state=None):
    if func not in _TORCH_FUNCS["torch._utils"].values() or not isinstance(args, tuple):
        raise Refused("_rebuild_from_type_v2 of something other than a tensor rebuild")
    ref = func(*args)
    if new_type is _PARAMETER:
        t = _tensor_of(ref, "_rebuild_from_type_v2")
        return _TensorRef(torch.nn.Parameter(t, requires_grad=t.requires_grad))
    if new_type is not _TENSOR:
        raise Refused(f"a tensor of type {new_type!r:.60}")
    return ref


_TORCH_FUNCS["torch._tensor"] = {"_rebuild_from_type_v2": _Global("torch._tensor._rebuild_from_type_v2",
                                                                   _rebuild_from_type_v2)}


def _size(dims=()):
    return torch.Size(_shape(dims, "size"))


def _device(*args):
    if not 1 <= len(args) <= 2 or not all((type(a) is str and len(a) < 64) or type(a) is int for a in args):
        raise Refused("torch.device(...) of something other than a device name")
    return torch.device(*args)


_UNTYPED = _Global("torch.UntypedStorage", None, torch.UntypedStorage)
_TORCH = {"Size": _Global("torch.Size", _size, torch.Size), "device": _Global("torch.device", _device, torch.device),
          "Tensor": _TENSOR, "UntypedStorage": _UNTYPED}


def _element_size(dtype) -> int:
    if not isinstance(dtype, torch.dtype):
        raise Refused(f"storage dtype {dtype!r:.40}")
    return torch.empty((), dtype=dtype).element_size()


def _checked_persistent_load(state: _LoadState, load, pid):
    """torch's persistent_load (which allocates the storage a pickle names) after checking the storage exists:
    a record of the archive (zip) holding at least its bytes, or (legacy) storages fitting in the file."""
    if not isinstance(pid, tuple) or not pid:
        raise Refused("a malformed storage reference")
    typename = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
    if typename != "storage":
        raise Refused(f"persistent object '{typename!s:.40}' (only tensor storages are read)")
    if state.records is not None:  # zip: ('storage', storage_type, key, location, numel)
        if len(pid) != 5:
            raise Refused("a malformed storage reference")
        _, storage_type, key, location, numel = pid
        if storage_type is _UNTYPED:
            storage_type = torch.UntypedStorage
            dtype = torch.uint8
        else:
            dtype = getattr(storage_type, "dtype", None)
        nbytes = _index(numel, "storage size") * _element_size(dtype)
        record = state.records.get(f"data/{key}") if isinstance(key, str) else None
        if record is None:
            raise BudgetExceeded(f"a tensor storage ({key!r:.40}) is not a record of the archive")
        if nbytes > record:
            raise BudgetExceeded(f"tensor storage 'data/{key}' declares {_bytes(nbytes)}, but its record holds "
                                 f"{_bytes(record)}")
        pid = ("storage", storage_type, key, location, numel)
    else:  # legacy: ('storage', storage_type, root_key, location, numel, view_metadata)
        if len(pid) != 6:
            raise Refused("a malformed storage reference")
        _, storage_type, root_key, _location, numel, view = pid
        numel = _index(numel, "storage size")
        if not isinstance(root_key, str):
            raise Refused("a malformed storage reference")
        if root_key not in state.storages:
            nbytes = numel * _element_size(getattr(storage_type, "dtype", None))
            held = sum(state.storages.values()) + nbytes
            if held > state.file_size:
                raise BudgetExceeded(f"its tensor storages declare {_bytes(held)}, more than the file's "
                                     f"{_bytes(state.file_size)}")
            state.storages[root_key] = nbytes
        if view is not None:
            if not isinstance(view, tuple) or len(view) != 3:
                raise Refused("a malformed storage view")
            _, view_offset, view_size = view
            if _index(view_offset, "storage offset") + _index(view_size, "storage size") > numel:
                raise BudgetExceeded("a storage view reaches past its storage")
    return _StorageRef(load(pid))


# --- numpy: numeric dtypes from a string code, scalars and arrays from exactly their bytes

_NUMERIC_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f(2|4|8|16)|c(8|16|32))")


class _NumpyDType(_Stub):
    """numpy.dtype(code, align, copy) for a plain numeric code ('f8', 'i4', 'b1', ...); of its pickled state only
    the byte order is used (flags must be 0, no fields or sub-array; nothing of it is handed to numpy)."""

    __slots__ = ("dtype", "_stated")

    def __init__(self, code=None, align=False, copy=True):
        import numpy as np

        if not isinstance(code, str) or not _NUMERIC_DTYPE.fullmatch(code):
            raise Refused(f"numpy dtype {code!r:.40}: only plain numeric dtypes are read")
        self.dtype, self._stated = np.dtype(code), False

    def __setstate__(self, state):
        if self._stated or not isinstance(state, tuple) or len(state) < 8:
            raise Refused("a malformed numpy dtype state")
        endian, subarray, names, fields, flags = *state[1:5], state[7]
        if endian not in ("<", ">", "|", "=") or (subarray, names, fields) != (None, None, None):
            raise Refused("a numpy dtype state with fields or a sub-array")
        if flags != 0:  # plain numeric dtypes have none; 0x01 without 0x02 made numpy read bytes as pointers
            raise Refused(f"a numpy dtype state with flags {flags!r:.20} (numeric dtypes have 0)")
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
            raise Refused("a numpy scalar that is not a plain numeric value")
        self.value = np.frombuffer(data, dtype.dtype)[0]

    def __repr__(self) -> str:
        return "<numpy scalar>"


class _NumpyArray(_Stub):
    """numpy.core.multiarray._reconstruct(ndarray, ...) then BUILD: a numeric array from raw bytes of its size."""

    __slots__ = ("value",)

    def __init__(self, subtype=None, shape=None, code=None):
        if subtype is not _NUMPY_GLOBALS["ndarray"]:
            raise Refused("numpy _reconstruct of something other than an ndarray")
        self.value = None

    def __setstate__(self, state):
        import numpy as np

        if self.value is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise Refused("a malformed numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        if type(dtype) is not _NumpyDType or not isinstance(raw, bytes):
            raise Refused("a numpy array that is not a plain numeric array")
        shape = _shape(shape, "shape")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.dtype.itemsize != len(raw):
            raise Refused("a numpy array whose data does not match its shape")
        self.value = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran else "C").copy()

    def __repr__(self) -> str:
        return "<numpy array>"


#: numpy names the restricted unpickler resolves, to placeholders (never to numpy's own objects)
_NUMPY_GLOBALS = {"dtype": _Global("numpy.dtype", _NumpyDType), "scalar": _Global("numpy.scalar", _NumpyValue),
                  "_reconstruct": _Global("numpy._reconstruct", _NumpyArray), "ndarray": _Global("numpy.ndarray")}


_OMEGACONF_CLASSES = {
    "DictConfig", "ListConfig", "AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode",
    "PathNode", "EnumNode", "ValueNode", "Metadata", "ContainerMetadata", "Node", "Container",
    "UnionNode", "InterpolationResultNode",
}
_TYPING_NAMES = {"Any", "Dict", "List", "Tuple", "Optional", "Union", "Sequence", "Mapping"}
_INERT: dict[tuple[str, str], type] = {}
_SET_PERSISTENT_LOAD = pickle.Unpickler.__dict__["persistent_load"].__set__  # the C unpickler's own slot


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that resolves only allow-listed globals, to checking stand-ins (see the module
    docstring), and hands torch's persistent_load only storages the archive holds."""

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._state = _STATE.get(None) or _LoadState()

    def load(self):
        token = _STATE.set(self._state)
        try:
            return super().load()
        finally:
            _STATE.reset(token)

    @property
    def persistent_load(self):
        raise AttributeError("persistent_load")  # none until torch sets one

    @persistent_load.setter
    def persistent_load(self, load):
        state = self._state
        _SET_PERSISTENT_LOAD(self, lambda pid: _checked_persistent_load(state, load, pid))

    def find_class(self, module: str, name: str):
        # protocol-2 pickles name Python 2 modules (`__builtin__.long`); map them as pickle's own find_class does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module.split(".")[0] == "omegaconf" and name in _OMEGACONF_CLASSES) or (
                module == "typing" and name in _TYPING_NAMES):
            return _INERT.setdefault((module, name), _inert(module, name))
        if module == "builtins" and name in _BUILTINS:
            return _BUILTINS[name]
        if module == "collections" and name in _COLLECTIONS:
            return _COLLECTIONS[name]
        if name in _TORCH_FUNCS.get(module, ()):
            return _TORCH_FUNCS[module][name]
        if module in ("torch", "torch.storage") and name in _TORCH:
            return _TORCH[name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and name in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[name]
        if module == "_codecs" and name == "encode":
            return _CODECS_ENCODE
        raise RefusedGlobal(module, name)


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


#: Passed to torch.load as pickle_module: torch subclasses our Unpickler, so every global goes through it.
restricted_pickle = types.ModuleType("kernelscope_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError


# ----------------------------------------------------------------------------------------------- conversion

_LEAVES = frozenset((str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, torch.Size))


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


def to_plain(obj):
    """The unpickled object with stand-ins replaced: OmegaConf containers by plain dicts / lists, placeholders by
    the tensors, storages, numpy values and globals they stand for; other objects as they are.

    Shared sub-objects are converted once (and stay shared) but counted each time they appear; raises
    BudgetExceeded for nesting deeper than MAX_DEPTH, more than MAX_NODES values as a tree, or a cycle.
    """
    memo: dict[int, tuple] = {}  # id -> (converted, tree size); size None while in progress (a cycle)

    def conv(obj, depth: int):
        if type(obj) in _LEAVES:
            return obj, 1
        if depth > MAX_DEPTH:
            raise BudgetExceeded(f"nesting deeper than {MAX_DEPTH:,} levels")
        hit = memo.get(id(obj))
        if hit is not None:
            if hit[1] is None:
                raise BudgetExceeded("a container contains itself (a reference cycle)")
            return hit
        memo[id(obj)] = (None, None)
        out, size = obj, 1
        if isinstance(obj, _Stub):
            out = _unstub(obj)
        elif isinstance(obj, type) and issubclass(obj, Inert):
            out = obj.qualname  # e.g. hparams_type: the DictConfig class itself
        elif isinstance(obj, Inert):
            state = obj.state if isinstance(obj.state, dict) else {}
            kind = type(obj).__name__
            content = state.get("_content")
            if kind == "DictConfig" and isinstance(content, dict) or kind == "ListConfig" and isinstance(
                    content, (list, tuple)):
                out, size = conv(content, depth + 1)
                out = dict(out) if kind == "DictConfig" and type(out) is not dict else out
                out = list(out) if kind == "ListConfig" and type(out) is not list else out
            elif kind in ("DictConfig", "ListConfig"):
                out, size = conv(content, depth + 1)  # None, '???' (missing) or an interpolation string
            elif "_val" in state:
                out, size = conv(state["_val"], depth + 1)
            else:
                out = None  # metadata and typing markers carry no data we use
        elif isinstance(obj, dict):
            out = collections.OrderedDict() if type(obj) is collections.OrderedDict else {}
            for k, v in obj.items():
                ck, nk = conv(k, depth + 1)
                cv, nv = conv(v, depth + 1)
                out[ck] = cv
                size += nk + nv
                if size > MAX_NODES:
                    break
        elif isinstance(obj, (list, tuple, set, frozenset)):
            items = []
            for v in obj:
                cv, nv = conv(v, depth + 1)
                items.append(cv)
                size += nv
                if size > MAX_NODES:
                    break
            out = items if isinstance(obj, list) else type(obj)(items) if type(obj) in (tuple, set, frozenset) \
                else tuple(items)
        elif isinstance(obj, torch.Tensor):
            check_view(obj.untyped_storage().nbytes() // obj.element_size(), obj.storage_offset(),
                       tuple(obj.shape), obj.stride())
        if size > MAX_NODES:
            raise BudgetExceeded(f"more than {MAX_NODES:,} values (counting shared ones each time they appear)")
        memo[id(obj)] = (out, size)
        return out, size

    return conv(obj, 0)[0]


_INTERP = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def resolve_interpolations(cfg, root=None):
    """Resolve plain OmegaConf references "${a.b}" in a plain config against its root; others stay strings.

    A reference to itself (directly or round a loop) stays a string. Each referenced node is resolved once and
    shared; the result counts as a tree within MAX_NODES, and references nest at most MAX_DEPTH deep
    (BudgetExceeded otherwise).
    """
    root = cfg if root is None else root
    memo: dict[int, tuple] = {}  # id(container) -> (resolved, tree size); size None while in progress
    resolving: set[str] = set()  # reference paths being resolved

    def res(node, depth: int):
        if depth > MAX_DEPTH:
            raise BudgetExceeded(f"interpolations nest deeper than {MAX_DEPTH:,} levels")
        if isinstance(node, str):
            m = _INTERP.match(node)
            if m is None or m.group(1) in resolving:
                return node, 1
            target = root
            for part in m.group(1).split("."):
                if not isinstance(target, dict) or part not in target:
                    return node, 1
                target = target[part]
            if isinstance(target, (dict, list)) and memo.get(id(target), (0, 0))[1] is None:
                return node, 1  # refers to a container that holds the reference
            resolving.add(m.group(1))
            try:
                return res(target, depth + 1)
            finally:
                resolving.discard(m.group(1))
        if not isinstance(node, (dict, list)):
            return node, 1
        hit = memo.get(id(node))
        if hit is not None:
            if hit[1] is None:
                raise BudgetExceeded("a container contains itself (a reference cycle)")
            return hit
        memo[id(node)] = (None, None)
        size = 1
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                out[k], n = res(v, depth + 1)
                size += n
                if size > MAX_NODES:
                    break
        else:
            out = []
            for v in node:
                r, n = res(v, depth + 1)
                out.append(r)
                size += n
                if size > MAX_NODES:
                    break
        if size > MAX_NODES:
            raise BudgetExceeded(f"the hyper-parameters expand to more than {MAX_NODES:,} values once their "
                                 "interpolations are resolved")
        memo[id(node)] = (out, size)
        return out, size

    return res(cfg, 0)[0]


# ----------------------------------------------------------------------------------------------- torch files

def read_torch_file(path: str | os.PathLike, max_bytes: int = 4 << 30):
    """The object a torch.save file holds, with OmegaConf containers turned into plain dicts / lists.

    Never executes code from the file (the restricted unpickler) and never allocates more than the budgets in
    the module docstring allow. Raises CheckpointError naming the file and the problem (corrupt, truncated,
    refused global, exceeded budget).
    """
    source = os.fspath(path)
    size = check_file(source, max_bytes)
    try:
        with _open_regular(source) as f:
            zipped = f.read(4) == b"PK\x03\x04"
            f.seek(0)
            if zipped:
                records = _zip_records(f, size, max_bytes)
            elif _is_tar(f):
                raise Refused("a tar archive (torch's pre-2018 format), which kernelscope does not read")
            else:
                records = None
            f.seek(0)
            token = _STATE.set(_LoadState(size, records))
            try:
                obj = torch.load(f, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
            finally:
                _STATE.reset(token)
        obj = to_plain(obj)
        if isinstance(obj, dict) and isinstance(obj.get("hyper_parameters"), dict):
            obj["hyper_parameters"] = resolve_interpolations(obj["hyper_parameters"])
        return obj
    except CheckpointError:
        raise
    except RefusedGlobal as e:
        raise CheckpointError(
            f"{source}: refused to load: the pickle references '{e.global_name}', which could run code; "
            "kernelscope only reads tensors, plain containers and OmegaConf configs"
        ) from None
    except Refused as e:
        raise CheckpointError(f"{source}: refused to load: {e}") from None
    except BudgetExceeded as e:
        raise CheckpointError(f"{source}: {e}") from None
    except MemoryError:
        raise CheckpointError(f"{source}: ran out of memory while loading") from None
    except RecursionError:
        raise CheckpointError(f"{source}: nesting too deep to load") from None
    except Exception as e:
        raise CheckpointError(f"{source}: corrupt, truncated or not a torch checkpoint ({_short(e)})") from None


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
