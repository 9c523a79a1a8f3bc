"""Training dynamics on an objective, run in short jitted chunks that a UI can stream.

Continuous gradient flow (``method="flow"``), with per-parameter inverse time scales τ⁻¹,

    dθ/dt = −τ⁻¹ ⊙ ∇L(θ),        θ(t0) = θ0,      θ, τ⁻¹ ∈ ℝ^P,

is integrated by a diffrax Runge-Kutta solver stepped by hand (``solver.step`` plus a
``PIDController``), so the solver and controller state survive between chunks:

* explicit adaptive solvers ``tsit5``, ``dopri5``, ``dopri8``;
* stiff (L-stable ESDIRK) solvers ``kvaerno5``, ``kencarp5``.  Their Newton-chord root
  finder needs the Jacobian ∂f/∂θ = −diag(τ⁻¹) ∇²L(θ).  The vector field is a
  :func:`jax.custom_jvp` whose tangent rule is v ↦ −τ⁻¹ ⊙ (H(θ) v) with H =
  ``objective.hessian`` (the exact, structured Hessian): diffrax/lineax build the
  Jacobian with ``jax.linearize`` and materialise it by pushing the identity through the
  linear map, so H is evaluated once per Jacobian (once per step for Kvaerno5/KenCarp5,
  which linearise at the first stage) and never re-derived by nested autodiff of ∇L.

* scipy's ``lsoda`` (ODEPACK's LSODA: Adams ↔ BDF switching by stiffness) and ``bdf``
  (:class:`scipy.integrate.BDF`), stepped one step at a time from the chunk generator with
  jitted callbacks f = −τ⁻¹ ⊙ ∇L and the exact Jacobian ∂f/∂θ = −diag(τ⁻¹) H (one
  Jacobian and one LU factorisation reused over many steps, few f evaluations per step):
  see :func:`_run_scipy`.

``solver="auto"`` picks ``lsoda`` for P ≤ :data:`AUTO_SCIPY_MAX_PARAMS` and ``tsit5``
above (measurements at that constant).

The diffrax solvers clip each step to land exactly on the next save time, so saved states
carry the full accuracy of the solver (no dense interpolation); the scipy solvers step
freely and save by their dense output (the method's own interpolant, of its order).
Save times are a fixed grid that depends only on the settings (see :func:`save_grid`),
log-spaced over [t_first, t_max]: a paused run resumed from (θ(t), t) saves on the same
grid as an uninterrupted one.

Discrete dynamics (``gd``, ``sgd``, ``adam``) use optax on the same time axis,
t = iterations × lr:  θ_{k+1} = θ_k + τ⁻¹ ⊙ u_k where u_k is the optax update for the
full-batch gradient (gd: u = −lr ∇L; adam) or for a minibatch gradient (sgd, ``batch_size``
samples drawn uniformly with replacement, key = fold_in(PRNGKey(seed), k), so runs are
reproducible and resumable).  Iterations run inside ``lax.while_loop``.

For diffrax and optax, all iteration happens in one jitted function per (objective,
settings), compiled once and reused across chunks and across calls (see
:func:`compiled_chunk_functions`).  Each chunk's step budget adapts to the wall clock so
that a chunk takes ~0.2 s and never runs past ``max_seconds``; the budget only decides
where a chunk ends, never the solver's steps (the loop state carries over whole), so the
trajectory on the save grid is the same whatever the machine's load.  Runs that stop
early say why (:class:`StopReason`).
"""

from __future__ import annotations

import enum
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
import scipy.integrate

import core  # noqa: F401  (float64)
from core.networks import forward
from core.objectives import Objective
from core.traces import ExportCached

# The traced flow program is cached on disk (core.traces) under a key that includes this.
_SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()

Array = jax.Array

METHODS = ("flow", "gd", "sgd", "adam")
EXPLICIT_SOLVERS = ("tsit5", "dopri5", "dopri8")
STIFF_SOLVERS = ("kvaerno5", "kencarp5")
SCIPY_SOLVERS = ("lsoda", "bdf")
JAX_SOLVERS = (*EXPLICIT_SOLVERS, *STIFF_SOLVERS)
SOLVERS = ("auto", *JAX_SOLVERS, *SCIPY_SOLVERS)
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
# LSODA wins by 5-50× wherever measured: it reuses one Jacobian and LU over many steps
# (njev/steps ≈ 0.1-0.8) and runs Adams steps (no Jacobian) where the flow is not stiff,
# while an ESDIRK step costs a Hessian, a factorisation and ~18 ∇L evaluations.  Above
# ~10³ parameters a dense P×P Hessian (N·P² work, 8·P² bytes) per Jacobian becomes the
# cost and is unmeasured here, so auto keeps the Jacobian-free Tsit5 there
# (MLPGradientFlow.jl switches to explicit solvers at 1024 too).
AUTO_SCIPY_MAX_PARAMS = 1024
AUTO_SCIPY_SOLVER = "lsoda"
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

# The wall clock of the driver (a module attribute so that tests can slow it down).
_clock = time.perf_counter


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
}


@dataclass(frozen=True)
class DynamicsSettings:
    """How to run the dynamics (the ``[dynamics]`` config table).

    Attributes:
        method: "flow" | "gd" | "sgd" | "adam".
        solver: "auto" | "tsit5" | "dopri5" | "dopri8" | "kvaerno5" | "kencarp5" | "lsoda" |
            "bdf" (flow only; see :func:`resolve_solver`).
        t_max: final time (flow time, or iterations × lr).
        rtol, atol: step-size controller tolerances (and the stiff root finder's).
        max_seconds: wall-clock budget, compilation included; checked after every scipy
            step and bounding every jitted chunk's step budget, so a run stops within a
            step or a chunk of it, with reason "max_seconds".
        max_steps: accepted solver steps / optimizer iterations.
        grad_tol: stop as "converged" once ‖∇L‖∞ < grad_tol at a save time.
        lr: learning rate of gd / sgd / adam.
        batch_size: sgd minibatch size.
        tauinv: per-parameter inverse time scales τ⁻¹ (P,), or None for ones.
        n_saves: number of log-spaced save times over [t_first, t_max].
    """

    method: str = "flow"
    solver: str = "auto"
    t_max: float = 1e6
    rtol: float = 1e-8
    atol: float = 1e-10
    max_seconds: float = 60.0
    max_steps: int = 10**7
    grad_tol: float = 1e-12
    lr: float = 1e-2
    batch_size: int = 32
    tauinv: tuple[float, ...] | None = None
    n_saves: int = 200

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


@dataclass(frozen=True)
class Chunk:
    """A piece of a trajectory.

    Attributes:
        t: (m,) increasing save times.
        theta: (m, P) states.
        loss: (m,) L(θ).
        grad_norm: (m,) ‖∇L(θ)‖∞.
        steps: cumulative accepted solver steps / iterations of this run.
        wall: seconds since the run started.
        done: whether this is the last chunk.
        reason: when done, why (a :class:`StopReason`, equal to its string value).
        message: human-readable detail.
    """

    t: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    steps: int
    wall: float
    done: bool
    reason: str | None
    message: str = ""


def resolve_solver(settings: DynamicsSettings, n_params: int, *, jax_only: bool = False) -> str:
    """The concrete solver name.

    ``auto`` → lsoda if P ≤ :data:`AUTO_SCIPY_MAX_PARAMS` else tsit5.  With ``jax_only``
    (a caller that needs the jitted solver, e.g. :mod:`core.ensemble`): ``auto`` →
    kvaerno5 if P ≤ :data:`AUTO_STIFF_MAX_PARAMS` else tsit5, and a scipy solver is an
    error.  The constants' comments hold the measurements behind the choice.
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


def _save_buffers(time_key: str, time_dtype, size: int, p: int) -> dict:
    """Empty save slots of one chunk: times (``time_key``), states, loss, ‖∇L‖∞, and the
    counters ``n`` (saves written) and ``attempts`` (loop iterations)."""
    return {
        time_key: jnp.zeros(size, time_dtype),
        "y": jnp.zeros((size, p)),
        "loss": jnp.zeros(size),
        "gnorm": jnp.zeros(size),
        "n": jnp.asarray(0, jnp.int64),
        "attempts": jnp.asarray(0, jnp.int64),
    }


def _chunk_cond(n_valid, budget):
    """The chunk loop runs while saves remain, the iteration budget lasts and no stop."""

    def cond(state):
        c, o = state
        return (o["n"] < n_valid) & (o["attempts"] < budget) & (c["status"] == RUNNING)

    return cond


def _record_save(out: dict, saved, time_key: str, time_value, y_new, value_and_grad):
    """Evaluate (L, ‖∇L‖∞) at a save point and write it into slot ``out["n"]`` of the buffers.

    Shared by the flow and the discrete loops.  A save whose loss or gradient is not
    finite is not recorded (``bad_save``): the caller stops with "nonfinite" and keeps the
    previous state.  Returns (out, record, bad_save, gnorm).
    """
    loss, g = jax.lax.cond(
        saved,
        lambda: value_and_grad(y_new),
        lambda: (jnp.zeros((), y_new.dtype), jnp.zeros_like(y_new)),
    )
    gnorm = jnp.max(jnp.abs(g))
    bad_save = saved & ~(jnp.isfinite(loss) & jnp.isfinite(gnorm))
    record = saved & ~bad_save
    n = out["n"]
    out = {
        time_key: out[time_key].at[n].set(jnp.where(record, time_value, out[time_key][n])),
        "y": out["y"].at[n].set(jnp.where(record, y_new, out["y"][n])),
        "loss": out["loss"].at[n].set(jnp.where(record, loss, out["loss"][n])),
        "gnorm": out["gnorm"].at[n].set(jnp.where(record, gnorm, out["gnorm"][n])),
        "n": n + record.astype(jnp.int64),
        "attempts": out["attempts"] + 1,
    }
    return out, record, bad_save, gnorm


# ----------------------------------------------------------------------------- flow


def _make_solver(name: str, rtol: float, atol: float):
    if name in EXPLICIT_SOLVERS:
        cls = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8}[name]
        return cls(), diffrax.PIDController(rtol=rtol, atol=atol)
    # Manual stepping bypasses diffeqsolve, which would otherwise hand the controller's
    # tolerances to the root finder: set them here.  PI control as recommended for stiff.
    if name == "kvaerno5":
        solver: Any = diffrax.Kvaerno5(root_finder=diffrax.VeryChord(rtol=rtol, atol=atol))
    else:
        # diffrax 0.7.2's KenCarp5 with its default VeryChord never meets rtol ≲ 1e-6 in
        # float64 (every step is rejected, even for y' = −y); optimistix' Chord, which
        # re-linearises per stage, converges.
        solver = diffrax.KenCarp5(root_finder=optx.Chord(rtol=rtol, atol=atol))
    return solver, diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4)


def _hoist_constants(fn, example: Array):
    """θ ↦ fn(θ) as ``pure(θ, consts)`` with its closed-over arrays (the data) as arguments.

    Returns (pure, consts, text), ``text`` the printed jaxpr: what ``pure`` computes,
    constants aside (a key for :mod:`core.traces`).

    Why: an objective's callables close over its data set; traced into the flow's jitted
    loop, those arrays would become constants of the XLA program, so every data set (every
    seed, every launch of a sweep) would be a new program to compile (10–30 s for Kvaerno5
    on a busy 2-core CPU).  As arguments, all problems of the same shapes share one
    program, which the persistent compilation cache (:mod:`core.cache`) then reuses.
    """
    closed = jax.make_jaxpr(fn)(example)
    out_tree = jax.tree_util.tree_structure(jax.eval_shape(fn, example))

    def pure(theta: Array, consts: list) -> Any:
        flat = jax.core.eval_jaxpr(closed.jaxpr, consts, theta)
        return jax.tree_util.tree_unflatten(out_tree, flat)

    return pure, [jnp.asarray(c) for c in closed.consts], str(closed.jaxpr)


class BoundConsts:
    """A jitted ``fn(*args, consts)`` with its constants bound: ``self(*args)``.

    ``fn`` and ``consts`` stay reachable so that :mod:`core.ensemble` can ``vmap`` the
    function with the constants unbatched.  ``call`` (optional) is what ``self(*args)``
    runs instead of ``fn``, e.g. ``fn`` served from :class:`core.traces.ExportCached`.
    """

    def __init__(self, fn, consts, call=None) -> None:
        self.fn, self.consts, self.call = fn, consts, call

    def __call__(self, *args):
        return (self.call or self.fn)(*args, self.consts)


def _flow_functions(objective: Objective, solver_name: str, rtol: float, atol: float):
    """(init, advance) jitted functions for the gradient flow, data passed as arguments.

    The diffrax ``args`` are (τ⁻¹, consts) where consts are the objective's arrays
    (see :func:`_hoist_constants`).
    """
    example = jnp.zeros(objective.n_params)
    grad_p, grad_c, grad_text = _hoist_constants(objective.grad, example)
    hess_p, hess_c, hess_text = _hoist_constants(objective.hessian, example)
    vag_p, vag_c, vag_text = _hoist_constants(objective.value_and_grad, example)
    consts0 = (grad_c, hess_c, vag_c)

    @jax.custom_jvp
    def field(tauinv: Array, consts, theta: Array) -> Array:
        return -tauinv * grad_p(theta, consts[0])

    @field.defjvp
    def field_jvp(primals, tangents):
        # The data carry no tangent (zeros): only τ⁻¹ and θ are differentiated.
        tauinv, consts, theta = primals
        dtau, _, dtheta = tangents
        g = grad_p(theta, consts[0])
        return -tauinv * g, -dtau * g - tauinv * (hess_p(theta, consts[1]) @ dtheta)

    def vf(t, y, args):
        return field(args[0], args[1], y)

    solver, controller = _make_solver(solver_name, rtol, atol)
    if solver_name == "kencarp5":
        zero = diffrax.ODETerm(lambda t, y, args: jnp.zeros_like(y))
        terms: Any = diffrax.MultiTerm(zero, diffrax.ODETerm(vf))
    else:
        terms = diffrax.ODETerm(vf)
    error_order = solver.error_order(terms)

    def init(t0, t_first, y0, tauinv, consts):
        args = (tauinv, consts)
        tnext, cstate = controller.init(
            terms, t0, t_first, y0, None, args, solver.func, error_order
        )
        tnext = jnp.minimum(tnext, t_first)
        sstate = solver.init(terms, t0, tnext, y0, args)
        return dict(
            t=jnp.asarray(t0, jnp.float64),
            tnext=jnp.asarray(tnext, jnp.float64),
            y=y0,
            sstate=sstate,
            cstate=cstate,
            made_jump=jnp.asarray(False),
            steps=jnp.asarray(0, jnp.int64),
            streak=jnp.asarray(0, jnp.int64),
            status=jnp.asarray(RUNNING, jnp.int64),
        )

    def advance(carry, save_ts, n_valid, budget, max_steps, grad_tol, tauinv, consts):
        _TRACES["flow"] = _TRACES.get("flow", 0) + 1  # trace-time counter (tests)
        args = (tauinv, consts)

        def value_and_grad(theta):
            return vag_p(theta, consts[2])

        out = _save_buffers("t", jnp.float64, save_ts.shape[0], carry["y"].shape[0])
        cond = _chunk_cond(n_valid, budget)

        def body(state):
            c, o = state
            t, y = c["t"], c["y"]
            t_save = save_ts[o["n"]]
            # Land exactly on the save time; snap when within a hair of it.
            hit = c["tnext"] >= t_save - 1e-12 * jnp.abs(t_save)
            tn = jnp.where(hit, t_save, c["tnext"])
            y1, y_err, _, sstate1, res = solver.step(
                terms, t, tn, y, args, c["sstate"], c["made_jump"]
            )
            y_err = jnp.where(jnp.isnan(y_err), jnp.inf, y_err)
            keep, _, tnext1, made_jump1, cstate1, cres = controller.adapt_step_size(
                t, tn, y, y1, args, y_err, error_order, c["cstate"]
            )
            finite = jnp.all(jnp.isfinite(y1))
            keep = keep & finite & diffrax.is_okay(res)
            dt = tn - t
            # A non-finite candidate: shrink hard (the controller saw an infinite error).
            tnext1 = jnp.where(finite, tnext1, t + 0.2 * dt)
            # After a step shortened to hit a save time, resume the step size the
            # controller wanted before the clip instead of growing from the short one.
            tnext1 = jnp.where(keep & hit, jnp.maximum(tnext1, tn + (c["tnext"] - t)), tnext1)
            t1 = jnp.where(keep, tn, t)
            y_new = jnp.where(keep, y1, y)
            sstate_new = jax.tree_util.tree_map(
                lambda a, b: jnp.where(keep, a, b), sstate1, c["sstate"]
            )
            streak = jnp.where(finite, jnp.where(keep, 0, c["streak"]), c["streak"] + 1)
            steps = c["steps"] + keep.astype(jnp.int64)
            saved = keep & hit
            o, record, bad_save, gnorm = _record_save(o, saved, "t", t1, y_new, value_and_grad)
            status = c["status"]
            status = jnp.where(record & (gnorm < grad_tol), _CONVERGED, status)
            status = jnp.where(steps >= max_steps, _MAX_STEPS, status)
            status = jnp.where(~diffrax.is_okay(cres), _SOLVER_ERROR, status)
            # Step size underflow right after a non-finite trial: the solution runs into
            # a region where ∇L is undefined, so report it as non-finite.
            underflow = jnp.where(streak > 0, _NONFINITE, _SOLVER_ERROR)
            status = jnp.where(tnext1 <= t1, underflow, status)
            status = jnp.where(streak >= NONFINITE_STREAK, _NONFINITE, status)
            status = jnp.where(bad_save, _NONFINITE, status)
            # A state whose loss/gradient is not finite is not kept.
            t1 = jnp.where(bad_save, t, t1)
            y_new = jnp.where(bad_save, y, y_new)
            c = dict(
                t=t1,
                tnext=tnext1,
                y=y_new,
                sstate=sstate_new,
                cstate=cstate1,
                made_jump=jnp.where(keep, made_jump1, c["made_jump"]),
                steps=steps,
                streak=streak,
                status=status,
            )
            return c, o

        carry, out = jax.lax.while_loop(cond, body, (carry, out))
        loss, g = value_and_grad(carry["y"])
        final = dict(t=carry["t"], y=carry["y"], loss=loss, gnorm=jnp.max(jnp.abs(g)))
        return carry, out, final

    advance_jit = jax.jit(advance)
    # What the traced chunk program depends on beyond package versions and argument
    # shapes (core.traces adds those): this module's code, the solver, and the objective.
    key_parts = (
        "core.flow.advance",
        _SOURCE_DIGEST,
        f"{solver_name} rtol={rtol!r} atol={atol!r}",
        grad_text,
        hess_text,
        vag_text,
    )
    return (
        BoundConsts(jax.jit(init), consts0),
        BoundConsts(advance_jit, consts0, ExportCached(advance_jit, key_parts)),
    )


# ------------------------------------------------------------------------- discrete


def _minibatch_grad(objective: Objective, batch_size: int):
    """Unbiased minibatch gradient of the data term: (N/B) Σ_b w_b ∇½‖f(x_b) − y_b‖²."""
    data = objective.data
    if data is None:
        raise ValueError(
            f"dynamics.method: sgd needs a finite data set, but objective {objective.name!r} "
            "has none (infinite-data objective); use gd, adam or flow"
        )
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    n = x.shape[0]
    w = jnp.full(n, 1.0 / n) if data.weights is None else jnp.asarray(data.weights)
    spec = objective.spec
    maxnorm = objective.extras.get("maxnorm") if objective.extras else None

    def batch_loss(theta, idx):
        r = forward(spec, theta, x[idx]) - y[idx]
        value = 0.5 * (n / idx.shape[0]) * jnp.sum(w[idx][:, None] * r * r)
        if maxnorm is not None:
            excess = jnp.maximum(jnp.abs(theta) - maxnorm, 0.0)
            value = value + 0.5 * jnp.sum(excess * excess)
        return value

    grad = jax.grad(batch_loss)

    def minibatch_grad(theta, key):
        idx = jax.random.randint(key, (batch_size,), 0, n)
        return grad(theta, idx)

    return minibatch_grad


def _discrete_functions(objective: Objective, method: str, lr: float, batch_size: int):
    """(init, advance) jitted functions for gd / sgd / adam."""
    optimizer = optax.adam(lr) if method == "adam" else optax.sgd(lr)
    full_grad = objective.grad
    value_and_grad = objective.value_and_grad
    batch_grad = _minibatch_grad(objective, batch_size) if method == "sgd" else None

    def init(k0, y0, seed):
        return dict(
            k=jnp.asarray(k0, jnp.int64),
            y=y0,
            opt=optimizer.init(y0),
            key=jax.random.PRNGKey(seed),
            steps=jnp.asarray(0, jnp.int64),
            status=jnp.asarray(RUNNING, jnp.int64),
        )

    def advance(carry, save_k, n_valid, budget, max_steps, grad_tol, tauinv):
        _TRACES[method] = _TRACES.get(method, 0) + 1
        out = _save_buffers("k", jnp.int64, save_k.shape[0], carry["y"].shape[0])
        cond = _chunk_cond(n_valid, budget)

        def body(state):
            c, o = state
            y = c["y"]
            if batch_grad is None:
                g = full_grad(y)
            else:
                g = batch_grad(y, jax.random.fold_in(c["key"], c["k"]))
            updates, opt1 = optimizer.update(g, c["opt"], y)
            y1 = y + tauinv * updates
            finite = jnp.all(jnp.isfinite(y1))
            k1 = c["k"] + finite.astype(jnp.int64)
            y_new = jnp.where(finite, y1, y)
            opt_new = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), opt1, c["opt"])
            steps = c["steps"] + finite.astype(jnp.int64)
            saved = finite & (k1 == save_k[o["n"]])
            o, record, bad_save, gnorm = _record_save(o, saved, "k", k1, y_new, value_and_grad)
            status = c["status"]
            status = jnp.where(record & (gnorm < grad_tol), _CONVERGED, status)
            status = jnp.where(steps >= max_steps, _MAX_STEPS, status)
            status = jnp.where(~finite | bad_save, _NONFINITE, status)
            keep_new = ~bad_save
            c = dict(
                k=jnp.where(keep_new, k1, c["k"]),
                y=jnp.where(keep_new, y_new, y),
                opt=opt_new,
                key=c["key"],
                steps=steps,
                status=status,
            )
            return c, o

        carry, out = jax.lax.while_loop(cond, body, (carry, out))
        loss, g = value_and_grad(carry["y"])
        final = dict(k=carry["k"], y=carry["y"], loss=loss, gnorm=jnp.max(jnp.abs(g)))
        return carry, out, final

    return jax.jit(init), jax.jit(advance)


# ---------------------------------------------------------------------- compile cache

_TRACES: dict[str, int] = {}
_CACHE: OrderedDict[tuple, tuple[Objective, Any, Any]] = OrderedDict()
_CACHE_SIZE = 16


def compiled_chunk_functions(objective: Objective, settings: DynamicsSettings):
    """Jitted (init, advance) for this objective and the settings that shape the code.

    ``init``/``advance`` are :class:`BoundConsts` (``.fn`` the function of the data
    ``consts``, for :mod:`core.ensemble`'s vmap) for the flow with a diffrax solver
    (``auto`` resolved with ``jax_only``), plain jitted functions for gd / sgd / adam.

    Keyed on the objective's identity (it is kept alive in the cache so its id is not
    reused) and the static settings; times, tolerances on stopping, τ⁻¹ and budgets are
    runtime arguments, so changing them does not recompile.
    """
    if settings.method == "flow":
        solver = resolve_solver(settings, objective.n_params, jax_only=True)
        key = (id(objective), "flow", solver, settings.rtol, settings.atol)
    else:
        batch = settings.batch_size if settings.method == "sgd" else 0
        key = (id(objective), settings.method, settings.lr, batch)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is objective:
        _CACHE.move_to_end(key)
        return hit[1], hit[2]
    if settings.method == "flow":
        init, advance = _flow_functions(objective, solver, settings.rtol, settings.atol)
    else:
        init, advance = _discrete_functions(
            objective, settings.method, settings.lr, settings.batch_size
        )
    _CACHE[key] = (objective, init, advance)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return init, advance


# ------------------------------------------------------------------------- driver


def run_dynamics(
    objective: Objective,
    theta0: Array | np.ndarray,
    settings: DynamicsSettings,
    *,
    t0: float = 0.0,
    seed: int = 0,
) -> Iterator[Chunk]:
    """Run the dynamics from θ(t0) = θ0, yielding :class:`Chunk` s until done.

    Args:
        objective: the loss and its derivatives.
        theta0: (P,) initial parameters.
        settings: see :class:`DynamicsSettings`.
        t0: start time; a fresh run (t0 = 0) yields the initial state as its first row,
            a resumed run (t0 > 0) yields only save times after t0, so concatenated
            chunks of a paused-and-resumed run have strictly increasing t.
        seed: minibatch seed for sgd.

    Stop by not iterating further (or ``.close()``); resume with the last θ and t.
    Save times lie on :func:`save_grid`; the last chunk ends with the final state
    (which is off the grid when stopped early by max_steps / nonfinite / solver_error).
    A non-finite state is never yielded: ``reason="nonfinite"`` and the last row is the
    last finite state.
    """
    p = objective.n_params
    theta0 = jnp.asarray(theta0, jnp.float64)
    if theta0.shape != (p,):
        raise ValueError(f"theta0: expected shape ({p},), got {tuple(theta0.shape)}")
    if not np.all(np.isfinite(np.asarray(theta0))):
        raise ValueError("theta0: contains NaN or Inf")
    if not (isinstance(t0, int | float) and math.isfinite(t0) and t0 >= 0):
        raise ValueError(f"t0: must be a finite number ≥ 0, got {t0!r}")
    tauinv = tauinv_array(settings, p)
    return _run(objective, theta0, settings, float(t0), int(seed), tauinv)


def _run(objective, theta0, settings, t0, seed, tauinv) -> Iterator[Chunk]:
    if settings.method == "flow":
        solver = resolve_solver(settings, objective.n_params)
        if solver in SCIPY_SOLVERS:
            return _run_scipy(objective, theta0, settings, t0, tauinv, solver)
    return _run_jitted(objective, theta0, settings, t0, seed, tauinv)


class _Rows:
    """The rows (t, θ, L, ‖∇L‖∞) collected for the next chunk."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.y: list[np.ndarray] = []
        self.loss: list[float] = []
        self.gnorm: list[float] = []

    def add(self, t, y, loss, gnorm) -> None:
        self.t.append(float(t))
        self.y.append(np.array(y, dtype=np.float64))
        self.loss.append(float(loss))
        self.gnorm.append(float(gnorm))

    def chunk(self, steps, start, done, reason, message) -> Chunk:
        out = _chunk(self.t, self.y, self.loss, self.gnorm, steps, start, done, reason, message)
        self.__init__()
        return out


def _start_rows(objective, theta0, t0) -> _Rows:
    """A fresh run (t0 = 0) starts with its initial state as the first row."""
    rows = _Rows()
    if t0 == 0.0:
        loss, g = objective.value_and_grad(jnp.asarray(theta0))
        rows.add(0.0, theta0, loss, np.max(np.abs(np.asarray(g))))
    return rows


def _next_budget(budget: int, attempts: int, elapsed: float, remaining: float) -> int:
    """Loop iterations for the next jitted chunk: ~CHUNK_SECONDS of work at the cost per
    iteration just measured, at most 4× the last budget, and at most half the remaining
    wall budget (chunks approach max_seconds geometrically, so only a chunk running over
    2× slower than the one before can overrun it); 0 when not one iteration fits.  Only
    where a chunk ends depends on it, never the steps taken.  (The first chunk's time
    includes compilation: its overestimate only makes the next chunk short.)"""
    per = max(elapsed, 1e-6) / max(attempts, 1)
    if remaining < per:
        return 0
    want = min(CHUNK_SECONDS, 0.5 * remaining) / per
    return int(np.clip(min(want, 4.0 * budget), 1, 10**6))


def _run_jitted(objective, theta0, settings, t0, seed, tauinv) -> Iterator[Chunk]:
    """The diffrax / optax runs: the jitted chunk function called until done."""
    start = _clock()
    init, advance = compiled_chunk_functions(objective, settings)
    discrete = settings.method != "flow"
    grid = save_grid(settings)
    if discrete:
        k0 = round(t0 / settings.lr)
        kgrid = np.round(grid / settings.lr).astype(np.int64)
        targets = kgrid[kgrid > k0]
        carry = init(k0, theta0, seed)
    else:
        targets = grid[grid > t0 * (1 + 1e-12)]
        first = float(targets[0]) if len(targets) else t0
        carry = init(t0, first, theta0, tauinv)

    steps, budget, pos, last_yield = 0, FIRST_BUDGET, 0, None
    rows = _start_rows(objective, theta0, t0)
    last_t = t0 if t0 > 0 else -math.inf
    if len(targets) == 0:
        yield rows.chunk(0, start, True, StopReason.T_MAX, "t0 ≥ t_max")
        return

    while True:
        chunk_targets = targets[pos : pos + SAVES_PER_CHUNK]
        n_valid = len(chunk_targets)
        padded = np.full(SAVES_PER_CHUNK, chunk_targets[-1], dtype=chunk_targets.dtype)
        padded[:n_valid] = chunk_targets
        tic = _clock()
        carry, out, final = advance(
            carry,
            jnp.asarray(padded),
            n_valid,
            budget,
            settings.max_steps,
            settings.grad_tol,
            tauinv,
        )
        n = int(out["n"])
        status = int(carry["status"])
        steps = int(carry["steps"])
        now = _clock()
        remaining = settings.max_seconds - (now - start)
        budget = _next_budget(budget, int(out["attempts"]), now - tic, remaining)
        pos += n
        scale_t = settings.lr if discrete else 1.0
        ts = np.asarray(out["k"] if discrete else out["t"])[:n] * scale_t
        ys, ls, gs = np.asarray(out["y"]), np.asarray(out["loss"]), np.asarray(out["gnorm"])
        for i in range(n):
            rows.add(ts[i], ys[i], ls[i], gs[i])

        reason, message = None, ""
        final_t = float(final["k"]) * settings.lr if discrete else float(final["t"])
        if status != RUNNING:
            reason = StopReason.from_code(status)
            message = reason.message(final_t, steps, settings)
        elif pos >= len(targets):
            reason = StopReason.T_MAX
        elif budget == 0:
            reason = StopReason.MAX_SECONDS
            message = reason.message(final_t, steps, settings)
        done = reason is not None
        # A call that saved nothing is not yielded until CHUNK_SECONDS have passed since
        # the last yield, and never as the first call (its time is compilation).
        first_call, last_yield = last_yield is None, now if last_yield is None else last_yield
        if not done and n == 0 and (first_call or now - last_yield < CHUNK_SECONDS):
            continue
        last_yield = now
        # Off-grid rows: the final state of an early stop, or progress inside a long
        # save interval (so a UI sees the run move); only finite, strictly later states.
        need_row = (done or n == 0) and final_t > max([last_t, *rows.t[-1:]])
        if need_row and np.isfinite(float(final["loss"])) and np.isfinite(float(final["gnorm"])):
            rows.add(final_t, final["y"], final["loss"], final["gnorm"])
        if rows.t:
            last_t = rows.t[-1]
        yield rows.chunk(steps, start, done, reason, message)
        if done:
            return


# ------------------------------------------------------------------------ scipy


def _scipy_callbacks(objective: Objective, tauinv: np.ndarray):
    """f(t, θ) = −τ⁻¹ ⊙ ∇L(θ) and its exact Jacobian −diag(τ⁻¹) H(θ), numpy in and out,
    from the objective's jitted ``value_and_grad`` (not ``grad``: the run's save points
    and the app's first frame compile that one already, and the loss costs one more sum)
    and ``hessian``."""
    value_and_grad, hessian = objective.value_and_grad, objective.hessian
    unit = bool(np.all(tauinv == 1.0))

    def fun(t, y):
        g = np.asarray(value_and_grad(y)[1], dtype=np.float64)
        fun.nonfinite = fun.nonfinite or not np.all(np.isfinite(g))
        return -g if unit else -tauinv * g

    fun.nonfinite = False  # set once any evaluation was NaN/Inf (the solver may reject it)

    def jac(t, y):
        h = np.asarray(hessian(y), dtype=np.float64)
        return -h if unit else -tauinv[:, None] * h

    return fun, jac


def _run_scipy(objective, theta0, settings, t0, tauinv, solver_name) -> Iterator[Chunk]:
    """The flow stepped by scipy's LSODA / BDF, one step at a time, on the host.

    The solver object lives in this generator, so chunks, pauses (the caller stops
    iterating) and the wall clock never touch its steps: every step depends only on
    (θ0, t0, settings).  Save times are read off the solver's dense output of the step
    that crosses them; a chunk is yielded after SAVES_PER_CHUNK saves or CHUNK_SECONDS.
    A resumed run (t0 > 0) starts a fresh solver from (θ(t0), t0).
    """
    start = _clock()
    cls = {"lsoda": scipy.integrate.LSODA, "bdf": scipy.integrate.BDF}[solver_name]
    y0 = np.array(theta0, dtype=np.float64)
    fun, jac = _scipy_callbacks(objective, np.asarray(tauinv, dtype=np.float64))
    value_and_grad = objective.value_and_grad
    grid = save_grid(settings)
    targets = grid[grid > t0 * (1 + 1e-12)]
    rows = _start_rows(objective, y0, t0)
    if len(targets) == 0:
        yield rows.chunk(0, start, True, StopReason.T_MAX, "t0 ≥ t_max")
        return
    t_bound = float(targets[-1])

    def new_solver(t, y, max_step=np.inf):
        tols = dict(rtol=settings.rtol, atol=settings.atol)
        return cls(fun, t, y, t_bound, jac=jac, max_step=max_step, **tols)

    solver = new_solver(t0, y0)
    last_t = t0 if t0 > 0 else -math.inf
    steps, pos, saved, restarts = 0, 0, 0, 0
    y_last, t_last, h_last = y0, t0, t_bound - t0  # the last finite state, last step
    chunk_start = _clock()
    while True:
        reason, message = None, ""
        failure = solver.step()
        nonfinite = fun.nonfinite or not np.all(np.isfinite(solver.y))
        if nonfinite and restarts < NONFINITE_STREAK:
            # A trial step ran into a region where ∇L is NaN/Inf (LSODA gives up at
            # once, or accepts a NaN state): restart from the last finite state with steps
            # at most half the last one, so the run stops close to where the flow leaves
            # the domain (after NONFINITE_STREAK restarts: "nonfinite").
            restarts += 1
            fun.nonfinite = False
            solver = new_solver(t_last, y_last, 0.5 * h_last)
            continue
        if solver.status == "failed":
            reason = StopReason.NONFINITE if fun.nonfinite else StopReason.SOLVER_ERROR
            message = f"{reason.message(t_last, steps, settings)} ({solver_name}: {failure})"
        elif not np.all(np.isfinite(solver.y)):
            reason = StopReason.NONFINITE
            message = reason.message(t_last, steps, settings)
        else:
            steps += 1
            if pos < len(targets) and targets[pos] <= solver.t:
                dense = solver.dense_output()
                while pos < len(targets) and targets[pos] <= solver.t:
                    ts = float(targets[pos])
                    y = solver.y if ts == solver.t else dense(ts)
                    loss, g = value_and_grad(y)
                    loss, gnorm = float(loss), float(np.max(np.abs(np.asarray(g))))
                    if not (np.isfinite(y).all() and np.isfinite(loss) and np.isfinite(gnorm)):
                        reason = StopReason.NONFINITE
                        message = reason.message(t_last, steps, settings)
                        break
                    rows.add(ts, y, loss, gnorm)
                    pos += 1
                    saved += 1
                    if gnorm < settings.grad_tol:
                        reason = StopReason.CONVERGED
                        message = reason.message(ts, steps, settings)
                        break
            if reason is None:
                h_last = float(solver.t) - t_last
                y_last, t_last = solver.y, float(solver.t)
                if pos >= len(targets):
                    reason = StopReason.T_MAX
                elif steps >= settings.max_steps:
                    reason = StopReason.MAX_STEPS
                    message = reason.message(t_last, steps, settings)
        now = _clock()
        if reason is None and now - start > settings.max_seconds:
            reason = StopReason.MAX_SECONDS
            message = reason.message(t_last, steps, settings)
        done = reason is not None
        if steps == 1:  # the first step's time is mostly compilation of ∇L and H
            chunk_start = now
        if not (done or saved >= SAVES_PER_CHUNK or now - chunk_start >= CHUNK_SECONDS):
            continue
        # Off-grid rows as for the jitted runs: the final state of an early stop, or
        # progress inside a long save interval; only finite, strictly later states.
        newest = max([last_t, *rows.t[-1:]])
        if (done or saved == 0) and t_last > newest and reason is not StopReason.CONVERGED:
            loss, g = value_and_grad(y_last)
            gnorm = float(np.max(np.abs(np.asarray(g))))
            if np.isfinite(float(loss)) and np.isfinite(gnorm):
                rows.add(t_last, y_last, loss, gnorm)
        if rows.t:
            last_t = rows.t[-1]
        yield rows.chunk(steps, start, done, reason, message)
        if done:
            return
        saved, chunk_start = 0, _clock()


def _chunk(rows_t, rows_y, rows_l, rows_g, steps, start, done, reason, message) -> Chunk:
    p = rows_y[0].shape[0] if rows_y else 0
    return Chunk(
        t=np.asarray(rows_t, dtype=np.float64),
        theta=np.asarray(rows_y, dtype=np.float64).reshape(len(rows_t), p),
        loss=np.asarray(rows_l, dtype=np.float64),
        grad_norm=np.asarray(rows_g, dtype=np.float64),
        steps=int(steps),
        wall=_clock() - start,
        done=bool(done),
        reason=reason,
        message=message,
    )


def run_to_end(
    objective: Objective, theta0, settings: DynamicsSettings, *, t0: float = 0.0, seed: int = 0
) -> Chunk:
    """Run to completion and return one :class:`Chunk` with the whole trajectory."""
    chunks = list(run_dynamics(objective, theta0, settings, t0=t0, seed=seed))
    last = chunks[-1]
    p = objective.n_params
    return Chunk(
        t=np.concatenate([c.t for c in chunks]),
        theta=np.concatenate([c.theta.reshape(-1, p) for c in chunks]),
        loss=np.concatenate([c.loss for c in chunks]),
        grad_norm=np.concatenate([c.grad_norm for c in chunks]),
        steps=last.steps,
        wall=last.wall,
        done=True,
        reason=last.reason,
        message=last.message,
    )
