"""Closed-form σ′, σ″ of every activation against autodiff, and per-neuron application."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.activations import ACTIVATIONS, activation_names, apply_per_neuron, get_activation

# Points away from 0 so relu's kink is never hit; wide enough to reach both tails.
Z = jnp.concatenate([jnp.linspace(-6.0, -0.05, 41), jnp.linspace(0.05, 6.0, 41)])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivatives_match_autodiff(name: str) -> None:
    act = get_activation(name)
    d1 = jax.vmap(jax.grad(act.f))(Z)
    d2 = jax.vmap(jax.grad(jax.grad(act.f)))(Z)
    np.testing.assert_allclose(act.df(Z), d1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(act.d2f(Z), d2, rtol=1e-12, atol=1e-14)


def test_known_values() -> None:
    """Conventions from the module docstring, checked against independent NumPy/SciPy formulas."""
    from scipy.special import erf as sp_erf
    from scipy.stats import norm

    z = np.linspace(-4, 4, 33)
    zj = jnp.asarray(z)
    np.testing.assert_allclose(get_activation("erf").f(zj), sp_erf(z / np.sqrt(2)), atol=1e-15)
    np.testing.assert_allclose(get_activation("normal_cdf").f(zj), norm.cdf(z), atol=1e-15)
    np.testing.assert_allclose(get_activation("gelu").f(zj), z * norm.cdf(z), atol=1e-15)
    np.testing.assert_allclose(get_activation("softplus").f(zj), np.logaddexp(z, 0), rtol=1e-15)
    np.testing.assert_allclose(get_activation("silu").f(zj), z / (1 + np.exp(-z)), rtol=1e-14)
    np.testing.assert_allclose(get_activation("relu").df(jnp.zeros(1)), [0.0])
    # MLPGradientFlow's g(z) = sigmoid(4z) + softplus(z) and its sigmoid2 = erf(z/√2)
    g_ref = 1 / (1 + np.exp(-4 * z)) + np.logaddexp(z, 0)
    np.testing.assert_allclose(get_activation("g").f(zj), g_ref, rtol=1e-14)
    np.testing.assert_allclose(get_activation("sigmoid2").f(zj), sp_erf(z / np.sqrt(2)), atol=1e-15)
    np.testing.assert_allclose(get_activation("exp").d2f(zj), np.exp(z), rtol=1e-15)


def test_g_derivatives_by_hand() -> None:
    """g′ = 4s(4z)(1−s(4z)) + s(z), g″ = 16 s(4z)(1−s(4z))(1−2s(4z)) + s(z)(1−s(z)), s = sigmoid,
    written out in NumPy (independent of the e^{−|z|} forms), at MLPGradientFlow's test points."""
    z = np.array([-0.2, 3.0, -5.0, 0.7])
    s = lambda u: 1 / (1 + np.exp(-u))
    s4 = s(4 * z)
    g = get_activation("g")
    np.testing.assert_allclose(g.df(jnp.asarray(z)), 4 * s4 * (1 - s4) + s(z), rtol=1e-13)
    d2 = 16 * s4 * (1 - s4) * (1 - 2 * s4) + s(z) * (1 - s(z))
    np.testing.assert_allclose(g.d2f(jnp.asarray(z)), d2, rtol=1e-12)


def test_softplus_sigmoid_tails_are_accurate() -> None:
    """The exp(−|z|) forms keep full relative precision where naive formulas under/overflow."""
    z = np.array([-700.0, -200.0, -40.0, 40.0, 200.0, 700.0])
    sp = get_activation("softplus")
    e = np.exp(-np.abs(z))  # exact tail values: log1p(e) ≈ e, σ(z) = e/(1+e) for z<0
    np.testing.assert_allclose(sp.f(jnp.asarray(z)), np.maximum(z, 0) + np.log1p(e), rtol=1e-15)
    sig = np.where(z >= 0, 1.0, e) / (1.0 + e)
    np.testing.assert_allclose(sp.df(jnp.asarray(z)), sig, rtol=1e-15)
    np.testing.assert_allclose(sp.d2f(jnp.asarray(z)), e / (1 + e) ** 2, rtol=1e-15)
    assert np.all(np.isfinite(get_activation("sigmoid").d2f(jnp.asarray(z))))


def test_aliases_and_unknown_name() -> None:
    assert get_activation("linear").name == "identity"
    assert get_activation("sigmoid2").name == "erf"  # MLPGradientFlow's name for erf(z/√2)
    assert get_activation("tanh_fast").name == "tanh"
    assert get_activation("g").name == "g"  # not an alias of erf any more (session schema 3)
    assert "softplus" in activation_names() and "linear" in activation_names()
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        get_activation("swish")


@pytest.mark.parametrize("order", [0, 1, 2])
def test_apply_per_neuron_mixed(order: int) -> None:
    names = ("tanh", "softplus", "tanh", "cube")
    z = jax.random.normal(jax.random.PRNGKey(0), (7, 4))
    out = apply_per_neuron(names, z, order)
    pick = ("f", "df", "d2f")[order]
    for i, n in enumerate(names):
        np.testing.assert_allclose(out[:, i], getattr(get_activation(n), pick)(z[:, i]))


def test_jax_free_name_list_matches_the_functions() -> None:
    """core.spec names the activations without importing JAX; core.activations implements them."""
    from core.spec import ACTIVATION_NAMES

    assert set(ACTIVATION_NAMES) == set(ACTIVATIONS)
    assert len(ACTIVATION_NAMES) == len(set(ACTIVATION_NAMES))
