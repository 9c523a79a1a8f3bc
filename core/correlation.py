"""The correlation loss on finite data: exact gradient and Hessian.

For a data set {(x_n, y_n, w_n)}_{n=1..N}, targets y_n ∈ ℝ^K (K = ``output_dim``), weights
w_n (1/N by default) and B the weight-norm barrier of :mod:`core.objectives`,

    L(θ)  = −Σ_n w_n f(x_n; θ)·y_n + B(θ)          (w_n = 1/N: −(1/N) Σ_n f(x_n)·y_n),
    ∇L    = −Σ_n w_n J_nᵀ y_n + ∇B,
    ∇²L   = −Σ_n w_n Σ_o y_no ∇²f_o(x_n; θ) + ∇²B,

with J_n = ∂f(x_n)/∂θ ∈ ℝ^{K×P}.  L is linear in the outputs f, so there is no
Gauss-Newton term: the Hessian is exactly the "second-order term" of the MSE objective with
the residual cotangent w_n r_n replaced by −w_n y_n — the same backpropagation, the same
closed-form one-hidden-layer blocks (forward-over-reverse for deeper nets) and the same
sample blocks (:mod:`core.objectives`).  A linear model (no hidden layer) has ∇²L = ∇²B.

This is the finite-sample estimate of the multi-index paper's L = −E[f f*] whose exact
Gaussian expectation is :func:`core.gaussian.gaussian_objective` (``loss="correlation"``);
with y_n = f*(x_n) it is unbiased, and L, ∇L converge to the infinite-data ones like 1/√N
(``tests/test_multi_index.py``).  The loss is unbounded below in the weights' scale, so it
is meant for constrained students (``[student] unit_norm``, fixed output weights) or with
a ``maxnorm`` barrier.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from core.networks import NetworkSpec, forward
from core.objectives import (
    Dataset,
    Objective,
    _backprop,
    _forward_cache,
    _second_order_autodiff,
    _second_order_one_hidden,
    _sum_over_blocks,
    _symmetrize_with_barrier,
    _validate,
    barrier,
    barrier_grad,
    objective_from,
)

Array = jax.Array

__all__ = ["correlation_objective"]


def _loss(theta, x, y, w, *, spec, maxnorm):
    return -jnp.sum(w[:, None] * y * forward(spec, theta, x)) + barrier(theta, maxnorm)


def _value_and_grad(theta, x, y, w, *, spec, maxnorm):
    p, hs, dsig, out = _forward_cache(spec, theta, x)
    e = -w[:, None] * y  # ∂L/∂f_n
    value = jnp.sum(e * out) + barrier(theta, maxnorm)
    return value, _backprop(spec, p, hs, dsig, e) + barrier_grad(theta, maxnorm)


def _grad(theta, x, y, w, *, spec, maxnorm):
    return _value_and_grad(theta, x, y, w, spec=spec, maxnorm=maxnorm)[1]


def _hessian_block(spec: NetworkSpec, theta, x, y, w, *, structured: bool) -> Array:
    """−Σ_n w_n Σ_o y_no ∇²f_o(x_n; θ) over one block of samples, (P, P)."""
    e = -w[:, None] * y
    if spec.n_layers == 1:
        return jnp.zeros((spec.n_params, spec.n_params), theta.dtype)  # f linear in θ
    if structured and spec.n_layers == 2:
        return _second_order_one_hidden(spec, theta, x, e)
    return _second_order_autodiff(spec, theta, x, e)


def _hessian(theta, x, y, w, *, spec, maxnorm, structured=True):
    block = functools.partial(_hessian_block, spec, structured=structured)
    return _symmetrize_with_barrier(_sum_over_blocks(block, spec, theta, x, y, w), theta, maxnorm)


def correlation_objective(
    spec: NetworkSpec, data: Dataset, maxnorm: float | None = None
) -> Objective:
    """L(θ) = −Σ_n w_n f(x_n; θ)·y_n (+ B(θ)), see the module doc.

    ``data.x`` (N, d), ``data.y`` (N, K) (or (N,) when K = 1), ``data.weights`` (N,) or None
    (= 1/N each).  All callables take θ (P,) and are jit-compiled with the data as arguments;
    memory O(P² + min(N, block)·K·P) as for :func:`core.objectives.mse_objective`.
    """
    maxnorm = None if maxnorm is None else float(maxnorm)
    x, y, w = _validate(spec, data, maxnorm)

    return objective_from(
        spec,
        (_loss, _grad, _value_and_grad, _hessian),
        (x, y, w),
        data=Dataset(x, y, data.weights),
        name="correlation",
        extras={"maxnorm": maxnorm},
        spec=spec,
        maxnorm=maxnorm,
    )
