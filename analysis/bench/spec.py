"""What the benchmark measures: the families compared, the passes, the lengths, and `Settings` (everything else
that shapes a run); plus how lengths and numbers are read and written ('1k', '1M')."""
from __future__ import annotations

from dataclasses import dataclass, field

#: The families this benchmark compares, SGConv first: the ratio columns are SGConv's time over each of the
#: others. An explicit choice (the registry `sgconv_core.families` also holds the free kernel, which is not
#: a parametrisation worth timing against); display names come from the registry (`title`).
MODELS = ("sgconv", "s4", "s4d")
PASSES = ("fwd", "fwd+bwd")
K, M = 1 << 10, 1 << 20
QUICK_LENGTHS = [1 * K, 4 * K, 16 * K, 64 * K]
FULL_LENGTHS = [1 * K, 4 * K, 16 * K, 64 * K, 256 * K, 1 * M]
#: The official SGConv layer at L = 1M on a GPU (forward alone), for comparison with our layer row.
OFFICIAL_LAYER_REF = {"L": 1 * M, "allocated_gb": 8.0, "reserved_gb": 22.0,
                      "what": "official SGConv layer, forward alone, GPU, L=1M"}
GB = float(1 << 30)
MB = float(1 << 20)


@dataclass
class Settings:
    """Everything that shapes a run. ``Settings.make(quick, device)`` gives the defaults."""

    H: int = 256
    d_state: int = 64
    kernel_dim: int = 32
    channels: int = 1
    warmup: int = 1
    min_reps: int = 3
    max_reps: int = 50
    cell_target_s: float = 1.0        # aim for about this much timed work per cell
    per_call_cap_s: float = 30.0      # skip a cell predicted slower than this per call
    budget_s: float = 480.0           # time for all kernel cells together
    fb_max_L: int = 1 * M             # no forward+backward above this length
    mem_budget_gb: float = 8.0        # skip cells estimated to peak above this (CPU; GPU: 90% of free memory)
    layer: bool = True
    layer_lengths: list = field(default_factory=lambda: [1 * M])
    layer_l_max: int = 1 * M
    layer_on_cpu: bool = False        # the layer runs on a GPU only; True (--layer-lengths, the tests) runs it on a CPU
    layer_passes: tuple = PASSES      # ("fwd",) with --layer-fwd-only
    fft_chunk_bytes: int | None = None  # fft_conv's chunk budget for the layer (None: FFT_CHUNK_BYTES; 0: never chunk)
    growth: float = 1.25              # predicted time per call ~ L^growth (from the previous length)
    floor: bool = True                # section 3: S4D ours vs the straightforward route, and a plain matmul
    floor_cap_s: float = 60.0         # skip a floor cell predicted slower than this per call
    floor_budget_s: float = 300.0     # time for all floor cells together
    floor_matmul_n: int = 2048        # the matmul's size: float32 (n x n) @ (n x n)

    @classmethod
    def make(cls, quick: bool, device: str, **overrides) -> Settings:
        """The defaults for --quick (or not) on this device, then every override that is not None."""
        if quick:
            s = cls(min_reps=1, max_reps=10, cell_target_s=0.3, per_call_cap_s=4.0, budget_s=25.0, fb_max_L=16 * K,
                    floor_cap_s=10.0, floor_budget_s=30.0)
        else:
            s = cls()
        if device == "cuda" and not quick:
            s.layer_lengths = [64 * K, 256 * K, 1 * M]
        for k, v in overrides.items():
            if v is not None:
                if not hasattr(s, k):
                    raise TypeError(f"unknown setting {k!r}")
                setattr(s, k, v)
        return s


def parse_lengths(text: str) -> list[int]:
    """'1k,4k,1M,300' -> [1024, 4096, 1048576, 300] (k = 1024, M = 2^20)."""
    out = []
    for tok in str(text).split(","):
        tok = tok.strip()
        if tok:
            out.append(_parse_length(tok))
    if not out:
        raise ValueError("no lengths given")
    return out


def _parse_length(tok: str) -> int:
    mult = 1
    if tok[-1] in "kK":
        mult, tok = K, tok[:-1]
    elif tok[-1] in "mM":
        mult, tok = M, tok[:-1]
    try:
        val = int(float(tok) * mult)
    except ValueError:
        raise ValueError(f"cannot read length {tok!r}; use e.g. 1k,4k,16k,1M") from None
    if val < 1:
        raise ValueError(f"lengths must be positive, got {val}")
    return val


def fmt_L(L: int) -> str:
    """A length in taps as text: 1024 -> '1k', 2**20 -> '1M', 300 -> '300'."""
    if L >= M and L % M == 0:
        return f"{L // M}M"
    if L >= K and L % K == 0:
        return f"{L // K}k"
    return str(L)


def fmt_num(x, digits: int = 3) -> str:
    """A number for the table: '-' for None, 3 significant digits, thousands separators from 10**digits up."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"
