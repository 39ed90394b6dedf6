"""Kernels out of a checkpoint as numpy arrays, computed once per (checkpoint, layer, length, dtype).

    K = extract_kernels(ck, L)                  # {"layers.0": (C_k, H, L) float64, ...}
    K = extract_kernels(ck, L, layers=[1])      # {"layers.1": (C_k, H, L) float64}: only the layers asked for
    K = extract_kernels(ck, L, dtype="float32") # float32 arrays (half the memory; see below)
    kernel_table(ck)                # one row per layer: name, kind, H, C_k, n_params, settings
    ssm_modes(kernel)               # (residues (C_k, H, M), poles (H, M)) complex128, or None

How each family is computed (always under torch.no_grad, never touching the checkpoint's modules):
- SGConv and free kernels: ``kernel(L)`` in the kernel's own dtype, then converted to the requested dtype
  (the float32 result *is* what the model convolves with, so float32 output loses nothing).
- S4D / S4: ``kernel(L)`` of a float64 deep copy: the kernel module's own evaluator (for S4D the blocked
  Vandermonde product of `sgconv_core.kernels.ssm.vandermonde`; for S4 the Vandermonde / Cauchy routes within
  ``l_kernel`` and the block route beyond (`S4Kernel.block_C`: the same Woodbury route per block of l_kernel taps,
  exact and differentiable), as in training), in float64; float32 output is that float64 kernel
  rounded once (relative error <= 2^-24 per tap, with the float64 state's accuracy). There is no second evaluator
  here: `ssm_modes` gives the poles and residues for analysis, not kernels.

The cache holds one entry per layer, keyed by the checkpoint object (its id, checked against a weak reference so
a recycled id never hits), the layer's index, a fingerprint of that kernel's tensors (storage pointer + in-place
version counter, so an edited parameter invalidates it), L and the dtype. It holds at most ``CACHE_BYTES`` of
arrays (least recently used first out). Returned arrays are read-only views of the cached ones: copy before editing.
"""
from __future__ import annotations

import copy
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

from sgconv_core.families import FAMILIES
from sgconv_core.kernels import check_length

__all__ = ["extract_kernels", "kernel_table", "ssm_modes", "clear_cache", "CACHE_BYTES"]

#: Most bytes of kernel arrays kept in the cache.
CACHE_BYTES = 1 << 30

_CONFIG_KEYS = ("kernel_dim", "n_scales", "init_scale", "mode", "decay_min", "decay_max",
                "d_state", "n_ssm", "rank", "init", "disc", "dt_transform", "dt_tie", "l_max")

_lock = threading.Lock()
_cache: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (weakref to owner, value, nbytes)
_cache_bytes = 0


# ----------------------------------------------------------------------------------------------- helpers
def _kernels_of(ck) -> list:
    """The kernel modules of a Checkpoint, a SequenceModel (``.kernels``) or a list of kernels."""
    if isinstance(ck, (list, tuple)):
        return list(ck)
    ks = getattr(ck, "kernels", None)
    if ks is None:
        raise TypeError(f"expected a Checkpoint, a model with .kernels or a list of kernels, got {type(ck).__name__}")
    return list(ks)


def _name(kernel, i: int) -> str:
    return getattr(kernel, "name", "") or f"layers.{i}"


def _fingerprint(kernels) -> tuple:
    """(data pointer, version counter, shape) of every tensor of every kernel: changes on any edit."""
    out = []
    for k in kernels:
        for t in list(k.parameters()) + list(k.buffers()):
            out.append((t.data_ptr(), t._version, tuple(t.shape), str(t.dtype)))
    return tuple(out)


def _cache_get(owner, key):
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            return None
        ref, value, _ = hit
        if ref() is not owner:  # the id was recycled by another object
            _cache_pop(key)
            return None
        _cache.move_to_end(key)
        return value


def _cache_pop(key) -> None:
    global _cache_bytes
    item = _cache.pop(key, None)
    if item is not None:
        _cache_bytes -= item[2]


def _cache_put(owner, key, value, nbytes: int) -> None:
    global _cache_bytes
    if nbytes > CACHE_BYTES:
        return
    try:
        ref = weakref.ref(owner)
    except TypeError:  # a plain list of kernels: key on the first kernel module instead
        return
    with _lock:
        _cache_pop(key)
        while _cache and _cache_bytes + nbytes > CACHE_BYTES:
            _cache_pop(next(iter(_cache)))
        _cache[key] = (ref, value, nbytes)
        _cache_bytes += nbytes


def clear_cache() -> None:
    """Forget every cached kernel array."""
    global _cache_bytes
    with _lock:
        _cache.clear()
        _cache_bytes = 0


def _owner(ck):
    """The object whose lifetime the cache entry follows."""
    if isinstance(ck, (list, tuple)):
        return ck[0] if ck else None
    return ck


# ----------------------------------------------------------------------------------------------- SSM modes
def _is_ssm(kernel) -> bool:
    """A state-space family's kernel (poles and residues exist): the registry's ``ssm``."""
    fam = FAMILIES.get(getattr(kernel, "kind", None))
    return fam is not None and fam.ssm


def _float64_copy(kernel):
    return copy.deepcopy(kernel).double()


def ssm_modes(kernel):
    """Modal form of an S4 / S4D kernel in float64: (residues (C_k, H, M) complex128, poles (H, M) complex128).

    K[c,h,l] = Re sum_m residues[c,h,m] * poles[h,m]^l, conjugate pairs listed explicitly. None for
    non-SSM kernels (SGConv, free) and for the S4D 'dss' discretisation (no fixed modal form).
    Cached per kernel module and parameter version.
    """
    if not _is_ssm(kernel) or getattr(kernel, "disc", None) == "dss":
        return None
    key = ("modes", id(kernel), _fingerprint([kernel]))
    hit = _cache_get(kernel, key)
    if hit is not None:
        return hit
    with torch.no_grad():
        r, lam = _float64_copy(kernel).modal()
    r = np.ascontiguousarray(r.detach().cpu().numpy().astype(np.complex128))
    lam = np.ascontiguousarray(lam.detach().cpu().numpy().astype(np.complex128))
    if lam.ndim == 1:  # defensive: (M,) shared poles
        lam = np.broadcast_to(lam, r.shape[1:]).copy()
    r.setflags(write=False)
    lam.setflags(write=False)
    value = (r, lam)
    _cache_put(kernel, key, value, r.nbytes + lam.nbytes)
    return value


# ----------------------------------------------------------------------------------------------- kernels
_DTYPES = {"float64": np.float64, "float32": np.float32}


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}") from None
    if dt.name not in _DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dt.name}")
    return dt


def layer_names(kernels) -> list[str]:
    """The layer names in model order (a repeated name gets '#<index>')."""
    out: list[str] = []
    for i, k in enumerate(kernels):
        name = _name(k, i)
        out.append(f"{name}#{i}" if name in out else name)
    return out


def layer_indices(layers, names: list[str]) -> list[int]:
    """Indices of the requested layers (ints in model order, negative from the end, or names); all if None."""
    if layers is None:
        return list(range(len(names)))
    if isinstance(layers, (int, str, np.integer)):
        layers = [layers]
    out = []
    for item in layers:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"no layer named {item!r}; the layers are {', '.join(names)}")
            i = names.index(item)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item)
            if not -len(names) <= i < len(names):
                raise ValueError(f"layer {i} out of range: the model has {len(names)} layer(s)")
            i %= len(names)
        else:
            raise ValueError(f"a layer is an index or a name, got {item!r}")
        if i not in out:
            out.append(i)
    return sorted(out)


def _kernel_array(kernel, L: int, dtype: np.dtype) -> np.ndarray:
    """One layer's kernel at length L as (C_k, H, L) of ``dtype``: the module's own forward (SSMs: a float64
    copy's, rounded once to float32 if asked)."""
    with torch.no_grad():
        src = _float64_copy(kernel) if _is_ssm(kernel) else kernel
        K = src(L).detach().cpu()
        if K.dtype == torch.float64 and dtype == np.float32:
            K = K.to(torch.float32)  # round the float64 kernel once; the float64 tensor is freed right after
        out = K.numpy().astype(dtype, copy=False)
    return np.ascontiguousarray(out)


def extract_kernels(ck, L: int, progress=None, layers=None, dtype="float64") -> dict[str, np.ndarray]:
    """The layers' kernels at length L: {kernel name: (C_k, H, L) array of ``dtype``}, in model order.

    ck: a Checkpoint, a SequenceModel (anything with ``.kernels``) or a list of kernel modules.
    L: taps. Raises CheckpointError for a length the kernels refuse (non-positive, over budget).
    progress: optional callable(done, total) after each layer.
    layers: None (every layer) or the layers to compute: indices in model order or names (one or a list);
        ValueError for one the model does not have. Only these layers are computed (and cached).
    dtype: "float64" (default) or "float32": see the module doc for what float32 keeps exact.
    Results are cached per layer (see module doc); the arrays are read-only.
    """
    kernels = _kernels_of(ck)
    L = check_length(L, 1, 1)  # a positive integer (2.5, '64', True refused); each kernel checks its own budget
    dt = _check_dtype(dtype)
    names = layer_names(kernels)
    idx = layer_indices(layers, names)
    owner = _owner(ck)
    out: dict[str, np.ndarray] = {}
    for j, i in enumerate(idx):
        k = kernels[i]
        key = ("kernel", id(owner), i, _fingerprint([k]), L, dt.name)
        K = _cache_get(owner, key) if owner is not None else None
        if K is None:
            K = _kernel_array(k, L, dt)
            K.setflags(write=False)
            if owner is not None:
                _cache_put(owner, key, K, K.nbytes)
        out[names[i]] = K
        if progress:
            progress(j + 1, len(idx))
    return out


def kernel_table(ck) -> list[dict]:
    """One row per layer: name, kind, H, channels, C_k, bidirectional, n_params, and the settings that
    shape the kernel (kernel_dim, n_scales, mode, decay, d_state, n_ssm, rank, init, disc, l_max, ...)."""
    rows = []
    for i, k in enumerate(_kernels_of(ck)):
        row = {"name": _name(k, i), "kind": k.kind, "H": int(k.H), "channels": int(k.channels),
               "C_k": int(k.C_k), "bidirectional": bool(k.bidirectional), "n_params": int(k.n_params)}
        try:
            cfg = k.config
        except NotImplementedError:
            cfg = {}
        for key in _CONFIG_KEYS:
            if key in cfg:
                row[key] = cfg[key]
        if k.kind == "s4":
            row["l_kernel"] = int(k.l_kernel)
        rows.append(row)
    return rows
