"""Discrete dynamics (gd, sgd, adam) with optax in a jitted chunk loop (see :mod:`core.flow`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import core  # noqa: F401  (float64)
from core.flow.loops import _chunk_cond, _record_save, _save_buffers
from core.flow.settings import _CONVERGED, _MAX_STEPS, _NONFINITE, RUNNING
from core.objectives import Objective


def _batch_gradient(objective: Objective):
    """(θ, idx (B,) int) → ∇L_b (P,), L_b the objective's own loss on the samples ``idx``
    weighted (N/B) w_n (``objective.extras["batch_grad"]``: mse, cross-entropy, correlation,
    their barrier and gauge terms once; a constrained objective's is Riemannian at N θ, 0 on
    fixed coordinates), so the mean over uniform idx is ∇L; idx = 0..N−1 gives ∇L itself."""
    data = objective.data
    if data is None:
        raise ValueError(
            f"dynamics.method: sgd needs a finite data set, but objective {objective.name!r} "
            "has none (infinite-data objective); use gd, adam or flow"
        )
    batch_grad = objective.extras.get("batch_grad")
    if batch_grad is None:
        raise ValueError(
            f"dynamics.method: sgd needs a minibatch gradient, but objective {objective.name!r} "
            "provides none (extras['batch_grad']); use gd, adam or flow"
        )
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    n = x.shape[0]
    w = jnp.full(n, 1.0 / n) if data.weights is None else jnp.asarray(data.weights)

    def gradient(theta, idx):
        return batch_grad(theta, x[idx], y[idx], (n / idx.shape[0]) * w[idx])

    return gradient


def _minibatch_grad(objective: Objective, batch_size: int):
    """(θ, key) → ∇L_b for ``batch_size`` indices drawn uniformly with replacement
    (:func:`_batch_gradient`): an unbiased estimate of ∇L."""
    gradient = _batch_gradient(objective)
    n = objective.data.x.shape[0]

    def minibatch_grad(theta, key):
        return gradient(theta, jax.random.randint(key, (batch_size,), 0, n))

    return minibatch_grad


def _discrete_functions(objective: Objective, method: str, lr: float, batch_size: int):
    """(init, advance) jitted functions for gd / sgd / adam."""
    optimizer = optax.adam(lr) if method == "adam" else optax.sgd(lr)
    full_grad = objective.grad
    value_and_grad = objective.value_and_grad
    batch_grad = _minibatch_grad(objective, batch_size) if method == "sgd" else None
    # Constrained parameters (core.manifold): projected steps, retracted after each one.
    retract = objective.extras.get("retract")

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
            if retract is not None:
                y1 = retract(y1)
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
