"""The chunk driver: :func:`run_dynamics` yields :class:`Chunk` s from the jitted loops or
the host-stepped scipy solvers, with the wall-clock budget (see :mod:`core.flow`)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate

import core  # noqa: F401  (float64)
from core.flow.continuous import _flow_functions, _scipy_callbacks
from core.flow.discrete import _discrete_functions
from core.flow.settings import (
    CHUNK_SECONDS,
    FIRST_BUDGET,
    NONFINITE_STREAK,
    RUNNING,
    SAVES_PER_CHUNK,
    SCIPY_SOLVERS,
    DynamicsSettings,
    StopReason,
    resolve_solver,
    save_grid,
    tauinv_array,
)
from core.objectives import Objective

Array = jax.Array


def _clock() -> float:
    """The driver's wall clock (looked up at each call: tests slow it down by replacing
    this function or ``time.perf_counter``)."""
    return time.perf_counter()


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


# ---------------------------------------------------------------------- compile cache

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
    retract = objective.extras.get("retract")
    if retract is not None:  # constrained parameters (core.manifold): start on the manifold
        theta0 = retract(theta0)
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
    # Constrained parameters: saved states are retracted onto the manifold (the solver's
    # own state is not: its ‖w_i‖ drifts by the local errors only, and L̃ = L∘N is
    # scale-invariant, so the drift only rescales that neuron's time by 1/‖w_i‖²).
    retract = objective.extras.get("retract")
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
                    y = y if retract is None else np.asarray(retract(jnp.asarray(y)))
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
            if retract is not None:
                y_last = np.asarray(retract(jnp.asarray(y_last)))
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
