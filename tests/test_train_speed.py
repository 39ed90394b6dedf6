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
