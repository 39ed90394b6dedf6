"""Errors raised by sgconv_core."""


class CheckpointError(ValueError):
    """A checkpoint could not be read or understood.

    The message names the file, the key (where one is involved) and the problem, e.g.
    ``"model.safetensors: key 'layers.0.kernel.C' has shape (2, 4) but (1, 64, 32, 2) was expected"``.
    """
