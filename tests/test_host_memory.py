"""`sgconv_core.device.reuse_freed_memory`: inside the block glibc reuses freed large tensors' memory (no fresh page
faults), outside it (and after it) it maps and faults them again; nesting undoes the setting only at the end."""
import json
import os
import subprocess
import sys

import pytest
import torch

from sgconv_core import device

#: Run in a fresh interpreter: glibc's thresholds are process state (an earlier test's background training thread
#: may be inside reuse_freed_memory). mallinfo2 says where a 40 MB tensor's memory comes from: its own mapping
#: (hblkhd, glibc's default above 32 MB) or the heap (arena), and whether the heap keeps it once freed (fordblks).
#: (Page-fault counts would say the same less reliably: transparent huge pages change them run to run.)
_CHILD = """
import ctypes, json, torch
from sgconv_core import device

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
MB = 2**20

def where():
    before = libc.mallinfo2()
    t = torch.empty(40 * MB // 4)
    t.fill_(1.0)
    during = libc.mallinfo2()
    del t
    after = libc.mallinfo2()
    return {"mapped": (during.hblkhd - before.hblkhd) / MB, "kept": after.fordblks / MB}

out = {"outside": where()}
with device.reuse_freed_memory():
    out["inside"] = where()
out["after"] = where()
print(json.dumps(out))
"""


@pytest.mark.skipif(device._glibc() is None or not hasattr(device._glibc(), "mallinfo2"),
                    reason="needs glibc >= 2.33 (mallopt, mallinfo2)")
def test_freed_tensors_are_kept_for_reuse_inside_and_unmapped_outside():
    res = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["outside"]["mapped"] >= 40, got  # its own mapping, unmapped (and faulted again) on every allocation
    assert got["inside"]["mapped"] == 0 and got["inside"]["kept"] >= 40, got  # from the heap, kept once freed
    assert got["after"]["mapped"] >= 40, got  # the defaults are back


def test_nested_blocks_set_once_and_restore_at_the_end(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(device, "_glibc", lambda: FakeLibc())
    with device.reuse_freed_memory():
        with device.reuse_freed_memory():
            assert len(calls) == 2
        assert len(calls) == 2  # the inner exit keeps the setting
    assert calls == [("mallopt", -3, device.REUSE_MMAP_THRESHOLD), ("mallopt", -1, device.REUSE_TRIM_THRESHOLD),
                     ("mallopt", -3, 128 * 1024), ("mallopt", -1, 128 * 1024), ("trim", 0)]
    calls.clear()
    with pytest.raises(RuntimeError), device.reuse_freed_memory():
        raise RuntimeError("a failing step")
    assert calls[-1] == ("trim", 0)  # restored on an error too


def test_without_glibc_it_is_a_no_op(monkeypatch):
    monkeypatch.setattr(device, "_glibc", lambda: None)
    with device.reuse_freed_memory():
        assert torch.ones(3).sum() == 3
