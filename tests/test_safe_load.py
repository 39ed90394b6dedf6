"""Loading never runs code from a file: torch files through our restricted unpickler, safetensors, and Lightning
checkpoints whose OmegaConf configs are read without importing omegaconf. Everything else is refused with
CheckpointError (hostile files within budgets: tests/test_hostile.py)."""
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

import sgconv_core
from sgconv_core import CheckpointError
from sgconv_core.checkpoints.safe_load import read_torch_file, resolve_interpolations, sniff_format


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_a_pickle_that_would_run_a_command_is_refused_and_never_runs(tmp_path, zipped):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _Evil(marker)}, path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError, match="refused.*(system|posix)"):
        sgconv_core.load(path)
    assert not marker.exists()


def test_a_bare_pickle_with_reduce_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": _Evil(marker)}, protocol=2))
    with pytest.raises(CheckpointError):
        sgconv_core.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("zipped", [True, False])
def test_plain_state_dicts_load(tmp_path, zipped):
    path = tmp_path / "sd.pt"
    sd = {"layer.D": torch.randn(1, 4), "meta": {"epoch": 3, "betas": (0.9, 0.98)}}
    torch.save(sd, path, _use_new_zipfile_serialization=zipped)
    assert sniff_format(path) == ("torch-zip" if zipped else "torch-legacy")
    obj = read_torch_file(path)
    assert torch.equal(obj["layer.D"], sd["layer.D"]) and obj["meta"] == sd["meta"]


_LIGHTNING = textwrap.dedent(
    """
    import sys, torch
    from omegaconf import OmegaConf
    cfg = OmegaConf.create({"model": {"d_model": 8, "layer": {"_name_": "s4", "d_state": 4, "dt_transform": "softplus",
                                                               "l_max": "${dataset.l_max}"}},
                            "dataset": {"l_max": 256}, "optimizer": {"betas": [0.9, 0.98]}})
    opt_state = {"state": {}, "param_groups": [{"lr": 0.01, "betas": OmegaConf.create([0.9, 0.98]), "params": [0]}]}
    ck = {"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.1.0",
          "state_dict": {"model.layers.0.layer.layer.D": torch.ones(1, 8)},
          "optimizer_states": [opt_state], "hparams_name": "config", "hyper_parameters": cfg,
          "hparams_type": type(cfg)}
    torch.save(ck, sys.argv[1])
    """
)


def test_a_genuine_lightning_checkpoint_with_omegaconf_loads_without_omegaconf(tmp_path):
    pytest.importorskip("omegaconf")
    path = tmp_path / "last.ckpt"
    subprocess.run([sys.executable, "-c", _LIGHTNING, str(path)], check=True)
    # weights_only alone refuses it: this is the case the restricted unpickler exists for
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    check = textwrap.dedent(
        f"""
        import sys
        sys.modules["omegaconf"] = None  # importing omegaconf now fails: the loader must not need it
        from sgconv_core.checkpoints.safe_load import read_torch_file
        ck = read_torch_file({str(path)!r})
        hp = ck["hyper_parameters"]
        assert type(hp) is dict and hp["model"]["layer"]["d_state"] == 4, hp
        assert hp["model"]["layer"]["l_max"] == 256, hp  # ${{dataset.l_max}} resolved
        betas = ck["optimizer_states"][0]["param_groups"][0]["betas"]
        assert type(betas) is list and betas == [0.9, 0.98], betas
        assert ck["hparams_type"] == "omegaconf.dictconfig.DictConfig", ck["hparams_type"]
        assert float(ck["state_dict"]["model.layers.0.layer.layer.D"].sum()) == 8.0
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_bad_files_give_clear_errors(tmp_path):
    rnd = tmp_path / "random.bin"
    rnd.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="random.bin"):
        sgconv_core.load(rnd)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        sgconv_core.load(empty)

    with pytest.raises(CheckpointError, match="no such file"):
        sgconv_core.load(tmp_path / "missing.pt")

    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(1000)}, good)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:1500])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        sgconv_core.load(trunc)

    from safetensors.torch import save_file
    st = tmp_path / "t.safetensors"
    save_file({"w": torch.randn(1000)}, st)
    st_trunc = tmp_path / "trunc.safetensors"
    st_trunc.write_bytes(st.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated"):
        sgconv_core.load(st_trunc)

    with pytest.raises(CheckpointError, match="limit"):
        sgconv_core.load(good, max_bytes=100)


def test_interpolations_resolve_plain_references_only():
    cfg = {"a": {"b": 3}, "c": "${a.b}", "d": "${oc.env:HOME}", "e": "${nope.x}", "f": ["${a.b}"]}
    out = resolve_interpolations(cfg)
    assert out["c"] == 3 and out["f"] == [3]
    assert out["d"] == "${oc.env:HOME}" and out["e"] == "${nope.x}"


@pytest.mark.parametrize("zipped", [True, False])
def test_numpy_scalars_and_arrays_in_a_checkpoint_load_as_numpy(tmp_path, zipped):
    """Lightning pickles numpy scalars in hyper-parameters / callback state: plain numeric ones load (protocol 2
    spells their bytes with _codecs.encode); an object dtype is refused (test_hostile.py)."""
    np = pytest.importorskip("numpy")
    path = tmp_path / "np.ckpt"
    hp = {"lr": np.float64(0.5), "n": np.int32(3), "flag": np.bool_(True), "dt": np.dtype("f4"),
          "big_endian": np.arange(6, dtype=">f4").reshape(2, 3), "fortran": np.asfortranarray(np.eye(2))}
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": hp}, path,
               _use_new_zipfile_serialization=zipped)
    out = read_torch_file(path)["hyper_parameters"]
    assert type(out["lr"]) is np.float64 and out["lr"] == 0.5 and type(out["n"]) is np.int32 and out["n"] == 3
    assert out["flag"] is np.True_ and out["dt"] == np.dtype("f4")
    assert out["big_endian"].dtype == np.dtype(">f4") and np.array_equal(out["big_endian"], hp["big_endian"])
    assert np.array_equal(out["fortran"], np.eye(2))


@pytest.mark.parametrize("zipped", [True, False])
def test_tensors_of_every_kind_round_trip(tmp_path, zipped):
    """torch's weights_only route is gone: every tensor kind torch.save writes goes through our rebuilds."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {"param": torch.nn.Parameter(torch.randn(3)), "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False),
          "t": base.t(), "slice": base[1:, ::2], "shared": base, "empty": torch.empty(0, 5), "scalar": torch.tensor(3.5),
          "bf16": torch.randn(4).bfloat16(), "c64": torch.randn(3, dtype=torch.complex64), "i64": torch.arange(5),
          "bool": torch.tensor([True, False]), "size": torch.Size([2, 3]), "device": torch.device("cpu")}
    if zipped:
        sd["u16"] = torch.zeros(3, dtype=torch.uint16)  # _rebuild_tensor_v3 over an UntypedStorage
    path = tmp_path / "kinds.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=zipped)
    out = read_torch_file(path)
    assert set(out) == set(sd)
    for k, v in sd.items():
        if isinstance(v, torch.Tensor):
            assert type(out[k]) is type(v) and out[k].dtype == v.dtype and torch.equal(out[k], v), k
            assert out[k].stride() == v.stride() and out[k].requires_grad == v.requires_grad, k
        else:
            assert out[k] == v, k
    assert out["t"].untyped_storage().data_ptr() == out["shared"].untyped_storage().data_ptr()  # still shared
