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

Gauge.  softmax(f + c·1) = softmax(f): adding one vector v to every row of the output
weights W_L (and one number to every entry of b_L) changes no probability, so the
cross-entropy is exactly flat along these k_{L−1} (+1 with an output bias) directions,
its Hessian has as many zero eigenvalues at every θ, and no critical point would be a
strict minimum.  The objective therefore adds (``gauge=True``, the default)

    G(θ) = (1/2K) (‖Σ_o W_L[o, :]‖² + (Σ_o b_L[o])²) = (1/2K) ‖M θ‖²,

M (g × P) summing each column of W_L (and b_L) over the outputs.  G is zero on the centred
slice Mθ = 0, which gradient flow never leaves once there (M∇L_CE = Σ_o e_no·(…) = 0, as
Σ_o e_no = 0) — θ₀ is centred (:func:`centre_logits`) so the loss along a run *is* the
cross-entropy — and it turns the zero eigenvalues into exactly 1 (MᵀM/K projects onto the
gauge directions, which the cross-entropy Hessian annihilates), leaving the rest of the
spectrum that of the cross-entropy on the slice.  A ``maxnorm`` barrier active on W_L or
b_L is not gauge invariant: it pulls θ slightly off the slice (G > 0, small) and mixes
its curvature into those eigenvalues.  Minibatches (sgd, ``extras["batch_loss"]``): G is
a θ-only term like B, so every batch loss carries it once — E[L_b] = L, L_b = L on the
whole data set, and its curvature stays in every batch's Hessian; on the slice it adds
nothing (∇G = 0, and each sample's M J_nᵀe_n = 0 since Σ_o e_no = 0), so sgd stays there.

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
    bind_args,
    check_maxnorm,
    objective_from,
    sample_weights,
)

Array = jax.Array

__all__ = [
    "accuracy",
    "centre_logits",
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


def gauge_matrix(spec: NetworkSpec) -> np.ndarray:
    """M (g, P): row j sums column j of W_L over the K outputs; a last row sums b_L (if any)."""
    off = spec.offsets()
    k, k_in = spec.output_dim, spec.layer_sizes[-2]
    last = spec.n_layers
    rows = []
    for j in range(k_in):
        row = np.zeros(spec.n_params)
        row[off[f"w{last}"].start + np.arange(k) * k_in + j] = 1.0
        rows.append(row)
    if spec.bias[-1]:
        row = np.zeros(spec.n_params)
        row[off[f"b{last}"]] = 1.0
        rows.append(row)
    return np.stack(rows)


def centre_logits(spec: NetworkSpec, theta: Array) -> np.ndarray:
    """θ moved along the gauge directions onto the centred slice Mθ = 0 (Σ_o W_L[o,:] = 0,
    Σ_o b_L[o] = 0): the same probabilities softmax(f(x; θ)) for every x."""
    m = gauge_matrix(spec)
    theta = np.asarray(theta, np.float64)
    return theta - m.T @ (m @ theta) / spec.output_dim


def _gauge(theta: Array, spec: NetworkSpec, gauge: bool):
    """(G(θ), ∇G, ∇²G) of the module doc, or zeros without the gauge term."""
    if not gauge:
        z = jnp.zeros((), theta.dtype)
        return z, jnp.zeros_like(theta), None
    m = jnp.asarray(gauge_matrix(spec))
    k = spec.output_dim
    mt = m @ theta
    return 0.5 * jnp.sum(mt * mt) / k, (m.T @ mt) / k, (m.T @ m) / k


# ------------------------------------------------------------------------ the pieces


def _log_softmax(out: Array) -> Array:
    return out - jax.scipy.special.logsumexp(out, axis=-1, keepdims=True)


def _cotangent(out: Array, t: Array, w: Array) -> Array:
    """e (N, K) = w_n (s_n p_n − T_n), the gradient of the data term in the logits."""
    p = softmax(out)
    return w[:, None] * (jnp.sum(t, axis=-1, keepdims=True) * p - t)


def _loss(theta, x, t, w, *, spec, maxnorm, gauge):
    value = -jnp.sum(w[:, None] * t * _log_softmax(forward(spec, theta, x)))
    return value + barrier(theta, maxnorm) + _gauge(theta, spec, gauge)[0]


def _value_and_grad(theta, x, t, w, *, spec, maxnorm, gauge):
    p, hs, dsig, out = _forward_cache(spec, theta, x)
    g_value, g_grad, _ = _gauge(theta, spec, gauge)
    value = -jnp.sum(w[:, None] * t * _log_softmax(out)) + barrier(theta, maxnorm) + g_value
    e = _cotangent(out, t, w)
    return value, _backprop(spec, p, hs, dsig, e) + barrier_grad(theta, maxnorm) + g_grad


def _grad(theta, x, t, w, *, spec, maxnorm, gauge):
    return _value_and_grad(theta, x, t, w, spec=spec, maxnorm=maxnorm, gauge=gauge)[1]


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


def _with_gauge(h: Array, theta: Array, spec: NetworkSpec, gauge: bool) -> Array:
    hg = _gauge(theta, spec, gauge)[2]
    return h if hg is None else h + hg


def _hessian(theta, x, t, w, *, spec, maxnorm, gauge, structured=True):
    block = functools.partial(_hessian_block, spec, structured=structured)
    h = _symmetrize_with_barrier(_sum_over_blocks(block, spec, theta, x, t, w), theta, maxnorm)
    return _with_gauge(h, theta, spec, gauge)


def _gauss_newton(theta, x, t, w, *, spec, maxnorm, gauge):
    block = functools.partial(_ggn_block, spec)
    h = _symmetrize_with_barrier(_sum_over_blocks(block, spec, theta, x, t, w), theta, maxnorm)
    return _with_gauge(h, theta, spec, gauge)


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
    spec: NetworkSpec, data: Dataset, maxnorm: float | None = None, gauge: bool = True
) -> Objective:
    """L(θ) = −Σ_n w_n Σ_o T_no log softmax(f(x_n; θ))_o (+ B(θ) + G(θ)), see the module doc.

    ``gauge`` adds the term G that makes the softmax's flat gauge directions curved (zero on
    the centred slice); ``gauge=False`` is the bare cross-entropy (+ barrier).

    ``data.x`` (N, d); ``data.y`` integer class labels (N,) in [0, K) or target rows (N, K)
    (one-hot: the same objective); ``data.weights`` (N,) or None (= 1/N each); K =
    ``spec.output_dim`` ≥ 2.  Callables take θ (P,) and are jit-compiled; ``extras`` holds
    ``"gauss_newton"`` (the generalised Gauss-Newton term + ∇²B), ``"maxnorm"`` and
    ``"accuracy"`` (θ → training accuracy) and ``"gauge"`` (M, or None without the term).
    ``objective.data.y`` is the (N, K) target matrix.
    """
    if spec.output_dim < 2:
        raise ValueError(f"cross-entropy needs output_dim ≥ 2 classes, got {spec.output_dim}")
    maxnorm = None if maxnorm is None else float(maxnorm)
    check_maxnorm(maxnorm)
    x = jnp.asarray(data.x, jnp.float64)
    if x.ndim != 2 or x.shape[1] != spec.input_dim or x.shape[0] < 1:
        raise ValueError(f"data.x must have shape (N ≥ 1, {spec.input_dim}), got {x.shape}")
    n = x.shape[0]
    t = _targets(spec, data.y, n)
    w = sample_weights(data.weights, n)
    args, static = (x, t, w), {"spec": spec, "maxnorm": maxnorm, "gauge": bool(gauge)}
    logits = jax.jit(functools.partial(forward, spec))
    extras = {
        "gauss_newton": bind_args(_gauss_newton, args, **static),
        "maxnorm": maxnorm,
        "accuracy": lambda theta: accuracy(logits(jnp.asarray(theta), x), t, w),
        "gauge": gauge_matrix(spec) if gauge else None,
    }
    fns = (_loss, _grad, _value_and_grad, _hessian)
    data = Dataset(x, t, data.weights)
    return objective_from(spec, fns, args, data=data, name="crossentropy", extras=extras, **static)
