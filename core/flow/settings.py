"""Settings of the dynamics, the solver names and choice, the save grid, and why a run
stopped (:class:`StopReason`): the part of :mod:`core.flow` every other part uses."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from core.config import DYNAMICS_METHODS, SOLVERS, DynamicsFields

METHODS = DYNAMICS_METHODS  # the names core.config validates: one list
EXPLICIT_SOLVERS = ("tsit5", "dopri5", "dopri8")
STIFF_SOLVERS = ("kvaerno5", "kencarp5")
SCIPY_SOLVERS = ("lsoda", "bdf")
JAX_SOLVERS = (*EXPLICIT_SOLVERS, *STIFF_SOLVERS)
if set(SOLVERS) != {"auto", *JAX_SOLVERS, *SCIPY_SOLVERS}:  # config's names, grouped here
    raise ImportError("core.flow.settings: solver groups do not match core.config.SOLVERS")
# solver = "auto": scipy's LSODA (exact Hessian as Jacobian) up to this many parameters,
# Tsit5 above.  Measured on 2 shared CPU cores, 2026-12-01, softplus teacher-student
# (bench/dynamics.py's problem(); rtol 1e-3, atol 1e-6; wall seconds to t_max including
# compilation, or the t reached within the budget):
#   P=13  (d=2, r=3, N=2000, t_max 1e10): LSODA 0.69 s, BDF 2.5 s; Kvaerno5 reached t=4e6 in 8.6 s;
#   P=21  (d=2, r=5, N=1e4, t_max 1e10):  LSODA 7.0 s;  BDF t=1.2e8, Kvaerno5 t=4.6e5 in 8-10 s;
#   P=101 (d=2, r=25, N=2000, t_max 1e4): LSODA 0.37 s, BDF 0.42 s, Kvaerno5 7.8 s,
#                                         Tsit5 reached t=357 in 12 s;
#   P=241 (d=2, r=60, N=2000, t_max 1e3): LSODA 2.3 s, BDF 3.4 s; in 10 s Kvaerno5 t=1.5,
#                                         Tsit5 t=39;
#   P=601 (d=4, r=100, N=2000, t_max 100): LSODA 2.0 s, BDF 2.2 s; in 10 s Tsit5 t=8.6,
#                                         Kvaerno5 t=0.014.
#   P=997 (d=4, r=166, N=2000, t_max 100, load ≈8): LSODA 25 s; Tsit5 reached t=22.7 in
#                                         40 s; at rtol 1e-8 in 40 s LSODA t=79, Tsit5 t=30.
# LSODA wins wherever measured (5-50× up to P=601, ≥3× at P=997): it reuses one Jacobian
# and LU over several steps (njev/steps ≈ 0.1-0.8) and runs Adams steps (no Jacobian)
# where the flow is not stiff, while an ESDIRK step costs a Hessian, a factorisation and
# ~18 ∇L evaluations.  Above ~10³ parameters the dense P×P Hessian per Jacobian (N·P²
# work, 8·P² bytes) takes over and is unmeasured here, so auto keeps the Jacobian-free
# Tsit5 there (MLPGradientFlow.jl switches to explicit solvers at 1024 too).
AUTO_SCIPY_MAX_PARAMS = 1024
AUTO_SCIPY_SOLVER = "lsoda"
# LSODA keeps its state in the solver object (paused runs can interleave) from scipy 1.17
# on (the C rewrite, scipy PR 23914), which pyproject.toml requires.


# Where a jitted (diffrax) solver is required (core.ensemble's vmap), "auto" means
# Kvaerno5 up to AUTO_STIFF_MAX_PARAMS parameters and Tsit5 above.  Measured on 2 CPU
# cores (bench/dynamics.py --part b and the same family at other widths; d=2, N=2000):
#   P=33  (t_max 1e4): Kvaerno5 13.2 s, KenCarp5 6.7 s, Tsit5 57 s, same accuracy;
#   P=101 (t_max 1e4): Kvaerno5 26.7 s, KenCarp5 13.5 s, Tsit5 reached t=2.3e3 in 60 s;
#   P=241 (t_max 1e3): in 60 s Kvaerno5 reached t=2.9, Tsit5 431, KenCarp5 977;
#   P=601 (d=4, t_max 100): Tsit5 47 s; in 90 s Kvaerno5 reached t=0.06, KenCarp5 13.
# KenCarp5 took 121 s instead of 20 s on the channel-to-infinity preset (P=6), where
# Hessians grow like 1/ε²: Kvaerno5 is the robust stiff choice.
AUTO_STIFF_MAX_PARAMS = 160
AUTO_STIFF_SOLVER = "kvaerno5"

# Saves per chunk, the wall-clock target per chunk, and how many consecutive rejected
# steps with non-finite candidates mean the solution has left the domain for good.
SAVES_PER_CHUNK = 8
CHUNK_SECONDS = 0.2
NONFINITE_STREAK = 12
# Loop iterations of a jitted run's first chunk (its wall time is mostly compilation, so
# it says nothing about the cost of a step; later budgets follow the measured cost).
FIRST_BUDGET = 8


class StopReason(enum.StrEnum):
    """Why a run stopped.  The values are stored in sessions and reports: never rename.

    ``code`` is the status carried inside the jitted loops (0, :data:`RUNNING`, while
    running); :meth:`from_code` maps it back.
    """

    T_MAX = "t_max"
    CONVERGED = "converged"
    MAX_SECONDS = "max_seconds"
    MAX_STEPS = "max_steps"
    NONFINITE = "nonfinite"
    SOLVER_ERROR = "solver_error"
    #: Set by :mod:`core.fixed_point`, never inside a loop: the flow entered the basin of
    #: the point refinement landed on, and the run was handed over there.
    REFINED = "refined"

    @property
    def code(self) -> int:
        return _CODES[self]

    @property
    def description(self) -> str:
        """One line saying what the reason means."""
        return _DESCRIPTIONS[self]

    @classmethod
    def from_code(cls, code: int) -> StopReason | None:
        """The reason for a loop status code; ``None`` for :data:`RUNNING`."""
        return None if int(code) == RUNNING else _FROM_CODE[int(code)]

    def message(self, t: float, steps: int, settings: DynamicsSettings) -> str:
        """The human-readable detail of a run that stopped for this reason at time t."""
        if self is StopReason.T_MAX:
            return ""
        if self is StopReason.CONVERGED:
            return f"‖∇L‖∞ < {settings.grad_tol:g} at t = {t:.6g}"
        if self is StopReason.MAX_SECONDS:
            return f"stopped after {settings.max_seconds:g} s"
        if self is StopReason.MAX_STEPS:
            return f"reached max_steps = {settings.max_steps} at t = {t:.6g}"
        if self is StopReason.REFINED:
            return f"handed over to refinement at t = {t:.6g}"
        if self is StopReason.NONFINITE:
            return (
                f"the next state after t = {t:.6g} (step {steps}) is NaN/Inf or has a "
                "non-finite loss; the last finite state is kept"
            )
        return (
            f"solver failure at t = {t:.6g} (step {steps}): step size underflow (the flow "
            "may blow up) or a failed implicit solve"
        )


RUNNING = 0
_CODES = {reason: i + 1 for i, reason in enumerate(StopReason)}
_FROM_CODE = {code: reason for reason, code in _CODES.items()}
# Loop status codes, as traced constants of the jitted loops.
_CONVERGED = StopReason.CONVERGED.code
_MAX_STEPS = StopReason.MAX_STEPS.code
_NONFINITE = StopReason.NONFINITE.code
_SOLVER_ERROR = StopReason.SOLVER_ERROR.code
_DESCRIPTIONS = {
    StopReason.T_MAX: "the run reached t_max",
    StopReason.CONVERGED: "‖∇L‖∞ fell below grad_tol at a save time",
    StopReason.MAX_SECONDS: "the wall-clock budget max_seconds ran out (cut short)",
    StopReason.MAX_STEPS: "the run took max_steps solver steps / iterations",
    StopReason.NONFINITE: "the next state or its loss is NaN/Inf; the last finite one is kept",
    StopReason.SOLVER_ERROR: "the solver failed (step size underflow or failed implicit solve)",
    StopReason.REFINED: "the flow was handed over to refinement inside its end point's basin",
}


@dataclass(frozen=True)
class DynamicsSettings(DynamicsFields):
    """How to run the dynamics (the ``[dynamics]`` config table without ``maxnorm``, which
    belongs to the objective): the fields of :class:`core.config.DynamicsFields`, checked
    again here, so a direct call gets a ``ValueError`` naming the field."""

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> ValueError:
            return ValueError(f"dynamics.{name}: {problem}")

        if self.method not in METHODS:
            raise bad("method", f"unknown method {self.method!r}; choose one of {METHODS}")
        if self.solver not in SOLVERS:
            raise bad("solver", f"unknown solver {self.solver!r}; choose one of {SOLVERS}")
        for name in ("t_max", "rtol", "atol", "max_seconds", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise bad(name, f"must be a finite number > 0, got {value!r}")
        if not (isinstance(self.grad_tol, int | float) and self.grad_tol >= 0):
            raise bad("grad_tol", f"must be a number ≥ 0, got {self.grad_tol!r}")
        for name, least in (("max_steps", 1), ("batch_size", 1), ("n_saves", 2)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
                raise bad(name, f"must be an integer ≥ {least}, got {value!r}")
        if self.tauinv is not None:
            try:
                tau = np.asarray(self.tauinv, dtype=float)
            except (TypeError, ValueError) as err:
                raise bad("tauinv", f"must be a list of numbers ({err})") from None
            if tau.ndim != 1 or not np.all(np.isfinite(tau)) or np.any(tau < 0):
                raise bad("tauinv", "must be a flat list of finite numbers ≥ 0")
            object.__setattr__(self, "tauinv", tuple(float(v) for v in tau))


def resolve_solver(settings: DynamicsSettings, n_params: int, *, jax_only: bool = False) -> str:
    """The concrete solver name.

    ``auto`` → lsoda if P ≤ :data:`AUTO_SCIPY_MAX_PARAMS` else
    tsit5.  With ``jax_only`` (a caller that needs the jitted solver, e.g.
    :mod:`core.ensemble`): ``auto`` → kvaerno5 if P ≤ :data:`AUTO_STIFF_MAX_PARAMS` else
    tsit5, and a scipy solver is an error.  The constants' comments hold the measurements
    behind the choice.
    """
    if settings.solver == "auto":
        if jax_only:
            return AUTO_STIFF_SOLVER if n_params <= AUTO_STIFF_MAX_PARAMS else "tsit5"
        return AUTO_SCIPY_SOLVER if n_params <= AUTO_SCIPY_MAX_PARAMS else "tsit5"
    if jax_only and settings.solver in SCIPY_SOLVERS:
        raise ValueError(
            f"dynamics.solver: {settings.solver!r} runs on the host (scipy); choose one of "
            f"{('auto', *JAX_SOLVERS)} here"
        )
    return settings.solver


def save_grid(settings: DynamicsSettings) -> np.ndarray:
    """The run's save times (n,), a function of the settings only.

    Flow: t_first · (t_max/t_first)^(j/(n_saves−1)), j = 0…n_saves−1, with
    t_first = min(1e-2, t_max/10).  Discrete methods: the same times rounded to whole
    iterations k ≥ 1 (t = k·lr), duplicates removed.
    """
    t_first = min(1e-2, settings.t_max / 10)
    grid = np.geomspace(t_first, settings.t_max, settings.n_saves)
    if settings.method == "flow":
        grid[-1] = settings.t_max
        return grid
    iters = np.unique(np.maximum(np.round(grid / settings.lr), 1).astype(np.int64))
    return iters * settings.lr


def tauinv_array(settings: DynamicsSettings, n_params: int) -> np.ndarray:
    """τ⁻¹ (P,) float64 of the settings (ones when unset); an error naming the field if its
    length is not P.  A numpy array: building it compiles nothing."""
    if settings.tauinv is None:
        return np.ones(n_params)
    if len(settings.tauinv) != n_params:
        raise ValueError(
            f"dynamics.tauinv: has {len(settings.tauinv)} entries but the network has "
            f"P = {n_params} parameters"
        )
    return np.asarray(settings.tauinv, np.float64)
