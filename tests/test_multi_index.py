"""Multi-index models with the correlation loss (issue 15, Şimşek, Bendjeddou & Hsu 2024).

* The Hermite pair kernels E[h_p(u) h_q(v)] for general covariances (closed form) against
  quadrature and an independent Monte Carlo estimate.
* The correlation loss on finite data, L = −Σ_n w_n f(x_n)·y_n: gradient and Hessian
  against autodiff, and convergence to the exact infinite-data loss as N grows.
* The β threshold: one unit-norm student neuron against k index vectors of equal overlap β
  has the average direction w̄ as a saddle of index k−1 for β < β_c = (p−2)/(k+p−2) and a
  minimum above — first by an autodiff reference on the sphere, then through the project's
  pipeline (config, build_problem, core.analysis.analyze).
* Orthogonal index vectors: the spherical flow sends each neuron to the index vector it
  overlaps most at t = 0, on the unit sphere to round-off all along.

Derivation of the threshold (checked numerically below, not assumed).  With unit v_j,
v_i·v_j = β and σ = σ* = h_p, the loss of one unit w is L(w) = −Σ_j (w·v_j)^p.  At
w̄ = Σv_j/‖Σv_j‖ every overlap is ρ̄ = √((1+(k−1)β)/k), the Euclidean gradient
−pρ̄^{p−1}Σv_j is parallel to w̄ (a critical point on the sphere), and the Riemannian
Hessian P(∇²L − (w̄·∇L)I)P with P = I − w̄w̄ᵀ is

    −p(p−1)ρ̄^{p−2} P(Σ_j v_jv_jᵀ)P + p k ρ̄^p P.

Σ_l v_lv_lᵀ(v_i − v_j) = (1−β)(v_i − v_j), so on the (k−1)-dimensional span of the
differences the eigenvalue is p k ρ̄^{p−2}[ρ̄² − (p−1)(1−β)/k]; on directions orthogonal
to every v it is p k ρ̄^p > 0.  ρ̄² > (p−1)(1−β)/k ⇔ 1 + (k−1)β > (p−1)(1−β) ⇔
β > (p−2)/(k+p−2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.activations import get_activation
from core.correlation import correlation_objective
from core.gaussian import gaussian_objective, pair_kernel
from core.networks import forward, init_params, make_spec
from core.objectives import Dataset
from core.teachers import network_teacher

HERMITE = ["identity", "he1", "he2", "he3", "he4"]


def _random_covariances(rng, n: int, scale: float = 0.9) -> tuple[jax.Array, ...]:
    a = rng.normal(size=(n, 2, 2)) * scale
    c = a @ a.transpose(0, 2, 1)
    return jnp.asarray(c[:, 0, 0]), jnp.asarray(c[:, 1, 1]), jnp.asarray(c[:, 0, 1])


# ------------------------------------------------------------------- pair kernels


@pytest.mark.parametrize("a", HERMITE)
@pytest.mark.parametrize("b", HERMITE[1:])
def test_hermite_kernel_closed_form_equals_quadrature(a: str, b: str) -> None:
    """The polynomial closed form against the generic 2-D quadrature, general covariances
    (c₁₁, c₂₂ ≠ 1: he2·he4 is not zero there), degenerate u ≡ v and a zero-norm weight."""
    c11, c22, c12 = _random_covariances(np.random.default_rng(0), 12)
    c11 = jnp.concatenate([c11, jnp.asarray([1.7, 0.0])])
    c22 = jnp.concatenate([c22, jnp.asarray([1.7, 2.0])])
    c12 = jnp.concatenate([c12, jnp.asarray([1.7, 0.0])])
    closed = pair_kernel(a, b, "closed")(c11, c22, c12)
    quad = pair_kernel(a, b, "quadrature")(c11, c22, c12)
    np.testing.assert_allclose(closed, quad, rtol=1e-11, atol=1e-12)


def test_hermite_kernel_against_monte_carlo() -> None:
    """E[h_p(u) h_q(v)] for u ~ N(0, 1.6), v ~ N(0, 0.5), cov 0.4, by sampling (5 s.e.)."""
    rng = np.random.default_rng(3)
    cov = np.array([[1.6, 0.4], [0.4, 0.5]])
    uv = rng.multivariate_normal(np.zeros(2), cov, size=400_000)
    u, v = jnp.asarray(uv[:, 0]), jnp.asarray(uv[:, 1])
    for p in range(1, 5):
        for q in range(1, 5):
            prod = np.asarray(get_activation(f"he{p}").f(u) * get_activation(f"he{q}").f(v))
            k = float(pair_kernel(f"he{p}", f"he{q}")(*(jnp.asarray(c) for c in (1.6, 0.5, 0.4))))
            assert abs(prod.mean() - k) < 5 * prod.std() / np.sqrt(len(prod)), (p, q)


def test_hermite_kernel_unit_variances_is_delta_rho_power() -> None:
    rho = jnp.linspace(-1.0, 1.0, 9)
    one = jnp.ones_like(rho)
    for p in range(1, 5):
        for q in range(1, 5):
            k = pair_kernel(f"he{p}", f"he{q}")(one, one, rho)
            np.testing.assert_allclose(k, rho**p if p == q else 0 * rho, atol=1e-15)


@pytest.mark.parametrize(
    ("loss", "mixed"), [("mse", False), ("correlation", False), ("correlation", True)]
)
def test_gaussian_objective_with_hermite_units_matches_autodiff(loss: str, mixed: bool) -> None:
    """Exact expected loss with he units (closed forms; ``mixed`` adds an erf unit, whose
    he·erf pairs go through quadrature — 32 nodes keep autodiff's 4th-order Price terms
    cheap): the hand-written gradient equals jax.grad of the loss, the Hessian jax.hessian,
    and the loss a Monte Carlo estimate."""
    d = 3
    t_spec = make_spec(d, [2], ["he3", "he2"], bias=False)
    teacher = network_teacher(t_spec, init_params(t_spec, jax.random.PRNGKey(1)), "t")
    spec = make_spec(d, [3], ["he3", "he2", "erf" if mixed else "he4"], bias=False)
    obj = gaussian_objective(spec, teacher, loss=loss, n_nodes=32)
    theta = init_params(spec, jax.random.PRNGKey(2))
    np.testing.assert_allclose(obj.grad(theta), jax.grad(obj.loss)(theta), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        obj.hessian(theta), jax.hessian(obj.loss)(theta), rtol=1e-9, atol=1e-11
    )
    # and the loss itself against a Monte Carlo estimate over fresh Gaussian inputs
    x = jax.random.normal(jax.random.PRNGKey(5), (200_000, d))
    f, g = forward(spec, theta, x)[:, 0], teacher(x)[:, 0]
    samples = 0.5 * (f - g) ** 2 if loss == "mse" else -f * g
    err = float(jnp.std(samples)) / np.sqrt(x.shape[0])
    assert abs(float(jnp.mean(samples)) - float(obj.loss(theta))) < 5 * err


# --------------------------------------------------------- correlation on finite data


def _dataset(teacher, n: int, seed: int, weights: bool = False) -> Dataset:
    x = jax.random.normal(jax.random.PRNGKey(seed), (n, teacher.input_dim))
    w = None
    if weights:
        w = jax.random.uniform(jax.random.PRNGKey(seed + 1), (n,))
        w = w / jnp.sum(w)
    return Dataset(x, teacher(x), w)


@pytest.mark.parametrize(
    ("widths", "act", "bias", "out", "weights"),
    [
        ([3], "he3", False, 1, False),
        ([3], "tanh", True, 2, True),  # vector output: the dot product f·y
        ([3, 2], "softplus", True, 2, False),  # deeper: forward-over-reverse second order
        ([], "identity", True, 2, False),  # linear model: zero Hessian
    ],
)
def test_correlation_objective_matches_direct_formula_and_autodiff(widths, act, bias, out, weights):
    d = 3
    t_spec = make_spec(d, [2], "tanh", bias=True, output_dim=out)
    teacher = network_teacher(t_spec, init_params(t_spec, jax.random.PRNGKey(0)), "t")
    spec = make_spec(d, widths, act, bias=bias, output_dim=out)
    data = _dataset(teacher, 60, 4, weights)
    obj = correlation_objective(spec, data)
    theta = init_params(spec, jax.random.PRNGKey(3))
    w = np.full(60, 1 / 60) if data.weights is None else np.asarray(data.weights)
    f = np.asarray(forward(spec, theta, data.x))
    direct = -np.sum(w[:, None] * f * np.asarray(data.y))
    assert float(obj.loss(theta)) == pytest.approx(direct, rel=1e-13)
    value, grad = obj.value_and_grad(theta)
    assert float(value) == pytest.approx(direct, rel=1e-13)

    def ref(t):
        return -jnp.sum(jnp.asarray(w)[:, None] * forward(spec, t, data.x) * data.y)

    np.testing.assert_allclose(grad, jax.grad(ref)(theta), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(obj.grad(theta), jax.grad(ref)(theta), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(obj.hessian(theta), jax.hessian(ref)(theta), rtol=1e-10, atol=1e-12)


def test_correlation_objective_with_barrier_and_bad_input() -> None:
    spec = make_spec(2, [2], "he2", bias=False)
    teacher = network_teacher(spec, init_params(spec, jax.random.PRNGKey(0)), "t")
    data = _dataset(teacher, 50, 1)
    theta = 3.0 * init_params(spec, jax.random.PRNGKey(1))
    obj = correlation_objective(spec, data, maxnorm=0.5)
    ref = lambda t: (
        -jnp.mean(forward(spec, t, data.x) * data.y)
        + 0.5 * jnp.sum(jnp.maximum(jnp.abs(t) - 0.5, 0.0) ** 2)
    )
    np.testing.assert_allclose(obj.grad(theta), jax.grad(ref)(theta), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(obj.hessian(theta), jax.hessian(ref)(theta), atol=1e-12)
    with pytest.raises(ValueError, match=r"data.y must have shape \(50, 1\)"):
        correlation_objective(spec, Dataset(data.x, jnp.zeros((50, 2))))


def test_finite_data_correlation_converges_to_the_infinite_data_one() -> None:
    """L_N and ∇L_N on N fresh Gaussian samples against the exact −E[f f*] and its gradient:
    within 5 standard errors (estimated from the per-sample terms) at every N, and the
    error shrinks like 1/√N (over 16× more samples: a factor 4, here checked ≥ 2)."""
    d = 4
    t_spec = make_spec(d, [3], "he3", bias=False)
    teacher = network_teacher(t_spec, init_params(t_spec, jax.random.PRNGKey(0)), "t")
    spec = make_spec(d, [2], "he3", bias=False)
    theta = init_params(spec, jax.random.PRNGKey(1))
    exact = gaussian_objective(spec, teacher, loss="correlation")
    l_inf, g_inf = float(exact.loss(theta)), np.asarray(exact.grad(theta))
    rms = []
    for n in (2_000, 32_000):
        data = _dataset(teacher, n, 11 + n)
        obj = correlation_objective(spec, data)
        l_n, g_n = float(obj.loss(theta)), np.asarray(obj.grad(theta))
        # per-sample terms: loss −f_n y_n, gradient −y_n ∇f_n
        terms_l = -np.asarray(forward(spec, theta, data.x)[:, 0] * data.y[:, 0])
        jac = jax.vmap(lambda x: jax.grad(lambda t: forward(spec, t, x[None])[0, 0])(theta))(data.x)
        terms_g = -np.asarray(data.y[:, :1] * jac)
        se_l = terms_l.std() / math.sqrt(n)
        se_g = terms_g.std(axis=0) / math.sqrt(n)
        assert abs(l_n - l_inf) < 5 * se_l, (n, l_n, l_inf, se_l)
        assert np.all(np.abs(g_n - g_inf) < 5 * se_g + 1e-12), (n, g_n - g_inf, se_g)
        rms.append(se_l)
    assert rms[0] / rms[1] > 2.0


def test_config_accepts_correlation_on_finite_data() -> None:
    from core.config import ConfigError, parse_config
    from core.problem import build_problem

    he2 = {"widths": [2], "activation": "he2", "bias": False}
    mapping = {
        "seed": 2,
        "teacher": {"kind": "random", "input_dim": 3, **he2},
        "student": he2,
        "data": {"kind": "gaussian", "samples": 200, "loss": "correlation"},
    }
    problem = build_problem(parse_config(mapping))
    assert problem.objective.name == "correlation"
    theta = jnp.asarray(problem.theta0)
    x, y = problem.data.x, problem.data.y
    expected = -float(jnp.mean(forward(problem.spec, theta, x) * y))
    assert float(problem.objective.loss(theta)) == pytest.approx(expected, rel=1e-13)
    assert problem.fit_metrics(problem.spec, problem.theta0) == {"rmse": None}
    # sgd minibatches this loss too (the objective's own batch loss, tests/test_sgd.py).
    sgd = {"method": "sgd", "batch_size": 16}
    assert parse_config({**mapping, "dynamics": sgd}).dynamics.method == "sgd"
    with pytest.raises(ConfigError, match=r"dynamics\.batch_size: must be ≤ data\.samples"):
        parse_config({**mapping, "dynamics": {**sgd, "batch_size": 500}})


# ------------------------------------------------------------------ the β threshold


def beta_critical(p: int, k: int) -> float:
    """β_c = (p − 2)/(k + p − 2), derived in the module docstring."""
    return (p - 2) / (k + p - 2)


def equal_overlap_vectors(k: int, beta: float, d: int, seed: int = 0) -> np.ndarray:
    """k unit vectors in ℝ^d with v_i·v_j = β (i ≠ j), rotated at random (k ≤ d).

    Gram matrix G = (1−β)I + β11ᵀ (positive definite for −1/(k−1) < β < 1); V = R G^{1/2}
    with R's columns orthonormal.
    """
    gram = (1 - beta) * np.eye(k) + beta * np.ones((k, k))
    lam, u = np.linalg.eigh(gram)
    root = u @ np.diag(np.sqrt(lam)) @ u.T  # (k, k), root rootᵀ = G
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k)))
    return (q @ root.T).T  # rows v_j: v_i·v_j = (root rootᵀ)_ij


def closed_form_eigenvalues(p: int, k: int, beta: float, d: int) -> np.ndarray:
    """The d − 1 Riemannian Hessian eigenvalues at w̄, sorted (module docstring)."""
    rho2 = (1 + (k - 1) * beta) / k
    split = p * k * rho2 ** ((p - 2) / 2) * (rho2 - (p - 1) * (1 - beta) / k)
    ortho = p * k * rho2 ** (p / 2)
    return np.sort(np.r_[np.full(k - 1, split), np.full(d - k, ortho)])


def sphere_chart(v: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: gradient (d−1,) and Hessian (d−1, d−1) at z = 0 of z ↦ L(w(z)),
    w(z) = (w̄ + Bz)/‖w̄ + Bz‖, B an orthonormal basis of w̄⊥, L(w) = −Σ_j (w·v_j)^p, by
    jax.grad / jax.hessian (the chart is a second-order retraction: its Hessian at a point of
    the sphere is the Riemannian Hessian there)."""
    wbar = v.sum(axis=0) / np.linalg.norm(v.sum(axis=0))
    d = v.shape[1]
    q, _ = np.linalg.qr(np.column_stack([wbar, np.random.default_rng(1).normal(size=(d, d - 1))]))
    basis = jnp.asarray(q[:, 1:])
    vj, wj = jnp.asarray(v), jnp.asarray(wbar)

    def loss(z):
        w = wj + basis @ z
        w = w / jnp.linalg.norm(w)
        return -jnp.sum((vj @ w) ** p)

    z0 = jnp.zeros(d - 1)
    return np.asarray(jax.grad(loss)(z0)), np.asarray(jax.hessian(loss)(z0))


@pytest.mark.parametrize(("p", "k", "d"), [(3, 3, 5), (4, 3, 4), (3, 4, 6), (4, 2, 3)])
def test_beta_threshold_by_an_autodiff_reference_on_the_sphere(p: int, k: int, d: int) -> None:
    """Index k−1 just below β_c, 0 just above, and the chart Hessian's eigenvalues are the
    closed form; the margin ±0.02 keeps the splitting eigenvalue ≥ 1e-2 away from 0."""
    bc = beta_critical(p, k)
    for beta, index in ((bc - 0.02, k - 1), (bc + 0.02, 0)):
        v = equal_overlap_vectors(k, beta, d)
        np.testing.assert_allclose(v @ v.T, (1 - beta) * np.eye(k) + beta, atol=1e-14)
        grad, hess = sphere_chart(v, p)
        assert np.max(np.abs(grad)) < 1e-14  # w̄ is a critical point on the sphere
        eig = np.linalg.eigvalsh(hess)
        np.testing.assert_allclose(eig, closed_form_eigenvalues(p, k, beta, d), atol=1e-12)
        assert np.min(np.abs(eig)) > 1e-2
        assert int(np.sum(eig < 0)) == index, (beta, eig)
    # and exactly at β_c the splitting eigenvalue vanishes
    v = equal_overlap_vectors(k, bc, d)
    eig = np.linalg.eigvalsh(sphere_chart(v, p)[1])
    assert np.sum(np.abs(eig) < 1e-12) == k - 1


# ------------------------------------------------ through the project's real pipeline


def _rows(m: np.ndarray) -> str:
    return "[" + ", ".join("[" + ", ".join(repr(float(x)) for x in row) + "]" for row in m) + "]"


def multi_index_config_text(
    v: np.ndarray,
    w0: np.ndarray | None,
    p: int,
    *,
    t_max: float = 100.0,
    init_scale: float = 1.0,
    n_neurons: int | None = None,
) -> str:
    """A config: teacher Σ_j h_p(v_j·x) (explicit, output weights 1), unit-norm student of
    len(w0) he_p neurons (or ``n_neurons`` from the project's random init, w0 = None) with
    output weights fixed at 1, correlation loss on infinite data."""
    k, d = v.shape
    n = (n_neurons or k) if w0 is None else w0.shape[0]
    student_params = ""
    if w0 is not None:
        student_params = f"\n[student.params]\nw1 = {_rows(w0)}\nw2 = {_rows(np.ones((1, n)))}\n"
    return f"""seed = 4

[teacher]
kind = "explicit"
input_dim = {d}
widths = [{k}]
activation = "he{p}"
bias = false

[teacher.params]
w1 = {_rows(v)}
w2 = {_rows(np.ones((1, k)))}

[student]
widths = [{n}]
activation = "he{p}"
bias = false
unit_norm = true
train_output = false
init_scale = {init_scale}
{student_params}
[data]
kind = "gaussian-infinite"
loss = "correlation"

[dynamics]
method = "flow"
t_max = {t_max}
rtol = 1e-10
atol = 1e-12
max_seconds = 60
"""


def _load(tmp_path, text: str, name: str = "c.toml"):
    from core.config import load_config

    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(("p", "k", "d"), [(3, 3, 5), (4, 3, 4)])
def test_beta_threshold_through_the_pipeline(tmp_path, p: int, k: int, d: int) -> None:
    """config → build_problem → core.analysis.analyze at θ = w̄: a critical point (Riemannian
    gradient 0), index k−1 below β_c and 0 above, the d − 1 eigenvalues equal to the
    closed form to 1e-8, and the loss −k ρ̄^p."""
    from core.analysis import analyze
    from core.problem import build_problem

    bc = beta_critical(p, k)
    for beta, index in ((bc - 0.02, k - 1), (bc + 0.02, 0)):
        v = equal_overlap_vectors(k, beta, d, seed=2)
        wbar = v.sum(axis=0) / np.linalg.norm(v.sum(axis=0))
        problem = build_problem(_load(tmp_path, multi_index_config_text(v, wbar[None], p)))
        theta = np.asarray(problem.theta0)
        res = analyze(problem.objective, theta, problem.teacher)
        rho2 = (1 + (k - 1) * beta) / k
        assert res.loss == pytest.approx(-k * rho2 ** (p / 2), rel=1e-12)
        assert res.grad_inf_norm < 1e-12
        eig = np.sort(np.asarray(res.spectrum.eigenvalues))
        assert eig.shape == (d - 1,)  # one eigenvalue per free dimension of S^{d−1}
        np.testing.assert_allclose(eig, closed_form_eigenvalues(p, k, beta, d), atol=1e-8)
        assert res.spectrum.index == index, (beta, eig)
        assert res.classification == ("minimum" if index == 0 else "saddle")


@pytest.mark.parametrize(("p", "init"), [(3, "explicit"), (4, "explicit"), (4, "project")])
def test_orthogonal_index_vectors_each_neuron_goes_to_its_nearest(tmp_path, p, init) -> None:
    """Orthogonal v_j = e_j (k = 3, d = 5), h_p student neurons from a random start (three
    given as student.params, or five from the project's own seeded init): the spherical
    flow (core.runner.run_config) sends neuron i to the index vector it overlaps most at
    t = 0 (cosine > 1 − 1e-6), with ‖w_i‖ = 1 to 1e-12 at every saved state, and the fixed
    output weights unchanged.

    "Overlaps most": with fixed output weights the correlation loss decouples the neurons,
    and with m_j = w·v_j the flow is ṁ_j = p m_j^{p−1} − m_j Σ_l p m_l^p, so
    d/dt log|m_i/m_j| = p (m_i^{p−2} − m_j^{p−2}) and m_j = 0 is invariant: for p = 4 the
    largest |m_j| wins (the neuron ends at sign(m_j) v_j: h₄ is even), for p = 3 the largest
    signed m_j, provided it is positive (ending at +v_j, where −(w·v)³ is smallest; a neuron
    with every m_j < 0 would drift to the complement of the v's instead).
    """
    from core.networks import unflatten
    from core.problem import build_problem
    from core.runner import run_config
    from core.session import load_session

    k, d = 3, 5
    v = np.eye(d)[:k]
    w0 = None
    if init == "explicit":
        w0 = np.random.default_rng(10 + p).normal(size=(k, d))
        w0 /= np.linalg.norm(w0, axis=1, keepdims=True)
    text = multi_index_config_text(v, w0, p, t_max=200.0, n_neurons=5)
    cfg = _load(tmp_path, text)
    problem = build_problem(cfg)
    m0 = np.asarray(unflatten(problem.spec, problem.theta0)["w1"]) @ v.T  # (n, k) overlaps
    n = m0.shape[0]
    nearest = np.argmax(np.abs(m0) if p % 2 == 0 else m0, axis=1)
    sign = np.sign(m0[np.arange(n), nearest]) if p % 2 == 0 else np.ones(n)
    if p % 2:
        assert np.all(m0.max(axis=1) > 0)  # the precondition above
    out = run_config(cfg, tmp_path / "run")
    seg = load_session(out).final_segment
    assert len(seg.theta) >= 10
    for theta in seg.theta:
        q = unflatten(seg.spec, theta)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(q["w1"]), axis=1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(q["w2"]), np.ones((1, n)))
    w_end = np.asarray(unflatten(seg.spec, seg.theta[-1])["w1"])
    cos = sign * np.sum(w_end * v[nearest], axis=1)
    assert np.all(cos > 1 - 1e-6), (m0, nearest, cos)


def test_finite_data_riemannian_hessian_converges_to_the_infinite_one(tmp_path) -> None:
    """The same unit-norm problem on N Gaussian samples (data.kind = "gaussian", the finite
    correlation loss), at w̄ below β_c.  With B an orthonormal basis of w̄⊥, z_n = w̄·x_n and
    y_n = f*(x_n), the finite-data Riemannian Hessian is the mean of the per-sample terms

        T_n = −y_n [h″(z_n) Bᵀx_n x_nᵀB − h′(z_n) z_n I]     (Hess_R = Bᵀ(∇²L − (w̄·∇L) I)B),

    so (i) the spectrum core.analysis.analyze reports equals that of mean T_n (to 1e-10:
    the pipeline's finite-data Riemannian Hessian), and (ii) mean T_n is within 5 standard
    errors (per entry, from the T_n) of the infinite-data Hessian
    −p(p−1)ρ̄^{p−2} Bᵀ(Σ_j v_jv_jᵀ)B + p k ρ̄^p I, at N = 4000 and at N = 64000."""
    from core.analysis import analyze
    from core.problem import build_problem

    p, k, d = 4, 3, 4
    beta = beta_critical(p, k) - 0.05
    v = equal_overlap_vectors(k, beta, d, seed=3)
    wbar = v.sum(axis=0) / np.linalg.norm(v.sum(axis=0))
    q, _ = np.linalg.qr(np.column_stack([wbar, np.random.default_rng(5).normal(size=(d, d - 1))]))
    basis = q[:, 1:]
    rho = np.sqrt((1 + (k - 1) * beta) / k)
    exact = -p * (p - 1) * rho ** (p - 2) * basis.T @ (v.T @ v) @ basis + p * k * rho**p * np.eye(
        d - 1
    )
    np.testing.assert_allclose(
        np.linalg.eigvalsh(exact), closed_form_eigenvalues(p, k, beta, d), atol=1e-12
    )
    act = get_activation(f"he{p}")
    text = multi_index_config_text(v, wbar[None], p)
    for n in (4_000, 64_000):
        finite = text.replace('kind = "gaussian-infinite"', f'kind = "gaussian"\nsamples = {n}')
        problem = build_problem(_load(tmp_path, finite, f"n{n}.toml"))
        x, y = np.asarray(problem.data.x), np.asarray(problem.data.y)[:, 0]
        assert x.shape == (n, d)
        z = x @ wbar
        xb = x @ basis  # (n, d−1)
        d1, d2 = np.asarray(act.df(jnp.asarray(z))), np.asarray(act.d2f(jnp.asarray(z)))
        terms = -y[:, None, None] * (
            d2[:, None, None] * xb[:, :, None] * xb[:, None, :]
            - (d1 * z)[:, None, None] * np.eye(d - 1)
        )
        mean, se = terms.mean(axis=0), terms.std(axis=0) / np.sqrt(n)
        res = analyze(problem.objective, np.asarray(problem.theta0), problem.teacher)
        np.testing.assert_allclose(
            np.sort(res.spectrum.eigenvalues), np.linalg.eigvalsh(mean), rtol=1e-10, atol=1e-10
        )
        assert np.all(np.abs(mean - exact) < 5 * se), (n, (mean - exact) / se)
