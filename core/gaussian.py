"""Infinite Gaussian data: the exact expected loss of bias-free two-layer networks.

Setting (as MLPGradientFlow.jl's infinite-data integrator): inputs x ~ N(0, I_d), a
student f(x) = Σ_i a_i σ_i(w_i·x) and a teacher g(x) = Σ_j b_j τ_j(v_j·x), both with one
hidden layer, no biases and scalar output.  Every expectation of a product of two hidden
units is a *pair expectation* over a bivariate Gaussian,

    E[σ(w·x) τ(w′·x)] = K_{στ}(c₁₁, c₂₂, c₁₂),   (u, v) ~ N(0, C),
    C = [[c₁₁, c₁₂], [c₁₂, c₂₂]] = [[‖w‖², w·w′], [w·w′, ‖w′‖²]],

so with the stacked neurons (W; V) and coefficients c = (a, −b) the losses are

    mse:          L = ½ E[(f − g)²] = ½ cᵀ K c,
    correlation:  L = −E[f g]       = −aᵀ K_{st} b     (the multi-index paper's loss),

whose cost depends on the widths and d only — there is no sample count.

Pair kernels (closed forms; σ = erf means σ(z) = erf(z/√2), Φ the normal CDF):

* erf·erf:   (2/π) arcsin(c₁₂ / √((1+c₁₁)(1+c₂₂)))  =  (2/π) atan2(c₁₂, √((1+c₁₁)(1+c₂₂) − c₁₂²)),
  Φ·Φ = ¼ + (1/2π)·atan2(…), erf·Φ = (1/π)·atan2(…) (Φ = ½ + ½ erf).
* relu·relu (arc-cosine kernel): (1/2π)(√D + c₁₂(π − θ)),  D = c₁₁c₂₂ − c₁₂², θ = ∠(w, w′).
* he_p·he_q (h_p = He_p/√(p!), also with identity = h₁): a polynomial in (c₁₁, c₂₂, c₁₂)
  from the Hermite scaling identity, δ_pq c₁₂^p for unit variances (:func:`_hermite_kernel`).
* identity·σ (Stein's lemma): c₁₂ E[σ′(v)];  relu·erf = ½ c₁₂ E[erf′(v)] (relu = (u+|u|)/2 and
  E[|u| erf(v)] = 0 by symmetry);  relu·Φ = ½E[relu(u)] + ½ relu·erf.
* anything else: 2-D Gaussian quadrature in whitened coordinates, u = √c₁₁ z₁,
  v = α z₁ + β z₂ with α = c₁₂/√c₁₁ and β² = c₂₂ − α² (a Cholesky factor that stays finite
  for degenerate u ≡ v, β = 0, and zero-norm weights, c₁₁ = 0).  Each axis is integrated
  against the Gaussian density by Gauss-Legendre on [−9, 9] split where that factor's
  argument crosses 0 (z₁ = 0, z₂ = −α z₁/β): relu's kink sits exactly on a split, and the
  nodes cluster there, where every activation bends — plain Gauss-Hermite needs far more
  nodes once ‖w‖ ≳ 2 (erf at ‖w‖ = 2.2: 8e-7 error with 64 Hermite nodes).

Derivatives.  The expected loss is differentiated with JAX on these same expressions.  The
quadrature kernels carry a ``jax.custom_jvp`` given by Price's theorem,

    ∂K/∂c₁₂ = E[σ′(u) τ′(v)],   ∂K/∂c₁₁ = ½ E[σ″(u) τ(v)],   ∂K/∂c₂₂ = ½ E[σ(u) τ″(v)],

(themselves quadratures, recursively, so Hessians work), never through the square roots of
the whitening, which are not differentiable at β = 0 or c₁₁ = 0 although K is.  The relu
kernel is singular like θ³ at coincident (θ = 0) and opposite (θ = π) weights; there it is
evaluated as a power series in sin²θ whose θ³ factor has a guarded square root, so gradient
and Hessian are exact and finite at a student equal to the teacher or at split neurons.

Accuracy (float64; checked in ``tests/test_gaussian.py`` over random, degenerate and
zero covariances with ‖w‖ ≤ 4): closed forms to rounding; quadrature with the default 96
nodes per axis to 2e-13 (erf, Φ, softplus vs a 400-node rule) and 4e-11 (relu, limited by
nearly parallel weights whose z₂-kink moves fast with z₁); 64 nodes give ~5e-9 / 1e-7.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from core.activations import get_activation
from core.networks import NetworkSpec, unflatten
from core.objectives import Dataset, Objective, barrier, objective_from
from core.teachers import Teacher

Array = jax.Array

DEFAULT_NODES = 96
"""Quadrature nodes per axis (two Gauss-Legendre pieces of 48): 96² evaluations per pair."""

_Z_MAX = 9.0  # |z| > 9 carries Gaussian mass 2Φ(−9) ≈ 2e-19: negligible in float64
#: Activations whose σ′ jumps at 0 (relu 0 → 1, selu λα → λ): σ″ holds a Dirac delta that the
#: Price's-theorem derivatives of a quadrature kernel (σ″ pointwise) would miss — a selu·selu
#: loss by quadrature is right, its gradient 3 % off.  They pair only through closed forms.
_KINKED = frozenset({"relu", "selu"})
_CLOSED = frozenset(
    {
        ("erf", "erf"),
        ("normal_cdf", "normal_cdf"),
        ("erf", "normal_cdf"),
        ("relu", "relu"),
        ("identity", "identity"),
        ("identity", "erf"),
        ("identity", "normal_cdf"),
        ("identity", "relu"),
        ("relu", "erf"),
        ("relu", "normal_cdf"),
    }
    # Hermite polynomials with each other and with the identity (= He₁): a polynomial kernel.
    | {(f"he{p}", f"he{q}") for p in range(1, 5) for q in range(p, 5)}
    | {("identity", f"he{q}") for q in range(1, 5)}
)
#: Degree p of the normalised Hermite activations h_p = He_p/√(p!) (identity = He₁ = h₁).
_HERMITE_DEGREE = {"identity": 1, "he1": 1, "he2": 2, "he3": 3, "he4": 4}
LOSSES = ("mse", "correlation")


# ---------------------------------------------------------------------------------------
# Closed-form pair kernels K(c11, c22, c12), elementwise over arrays of equal shape.
# ---------------------------------------------------------------------------------------


def _safe_sqrt(x: Array) -> Array:
    """√x for x ≥ 0 whose derivative is 0 (not ∞/NaN) at x = 0.

    Used only where the true function is smooth although it contains √ (e.g. x^{3/2} or
    √c₁₁·g with g → 0): the guarded derivative then gives the correct limit.
    """
    pos = x > 0.0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _arcsine_angle(c11: Array, c22: Array, c12: Array) -> Array:
    """arcsin(c₁₂/√((1+c₁₁)(1+c₂₂))) as atan2(c₁₂, √((1+c₁₁)(1+c₂₂) − c₁₂²)).

    The second argument is ≥ 1 for any real weights (it equals 1 + c₁₁ + c₂₂ + det C), so
    unlike arcsin's derivative 1/√(1 − ρ²) nothing is ever singular.
    """
    return jnp.arctan2(c12, jnp.sqrt((1.0 + c11) * (1.0 + c22) - c12 * c12))


def _erf_erf(c11: Array, c22: Array, c12: Array) -> Array:
    """E[erf(u/√2) erf(v/√2)] = (2/π) arcsin(c₁₂/√((1+c₁₁)(1+c₂₂)))."""
    return (2.0 / jnp.pi) * _arcsine_angle(c11, c22, c12)


def _cdf_cdf(c11: Array, c22: Array, c12: Array) -> Array:
    """E[Φ(u)Φ(v)] = ¼ + (1/2π) arcsin(c₁₂/√((1+c₁₁)(1+c₂₂)))."""
    return 0.25 + _arcsine_angle(c11, c22, c12) / (2.0 * jnp.pi)


def _erf_cdf(c11: Array, c22: Array, c12: Array) -> Array:
    """E[erf(u/√2) Φ(v)] = ½ E[erf·erf] (E[erf(u/√2)] = 0)."""
    return _arcsine_angle(c11, c22, c12) / jnp.pi


def _relu_series_coefficients(n_terms: int = 40) -> np.ndarray:
    """Coefficients h_j of g(θ) = sinθ − θcosθ = s³ Σ_j h_j s^{2j}, s = sinθ, θ ∈ [0, π/2].

    From arcsin(s)/√(1−s²) = Σ_k γ_k s^{2k+1}, γ_k = 4^k (k!)²/(2k+1)!, one gets
    g = s − arcsin(s)√(1−s²) = Σ_{j≥0} γ_j/(2j+3) s^{2j+3}.  γ_{j+1}/γ_j = (2j+2)/(2j+3).
    """
    gamma = np.empty(n_terms)
    gamma[0] = 1.0
    for j in range(n_terms - 1):
        gamma[j + 1] = gamma[j] * (2 * j + 2) / (2 * j + 3)
    return gamma / (2 * np.arange(n_terms) + 3)


# q = sin²θ ≤ 1/4 ⇒ the series' terms fall like 4^{−j}: 40 terms reach 1e-24.
_RELU_H = jnp.asarray(_relu_series_coefficients()[::-1].copy())  # highest power first
_RELU_Q_SWITCH = 0.25


def _relu_relu(c11: Array, c22: Array, c12: Array) -> Array:
    """Arc-cosine kernel E[relu(u) relu(v)] = (1/2π)(√D + c₁₂(π − θ)), cos θ = c₁₂/√(c₁₁c₂₂).

    With n = √(c₁₁c₂₂), q = sin²θ = D/n² and g(θ) = sinθ − θcosθ the kernel is
    c₁₂/2 + (n/2π) g(θ) = (n/2π) g(π − θ).  Three regions, each exact:

    * q < ¼, c₁₂ > 0 (θ < 30°):   c₁₂/2 + (n/2π) q^{3/2} H(q),
    * q < ¼, c₁₂ < 0 (θ > 150°):  (n/2π) q^{3/2} H(q),
    * otherwise:                   (1/2π)(√D + c₁₂(π − atan2(√D, c₁₂))).

    H is the power series of :func:`_relu_series_coefficients`; q^{3/2} = q·√q uses a
    guarded √ so that the Hessian at θ ∈ {0, π} is the true (finite) limit.  Zero-norm
    weights give K = 0 (relu is 1-homogeneous; its gradient there is set to 0).
    """
    n2 = c11 * c22
    nonzero = n2 > 0.0
    n2_safe = jnp.where(nonzero, n2, 1.0)
    n = jnp.sqrt(n2_safe)
    det = jnp.maximum(n2 - c12 * c12, 0.0)
    q = det / n2_safe
    small = q < _RELU_Q_SWITCH
    q_small = jnp.where(small, q, 0.0)
    cubic = q_small * _safe_sqrt(q_small) * jnp.polyval(_RELU_H, q_small)
    k_small = jnp.where(c12 > 0.0, 0.5 * c12, 0.0) + n * cubic / (2.0 * jnp.pi)
    det_big = jnp.where(small, n2_safe, det)  # any positive stand-in off this branch
    root = jnp.sqrt(det_big)
    k_big = (root + c12 * (jnp.pi - jnp.arctan2(root, c12))) / (2.0 * jnp.pi)
    return jnp.where(nonzero, jnp.where(small, k_small, k_big), 0.0)


def _hermite_kernel(p: int, q: int) -> Callable[[Array, Array, Array], Array]:
    """E[h_p(u) h_q(v)] for (u, v) ~ N(0, C), h_p = He_p/√(p!), any covariance C.

    With u = s₁z₁, v = s₂z₂ (unit-variance z's of correlation r = c₁₂/(s₁s₂)), the scaling
    identity He_n(γz) = Σ_k n!/(k!(n−2k)! 2^k) γ^{n−2k} (γ²−1)^k He_{n−2k}(z) and
    E[He_m(z₁) He_{m′}(z₂)] = δ_{mm′} m! r^m give, since (s₁s₂r)^m = c₁₂^m,

        E[He_p(u) He_q(v)] = Σ_m p! q! / (k! l! m! 2^{k+l}) (c₁₁−1)^k (c₂₂−1)^l c₁₂^m,

    over m ≡ p ≡ q (mod 2), 0 ≤ m ≤ min(p, q), k = (p−m)/2, l = (q−m)/2 (zero if p, q have
    different parity).  A polynomial in (c₁₁, c₂₂, c₁₂): exact, smooth at degenerate C; at
    c₁₁ = c₂₂ = 1 only m = p = q survives and the kernel is δ_pq ρ^p.
    """
    f = math.factorial
    terms = []
    parity_ok = (p - q) % 2 == 0
    for m in range(p % 2, min(p, q) + 1 if parity_ok else 0, 2):
        k, l = (p - m) // 2, (q - m) // 2
        coef = f(p) * f(q) / (f(k) * f(l) * f(m) * 2 ** (k + l)) / math.sqrt(f(p) * f(q))
        terms.append((coef, k, l, m))

    def kernel(c11: Array, c22: Array, c12: Array) -> Array:
        out = jnp.zeros(jnp.broadcast_shapes(c11.shape, c22.shape, c12.shape), c12.dtype)
        for coef, k, l, m in terms:
            out = out + coef * (c11 - 1.0) ** k * (c22 - 1.0) ** l * c12**m
        return out

    return kernel


_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _mean_derivative(name: str, c: Array) -> Array:
    """E[σ′(v)] for v ~ N(0, c), for the activations with a closed form."""
    if name == "identity":
        return jnp.ones_like(c)
    if name == "relu":
        return jnp.full_like(c, 0.5)
    if name == "erf":  # σ′ = 2φ:  E[2φ(v)] = 2/√(2π(1+c))
        return 2.0 * _INV_SQRT_2PI / jnp.sqrt(1.0 + c)
    if name == "normal_cdf":  # σ′ = φ
        return _INV_SQRT_2PI / jnp.sqrt(1.0 + c)
    raise AssertionError(name)


def _closed_kernel(a: str, b: str) -> Callable[[Array, Array, Array], Array]:
    """Closed-form K_{ab}(c₁₁, c₂₂, c₁₂) for canonical names with (a, b) or (b, a) in _CLOSED."""
    if (a, b) not in _CLOSED:
        inner = _closed_kernel(b, a)
        return lambda c11, c22, c12: inner(c22, c11, c12)
    if (a, b) == ("erf", "erf"):
        return _erf_erf
    if (a, b) == ("normal_cdf", "normal_cdf"):
        return _cdf_cdf
    if (a, b) == ("erf", "normal_cdf"):
        return _erf_cdf
    if (a, b) == ("relu", "relu"):
        return _relu_relu
    if a.startswith("he") or b.startswith("he"):
        return _hermite_kernel(_HERMITE_DEGREE[a], _HERMITE_DEGREE[b])
    if a == "identity":  # Stein: E[u τ(v)] = c₁₂ E[τ′(v)]
        return lambda c11, c22, c12: c12 * _mean_derivative(b, c22)
    if (a, b) == ("relu", "erf"):
        return lambda c11, c22, c12: 0.5 * c12 * _mean_derivative("erf", c22)
    if (a, b) == ("relu", "normal_cdf"):
        # Φ = ½ + ½ erf(·/√2):  ½ E[relu(u)] + ½ E[relu(u) erf(v/√2)],  E[relu(u)] = √c₁₁/√(2π)
        return lambda c11, c22, c12: (
            0.5 * _INV_SQRT_2PI * _safe_sqrt(c11) + 0.25 * c12 * _mean_derivative("erf", c22)
        )
    raise AssertionError((a, b))


# ---------------------------------------------------------------------------------------
# Quadrature pair kernels with Price's-theorem derivatives.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Derivative:
    """σ^{(order)} for the activation ``name`` (hashable: a static argument of custom_jvp)."""

    name: str
    order: int = 0

    @property
    def kinked(self) -> bool:
        return self.name in _KINKED

    def d(self, k: int) -> _Derivative:
        return _Derivative(self.name, self.order + k)

    def __call__(self, z: Array) -> Array:
        act = get_activation(self.name)
        if self.order <= 2 and not (self.kinked and self.order == 2):
            return (act.f, act.df, act.d2f)[self.order](z)
        if self.kinked:
            raise ValueError(
                f"activation {self.name!r}: derivative of order {self.order} of a quadrature "
                "pair kernel needs σ″, a Dirac delta for a kinked activation; pair it with an "
                "activation that has a closed form (erf, normal_cdf, relu, identity)"
            )
        g: Callable[[Array], Array] = act.d2f
        for _ in range(self.order - 2):
            g = jnp.vectorize(jax.grad(g))
        return g(z)


@functools.cache
def _hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes and weights normalised to sum 1 (E over N(0,1))."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / w.sum()


@functools.cache
def _legendre_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [−1, 1]."""
    return np.polynomial.legendre.leggauss(n)


def _split_rule(t: Array, n: int) -> tuple[Array, Array]:
    """Nodes (..., 2n) and weights for ∫ h(z) φ(z) dz over [−Z, t] ∪ [t, Z].

    Gauss-Legendre on each piece; the Gaussian density is folded into the weights, so a
    function smooth on each side of the kink t is integrated to near machine precision.
    """
    y, wy = _legendre_rule(n)
    t = jnp.clip(t, -_Z_MAX, _Z_MAX)[..., None]
    lo_half, hi_half = 0.5 * (t + _Z_MAX), 0.5 * (_Z_MAX - t)
    z = jnp.concatenate([-_Z_MAX + lo_half * (y + 1.0), t + hi_half * (y + 1.0)], axis=-1)
    w = jnp.concatenate([lo_half * wy, hi_half * wy], axis=-1)
    return z, w * _INV_SQRT_2PI * jnp.exp(-0.5 * z * z)


def _quadrature_value(
    fa: _Derivative, fb: _Derivative, n: int, c11: Array, c22: Array, c12: Array
) -> Array:
    """E[fa(u) fb(v)] for (u, v) ~ N(0, C) by a 2-D product rule in whitened coordinates.

    u = s z₁, v = α z₁ + β z₂ with s = √c₁₁, α = c₁₂/s (0 if s = 0), β = √max(c₂₂ − α², 0).
    Each axis uses the split Legendre rule of :func:`_split_rule`, split where that factor's
    argument vanishes (u: z₁ = 0; v: z₂ = −α z₁/β), with n/2 nodes per piece.
    """
    s = jnp.sqrt(jnp.maximum(c11, 0.0))
    s_pos = s > 0.0
    alpha = jnp.where(s_pos, c12 / jnp.where(s_pos, s, 1.0), 0.0)
    beta = jnp.sqrt(jnp.maximum(c22 - alpha * alpha, 0.0))
    n_piece = max(n // 2, 2)
    z1, p1 = _split_rule(jnp.zeros(()), n_piece)  # u's turning point is z₁ = 0
    s_, a_, b_ = s[..., None], alpha[..., None], beta[..., None]
    outer = fa(s_ * z1)  # (..., n1)
    b_pos = b_ > 0.0
    turn = jnp.where(b_pos, -a_ * z1 / jnp.where(b_pos, b_, 1.0), 0.0)  # (..., n1)
    z2, p2 = _split_rule(turn, n_piece)  # (..., n1, n2): v's turning point is α z₁ + β z₂ = 0
    inner = jnp.sum(p2 * fb((a_ * z1)[..., None] + b_[..., None] * z2), axis=-1)
    return jnp.sum(p1 * outer * inner, axis=-1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _quadrature_kernel(
    fa: _Derivative, fb: _Derivative, n: int, c11: Array, c22: Array, c12: Array
) -> Array:
    """Quadrature K(c₁₁, c₂₂, c₁₂) = E[fa(u) fb(v)], differentiable by Price's theorem."""
    return _quadrature_value(fa, fb, n, c11, c22, c12)


@_quadrature_kernel.defjvp
def _quadrature_kernel_jvp(fa, fb, n, primals, tangents):
    c11, c22, c12 = primals
    d11, d22, d12 = tangents
    value = _quadrature_kernel(fa, fb, n, c11, c22, c12)
    tangent = (
        _quadrature_kernel(fa.d(1), fb.d(1), n, c11, c22, c12) * d12
        + 0.5 * _quadrature_kernel(fa.d(2), fb, n, c11, c22, c12) * d11
        + 0.5 * _quadrature_kernel(fa, fb.d(2), n, c11, c22, c12) * d22
    )
    return value, tangent


# ---------------------------------------------------------------------------------------
# Public pair expectation and the pair-kernel dispatcher.
# ---------------------------------------------------------------------------------------


def _canonical(act: str) -> str:
    return get_activation(act).name


def pair_kernel(
    act_a: str, act_b: str, method: str = "auto", n_nodes: int = DEFAULT_NODES
) -> Callable[[Array, Array, Array], Array]:
    """K(c₁₁, c₂₂, c₁₂) = E[σ_a(u) σ_b(v)], (u,v) ~ N(0, [[c₁₁, c₁₂],[c₁₂, c₂₂]]), elementwise.

    ``method``: "auto" (closed form when one exists, else quadrature), "closed", or
    "quadrature" (``n_nodes`` per axis, see :func:`_quadrature_value`).
    """
    a, b = _canonical(act_a), _canonical(act_b)
    has_closed = (a, b) in _CLOSED or (b, a) in _CLOSED
    if method not in ("auto", "closed", "quadrature"):
        raise ValueError(f"method must be 'auto', 'closed' or 'quadrature', got {method!r}")
    if not isinstance(n_nodes, int | np.integer) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an integer ≥ 2, got {n_nodes!r}")
    if method == "closed" and not has_closed:
        raise ValueError(f"no closed form for the activation pair ({a}, {b})")
    if has_closed and method != "quadrature":
        return _closed_kernel(a, b)
    fa, fb, nn = _Derivative(a), _Derivative(b), int(n_nodes)
    return lambda c11, c22, c12: _quadrature_kernel(fa, fb, nn, c11, c22, c12)


def pair_expectation(
    act: str,
    cov: Array,
    act_b: str | None = None,
    *,
    method: str = "auto",
    n_nodes: int = DEFAULT_NODES,
) -> Array:
    """E[σ_a(u) σ_b(v)] for (u, v) ~ N(0, cov); ``cov`` has shape (..., 2, 2), result (...).

    ``act_b`` defaults to ``act``.  See :func:`pair_kernel` for ``method`` and ``n_nodes``.
    """
    cov = jnp.asarray(cov, jnp.float64)
    if cov.ndim < 2 or cov.shape[-2:] != (2, 2):
        raise ValueError(f"cov must have shape (..., 2, 2), got {cov.shape}")
    kernel = pair_kernel(act, act if act_b is None else act_b, method, n_nodes)
    return kernel(cov[..., 0, 0], cov[..., 1, 1], 0.5 * (cov[..., 0, 1] + cov[..., 1, 0]))


def _kernel_matrices(
    w1: Array,
    acts1: tuple[str, ...],
    w2: Array,
    acts2: tuple[str, ...],
    n_nodes: int,
    partials: bool = True,
) -> tuple[Array, ...]:
    """K, and with ``partials`` ∂K/∂c₁₁ and ∂K/∂c₁₂, for every pair (rows of w1) × (rows of w2).

    Each output is (k₁, k₂); row i of w1 is the first argument u = w1_i·x.  Neurons are
    grouped by activation, so each distinct activation pair evaluates its kernel once on
    its block (a single block in the common one-activation case).
    """
    n1 = jnp.sum(w1 * w1, axis=1)
    n2 = jnp.sum(w2 * w2, axis=1)
    c12 = w1 @ w2.T

    def block(a: str, b: str, rows, cols) -> tuple[Array, ...]:
        kern = pair_kernel(a, b, n_nodes=n_nodes)
        c12b = c12 if rows is None else c12[np.ix_(rows, cols)]
        c11b = jnp.broadcast_to((n1 if rows is None else n1[rows])[:, None], c12b.shape)
        c22b = jnp.broadcast_to((n2 if cols is None else n2[cols])[None, :], c12b.shape)
        if not partials:
            return (kern(c11b, c22b, c12b),)
        if not ((a, b) in _CLOSED or (b, a) in _CLOSED):
            # Price's theorem directly: 3 quadratures instead of two JVPs of 4 each.
            fa, fb = _Derivative(a), _Derivative(b)
            return (
                _quadrature_kernel(fa, fb, n_nodes, c11b, c22b, c12b),
                0.5 * _quadrature_kernel(fa.d(2), fb, n_nodes, c11b, c22b, c12b),
                _quadrature_kernel(fa.d(1), fb.d(1), n_nodes, c11b, c22b, c12b),
            )
        k, k11 = jax.jvp(lambda x: kern(x, c22b, c12b), (c11b,), (jnp.ones_like(c11b),))
        k12 = jax.jvp(lambda x: kern(c11b, c22b, x), (c12b,), (jnp.ones_like(c12b),))[1]
        return k, k11, k12

    names1, names2 = sorted(set(acts1)), sorted(set(acts2))
    if len(names1) == 1 and len(names2) == 1:
        return block(names1[0], names2[0], None, None)
    out = [jnp.zeros(c12.shape) for _ in range(3 if partials else 1)]
    for a in names1:
        rows = np.flatnonzero(np.array([s == a for s in acts1]))
        for b in names2:
            cols = np.flatnonzero(np.array([s == b for s in acts2]))
            idx = np.ix_(rows, cols)
            out = [o.at[idx].set(v) for o, v in zip(out, block(a, b, rows, cols), strict=True)]
    return tuple(out)


# ---------------------------------------------------------------------------------------
# The objective.
# ---------------------------------------------------------------------------------------


def _check_two_layer(spec: NetworkSpec | None, who: str) -> None:
    """Raise ValueError unless ``spec`` is a bias-free one-hidden-layer scalar-output net."""
    if spec is None:
        raise ValueError(
            f"{who}: gaussian-infinite data needs a network teacher (kind 'random', "
            "'orthonormal' or 'file'), not a plain target function"
        )
    if len(spec.widths) != 1:
        raise ValueError(
            f"{who}: gaussian-infinite data needs exactly one hidden layer, got widths "
            f"{list(spec.widths)}"
        )
    if any(spec.bias):
        raise ValueError(f"{who}: gaussian-infinite data needs a net without biases (bias = false)")
    if not spec.linear_output:
        raise ValueError(f"{who}.output: gaussian-infinite data needs a linear output layer")
    if spec.output_dim != 1:
        raise ValueError(
            f"{who}: gaussian-infinite data needs a scalar output, got output_dim {spec.output_dim}"
        )


def gaussian_objective(
    spec: NetworkSpec,
    teacher: Teacher,
    loss: str = "mse",
    maxnorm: float | None = None,
    n_nodes: int = DEFAULT_NODES,
) -> Objective:
    """The exact expected loss over x ~ N(0, I_d) of a two-layer student against a teacher.

    Student f(x) = Σ_i a_i σ_i(w_i·x) (spec: one hidden layer, no biases, output_dim 1),
    teacher g from ``teacher.spec`` / ``teacher.theta`` of the same form.

    * ``loss="mse"``:          L = ½ E[(f − g)²] + B(θ)
    * ``loss="correlation"``:  L = −E[f g] + B(θ)      (B the ``maxnorm`` barrier)

    Gradient (hand-written from the pair kernels so that it is *exactly* zero at a student
    equal to the teacher): with ρ = f − g (mse) or ρ = −g (correlation),

        ∂L/∂a_i = E[ρ σ_i(w_i·x)],
        ∂L/∂w_i = a_i E[ρ σ_i′(w_i·x) x] = a_i Σ_q c_q (2 w_i ∂K_iq/∂c₁₁ + w_q ∂K_iq/∂c₁₂),

    where ρ = Σ_q c_q σ_q(w_q·x) over the stacked neurons.  The Hessian is assembled from the
    pair structure by :func:`core.gaussian_hessian.structured_hessian` (equal to ``jax.jacfwd``
    of that gradient, symmetrised, to rounding).  ``data`` of the returned Objective is ``None``.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    _check_two_layer(spec, "student")
    _check_two_layer(teacher.spec, "teacher")
    if teacher.spec.input_dim != spec.input_dim:
        raise ValueError(
            f"teacher input_dim {teacher.spec.input_dim} ≠ student input_dim {spec.input_dim}"
        )
    if maxnorm is not None and not maxnorm > 0:
        raise ValueError(f"maxnorm must be positive or None, got {maxnorm!r}")
    acts_s, acts_t = spec.activations[0], teacher.spec.activations[0]
    for a in set(acts_s):
        for b in set(acts_s) | set(acts_t):
            pair_kernel(a, b, n_nodes=n_nodes)  # validates names and n_nodes now
            closed = (a, b) in _CLOSED or (b, a) in _CLOSED
            if not closed and (a in _KINKED or b in _KINKED):
                kink = a if a in _KINKED else b
                with_ = "erf, normal_cdf, relu or identity" if kink == "relu" else "nothing"
                raise ValueError(
                    f"activation pair ({a}, {b}): {kink} pairs only with {with_} in the "
                    f"gaussian-infinite objective (σ′ jumps at 0: its derivatives through "
                    f"quadrature would need {kink}″, which holds a Dirac delta); use finite data"
                )
    tp = unflatten(teacher.spec, jnp.asarray(teacher.theta, jnp.float64))
    v_t, b_t = tp["w1"], tp["w2"][0]
    mse = loss == "mse"

    def blocks(w1, acts1, w2, acts2, partials=True):
        return _kernel_matrices(w1, acts1, w2, acts2, n_nodes, partials)

    def loss_fn(theta: Array, v: Array, b: Array) -> Array:
        p = unflatten(spec, theta)
        w, a = p["w1"], p["w2"][0]
        (k_st,) = blocks(w, acts_s, v, acts_t, partials=False)
        if not mse:
            return -(a @ (k_st @ b)) + barrier(theta, maxnorm)
        (k_ss,) = blocks(w, acts_s, w, acts_s, partials=False)
        (k_tt,) = blocks(v, acts_t, v, acts_t, partials=False)
        # ½(aᵀK_ss a − 2aᵀK_st b + bᵀK_tt b) = ½[aᵀ(K_ss a − K_st b) − (aᵀK_st − bᵀK_tt) b]:
        # each bracket is a difference of two identically computed products, hence exactly
        # 0 when the student equals the teacher.
        return 0.5 * (a @ (k_ss @ a - k_st @ b) - (a @ k_st - b @ k_tt) @ b) + barrier(
            theta, maxnorm
        )

    def grad_fn(theta: Array, v: Array, b: Array) -> Array:
        p = unflatten(spec, theta)
        w, a = p["w1"], p["w2"][0]
        k_st, k11_st, k12_st = blocks(w, acts_s, v, acts_t)
        # ρ's teacher part has coefficients −b.
        g_a = -(k_st @ b)
        g_w_norm = -(k11_st @ b)
        g_w_mix = -(k12_st @ (b[:, None] * v))
        if mse:
            k_ss, k11_ss, k12_ss = blocks(w, acts_s, w, acts_s)
            g_a = k_ss @ a + g_a
            g_w_norm = k11_ss @ a + g_w_norm
            g_w_mix = k12_ss @ (a[:, None] * w) + g_w_mix
        g_w = a[:, None] * (2.0 * g_w_norm[:, None] * w + g_w_mix)
        g = jnp.concatenate([g_w.reshape(-1), g_a])
        if maxnorm is not None:
            g = g + jax.grad(barrier)(theta, maxnorm)
        return g

    # Imported here: core.gaussian_hessian builds on this module's kernels.
    from core.gaussian_hessian import structured_hessian

    def hess_fn(theta: Array, v: Array, b: Array) -> Array:
        return structured_hessian(
            spec, acts_t, theta, v, b, mse=mse, maxnorm=maxnorm, n_nodes=n_nodes
        )

    def vg_fn(theta: Array, v: Array, b: Array) -> tuple[Array, Array]:
        return loss_fn(theta, v, b), grad_fn(theta, v, b)

    # Teacher arrays are passed as arguments, not closed over, so XLA cannot constant-fold
    # the teacher blocks differently from the student blocks (exact zero at the teacher).
    return objective_from(
        spec,
        (loss_fn, grad_fn, vg_fn, hess_fn),
        (v_t, b_t),
        data=None,
        name=f"gaussian-infinite-{loss}",
        extras={"kind": "gaussian-infinite", "loss": loss, "n_nodes": n_nodes, "teacher": teacher},
    )


def gauss_hermite_dataset(teacher: Teacher, n_nodes: int) -> Dataset:
    """Tensor-product Gauss-Hermite rule for x ~ N(0, I_d), d ≤ 2, labelled by the teacher.

    x has shape (n_nodes^d, d), y = teacher(x) shape (n_nodes^d, k), weights (n_nodes^d,)
    sum to 1, so ``mse_objective(spec, dataset)`` is ½ Σ_n w_n ‖f(x_n) − y_n‖² ≈ ½ E‖f − g‖²
    for any student and teacher (biases, depth), exactly so for polynomial integrands of
    degree < 2·n_nodes per coordinate (as MLPGradientFlow's ``gauss_hermite_net``).
    """
    d = int(teacher.input_dim)
    if d > 2:
        raise ValueError(f"gauss_hermite_dataset needs input_dim ≤ 2 (n_nodes^d points), got {d}")
    if not isinstance(n_nodes, int | np.integer) or n_nodes < 1:
        raise ValueError(f"n_nodes must be a positive integer, got {n_nodes!r}")
    z, w = _hermite_rule(int(n_nodes))
    grids = np.meshgrid(*([z] * d), indexing="ij")
    wgrids = np.meshgrid(*([w] * d), indexing="ij")
    x = jnp.asarray(np.stack([g.reshape(-1) for g in grids], axis=1))
    weights = np.prod(np.stack([g.reshape(-1) for g in wgrids], axis=1), axis=1)
    weights = jnp.asarray(weights / weights.sum())
    return Dataset(x, jnp.asarray(teacher(x), jnp.float64), weights)
