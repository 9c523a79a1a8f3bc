"""Softmax outputs with the cross-entropy loss: exact gradient and structured Hessian.

The network of :mod:`core.networks` gives logits f(x; θ) ∈ ℝ^K (linear output layer);
``student.output = "softmax"`` reads them as class probabilities p = softmax(f).  For a
data set {(x_n, T_n, w_n)}, targets T_n ∈ ℝ^K (the one-hot vector of the class label c_n;
any non-negative rows are allowed), weights w_n (1/N by default), s_n = Σ_o T_no (= 1 for
labels) and B the weight-norm barrier of :mod:`core.objectives`,

    L(θ)  = −Σ_n w_n Σ_o T_no log p_no + B(θ)         (labels: −(1/N) Σ_n log p_{n,c_n}),
    ∇L    = Σ_n J_nᵀ e_n + ∇B,                          e_n = w_n (s_n p_n − T_n),
    ∇²L   = Σ_n w_n s_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n  +  Σ_n Σ_o e_no ∇²f_o(x_n; θ)  + ∇²B,
            └──────── generalised Gauss-Newton ──────┘   └──── second-order term ────┘

with J_n = ∂f(x_n)/∂θ ∈ ℝ^{K×P}.  (∂/∂f of log Σ_o exp f_o is p, of p it is diag p − ppᵀ.)

The pieces are those of the MSE objective with the residual cotangent w_n r_n replaced by
e_n: the same backpropagation, closed-form Jacobian, closed-form one-hidden-layer
second-order blocks or forward-over-reverse for deeper nets, and the same sample blocks
(:mod:`core.objectives`); the generalised Gauss-Newton term is
(w s p ⊙ J)ᵀ J − (w s ⊙ Jᵀp)ᵀ (Jᵀp), two matrix products per block.  log p is
f − logsumexp(f), stable for any logits.

Infinite data has no closed form for the softmax and is refused (:mod:`core.config`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from core.networks import NetworkSpec, forward
from core.objectives import (
    Dataset,
    Objective,
    _backprop,
    _forward_cache,
    _jacobian,
    _second_order_autodiff,
    _second_order_one_hidden,
    _sum_over_blocks,
    _symmetrize_with_barrier,
    barrier,
    barrier_grad,
)

Array = jax.Array

__all__ = [
    "accuracy",
    "class_labels",
    "crossentropy_objective",
    "label_dataset",
    "one_hot",
    "softmax",
]


def softmax(logits: Array) -> Array:
    """p = softmax(f) along the last axis: (…, K) → (…, K)."""
    return jax.nn.softmax(logits, axis=-1)


def class_labels(outputs: Array) -> np.ndarray:
    """c_n = argmax_o outputs_no (N,) int: a network teacher's outputs as class labels."""
    return np.asarray(jnp.argmax(jnp.asarray(outputs), axis=-1))


def one_hot(labels: Array, n_classes: int) -> Array:
    """T (N, K) float64 with T_{n, c_n} = 1."""
    return jax.nn.one_hot(jnp.asarray(labels), n_classes, dtype=jnp.float64)


def label_dataset(data: Dataset) -> Dataset:
    """The same inputs with targets one_hot(argmax y_n): a teacher's outputs made class labels."""
    y = jnp.asarray(data.y)
    return Dataset(data.x, one_hot(class_labels(y), y.shape[-1]), data.weights)


def accuracy(logits: Array, targets: Array, weights: Array | None = None) -> float:
    """Σ_n w_n [argmax_o f_no = argmax_o T_no] / Σ_n w_n (by default the fraction of the N
    samples classified right): the training accuracy."""
    hit = np.asarray(jnp.argmax(logits, axis=-1) == jnp.argmax(targets, axis=-1))
    if weights is None:
        return int(np.sum(hit)) / hit.shape[0]
    w = np.asarray(weights, np.float64)
    return float(np.sum(w * hit) / np.sum(w))


# ------------------------------------------------------------------------ the pieces


def _log_softmax(out: Array) -> Array:
    return out - jax.scipy.special.logsumexp(out, axis=-1, keepdims=True)


def _cotangent(out: Array, t: Array, w: Array) -> Array:
    """e (N, K) = w_n (s_n p_n − T_n), the gradient of the data term in the logits."""
    p = softmax(out)
    return w[:, None] * (jnp.sum(t, axis=-1, keepdims=True) * p - t)


def _loss(theta, x, t, w, *, spec, maxnorm):
    value = -jnp.sum(w[:, None] * t * _log_softmax(forward(spec, theta, x)))
    return value + barrier(theta, maxnorm)


def _value_and_grad(theta, x, t, w, *, spec, maxnorm):
    p, hs, dsig, out = _forward_cache(spec, theta, x)
    value = -jnp.sum(w[:, None] * t * _log_softmax(out)) + barrier(theta, maxnorm)
    e = _cotangent(out, t, w)
    return value, _backprop(spec, p, hs, dsig, e) + barrier_grad(theta, maxnorm)


def _grad(theta, x, t, w, *, spec, maxnorm):
    return _value_and_grad(theta, x, t, w, spec=spec, maxnorm=maxnorm)[1]


def _ggn(jac: Array, out: Array, t: Array, w: Array) -> Array:
    """Σ_n w_n s_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n (P, P) for jac (N, K, P)."""
    n, k, P = jac.shape
    p = softmax(out)
    ws = w * jnp.sum(t, axis=-1)  # (N,)
    weighted = (jac * (ws[:, None] * p)[:, :, None]).reshape(n * k, P)
    jp = jnp.einsum("nk,nkp->np", p, jac)  # J_nᵀ p_n
    return weighted.T @ jac.reshape(n * k, P) - (jp * ws[:, None]).T @ jp


def _hessian_block(spec: NetworkSpec, theta, x, t, w, *, structured: bool) -> Array:
    """Data part of ∇²L from one block of samples: GGN + second-order term, (P, P)."""
    p, hs, dsig, out = _forward_cache(spec, theta, x)
    jac = _jacobian(spec, p, hs, dsig)  # (N, K, P)
    h = _ggn(jac, out, t, w)
    if spec.n_layers == 1:
        return h  # logits linear in θ
    e = _cotangent(out, t, w)
    if structured and spec.n_layers == 2:
        return h + _second_order_one_hidden(spec, theta, x, e)
    return h + _second_order_autodiff(spec, theta, x, e)


def _ggn_block(spec: NetworkSpec, theta, x, t, w) -> Array:
    p, hs, dsig, out = _forward_cache(spec, theta, x)
    return _ggn(_jacobian(spec, p, hs, dsig), out, t, w)


def _hessian(theta, x, t, w, *, spec, maxnorm, structured=True):
    block = functools.partial(_hessian_block, spec, structured=structured)
    return _symmetrize_with_barrier(_sum_over_blocks(block, spec, theta, x, t, w), theta, maxnorm)


def _gauss_newton(theta, x, t, w, *, spec, maxnorm):
    block = functools.partial(_ggn_block, spec)
    return _symmetrize_with_barrier(_sum_over_blocks(block, spec, theta, x, t, w), theta, maxnorm)


def _targets(spec: NetworkSpec, y, n: int) -> Array:
    """(N, K) targets from integer labels (N,) or target rows (N, K); ``ValueError`` naming y."""
    k = spec.output_dim
    y_np = np.asarray(y)
    if y_np.ndim == 1 or (y_np.ndim == 2 and y_np.shape[1] == 1 and k > 1):
        labels = y_np.reshape(-1)
        if labels.shape != (n,):
            raise ValueError(f"data.y must hold {n} labels, got shape {y_np.shape}")
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("data.y: class labels must be integers")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"data.y: class labels must lie in [0, {k}) (output_dim = {k}), "
                f"got {int(labels.min())}..{int(labels.max())}"
            )
        return one_hot(labels.astype(np.int64), k)
    if y_np.shape != (n, k):
        raise ValueError(f"data.y must have shape ({n},) (labels) or ({n}, {k}), got {y_np.shape}")
    if not np.all(np.isfinite(y_np)) or np.any(y_np < 0):
        raise ValueError("data.y: target rows must be finite and non-negative (one-hot)")
    return jnp.asarray(y_np, jnp.float64)


def crossentropy_objective(
    spec: NetworkSpec, data: Dataset, maxnorm: float | None = None
) -> Objective:
    """L(θ) = −Σ_n w_n Σ_o T_no log softmax(f(x_n; θ))_o (+ barrier B(θ)), see the module doc.

    ``data.x`` (N, d); ``data.y`` integer class labels (N,) in [0, K) or target rows (N, K)
    (one-hot: the same objective); ``data.weights`` (N,) or None (= 1/N each); K =
    ``spec.output_dim`` ≥ 2.  Callables take θ (P,) and are jit-compiled; ``extras`` holds
    ``"gauss_newton"`` (the generalised Gauss-Newton term + ∇²B), ``"maxnorm"`` and
    ``"accuracy"`` (θ → training accuracy).  ``objective.data.y`` is the (N, K) target matrix.
    """
    if spec.output_dim < 2:
        raise ValueError(f"cross-entropy needs output_dim ≥ 2 classes, got {spec.output_dim}")
    maxnorm = None if maxnorm is None else float(maxnorm)
    if maxnorm is not None and not (np.isfinite(maxnorm) and maxnorm > 0):
        raise ValueError(f"maxnorm must be a positive number or None, got {maxnorm!r}")
    x = jnp.asarray(data.x, jnp.float64)
    if x.ndim != 2 or x.shape[1] != spec.input_dim or x.shape[0] < 1:
        raise ValueError(f"data.x must have shape (N ≥ 1, {spec.input_dim}), got {x.shape}")
    n = x.shape[0]
    t = _targets(spec, data.y, n)
    if data.weights is None:
        w = jnp.full(n, 1.0 / n)
    else:
        w = jnp.asarray(data.weights, jnp.float64)
        if w.shape != (n,):
            raise ValueError(f"data.weights must have shape ({n},), got {w.shape}")

    def bind(fn):
        jitted = jax.jit(functools.partial(fn, spec=spec, maxnorm=maxnorm))
        return lambda theta: jitted(theta, x, t, w)

    logits = jax.jit(functools.partial(forward, spec))
    extras = {
        "gauss_newton": bind(_gauss_newton),
        "maxnorm": maxnorm,
        "accuracy": lambda theta: accuracy(logits(jnp.asarray(theta), x), t, w),
    }
    return Objective(
        spec,
        bind(_loss),
        bind(_grad),
        bind(_value_and_grad),
        bind(_hessian),
        Dataset(x, t, data.weights),
        "crossentropy",
        extras,
    )
