"""`sgconv_core.device.reuse_freed_memory`: inside the block glibc reuses freed large tensors' memory (no fresh page
faults), outside it (and after it) it maps and faults them again; nesting undoes the setting only at the end."""
import resource

import pytest
import torch

from sgconv_core import device

SIZES_MB = (40, 24, 40, 8)  # a step's activations: two above glibc's largest dynamic mmap threshold (32 MB)


def _faults(rounds: int) -> int:
    """Minor page faults of `rounds` rounds of allocating, touching and freeing tensors of SIZES_MB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        ts = [torch.empty(mb * 2**20 // 4) for mb in SIZES_MB]
        for t in ts:
            t.fill_(1.0)
        del ts
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(device._glibc() is None, reason="needs glibc (mallopt)")
def test_freed_tensors_are_reused_inside_and_faulted_outside():
    pages = sum(SIZES_MB) * 2**20 // resource.getpagesize()  # 28,672 pages of 4 kB per round
    outside = _faults(4)
    with device.reuse_freed_memory():
        _faults(1)  # the first round grows the heap
        inside = _faults(4)
    after = _faults(4)
    assert outside >= 4 * pages * 0.6, outside  # measured: ~26,000-28,700 per round
    assert inside <= 4 * pages * 0.1, inside  # measured: 0 (the same memory, already faulted in)
    assert after >= 4 * pages * 0.6, after  # the defaults are back


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
