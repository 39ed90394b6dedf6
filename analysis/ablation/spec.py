"""What a sweep is: :class:`SweepSpec` (the grid a user asks for), :class:`RunSpec` (one training run it expands
to), presets (`PRESETS`: each with the one sentence saying what its task rewards), validation, and the paper's
reference curves.

A sweep varies one factor at a time around a base point, as the paper's ablation does:

* the **decay axis**: decay values at the base size, once per decay mode;
* the **size axis**: sizes (SGConv ``kernel_dim``, S4/S4D state size ``N``) at the base decay, fixed mode.

The run at (base decay, base size, fixed mode) lies on both axes and is trained once (runs are keyed by a hash
of their config, :meth:`RunSpec.key`). Each point is trained once per seed; tables and plots show the mean and
the sample standard deviation (ddof = 1) over the seeds, with n (`figures.point_stats`).

Decay knob per family (every knob is a kernel argument, so a run's card command re-creates it):

* SGConv, ``fixed``: decay speed ``t`` with envelope ~ pos^-t via the multiplier ``m = 2**t``
  (kernel args ``decay_min = decay_max = m``; t = 0 is no decay, t = 1 is the official default m = 2).
* SGConv, ``frozen``: the official mode ``cat_randn_learnable_fixed`` with ``decay_min = decay_max = t``: the
  joined kernel is multiplied by (lag+1)^-t exactly (multiplier 1) and t is not trained (requires_grad False).
* SGConv, ``learnable``: mode ``cat_randn_learnable`` with the decay exponent initialised to ``t``
  (``decay_min = decay_max = t``): the kernel is multiplied by (lag+1)^-t and t is trained (multiplier 1).
* S4 / S4D: a factor ``r`` on the real part of A, kernel argument ``real_scale = r``: Re A <- r * Re A at
  initialisation (S4D-Lin: Re A = -0.5 r), so the kernel's envelope exp(Re A * dt * pos) decays r times faster;
  r = 0 is (almost) no decay. With ``ssm_knob='dt'`` the factor scales the dt range (kernel args dt_min, dt_max)
  instead, which also shifts the frequencies. Mode ``learnable`` (default) trains A and dt from there;
  ``fixed`` adds the kernel argument ``freeze_decay = true`` (A_real and inv_dt not trained). ``frozen`` is
  SGConv's only.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

from sgconv_core.families import FAMILIES as _FAMILIES
from sgconv_core.families import family
from sgconv_core.lengths import MAX_ABLATION_LENGTH
from sgconv_core.train import TrainConfig

DECAY_MODES = ("fixed", "frozen", "learnable")
#: Decay modes only the SGConv (decay knob t) family has.
T_ONLY_MODES = ("frozen",)
SSM_KNOBS = ("real", "dt")

#: The paper's ablation (SGConv repository's plotting notebook; task not named there, the level matches LRA
#: Text). Accuracy in %.
#: The metric each task's runs are scored with (`sgconv_core.tasks.TaskSpec.metric`; a test keeps them equal).
TASK_METRIC = {"digits": "accuracy", "delay": "nmse", "listops": "accuracy"}


def metric_column(metric: str) -> tuple[float, str]:
    """(factor, unit) a metric is shown in, in tables and plots alike: accuracy as a percentage (factor 100,
    unit '%'), NMSE as is (factor 1, unit '' ). One unit per quantity across the app."""
    return (100.0, "%") if metric == "accuracy" else (1.0, "")


PAPER_SOURCE = "Li et al. 2022 (SGConv), ablation; task not named, level of LRA Text"
PAPER_FAMILY = "sgconv"  # the family the paper's curves are of
PAPER_DECAY = {0.0: 67.67, 0.5: 83.31, 0.75: 86.88, 1.0: 88.92, 1.5: 88.76, 2.0: 88.90}
PAPER_KERNEL_DIM = {1: 88.71, 2: 89.08, 4: 88.77, 8: 88.92, 16: 88.76, 32: 88.30, 64: 88.52}


@dataclass(frozen=True)
class Axis:
    """The default grid of one ablation axis, its base point and its limits (see the module doc)."""

    values: tuple
    base: float
    lo: float
    hi: float
    title: str


#: The decay axis per decay knob (`sgconv_core.families.Family.decay_knob`): t = SGConv decay speed (m = 2^t;
#: t = 1 is the official default m = 2); r = S4/S4D real-part factor (r = 1: no change).
DECAY_AXES = {
    "t": Axis((0.0, 0.5, 0.75, 1.0, 1.5, 2.0), 1.0, 0.0, 10.0, "SGConv decay speed t"),   # m <= 2**10 per scale
    "r": Axis((0.0, 0.1, 0.3, 1.0, 3.0, 10.0), 1.0, 0.0, 1000.0, "S4/S4D real-part factor r"),
}
#: The size axis per size knob (`Family.size_key`): SGConv kernel_dim, SSM state size N (even).
SIZE_AXES = {
    "kernel_dim": Axis((1, 2, 4, 8, 16, 32, 64), 8, 1, 4096, "kernel_dim"),  # base 8: the paper's notebook
    "d_state": Axis((2, 4, 8, 16, 32, 64, 128), 64, 2, 1024, "d_state"),
}

#: Families a sweep can train: those with a decay knob and a size knob, in the app's order.
FAMILIES = tuple(f.name for f in _FAMILIES.values() if f.decay_knob in DECAY_AXES and f.size_key in SIZE_AXES)
DEFAULT_DECAYS = {f: DECAY_AXES[family(f).decay_knob].values for f in FAMILIES}
DEFAULT_SIZES = {f: SIZE_AXES[family(f).size_key].values for f in FAMILIES}
BASE_DECAY = {f: DECAY_AXES[family(f).decay_knob].base for f in FAMILIES}
BASE_SIZE = {f: SIZE_AXES[family(f).size_key].base for f in FAMILIES}
SIZE_NAME = {f: family(f).size_key for f in FAMILIES}
DECAY_NAME = {f: family(f).decay_knob for f in FAMILIES}

# Limits that keep a sweep from asking for something absurd (checked before anything runs).
MAX_L = MAX_ABLATION_LENGTH
MAX_STEPS = 100_000
MAX_RUNS = 500
MAX_SEEDS = 32
MAX_T = DECAY_AXES["t"].hi
MAX_R = DECAY_AXES["r"].hi
MAX_KERNEL_DIM = SIZE_AXES["kernel_dim"].hi
MAX_D_STATE = SIZE_AXES["d_state"].hi
MAX_D_MODEL = 1024
MAX_LAYERS = 16
MAX_BATCH = 4096


def _num(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        try:
            import numpy as np

            if isinstance(x, (np.integer, np.floating)):
                return float(x)
        except ImportError:  # pragma: no cover
            pass
        raise ValueError(f"{name} must be a number, got {x!r}")
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def _int(x, name: str, lo: int, hi: int) -> int:
    if isinstance(x, bool):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    try:
        import operator

        x = operator.index(x)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {x!r}") from None
    if not lo <= x <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {x}")
    return x


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep: everything its TrainConfig holds (the decay knob is a kernel argument)."""

    task: str
    task_params: tuple            # sorted (key, value) pairs (hashable); dict(...) gives the task params
    task_seed: int
    family: str
    decay: float                  # t (SGConv) or r (S4/S4D)
    decay_mode: str               # 'fixed' | 'frozen' (SGConv) | 'learnable'
    size: int                     # kernel_dim (SGConv) or d_state (S4/S4D)
    seed: int
    d_model: int
    n_layers: int
    steps: int
    batch_size: int
    lr: float
    kernel_lr: float
    weight_decay: float
    eval_every: int
    eval_batch_size: int
    ssm_knob: str = "real"
    mode: str = "cat_randn"       # SGConv base mode (fixed decay); 'learnable' is added for the learnable mode
    extra_kernel_args: tuple = ()  # sorted (key, value) pairs passed to the kernel as they are

    # -- what it trains ------------------------------------------------------------------------------------
    def kernel_args(self) -> dict:
        args = dict(self.extra_kernel_args)
        if family(self.family).decay_knob == "t":
            args["kernel_dim"] = self.size
            if self.decay_mode == "fixed":
                m = 2.0 ** self.decay
                args.update(mode=self.mode, decay_min=m, decay_max=m)
            else:
                mode = self.mode if "learnable" in self.mode else self.mode + "_learnable"
                mode = mode.replace("_fixed", "") + ("_fixed" if self.decay_mode == "frozen" else "")
                args.update(mode=mode, decay_min=self.decay, decay_max=self.decay)
        else:
            args["d_state"] = self.size
            if self.ssm_knob == "dt":
                args["dt_min"] = args.get("dt_min", 1e-3) * self.decay
                args["dt_max"] = args.get("dt_max", 1e-1) * self.decay
            elif self.decay != 1.0:
                args["real_scale"] = self.decay
            if self.decay_mode == "fixed":
                args["freeze_decay"] = True
        return args

    def train_config(self, device: str = "cpu", threads: int | None = None, out: str | None = None,
                     notes: bool = True) -> TrainConfig:
        return TrainConfig(
            task=self.task, task_params=dict(self.task_params), task_seed=self.task_seed, family=self.family,
            d_model=self.d_model, n_layers=self.n_layers, kernel_args=self.kernel_args(), steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, kernel_lr=self.kernel_lr, weight_decay=self.weight_decay,
            eval_every=self.eval_every, eval_batch_size=self.eval_batch_size, seed=self.seed, device=device,
            threads=threads, out=out, notes=f"ablation run {self.key()}: {self.label()}" if notes else "",
        )

    # -- identity ------------------------------------------------------------------------------------------
    def key(self) -> str:
        """Hash of everything that changes the result (not device, threads or where the checkpoint goes)."""
        cfg = asdict(self.train_config(notes=False))
        for k in ("device", "threads", "out", "notes", "time_budget_s"):
            cfg.pop(k, None)
        # "hook": {} keeps the keys of runs stored before the S4/S4D knob became a kernel argument (SGConv runs,
        # S4/S4D runs at r = 1 in the learnable mode); the others now hash their kernel args instead.
        blob = json.dumps({"v": 1, "train": cfg, "hook": {}}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def label(self) -> str:
        dn, sn = DECAY_NAME[self.family], SIZE_NAME[self.family]
        return f"{self.family} {dn}={self.decay:g} ({self.decay_mode}) {sn}={self.size} seed={self.seed}"

    def group_signature(self) -> tuple:
        """Runs with the same signature can train together as one batched model (same data and shapes)."""
        return (self.task, self.task_params, self.task_seed, self.d_model, self.n_layers, self.steps,
                self.batch_size, self.eval_every, self.eval_batch_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["task_params"] = dict(self.task_params)
        d["extra_kernel_args"] = dict(self.extra_kernel_args)
        return d


@dataclass
class SweepSpec:
    """A grid: task, family, step budget, seeds, decay values (x decay modes) and sizes. See the module doc."""

    task: str = "digits"
    task_params: dict = field(default_factory=dict)
    task_seed: int = 0
    family: str = "sgconv"
    decays: tuple | list | None = None       # None: DEFAULT_DECAYS[family]; () skips the decay axis
    decay_modes: tuple | list = ("fixed",)
    sizes: tuple | list | None = None        # None: DEFAULT_SIZES[family]; () skips the size axis
    base_decay: float | None = None          # None: BASE_DECAY[family]
    base_size: int | None = None             # None: BASE_SIZE[family] (capped at L)
    seeds: tuple | list = (0,)
    steps: int = 300
    batch_size: int = 32
    d_model: int = 64
    n_layers: int = 2
    lr: float = 0.01
    kernel_lr: float = 0.001
    weight_decay: float = 0.05
    eval_every: int = 100
    eval_batch_size: int = 128
    ssm_knob: str = "real"
    mode: str = "cat_randn"
    extra_kernel_args: dict = field(default_factory=dict)
    name: str = ""

    # -- defaults ------------------------------------------------------------------------------------------
    def resolved(self) -> SweepSpec:
        """A copy with the family defaults filled in (decays, sizes, base point) and sequences as tuples."""
        fam = self.family
        decays = DEFAULT_DECAYS.get(fam, ()) if self.decays is None else self.decays
        sizes = DEFAULT_SIZES.get(fam, ()) if self.sizes is None else self.sizes
        base_decay = BASE_DECAY.get(fam, 1.0) if self.base_decay is None else self.base_decay
        base_size = self.base_size
        if base_size is None:
            base_size = BASE_SIZE.get(fam, 32)
            L = self.length()
            if family(fam).size_key == "kernel_dim" and isinstance(L, int):  # a kernel_dim cannot exceed L
                base_size = min(base_size, L)
        return replace(self, decays=tuple(decays), sizes=tuple(sizes), decay_modes=tuple(self.decay_modes),
                       seeds=tuple(self.seeds), base_decay=base_decay, base_size=base_size)

    def length(self):
        L = self.task_params.get("L")
        if L is None:
            return {"digits": 1024, "delay": 1024, "listops": 192}.get(self.task)
        return L

    # -- validation ----------------------------------------------------------------------------------------
    def check(self) -> SweepSpec:
        """Raise ValueError naming the bad field; returns the resolved spec. Nothing is built or trained."""
        L = self._check_task()
        s = self.resolved()
        s._check_training()
        s._check_seeds()
        s._check_axes(L)
        if not isinstance(s.extra_kernel_args, dict):
            raise ValueError("extra_kernel_args must be a dict")
        runs = s.expand(check=False)
        if len(runs) > MAX_RUNS:
            raise ValueError(f"the grid has {len(runs)} runs; at most {MAX_RUNS} (fewer decays, sizes or seeds)")
        for r in runs[:1]:
            r.train_config().check()
        return s

    def _check_task(self) -> int:
        """Task, family and task parameters; returns the task's sequence length L."""
        from sgconv_core.tasks import TASKS, get_task

        if self.task not in TASKS:
            raise ValueError(f"task: unknown task {self.task!r}; choose from {list(TASKS)}")
        if self.family not in FAMILIES:
            raise ValueError(f"family: unknown family {self.family!r}; choose from {list(FAMILIES)}")
        if not isinstance(self.task_params, dict):
            raise ValueError(f"task_params must be a dict, got {type(self.task_params).__name__}")
        L = self.task_params.get("L")
        if L is not None:
            _int(L, "task_params.L (sequence length)", 16, MAX_L)
        try:
            task = get_task(self.task, seed=_int(self.task_seed, "task_seed", 0, 2**32 - 1), **self.task_params)
        except ValueError as e:
            raise ValueError(f"task_params: {e}") from None
        if task.spec.L > MAX_L:
            raise ValueError(f"task_params.L: sequence length {task.spec.L} is beyond the ablation maximum {MAX_L}")
        return task.spec.L

    def _check_training(self) -> None:
        """Step budget, sizes of the backbone and the optimiser's numbers."""
        for name, hi in (("steps", MAX_STEPS), ("batch_size", MAX_BATCH), ("d_model", MAX_D_MODEL),
                         ("n_layers", MAX_LAYERS), ("eval_every", MAX_STEPS), ("eval_batch_size", MAX_BATCH)):
            _int(getattr(self, name), name, 1, hi)
        for name in ("lr", "kernel_lr", "weight_decay"):
            v = _num(getattr(self, name), name)
            if v < 0 or v > 10:
                raise ValueError(f"{name} must be in [0, 10], got {v}")

    def _check_seeds(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if len(self.seeds) > MAX_SEEDS:
            raise ValueError(f"seeds: at most {MAX_SEEDS} seeds, got {len(self.seeds)}")
        for i, sd in enumerate(self.seeds):
            _int(sd, f"seeds[{i}]", 0, 2**31 - 1)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: repeated seed in {list(self.seeds)}")

    def _check_axes(self, L: int) -> None:
        """The decay and size values (and the base point) against the family's axes (`DECAY_AXES`, `SIZE_AXES`)."""
        if not self.decays and not self.sizes:
            raise ValueError("decays and sizes are both empty: nothing to sweep")
        if not self.decay_modes:
            raise ValueError(f"decay_modes: give at least one of {list(DECAY_MODES)}")
        for m in self.decay_modes:
            if m not in DECAY_MODES:
                raise ValueError(f"decay_modes: unknown mode {m!r}; choose from {list(DECAY_MODES)}")
            if m in T_ONLY_MODES and family(self.family).decay_knob != "t":
                raise ValueError(f"decay_modes: {m!r} is SGConv's (t, lag+1)^-t mode; for {self.family} use 'fixed' "
                                 "(A_real and dt frozen) or 'learnable'")
        if self.ssm_knob not in SSM_KNOBS:
            raise ValueError(f"ssm_knob: unknown knob {self.ssm_knob!r}; choose from {list(SSM_KNOBS)}")
        fam = family(self.family)
        decay_axis, size_axis = DECAY_AXES[fam.decay_knob], SIZE_AXES[fam.size_key]
        dname = f"decays ({decay_axis.title})"
        for i, t in enumerate((*self.decays, self.base_decay)):
            where = f"decays[{i}]" if i < len(self.decays) else "base_decay"
            t = _num(t, where)
            if t < decay_axis.lo:
                raise ValueError(f"{where} = {t}: {dname} must be >= 0 (0 means no decay)")
            if t > decay_axis.hi:
                raise ValueError(f"{where} = {t}: {dname} must be at most {decay_axis.hi}")
            if fam.decay_knob == "r" and self.ssm_knob == "dt" and t == 0:
                raise ValueError(f"{where} = 0: with ssm_knob='dt' the dt factor must be > 0")
        sname = fam.size_key
        hi = min(size_axis.hi, L) if sname == "kernel_dim" else size_axis.hi  # a kernel_dim cannot exceed L
        for i, n in enumerate((*self.sizes, self.base_size)):
            where = f"sizes[{i}] ({sname})" if i < len(self.sizes) else f"base_size ({sname})"
            n = _int(n, where, size_axis.lo, hi)
            if sname == "d_state" and n % 2:
                raise ValueError(f"{where} = {n}: the state size must be even")

    # -- runs ----------------------------------------------------------------------------------------------
    def expand(self, check: bool = True) -> list[RunSpec]:
        """The runs of the grid, without duplicates (the base point appears once), decay axis first."""
        s = self.check() if check else self.resolved()
        common = dict(
            task=s.task, task_params=tuple(sorted(s.task_params.items())), task_seed=int(s.task_seed),
            family=s.family, d_model=int(s.d_model), n_layers=int(s.n_layers), steps=int(s.steps),
            batch_size=int(s.batch_size), lr=float(s.lr), kernel_lr=float(s.kernel_lr),
            weight_decay=float(s.weight_decay), eval_every=int(s.eval_every),
            eval_batch_size=int(s.eval_batch_size), ssm_knob=s.ssm_knob, mode=s.mode,
            extra_kernel_args=tuple(sorted(s.extra_kernel_args.items())),
        )
        out, seen = [], set()
        for seed in s.seeds:
            points = [(float(t), m, int(s.base_size)) for m in s.decay_modes for t in s.decays]
            points += [(float(s.base_decay), "fixed" if "fixed" in s.decay_modes else s.decay_modes[0], int(n))
                       for n in s.sizes]
            for t, mode, n in points:
                r = RunSpec(decay=t, decay_mode=mode, size=n, seed=int(seed), **common)
                k = r.key()
                if k not in seen:
                    seen.add(k)
                    out.append(r)
        return out

    def to_dict(self) -> dict:
        d = asdict(self.resolved())
        for k in ("decays", "sizes", "decay_modes", "seeds"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SweepSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown sweep fields: {sorted(unknown)}")
        return cls(**d)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------- presets
#: What each task rewards, in one sentence (the task-generic presets `quick` and `default` show the task's).
TASK_REWARDS = {
    "digits": "Digits rewards whole-image context: the class depends on pixels a whole row stride (side taps) and "
              "more apart, so strong decay should hurt and no decay costs little (the 'long context' case).",
    "delay": "The delay task rewards copying the input from exactly `lag` taps back: a short lag rewards a kernel "
             "that decays (a local prior), a long lag punishes one.",
    "listops": "ListOps rewards reading the whole nested expression (the answer depends on every operand), so "
               "long-range kernels should help.",
}
#: The small model every CPU preset trains (about 7 s per 300-step run at L = 256 on one core).
_SMALL = dict(steps=300, d_model=32, n_layers=2, batch_size=32, eval_every=100, seeds=(0, 1, 2))
_SMALL_TASK = {"digits": {"L": 256}, "delay": {"L": 256, "lag": 64, "n_train": 1000, "n_val": 200, "n_test": 200},
               "listops": {"L": 128, "max_depth": 3, "min_depth": 2, "max_args": 4, "min_length": 16, "n_train": 2000,
                           "n_val": 250, "n_test": 250}}


def _small_base(family_name: str) -> int:
    """The base size of the CPU presets: SGConv kernel_dim 8 (the paper's plotting notebook), SSM state size 32."""
    return 8 if family(family_name).size_key == "kernel_dim" else 32


def _delay(lag: int, label: str):
    def make(family_name: str, task: str = "delay") -> SweepSpec:
        tp = {**_SMALL_TASK["delay"], "lag": lag}
        return SweepSpec(task="delay", task_params=tp, family=family_name, sizes=(),
                         base_size=_small_base(family_name), name=f"{label} {family_name}", **_SMALL)
    return make


def _digits(family_name: str, task: str = "digits") -> SweepSpec:
    return SweepSpec(task="digits", task_params=dict(_SMALL_TASK["digits"]), family=family_name, sizes=(),
                     base_size=_small_base(family_name), name=f"digits {family_name}", **_SMALL)


def _quick(family_name: str, task: str = "digits") -> SweepSpec:
    small = family(family_name).size_key == "kernel_dim"
    return SweepSpec(task=task, task_params=dict(_SMALL_TASK[task]), family=family_name,
                     base_size=_small_base(family_name),
                     sizes=(1, 2, 4, 8, 16, 32, 64) if small else (2, 4, 8, 16, 32, 64),
                     name=f"quick {task} {family_name}", **_SMALL)


def _default(family_name: str, task: str = "digits") -> SweepSpec:
    return SweepSpec(task=task, family=family_name, seeds=(0, 1, 2), name=f"default {task} {family_name}")


@dataclass(frozen=True)
class Preset:
    """A named grid: its factory ``make(family, task) -> SweepSpec``, the task it is for (None: any task, chosen
    by the user), a short label for menus, and one sentence saying what its task rewards (None: the task's,
    `TASK_REWARDS`)."""

    name: str
    label: str
    make: Callable[..., SweepSpec]
    task: str | None = None
    rewards: str | None = None

    def sentence(self, task: str) -> str:
        return self.rewards or TASK_REWARDS.get(task, "")


#: The presets, in menu order. Every one trains >= 3 seeds per point.
PRESETS = {p.name: p for p in (
    Preset("delay-local", "delay-local (CPU, ~2.5 min)", _delay(2, "delay-local"), "delay",
           "Delay with lag 2: the target is the input 2 taps back, so a kernel that decays is the right prior "
           "(more decay should lower the NMSE)."),
    Preset("delay-far", "delay-far (CPU, ~2.5 min; control)", _delay(64, "delay-far"), "delay",
           "Delay with lag 64: the target sits 64 taps back, so strong decay starves the kernel where it must "
           "reach (more decay should raise the NMSE) — the control for delay-local."),
    Preset("digits", "digits (CPU, ~2.5 min; long context)", _digits, "digits", TASK_REWARDS["digits"]),
    Preset("quick", "quick (CPU, both axes, any task)", _quick),
    Preset("default", "paper-like (GPU)", _default),
)}


def preset(name: str, family_name: str = "sgconv", task: str | None = None) -> SweepSpec:
    """The grid of a preset (`PRESETS`) for a family. ``task``: for the task-generic presets ('quick': the small
    CPU grid with both axes; 'default': the paper-like grid meant for a GPU), default digits; a preset made for
    one task ('delay-local', 'delay-far', 'digits') uses its own and ignores it. Small presets: L = 256, 2x32,
    300 steps, 3 seeds, SGConv base kernel_dim 8 (SSMs N = 32)."""
    p = PRESETS.get(name)
    if p is None:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    return p.make(family_name, p.task or task or "digits")


def preset_sentence(name: str, task: str | None = None) -> str:
    """The one sentence saying what the preset's task rewards (`Preset.sentence`)."""
    p = PRESETS.get(name)
    if p is None:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    return p.sentence(p.task or task or "digits")
