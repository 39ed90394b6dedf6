"""Hostile checkpoint files cost at most a clear CheckpointError: no crash, no hang, bounded memory (issue 14).

Each file is crafted here (small pickles written opcode by opcode, zip archives that only *declare* a huge record,
a FIFO) and loaded in a child process under a memory cap (RLIMIT_AS) and a timeout, so that a segfault, a hang or
a runaway allocation fails the test instead of taking pytest down. Several files share one child (importing torch
is most of a child's cost); the child prints one line per file, so each file's outcome is still asserted alone.
"""
import os
import struct
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_CAP = 2 << 30  # address space of a child; importing torch takes about 0.65 GB of it
TIMEOUT = 20  # seconds per child

_CHILD = textwrap.dedent(
    """
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
    import sgconv_core
    for path in sys.argv[1:]:
        start = time.perf_counter()
        try:
            sgconv_core.load(path)
            result = "LOADED"
        except ValueError as e:  # CheckpointError is a ValueError
            result = f"{{type(e).__name__}}: {{e}}"
        except BaseException as e:
            result = f"UNEXPECTED {{type(e).__name__}}: {{e}}"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        line = f"{{time.perf_counter() - start:.2f}}s {{peak}}MB | {{result}}"
        print(line.replace("\\n", " "), flush=True)
    """
).format(cap=MEMORY_CAP)


def load_in_child(*paths) -> list[str]:
    """Load each path in one capped child; its outcome per path: 'CheckpointError: <message>' (or LOADED, ...).

    Fails the test on a signal (segfault: returncode -11), a non-zero exit, a hang or a missing line.
    """
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=ROOT)
    try:
        out = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths)], capture_output=True, text=True,
                             timeout=TIMEOUT, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"loading hung (over {TIMEOUT} s); printed so far: {e.stdout!r}")
    lines = out.stdout.splitlines()
    assert out.returncode >= 0, f"the child died of signal {-out.returncode}; printed: {lines}; {out.stderr[-2000:]}"
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    assert "Traceback" not in out.stderr and "Internal error" not in out.stderr, out.stderr[-2000:]
    assert len(lines) == len(paths), (lines, out.stderr[-2000:])
    return [line.split(" | ", 1)[1] for line in lines]


def refused(outcome: str, *words: str) -> bool:
    return outcome.startswith("CheckpointError: ") and all(w in outcome for w in words)


# ------------------------------------------------------------------------------------------------- pickle opcodes
def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # BININT


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _numpy_dtype(code: str, flags: int) -> bytes:
    """numpy.dtype(code, False, True) with BUILD state (3, '|', None, None, None, -1, -1, flags)."""
    return (_global("numpy", "dtype") + _str(code) + b"\x89\x88\x87R"
            + b"(" + _int(3) + _str("|") + b"NNN" + _int(-1) + _int(-1) + _int(flags) + b"tb")


def numpy_array_pickle(code: str, flags: int) -> bytes:
    """An ndarray of two 8-byte items whose dtype state carries `flags`; 0x01 without 0x02 is 'holds object
    pointers, pickled as raw bytes': numpy then frees 0x4141414141414141 as a PyObject* (segfault)."""
    return (b"\x80\x02" + _global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
            + _int(0) + b"\x85" + _str("b") + b"\x87R"
            + b"(" + _int(1) + _int(2) + b"\x85" + _numpy_dtype(code, flags) + b"\x89"
            + b"C\x10" + b"A" * 16 + b"tb.")


# ------------------------------------------------------------------------------------------------- numpy state
def test_numpy_dtype_state_cannot_crash_the_process(tmp_path):
    files = {"object_dtype.pkl": numpy_array_pickle("O", 0x01),  # segfaulted before the fix
             "flagged_uint.pkl": numpy_array_pickle("u8", 0x01),  # 'Internal error' at interpreter exit
             "flagged_void.pkl": numpy_array_pickle("V8", 0x3D)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    outcomes = load_in_child(*(tmp_path / name for name in files))
    for name, outcome in zip(files, outcomes):
        assert refused(outcome, name, "numpy dtype"), outcome
