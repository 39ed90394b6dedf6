"""The numpy names a pickle may use: numeric dtypes from a string code, scalars and arrays from exactly their
bytes. They resolve to placeholders; numpy's own objects never see the pickle's state."""
from __future__ import annotations

import re

from .budget import Refused
from .stubs import _Global, _Stub
from .torch_rebuild import _shape

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

