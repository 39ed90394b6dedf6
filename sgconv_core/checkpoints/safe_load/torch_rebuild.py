"""The torch names a pickle may use: storages only from the archive, tensor views inside their storage.

torch's persistent_load (which allocates a storage) is called only after `_checked_persistent_load` has found
the storage in the archive (zip) or within the file (legacy).
"""
from __future__ import annotations

import torch

from .budget import MAX_DIMS, BudgetExceeded, Refused, _bytes, _LoadState
from .stubs import _Global, _Stub


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
    if state.records is not None:
        pid = _zip_storage(state.records, pid)
    else:
        _legacy_storage(state, pid)
    return _StorageRef(load(pid))


def _zip_storage(records: dict[str, int], pid: tuple) -> tuple:
    """The persistent id torch loads for ('storage', storage_type, key, location, numel), once the archive holds
    record data/<key> of at least numel elements (an UntypedStorage is read as bytes)."""
    if len(pid) != 5:
        raise Refused("a malformed storage reference")
    _, storage_type, key, location, numel = pid
    if storage_type is _UNTYPED:
        storage_type = torch.UntypedStorage
        dtype = torch.uint8
    else:
        dtype = getattr(storage_type, "dtype", None)
    nbytes = _index(numel, "storage size") * _element_size(dtype)
    record = records.get(f"data/{key}") if isinstance(key, str) else None
    if record is None:
        raise BudgetExceeded(f"a tensor storage ({key!r:.40}) is not a record of the archive")
    if nbytes > record:
        raise BudgetExceeded(f"tensor storage 'data/{key}' declares {_bytes(nbytes)}, but its record holds "
                             f"{_bytes(record)}")
    return ("storage", storage_type, key, location, numel)


def _legacy_storage(state: _LoadState, pid: tuple) -> None:
    """Check ('storage', storage_type, root_key, location, numel, view_metadata) of a legacy file: all distinct
    storages together fit in the file, and a view lies inside its storage."""
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
