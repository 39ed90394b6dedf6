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
import zipfile

import pytest
import torch

import sgconv_core
from sgconv_core.checkpoints.safe_load import MAX_DEPTH, MAX_NODES, read_torch_file

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


def _long(n: int) -> bytes:
    raw = n.to_bytes(n.bit_length() // 8 + 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1: any size


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(func: bytes, *args: bytes) -> bytes:
    return func + _tuple(*args) + b"R"  # REDUCE


def _storage(numel: int, key: str = "0", legacy: bool = False) -> bytes:
    """A persistent id naming a float storage of numel elements: ('storage', FloatStorage, key, 'cpu', numel)."""
    pid = [_str("storage"), _global("torch", "FloatStorage"), _str(key), _str("cpu"), _long(numel)]
    return _tuple(*pid, *([b"N"] if legacy else [])) + b"Q"  # BINPERSID


def _tensor(storage: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    return _call(_global("torch._utils", "_rebuild_tensor_v2"), storage, _long(offset),
                 _tuple(*map(_long, size)), _tuple(*map(_long, stride)), b"\x89",
                 _call(_global("collections", "OrderedDict")))


def pickled(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def torch_zip(path, data_pkl: bytes, storages: dict | None = None, deflated: bool = False):
    """A torch.save-style zip archive: archive/data.pkl, archive/data/<key> records, byteorder, version."""
    method = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data, compress_type=method)
        z.writestr("archive/version", "3\n")
    return path


def declare_size(path, record: str, size: int):
    """Rewrite a record's uncompressed size in the zip's local header and central directory (data unchanged)."""
    data = bytearray(path.read_bytes())
    name = record.encode()
    for signature, field in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        name_at = {22: 30, 24: 46}[field]
        at = data.find(signature)
        while at >= 0 and data[at + name_at:at + name_at + len(name)] != name:
            at = data.find(signature, at + 4)
        data[at + field:at + field + 4] = struct.pack("<I", size)
    path.write_bytes(bytes(data))


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


# ------------------------------------------------------------------------------------------------- the archives
FOUR_FLOATS = struct.pack("<4f", 1, 2, 3, 4)


def test_the_crafted_archives_are_ones_torch_reads(tmp_path):
    """The helpers below write archives the loader accepts when nothing in them is hostile."""
    path = torch_zip(tmp_path / "ok.pt", pickled(_tensor(_storage(4), 1, (3,), (1,))), {"0": FOUR_FLOATS})
    assert torch.equal(read_torch_file(path), torch.tensor([2.0, 3.0, 4.0]))
    path = torch_zip(tmp_path / "ok_deflated.pt", pickled(_tensor(_storage(4), 0, (2, 2), (1, 2))),
                     {"0": FOUR_FLOATS}, deflated=True)
    assert torch.equal(read_torch_file(path), torch.tensor([[1.0, 3.0], [2.0, 4.0]]))


def test_nesting_and_exponential_structures_are_refused_within_budget(tmp_path):
    deep = 100_000
    nested = pickled(b"]" * deep + b"a" * (deep - 1))  # EMPTY_LIST x n, APPEND x n-1: a list in a list in ...
    dag = b")q\x00" + b"".join(b"h%c" % i + b"h%c" % i + b"\x86q%c" % (i + 1) for i in range(60))  # t[i+1] = (t[i], t[i])
    cycle = b"]q\x00h\x00a"  # a list that contains itself
    files = {
        "nested.pt": torch_zip(tmp_path / "nested.pt", nested),
        "dag.pt": torch_zip(tmp_path / "dag.pt", pickled(dag)),
        "cycle.pt": torch_zip(tmp_path / "cycle.pt", pickled(cycle)),
    }
    # a 2 KB config whose interpolations reference each other twice per level: 2**40 values once resolved
    hp = {f"k{i}": [f"${{k{i + 1}}}", f"${{k{i + 1}}}"] for i in range(40)} | {"k40": 1, "me": "${me}"}
    torch.save({"hyper_parameters": hp}, tmp_path / "interp.ckpt")
    files["interp.ckpt"] = tmp_path / "interp.ckpt"
    assert all(p.stat().st_size < (256 << 10 if name == "nested.pt" else 4096) for name, p in files.items())
    nested_out, dag_out, cycle_out, interp_out = load_in_child(*files.values())
    assert refused(nested_out, "nested.pt", f"nesting deeper than {MAX_DEPTH:,} levels"), nested_out
    assert refused(dag_out, "dag.pt", f"more than {MAX_NODES:,} values"), dag_out
    assert refused(cycle_out, "cycle.pt", "contains itself"), cycle_out
    assert refused(interp_out, "interp.ckpt", f"expand to more than {MAX_NODES:,} values"), interp_out


def test_allocations_a_small_pickle_asks_for_are_refused_before_allocating(tmp_path):
    n = 600_000_000  # 2.4 GB of float32, over the child's whole address space
    legacy = b"".join(pickled(part) for part in (
        _long(0x1950A86A20F9469CFC6C), _long(1001), b"}", _tensor(_storage(n, legacy=True), 0, (n,), (1,)),
        b"]" + _str("0") + b"a")) + struct.pack("<q", n)
    files = {
        "tensor_ctor.pt": torch_zip(tmp_path / "tensor_ctor.pt", pickled(_call(_global("torch", "Tensor"), _long(n)))),
        "bytearray.pt": torch_zip(tmp_path / "bytearray.pt",
                                  pickled(_call(_global("builtins", "bytearray"), _long(10 ** 10)))),
        "list_range.pt": torch_zip(tmp_path / "list_range.pt", pickled(_call(
            _global("builtins", "list"), _call(_global("builtins", "range"), _long(10 ** 9))))),
        "zip_storage.pt": torch_zip(tmp_path / "zip_storage.pt", pickled(_tensor(_storage(n), 0, (n,), (1,))),
                                    {"0": FOUR_FLOATS}),
        "missing_record.pt": torch_zip(tmp_path / "missing_record.pt", pickled(_tensor(_storage(4, "7"), 0, (4,), (1,))),
                                       {"0": FOUR_FLOATS}),
        "legacy_storage.pt": tmp_path / "legacy_storage.pt",
        # BUILD on a tensor is Tensor.__setstate__ -> set_(storage, 0, (n,), (1,)), which grows the storage
        "tensor_set.pt": torch_zip(tmp_path / "tensor_set.pt", pickled(
            _tensor(_storage(4), 0, (4,), (1,)) + _tuple(_storage(4), _long(0), _tuple(_long(n)), _tuple(_long(1)))
            + b"b"), {"0": FOUR_FLOATS}),
    }
    files["legacy_storage.pt"].write_bytes(legacy)
    outcomes = dict(zip(files, load_in_child(*files.values())))
    assert refused(outcomes["tensor_ctor.pt"], "refused", "torch.Tensor(...)"), outcomes
    assert refused(outcomes["bytearray.pt"], "refused", "bytearray(10000000000)"), outcomes
    assert refused(outcomes["list_range.pt"], f"more than {MAX_NODES:,} values"), outcomes
    assert refused(outcomes["zip_storage.pt"], "declares 2.24 GiB, but its record holds 16 bytes"), outcomes
    assert refused(outcomes["missing_record.pt"], "not a record of the archive"), outcomes
    assert refused(outcomes["legacy_storage.pt"], "storages declare 2.24 GiB, more than the file's"), outcomes
    assert refused(outcomes["tensor_set.pt"], "refused", "sets the state of <tensor>"), outcomes


def test_views_outside_or_overlapping_their_storage_are_refused(tmp_path):
    views = {"expand.pt": ((10 ** 6, 10 ** 6), (0, 0), "overlaps itself"),  # stride 0: a terabyte of one float
             "as_strided.pt": ((2, 10 ** 6), (1, 0), "overlaps itself"),
             "diagonal_overlap.pt": ((3, 2), (1, 1), "overlaps itself"),
             "past_the_end.pt": ((5,), (1,), "reaches element 4 of a storage of 4")}
    files = [torch_zip(tmp_path / name, pickled(_tensor(_storage(4), 0, size, stride)), {"0": FOUR_FLOATS})
             for name, (size, stride, _) in views.items()]
    for (name, (*_, words)), outcome in zip(views.items(), load_in_child(*files)):
        assert refused(outcome, name, words), outcome


def test_zip_records_are_checked_before_they_are_inflated(tmp_path):
    bomb = torch_zip(tmp_path / "bomb.pt", pickled(_tensor(_storage(4), 0, (4,), (1,))), {"0": FOUR_FLOATS},
                     deflated=True)
    declare_size(bomb, "archive/data/0", 3 << 30)  # declared, not written: the file stays under 1 KB
    stored = torch_zip(tmp_path / "stored.pt", pickled(_tensor(_storage(4), 0, (4,), (1,))), {"0": FOUR_FLOATS})
    declare_size(stored, "archive/data/0", 3 << 30)
    script = torch_zip(tmp_path / "script.pt", pickled(b"N"), {"0": FOUR_FLOATS})
    with zipfile.ZipFile(script, "a") as z:
        z.writestr("archive/constants.pkl", pickled(b"N"))
    bomb_out, stored_out, script_out = load_in_child(bomb, stored, script)
    assert refused(bomb_out, "bomb.pt", "record 'archive/data/0' would inflate to 3.00 GiB, over the 1.00 GiB "
                   "budget"), bomb_out
    assert refused(stored_out, "stored.pt", "corrupt", "does not hold"), stored_out
    assert refused(script_out, "script.pt", "TorchScript"), script_out


def test_only_regular_files_are_opened(tmp_path):
    fifo = tmp_path / "model.ckpt"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: forever
    paths = [fifo, tmp_path]
    if os.path.exists("/dev/zero"):
        paths.append("/dev/zero")
    outcomes = load_in_child(*paths)
    assert refused(outcomes[0], "model.ckpt", "FIFO"), outcomes
    assert refused(outcomes[1], "a directory"), outcomes
    assert len(outcomes) < 3 or refused(outcomes[2], "/dev/zero", "character device"), outcomes


# ---------------------------------------------------------------------------------------------------- TOCTOU
def _swap_after_open(monkeypatch, module, path, replacement):
    """Make ``module.open_regular`` replace ``path`` with ``replacement`` right after it has opened it: what a
    second process racing the check could do. Returns the list of paths opened."""
    real = module.open_regular
    opened = []

    def racing(p, *a, **kw):
        out = real(p, *a, **kw)
        if not opened:  # the first open only
            os.replace(replacement, path)
        opened.append(os.fspath(p))
        return out

    monkeypatch.setattr(module, "open_regular", racing)
    return opened


def test_safetensors_read_from_the_descriptor_that_was_checked(tmp_path, monkeypatch):
    """The file is opened once; its check (fstat) and its bytes come from that descriptor, so a path swapped in
    between (here: for another file; it could be a FIFO or a huge file) is never read."""
    from safetensors.torch import save_file

    import sgconv_core.cards as cards
    from sgconv_core.checkpoints.safe_load import safetensors_file

    path, other = tmp_path / "m.safetensors", tmp_path / "other.safetensors"
    save_file({"w": torch.arange(6.0).reshape(2, 3)}, str(path), metadata={"format": "kernelscope", "card": "{}"})
    save_file({"evil": torch.zeros(7)}, str(other), metadata={"format": "evil"})
    opened = _swap_after_open(monkeypatch, safetensors_file, path, other)
    tensors, meta = safetensors_file.read_safetensors_file(path)
    assert opened == [str(path)]
    assert list(tensors) == ["w"] and torch.equal(tensors["w"], torch.arange(6.0).reshape(2, 3))
    assert meta == {"format": "kernelscope", "card": "{}"}
    assert list(safetensors_file.read_safetensors_file(path)[0]) == ["evil"]  # the swap did happen
    # the header-only reader (model cards, the Models page's table) likewise
    save_file({"w": torch.ones(1)}, str(path), metadata={"format": "kernelscope", "card": '{"task": "digits"}'})
    save_file({"w": torch.ones(1)}, str(tmp_path / "o2.safetensors"), metadata={"format": "nope"})
    opened = _swap_after_open(monkeypatch, cards, path, tmp_path / "o2.safetensors")
    assert cards.read_card(path) == {"task": "digits"} and opened == [str(path)]  # the file opened first
    with pytest.raises(sgconv_core.CheckpointError, match="not a kernelscope checkpoint"):
        cards.read_card(path)


def test_safetensors_headers_that_lie_are_refused(tmp_path):
    """A header length beyond the file or over the limit, a non-JSON or non-object header, non-string metadata,
    a FIFO, a NUL byte: one CheckpointError each, nothing large allocated (the card reader and the loader).
    The wording after "cannot read a safetensors header" is the safetensors library's own."""
    import sgconv_core.cards as cards

    def raw(name, header: bytes, n=None, tail=b""):
        p = tmp_path / name
        p.write_bytes(struct.pack("<Q", len(header) if n is None else n) + header + tail)
        return p

    cases = {
        raw("huge-n.safetensors", b"{}", n=2**63): "cannot read a safetensors header",
        raw("over-limit.safetensors", b"{}", n=cards.HEADER_MAX_BYTES + 1, tail=b" " * 16): "cannot read a safetensors header",
        raw("not-json.safetensors", b"{nope"): "cannot read a safetensors header",
        raw("list.safetensors", b"[1, 2]"): "cannot read a safetensors header",
        raw("meta.safetensors", b'{"__metadata__": {"a": 1}}'): "cannot read a safetensors header",
    }
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    cases[short] = "cannot read a safetensors header"
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    cases[fifo] = "FIFO"
    for p, expect in cases.items():
        with pytest.raises(sgconv_core.CheckpointError, match=expect):
            cards.read_metadata(p)
    with pytest.raises(sgconv_core.CheckpointError, match="NUL"):
        cards.read_metadata(str(tmp_path / "a\x00b"))
    results = load_in_child(*[p for p in cases if p != fifo])
    for line in results:
        assert "CheckpointError" in line, line
