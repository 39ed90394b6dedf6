"""The restricted unpickler: every global a pickle names is looked up here, in the allow-lists of
builtin_rebuild.py, torch_rebuild.py and numpy_rebuild.py (dicts of `_Global`s, never a module's namespace) or
the OmegaConf / typing names below (inert stand-ins); anything else raises RefusedGlobal before it is called.

`restricted_pickle` is what torch.load gets as its pickle_module, so torch's own unpickling goes through
`RestrictedUnpickler` too; each load runs within the `_LoadState` of the file being read (budget.py).
"""
from __future__ import annotations

import _compat_pickle
import pickle
import types

import torch

from .budget import _STATE, RefusedGlobal, _LoadState
from .builtin_rebuild import _BUILTINS, _CODECS_ENCODE, _COLLECTIONS
from .numpy_rebuild import _NUMPY_GLOBALS
from .stubs import _inert
from .torch_rebuild import _TORCH, _TORCH_FUNCS, _checked_persistent_load

_OMEGACONF_CLASSES = {
    "DictConfig", "ListConfig", "AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode",
    "PathNode", "EnumNode", "ValueNode", "Metadata", "ContainerMetadata", "Node", "Container",
    "UnionNode", "InterpolationResultNode",
}
_TYPING_NAMES = {"Any", "Dict", "List", "Tuple", "Optional", "Union", "Sequence", "Mapping"}
_INERT: dict[tuple[str, str], type] = {}
_SET_PERSISTENT_LOAD = pickle.Unpickler.__dict__["persistent_load"].__set__  # the C unpickler's own slot


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that resolves only allow-listed globals, to checking stand-ins (see the package
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
