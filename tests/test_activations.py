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


# ------------------------------------------------------- normalised Hermite activations

HERMITE = ["he1", "he2", "he3", "he4"]


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_hermite_values_and_finite_difference_derivatives(p: int) -> None:
    """h_p = He_p/√(p!) against NumPy's hermeval; h_p′, h_p″ against central differences."""
    import math

    act = get_activation(f"he{p}")
    z = np.linspace(-4.0, 4.0, 17)
    he = np.polynomial.hermite_e.hermeval(z, [0.0] * p + [1.0]) / math.sqrt(math.factorial(p))
    np.testing.assert_allclose(act.f(jnp.asarray(z)), he, rtol=1e-14, atol=1e-13)
    zi = np.arange(-3, 4)  # integer input is evaluated in floating point, not truncated
    he_i = np.polynomial.hermite_e.hermeval(zi, [0.0] * p + [1.0]) / math.sqrt(math.factorial(p))
    np.testing.assert_allclose(act.f(jnp.asarray(zi)), he_i, rtol=1e-14, atol=1e-13)
    h = 1e-4  # central differences: error O(h²·f‴) ≈ 1e-7 for these polynomials
    f = lambda u: np.asarray(act.f(jnp.asarray(u)))
    df = lambda u: np.asarray(act.df(jnp.asarray(u)))
    np.testing.assert_allclose(act.df(jnp.asarray(z)), (f(z + h) - f(z - h)) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(
        act.d2f(jnp.asarray(z)), (df(z + h) - df(z - h)) / (2 * h), atol=1e-6
    )
    # He_p′ = p He_{p−1}  ⇔  h_p′ = √p h_{p−1}
    prev = get_activation(f"he{p - 1}").f if p > 1 else jnp.ones_like
    np.testing.assert_allclose(
        act.df(jnp.asarray(z)), np.sqrt(p) * prev(jnp.asarray(z)), atol=1e-12
    )


@pytest.mark.parametrize("rho", [-0.8, 0.0, 0.35, 0.9])
def test_hermite_normalisation_by_quadrature(rho: float) -> None:
    """E[h_p(u) h_q(v)] = δ_pq ρ^p for unit-variance (u, v) of correlation ρ, by a 2-D
    Gauss-Hermite rule (20 nodes per axis: exact for polynomials of degree ≤ 39)."""
    z, w = np.polynomial.hermite_e.hermegauss(20)
    w = w / w.sum()
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    ww = np.outer(w, w)
    u, v = z1, rho * z1 + np.sqrt(1 - rho**2) * z2
    for p in range(1, 5):
        for q in range(1, 5):
            hp = np.asarray(get_activation(f"he{p}").f(jnp.asarray(u)))
            hq = np.asarray(get_activation(f"he{q}").f(jnp.asarray(v)))
            expected = rho**p if p == q else 0.0
            assert np.sum(ww * hp * hq) == pytest.approx(expected, abs=1e-13), (p, q)


def test_hermite_normalisation_by_monte_carlo() -> None:
    """The same identity on 2·10⁵ samples, within 5 standard errors (independent of any rule)."""
    rng = np.random.default_rng(7)
    rho, n = 0.6, 200_000
    z1, z2 = rng.standard_normal((2, n))
    u, v = z1, rho * z1 + np.sqrt(1 - rho**2) * z2
    for p in range(1, 5):
        for q in range(1, 5):
            prod = np.asarray(get_activation(f"he{p}").f(jnp.asarray(u))) * np.asarray(
                get_activation(f"he{q}").f(jnp.asarray(v))
            )
            err = prod.std() / np.sqrt(n)
            expected = rho**p if p == q else 0.0
            assert abs(prod.mean() - expected) < 5 * err, (p, q, prod.mean(), expected)


def test_hermite_names_are_accepted_wherever_activations_are(tmp_path) -> None:
    """Student, teacher, per-neuron lists and per-layer ``activations`` take he1..he4."""
    from core.config import load_config
    from core.problem import build_problem

    text = """
seed = 1
[teacher]
kind = "random"
input_dim = 3
widths = [2]
activation = "he3"
bias = false
[student]
widths = [3, 2]
activations = [["he1", "he2", "he4"], "he3"]
bias = false
[data]
samples = 50
"""
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    problem = build_problem(load_config(path))
    assert problem.spec.activations == (("he1", "he2", "he4"), ("he3", "he3"))
    assert problem.teacher.spec.activations == (("he3", "he3"),)
    assert np.isfinite(float(problem.objective.loss(jnp.asarray(problem.theta0))))
    assert all(n in activation_names() for n in HERMITE)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_parity_matches_the_function(name: str) -> None:
    """Each registered activation's parity (core.spec.PARITY, the one table) is what its
    function does: f(−z) = −f(z) exactly for the odd ones (−1), f(−z) = f(z) for the even
    ones (+1), neither otherwise (0) — so a new activation cannot be misclassified."""
    act = get_activation(name)
    z = jnp.linspace(-3.0, 3.0, 61)
    f, f_neg = np.asarray(act.f(z)), np.asarray(act.f(-z))
    scale = 1.0 + np.max(np.abs(f))
    odd = np.max(np.abs(f_neg + f)) < 1e-12 * scale
    even = np.max(np.abs(f_neg - f)) < 1e-12 * scale
    assert act.parity == (-1 if odd else 1 if even else 0)


def test_one_odd_table_for_analysis_and_symmetry() -> None:
    """core.analysis' teacher matching and core.symmetry's sign flips read the registry's
    parity (he1 and he3 were missing from the analysis' own copy)."""
    import core.analysis
    import core.symmetry
    from core.spec import ACTIVATION_NAMES, EVEN_ACTIVATIONS, ODD_ACTIVATIONS, PARITY

    assert set(PARITY) <= set(ACTIVATION_NAMES)
    assert core.analysis.ODD_ACTIVATIONS is ODD_ACTIVATIONS is core.symmetry.ODD
    assert core.symmetry.EVEN is EVEN_ACTIVATIONS
    assert {"he1", "he3"} <= ODD_ACTIVATIONS
    assert {n for n, a in ACTIVATIONS.items() if a.parity == -1} == ODD_ACTIVATIONS
