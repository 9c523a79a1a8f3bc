"""Many initialisations of one problem, integrated together with :func:`jax.vmap`.

S members θ_s(0) = θ0_s follow the same dynamics (``settings``) on the same objective,

    dθ_s/dt = −τ⁻¹ ⊙ ∇L(θ_s),      s = 1…S,

each with its own adaptive step size, solver and controller state: the flow's jitted
chunk function of :mod:`core.flow` (one member) is mapped over a leading member axis,
each member with its own next save times.  Under ``vmap`` the inner ``lax.while_loop``
runs until every member has reached its chunk's last save time or the chunk's iteration
budget (set from the wall clock) is spent (members that are done idle, masked), and the
per-step operations of S members become one batched operation.

What that buys depends on the hardware: on a GPU, S members cost little more than one.
On a CPU a batched ∇L costs as much per member as a single one (the work is exp/log1p
per hidden unit), so batching only shares the per-step bookkeeping: measured on 2 shared
cores (bench/dynamics.py --part c, d=2, k=5, 64 members vs warm single runs), Tsit5
0.9× at N=100 and 0.6× at N=1000, Kvaerno5 0.6×.  Under ``vmap`` the loop runs the
slowest member's number of steps, the save-point evaluation (a ``lax.cond``) becomes a
select evaluated every step, and the implicit solver's Newton iterations run until the
slowest member has converged.  On a CPU, single runs (or a sweep, :mod:`core.sweep`, one
process per core) are as fast; the ensemble is for accelerators.

Saved states lie on the same :func:`core.flow.save_grid` as a single run, and each
member's trajectory equals its single run up to the floating-point reassociation of
batched kernels (the tests compare them to 1e-8).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import core  # noqa: F401  (float64)
from core import flow
from core.flow import (
    RUNNING,
    BoundConsts,
    DynamicsSettings,
    StopReason,
    compiled_chunk_functions,
    save_grid,
    tauinv_array,
)
from core.objectives import Objective


@dataclass(frozen=True)
class EnsembleResult:
    """Trajectories of S members on a common time grid.

    Attributes:
        t: (m,) save times (0 first, then :func:`core.flow.save_grid` up to where the
            run stopped).
        theta: (S, m, P) states; NaN after a member stopped (see ``reason``).
        loss: (S, m) L(θ); NaN after a member stopped.
        grad_norm: (S, m) ‖∇L‖∞; NaN after a member stopped.
        final_theta: (S, P) each member's last state.
        final_t: (S,) each member's last time.
        steps: (S,) accepted solver steps per member.
        reason: per member, a :class:`core.flow.StopReason` ("t_max" | "converged" |
            "max_seconds" | "max_steps" | "nonfinite" | "solver_error").
        wall: seconds, compilation included.
    """

    t: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    final_theta: np.ndarray
    final_t: np.ndarray
    steps: np.ndarray
    reason: tuple[StopReason, ...]
    wall: float


_VMAPPED: dict[tuple, tuple] = {}


def _vmapped(objective: Objective, settings: DynamicsSettings):
    """jit(vmap(init)), jit(vmap(advance)) over the member axis, cached with core.flow's."""
    init, advance = compiled_chunk_functions(objective, settings)
    key = (id(init), id(advance))
    hit = _VMAPPED.get(key)
    if hit is None:
        # The objective's data (``consts``) are shared by all members: not mapped.  Each
        # member has its own next save times and count of them (it may be ahead).
        vinit = jax.jit(jax.vmap(init.fn, in_axes=(None, None, 0, None, None)))
        vadvance = jax.jit(jax.vmap(advance.fn, in_axes=(0, 0, 0, None, None, None, None, None)))
        hit = _VMAPPED[key] = (
            BoundConsts(vinit, init.consts),
            BoundConsts(vadvance, advance.consts),
            init,
            advance,
        )
        if len(_VMAPPED) > 16:
            _VMAPPED.pop(next(iter(_VMAPPED)))
    return hit[0], hit[1]


def run_ensemble(objective: Objective, thetas, settings: DynamicsSettings) -> EnsembleResult:
    """Integrate the gradient flow from each row of ``thetas`` (S, P), all at once.

    Only ``method="flow"`` with a jitted (diffrax) solver is supported (the optax methods
    are cheap to run one by one); ``solver="auto"`` resolves as
    ``core.flow.resolve_solver(..., jax_only=True)`` does.
    Stops when every member has stopped (t_max, converged, max_steps, non-finite, solver
    error) or after ``settings.max_seconds``: each chunk's loop budget follows the
    measured cost per iteration (~CHUNK_SECONDS, at most half the remaining budget), so
    the run stops within about a chunk of it, and members still running then get
    ``reason="max_seconds"``.  Each member keeps its own position on the save grid; the
    budget decides only where chunks end, never a member's steps.
    """
    if settings.method != "flow":
        raise ValueError(
            f"dynamics.method: run_ensemble integrates the flow only, got {settings.method!r}"
        )
    p = objective.n_params
    thetas = jnp.asarray(thetas, jnp.float64)
    if thetas.ndim != 2 or thetas.shape[1] != p or thetas.shape[0] < 1:
        raise ValueError(f"thetas: expected shape (S, {p}) with S ≥ 1, got {tuple(thetas.shape)}")
    if not bool(jnp.all(jnp.isfinite(thetas))):
        raise ValueError("thetas: contains NaN or Inf")
    start = time.perf_counter()
    flow.resolve_solver(settings, p, jax_only=True)  # a scipy solver: error naming the field
    tauinv = tauinv_array(settings, p)
    vinit, vadvance = _vmapped(objective, settings)
    grid = save_grid(settings)
    carry = vinit(0.0, float(grid[0]), thetas, tauinv)

    loss0, g0 = jax.vmap(objective.value_and_grad)(thetas)
    n_members, n_grid, per = thetas.shape[0], len(grid), flow.SAVES_PER_CHUNK
    # Rows 0 (the start) and 1 + j (save time grid[j]); NaN where a member has no state.
    ys = np.full((n_members, 1 + n_grid, p), np.nan)
    ls = np.full((n_members, 1 + n_grid), np.nan)
    gs = np.full((n_members, 1 + n_grid), np.nan)
    ys[:, 0], ls[:, 0] = np.asarray(thetas), np.asarray(loss0)
    gs[:, 0] = np.max(np.abs(np.asarray(g0)), axis=1)
    pos = np.zeros(n_members, np.int64)  # saves recorded per member
    budget = flow.FIRST_BUDGET
    while True:
        status = np.asarray(carry["status"])
        active = (status == RUNNING) & (pos < n_grid)
        if not active.any():
            break
        padded = np.empty((n_members, per))
        n_valid = np.zeros(n_members, np.int64)
        for s in range(n_members):
            chunk = grid[pos[s] : pos[s] + per] if active[s] else grid[-1:]
            padded[s] = chunk[-1]
            padded[s, : len(chunk)] = chunk
            n_valid[s] = len(chunk) if active[s] else 0
        tic = time.perf_counter()
        carry, out, final = vadvance(
            carry,
            jnp.asarray(padded),
            jnp.asarray(n_valid),
            budget,
            settings.max_steps,
            settings.grad_tol,
            tauinv,
        )
        n = np.asarray(out["n"])  # (S,) saves recorded per member
        y, loss, gnorm = np.asarray(out["y"]), np.asarray(out["loss"]), np.asarray(out["gnorm"])
        for s in np.nonzero(n)[0]:
            rows = slice(1 + pos[s], 1 + pos[s] + n[s])
            ys[s, rows], ls[s, rows], gs[s, rows] = y[s, : n[s]], loss[s, : n[s]], gnorm[s, : n[s]]
        pos += n
        now = time.perf_counter()
        remaining = settings.max_seconds - (now - start)
        cost = max(now - tic, 1e-6) / max(int(np.max(np.asarray(out["attempts"]))), 1)
        if remaining < cost:  # not one more iteration fits: "max_seconds" for the running
            break
        want = min(flow.CHUNK_SECONDS, 0.5 * remaining) / cost
        budget = int(np.clip(min(want, 4.0 * budget), 1, 10**6))

    status = np.asarray(carry["status"])
    reasons = []
    for code, done in zip(status, pos >= n_grid, strict=True):
        reason = StopReason.from_code(int(code))
        if reason is None:
            reason = StopReason.T_MAX if done else StopReason.MAX_SECONDS
        reasons.append(reason)
    t = np.concatenate([np.zeros(1), grid])
    last = int(np.max(pos))
    return EnsembleResult(
        t=t[: last + 1],
        theta=ys[:, : last + 1],
        loss=ls[:, : last + 1],
        grad_norm=gs[:, : last + 1],
        final_theta=np.asarray(final["y"]),
        final_t=np.asarray(final["t"]),
        steps=np.asarray(carry["steps"]),
        reason=tuple(reasons),
        wall=time.perf_counter() - start,
    )
