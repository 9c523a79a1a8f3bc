"""Deep linear networks on infinite Gaussian data (core.linear_gaussian).

References, all independent of the closed form: Monte Carlo (the finite-data MSE of the
network's forward pass on fresh Gaussian samples), central finite differences, the pair
kernels of core.gaussian where both apply, Eckart–Young's best rank-r losses
½ Σ_{i>r} s_i² from numpy's SVD of the teacher, and the gradient flow itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.config import ConfigError, parse_config
from core.data import sample_inputs
from core.gaussian import gaussian_objective
from core.linear_gaussian import end_to_end, is_linear, linear_gaussian_objective
from core.networks import forward, init_params, make_spec
from core.objectives import Dataset, mse_objective
from core.phases import session_phases
from core.problem import build_problem
from core.runner import run_config
from core.session import load_session
from core.teachers import network_teacher, random_teacher
from core.views import singular_values


def _rotated(s: np.ndarray, k: int, d: int, seed: int) -> np.ndarray:
    """M = U diag(s) Vᵀ (k × d) with random orthonormal U, V: singular values s exactly."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(k, k)))
    v, _ = np.linalg.qr(rng.normal(size=(d, d)))
    r = len(s)
    return u[:, :r] @ np.diag(s) @ v[:, :r].T


def _matrix_teacher(m: np.ndarray):
    """A linear teacher x → M x as a one-hidden-layer identity net (W1 = M, W2 = I)."""
    k, d = m.shape
    spec = make_spec(d, [k], "identity", bias=False, output_dim=k)
    theta = jnp.concatenate([jnp.asarray(m).reshape(-1), jnp.eye(k).reshape(-1)])
    return network_teacher(spec, theta)


def _linear_config(m: np.ndarray, widths, *, init_scale=1e-3, t_max=1e5, bias=False) -> dict:
    k, d = m.shape
    return {
        "seed": 7,
        "teacher": {
            "kind": "explicit",
            "input_dim": d,
            "widths": [k],
            "activation": "identity",
            "bias": False,
            "output_dim": k,
            "params": {"w1": m.tolist(), "w2": np.eye(k).tolist()},
        },
        "student": {
            "widths": list(widths),
            "activation": "identity",
            "bias": bias,
            "init_scale": init_scale,
        },
        "data": {"kind": "gaussian-infinite"},
        "dynamics": {"t_max": t_max, "max_seconds": 60},
        "refine": {"method": "newton"},
    }


# ----------------------------------------------------------------------------- the value


def test_end_to_end_matches_the_forward_pass():
    spec = make_spec(3, [4, 2, 5], "identity", bias=True, output_dim=2)
    theta = init_params(spec, jax.random.PRNGKey(0))
    a, c = end_to_end(spec, theta)
    x = sample_inputs("gaussian", 7, 3, seed=1)
    np.testing.assert_allclose(x @ a.T + c, forward(spec, theta, x), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("bias", [False, True])
def test_loss_is_the_expectation_of_the_finite_data_mse(bias):
    """L = E[½‖f(x) − g(x)‖²]: Monte Carlo within 4 standard errors at every N, and the
    finite-data MSE closes in on L as N grows (its standard error shrinks like 1/√N)."""
    sspec = make_spec(3, [4, 2], "identity", bias=bias, output_dim=2)
    tspec = make_spec(3, [2, 3], "identity", bias=bias, output_dim=2)
    teacher = random_teacher(tspec, jax.random.PRNGKey(3))
    theta = init_params(sspec, jax.random.PRNGKey(4), 1.5)
    exact = float(linear_gaussian_objective(sspec, teacher).loss(theta))
    errors, ses = [], []
    for n in (1_000, 10_000, 100_000):
        x = sample_inputs("gaussian", n, 3, seed=n)
        y = teacher(x)
        per_sample = 0.5 * np.sum(np.asarray(forward(sspec, theta, x) - y) ** 2, axis=1)
        se = per_sample.std(ddof=1) / np.sqrt(n)
        finite = float(mse_objective(sspec, Dataset(x, y)).loss(theta))
        np.testing.assert_allclose(finite, per_sample.mean(), rtol=1e-12)
        assert abs(finite - exact) < 4 * se, (n, finite, exact, se)
        errors.append(abs(finite - exact))
        ses.append(se)
    assert ses[2] < ses[0] / 5  # 1/√100 = 0.1, with room for sampling noise in the SE
    assert errors[2] < 4 * ses[2] < errors[0] + 4 * ses[0]


def test_biases_add_the_offset_term():
    """½‖c − m‖² with c, m the composed biases: a student equal to the teacher but for a
    shifted output bias costs exactly ½‖shift‖²."""
    spec = make_spec(2, [3], "identity", bias=True, output_dim=2)
    teacher = random_teacher(spec, jax.random.PRNGKey(1))
    shift = jnp.zeros(spec.n_params).at[-2:].set(jnp.array([0.3, -0.4]))
    obj = linear_gaussian_objective(spec, teacher)
    assert float(obj.loss(teacher.theta)) == 0.0
    np.testing.assert_allclose(float(obj.loss(teacher.theta + shift)), 0.125, rtol=1e-14)


def test_agrees_with_the_pair_kernels_on_two_layer_nets():
    """Where core.gaussian also applies (bias-free, one hidden layer, scalar output) the two
    objectives are the same function: value, gradient and Hessian."""
    spec = make_spec(3, [4], "identity", bias=False)
    tspec = make_spec(3, [2], "identity", bias=False)
    teacher = random_teacher(tspec, jax.random.PRNGKey(5))
    ours, theirs = linear_gaussian_objective(spec, teacher), gaussian_objective(spec, teacher)
    for seed in range(3):
        theta = init_params(spec, jax.random.PRNGKey(seed))
        np.testing.assert_allclose(ours.loss(theta), theirs.loss(theta), rtol=1e-13)
        np.testing.assert_allclose(ours.grad(theta), theirs.grad(theta), atol=1e-13)
        np.testing.assert_allclose(ours.hessian(theta), theirs.hessian(theta), atol=1e-12)


# ----------------------------------------------------------------------------- derivatives


@pytest.mark.parametrize("maxnorm", [None, 0.4])
def test_gradient_and_hessian_against_finite_differences(maxnorm):
    spec = make_spec(3, [3, 2], "identity", bias=True, output_dim=2)
    teacher = random_teacher(make_spec(3, [2], "identity", True, 2), jax.random.PRNGKey(8))
    obj = linear_gaussian_objective(spec, teacher, maxnorm=maxnorm)
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(9), 1.2))
    if maxnorm is not None:
        assert np.any(np.abs(theta) > maxnorm)  # the barrier is active
    h = 1e-5
    eye = np.eye(spec.n_params)
    fd_grad = np.array([(obj.loss(theta + h * e) - obj.loss(theta - h * e)) / (2 * h) for e in eye])
    fd_hess = np.array([(obj.grad(theta + h * e) - obj.grad(theta - h * e)) / (2 * h) for e in eye])
    grad, hess = np.asarray(obj.grad(theta)), np.asarray(obj.hessian(theta))
    np.testing.assert_allclose(grad, fd_grad, atol=1e-8)
    np.testing.assert_allclose(hess, fd_hess, atol=1e-7)
    np.testing.assert_array_equal(hess, hess.T)
    value, g2 = obj.value_and_grad(theta)
    np.testing.assert_allclose(value, obj.loss(theta), rtol=1e-15)
    np.testing.assert_allclose(g2, grad, rtol=1e-15)


def test_gradient_is_exactly_zero_at_the_teacher():
    spec = make_spec(3, [3, 4], "identity", bias=True, output_dim=2)
    teacher = random_teacher(spec, jax.random.PRNGKey(2))
    obj = linear_gaussian_objective(spec, teacher)
    assert float(obj.loss(teacher.theta)) == 0.0
    assert float(jnp.max(jnp.abs(obj.grad(teacher.theta)))) == 0.0


def test_refuses_non_linear_students_and_teachers():
    lin = make_spec(2, [3, 3], "identity", bias=False)
    tanh_teacher = random_teacher(make_spec(2, [3], "tanh", False), jax.random.PRNGKey(0))
    assert is_linear(lin) and not is_linear(tanh_teacher.spec) and not is_linear(None)
    with pytest.raises(ValueError, match="linear teacher"):
        linear_gaussian_objective(lin, tanh_teacher)
    with pytest.raises(ValueError, match="identity"):
        linear_gaussian_objective(make_spec(2, [3], "tanh", False), tanh_teacher)


# ----------------------------------------------------------------------------- config


def test_config_routes_deep_linear_students_here_and_keeps_the_two_layer_route():
    m = _rotated(np.array([2.0, 1.0]), 2, 3, seed=0)
    deep = build_problem(parse_config(_linear_config(m, [3, 3], bias=True)))
    assert deep.objective.name == "gaussian-infinite-linear-mse" and deep.data is None
    two = _linear_config(m[:1], [2])
    two["teacher"].update(widths=[1], output_dim=1, params={"w1": m[:1].tolist(), "w2": [[1.0]]})
    assert build_problem(parse_config(two)).objective.name == "gaussian-infinite-mse"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"teacher": {"activation": "tanh"}}, "teacher.activation"),
        ({"data": {"kind": "gaussian-infinite", "loss": "correlation"}}, "data.loss"),
        ({"student": {"activation": "tanh", "widths": [3, 3], "bias": False}}, "data.kind"),
        ({"dynamics": {"method": "sgd"}}, "dynamics.method"),
    ],
)
def test_config_errors_name_the_field(change, field):
    cfg = _linear_config(np.eye(2), [3, 3])
    for table, values in change.items():
        cfg[table] = {**cfg[table], **values}
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, "c.toml")
    assert err.value.field == field
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- the flow


def _plateau_levels(s: np.ndarray) -> list[float]:
    """Eckart–Young: ½ Σ_{i>r} s_i² for r = 0, 1, …, len(s) − 1."""
    return [0.5 * float(np.sum(s[r:] ** 2)) for r in range(len(s))]


def test_flow_visits_the_rank_r_saddles_in_order_and_reaches_the_global_minimum(tmp_path):
    s = np.array([3.0, 1.0, 0.3])
    m = _rotated(s, 3, 4, seed=1)
    path = run_config(parse_config(_linear_config(m, [4, 4])), tmp_path / "run")
    session = load_session(path)
    plateaus = [p for p in session_phases(session) if p.kind == "plateau"]
    levels = _plateau_levels(s)
    assert len(plateaus) == len(levels), [p.loss for p in plateaus]
    for phase, level in zip(plateaus, levels, strict=True):
        np.testing.assert_allclose(phase.loss, level, rtol=1e-4)
        assert phase.index is not None and phase.index >= 1  # a saddle
    assert [p.t_start for p in plateaus] == sorted(p.t_start for p in plateaus)
    assert session.refined["loss"] <= 1e-20
    # the singular-values view: the student's end-to-end map learned M's spectrum
    sv = singular_values(session.final_spec, session.refined_theta)[0]
    np.testing.assert_allclose(sv[:3], s, atol=1e-10)
    # on each plateau the end-to-end map has rank r (its top r singular values learned)
    seg = session.segments[0]
    for r, phase in enumerate(plateaus):
        i = int(np.searchsorted(seg.t, 0.5 * (phase.t_start + phase.t_end)))
        sv_t = singular_values(seg.spec, seg.theta[i])[0]
        np.testing.assert_allclose(sv_t[:r], s[:r], rtol=1e-2)
        assert np.all(sv_t[r:] < 0.1 * s[r])


def test_a_narrow_student_ends_at_the_rank_deficient_minimum(tmp_path):
    """Narrowest width w = 1 < rank M = 3: the best the student can do is ½ Σ_{i>1} s_i²."""
    s = np.array([2.0, 1.0, 0.5])
    m = _rotated(s, 3, 3, seed=2)
    path = run_config(parse_config(_linear_config(m, [3, 1], t_max=2e4)), tmp_path / "run")
    session = load_session(path)
    expected = _plateau_levels(s)[1]
    np.testing.assert_allclose(session.refined["loss"], expected, rtol=1e-12)
    assert session.report["classification"] == "minimum"
