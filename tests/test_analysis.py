"""Tests for core.analysis: spectrum, classification, neuron roles, channels, GLU, analyze."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import trust_exact

import core  # noqa: F401  (float64)
from core.activations import get_activation
from core.analysis import (
    COPY_COSINE,
    Channel,
    analyze,
    classify,
    detect_channels,
    gaussian_sample,
    glu_function,
    hessian_spectrum,
    neuron_response,
    neuron_table,
)
from core.data import make_dataset
from core.networks import flatten, forward, init_params, make_spec
from core.objectives import mse_objective
from core.teachers import network_teacher, orthonormal_teacher, random_teacher

# --------------------------------------------------------------------------- spectrum


def _random_orthogonal(n: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def test_spectrum_of_known_hessian_counts_index_and_zeros():
    lam = np.array([-3.0, -1e-3, 0.0, 1e-15, 2.0, 5.0])
    q = _random_orthogonal(lam.size, 0)
    h = q @ np.diag(lam) @ q.T
    sp = hessian_spectrum(h)
    np.testing.assert_allclose(sp.eigenvalues, np.sort(lam), atol=1e-13)
    assert sp.index == 2
    assert sp.n_zero == 2
    assert sp.flat
    assert sp.n_positive == 2
    # the default tolerance scales with max|λ| (and is far below the smallest real curvature)
    assert 5.0 * 1e-12 < sp.tol < 1e-3
    assert hessian_spectrum(1e6 * h).tol == pytest.approx(1e6 * sp.tol)


def test_spectrum_symmetrises_and_honours_explicit_tol():
    h = np.diag([-2.0, 0.5, 3.0])
    h[0, 1] = 1.0  # asymmetric: spectrum of ½(H + Hᵀ)
    ref = np.linalg.eigvalsh(0.5 * (h + h.T))
    sp = hessian_spectrum(h, tol=0.6)
    np.testing.assert_allclose(sp.eigenvalues, ref, rtol=1e-14)
    assert sp.index == int(np.sum(ref < -0.6))
    assert sp.n_zero == int(np.sum(np.abs(ref) <= 0.6))
    assert not hessian_spectrum(np.diag([1.0, 2.0])).flat


def test_spectrum_of_zero_hessian_uses_floor():
    sp = hessian_spectrum(np.zeros((3, 3)))
    assert sp.n_zero == 3 and sp.index == 0 and sp.tol > 0


@pytest.mark.parametrize(
    ("h", "tol", "match"),
    [
        (np.zeros((2, 3)), None, "square"),
        (np.array([[np.nan]]), None, "non-finite"),
        (np.eye(2), -1.0, "tol"),
    ],
)
def test_spectrum_rejects_bad_input(h, tol, match):
    with pytest.raises(ValueError, match=match):
        hessian_spectrum(h, tol)


def test_classify():
    saddle = hessian_spectrum(np.diag([-1.0, 2.0]))
    minimum = hessian_spectrum(np.diag([0.0, 2.0]))
    ch = Channel((0, 1), 1e-3, 1.0, 1.0, [1.0], [1.0], 1e-6)
    assert classify(saddle, 1e-14, [], 1e-10) == "saddle"
    assert classify(minimum, 1e-14, [], 1e-10) == "minimum"
    assert minimum.flat
    assert classify(minimum, 1e-6, [], 1e-10) == "unconverged"
    assert classify(minimum, float("nan"), [], 1e-10) == "unconverged"
    assert classify(minimum, 1e-6, [ch], 1e-10) == "channel"


# --------------------------------------------------------------------------- channels


def _channel_point(eps: float, *, c=0.7, big_a=1.3, bias=True, seed=0):
    """Width-3 softplus net whose neurons 0, 1 are w ± εΔ with a = c/2 ± A/(2ε)."""
    rng = np.random.default_rng(seed)
    d = 2
    spec = make_spec(d, [3], "softplus", bias=bias)
    m = d + 1 if bias else d
    w = rng.standard_normal(m)
    delta = rng.standard_normal(m)
    delta /= np.linalg.norm(delta)
    wt = np.stack([w + eps * delta, w - eps * delta, rng.standard_normal(m)])
    a = np.array([c / 2 + big_a / (2 * eps), c / 2 - big_a / (2 * eps), 0.8])
    params = {"w1": wt[:, :d], "w2": a[None, :]}
    if bias:
        params |= {"b1": wt[:, d], "b2": np.array([0.1])}
    return spec, np.asarray(flatten(spec, params)), w, delta


@pytest.mark.parametrize("bias", [True, False])
def test_detect_channel_recovers_constructed_pair(bias):
    eps, c, big_a = 1e-3, 0.7, 1.3
    spec, theta, w, delta = _channel_point(eps, c=c, big_a=big_a, bias=bias)
    x = gaussian_sample(2, 2000, seed=1)
    chans = detect_channels(spec, theta, x)
    assert len(chans) == 1
    ch = chans[0]
    assert ch.neurons == (0, 1)
    assert ch.epsilon == pytest.approx(eps, rel=1e-12)
    assert ch.c == pytest.approx(c, rel=1e-9)
    assert pytest.approx(big_a, rel=1e-9) == ch.A
    np.testing.assert_allclose(ch.w, w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ch.delta, delta, rtol=1e-9, atol=1e-11)
    assert ch.glu_error < 1e-4


def test_glu_error_vanishes_like_eps_squared():
    """Taylor about the midpoint: odd orders cancel, so the GLU error is O(ε²) (hence O(ε))."""
    x = gaussian_sample(2, 2000, seed=2)
    errs = []
    for eps in [4e-2, 2e-2, 1e-2]:
        spec, theta, _, _ = _channel_point(eps)
        (ch,) = detect_channels(spec, theta, x)
        errs.append(ch.glu_error)
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=0.05)
    assert errs[-1] < 1e-2


def test_glu_function_matches_pair_output():
    eps = 1e-5
    spec, theta, _, _ = _channel_point(eps)
    x = gaussian_sample(2, 500, seed=3)
    (ch,) = detect_channels(spec, theta, x)
    # the pair's output is the net minus neuron 2 and the output bias
    p_other = np.asarray(theta).copy()
    w2 = spec.offsets()["w2"]
    p_other[w2.start : w2.start + 2] = 0.0
    pair = np.asarray(forward(spec, theta, x) - forward(spec, p_other, x))[:, 0]
    glu = glu_function(ch, "softplus")(x)
    assert np.sqrt(np.mean((pair - glu) ** 2) / np.mean(pair**2)) < 1e-8
    assert glu_function(ch, get_activation("softplus"))(x[:1]).shape == (1,)
    with pytest.raises(ValueError, match="columns"):
        glu_function(ch, "softplus")(np.zeros((2, 5)))


@pytest.mark.parametrize("seed", range(5))
def test_no_false_channel_on_random_nets(seed):
    spec = make_spec(3, [6], "softplus", bias=True)
    theta = init_params(spec, jax.random.PRNGKey(seed), scale=2.0)
    x = gaussian_sample(3, 1000, seed=seed)
    assert detect_channels(spec, theta, x) == []
    teacher = random_teacher(spec, jax.random.PRNGKey(100 + seed))
    assert detect_channels(spec, teacher.theta, x) == []


def test_exact_duplicate_with_opposite_outputs_is_not_a_channel():
    """A neuron split with μ = 50 (ε = 0, a = 50a₀, −49a₀) lies on a line of critical points."""
    spec = make_spec(2, [3], "tanh", bias=False)
    w = np.array([[1.0, 0.5], [1.0, 0.5], [-0.3, 1.2]])
    theta = flatten(spec, {"w1": w, "w2": np.array([[50.0, -49.0, 1.0]])})
    assert detect_channels(spec, theta, gaussian_sample(2, 500)) == []


def test_close_pair_with_small_output_weights_is_not_a_channel():
    spec = make_spec(2, [3], "softplus", bias=False)
    w = np.array([[1.0, 0.5], [1.0, 0.52], [-0.3, 1.2]])
    theta = flatten(spec, {"w1": w, "w2": np.array([[0.5, -0.5, 3.0]])})
    assert detect_channels(spec, theta, gaussian_sample(2, 500)) == []


def test_detect_channels_checks_inputs_and_skips_deep_nets():
    spec, theta, _, _ = _channel_point(1e-3)
    with pytest.raises(ValueError, match="x must have shape"):
        detect_channels(spec, theta, np.zeros((4, 3)))
    deep = make_spec(2, [3, 2], "softplus")
    assert detect_channels(deep, init_params(deep, jax.random.PRNGKey(0)), np.zeros((4, 2))) == []


# --------------------------------------------------------------------------- neurons


def _erf_teacher():
    return orthonormal_teacher(3, 3, "erf")  # v_j = e_j, unit output weights


def test_copy_and_average_roles():
    teacher = _erf_teacher()
    spec = make_spec(3, [5], "erf", bias=False)
    v = np.eye(3)
    w1 = np.stack(
        [
            2.0 * v[0],  # copy of teacher neuron 0
            v[1] + v[2],  # average of teacher neurons 1, 2
            -(v[0] + v[1] + v[2]),  # sign-flipped average (erf is odd)
            np.array([1.0, -1.0, 0.3]),  # neither
            -1.5 * v[2],  # sign-flipped copy of neuron 2
        ]
    )
    theta = flatten(spec, {"w1": w1, "w2": np.array([[1.0, 1.0, -1.0, 0.5, -1.0]])})
    table = neuron_table(spec, theta, teacher)
    assert [n.role for n in table] == ["copy", "average", "average", "", "copy"]
    assert table[0].nearest_teacher == 0 and table[0].cosine == pytest.approx(1.0)
    assert table[4].nearest_teacher == 2 and table[4].cosine == pytest.approx(-1.0)
    assert table[1].cosine == pytest.approx(1 / np.sqrt(2)) and table[1].cosine < COPY_COSINE
    assert table[0].norm == pytest.approx(2.0)
    assert table[0].b is None and table[0].a == [1.0]
    np.testing.assert_allclose(table[1].w, v[1] + v[2])


def test_even_activation_does_not_match_flipped_neurons():
    teacher = orthonormal_teacher(2, 2, "softplus")
    spec = make_spec(2, [2], "softplus", bias=False)
    theta = flatten(spec, {"w1": np.array([[-1.0, 0.0], [-1.0, -1.0]]), "w2": np.ones((1, 2))})
    table = neuron_table(spec, theta, teacher)
    assert [n.role for n in table] == ["", ""]
    assert table[0].cosine == pytest.approx(0.0)  # nearest by signed cosine: e_2, not e_1


def test_roles_with_bias_use_augmented_weights():
    tspec = make_spec(2, [2], "softplus", bias=True)
    ttheta = flatten(
        tspec,
        {
            "w1": np.array([[1.0, 0.0], [0.0, 1.0]]),
            "b1": np.array([0.5, -0.5]),
            "w2": np.ones((1, 2)),
            "b2": np.zeros(1),
        },
    )
    teacher = network_teacher(tspec, ttheta)
    spec = make_spec(2, [2], "softplus", bias=True)
    theta = flatten(
        spec,
        {
            "w1": np.array([[1.0, 0.0], [1.0, 0.0]]),
            "b1": np.array([0.5, -1.5]),
            "w2": np.ones((1, 2)),
            "b2": np.zeros(1),
        },
    )
    table = neuron_table(spec, theta, teacher)
    assert table[0].role == "copy"
    # same w as teacher neuron 0 but a different bias: not a copy once the bias counts
    assert table[1].role != "copy" and table[1].cosine < COPY_COSINE
    assert table[0].norm == pytest.approx(np.sqrt(1.25)) and table[0].b == 0.5


def test_dead_and_channel_roles():
    spec = make_spec(1, [3], "relu", bias=True)
    theta = flatten(
        spec,
        {
            "w1": np.array([[1.0], [1.0], [0.0]]),
            "b1": np.array([0.0, 0.0, -1.0]),
            "w2": np.array([[1.0, 1e-9, 2.0]]),
            "b2": np.zeros(1),
        },
    )
    x = np.linspace(-1, 1, 11)[:, None]
    roles = [n.role for n in neuron_table(spec, theta, x=x)]
    assert roles == ["", "dead", "dead"]  # tiny output weight; never active (z = −1 < 0)
    assert [n.role for n in neuron_table(spec, theta)] == ["", "dead", ""]
    ch = Channel((0, 2), 1e-3, 0.0, 1.0, [1.0, 0.0], [0.0, 1.0], 0.0)
    assert [n.role for n in neuron_table(spec, theta, channels=[ch])] == [
        "channel",
        "dead",
        "channel",
    ]


def test_neuron_response_on_1d_and_2d_grids():
    spec = make_spec(2, [2], ["tanh", "softplus"], bias=True)
    theta = init_params(spec, jax.random.PRNGKey(3))
    theta = theta.at[spec.offsets()["b1"]].set(jnp.array([0.3, -0.2]))
    xs, ys = np.linspace(-2, 2, 5), np.linspace(-1, 1, 4)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1)  # (4, 5, 2)
    for i in range(2):
        r = neuron_response(spec, theta, i, grid)
        assert r.shape == (4, 5)
        # reference: the network's output with every other neuron's output weight zeroed
        keep = np.zeros(2)
        keep[i] = 1.0
        t2 = np.asarray(theta).copy()
        t2[spec.offsets()["w2"]] *= keep
        t2[spec.offsets()["b2"]] = 0.0
        ref = np.asarray(forward(spec, t2, grid.reshape(-1, 2)))[:, 0].reshape(4, 5)
        np.testing.assert_allclose(r, ref, rtol=1e-13, atol=1e-15)
    spec1 = make_spec(1, [2], "relu", bias=False)
    theta1 = flatten(spec1, {"w1": np.array([[2.0], [-1.0]]), "w2": np.array([[0.5, 1.0]])})
    np.testing.assert_allclose(
        neuron_response(spec1, theta1, 0, np.array([-1.0, 0.5, 2.0])), [0, 0.5, 2]
    )
    with pytest.raises(ValueError, match="out of range"):
        neuron_response(spec1, theta1, 2, np.zeros(3))


# --------------------------------------------------------------------------- analyze


@pytest.fixture(scope="module")
def channel_problem():
    """A constructed channel point (ε = 1e-3) under an MSE objective with a random teacher."""
    spec, theta, _, _ = _channel_point(1e-3)
    teacher = random_teacher(make_spec(2, [3], "softplus"), jax.random.PRNGKey(0))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", 100, 0))
    return obj, theta, teacher


def test_analyze_channel_point_to_json(channel_problem):
    obj, theta, teacher = channel_problem
    spec = obj.spec
    an = analyze(obj, theta, teacher)
    assert an.classification == "channel"
    assert [n.role for n in an.neurons][:2] == ["channel", "channel"]
    js = an.to_json()
    text = json.dumps(js, allow_nan=False)  # plain, strict JSON
    back = json.loads(text)
    assert back["channels"][0]["neurons"] == [0, 1]
    assert back["spectrum"]["eigenvalues"] == sorted(back["spectrum"]["eigenvalues"])
    assert len(back["spectrum"]["eigenvalues"]) == spec.n_params
    assert {"w", "a", "nearest_teacher", "cosine"} <= set(back["neurons"][0])
    assert back["loss"] == pytest.approx(float(obj.loss(theta)))


def test_analyze_teacher_recovered_point_is_a_minimum_with_copies():
    """θ = teacher θ is a global minimum (zero loss); every neuron is a copy."""
    spec = make_spec(2, [3], "softplus", bias=True)
    teacher = random_teacher(spec, jax.random.PRNGKey(7))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", 300, 1))
    an = analyze(obj, teacher.theta, teacher)
    assert an.grad_inf_norm < 1e-13 and an.loss < 1e-25
    assert an.classification == "minimum" and an.spectrum.index == 0
    assert an.channels == []
    assert [n.role for n in an.neurons] == ["copy"] * 3
    assert [n.nearest_teacher for n in an.neurons] == [0, 1, 2]

    # reference spectrum: numpy on an independent jax.hessian of the loss
    def loss(t):
        return 0.5 * jnp.mean((forward(spec, t, obj.data.x) - obj.data.y) ** 2)

    ref = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(loss))(teacher.theta)))
    np.testing.assert_allclose(an.spectrum.eigenvalues, ref, atol=1e-12 * np.abs(ref).max())


def test_analyze_infinite_data_style_objective_without_data(channel_problem):
    """With data=None analyze falls back to a Gaussian sample for the channel check."""
    obj, theta, _ = channel_problem
    spec = obj.spec
    obj_nodata = type(obj)(spec, obj.loss, obj.grad, obj.value_and_grad, obj.hessian, None)
    assert analyze(obj_nodata, theta).classification == "channel"
    with pytest.raises(ValueError, match="theta has shape"):
        analyze(obj, theta[:-1])


# --------------------------------------------------------------------------- a real channel


def _fit_glu_teacher(maxiters: list[int]):
    """Student of 2 softplus neurons fitting the GLU target (v·x)σ′(u·x) by trust-exact.

    The target is reachable only in the limit ε → 0, |a| → ∞, so the minimiser runs down
    the channel; returns the objective and the iterates after each ``maxiter``.
    """
    from core.teachers import glu_teacher

    u, v = np.array([1.0, -0.5]), np.array([0.5, 1.0])
    data = make_dataset(glu_teacher(u, v, "softplus"), "gaussian", 200, 0)
    spec = make_spec(2, [2], "softplus", bias=False)
    obj = mse_objective(spec, data)
    th0 = np.asarray(init_params(spec, jax.random.PRNGKey(0)))
    points = []
    for maxiter in maxiters:
        points.append(trust_exact(obj, th0, 1e-14, maxiter).x)
    return obj, u, v, points


def test_channel_found_by_a_minimiser_matches_glu_teacher():
    obj, u, v, (theta,) = _fit_glu_teacher([300])
    an = analyze(obj, theta)
    assert an.classification == "channel"
    (ch,) = an.channels
    # the pair tends to c σ(w·x) + A (Δ·x) σ′(w·x) = (v·x) σ′(u·x): w → u, AΔ → v, c → 0
    np.testing.assert_allclose(ch.w, u, atol=1e-2)
    np.testing.assert_allclose(ch.A * np.asarray(ch.delta), v, atol=1e-3)
    assert abs(ch.c) < 1e-3
    assert ch.glu_error < 1e-2
    assert ch.epsilon < 0.1 * np.linalg.norm(ch.w)


@pytest.mark.slow
def test_channel_sharpens_like_one_over_eps_squared():
    """Martinelli et al. 2025: along a channel the top Hessian eigenvalue grows like 1/ε²."""
    obj, _, _, points = _fit_glu_teacher([300, 3000])
    eps, lam_max = [], []
    for theta in points:
        (ch,) = detect_channels(obj.spec, theta, obj.data.x)
        eps.append(ch.epsilon)
        lam_max.append(hessian_spectrum(obj.hessian(theta)).eigenvalues[-1])
    assert eps[1] < 0.5 * eps[0]
    ratio = (lam_max[1] * eps[1] ** 2) / (lam_max[0] * eps[0] ** 2)
    assert 0.5 < ratio < 2.0, (eps, lam_max)


def test_neuron_table_for_deep_net_and_non_network_teacher():
    from core.teachers import glu_teacher

    deep = make_spec(2, [3, 2], "tanh", bias=True)
    theta = np.asarray(init_params(deep, jax.random.PRNGKey(1)))
    table = neuron_table(
        deep, theta, random_teacher(make_spec(2, [3], "tanh"), jax.random.PRNGKey(2))
    )
    assert [len(n.a) for n in table] == [2, 2, 2]  # fan-out weights W2[:, i]
    assert all(n.nearest_teacher is None and n.role == "" for n in table)
    spec = make_spec(2, [2], "softplus", bias=False)
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(0)))
    table = neuron_table(spec, theta, glu_teacher([1.0, 0.0], [0.0, 1.0], "softplus"))
    assert all(n.nearest_teacher is None and n.cosine is None for n in table)
