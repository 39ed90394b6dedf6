"""Each kernel family against an independent float64 reference written from the formulas (numpy only)."""
import math

import numpy as np
import pytest
import torch
from references import up_linear, up_nearest

from sgconv_core import CheckpointError
from sgconv_core.kernels import FreeKernel, S4DKernel, S4Kernel, SGConvKernel
from sgconv_core.kernels.ssm import vandermonde
from sgconv_core.lengths import MAX_KERNEL_LENGTH as MAX_LENGTH


# ---------------------------------------------------------------------------------------------- SGConv
def sgconv_reference(k: SGConvKernel, L: int) -> np.ndarray:
    ws = [w.detach().double().numpy() for w in k.kernel_list]
    m = k.multiplier.double().numpy()
    S, d, i_s = k.n_scales, k.kernel_dim, k.init_scale
    up = up_nearest if "nearest" in k.mode else up_linear
    if "cat" in k.mode:
        raw = np.concatenate([up(w, 2 ** (max(0, i - 1) + i_s)) * m ** (S - 1 - i) for i, w in enumerate(ws)], -1)
    else:
        L_raw = d * 2 ** (S - 1 + i_s)
        raw = sum(np.pad(up(w, 2 ** (i + i_s)), [(0, 0), (0, 0), (0, L_raw - d * 2 ** (i + i_s))]) * m ** (S - 1 - i)
                  for i, w in enumerate(ws))
    if "learnable" in k.mode:
        t = np.arange(raw.shape[-1])
        raw = raw * (t + 1.0) ** (-k.decay.detach().double().numpy()[None, :, None])
    norm = np.linalg.norm(raw, axis=-1, keepdims=True)
    out = raw[..., :L] if raw.shape[-1] >= L else np.pad(raw, [(0, 0), (0, 0), (0, L - raw.shape[-1])])
    return out / norm


@pytest.mark.parametrize("mode", ["cat_randn", "sum_randn", "cat_cos", "cat_randn_nearest", "sum_cos_nearest",
                                  "cat_randn_learnable", "sum_randn_learnable_fixed"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_sgconv_matches_rederivation(mode, bidirectional):
    torch.manual_seed(0)
    k = SGConvKernel(6, l_max=500, channels=2, bidirectional=bidirectional, kernel_dim=8, mode=mode,
                     decay_min=1.5, decay_max=3.0, init_norm=False).double()
    k.freeze_norm()  # norm from the float64 initial kernel, as the official first forward does
    assert k.raw_length == 8 * 2 ** (k.n_scales - 1) == 512
    for L in (100, 512, 1500):
        ours = k(L).detach().numpy()
        ref = sgconv_reference(k, L)
        assert ours.shape == (2 * (1 + bidirectional), 6, L)
        assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-12


def test_sgconv_norm_is_frozen_at_init_and_uninitialised_norm_is_current():
    torch.manual_seed(1)
    k = SGConvKernel(4, l_max=256, kernel_dim=16).double()
    K0 = k(256)
    assert torch.allclose(K0.norm(dim=-1), torch.ones(1, 4, dtype=torch.float64))
    with torch.no_grad():
        k.kernel_list[0].mul_(3.0)  # "training" changes the kernel; the norm stays the initial one
    assert not torch.allclose(k(256).norm(dim=-1), torch.ones(1, 4, dtype=torch.float64))
    k.kernel_norm_initialized.fill_(False)  # a never-run official layer: norm of the current kernel
    assert torch.allclose(k(256).norm(dim=-1), torch.ones(1, 4, dtype=torch.float64))


def test_sgconv_envelope_decays_as_power_law():
    """Scale i sits at t ~ d 2^i and is damped by m^(S-1-i): envelope ~ (t/d)^(-log2 m)."""
    torch.manual_seed(2)
    k = SGConvKernel(64, l_max=4096, kernel_dim=16, decay_min=2, decay_max=2).double()
    K = k(4096).detach().numpy()[0]
    rms = [np.sqrt((K[:, 16 * 2 ** (i - 1):16 * 2 ** i] ** 2).mean()) for i in range(2, 9)]
    slopes = np.diff(np.log2(rms))
    assert np.allclose(slopes, -1.0, atol=0.1)


# ---------------------------------------------------------------------------------------------- S4D
def s4d_recurrence(k: S4DKernel, L: int) -> np.ndarray:
    """Unrolled recurrence x_{l+1} = dA x_l, x_0 = dB (impulse response), y_l = 2 Re C' x_l."""
    dt = np.exp(k.inv_dt.detach().double().numpy()) if k.dt_transform == "exp" else np.log1p(np.exp(k.inv_dt.detach().double().numpy()))
    A = -np.exp(k.A_real.detach().double().numpy())
    if not k.is_real:
        A = A - 1j * k.A_imag.detach().double().numpy()
    A = np.tile(A, (k.H // A.shape[0], 1))
    Cn = k.C.detach().double().numpy()
    C = Cn if k.is_real else Cn[..., 0] + 1j * Cn[..., 1]
    if k.B is not None:
        Bn = k.B.detach().double().numpy()
        B = Bn if k.is_real else Bn[..., 0] + 1j * Bn[..., 1]
        C = C * np.tile(B, (1, k.H // B.shape[1], 1))
    dtA = dt * A
    if k.disc == "zoh":
        dA, dB = np.exp(dtA), (np.exp(dtA) - 1) / A
    else:
        dA, dB = (1 + dtA / 2) / (1 - dtA / 2), dt / (1 - dtA / 2)
    x = np.broadcast_to(dB, C.shape).astype(complex)
    out = []
    for _ in range(L):
        out.append(2 * (C * x).sum(-1).real)
        x = x * dA
    return np.stack(out, -1)


@pytest.mark.parametrize("init", ["lin", "inv", "legs", "real"])
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_s4d_matches_recurrence(init, disc):
    torch.manual_seed(3)
    k = S4DKernel(6, d_state=16, channels=2, init=init, disc=disc, n_ssm=3, dt_min=0.01, dt_max=0.5).double()
    for L in (50, 300):
        ours = k(L).detach().numpy()
        ref = s4d_recurrence(k, L)
        assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-10


def test_s4d_softplus_dt_and_minimal_layout():
    torch.manual_seed(4)
    k = S4DKernel(4, d_state=8, dt_transform="softplus", has_B=False).double()
    assert k.B is None
    ref = s4d_recurrence(k, 200)
    assert np.abs(k(200).detach().numpy() - ref).max() / np.abs(ref).max() < 1e-10


def test_s4d_modal_form_reproduces_kernel():
    torch.manual_seed(5)
    k = S4DKernel(4, d_state=8, channels=2, disc="bilinear").double()
    r, lam = k.modal()
    l = torch.arange(100, dtype=torch.float64)
    K = torch.einsum("chm,hml->chl", r, lam.unsqueeze(-1) ** l).real
    assert torch.allclose(K, k(100), rtol=0, atol=1e-12 * float(K.abs().max()))


# ---------------------------------------------------------------------------------------------- Vandermonde
def vandermonde_powers(coef, poles, L: int) -> np.ndarray:
    """K[c,h,l] = sum_m coef[c,h,m] poles[h,m]^l by numpy powers (0^0 = 1), complex128."""
    lam = np.asarray(poles, dtype=np.complex128)
    P = lam[..., None] ** np.arange(L)  # numpy: 0**0 = 1
    return np.einsum("chm,hml->chl", np.asarray(coef, dtype=np.complex128), P)


def vandermonde_direct(coef: torch.Tensor, log_pole: torch.Tensor, L: int) -> torch.Tensor:
    """The straightforward route: exp of the full (H, M, L) outer product, then a contraction (complex)."""
    l = torch.arange(L, dtype=log_pole.real.dtype)
    return torch.einsum("chn,hnl->chl", coef, torch.exp(log_pole.unsqueeze(-1) * l))


@pytest.mark.parametrize("L", [1, 2, 3, 37, 64, 65, 1000])
def test_vandermonde_known_answer(L):
    """Blocked product = plain powers, any L (square, non-square, 1), with a zero pole and a conjugate pair."""
    lam = np.array([[0.9, 0.5 + 0.5j, 0.5 - 0.5j, 0.0], [-0.99, 0.3j, 1.0, 0.999 * np.exp(2.5j)]])
    r = np.array([[[1.0, 2.0 + 1j, 2.0 - 1j, 3.0], [0.5, -1j, 0.25, 1.0 - 2j]],
                  [[-1.0, 1j, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]])
    ref = vandermonde_powers(r, lam, L)
    rt, lt = torch.as_tensor(r), torch.log(torch.as_tensor(lam))
    full = vandermonde(rt, lt, L).numpy()
    re = vandermonde(rt, lt, L, real=True).numpy()
    assert full.dtype == np.complex128 and re.dtype == np.float64 and full.shape == re.shape == (2, 2, L)
    scale = np.abs(ref).max()
    assert np.abs(full - ref).max() <= 1e-13 * scale
    assert np.abs(re - ref.real).max() <= 1e-13 * scale
    assert np.abs(re - full.real).max() <= 1e-14 * scale  # the same products (BLAS may sum in another order)
    f32 = vandermonde(rt.to(torch.complex64), lt.to(torch.complex64), L, real=True)
    assert f32.dtype == torch.float32 and np.abs(f32.double().numpy() - ref.real).max() <= 1e-5 * scale


def test_vandermonde_chunks_over_features_give_the_same_kernel():
    torch.manual_seed(9)
    coef = torch.randn(2, 8, 6, dtype=torch.complex128)
    lp = torch.complex(-torch.rand(8, 6) * 0.05, torch.randn(8, 6))
    whole = vandermonde(coef, lp, 500, real=True)
    chunked = vandermonde(coef, lp, 500, real=True, chunk_elems=1)  # one feature at a time
    tol = 1e-14 * float(whole.abs().max())  # the same arithmetic per feature; BLAS may order its sums otherwise
    assert torch.allclose(whole, chunked, rtol=0, atol=tol)
    assert torch.allclose(vandermonde(coef, lp, 500), vandermonde(coef, lp, 500, chunk_elems=1000), rtol=0, atol=tol)


@pytest.mark.parametrize("real", [True, False])
def test_vandermonde_gradcheck(real):
    torch.manual_seed(10)
    coef = torch.randn(2, 3, 4, dtype=torch.complex128, requires_grad=True)
    lp = torch.complex(-torch.rand(3, 4, dtype=torch.float64) * 0.2, torch.randn(3, 4, dtype=torch.float64))
    lp.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c, p: vandermonde(c, p, 23, real=real), (coef, lp))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 1e-4)])
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_s4d_forward_and_backward_equal_the_straightforward_route(monkeypatch, dtype, tol, disc):
    """The S4D kernel and its parameter gradients through the blocked product and through the plain one."""
    import sgconv_core.kernels.s4d as s4dmod

    torch.manual_seed(11)
    k = S4DKernel(8, d_state=16, channels=2, disc=disc, n_ssm=4, dt_min=0.01, dt_max=0.5).to(dtype)
    w = torch.randn(2, 8, 700, dtype=dtype)

    def run():
        K = k(700)
        (K * w).sum().backward()
        grads = {n: p.grad.clone() for n, p in k.named_parameters()}
        k.zero_grad()
        return K.detach(), grads

    K_new, g_new = run()
    monkeypatch.setattr(s4dmod, "vandermonde", lambda c, p, L, real=False: vandermonde_direct(c, p, L).real)
    K_old, g_old = run()
    assert (K_new - K_old).abs().max() <= tol * K_old.abs().max()
    for n, g in g_old.items():
        assert (g_new[n] - g).abs().max() <= tol * g.abs().max(), n


# ---------------------------------------------------------------------------------------------- S4 (DPLR)
def s4_dense_powers(k: S4Kernel, L: int) -> np.ndarray:
    """K[l] = C^T dA^l dB with dA, dB the bilinear discretisation of diag(Lambda) - P P^*, C from C~."""
    def g(t):
        return t.detach().double().numpy()
    def c(t):
        return g(t)[..., 0] + 1j * g(t)[..., 1]
    H, Nh = k.H, k.N // 2
    dt = np.exp(g(k.inv_dt))[:, 0]
    lam = -np.exp(g(k.A_real)) - 1j * g(k.A_imag)
    P, B, Ct = c(k.P), c(k.B)[0], c(k.C)
    reps = H // lam.shape[0]
    lam, P, B = np.tile(lam, (reps, 1)), np.tile(P, (1, reps, 1)), np.tile(B, (reps, 1))
    out = np.zeros((Ct.shape[0], H, L))
    for h in range(H):
        w = np.concatenate([lam[h], lam[h].conj()])
        p = np.concatenate([P[:, h], P[:, h].conj()], -1)  # (R, 2N')
        A = np.diag(w) - p.T @ p.conj()
        I = np.eye(2 * Nh)
        dA = np.linalg.solve(I - dt[h] / 2 * A, I + dt[h] / 2 * A)
        dB = dt[h] * np.linalg.solve(I - dt[h] / 2 * A, np.concatenate([B[h], B[h].conj()]))
        Lk = int(k.l_kernel)
        Cfull = np.concatenate([Ct[:, h], Ct[:, h].conj()], -1)  # (C_k, 2N')
        if Lk:
            Cfull = np.linalg.solve((I - np.linalg.matrix_power(dA, Lk)).T, Cfull.T).T
        x = dB.copy()
        for l in range(L):
            out[:, h, l] = (Cfull @ x).real
            x = dA @ x
    return out


@pytest.mark.parametrize("n_ssm", [None, 1])
def test_s4_dplr_matches_dense_powers_any_length(n_ssm):
    torch.manual_seed(6)
    k = S4Kernel(4, d_state=16, channels=2, l_max=128, n_ssm=n_ssm, dt_min=0.01, dt_max=0.2).double()
    k.attune(128)  # C~ computed in float64
    assert int(k.l_kernel) == 128
    C_before, Lk_before = k.C.detach().clone(), int(k.l_kernel)
    for L in (64, 128, 400):  # below, at and above l_kernel
        ours = k(L).detach().numpy()
        ref = s4_dense_powers(k, L)
        assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-10, L  # beyond l_kernel: the block route
    assert torch.equal(k.C, C_before) and int(k.l_kernel) == Lk_before  # nothing was mutated


def test_s4_cauchy_route_equals_modal_route():
    torch.manual_seed(7)
    k = S4Kernel(3, d_state=8, l_max=256).double()
    k.attune(256)
    a = k.cauchy_kernel(256)
    r, lam = k.modal()
    b = torch.einsum("chm,hml->chl", r, lam.unsqueeze(-1) ** torch.arange(256, dtype=torch.float64)).real
    assert (a - b).abs().max() / b.abs().max() < 1e-8


def test_s4_unattuned_kernel_uses_C_directly():
    torch.manual_seed(8)
    k = S4Kernel(2, d_state=8).double()  # no l_max: l_kernel stays 0, C is the true C
    assert int(k.l_kernel) == 0
    ref = s4_dense_powers(k, 100)
    assert np.abs(k(100).detach().numpy() - ref).max() / np.abs(ref).max() < 1e-8


# ---------------------------------------------------------------------------------------------- counts, lengths
def test_parameter_counts_match_formulas():
    H, N, d, L = 16, 8, 4, 1024
    S = 1 + math.ceil(math.log2(L / d))
    assert SGConvKernel(H, L, kernel_dim=d).n_params == S * H * d
    assert SGConvKernel(H, L, kernel_dim=d, bidirectional=True).n_params == S * 2 * H * d
    assert SGConvKernel(H, L, kernel_dim=d, mode="cat_randn_learnable").n_params == S * H * d + H
    assert S4Kernel(H, N).n_params == H + H * N + H * N * 3
    assert S4Kernel(H, N, n_ssm=1).n_params == H + H * N + N * 3
    assert S4DKernel(H, N).n_params == H + H * N + 2 * H * N
    assert S4DKernel(H, N, n_ssm=1, channels=2).n_params == H + 2 * H * N + 2 * N
    assert S4DKernel(H, N, has_B=False).n_params == H + 2 * H * N  # minimal S4D
    assert FreeKernel(H, L).n_params == H * L


def test_free_kernel_crops_and_pads():
    k = FreeKernel(3, 64)
    assert torch.equal(k(32), k.kernel[..., :32])
    assert torch.equal(k(100)[..., 64:], torch.zeros(1, 3, 36))


@pytest.mark.parametrize("L", [0, -5, MAX_LENGTH + 1, "abc"])
def test_absurd_lengths_are_refused(L):
    k = S4DKernel(4, 8)
    with pytest.raises(CheckpointError):
        k(L)


@pytest.mark.parametrize("L, words", [
    (True, "bool"), (np.True_, "bool"), (2.5, "whole number"), (64.0, "pass 64"), ("64", "'64'"),
    (float("inf"), "inf"), (float("nan"), "nan"), (np.float64(3.0), "pass 3"), (None, "None"), ([4], "[4]"),
    (torch.tensor(2.0), "tensor"),
])
def test_kernel_length_must_be_a_positive_integer(L, words):
    """kernel(L) used to take 2.5 as 2 taps, '64' as 64, True as 1, and inf gave an OverflowError."""
    k = FreeKernel(2, 8)
    with pytest.raises(CheckpointError, match="kernel length must be") as e:
        k(L)
    assert words in str(e.value)


def test_integer_lengths_of_any_integer_type_are_accepted():
    k = FreeKernel(2, 8)
    for L in (8, np.int64(8), np.int32(8), torch.tensor(8)):
        assert k(L).shape == (1, 2, 8)


def test_memory_budget_is_enforced():
    k = SGConvKernel(4096, l_max=1024, kernel_dim=64, channels=8)
    with pytest.raises(CheckpointError, match="memory budget"):
        k(MAX_LENGTH)


def test_s4_cauchy_chunks_give_the_same_kernel(monkeypatch):
    """Without autograd the Cauchy quotient is summed in frequency chunks: same kernel as all at once."""
    import sgconv_core.kernels.s4 as s4mod

    torch.manual_seed(0)
    k = S4Kernel(4, d_state=16, l_max=512).double()
    with torch.no_grad():
        whole = k(512)
        monkeypatch.setattr(s4mod, "_CAUCHY_CHUNK", 100)
        chunked = k(512)
    with torch.enable_grad():
        graded = k(512)
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-14 * float(whole.abs().max()))
    assert torch.allclose(graded.detach(), whole, rtol=0, atol=1e-14 * float(whole.abs().max()))


def test_s4d_real_with_bandlimit_keeps_every_mode():
    """S4D-Real has no imaginary part: every mode sits at frequency 0, below any band limit, so the kernel is the
    one without a band limit (it used to fail with "imag is not implemented for tensors with non-complex dtypes")."""
    torch.manual_seed(0)
    k = S4DKernel(d_model=3, d_state=4, init="real").double()
    kb = S4DKernel(d_model=3, d_state=4, init="real", bandlimit=0.1).double()
    kb.load_state_dict(k.state_dict())
    assert torch.equal(kb(64), k(64)) and k(64).abs().max() > 0
