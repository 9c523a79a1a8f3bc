"""The gradient flow's solvers: diffrax Runge-Kutta solvers in a jitted chunk loop, and
the host callbacks with which scipy's LSODA / BDF step it (see :mod:`core.flow`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

import core  # noqa: F401  (float64)
from core.flow.loops import _chunk_cond, _record_save, _save_buffers
from core.flow.settings import (
    _CONVERGED,
    _MAX_STEPS,
    _NONFINITE,
    _SOLVER_ERROR,
    EXPLICIT_SOLVERS,
    NONFINITE_STREAK,
    RUNNING,
)
from core.objectives import Objective
from core.traces import ExportCached

# The traced flow program is cached on disk (core.traces) under a key that includes this:
# the source of every module of the package.
_SOURCE_DIGEST = hashlib.sha256(
    b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))
).hexdigest()

Array = jax.Array


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
    # Constrained parameters (core.manifold): the state is retracted onto the manifold at
    # every save time (deterministic: saves are on the fixed grid), and at the end.
    retract = objective.extras.get("retract")
    constraint = objective.extras.get("constraint")

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
            if retract is not None:
                y_new = jnp.where(saved, retract(y_new), y_new)
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
        y_final = carry["y"] if retract is None else retract(carry["y"])
        loss, g = value_and_grad(y_final)
        final = dict(t=carry["t"], y=y_final, loss=loss, gnorm=jnp.max(jnp.abs(g)))
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
        "" if constraint is None else f"constraint {constraint.digest()}",
    )
    return (
        BoundConsts(jax.jit(init), consts0),
        BoundConsts(advance_jit, consts0, ExportCached(advance_jit, key_parts)),
    )


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
