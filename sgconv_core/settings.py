"""The load settings and the allowed values of the kernels' string options (no torch import: the app's first page
reads this before torch has loaded).

Load settings are the kernel settings an official file may not hold, passed to `sgconv_core.load` under the
official argument names (``sgconv_core.load(path, disc="bilinear")``).

One table (`SETTINGS`) says, for each setting, which values are valid (checked before anything is read) and what
the app's Models page offers (choices, the first one being the app's default, and a help line). Where a value
comes from when the caller gives none (the stored Hydra config, then the detected version's default) is the
layouts' business: `sgconv_core.checkpoints.layouts.context.Ctx.setting`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import CheckpointError

#: How an SSM kernel maps a stored parameter to a positive value (`sgconv_core.kernels.ssm.param_transform`).
TRANSFORMS = ("none", "exp", "relu", "sigmoid", "softplus")
#: S4D discretisations (`sgconv_core.kernels.s4d`): zero-order hold, bilinear, DSS.
DISCS = ("zoh", "bilinear", "dss")


@dataclass(frozen=True)
class Setting:
    """One load setting.

    name: the official argument name. valid: does a value (never a bool where a number is meant) pass.
    expects: what a valid value is, for the error message ('must be ...' or 'is not one of [...]').
    none_ok: None means "not given" (skipped by the check). offer: the values the app offers ('' for none:
    not offered). help: one line for the app.
    """

    name: str
    valid: Callable[[object], bool]
    expects: str
    none_ok: bool = False
    offer: tuple = ()
    help: str = ""

    def check(self, value, source: str) -> None:
        """CheckpointError naming the file, the setting and the value when ``value`` is not valid."""
        if value is None and self.none_ok:
            return
        if not self.valid(value):
            raise CheckpointError(f"{source}: setting {self.name}={value!r} {self.expects}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _one_of(choices) -> tuple[Callable[[object], bool], str]:
    return (lambda v: v in choices), f"is not one of {list(choices)}"


_BOOL = (lambda v: isinstance(v, bool), "must be True or False")

#: Every load setting, in the order the app shows those it offers.
SETTINGS: tuple[Setting, ...] = (
    Setting("mode", lambda v: isinstance(v, str), "must be a string",
            offer=("cat_randn", "sum_randn", "cat_cos", "sum_cos", "cat_randn_learnable_fixed", "cat_randn_learnable",
                   "cat_randn_nearest"),
            help="SGConv: how scales are combined ('cat' | 'sum'), init, interpolation, decay mode"),
    Setting("init_scale", _is_int, "must be an integer", offer=(0, 1, 2, 3),
            help="SGConv: the first scale's upsampling exponent"),
    Setting("dt_transform", *_one_of(TRANSFORMS), offer=("exp", "softplus", "relu", "sigmoid", "none"),
            help="S4/S4D: stored timescale -> dt"),
    Setting("real_transform", *_one_of(TRANSFORMS), offer=("exp", "relu", "softplus", "sigmoid", "none"),
            help="S4/S4D: stored A_real -> -Re A"),
    Setting("imag_transform", *_one_of(TRANSFORMS), offer=("none", "exp", "relu", "softplus", "sigmoid"),
            help="S4/S4D: stored A_imag -> -Im A"),
    Setting("disc", *_one_of(DISCS), offer=DISCS, help="S4/S4D: discretisation"),
    Setting("is_real", *_BOOL, offer=(False, True), help="S4D-Real (real diagonal A)"),
    Setting("bandlimit", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
            "must be a positive number or None", none_ok=True, offer=(0.5, 1.0, 2.0),
            help="S4/S4D: zero the modes above this fraction of the sampling rate (official: 0.5 where set); "
                 "'from the file': the stored value, else no band limit"),
    Setting("dt_fast", *_BOOL),
    Setting("l_max", lambda v: _is_int(v) and v >= 1, "must be a positive integer", none_ok=True),
    Setting("bidirectional", *_BOOL),
    Setting("prenorm", *_BOOL, offer=(False, True),
            help="example.py S4D models: trained with --prenorm (the flag is not stored in the file)"),
)
BY_NAME = {s.name: s for s in SETTINGS}

#: The settings a caller may pass, in the order error messages list them.
KNOWN_SETTINGS = ("dt_transform", "disc", "real_transform", "imag_transform", "is_real", "bandlimit", "dt_fast",
                  "mode", "init_scale", "l_max", "bidirectional", "prenorm")
#: The order the values are checked in (the first bad one is named).
_CHECK_ORDER = ("dt_transform", "real_transform", "imag_transform", "disc", "mode", "init_scale", "bandlimit",
                "is_real", "bidirectional", "dt_fast", "l_max", "prenorm")
assert set(KNOWN_SETTINGS) == set(BY_NAME) == set(_CHECK_ORDER)

#: What the app's settings box offers: name -> (choices, help).
OFFERED = {s.name: (list(s.offer), s.help) for s in SETTINGS if s.offer}


def validate_settings(settings: dict | None, source: str) -> dict:
    """A copy of the caller's settings; CheckpointError for an unknown name or a value of the wrong kind."""
    settings = dict(settings or {})
    unknown = sorted(k for k in settings if k not in BY_NAME)
    if unknown:
        raise CheckpointError(f"{source}: unknown setting(s) {unknown}; known settings are {list(KNOWN_SETTINGS)}")
    for name in _CHECK_ORDER:
        if name in settings:
            BY_NAME[name].check(settings[name], source)
    return settings


__all__ = ["TRANSFORMS", "DISCS", "Setting", "SETTINGS", "KNOWN_SETTINGS", "OFFERED", "validate_settings"]
