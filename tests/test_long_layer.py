"""One SGConv layer at long lengths in bounded memory: the blockwise inference route of ``ConvLayer`` (a block of
features, then a block of tokens, at a time) gives the numbers of the whole-length route, which is checked against
a float64 direct convolution; the kernel built a block of features at a time equals the whole kernel's rows; a
layer call over the memory budget is refused before it allocates; the long-layer benchmark measures in a child."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgconv_core import CheckpointError, lengths
from sgconv_core.fftconv import conv_block
from sgconv_core.kernels import SGConvKernel
from sgconv_core.layers import ConvLayer


@pytest.fixture
def tiny_blocks(monkeypatch):
    """A 1-byte block budget: one feature per block and one token per output-linear block."""
    monkeypatch.setattr(lengths, "LAYER_CHUNK_BYTES", 1)


def _layer(C=1, output="glu", activation="gelu", H=6, l_max=300, mode="cat_randn", clip=False, seed=0,
           dtype=torch.float32):
    torch.manual_seed(seed)
    k = SGConvKernel(H, l_max, channels=C, bidirectional=True, kernel_dim=4, mode=mode)
    return ConvLayer(k, activation=activation, output=output, clip_to_l_max=clip).to(dtype).eval()


def _whole(layer, x):
    layer.blockwise_inference = False
    try:
        with torch.no_grad():
            return layer(x)
    finally:
        layer.blockwise_inference = True


def _reference(layer, x):
    """The layer in float64 numpy from its kernel: direct two-sided convolution, D skip, GELU, linear, GLU."""
    u = x.double().numpy()
    B, H, L = u.shape
    k = layer.kernel(layer.kernel_length(L)).double().detach().numpy()
    C = layer.kernel.channels
    D = layer.D.double().detach().numpy()
    y = np.zeros((B, C, H, L))
    for b in range(B):
        for c in range(C):
            for h in range(H):
                fwd = np.convolve(u[b, h], k[c, h])[:L]
                bwd = np.convolve(u[b, h][::-1], np.concatenate([[0.0], k[C + c, h]]))[:L][::-1]
                y[b, c, h] = fwd + bwd + D[c, h] * u[b, h]
    y = torch.tensor(y).reshape(B, C * H, L)
    y = F.gelu(y)
    W = layer.output_linear.weight.double().detach()
    bias = layer.output_linear.bias.double().detach()
    z = torch.einsum("bfl,of->blo", y, W) + bias
    return F.glu(z, dim=-1).transpose(1, 2).numpy()


@pytest.mark.parametrize("B", [1, 2])
def test_blockwise_equals_float64_reference(B, tiny_blocks):
    layer = _layer(dtype=torch.float64)
    x = torch.randn(B, 6, 200, dtype=torch.float64)
    with torch.no_grad():
        got = layer(x).numpy()
    ref = _reference(layer, x)
    assert np.abs(got - ref).max() < 1e-12 * np.abs(ref).max()
    assert np.abs(_whole(layer, x).numpy() - ref).max() < 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("C,output,activation", [(1, "glu", "gelu"), (2, "glu", "gelu"), (1, "linear", "relu"),
                                                 (2, "linear", "silu"), (1, "none", "id")])
@pytest.mark.parametrize("B", [1, 3])
def test_blockwise_float32_equals_whole_route(C, output, activation, B, tiny_blocks):
    """Many blocks (one feature, one token each) against the whole-length route: <= 1e-6 of the output's scale."""
    layer = _layer(C=C, output=output, activation=activation, H=5, l_max=400)
    x = torch.randn(B, 5, 333)
    with torch.no_grad():
        got = layer(x)
    want = _whole(layer, x)
    assert got.shape == want.shape == (B, 5, 333)
    assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())


@pytest.mark.parametrize("mode", ["sum_randn_learnable", "cat_nearest"])
def test_blockwise_other_modes_and_clipped_kernel(mode, tiny_blocks):
    layer = _layer(mode=mode, l_max=64, clip=True)  # 64 taps for a 150-step input
    x = torch.randn(2, 6, 150)
    with torch.no_grad():
        got = layer(x)
    assert layer.kernel_length(150) == 64
    assert float((got - _whole(layer, x)).abs().max()) <= 1e-6 * float(got.abs().max())


def test_no_grad_takes_the_blockwise_route_and_grad_mode_never_does(monkeypatch):
    """torch.inference_mode / no_grad build no graph, so they go block by block (spied); with grad mode on the call
    goes through the whole-length route and keeps its graph, even when the layer's own parameters are frozen
    (under functional_call or the batched ablation model the gradient flows through other tensors)."""
    layer = _layer()
    calls = []
    orig = layer.kernel.rows
    monkeypatch.setattr(layer.kernel, "rows", lambda L, i, j: calls.append((i, j)) or orig(L, i, j))
    x = torch.randn(1, 6, 100)
    with torch.inference_mode():
        a = layer(x)
    assert calls and not a.requires_grad
    calls.clear()
    with torch.no_grad():
        layer(x)
    assert calls
    calls.clear()
    g = layer(x)
    assert not calls and g.requires_grad and float((g.detach() - a).abs().max()) <= 1e-6 * float(a.abs().max())
    for p in layer.parameters():
        p.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    b = layer(xg)
    assert not calls and b.requires_grad  # the input's gradient still flows


def test_kernel_rows_equal_the_whole_kernel():
    for mode in ("cat_randn", "sum_randn_learnable", "cat_cos_nearest"):
        k = SGConvKernel(10, 500, channels=2, bidirectional=True, kernel_dim=8, mode=mode)
        for L in (37, 500, 1300):  # cropped, exact, zero-padded beyond L_raw
            whole = k(L)
            for i, j in ((0, 1), (1, 7), (7, 10)):
                assert torch.equal(k.rows(L, i, j), whole[:, i:j])
    with pytest.raises(ValueError, match="rows 3:3"):
        k.rows(100, 3, 3)
    with pytest.raises(CheckpointError, match="at least 1"):
        k.rows(0, 0, 2)


def test_kernel_rows_of_an_unfrozen_norm():
    k = SGConvKernel(6, 200, kernel_dim=4, init_norm=False)
    assert torch.equal(k.rows(300, 2, 5), k(300)[:, 2:5])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_conv_block_equals_direct_convolution(bidirectional):
    rng = np.random.default_rng(3)
    B, H, L, Lk = 2, 3, 50, 20
    u, k, D = rng.normal(size=(B, H, L)), rng.normal(size=(2 if bidirectional else 1, H, Lk)), rng.normal(size=(1, H))
    y = conv_block(torch.tensor(u), torch.tensor(k), torch.tensor(D), bidirectional).numpy()
    for b in range(B):
        for h in range(H):
            ref = np.convolve(u[b, h], k[0, h])[:L] + D[0, h] * u[b, h]
            if bidirectional:
                ref += np.convolve(u[b, h][::-1], np.concatenate([[0.0], k[1, h]]))[:L][::-1]
            assert np.abs(y[b, 0, h] - ref).max() < 1e-12


def test_layer_values_policy():
    B, H, L = 2, 256, 1 << 20
    assert lengths.layer_values(B, 1, H, L, grad=False) == B * H * L          # the output reuses the buffer
    assert lengths.layer_values(B, 3, H, L, grad=False) == B * 3 * H * L + B * H * L
    assert lengths.layer_values(B, 1, H, L, grad=True) == lengths.GRAD_VALUES_PER_ACTIVATION * B * H * L


def test_over_budget_layer_refused_before_allocating(monkeypatch):
    """A call over MAX_LAYER_VALUES raises one CheckpointError naming the shape and the budget, before any
    allocation (the kernel is never built: spied), with autograd at a lower length than without."""
    layer = _layer(H=4)
    built = []
    monkeypatch.setattr(layer.kernel, "rows", lambda *a: built.append(a))
    monkeypatch.setattr(lengths, "MAX_LAYER_VALUES", 4 * 1000)
    x = torch.zeros(1, 4, 1001)
    with torch.no_grad(), pytest.raises(CheckpointError, match=r"\(1, 4, 1001\).*4,004 values.*budget of 4,000"):
        layer(x)
    with pytest.raises(CheckpointError, match="with autograd.*torch.no_grad"):
        layer(torch.zeros(1, 4, 200))  # 8 * 800 > 4000 with a graph
    assert not built
    with torch.no_grad():
        layer.kernel.rows = SGConvKernel.rows.__get__(layer.kernel)
        assert layer(torch.zeros(1, 4, 1000)).shape == (1, 4, 1000)  # at the budget: fine


def test_default_budget_allows_one_million_tokens_without_autograd():
    assert lengths.layer_values(1, 1, 256, 1 << 20, grad=False) <= lengths.MAX_LAYER_VALUES
    assert lengths.layer_values(1, 1, 256, 1 << 20, grad=True) <= lengths.MAX_LAYER_VALUES


def test_wrong_input_shape_is_one_clear_error():
    with pytest.raises(ValueError, match=r"\(B, 6, L\); got \(1, 5, 10\)"):
        _layer()(torch.zeros(1, 5, 10))


def test_long_layer_bench_child_cell_runs_in_a_fresh_process():
    from analysis.bench.long_layer import format_memory_rows, layer_memory_rows
    rows = layer_memory_rows([2048], passes=("infer",), calls=1, say=lambda s: None, H=8, kernel_dim=4,
                             l_max=2048)
    assert [(r["pass"], r["route"]) for r in rows] == [("infer", "before"), ("infer", "after")]
    assert all(r["peak_bytes"] is None or r["peak_bytes"] >= 0 for r in rows)
    assert all(len(r["times_s"]) == 1 and r["times_s"][0] > 0 for r in rows)
    assert "infer" in format_memory_rows(rows)


def test_blockwise_route_never_builds_the_whole_kernel(monkeypatch):
    """Without autograd the kernel is only ever built a block of features at a time: its whole-kernel forward is
    made to fail, and the blocks asked for cover the H features once each."""
    layer = _layer(H=7)
    monkeypatch.setattr(lengths, "LAYER_CHUNK_BYTES", 2 * 2 * 201 * 4)  # two features per block at L = 200
    monkeypatch.setattr(type(layer.kernel), "forward", lambda self, L: pytest.fail("whole kernel built"))
    asked = []
    orig = layer.kernel.rows
    monkeypatch.setattr(layer.kernel, "rows", lambda L, i, j: asked.append((i, j)) or orig(L, i, j))
    with torch.no_grad():
        layer(torch.randn(1, 7, 200))
    assert asked == [(0, 2), (2, 4), (4, 6), (6, 7)]


_PEAK_CHILD = """
import json, sys, torch
from sgconv_core import lengths
from sgconv_core.kernels import SGConvKernel
from sgconv_core.layers import ConvLayer
from analysis.bench.memory import peak_of_call
lengths.LAYER_CHUNK_BYTES = 1 << 22
torch.manual_seed(0)
layer = ConvLayer(SGConvKernel(32, 1 << 18, bidirectional=True, kernel_dim=8))
x = torch.randn(1, 32, 1 << 18)
peaks = {}
with torch.no_grad():
    layer(x[..., :1024])
    for route in ("after", "before"):  # the blockwise route first, on a fresh heap
        layer.blockwise_inference = route == "after"
        peaks[route] = peak_of_call(lambda: layer(x))[1]
print(json.dumps(peaks))
"""


def test_blockwise_peak_is_the_output_plus_a_few_blocks_measured_in_a_child():
    """Peak RSS above input and weights in a fresh process (H = 32, L = 256k, 4 MB blocks): the blockwise route
    holds the 32 MB output plus a few block buffers (measured 54 MB); the whole-length route ~13x the output."""
    import json
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-c", _PEAK_CHILD], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    peaks = json.loads(res.stdout.strip().splitlines()[-1])
    if None in peaks.values():
        pytest.skip("no /proc/self/clear_refs here: the peak RSS cannot be measured")
    before, after = peaks["before"], peaks["after"]
    out, block = 32 * (1 << 18) * 4, 1 << 22
    assert out <= after <= out + 12 * block, (after, before)
    assert before > 4 * after
