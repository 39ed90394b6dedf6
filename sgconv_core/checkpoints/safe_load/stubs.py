"""Stand-ins the restricted unpickler puts on the pickle's stack instead of foreign objects.

`_Global` is what every allow-listed name resolves to; `Inert` classes stand for OmegaConf containers and typing
markers; the other `_Stub` subclasses (torch_rebuild.py, numpy_rebuild.py) for tensors, storages and numpy values.
`plain.to_plain` replaces them all once the pickle is read.
"""
from __future__ import annotations

from .budget import Refused


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
    # __module__: the package (sgconv_core.checkpoints.safe_load), as when it was one module
    return type(name, (Inert,), {"qualname": f"{module}.{name}", "__module__": __package__})


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
