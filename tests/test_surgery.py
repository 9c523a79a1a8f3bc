"""Tests for core.surgery: merge/split neurons, symmetry-induced critical points, saddle escape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import trust_exact

import core  # noqa: F401  (float64)
from core.analysis import hessian_spectrum
from core.data import make_dataset
from core.networks import forward, init_params, make_spec, unflatten
from core.objectives import mse_objective
from core.surgery import (
    hessian_eigenpair,
    merge_neurons,
    perturb_along_eigenvector,
    split_neuron,
)
from core.teachers import random_teacher

MUS = [-1.0, 0.0, 0.3, 0.5, 2.0]


@pytest.fixture(scope="module")
def data():
    teacher = random_teacher(make_spec(2, [4], "softplus", bias=True), jax.random.PRNGKey(1))
    return make_dataset(teacher, "gaussian", 64, 0)


@pytest.fixture(scope="module")
def small_minimum(data):
    """A minimum of a 2-neuron softplus student (d = 2, N = 64) by scipy trust-exact."""
    spec = make_spec(2, [2], "softplus", bias=True)
    obj = mse_objective(spec, data)
    best = None
    for seed in range(4):
        th0 = np.asarray(init_params(spec, jax.random.PRNGKey(seed)))
        res = trust_exact(obj, th0, 1e-13, 300)
        g = float(np.max(np.abs(obj.grad(res.x))))
        if best is None or g < best[1]:
            best = (res.x, g)
        if g < 1e-12:
            break
    theta, g = best
    assert g < 1e-11, f"trust-exact did not converge (‖∇L‖∞ = {g})"
    sp = hessian_spectrum(obj.hessian(theta))
    assert sp.index == 0 and sp.n_zero == 0, sp  # a strict minimum of the narrow net
    return spec, theta


def _mixed_net(seed=0):
    spec = make_spec(3, [4], ["tanh", "softplus", "relu", "tanh"], bias=[True, True])
    theta = init_params(spec, jax.random.PRNGKey(seed))
    theta = theta.at[spec.offsets()["b1"]].set(jnp.array([0.1, -0.2, 0.3, 0.4]))
    return spec, np.asarray(theta)


# --------------------------------------------------------------------------- split / merge


@pytest.mark.parametrize("mu", MUS)
def test_split_keeps_function_and_carries_activations(mu):
    spec, theta = _mixed_net()
    x = np.random.default_rng(0).standard_normal((50, 3))
    new_spec, new_theta = split_neuron(spec, theta, 2, mu)
    assert new_spec.widths == (5,)
    assert new_spec.activations == (("tanh", "softplus", "relu", "tanh", "relu"),)
    assert new_theta.shape == (new_spec.n_params,)
    np.testing.assert_allclose(
        forward(new_spec, new_theta, x), forward(spec, theta, x), rtol=1e-12, atol=1e-13
    )
    p = {k: np.asarray(v) for k, v in unflatten(new_spec, new_theta).items()}
    a = float(np.asarray(theta)[spec.offsets()["w2"]][2])
    assert p["w2"][0, 2] == pytest.approx(mu * a) and p["w2"][0, 4] == pytest.approx((1 - mu) * a)
    np.testing.assert_array_equal(p["w1"][4], p["w1"][2])
    assert p["b1"][4] == p["b1"][2]


def test_merge_then_split_round_trips_exactly():
    spec, theta = _mixed_net(1)
    s1, t1 = split_neuron(spec, theta, 1, 0.3)
    s2, t2 = merge_neurons(s1, t1, 1, 4)
    assert s2 == spec
    np.testing.assert_allclose(t2, theta, rtol=0, atol=1e-15)
    # merge with the arguments swapped lands in the same place
    s3, t3 = merge_neurons(s1, t1, 4, 1)
    assert s3 == spec
    np.testing.assert_allclose(t3, theta, atol=1e-15)


def test_merge_averages_inputs_sums_outputs_and_keeps_order():
    spec, theta = _mixed_net(2)
    new_spec, new_theta = merge_neurons(spec, theta, 3, 0)
    assert new_spec.widths == (3,)
    assert new_spec.activations == (("tanh", "softplus", "relu"),)
    p, q = unflatten(spec, theta), unflatten(new_spec, new_theta)
    np.testing.assert_allclose(q["w1"][0], 0.5 * (p["w1"][0] + p["w1"][3]))
    assert q["b1"][0] == pytest.approx(0.5 * (p["b1"][0] + p["b1"][3]))
    assert q["w2"][0, 0] == pytest.approx(p["w2"][0, 0] + p["w2"][0, 3])
    np.testing.assert_array_equal(q["w1"][1:], p["w1"][1:3])
    np.testing.assert_array_equal(q["b2"], p["b2"])
    # merging neurons with w_i ≠ w_j changes the function (it is a real move)
    x = np.random.default_rng(1).standard_normal((20, 3))
    assert not np.allclose(forward(new_spec, new_theta, x), forward(spec, theta, x))


def test_split_and_merge_multi_output_and_no_bias():
    spec = make_spec(2, [3], "erf", bias=False, output_dim=2)
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(4)))
    x = np.random.default_rng(2).standard_normal((10, 2))
    s1, t1 = split_neuron(spec, theta, 0, 0.25)
    np.testing.assert_allclose(forward(s1, t1, x), forward(spec, theta, x), atol=1e-13)
    s2, t2 = merge_neurons(s1, t1, 0, 3)
    np.testing.assert_allclose(t2, theta, atol=1e-15)
    assert s2 == spec


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s, t: split_neuron(s, t, 4, 0.5), "i=4 out of range"),
        (lambda s, t: split_neuron(s, t, 0, float("nan")), "mu must be finite"),
        (lambda s, t: merge_neurons(s, t, 1, 1), "two different neurons"),
        (lambda s, t: merge_neurons(s, t, 0, 1), "different activations"),
        (lambda s, t: merge_neurons(s, t, 0, 1.5), "j must be an integer"),
    ],
)
def test_surgery_rejects_bad_arguments(call, match):
    spec, theta = _mixed_net()
    with pytest.raises(ValueError, match=match):
        call(spec, theta)


def test_surgery_rejects_deep_nets():
    spec = make_spec(2, [3, 2], "tanh")
    theta = init_params(spec, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="exactly one hidden layer"):
        split_neuron(spec, theta, 0, 0.5)
    with pytest.raises(ValueError, match="exactly one hidden layer"):
        merge_neurons(spec, theta, 0, 1)


# --------------------------------------------------------------------------- critical points


def test_split_of_minimum_is_a_line_of_critical_saddles(small_minimum, data):
    """Şimşek et al. 2021: every μ gives a critical point of the wider net with the same loss.

    The direction along the line (a_i, a_copy) → (a_i + s, a_copy − s) is exactly flat, so
    n_zero ≥ 1; the index is reported for the record (for this minimum every μ tested is a
    saddle, and μ ↔ 1 − μ give the same spectrum by the neuron-swap symmetry).
    """
    spec, theta = small_minimum
    narrow = mse_objective(spec, data)
    loss0 = float(narrow.loss(theta))
    spectra = {}
    wide = None
    for mu in MUS:
        s2, t2 = split_neuron(spec, theta, 0, mu)
        wide = wide or mse_objective(s2, data)  # the same wider spec for every μ
        assert wide.spec == s2
        assert float(np.max(np.abs(wide.grad(t2)))) < 1e-11
        assert float(wide.loss(t2)) == pytest.approx(loss0, rel=1e-12)
        sp = hessian_spectrum(wide.hessian(t2))
        spectra[mu] = sp
        assert sp.n_zero >= 1
        assert sp.index + sp.n_zero >= 1  # a saddle or a flat direction
    print({mu: (sp.index, sp.n_zero) for mu, sp in spectra.items()})
    np.testing.assert_allclose(
        spectra[-1.0].eigenvalues, spectra[2.0].eigenvalues, atol=1e-10, rtol=1e-7
    )
    assert any(sp.index >= 1 for sp in spectra.values())


def test_perturbation_follows_min_eigenvector_and_lowers_loss_at_saddle(small_minimum, data):
    spec, theta = small_minimum
    s2, t2 = split_neuron(spec, theta, 0, 0.5)
    wide = mse_objective(s2, data)
    # independent reference Hessian: jax.hessian of a directly written loss, numpy eigh
    x, y = np.asarray(data.x), np.asarray(data.y)

    def loss(t):
        return 0.5 * jnp.mean((forward(s2, t, x) - y) ** 2)

    h = np.asarray(jax.jit(jax.hessian(loss))(jnp.asarray(t2)))
    lam, vec = np.linalg.eigh(h)
    assert lam[0] < -1e3 * abs(lam).max() * np.finfo(float).eps  # a genuine saddle
    eps = 1e-3
    t3 = perturb_along_eigenvector(wide, t2, eps)
    d = (t3 - t2) / eps
    assert np.linalg.norm(d) == pytest.approx(1.0, rel=1e-12)
    assert abs(float(d @ vec[:, 0])) == pytest.approx(1.0, abs=1e-8)
    assert float(wide.loss(t3)) < float(wide.loss(t2))
    # second-order prediction of the decrease: ½ λ_min ε²
    drop = float(wide.loss(t3)) - float(wide.loss(t2))
    assert drop == pytest.approx(0.5 * lam[0] * eps**2, rel=0.2)
    lam_max, v_max = hessian_eigenpair(wide, t2, "max")
    assert lam_max == pytest.approx(lam[-1], rel=1e-10)
    assert abs(float(v_max @ vec[:, -1])) == pytest.approx(1.0, abs=1e-8)
    t4 = perturb_along_eigenvector(wide, t2, eps, which="max")
    assert float(wide.loss(t4)) > float(wide.loss(t2))


def test_perturbation_escapes_origin_saddle():
    """θ = 0 of a bias-free tanh net is critical (σ(0) = 0) with curvature ±E[y σ′(0) x]."""
    spec = make_spec(2, [2], "tanh", bias=False)
    teacher = random_teacher(spec, jax.random.PRNGKey(5))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", 100, 3))
    theta = np.zeros(spec.n_params)
    assert float(np.max(np.abs(obj.grad(theta)))) == 0.0
    sp = hessian_spectrum(obj.hessian(theta))
    assert sp.index >= 1
    t1 = perturb_along_eigenvector(obj, theta, 1e-2, which=0)
    assert float(obj.loss(t1)) < float(obj.loss(theta))


def test_perturb_rejects_bad_arguments(small_minimum, data):
    spec, theta = small_minimum
    obj = mse_objective(spec, data)
    with pytest.raises(ValueError, match="eps"):
        perturb_along_eigenvector(obj, theta, 0.0)
    with pytest.raises(ValueError, match="which"):
        perturb_along_eigenvector(obj, theta, 1e-3, which="middle")
    with pytest.raises(ValueError, match="theta has shape"):
        perturb_along_eigenvector(obj, theta[:-1], 1e-3)
