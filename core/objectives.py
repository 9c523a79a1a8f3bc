"""Finite-data mean-squared-error objective with closed-form gradient and structured Hessian.

For a data set {(x_n, y_n, w_n)}_{n=1..N}, x_n ∈ ℝ^d, y_n ∈ ℝ^K (K = ``output_dim``),
weights w_n (1/N by default) and residuals r_n = f(x_n; θ) − y_n ∈ ℝ^K,

    L(θ)   = ½ Σ_n w_n ‖r_n‖²  + B(θ),
    ∇L     = Σ_n w_n J_nᵀ r_n  + ∇B,
    ∇²L    = Σ_n w_n J_nᵀ J_n  +  Σ_n w_n Σ_o r_{no} ∇²f_o(x_n; θ)  + ∇²B,
             └── Gauss-Newton ──┘  └──────── second-order term ───────┘

with J_n = ∂f(x_n)/∂θ ∈ ℝ^{K×P} and B the optional weight-norm barrier (:func:`barrier`).

How each piece is computed (never ``jax.hessian`` of the loss, which materialises
N×P×P intermediates: > 20 GB at d=2, k=100, N=10⁴):

* Gradient: hand-written backpropagation e^L = w⊙r, ∇W_l = e^lᵀ h^{l−1},
  e^{l−1} = (e^l W_l) ⊙ σ′(z^{l−1}), using the closed-form σ′ of :mod:`core.activations`.
  Forward and backward share one pass over the data (σ and σ′ computed together); for
  softplus layers from one e = exp(−|z|), with log1p(e) by its atanh series (XLA's CPU
  log1p is a scalar libm call, 5× slower than this vectorised polynomial), see
  :func:`_softplus_and_sigmoid`.
* Jacobian: closed form per layer from the output sensitivities
  δ^L_{n,o,:} = e_o,  δ^{l−1} = (δ^l W_l) ⊙ σ′(z^{l−1}):
  ∂f_o/∂W_l[i,j] = δ^l_{n,o,i} h^{l−1}_{n,j},  ∂f_o/∂b_l[i] = δ^l_{n,o,i}.
  J is (N·K × P); the Gauss-Newton term is one matrix product (w⊙J)ᵀJ.
* Second-order term, one hidden layer (f_o = Σ_i a_{oi} σ(w_i·x̃) + c_o, x̃ = [x, 1] when
  the hidden layer has a bias): it is block sparse with closed-form blocks
      (w_i, w_i):  Σ_n w_n (Σ_o r_{no} a_{oi}) σ″(z_{ni}) x̃_n x̃_nᵀ,
      (a_{oi}, w_i): Σ_n w_n r_{no} σ′(z_{ni}) x̃_n      (and its transpose),
  all other blocks zero; cost O(N k d²).
* Second-order term, deeper nets: forward-over-reverse Hessian of
  g(θ) = Σ_n w_n stop_grad(r_n)·f(x_n; θ), whose Hessian is exactly that term, evaluated
  on the basis directions in batches (``lax.map(batch_size=…)``) so memory stays bounded.
* Nonlinear output f = φ(u), u = W_L h^{L−1} + b_L (``spec.output``, MSE only): with
  J^u_n = ∂u_n/∂θ (the linear-output Jacobian above) and r = φ(u) − y,
      ∇L  = Σ_n w_n J^uᵀ_n (r_n ⊙ φ′(u_n)),
      ∇²L = Σ_n Σ_o w_n (φ′(u_no)² + r_no φ″(u_no)) J^u_no J^uᵀ_no
            + Σ_n Σ_o w_n r_no φ′(u_no) ∇²u_o(x_n; θ),
  i.e. the linear-output pieces with per-(n, o) weights: the first sum is the "Gauss-Newton"
  product with weights w(φ′² + rφ″) (no longer PSD), the second the same structured or
  autodiff second-order term with w r φ′ in place of w r.  Cost as for a linear output.
* Large N: the samples are processed in blocks (``lax.scan``, zero-weight padding) so that
  the Jacobian block never exceeds ~32 MB; memory is O(P² + min(N, block)·K·P).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from core.activations import apply_per_neuron, get_activation
from core.networks import NetworkSpec, forward, unflatten

Array = jax.Array

# Largest number of float64 entries in one Jacobian block / one batch of tangents (32 MB).
_BLOCK_BUDGET = 2**22


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
        extras: optional further callables; :func:`mse_objective` provides
            ``"gauss_newton"`` (θ → Σ_n w_n J_nᵀJ_n + ∇²B, (P, P)), ``"jacobian"``
            (θ → J, (N·K, P), rows ordered sample-major) and ``"maxnorm"``.  Every
            finite-data objective has ``"batch_loss"`` and ``"batch_grad"``:
            (θ (P,), x (B, d), y (B, K), w (B,)) → L_b (), resp. ∇L_b (P,), the same loss
            on the batch {(x_b, y_b, w_b)}, its θ-only terms (barrier, cross-entropy gauge)
            added once: with the whole data set L_b = L.  sgd passes w_b = (N/B) w_{n_b}
            for B indices n_b drawn uniformly, so E[L_b] = L (:mod:`core.flow.discrete`).
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


# ----------------------------------------------------------------------------- barrier


def barrier(theta: Array, maxnorm: float | None) -> Array:
    """Weight-norm barrier B(θ) = ½ Σ_p max(0, |θ_p| − maxnorm)²  (0 if ``maxnorm`` is None).

    Keeps runaway weights (channels to infinity) from overflowing, as MLPGradientFlow's
    ``maxnorm`` option does; it is zero and flat inside the box |θ_p| ≤ maxnorm.
    """
    if maxnorm is None:
        return jnp.zeros((), theta.dtype)
    excess = jnp.maximum(jnp.abs(theta) - maxnorm, 0.0)
    return 0.5 * jnp.sum(excess * excess)


def barrier_grad(theta: Array, maxnorm: float | None) -> Array:
    """∇B (P,): sign(θ_p) · max(0, |θ_p| − maxnorm)."""
    if maxnorm is None:
        return jnp.zeros_like(theta)
    return jnp.sign(theta) * jnp.maximum(jnp.abs(theta) - maxnorm, 0.0)


def barrier_hessian_diag(theta: Array, maxnorm: float | None) -> Array:
    """Diagonal of ∇²B (P,): 1 where |θ_p| > maxnorm, else 0 (B is separable)."""
    if maxnorm is None:
        return jnp.zeros_like(theta)
    return (jnp.abs(theta) > maxnorm).astype(theta.dtype)


# ----------------------------------------------------------------------- forward pieces

# Terms of the atanh series of log1p below: s² ≤ 1/9, so the truncation error after
# _LOG1P_TERMS terms is < (1/9)^18 / 37 ≈ 4e-19 relative: the result is within ~2 ulp.
_LOG1P_TERMS = 18


def _log1p_unit(e: Array) -> Array:
    """log(1 + e) for e ∈ [0, 1], by log(1+e) = 2 atanh(s) = 2 Σ_j s^{2j+1}/(2j+1),
    s = e/(2+e) ∈ [0, 1/3]: one division and a Horner polynomial in s², which XLA
    vectorises (its log1p is not).  Relative error ≤ 2 ulp (tests/test_objectives.py)."""
    s = e / (2.0 + e)
    s2 = s * s
    acc = jnp.full_like(s, 1.0 / (2 * _LOG1P_TERMS + 1))
    for j in range(_LOG1P_TERMS - 1, -1, -1):
        acc = acc * s2 + 1.0 / (2 * j + 1)
    return 2.0 * s * acc


def _softplus_and_sigmoid(z: Array) -> tuple[Array, Array]:
    """(softplus(z), sigmoid(z)) from one e = exp(−|z|) ∈ (0, 1]:
    softplus = max(z, 0) + log1p(e), sigmoid = (1 if z ≥ 0 else e)/(1 + e)."""
    e = jnp.exp(-jnp.abs(z))
    return jnp.maximum(z, 0.0) + _log1p_unit(e), jnp.where(z >= 0.0, 1.0, e) / (1.0 + e)


def _activation_and_derivative(names: tuple[str, ...], z: Array) -> tuple[Array, Array]:
    """(σ(z), σ′(z)) column-wise (see :func:`core.activations.apply_per_neuron`)."""
    if all(name == "softplus" for name in names):
        return _softplus_and_sigmoid(z)
    return apply_per_neuron(names, z, 0), apply_per_neuron(names, z, 1)


def _forward_cache(spec: NetworkSpec, theta: Array, x: Array, *, pre_activation: bool = False):
    """Forward pass keeping what backprop needs.

    Returns (params, hs, dsig, out): hs = [h⁰=x, h¹, …, h^{L−1}] each (N, k_l),
    dsig = [σ′(z¹), …, σ′(z^{L−1})] each (N, k_l), out = u = z^L (N, K), the output layer's
    pre-activation: f(x) for a linear output.  A nonlinear output (``spec.output``) needs
    ``pre_activation=True`` (the caller applies φ; only the MSE does): a loss written for a
    linear output fails here rather than silently dropping φ.
    """
    if not (spec.linear_output or pre_activation):
        raise ValueError(
            f"student.output: this loss needs a linear output layer, not {spec.output!r}"
        )
    p = unflatten(spec, theta)
    hs, dsig = [x], []
    h = x
    for l in range(1, spec.n_layers + 1):
        z = h @ p[f"w{l}"].T
        if spec.bias[l - 1]:
            z = z + p[f"b{l}"]
        if l < spec.n_layers:
            h, ds = _activation_and_derivative(spec.activations[l - 1], z)
            hs.append(h)
            dsig.append(ds)
        else:
            h = z
    return p, hs, dsig, h


def _backprop(spec: NetworkSpec, p, hs, dsig, e: Array) -> Array:
    """Σ_n J_nᵀ e_n (P,) for output cotangents e (N, K), by backpropagation."""
    grads: dict[str, Array] = {}
    for l in range(spec.n_layers, 0, -1):
        grads[f"w{l}"] = e.T @ hs[l - 1]
        if spec.bias[l - 1]:
            grads[f"b{l}"] = jnp.sum(e, axis=0)
        if l > 1:
            e = (e @ p[f"w{l}"]) * dsig[l - 2]
    return jnp.concatenate([grads[name].reshape(-1) for name in spec.shapes])


def _jacobian(spec: NetworkSpec, p, hs, dsig) -> Array:
    """J = ∂f/∂θ as (N, K, P) from the closed-form output sensitivities δ^l (N, K, k_l)."""
    n = hs[0].shape[0]
    k_out = spec.output_dim
    delta = jnp.broadcast_to(jnp.eye(k_out, dtype=hs[0].dtype), (n, k_out, k_out))
    blocks: dict[str, Array] = {}
    for l in range(spec.n_layers, 0, -1):
        h = hs[l - 1]
        blocks[f"w{l}"] = (delta[:, :, :, None] * h[:, None, None, :]).reshape(n, k_out, -1)
        if spec.bias[l - 1]:
            blocks[f"b{l}"] = delta
        if l > 1:
            delta = (delta @ p[f"w{l}"]) * dsig[l - 2][:, None, :]
    return jnp.concatenate([blocks[name] for name in spec.shapes], axis=-1)


# --------------------------------------------------------------- second-order terms


def _one_hidden_layer_indices(spec: NetworkSpec) -> tuple[np.ndarray, np.ndarray]:
    """Static flat indices: IDX (k, d̃) of [w_i, b_i] per hidden neuron, IA (K, k) of a_{oi}."""
    d, k, k_out = spec.input_dim, spec.widths[0], spec.output_dim
    off = spec.offsets()
    w1 = off["w1"].start + np.arange(k * d).reshape(k, d)
    idx = np.concatenate([w1, off["b1"].start + np.arange(k)[:, None]], 1) if spec.bias[0] else w1
    ia = off["w2"].start + np.arange(k_out * k).reshape(k_out, k)
    return idx, ia


def _second_order_one_hidden(spec: NetworkSpec, theta: Array, x: Array, wr: Array) -> Array:
    """Σ_n Σ_o wr_{no} ∇²f_o(x_n; θ) (P, P) in closed form for one hidden layer.

    ``wr`` (N, K) holds w_n r_{no}.  Nonzero blocks: (w_i, w_i) and (a_{oi}, w_i), see module doc.
    """
    p = unflatten(spec, theta)
    acts = spec.activations[0]
    z = x @ p["w1"].T
    if spec.bias[0]:
        z = z + p["b1"]
        xt = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    else:
        xt = x
    a = p["w2"]  # (K, k)
    c = (wr @ a) * apply_per_neuron(acts, z, 2)  # (N, k): Σ_o w_n r_no a_oi σ″(z_ni)
    diag_blocks = jnp.einsum("ni,np,nq->ipq", c, xt, xt)  # (k, d̃, d̃)
    cross = jnp.einsum("no,ni,np->oip", wr, apply_per_neuron(acts, z, 1), xt)  # (K, k, d̃)
    idx, ia = _one_hidden_layer_indices(spec)
    P = spec.n_params
    h = jnp.zeros((P, P), theta.dtype)
    h = h.at[idx[:, :, None], idx[:, None, :]].add(diag_blocks)
    h = h.at[ia[:, :, None], idx[None, :, :]].add(cross)
    h = h.at[idx[None, :, :], ia[:, :, None]].add(cross)
    return h


def _second_order_autodiff(spec: NetworkSpec, theta: Array, x: Array, wr: Array) -> Array:
    """Σ_n Σ_o wr_{no} ∇²f_o(x_n; θ) (P, P) by forward-over-reverse, any depth.

    ∇² of g(θ) = Σ_n wr_n · f(x_n; θ) with wr held fixed, applied to basis directions in
    batches sized so that one batch of tangent forward passes stays within the block budget.
    """

    def g(t: Array) -> Array:
        return jnp.sum(wr * forward(spec, t, x))

    grad_g = jax.grad(g)

    def column(v: Array) -> Array:
        return jax.jvp(grad_g, (theta,), (v,))[1]

    P = spec.n_params
    per_tangent = x.shape[0] * max(spec.layer_sizes) * 4
    batch = int(max(1, min(P, _BLOCK_BUDGET // max(per_tangent, 1))))
    h = jax.lax.map(column, jnp.eye(P, dtype=theta.dtype), batch_size=batch)
    return h.T


def _output_layer(spec: NetworkSpec, u: Array, order: int) -> tuple[Array, ...]:
    """(f, φ′(u), φ″(u))[: order + 1] of the output layer from its pre-activation u (N, K);
    derivatives ``None`` for a linear output (φ′ = 1, φ″ = 0)."""
    if spec.linear_output:
        return (u, None, None)[: order + 1]
    act = get_activation(spec.output)
    return (act.f(u), act.df(u), act.d2f(u))[: order + 1]


def _linear_output(spec: NetworkSpec) -> NetworkSpec:
    """The same network with a linear output (same θ layout): u(x; θ) as its ``forward``."""
    return spec if spec.linear_output else replace(spec, output="identity")


def _hessian_block(
    spec: NetworkSpec, theta: Array, x: Array, y: Array, w: Array, *, structured: bool
) -> Array:
    """Data part of ∇²L from one block of samples: (c⊙Jᵘ)ᵀJᵘ + second-order term, (P, P),
    c = w (w(φ′² + rφ″) for a nonlinear output, see the module doc)."""
    p, hs, dsig, u = _forward_cache(spec, theta, x, pre_activation=True)
    out, d1, d2 = _output_layer(spec, u, 2)
    r = out - y
    jac = _jacobian(spec, p, hs, dsig).reshape(-1, spec.n_params)  # Jᵘ (N·K, P)
    if d1 is None:
        wr, c = w[:, None] * r, jnp.repeat(w, spec.output_dim)
    else:
        wr, c = w[:, None] * r * d1, (w[:, None] * (d1 * d1 + r * d2)).reshape(-1)
    gn = (jac * c[:, None]).T @ jac
    if spec.n_layers == 1:
        return gn  # no hidden layer: u is linear in θ
    lin = _linear_output(spec)
    if structured and spec.n_layers == 2:
        return gn + _second_order_one_hidden(lin, theta, x, wr)
    return gn + _second_order_autodiff(lin, theta, x, wr)


def _output_jacobian(spec: NetworkSpec, theta: Array, x: Array) -> Array:
    """J = ∂f/∂θ (N·K, P): Jᵘ, rows scaled by φ′(u) for a nonlinear output."""
    p, hs, dsig, u = _forward_cache(spec, theta, x, pre_activation=True)
    jac = _jacobian(spec, p, hs, dsig)
    d1 = _output_layer(spec, u, 1)[1]
    if d1 is not None:
        jac = jac * d1[:, :, None]
    return jac.reshape(-1, spec.n_params)


def _gauss_newton_block(spec: NetworkSpec, theta: Array, x: Array, y: Array, w: Array) -> Array:
    del y
    jac = _output_jacobian(spec, theta, x)
    wrep = jnp.repeat(w, spec.output_dim)
    return (jac * wrep[:, None]).T @ jac


def _sum_over_blocks(block_fn, spec: NetworkSpec, theta, x, y, w) -> Array:
    """Σ over sample blocks of block_fn(θ, x_b, y_b, w_b) (P, P), scanning when N is large."""
    n = x.shape[0]
    rows = max(1, _BLOCK_BUDGET // (spec.output_dim * spec.n_params))
    if n <= rows:
        return block_fn(theta, x, y, w)
    n_blocks = -(-n // rows)
    pad = n_blocks * rows - n
    # Zero-weight padding rows contribute exactly 0 to every term.
    xb = jnp.pad(x, ((0, pad), (0, 0))).reshape(n_blocks, rows, -1)
    yb = jnp.pad(y, ((0, pad), (0, 0))).reshape(n_blocks, rows, -1)
    wb = jnp.pad(w, (0, pad)).reshape(n_blocks, rows)

    def step(acc, blk):
        return acc + block_fn(theta, *blk), None

    P = spec.n_params
    acc, _ = jax.lax.scan(step, jnp.zeros((P, P), theta.dtype), (xb, yb, wb))
    return acc


def _symmetrize_with_barrier(h: Array, theta: Array, maxnorm: float | None) -> Array:
    h = 0.5 * (h + h.T)
    if maxnorm is None:
        return h
    return h + jnp.diag(barrier_hessian_diag(theta, maxnorm))


# ------------------------------------------------------------------- public builders


def _loss(theta, x, y, w, *, spec, maxnorm):
    r = forward(spec, theta, x) - y
    return 0.5 * jnp.sum(w[:, None] * r * r) + barrier(theta, maxnorm)


def _value_and_grad(theta, x, y, w, *, spec, maxnorm):
    p, hs, dsig, u = _forward_cache(spec, theta, x, pre_activation=True)
    out, d1 = _output_layer(spec, u, 1)
    r = out - y
    wr = w[:, None] * r
    value = 0.5 * jnp.sum(wr * r) + barrier(theta, maxnorm)
    e = wr if d1 is None else wr * d1  # cotangent of u
    return value, _backprop(spec, p, hs, dsig, e) + barrier_grad(theta, maxnorm)


def _grad(theta, x, y, w, *, spec, maxnorm):
    return _value_and_grad(theta, x, y, w, spec=spec, maxnorm=maxnorm)[1]


def _hessian(theta, x, y, w, *, spec, maxnorm, structured=True):
    block = functools.partial(_hessian_block, spec, structured=structured)
    h = _sum_over_blocks(block, spec, theta, x, y, w)
    return _symmetrize_with_barrier(h, theta, maxnorm)


def _gauss_newton(theta, x, y, w, *, spec, maxnorm):
    block = functools.partial(_gauss_newton_block, spec)
    h = _sum_over_blocks(block, spec, theta, x, y, w)
    return _symmetrize_with_barrier(h, theta, maxnorm)


def _full_jacobian(theta, x, y, w, *, spec, maxnorm):
    del y, w, maxnorm
    return _output_jacobian(spec, theta, x)


def _validate(spec: NetworkSpec, data: Dataset, maxnorm: float | None):
    """Convert and check the data set; raise ``ValueError`` naming the offending field."""
    x = jnp.asarray(data.x, jnp.float64)
    y = jnp.asarray(data.y, jnp.float64)
    if x.ndim != 2 or x.shape[1] != spec.input_dim:
        raise ValueError(f"data.x must have shape (N, {spec.input_dim}), got {x.shape}")
    n = x.shape[0]
    if n < 1:
        raise ValueError("data.x must hold at least one sample")
    if y.ndim == 1 and spec.output_dim == 1:
        y = y[:, None]
    if y.shape != (n, spec.output_dim):
        raise ValueError(f"data.y must have shape ({n}, {spec.output_dim}), got {y.shape}")
    w = sample_weights(data.weights, n)
    check_maxnorm(maxnorm)
    return x, y, w


def sample_weights(weights, n: int) -> Array:
    """The data set's weights (N,) as float64, 1/N each when ``weights`` is None;
    ``ValueError`` naming ``data.weights`` for another shape."""
    if weights is None:
        return jnp.full(n, 1.0 / n)
    w = jnp.asarray(weights, jnp.float64)
    if w.shape != (n,):
        raise ValueError(f"data.weights must have shape ({n},), got {w.shape}")
    return w


def check_maxnorm(maxnorm: float | None) -> None:
    """``ValueError`` unless ``maxnorm`` is None or a positive finite number."""
    if maxnorm is not None and not (np.isfinite(maxnorm) and maxnorm > 0):
        raise ValueError(f"maxnorm must be a positive number or None, got {maxnorm!r}")


def bind_args(fn: Callable, args: tuple, /, **static) -> Callable[[Array], Array]:
    """θ ↦ fn(θ, *args, **static), jit-compiled once, θ taken as float64.

    ``args`` (the data, or a teacher's arrays) are passed as arguments, not closed over:
    XLA then neither bakes them into the program as constants nor constant-folds them
    differently from the student's terms (an infinite-data loss is then exactly 0 at the
    teacher).  ``static`` (spec, maxnorm…) is bound by ``functools.partial``, so no static
    argument is re-hashed on every call.
    """
    jitted = jax.jit(functools.partial(fn, **static))
    return lambda theta: jitted(jnp.asarray(theta, jnp.float64), *args)


def objective_from(
    spec: NetworkSpec,
    fns: tuple[Callable, Callable, Callable, Callable],
    args: tuple,
    /,
    *,
    data: Dataset | None,
    name: str,
    extras: dict,
    **static,
) -> Objective:
    """The :class:`Objective` whose loss, grad, value_and_grad and hessian are
    ``fns = (loss, grad, value_and_grad, hessian)``, each f(θ, *args, **static), bound to
    ``args`` by :func:`bind_args`.

    With finite ``data``, ``args`` is its (x, y, w) and ``extras`` gains the minibatch forms
    ``"batch_loss"`` and ``"batch_grad"``: the same loss and grad, (θ, x_b, y_b, w_b) → …
    on any batch (:class:`Objective`), so that L_b with the whole data set is L itself."""
    loss, grad, value_and_grad, hessian = (bind_args(f, args, **static) for f in fns)
    if data is not None:
        batch_loss, batch_grad = (jax.jit(functools.partial(f, **static)) for f in fns[:2])
        extras = {**extras, "batch_loss": batch_loss, "batch_grad": batch_grad}
    return Objective(spec, loss, grad, value_and_grad, hessian, data, name, extras)


def mse_objective(spec: NetworkSpec, data: Dataset, maxnorm: float | None = None) -> Objective:
    """The finite-data MSE objective L(θ) = ½ Σ_n w_n ‖f(x_n; θ) − y_n‖² (+ barrier B(θ)).

    ``data.x`` (N, d), ``data.y`` (N, K) (or (N,) when K = 1), ``data.weights`` (N,) or None
    (= 1/N each).  All callables take θ (P,) and are jit-compiled; the Hessian is the
    structured one described in the module docstring, memory O(P² + N·K·P).
    """
    maxnorm = None if maxnorm is None else float(maxnorm)
    x, y, w = _validate(spec, data, maxnorm)

    args, static = (x, y, w), {"spec": spec, "maxnorm": maxnorm}
    extras = {
        "gauss_newton": bind_args(_gauss_newton, args, **static),
        "jacobian": bind_args(_full_jacobian, args, **static),
        "maxnorm": maxnorm,
    }
    fns = (_loss, _grad, _value_and_grad, _hessian)
    data = Dataset(x, y, data.weights)
    return objective_from(spec, fns, args, data=data, name="mse", extras=extras, **static)
