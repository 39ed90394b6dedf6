"""The fast S4 Cauchy route (a batched product with the Cauchy matrix, custom backward) against the former route
(the full quotient of every Woodbury pair, autograd through the division), which the benchmark keeps as its
baseline; and the benchmark's S4 floor rows. Correctness only: no timing is asserted."""
import pytest
import torch

from analysis.bench import format_table, run_benchmark
from analysis.bench.floor import s4_flops, straightforward_cauchy_kernel
from sgconv_core.kernels import S4Kernel
from sgconv_core.kernels.s4 import _cauchy, _CauchyProduct


def test_cauchy_product_gradcheck():
    torch.manual_seed(0)
    rows = torch.randn(3, 4, 5, dtype=torch.complex128, requires_grad=True)
    w = torch.complex(-torch.rand(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)).requires_grad_()
    z = 1j * torch.randn(7, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda r, w: _CauchyProduct.apply(r, w, z), (rows, w))


def test_cauchy_sum_known_answer():
    """r[a,b,h,f] = sum_n v[a,b,h,n] / (z_f - w_hn), written out term by term."""
    torch.manual_seed(1)
    v = torch.randn(2, 3, 4, 5, dtype=torch.complex128)
    w = torch.randn(4, 5, dtype=torch.complex128)
    z = torch.randn(6, dtype=torch.complex128)
    ref = torch.zeros(2, 3, 4, 6, dtype=torch.complex128)
    for n in range(5):
        ref += v[..., n:n + 1] / (z - w[:, n:n + 1])
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            got = _cauchy(v.clone().requires_grad_(grad), w, z)
        assert (got.detach() - ref).abs().max() <= 1e-13 * ref.abs().max()


@pytest.mark.parametrize("channels,rank,n_ssm", [(1, 1, None), (2, 2, 2)])
def test_s4_kernel_and_gradients_equal_the_former_route(channels, rank, n_ssm):
    """Kernel and every parameter gradient, float64: the fast route and the former one agree to 1e-10 relative."""
    torch.manual_seed(2)
    k = S4Kernel(4, d_state=16, rank=rank, channels=channels, n_ssm=n_ssm, l_max=300, dt_min=0.01, dt_max=0.3).double()
    with torch.no_grad():  # rank 2: give the second P column some weight, so its gradient is exercised
        k.P[1:].copy_(0.3 * torch.randn_like(k.P[1:]))
    wgt = torch.randn(k.C_k, 4, 300, dtype=torch.float64)

    def run(fn):
        K = fn()
        (K * wgt).sum().backward()
        grads = {n: p.grad.clone() for n, p in k.named_parameters()}
        k.zero_grad()
        return K.detach(), grads

    K_new, g_new = run(lambda: k(300))
    K_old, g_old = run(lambda: straightforward_cauchy_kernel(k, 300))
    assert (K_new - K_old).abs().max() <= 1e-12 * K_old.abs().max()
    for n, g in g_old.items():
        assert g.abs().max() > 0, n
        assert (g_new[n] - g).abs().max() <= 1e-10 * g.abs().max(), n


def test_s4_training_step_equals_the_former_route(monkeypatch):
    """One AdamW step of a small S4 model (float64) lands on the same weights through either Cauchy route."""
    from sgconv_core.train import Run, TrainConfig, build

    cfg = TrainConfig(task="digits", task_params={"L": 64, "n_train": 64, "n_val": 16, "n_test": 16}, family="s4",
                      d_model=8, n_layers=1, kernel_args={"d_state": 8}, steps=2, batch_size=8)

    def one_step():
        task, model = build(cfg)
        model.double()
        run = Run.start(cfg, model)
        x, y = task.split("train")
        out = model(x[:8].double())
        task.loss(out, y[:8]).backward()
        run.take_step(0, 0.0)
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    new = one_step()
    monkeypatch.setattr(S4Kernel, "cauchy_kernel", straightforward_cauchy_kernel)
    old = one_step()
    for n, p in old.items():
        assert torch.allclose(new[n], p, rtol=1e-9, atol=1e-12), n


def test_bench_s4_floor_rows():
    rows = run_benchmark([256, 512], device="cpu", quick=True, H=8, min_reps=1, max_reps=1, layer=False,
                         floor_matmul_n=128)
    s4 = [r for r in rows if r["section"] == "floor_s4"]
    assert sorted((r["pass"], r["L"]) for r in s4) == [("fwd", 256), ("fwd", 512), ("fwd+bwd", 256), ("fwd+bwd", 512)]
    assert all(r[route]["status"] == "ok" for r in s4 for route in ("ours", "straightforward"))
    assert all(r["ratio"] is not None for r in s4)
    # 8 flops x (1+R)(C+R) pairs x H x N x (L/2+1) frequencies; quick settings: H=8, N=64, C=1, R=1
    assert s4[0]["flops"] == 8 * 2 * 2 * 8 * 64 * (s4[0]["L"] // 2 + 1) == s4_flops(s4[0]["L"], _Settings8())
    assert [r["L"] for r in rows if r["section"] == "floor"]  # S4D rows are still there
    text = format_table(rows)
    assert "S4 (DPLR) kernel" in text and "S4D kernel" in text


class _Settings8:
    H, d_state, channels = 8, 64, 1


@pytest.mark.parametrize("rank", [1, 2])
def test_s4_vandermonde_and_cauchy_matrix_routes_agree_with_gradients(rank):
    """The generating functions as FFTs of Vandermonde sums == the Cauchy matrix (float64), kernel and gradients."""
    torch.manual_seed(3)
    k = S4Kernel(4, d_state=16, rank=rank, channels=2, l_max=512, dt_min=0.01, dt_max=0.3).double()
    with torch.no_grad():
        k.P[1:].copy_(0.3 * torch.randn_like(k.P[1:]))
    wgt = torch.randn(2, 4, 500, dtype=torch.float64)
    out = {}
    for route in ("vandermonde", "cauchy"):
        K = k.cauchy_kernel(500, route)
        (K * wgt).sum().backward()
        out[route] = K.detach(), {n: p.grad.clone() for n, p in k.named_parameters()}
        k.zero_grad()
    (Kv, gv), (Kc, gc) = out["vandermonde"], out["cauchy"]
    assert (Kv - Kc).abs().max() <= 1e-11 * Kc.abs().max()
    for n, g in gc.items():
        assert (gv[n] - g).abs().max() <= 1e-9 * g.abs().max(), n


def test_s4_float32_vandermonde_route_is_closer_to_float64_than_the_cauchy_matrix():
    """In float32 the Vandermonde route (tables of powers formed in float64) is within 1e-5 of the float64 kernel of
    the same (float32) parameters; the Cauchy matrix (omega^f in complex64) is not better."""
    import copy

    torch.manual_seed(4)
    k = S4Kernel(8, d_state=32, l_max=4096)
    ref = copy.deepcopy(k).double().cauchy_kernel(4096, "cauchy").detach()
    err = {r: float((k.cauchy_kernel(4096, r).detach().double() - ref).abs().max() / ref.abs().max())
           for r in ("vandermonde", "cauchy")}
    assert err["vandermonde"] < 1e-5 and err["vandermonde"] <= err["cauchy"], err


def test_s4_auto_route_falls_back_to_the_cauchy_matrix_for_undecayed_modes(monkeypatch):
    """A mode with |lambda^L_k| ~ 1 (no decay over L_k) would amplify rounding by 1/|1 - lambda^L_k|: 'auto' then
    takes the Cauchy matrix, whose answer it returns."""
    import sgconv_core.kernels.s4 as s4mod

    torch.manual_seed(5)
    k = S4Kernel(2, d_state=8, l_max=64, dt_min=1e-4, dt_max=1e-4).double()  # |lambda^64| = exp(-0.5e-4 * 64)
    calls = []
    for name in ("_woodbury_vandermonde", "_woodbury_cauchy"):
        orig = getattr(S4Kernel, name)
        monkeypatch.setattr(S4Kernel, name, lambda self, *a, _o=orig, _n=name: calls.append(_n) or _o(self, *a))
    K = k(64)
    assert calls == ["_woodbury_cauchy"]
    assert torch.allclose(K, k.cauchy_kernel(64, "cauchy"), rtol=0, atol=1e-13 * float(K.abs().max()))
    monkeypatch.setattr(s4mod, "TRUNCATION_GAIN_MAX", 1e9)
    calls.clear()
    k(64)
    assert calls == ["_woodbury_vandermonde"]
    with pytest.raises(ValueError, match="unknown Cauchy route"):
        k.cauchy_kernel(64, "fast")


def test_s4_cauchy_matrix_chunks_give_the_same_kernel(monkeypatch):
    """Without autograd the Cauchy matrix goes in frequency chunks: the same kernel as in one piece."""
    import sgconv_core.kernels.s4 as s4mod

    torch.manual_seed(6)
    k = S4Kernel(4, d_state=16, l_max=512).double()
    with torch.no_grad():
        whole = k.cauchy_kernel(512, "cauchy")
        monkeypatch.setattr(s4mod, "_CAUCHY_CHUNK", 100)
        chunked = k.cauchy_kernel(512, "cauchy")
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-14 * float(whole.abs().max()))
