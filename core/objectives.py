"""Finite-data mean-squared-error objective with gradient and structured Hessian.

For a data set {(x_n, y_n)}_{n=1..N}, x_n ∈ ℝ^d, y_n ∈ ℝ^{k_L}, and residuals
r_n = f(x_n; θ) − y_n,

    L(θ) = 1/(2N) Σ_n ‖r_n‖²,       ∇L = (1/N) Jᵀ r,
    ∇²L = (1/N) (JᵀJ + Σ_n Σ_o r_{no} ∇²f_o(x_n; θ)),

with J ∈ ℝ^{(N·k_L) × P} the Jacobian of the stacked outputs.  An optional
weight-norm barrier (MLPGradientFlow's ``maxnorm``) adds
B(θ) = ½ Σ_p relu(|θ_p| − maxnorm)²... see :func:`barrier`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

from core.networks import NetworkSpec, forward

Array = jax.Array


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (N, d), targets ``y`` (N, k_L) and optional sample weights (N,), float64.

    Without weights every sample weighs 1/N; with weights (e.g. Gauss-Hermite
    quadrature nodes) the loss is ½ Σ_n w_n ‖r_n‖² and the weights should sum to 1.
    """

    x: Array
    y: Array
    weights: Array | None = None

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Objective:
    """A scalar loss L(θ) on flat θ ∈ ℝ^P with jitted derivatives.

    Attributes:
        spec: the student network the parameters belong to.
        loss: θ (P,) → L ().
        grad: θ (P,) → ∇L (P,).
        value_and_grad: θ → (L, ∇L).
        hessian: θ (P,) → ∇²L (P, P), symmetric.
        data: the finite data set, or ``None`` for an infinite-data objective.
        name: a short human-readable description.
    """

    spec: NetworkSpec
    loss: Callable[[Array], Array]
    grad: Callable[[Array], Array]
    value_and_grad: Callable[[Array], tuple[Array, Array]]
    hessian: Callable[[Array], Array]
    data: Dataset | None = None
    name: str = "mse"
    extras: dict = field(default_factory=dict)

    @property
    def n_params(self) -> int:
        return self.spec.n_params


def barrier(theta: Array, maxnorm: float | None) -> Array:
    """Weight-norm barrier B(θ) = ½ Σ_p max(0, |θ_p| − maxnorm)²  (0 if ``maxnorm`` is None).

    Keeps runaway weights (channels to infinity) from overflowing, as MLPGradientFlow's
    ``maxnorm`` option does; it is zero and flat inside the box |θ_p| ≤ maxnorm.
    """
    if maxnorm is None:
        return jnp.zeros((), theta.dtype)
    excess = jnp.maximum(jnp.abs(theta) - maxnorm, 0.0)
    return 0.5 * jnp.sum(excess * excess)


def mse_objective(spec: NetworkSpec, data: Dataset, maxnorm: float | None = None) -> Objective:
    """The finite-data MSE objective L(θ) = 1/(2N) Σ_n ‖f(x_n; θ) − y_n‖² (+ barrier)."""
    x = jnp.asarray(data.x, jnp.float64)
    y = jnp.asarray(data.y, jnp.float64)
    n = x.shape[0]
    w = jnp.full(n, 1.0 / n) if data.weights is None else jnp.asarray(data.weights, jnp.float64)

    def loss(theta: Array) -> Array:
        r = forward(spec, theta, x) - y
        return 0.5 * jnp.sum(w[:, None] * r * r) + barrier(theta, maxnorm)

    loss_j = jax.jit(loss)
    vg = jax.jit(jax.value_and_grad(loss))
    grad = jax.jit(jax.grad(loss))
    hess = jax.jit(jax.hessian(loss))
    return Objective(spec, loss_j, grad, vg, hess, Dataset(x, y, data.weights), "mse")
