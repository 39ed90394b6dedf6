"""Errors raised by sgconv_core."""


class CheckpointError(ValueError):
    """A checkpoint could not be read or understood.

    The message names the file, the key (where one is involved) and the problem, e.g.
    ``"model.safetensors: key 'layers.0.kernel.C' has shape (2, 4) but (1, 64, 32, 2) was expected"``.
    """


def printable(text) -> str:
    """``text`` safe to print on a terminal: control characters (escape codes, newlines, ...) and other
    non-printable characters are shown escaped (``\\x1b``), the way repr() shows them; the rest as is."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
