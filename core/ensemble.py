"""Many initialisations of one problem, integrated together with :func:`jax.vmap`.

S members θ_s(0) = θ0_s follow the same dynamics (``settings``) on the same objective,

    dθ_s/dt = −τ⁻¹ ⊙ ∇L(θ_s),      s = 1…S,

each with its own adaptive step size, solver and controller state: the flow's jitted
chunk function of :mod:`core.flow` (one member) is mapped over a leading member axis.
Under ``vmap`` the inner
``lax.while_loop`` runs until every member has reached the chunk's last save time
(members that are done idle, masked), and the per-step operations of S members become
one batched operation.

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
        # The objective's data (``consts``) are shared by all members: not mapped.
        vinit = jax.jit(jax.vmap(init.fn, in_axes=(None, None, 0, None, None)))
        vadvance = jax.jit(
            jax.vmap(advance.fn, in_axes=(0, None, None, None, None, None, None, None))
        )
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
    error) or after ``settings.max_seconds`` (checked between chunks of save times;
    members still running then get ``reason="max_seconds"``).
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
    ts = [np.zeros(1)]
    ys = [np.asarray(thetas)[:, None, :]]
    ls = [np.asarray(loss0)[:, None]]
    gs = [np.max(np.abs(np.asarray(g0)), axis=1)[:, None]]
    per = flow.SAVES_PER_CHUNK
    pos = 0
    timed_out = False
    while pos < len(grid):
        targets = grid[pos : pos + per]
        n_valid = len(targets)
        padded = np.full(per, targets[-1])
        padded[:n_valid] = targets
        # Unbounded attempt budget: every running member reaches the chunk's last save.
        carry, out, final = vadvance(
            carry,
            jnp.asarray(padded),
            n_valid,
            settings.max_steps + 10**6,
            settings.max_steps,
            settings.grad_tol,
            tauinv,
        )
        n = np.asarray(out["n"])  # (S,) saves recorded per member
        rec = np.arange(n_valid)[None, :] < n[:, None]  # (S, n_valid)
        nan = np.where(rec, 0.0, np.nan)
        ts.append(targets)
        ys.append(np.asarray(out["y"])[:, :n_valid] + nan[..., None])
        ls.append(np.asarray(out["loss"])[:, :n_valid] + nan)
        gs.append(np.asarray(out["gnorm"])[:, :n_valid] + nan)
        pos += n_valid
        if bool(np.all(np.asarray(carry["status"]) != RUNNING)):
            break
        if time.perf_counter() - start > settings.max_seconds:
            timed_out = True
            break

    status = np.asarray(carry["status"])
    reasons = []
    for code in status:
        reason = StopReason.from_code(int(code))
        if reason is None:
            reason = StopReason.MAX_SECONDS if timed_out else StopReason.T_MAX
        reasons.append(reason)
    t = np.concatenate(ts)
    last = int(np.max(np.nonzero(np.any(np.isfinite(np.concatenate(ls, axis=1)), axis=0))[0]))
    return EnsembleResult(
        t=t[: last + 1],
        theta=np.concatenate(ys, axis=1)[:, : last + 1],
        loss=np.concatenate(ls, axis=1)[:, : last + 1],
        grad_norm=np.concatenate(gs, axis=1)[:, : last + 1],
        final_theta=np.asarray(final["y"]),
        final_t=np.asarray(final["t"]),
        steps=np.asarray(carry["steps"]),
        reason=tuple(reasons),
        wall=time.perf_counter() - start,
    )
