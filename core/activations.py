"""Activation functions with their first and second derivatives.

Every activation is an :class:`Activation` holding three elementwise functions
σ, σ′, σ″ written out in closed form, so that the structured Hessian in
:mod:`core.objectives` never needs nested autodiff of the activation.  The
closed forms are checked against ``jax.grad`` in ``tests/test_activations.py``.

Conventions (as in MLPGradientFlow.jl):

* ``erf``:  σ(z) = erf(z/√2), so that σ is the odd "normal erf" whose Gaussian
  expectations have the arcsine kernel closed form.
* ``normal_cdf``: σ(z) = Φ(z) = ½(1 + erf(z/√2)).
* ``gelu``: σ(z) = z·Φ(z) (exact, not the tanh approximation).
* ``silu``: σ(z) = z·sigmoid(z).
* ``relu``: σ′(0) = 0 and σ″ = 0 (the a.e. derivative).
* ``g``: σ(z) = sigmoid(4z) + softplus(z), MLPGradientFlow's ``g`` (its papers' default);
  MLPGradientFlow's ``sigmoid2`` = erf(z/√2) is the alias ``sigmoid2`` of ``erf`` here.
* ``exp``: σ = σ′ = σ″ = eᶻ.
* ``selu``: σ(z) = λz for z > 0, λα(eᶻ − 1) for z ≤ 0, with MLPGradientFlow's constants
  λ = 1.05070098, α = 1.67326324 (the self-normalising values to 8 decimals, as there);
  σ′(0) = λα and σ″ = λα eᶻ for z ≤ 0, 0 for z > 0 (its one-sided conventions at the kink).
* ``sigmoid_fast`` is an alias of ``sigmoid``: MLPGradientFlow's ``sigmoid`` *is*
  ``sigmoid_fast`` (NNlib's faster evaluation of the same logistic function 1/(1 + e^{−z})).
* ``square``: σ(z) = z² — NOT as in MLPGradientFlow.jl, whose ``square`` is z²/2 (kept:
  saved sessions use it; docs/DESIGN.md lists the differences).
* ``he1`` … ``he4``: h_p(z) = He_p(z)/√(p!), the probabilists' Hermite polynomials
  He₁ = z, He₂ = z² − 1, He₃ = z³ − 3z, He₄ = z⁴ − 6z² + 3, normalised so that for
  unit-variance u, v with correlation ρ, E[h_p(u) h_q(v)] = δ_pq ρ^p (the multi-index
  paper's activations; h₁ is the identity).  h_p′ = √p · h_{p−1} (He_p′ = p He_{p−1}).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf as _erf

from core.spec import ALIASES, PARITY, activation_names, canonical_activation

Array = jax.Array

__all__ = [
    "ACTIVATIONS",
    "ALIASES",
    "Activation",
    "activation_names",
    "apply_per_neuron",
    "get_activation",
]
Elementwise = Callable[[Array], Array]

_SQRT2 = 2.0**0.5
_INV_SQRT_2PI = (2.0 * jnp.pi) ** -0.5


@dataclass(frozen=True)
class Activation:
    """An elementwise activation σ with closed-form σ′ and σ″."""

    name: str
    f: Elementwise
    df: Elementwise
    d2f: Elementwise

    def __call__(self, z: Array) -> Array:
        return self.f(z)

    @property
    def parity(self) -> int:
        """−1 odd (σ(−z) = −σ(z)), +1 even (σ(−z) = σ(z)), 0 neither (:data:`core.spec.PARITY`)."""
        return PARITY.get(self.name, 0)


def _phi(z: Array) -> Array:
    """Standard normal density φ(z)."""
    return _INV_SQRT_2PI * jnp.exp(-0.5 * z * z)


def _Phi(z: Array) -> Array:
    """Standard normal CDF Φ(z)."""
    return 0.5 * (1.0 + _erf(z / _SQRT2))


# Softplus and sigmoid are written in terms of e = exp(−|z|) ∈ (0, 1]: this never
# overflows, keeps full relative precision in both tails, and lets XLA share the single
# exp (common-subexpression elimination) when σ, σ′ and σ″ are evaluated in one jit —
# transcendental functions dominate the cost of the gradient and Hessian.
def _exp_neg_abs(z: Array) -> Array:
    return jnp.exp(-jnp.abs(z))


def _softplus(z: Array) -> Array:
    """log(1 + eᶻ) = max(z, 0) + log1p(e^{−|z|})."""
    return jnp.maximum(z, 0.0) + jnp.log1p(_exp_neg_abs(z))


def _sigmoid(z: Array) -> Array:
    """1/(1 + e^{−z}) = 1/(1+e) for z ≥ 0 and e/(1+e) for z < 0, e = e^{−|z|}."""
    e = _exp_neg_abs(z)
    return jnp.where(z >= 0.0, 1.0, e) / (1.0 + e)


def _d_sigmoid(z: Array) -> Array:
    """σ(z)(1 − σ(z)) = e/(1+e)², e = e^{−|z|} (even in z)."""
    e = _exp_neg_abs(z)
    u = 1.0 + e
    return e / (u * u)


def _d2_sigmoid(z: Array) -> Array:
    """σ(1−σ)(1−2σ), with 1 − 2σ(z) = −sign(z)(1−e)/(1+e)."""
    e = _exp_neg_abs(z)
    u = 1.0 + e
    return -jnp.sign(z) * e * (1.0 - e) / (u * u * u)


def _hermite(p: int) -> Activation:
    """h_p = He_p/√(p!) with h_p′, h_p″ as Horner polynomials (coefficients exact in float64
    up to the one division by √(p!)); from NumPy's probabilists' Hermite basis."""
    coef = np.polynomial.hermite_e.herme2poly([0.0] * p + [1.0]) / math.sqrt(math.factorial(p))
    c0 = coef[::-1]  # highest power first, for jnp.polyval
    c1 = np.polynomial.polynomial.polyder(coef)[::-1]
    c2 = np.polynomial.polynomial.polyder(coef, 2)[::-1] if p >= 2 else np.zeros(1)

    def horner(c: np.ndarray) -> Elementwise:
        cs = tuple(float(x) for x in c)

        def poly(z: Array) -> Array:
            z = jnp.asarray(z)
            acc = jnp.full(z.shape, cs[0], jnp.result_type(z, 1.0))  # integer z → float
            for ci in cs[1:]:
                acc = acc * z + ci
            return acc

        return poly

    return Activation(f"he{p}", horner(c0), horner(c1), horner(c2))


def _tanh_d(z: Array) -> Array:
    t = jnp.tanh(z)
    return 1.0 - t * t


def _tanh_d2(z: Array) -> Array:
    t = jnp.tanh(z)
    return -2.0 * t * (1.0 - t * t)


def _g(z: Array) -> Array:
    """MLPGradientFlow's g(z) = sigmoid(4z) + softplus(z)."""
    return _sigmoid(4.0 * z) + _softplus(z)


def _d_g(z: Array) -> Array:
    """g′(z) = 4 sigmoid′(4z) + sigmoid(z)."""
    return 4.0 * _d_sigmoid(4.0 * z) + _sigmoid(z)


def _d2_g(z: Array) -> Array:
    """g″(z) = 16 sigmoid″(4z) + sigmoid′(z)."""
    return 16.0 * _d2_sigmoid(4.0 * z) + _d_sigmoid(z)


#: MLPGradientFlow's selu constants (λ, α), 8 decimals as there (not the exact
#: self-normalising 1.0507009873…, 1.6732632423…): a net carried over computes the same σ.
_SELU_LAMBDA, _SELU_ALPHA = 1.05070098, 1.67326324


def _selu(z: Array) -> Array:
    """λz for z > 0, λα(eᶻ − 1) for z ≤ 0 (e^{min(z, 0)}: no overflow, finite gradients)."""
    return _SELU_LAMBDA * jnp.where(z > 0.0, z, _SELU_ALPHA * jnp.expm1(jnp.minimum(z, 0.0)))


def _d_selu(z: Array) -> Array:
    """λ for z > 0, λα eᶻ for z ≤ 0."""
    return _SELU_LAMBDA * jnp.where(z > 0.0, 1.0, _SELU_ALPHA * jnp.exp(jnp.minimum(z, 0.0)))


def _d2_selu(z: Array) -> Array:
    """0 for z > 0, λα eᶻ for z ≤ 0."""
    return jnp.where(z > 0.0, 0.0, _SELU_LAMBDA * _SELU_ALPHA * jnp.exp(jnp.minimum(z, 0.0)))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("softplus", _softplus, _sigmoid, _d_sigmoid),
        Activation(
            "relu",
            lambda z: jnp.maximum(z, 0.0),
            lambda z: jnp.where(z > 0.0, 1.0, 0.0).astype(z.dtype),
            jnp.zeros_like,
        ),
        Activation("sigmoid", _sigmoid, _d_sigmoid, _d2_sigmoid),
        Activation("tanh", jnp.tanh, _tanh_d, _tanh_d2),
        Activation(
            "erf",
            lambda z: _erf(z / _SQRT2),
            lambda z: 2.0 * _phi(z),
            lambda z: -2.0 * z * _phi(z),
        ),
        Activation("normal_cdf", _Phi, _phi, lambda z: -z * _phi(z)),
        Activation(
            "gelu",
            lambda z: z * _Phi(z),
            lambda z: _Phi(z) + z * _phi(z),
            lambda z: (2.0 - z * z) * _phi(z),
        ),
        Activation(
            "silu",
            lambda z: z * _sigmoid(z),
            lambda z: _sigmoid(z) + z * _d_sigmoid(z),
            lambda z: 2.0 * _d_sigmoid(z) + z * _d2_sigmoid(z),
        ),
        Activation("square", lambda z: z * z, lambda z: 2.0 * z, lambda z: 2.0 * jnp.ones_like(z)),
        Activation("cube", lambda z: z**3, lambda z: 3.0 * z * z, lambda z: 6.0 * z),
        Activation("identity", lambda z: z, jnp.ones_like, jnp.zeros_like),
        Activation("g", _g, _d_g, _d2_g),
        Activation("exp", jnp.exp, jnp.exp, jnp.exp),
        Activation("selu", _selu, _d_selu, _d2_selu),
        *(_hermite(p) for p in (1, 2, 3, 4)),
    ]
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name (or alias); raise ``ValueError`` naming the options."""
    return ACTIVATIONS[canonical_activation(name)]


def apply_per_neuron(names: tuple[str, ...], z: Array, order: int = 0) -> Array:
    """Apply σ^(order) column-wise where column ``i`` of ``z`` (shape (..., k)) uses ``names[i]``.

    For a single distinct name this is just the elementwise function; for a mixed
    tuple each distinct activation is evaluated on the whole array and the columns
    are selected with a mask (k is small, so this costs a few extra elementwise ops).
    """
    distinct = sorted(set(names))
    fns = [get_activation(n) for n in distinct]
    pick = (lambda a: a.f, lambda a: a.df, lambda a: a.d2f)[order]
    if len(distinct) == 1:
        return pick(fns[0])(z)
    out = jnp.zeros_like(z)
    for name, act in zip(distinct, fns, strict=True):
        mask = jnp.asarray([n == name for n in names])
        out = jnp.where(mask, pick(act)(z), out)
    return out
