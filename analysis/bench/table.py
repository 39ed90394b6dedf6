"""`format_table`: the printed report of a run's rows. Sections, in order: the environment, the two kernel tables
(forward, forward+backward) with SGConv's time ratios, S4's construction times, the S4D and S4 floor tables (ours vs
the straightforward route, GFLOP/s against a plain matmul), the layer table, and the notes that the skipped / failed
cells point to ("skip[1]")."""
from __future__ import annotations

from sgconv_core.families import title

from .spec import MODELS, OFFICIAL_LAYER_REF, PASSES, fmt_L, fmt_num

#: The two kernel tables: pass -> what its title says was timed.
KERNEL_TABLES = (("fwd", "forward only (torch.no_grad)"),
                 ("fwd+bwd", "forward+backward (kernel(L).sum().backward())"))
_TAGS = {"skipped": "skip", "oom": "OOM", "error": "error"}


def format_table(rows: list[dict]) -> str:
    """The printed report: environment, the two kernel tables with ratios, S4 attune times, the layer table."""
    env = next((r for r in rows if r.get("section") == "env"), {})
    st = env.get("settings", {})
    notes = _Notes()
    out = _env_lines(env, st) if env else []
    for mode, what in KERNEL_TABLES:
        out += _kernel_table(rows, mode, what, st, notes)
    out += _build_lines(rows)
    out += _floor_section(rows, st, notes)
    out += _layer_section(rows, st, notes)
    out += notes.lines()
    return "\n".join(out)


def _table(header: list[str], body: list[list[str]], align: str) -> list[str]:
    """Lines of a text table: header, a rule, the body; columns aligned 'r' (right) or 'l' (left)."""
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells):
        return " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align))
    return [line(header), "-+-".join("-" * w for w in widths)] + [line(r) for r in body]


class _Notes:
    """The notes of skipped or failed cells, numbered in the order the cells are printed."""

    def __init__(self):
        self.notes: list[str] = []

    def cell(self, c: dict | None) -> tuple[str, str]:
        """A cell as (ms, MB) text; a cell that did not run as 'skip[n]' / 'OOM[n]' / 'error[n]' and '-'."""
        if c is None:
            return "-", "-"
        if c.get("status") == "ok":
            if c.get("reserved_mb") is not None:  # CUDA: allocated / reserved
                return fmt_num(c["ms"]), f"{fmt_num(c.get('peak_mb'))}/{fmt_num(c['reserved_mb'])}"
            return fmt_num(c["ms"]), fmt_num(c.get("peak_mb"))
        note = c.get("note") or c.get("status")
        if note not in self.notes:
            self.notes.append(note)
        return f"{_TAGS.get(c.get('status'), '?')}[{self.notes.index(note) + 1}]", "-"

    def lines(self) -> list[str]:
        if not self.notes:
            return []
        return ["", "notes:"] + [f"[{i}] {n}" for i, n in enumerate(self.notes, 1)]


def _env_lines(env: dict, st: dict) -> list[str]:
    """Device, torch, threads, RAM; load average and wall time; how memory and time were measured."""
    dev = env.get("device", "?")
    name = env.get("device_name", "?")
    cpus = f", {env.get('usable_cpus')} usable CPUs" if dev == "cpu" else f", {env.get('gpu_total_gb', 0):.0f} GB"
    return [
        f"device: {dev} ({name}{cpus}) | torch {env.get('torch')} | threads {env.get('threads')} | "
        f"OMP_WAIT_POLICY={env.get('omp_wait_policy')} | RAM {fmt_num(env.get('ram_total_gb'))} GB",
        f"load average (1/5/15 min): start {env.get('load_start')}, end {env.get('load_end')}"
        + (f" | wall {env['wall_s']:.1f} s" if env.get("wall_s") is not None else "")
        + (" | --quick" if env.get("quick") else ""),
        _memory_method_line(env),
        f"timing: {st.get('warmup', 1)} warm-up call, then median of k calls "
        f"(k >= {st.get('min_reps')}, adaptive to ~{st.get('cell_target_s')} s per cell); "
        f"skip if est. memory > budget ({st.get('mem_budget_gb')} GB on CPU), "
        f"predicted > {st.get('per_call_cap_s')} s/call, or over the {st.get('budget_s')} s budget",
    ]


def _memory_method_line(env: dict) -> str:
    if env.get("device") == "cuda":
        return ("peak MB = torch.cuda.max_memory_allocated minus allocated at cell start / "
                "max_memory_reserved (caching allocator emptied, peak stats reset per cell)")
    if env.get("memory_measured"):
        return ("peak MB = process RSS high-water mark (VmHWM, reset per cell via /proc/self/clear_refs) "
                "minus RSS at cell start (after gc + malloc_trim), over warm-up + timed calls; a few MB of noise")
    return "peak MB not measurable here (/proc/self/clear_refs unavailable): see est_mb in the JSON"


def _kernel_table(rows: list[dict], mode: str, what: str, st: dict, notes: _Notes) -> list[str]:
    """One pass's table: L, S, ms per family, SGConv's time ratios, MB per family (nothing if no such rows)."""
    krows = [r for r in rows if r.get("section") == "kernel" and r.get("pass") == mode]
    if not krows:
        return []
    base, others = MODELS[0], MODELS[1:]
    body = []
    for r in krows:
        ms, mb = zip(*(notes.cell(r.get(m)) for m in MODELS))
        ratios = [fmt_num(r.get(f"{base}_over_{o}")) for o in others]
        body.append([fmt_L(r["L"]), str(r.get("n_scales")), *ms, *ratios, *mb])
    header = (["L", "S"] + [f"{title(m)} ms" for m in MODELS] + [f"{title(base)}/{title(o)}" for o in others]
              + [f"{title(m)} MB" for m in MODELS])
    caption = (f"Kernel materialisation, {what}, float32; H={st.get('H')}, N={st.get('d_state')}, "
               f"kernel_dim={st.get('kernel_dim')}, channels={st.get('channels')}, l_max=L "
               f"(ratio < 1: {title(base)} faster)")
    return ["", caption] + _table(header, body, "r" * len(header))


def _build_lines(rows: list[dict]) -> list[str]:
    """S4's attune times, and the other construction times, per length."""
    brows = [r for r in rows if r.get("section") == "build"]
    if not brows:
        return []
    attune = ", ".join(f"{fmt_L(r['L'])}: {fmt_num(r['s4_attune_ms'])}" for r in brows)
    other = ", ".join(f"{fmt_L(r['L'])}: {fmt_num(r['sgconv_build_ms'])}/{fmt_num(r['s4_build_ms'])}/"
                      f"{fmt_num(r['s4d_build_ms'])}" for r in brows)
    return ["",
            "S4 construction, not in the per-call times: attune (C~ = C (I - dA^L), dense float64, once per l_max) ms: "
            + attune,
            "other construction ms (SGConv incl. its norm / S4 without attune / S4D): " + other]


def _floor_section(rows: list[dict], st: dict, notes: _Notes) -> list[str]:
    """S4D, then S4, ours vs the straightforward route per pass and L: ms, ratio, forward GFLOP/s, % of the
    matmul's."""
    mm = next((r for r in rows if r.get("section") == "matmul"), {})
    mm_line = ("%mm = % of the plain float32 matmul "
               f"({mm.get('n')} x {mm.get('n')}) @ ({mm.get('n')} x {mm.get('n')}) in this run: "
               + (f"{fmt_num(mm['gflops'])} GFLOP/s ({fmt_num(mm['cell'].get('ms'))} ms)" if mm.get("gflops") else
                  notes.cell(mm.get("cell"))[0]))
    out = _floor_table([r for r in rows if r.get("section") == "floor"], mm, notes, [
        f"S4D kernel, float32, H={st.get('H')}, N={st.get('d_state')} (N/2 complex modes), "
        f"channels={st.get('channels')}: ours (blocked Vandermonde product, sgconv_core.kernels.ssm) vs the "
        "straightforward route ('straight': exp of the full (H, N/2, L) outer product, then a contraction; "
        "chunked over l)",
        "GFLOP/s (forward only) count 8 real flops per complex multiply-add, C*H*(N/2)*L of them; ours forms only "
        "the real part (half of those flops), so it can exceed the matmul's rate by up to 2x; " + mm_line])
    out += _floor_table([r for r in rows if r.get("section") == "floor_s4"], mm, notes, [
        f"S4 (DPLR) kernel, float32, H={st.get('H')}, N={st.get('d_state')}, channels={st.get('channels')}, rank 1, "
        "l_max = L (the Cauchy route): ours (S4Kernel.cauchy_kernel: the Woodbury generating functions as rffts of "
        "blocked Vandermonde sums) vs the straightforward route ('straight': the quotient of every Woodbury "
        "pair, (2, C+1, H, N, L/2+1), formed in full, then summed; frequency chunks without autograd)",
        "GFLOP/s (forward only) count 8 real flops per complex multiply-add, 2(C+1)*H*N*(L/2+1) of them (the "
        "H*N*(L/2+1) reciprocals not counted); " + mm_line])
    return out


def _floor_table(frows: list[dict], mm: dict, notes: _Notes, caption: list[str]) -> list[str]:
    """One floor table (a family's rows): L, pass, ms per route, ratio, GFLOP/s and % of the matmul, MB."""
    if not frows:
        return []
    peak = mm.get("gflops")
    body = []
    for r in frows:
        (o_ms, o_mb), (s_ms, s_mb) = notes.cell(r.get("ours")), notes.cell(r.get("straightforward"))
        og, sg = r.get("ours_gflops"), r.get("straightforward_gflops")
        pct = [fmt_num(100 * g / peak) if (g and peak) else "-" for g in (og, sg)]
        body.append([fmt_L(r["L"]), r["pass"], o_ms, s_ms, fmt_num(r.get("ratio")), fmt_num(og), fmt_num(sg),
                     *pct, o_mb, s_mb])
    header = ["L", "pass", "ours ms", "straight ms", "straight/ours", "ours GFLOP/s", "straight GFLOP/s",
              "ours %mm", "straight %mm", "ours MB", "straight MB"]
    return [""] + caption + _table(header, body, "rl" + "r" * (len(header) - 2))


def _layer_section(rows: list[dict], st: dict, notes: _Notes) -> list[str]:
    """The layer table, or one line when the layer was skipped for want of a GPU (nothing without layer rows)."""
    lrows = [r for r in rows if r.get("section") == "layer"]
    if not lrows:
        return []
    if all(r.get("fwd", {}).get("status") == "skipped" and "GPU only" in (r.get("note") or "") for r in lrows):
        return ["", f"SGConv layer forward+backward: {lrows[0]['note']} (this run: {lrows[0]['device']})"]
    r0 = lrows[0]
    cuda = r0.get("device") == "cuda"
    caption = (f"SGConv layer (ConvLayer: d_model {r0['H']}, kernel_dim {st.get('kernel_dim')}, bidirectional, "
               f"l_max {fmt_L(r0['l_max'])} -> S={r0['n_scales']}, GELU, GLU output; {r0['n_params']:,} params), "
               f"batch 1, float32, forward with autograd on; peak MB above model + input"
               + (" (allocated/reserved; abs = max_memory_allocated incl. model + input)" if cuda else ""))
    ref = OFFICIAL_LAYER_REF
    return (["", caption] + _layer_table(lrows, cuda, notes)
            + [f"reference: {ref['what']}: ~{ref['allocated_gb']:g} GB allocated / ~{ref['reserved_gb']:g} GB reserved"])


def _layer_table(lrows: list[dict], cuda: bool, notes: _Notes) -> list[str]:
    """L, device, ms and MB per pass; on a GPU also the absolute allocated peaks."""
    body = []
    for r in lrows:
        f_ms, f_mb = notes.cell(r.get("fwd"))
        b_ms, b_mb = notes.cell(r.get("fwd+bwd"))
        line = [fmt_L(r["L"]), r["device"], f_ms, b_ms, f_mb, b_mb]
        if cuda:
            line += [fmt_num((r.get(m) or {}).get("allocated_abs_mb")) for m in PASSES]
        body.append(line)
    head = ["L", "device", "fwd ms", "fwd+bwd ms", "fwd MB", "fwd+bwd MB"]
    if cuda:
        head += ["fwd alloc MB (abs)", "f+b alloc MB (abs)"]
    return _table(head, body, "rlrrrr" + ("rr" if cuda else ""))

