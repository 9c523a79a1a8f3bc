"""Tests for core.gaussian: pair kernels, the infinite-data objective and Gauss-Hermite data.

References are independent of the code under test: Monte Carlo with 10⁶ samples, the
closed forms against quadrature (and vice versa), finite differences, jax.hessian of the
loss, a tensor Gauss-Hermite data set fed to the finite-data objective, and NumPy formulas.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.data import make_dataset
from core.gaussian import (
    _relu_relu,
    gauss_hermite_dataset,
    gaussian_objective,
    pair_expectation,
)
from core.networks import flatten, forward, init_params, make_spec, unflatten
from core.objectives import mse_objective
from core.teachers import glu_teacher, network_teacher, orthonormal_teacher, random_teacher

ACT = {
    "erf": lambda z: np.asarray(jax.scipy.special.erf(z / np.sqrt(2.0))),
    "relu": lambda z: np.maximum(z, 0.0),
    "normal_cdf": lambda z: np.asarray(jax.scipy.stats.norm.cdf(z)),
    "identity": lambda z: z,
    "softplus": lambda z: np.logaddexp(z, 0.0),
}


def _covariances(rng: np.random.Generator) -> np.ndarray:
    """Random, parallel, antiparallel, orthogonal and zero-norm covariances, ‖w‖ ≤ 4."""
    cs = []
    for scale in (0.2, 1.0, 2.0, 4.0):
        for _ in range(3):
            w = rng.normal(size=(2, 3))
            w *= scale * rng.uniform(0.5, 1.0, size=(2, 1)) / np.linalg.norm(w, axis=1)[:, None]
            cs.append(w @ w.T)
        w = rng.normal(size=3)
        w *= scale / np.linalg.norm(w)
        for other in (w, -w, 0.5 * w, np.cross(w, rng.normal(size=3))):
            pair = np.stack([w, other])
            cs.append(pair @ pair.T)
    cs += [np.zeros((2, 2)), np.diag([0.0, 2.0]), np.diag([3.0, 0.0])]
    return np.array(cs)


# --------------------------------------------------------------------------- pair kernels

CLOSED_PAIRS = [
    ("erf", "erf"),
    ("relu", "relu"),
    ("normal_cdf", "normal_cdf"),
    ("erf", "normal_cdf"),
    ("identity", "identity"),
    ("identity", "erf"),
    ("relu", "identity"),
    ("relu", "erf"),
    ("normal_cdf", "relu"),
]


@pytest.mark.parametrize(("a", "b"), CLOSED_PAIRS)
def test_closed_forms_match_monte_carlo(a, b):
    rng = np.random.default_rng(7)
    cov = np.array([[1.7, -0.9], [-0.9, 0.8]])
    uv = rng.multivariate_normal(np.zeros(2), cov, size=10**6)
    prod = ACT[a](uv[:, 0]) * ACT[b](uv[:, 1])
    mc, se = prod.mean(), prod.std() / np.sqrt(prod.size)
    closed = float(pair_expectation(a, cov, b, method="closed"))
    assert abs(closed - mc) < 5 * se, (closed, mc, se)


def test_quadrature_matches_monte_carlo_softplus():
    rng = np.random.default_rng(8)
    cov = np.array([[2.0, 1.1], [1.1, 1.5]])
    uv = rng.multivariate_normal(np.zeros(2), cov, size=10**6)
    prod = ACT["softplus"](uv[:, 0]) * ACT["erf"](uv[:, 1])
    mc, se = prod.mean(), prod.std() / np.sqrt(prod.size)
    quad = float(pair_expectation("softplus", cov, "erf", method="quadrature"))
    assert abs(quad - mc) < 5 * se


@pytest.mark.parametrize(("a", "b"), CLOSED_PAIRS)
def test_quadrature_matches_closed_forms(a, b):
    covs = _covariances(np.random.default_rng(1))
    closed = np.asarray(pair_expectation(a, covs, b, method="closed"))
    quad = np.asarray(pair_expectation(a, covs, b, method="quadrature"))
    assert np.all(np.isfinite(quad))
    np.testing.assert_allclose(quad, closed, rtol=0, atol=1e-8)


@pytest.mark.parametrize("act", ["softplus", "tanh", "gelu"])
def test_quadrature_converges_for_smooth_activations(act):
    covs = _covariances(np.random.default_rng(2))
    default = np.asarray(pair_expectation(act, covs))
    fine = np.asarray(pair_expectation(act, covs, n_nodes=300))
    np.testing.assert_allclose(default, fine, rtol=0, atol=1e-10)


def test_relu_kernel_matches_arccos_formula_across_its_branches():
    # θ from 0.05 to π − 0.05 crosses both switches of the series (sin²θ = ¼).
    theta = np.linspace(0.05, np.pi - 0.05, 301)
    r1, r2 = 1.3, 0.7
    c12 = r1 * r2 * np.cos(theta)
    expected = (r1 * r2 * np.sin(theta) + c12 * (np.pi - theta)) / (2 * np.pi)
    got = np.asarray(_relu_relu(jnp.full_like(c12, r1**2), jnp.full_like(c12, r2**2), c12))
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
    # Near θ = 0 the kernel is c₁₂/2 + n(θ³/3 − θ⁵/30)/(2π) (sinθ − θcosθ to O(θ⁷)).
    for th in (1e-2, 1e-4):
        c = r1 * r2 * np.cos(th)
        taylor = c / 2 + r1 * r2 * (th**3 / 3 - th**5 / 30) / (2 * np.pi)
        assert float(_relu_relu(r1**2, r2**2, c)) == pytest.approx(taylor, rel=1e-15, abs=1e-16)


def test_pair_expectation_rejects_bad_input():
    with pytest.raises(ValueError, match="cov"):
        pair_expectation("erf", np.eye(3))
    with pytest.raises(ValueError, match="no closed form"):
        pair_expectation("softplus", np.eye(2), method="closed")
    with pytest.raises(ValueError, match="unknown activation"):
        pair_expectation("nope", np.eye(2))
    with pytest.raises(ValueError, match="n_nodes"):
        pair_expectation("tanh", np.eye(2), n_nodes=1)


# --------------------------------------------------------------------------- the objective


_OBJECTIVES: dict = {}


def _setup(act, loss="mse"):
    """Shared (objective, random θ, teacher) per activation: d = 3, student width = teacher
    width = 2 (so θ = teacher.theta is a valid student).  Cached: compiling the quadrature
    Hessian dominates the run time of this file."""
    key = (act, loss)
    if key not in _OBJECTIVES:
        spec = make_spec(3, [2], act, bias=False)
        teacher = random_teacher(spec, jax.random.PRNGKey(1))
        theta = init_params(spec, jax.random.PRNGKey(2))
        _OBJECTIVES[key] = (gaussian_objective(spec, teacher, loss=loss), theta, teacher)
    return _OBJECTIVES[key]


def _fd_grad(f, theta, h=1e-6):
    eye = np.eye(theta.size)
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in eye])


def _fd_hessian(grad, theta, h=1e-5):
    eye = np.eye(theta.size)
    cols = [
        (np.asarray(grad(theta + h * e)) - np.asarray(grad(theta - h * e))) / (2 * h) for e in eye
    ]
    return np.stack(cols, axis=1)


@pytest.mark.parametrize(
    ("act", "loss"),
    [("erf", "mse"), ("relu", "mse"), ("softplus", "mse"), ("erf", "correlation")],
)
def test_gradient_and_hessian_match_finite_differences(act, loss):
    obj, theta, _ = _setup(act, loss)
    value, grad = obj.value_and_grad(theta)
    assert float(value) == pytest.approx(float(obj.loss(theta)), rel=1e-14)
    np.testing.assert_allclose(grad, obj.grad(theta), rtol=0, atol=1e-15)
    np.testing.assert_allclose(grad, _fd_grad(obj.loss, theta), rtol=0, atol=1e-8)
    # The hand-written gradient agrees with autodiff of the loss expression.
    np.testing.assert_allclose(grad, jax.grad(obj.loss)(theta), rtol=0, atol=1e-13)
    hess = np.asarray(obj.hessian(theta))
    np.testing.assert_allclose(hess, hess.T, rtol=0, atol=0)
    np.testing.assert_allclose(hess, _fd_hessian(obj.grad, theta), rtol=0, atol=1e-7)


@pytest.mark.parametrize("act", ["erf", "relu", "softplus"])
def test_student_equal_to_teacher_has_exact_zero_loss_and_gradient(act):
    obj, _, teacher = _setup(act)
    assert float(obj.loss(teacher.theta)) == 0.0
    assert np.all(np.asarray(obj.grad(teacher.theta)) == 0.0)
    hess = np.asarray(obj.hessian(teacher.theta))
    assert np.all(np.isfinite(hess))
    # At a global minimum the Hessian is PSD.
    assert np.linalg.eigvalsh(hess).min() > -1e-12
    # relu's kernel is C² but not C³ at coincident weights (a θ³ term): central differences
    # of the gradient then err by O(h), so h is small there.
    h = 1e-7 if act == "relu" else 1e-5
    np.testing.assert_allclose(hess, _fd_hessian(obj.grad, np.asarray(teacher.theta), h), atol=1e-6)


def test_relu_split_neuron_has_finite_exact_hessian():
    # Duplicating a neuron makes two student weights coincide (θ = 0 in the arc-cosine kernel).
    obj, theta, _ = _setup("relu")
    p = unflatten(obj.spec, theta)
    w = p["w1"].at[1].set(p["w1"][0])
    theta = flatten(obj.spec, {"w1": w, "w2": p["w2"]})
    grad = np.asarray(obj.grad(theta))
    hess = np.asarray(obj.hessian(theta))
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))
    np.testing.assert_allclose(grad, _fd_grad(obj.loss, theta), atol=1e-8)
    # The kernel is C² but not C³ at coincidence: central differences have O(h) error.
    np.testing.assert_allclose(hess, _fd_hessian(obj.grad, theta, h=1e-7), atol=1e-6)


@pytest.mark.parametrize("act", ["erf", "relu", "softplus"])
def test_zero_norm_weights_stay_finite(act):
    obj, theta, _ = _setup(act)
    p = unflatten(obj.spec, theta)
    theta = flatten(obj.spec, {"w1": p["w1"].at[0].set(0.0), "w2": p["w2"]})
    for value in (obj.loss(theta), obj.grad(theta), obj.hessian(theta)):
        assert np.all(np.isfinite(np.asarray(value)))


def test_loss_matches_gauss_hermite_data_in_two_dimensions():
    # Independent route: the finite-data objective on a 120² tensor Gauss-Hermite rule.
    ts = make_spec(2, [2], "erf", bias=False)
    teacher = random_teacher(ts, jax.random.PRNGKey(3))
    ss = make_spec(2, [3], ["softplus", "erf", "softplus"], bias=False)
    theta = init_params(ss, jax.random.PRNGKey(4))
    exact = gaussian_objective(ss, teacher)
    data = gauss_hermite_dataset(teacher, 120)
    approx = mse_objective(ss, data)
    assert float(exact.loss(theta)) == pytest.approx(float(approx.loss(theta)), abs=1e-10)
    np.testing.assert_allclose(exact.grad(theta), approx.grad(theta), atol=1e-10)
    corr = gaussian_objective(ss, teacher, loss="correlation")
    fg = np.sum(np.asarray(data.weights) * forward(ss, theta, data.x)[:, 0] * data.y[:, 0])
    assert float(corr.loss(theta)) == pytest.approx(-fg, abs=1e-10)


def test_maxnorm_barrier_is_added():
    obj, theta, _ = _setup("erf")
    barred = gaussian_objective(obj.spec, obj.extras["teacher"], maxnorm=0.1)
    excess = np.maximum(np.abs(np.asarray(theta)) - 0.1, 0.0)
    assert float(barred.loss(theta) - obj.loss(theta)) == pytest.approx(0.5 * np.sum(excess**2))
    np.testing.assert_allclose(barred.grad(theta) - obj.grad(theta), np.sign(theta) * excess)
    assert obj.data is None and obj.name == "gaussian-infinite-mse"


def test_bad_students_and_teachers_are_rejected():
    teacher = random_teacher(make_spec(3, [2], "erf", bias=False), jax.random.PRNGKey(0))
    ok = make_spec(3, [2], "erf", bias=False)
    with pytest.raises(ValueError, match=r"student.*biases"):
        gaussian_objective(make_spec(3, [2], "erf", bias=True), teacher)
    with pytest.raises(ValueError, match=r"student.*one hidden layer"):
        gaussian_objective(make_spec(3, [2, 2], "erf", bias=False), teacher)
    with pytest.raises(ValueError, match=r"student.*scalar output"):
        gaussian_objective(make_spec(3, [2], "erf", bias=False, output_dim=2), teacher)
    with pytest.raises(ValueError, match=r"teacher.*network teacher"):
        gaussian_objective(ok, glu_teacher([1.0, 0, 0], [0, 1.0, 0], "erf"))
    with pytest.raises(ValueError, match=r"teacher.*biases"):
        biased = make_spec(3, [2], "erf", bias=True)
        gaussian_objective(ok, random_teacher(biased, jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match="input_dim"):
        gaussian_objective(make_spec(4, [2], "erf", bias=False), teacher)
    with pytest.raises(ValueError, match="loss"):
        gaussian_objective(ok, teacher, loss="hinge")
    with pytest.raises(ValueError, match=r"\(relu, softplus\)|\(softplus, relu\)"):
        gaussian_objective(
            make_spec(3, [2], "relu", bias=False),
            random_teacher(make_spec(3, [2], "softplus", bias=False), jax.random.PRNGKey(0)),
        )


# --------------------------------------------------------------------------- GH data, teachers


def test_gauss_hermite_dataset_integrates_polynomials_exactly():
    poly = network_teacher(make_spec(2, [], "identity", bias=False), jnp.array([1.0, 2.0]))
    data = gauss_hermite_dataset(poly, 5)
    assert data.x.shape == (25, 2) and data.y.shape == (25, 1) and data.weights.shape == (25,)
    w = np.asarray(data.weights)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    x = np.asarray(data.x)
    assert np.sum(w * x[:, 0] ** 4) == pytest.approx(3.0, rel=1e-13)  # E[x⁴] = 3
    assert np.sum(w * x[:, 0] ** 2 * x[:, 1] ** 2) == pytest.approx(1.0, rel=1e-13)
    assert np.sum(w * data.y[:, 0] ** 2) == pytest.approx(5.0, rel=1e-13)  # E[(x₁+2x₂)²]
    one_d = gauss_hermite_dataset(
        network_teacher(make_spec(1, [], "identity", bias=False), jnp.array([1.0])), 4
    )
    assert one_d.x.shape == (4, 1)
    with pytest.raises(ValueError, match="input_dim"):
        gauss_hermite_dataset(random_teacher(make_spec(3, [2]), jax.random.PRNGKey(0)), 4)
    with pytest.raises(ValueError, match="n_nodes"):
        gauss_hermite_dataset(poly, 0)


def test_gauss_hermite_dataset_handles_biased_deep_teachers():
    spec = make_spec(2, [3, 2], "tanh", bias=True)
    teacher = random_teacher(spec, jax.random.PRNGKey(9))
    data = gauss_hermite_dataset(teacher, 80)
    second = np.sum(np.asarray(data.weights) * np.asarray(data.y[:, 0]) ** 2)
    x = np.random.default_rng(0).normal(size=(10**6, 2))
    y2 = np.asarray(teacher(jnp.asarray(x)))[:, 0] ** 2
    assert abs(second - y2.mean()) < 5 * y2.std() / 1e3


@pytest.mark.parametrize("key", [None, jax.random.PRNGKey(4)])
def test_orthonormal_teacher(key):
    teacher = orthonormal_teacher(5, 3, "erf", key=key)
    p = unflatten(teacher.spec, teacher.theta)
    np.testing.assert_allclose(p["w1"] @ p["w1"].T, np.eye(3), atol=1e-14)
    np.testing.assert_array_equal(p["w2"], np.ones((1, 3)))
    assert teacher.spec.bias == (False, False)
    # Zero student: L = ½E[g²] = ½ Σ_j (2/π) arcsin(½) = width/6 (orthogonal units uncorrelated).
    student = make_spec(5, [2], "erf", bias=False)
    obj = gaussian_objective(student, teacher)
    assert float(obj.loss(jnp.zeros(student.n_params))) == pytest.approx(0.5, rel=1e-14)
    with pytest.raises(ValueError, match="width"):
        orthonormal_teacher(2, 3)


# --------------------------------------------------------------------------- gradient flows


def _flow(objective, theta0, t_end, n_saves=11):
    term = diffrax.ODETerm(lambda t, y, args: -objective.grad(y))
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        0.0,
        t_end,
        None,
        theta0,
        saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, t_end, n_saves)),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10),
        max_steps=100_000,
    )
    return np.asarray(sol.ys)


@pytest.mark.slow
def test_infinite_data_flow_tracks_large_sample_flow():
    d = 4
    teacher = random_teacher(make_spec(d, [2], "erf", bias=False), jax.random.PRNGKey(1))
    spec = make_spec(d, [2], "erf", bias=False)
    theta0 = init_params(spec, jax.random.PRNGKey(2))
    exact = _flow(gaussian_objective(spec, teacher), theta0, 10.0)
    travelled = np.linalg.norm(exact[-1] - exact[0])
    gaps = {}
    for n in (10**3, 10**5):
        finite = mse_objective(spec, make_dataset(teacher, "gaussian", n, seed=3))
        gaps[n] = np.linalg.norm(_flow(finite, theta0, 10.0) - exact, axis=1).max()
    # Sampling error of ∇L is O(N^{-1/2}): 100× the data should shrink the gap ≈10×.
    assert gaps[10**5] < 0.01 * travelled
    assert gaps[10**5] < 0.3 * gaps[10**3]
