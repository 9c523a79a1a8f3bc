"""Tests for core.views: every view's numbers against an independent computation."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from scipy.special import erf, expit

import core  # noqa: F401  (float64)
from core.config import load_config
from core.data import make_dataset
from core.networks import init_params, make_spec, unflatten
from core.objectives import Objective, mse_objective
from core.problem import build_problem
from core.teachers import glu_teacher, orthonormal_teacher, random_teacher
from core.views import (
    VIEWS,
    class_regions,
    function_grid,
    function_line,
    loss_slice,
    singular_values,
    slice_radius,
    weight_vectors,
    why_not,
)

PRESETS = Path(__file__).resolve().parent.parent / "explorer" / "presets"


def _softplus(z):
    return np.logaddexp(0.0, z)


def _one_hidden_numpy(params: dict, x: np.ndarray, act) -> np.ndarray:
    """a·σ(W x + b) + c written out in NumPy (no core.networks)."""
    z = x @ np.asarray(params["w1"]).T
    if "b1" in params:
        z = z + np.asarray(params["b1"])
    out = act(z) @ np.asarray(params["w2"]).T
    if "b2" in params:
        out = out + np.asarray(params["b2"])
    return out


@pytest.fixture(scope="module")
def softplus_pair():
    """Student and random teacher, d = 2, width 3, softplus with biases."""
    spec = make_spec(2, [3], "softplus", bias=True)
    teacher = random_teacher(make_spec(2, [4], "softplus", bias=True), jax.random.PRNGKey(7))
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(3)))
    return spec, theta, teacher


# ------------------------------------------------------------------- function space


def test_function_line_matches_independent_forward_and_teacher(softplus_pair) -> None:
    spec, theta, teacher = softplus_pair
    out = function_line(spec, theta, teacher, n=51, seed=4)
    u = out["direction"]
    assert u.shape == (2,) and np.linalg.norm(u) == pytest.approx(1.0, abs=1e-15)
    assert u[np.argmax(np.abs(u))] > 0
    np.testing.assert_allclose(out["s"], np.linspace(-3, 3, 51))
    x = out["s"][:, None] * u[None, :]
    np.testing.assert_allclose(out["x"], x, rtol=0, atol=0)
    f = _one_hidden_numpy(unflatten(spec, theta), x, _softplus)
    g = _one_hidden_numpy(unflatten(teacher.spec, np.asarray(teacher.theta)), x, _softplus)
    np.testing.assert_allclose(out["student"], f, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["teacher"], g, rtol=1e-12, atol=1e-12)
    # Same seed, same direction (frames of a run are comparable); another seed, another one.
    again = function_line(spec, theta + 0.1, teacher, n=51, seed=4)
    np.testing.assert_array_equal(again["direction"], u)
    assert not np.allclose(function_line(spec, theta, teacher, seed=5)["direction"], u)


def test_function_line_glu_teacher_and_vector_output() -> None:
    u_t, v_t = np.array([1.0, 0.5]), np.array([0.5, -1.0])
    teacher = glu_teacher(u_t, v_t, "softplus")
    spec = make_spec(2, [2], "softplus", bias=False)
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(0)))
    out = function_line(spec, theta, teacher, n=21)
    x = out["x"]
    np.testing.assert_allclose(
        out["teacher"][:, 0], (x @ v_t) * expit(x @ u_t), rtol=1e-12, atol=1e-14
    )
    # Deep linear, K = 3: f = W3 W2 W1 x.
    lin = make_spec(3, [3, 3], "identity", bias=False, output_dim=3)
    th = np.asarray(init_params(lin, jax.random.PRNGKey(1)))
    p = unflatten(lin, th)
    out = function_line(lin, th, None, n=11)
    assert out["teacher"] is None and out["direction"].shape == (3,)
    m = np.asarray(p["w3"]) @ np.asarray(p["w2"]) @ np.asarray(p["w1"])
    np.testing.assert_allclose(out["student"], out["x"] @ m.T, rtol=1e-12, atol=1e-14)


def test_function_line_d1_direction_is_plus_one() -> None:
    spec = make_spec(1, [2], "tanh")
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(0)))
    out = function_line(spec, theta, None, n=5)
    np.testing.assert_array_equal(out["direction"], [1.0])
    np.testing.assert_allclose(out["x"][:, 0], np.linspace(-3, 3, 5))


def test_function_grid_orientation_and_difference(softplus_pair) -> None:
    spec, theta, teacher = softplus_pair
    out = function_grid(spec, theta, teacher, n=9, extent=2.0)
    g = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(out["x"], g)
    np.testing.assert_allclose(out["y"], g)
    ps, pt = unflatten(spec, theta), unflatten(teacher.spec, np.asarray(teacher.theta))
    for i, j in [(0, 0), (0, 8), (8, 0), (3, 6), (4, 4)]:
        pt_xy = np.array([[g[j], g[i]]])  # row i is y, column j is x
        f = _one_hidden_numpy(ps, pt_xy, _softplus)[0, 0]
        t = _one_hidden_numpy(pt, pt_xy, _softplus)[0, 0]
        assert out["student"][i, j] == pytest.approx(f, rel=1e-12, abs=1e-12)
        assert out["teacher"][i, j] == pytest.approx(t, rel=1e-12, abs=1e-12)
        assert out["diff"][i, j] == pytest.approx(f - t, rel=1e-10, abs=1e-12)
    with pytest.raises(ValueError, match="input_dim = 2"):
        function_grid(make_spec(3, [2]), np.zeros(make_spec(3, [2]).n_params), None)


# ------------------------------------------------------------------ class regions


@pytest.fixture(scope="module")
def three_class_pair():
    """Student and random teacher, d = 2, K = 3 outputs, softplus with biases."""
    spec = make_spec(2, [3], "softplus", bias=True, output_dim=3)
    tspec = make_spec(2, [4], "softplus", bias=True, output_dim=3)
    teacher = random_teacher(tspec, jax.random.PRNGKey(11))
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(5)))
    return spec, theta, teacher


def test_class_regions_are_the_argmax_of_a_numpy_forward(three_class_pair) -> None:
    spec, theta, teacher = three_class_pair
    out = class_regions(spec, theta, teacher, n=13, extent=2.5)
    g = np.linspace(-2.5, 2.5, 13)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)  # row i is y = g[i], column j is x = g[j]
    ps, pt = unflatten(spec, theta), unflatten(teacher.spec, np.asarray(teacher.theta))
    mine = np.argmax(_one_hidden_numpy(ps, pts, _softplus), axis=1).reshape(13, 13)
    theirs = np.argmax(_one_hidden_numpy(pt, pts, _softplus), axis=1).reshape(13, 13)
    np.testing.assert_array_equal(out["student"], mine)
    np.testing.assert_array_equal(out["teacher"], theirs)
    np.testing.assert_array_equal(out["disagree"], mine != theirs)
    assert out["agreement"] == pytest.approx(np.mean(mine == theirs))
    assert out["n_classes"] == 3 and out["points"] is None
    # Both classifications are non-trivial here (so the comparison could fail).
    assert len(np.unique(theirs)) >= 2 and 0 < out["agreement"] < 1
    # Training points: labels as integers or one-hot give the same predictions and accuracy.
    x = np.asarray(make_dataset(teacher, "gaussian", 200, 3).x)
    labels = np.argmax(_one_hidden_numpy(pt, x, _softplus), axis=1)
    pred = np.argmax(_one_hidden_numpy(ps, x, _softplus), axis=1)
    a = class_regions(spec, theta, teacher, n=5, points=x, labels=labels)
    b = class_regions(spec, theta, teacher, n=5, points=x, labels=np.eye(3)[labels])
    for r in (a, b):
        np.testing.assert_array_equal(r["labels"], labels)
        np.testing.assert_array_equal(r["predicted"], pred)
        assert r["accuracy"] == pytest.approx(np.mean(pred == labels))
    # wrong_cells: each misclassified point inside the square marks its nearest grid point.
    r = class_regions(spec, theta, teacher, n=9, extent=2.0, points=x, labels=labels)
    g9 = np.linspace(-2.0, 2.0, 9)
    want = np.zeros((9, 9), dtype=bool)
    for (px, py), bad in zip(x, pred != labels, strict=True):
        if bad and abs(px) <= 2.0 + 0.25 and abs(py) <= 2.0 + 0.25:
            want[np.argmin(np.abs(g9 - py)), np.argmin(np.abs(g9 - px))] = True
    assert want.any() and not want.all()
    np.testing.assert_array_equal(r["wrong_cells"], want)
    assert a["wrong_cells"] is not None and out["wrong_cells"] is None
    # No teacher: the student's regions alone.
    alone = class_regions(spec, theta, None, n=13, extent=2.5)
    np.testing.assert_array_equal(alone["student"], mine)
    assert alone["teacher"] is None and alone["disagree"] is None and alone["agreement"] is None


def test_class_regions_of_the_three_classes_teacher_are_its_sectors() -> None:
    """The preset's teacher: softplus neurons at 90°, 210°, 330°, output o = neuron o, so its
    class at x is the neuron nearest in angle (softplus is increasing): three 120° sectors."""
    problem = build_problem(load_config(PRESETS / "three_classes.toml"))
    out = class_regions(problem.spec, problem.theta0, problem.teacher, n=21)
    xx, yy = np.meshgrid(out["x"], out["y"])
    angle = np.degrees(np.arctan2(yy, xx))
    gap = [np.abs((angle - a + 180.0) % 360.0 - 180.0) for a in (90.0, 210.0, 330.0)]
    sector = np.argmin(np.stack(gap), axis=0)
    off_boundary = np.min(np.abs(np.stack(gap) - 60.0), axis=0) > 1.0  # not on a boundary
    off_boundary &= np.hypot(xx, yy) > 0
    np.testing.assert_array_equal(out["teacher"][off_boundary], sector[off_boundary])
    # Training labels are the teacher's classes at the data points (core.crossentropy).
    data = problem.data
    regions = class_regions(
        problem.spec, problem.theta0, problem.teacher, n=5, points=data.x, labels=data.y
    )
    pa = np.degrees(np.arctan2(regions["points"][:, 1], regions["points"][:, 0]))
    nearest = np.argmin(
        np.stack([np.abs((pa - a + 180.0) % 360.0 - 180.0) for a in (90.0, 210.0, 330.0)]), 0
    )
    np.testing.assert_array_equal(regions["labels"], nearest)


def test_class_regions_reject_bad_input(three_class_pair) -> None:
    spec, theta, teacher = three_class_pair
    with pytest.raises(ValueError, match="input_dim = 2"):
        three = make_spec(3, [2], output_dim=3)
        class_regions(three, np.zeros(three.n_params), None)
    with pytest.raises(ValueError, match="output_dim ≥ 2"):
        one = make_spec(2, [2])
        class_regions(one, np.zeros(one.n_params), None)
    with pytest.raises(ValueError, match="points must have shape"):
        class_regions(spec, theta, teacher, points=np.zeros((4, 3)), labels=np.zeros(4))
    with pytest.raises(ValueError, match="n must be ≥ 2"):
        class_regions(spec, theta, teacher, n=1)
    with pytest.raises(ValueError, match="labels must hold 4"):
        class_regions(spec, theta, teacher, points=np.zeros((4, 2)), labels=np.zeros(3))


def test_function_line_probabilities_are_softmax_and_the_teacher_one_hot(
    three_class_pair,
) -> None:
    spec, theta, teacher = three_class_pair
    out = function_line(spec, theta, teacher, n=31, probabilities=True)
    ps, pt = unflatten(spec, theta), unflatten(teacher.spec, np.asarray(teacher.theta))
    f = _one_hidden_numpy(ps, out["x"], _softplus)
    g = _one_hidden_numpy(pt, out["x"], _softplus)
    p = np.exp(f) / np.exp(f).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["student"], p, rtol=1e-12)
    np.testing.assert_array_equal(out["teacher"], np.eye(3)[np.argmax(g, axis=1)])
    np.testing.assert_array_equal(out["student_class"], np.argmax(f, axis=1))
    np.testing.assert_array_equal(out["teacher_class"], np.argmax(g, axis=1))
    one = make_spec(2, [2])
    with pytest.raises(ValueError, match="output_dim ≥ 2"):
        function_line(one, np.zeros(one.n_params), None, probabilities=True)


# ------------------------------------------------------------------- weight space


def test_weight_vectors_match_named_parameters(softplus_pair) -> None:
    spec, theta, teacher = softplus_pair
    out = weight_vectors(spec, theta, teacher)
    p = unflatten(spec, theta)
    np.testing.assert_array_equal(out["student"], np.asarray(p["w1"]))
    np.testing.assert_array_equal(out["bias"], np.asarray(p["b1"]))
    np.testing.assert_allclose(out["scale"], np.abs(np.asarray(p["w2"])[0]))
    np.testing.assert_array_equal(out["a"][:, 0], np.asarray(p["w2"])[0])
    pt = unflatten(teacher.spec, np.asarray(teacher.theta))
    np.testing.assert_array_equal(out["teacher"], np.asarray(pt["w1"]))
    np.testing.assert_allclose(out["teacher_scale"], np.abs(np.asarray(pt["w2"])[0]))
    # A GLU target has no neurons to draw.
    glu = glu_teacher([1.0, 0.0], [0.0, 1.0], "softplus")
    assert weight_vectors(spec, theta, glu)["teacher"] is None
    deep = make_spec(2, [2, 2])
    with pytest.raises(ValueError, match="one hidden layer"):
        weight_vectors(deep, np.zeros(deep.n_params), None)


# ------------------------------------------------------------ deep linear: singular values


def test_singular_values_against_numpy_svd_of_the_product() -> None:
    spec = make_spec(4, [5, 3], "identity", bias=False, output_dim=2)
    rng = np.random.default_rng(0)
    thetas = rng.standard_normal((6, spec.n_params))
    sv = singular_values(spec, thetas)
    assert sv.shape == (6, 2)
    for m in range(6):
        p = unflatten(spec, thetas[m])
        prod = np.asarray(p["w3"]) @ np.asarray(p["w2"]) @ np.asarray(p["w1"])
        np.testing.assert_allclose(sv[m], np.linalg.svd(prod, compute_uv=False), rtol=1e-12)
    assert singular_values(spec, thetas[0]).shape == (1, 2)


def test_singular_values_show_rank() -> None:
    # W1 = e1 e1ᵀ-like rank 1 → the end-to-end map has rank 1 whatever W2 is.
    spec = make_spec(3, [3], "identity", bias=False, output_dim=3)
    w1 = np.zeros((3, 3))
    w1[0, 0] = 2.0
    w2 = np.diag([1.5, 7.0, 9.0])
    theta = np.concatenate([w1.ravel(), w2.ravel()])
    sv = singular_values(spec, theta[None])[0]
    np.testing.assert_allclose(sv, [3.0, 0.0, 0.0], atol=1e-14)
    # The saddle-to-saddle preset's teacher T = diag(3, 1, 0.3).
    problem = build_problem(load_config(PRESETS / "saddle_to_saddle.toml"))
    t = problem.teacher
    np.testing.assert_allclose(singular_values(t.spec, t.theta)[0], [3.0, 1.0, 0.3], rtol=1e-14)
    with pytest.raises(ValueError, match="linear network"):
        singular_values(make_spec(2, [2], "softplus"), np.zeros(9))


# ------------------------------------------------------------------------ loss slices


@pytest.fixture(scope="module")
def erf_objective():
    teacher = orthonormal_teacher(3, 2, "erf")
    spec = make_spec(3, [3], "erf", bias=False)
    data = make_dataset(teacher, "gaussian", 200, 0)
    theta = np.asarray(init_params(spec, jax.random.PRNGKey(2)))
    return mse_objective(spec, data), theta


def test_loss_slice_second_difference_is_the_eigenvalue(erf_objective) -> None:
    objective, theta = erf_objective
    h = 1e-3
    out = loss_slice(objective, theta, n=3, radius=h)
    lam = np.linalg.eigvalsh(np.asarray(objective.hessian(theta)))
    assert out["lam_min"] == pytest.approx(lam[0], rel=1e-12)
    assert out["lam_max"] == pytest.approx(lam[-1], rel=1e-12)
    for key in ("min", "max"):
        vals, s = out[key], out[f"s_{key}"]
        np.testing.assert_allclose(s, [-h, 0.0, h])
        assert vals[1] == pytest.approx(out["loss"], rel=1e-15)
        second = (vals[0] - 2 * vals[1] + vals[2]) / h**2
        # O(h²) truncation plus rounding ε·L/h² ≈ 1e-16·0.1/1e-6: 1e-6 is ample.
        assert second == pytest.approx(out[f"lam_{key}"], abs=1e-6 + 1e-5 * abs(lam[-1]))
        v = out[f"v_{key}"]
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-14)
        assert v[np.argmax(np.abs(v))] > 0


def test_loss_slice_default_radius_and_saddle_descent() -> None:
    # The symmetry-saddle preset starts 1e-3 from a split-neuron saddle (λmin ≈ −0.010).
    problem = build_problem(load_config(PRESETS / "symmetry_saddle.toml"))
    theta = problem.theta0
    out = loss_slice(problem.objective, theta, n=41)
    assert out["lam_min"] < -5e-3
    lam_abs = max(abs(out["lam_min"]), abs(out["lam_max"]))
    tn = float(np.linalg.norm(theta))
    for key in ("min", "max"):
        r = slice_radius(out[f"lam_{key}"], out["loss"], lam_abs, tn)
        assert out[f"r_{key}"] == pytest.approx(r)
        assert 0 < r <= max(tn, 1.0)
        np.testing.assert_allclose(out[f"s_{key}"][[0, 20, -1]], [-r, 0.0, r])
    # Along v_min the loss goes down (a descent direction: to ≈ 0 in the quadratic model) ...
    assert out["min"].min() < 0.5 * out["loss"]
    # ... and along v_max it goes up on both sides, by about ΔL (quadratic model, ±50 %).
    assert out["max"][0] > out["loss"] and out["max"][-1] > out["loss"]
    delta = max(out["loss"], 0.5 * lam_abs * (0.01 * tn) ** 2)
    assert delta == out["loss"]  # on the plateau the loss sets the scale
    assert out["max"].max() - out["loss"] == pytest.approx(delta, rel=0.5)


def test_loss_slice_halves_a_radius_where_the_loss_rises_too_far() -> None:
    # L = 1 + θ₁² + 10 θ₂⁴ at θ = 0: λ = (2, 0), ΔL = L = 1.  Along e₁ (λmax = 2) the
    # quadratic radius √(2ΔL/λ) = 1 is exact (rise 1 ≤ 4ΔL); along e₂ (λ = 0) the capped
    # r = 1 rises by 10 > 4ΔL, so r halves once (rise 10/16 ≤ 4).
    spec = make_spec(1, [], bias=True)
    assert spec.n_params == 2

    def loss(t):
        return 1.0 + t[0] ** 2 + 10.0 * t[1] ** 4

    def hess(t):
        return np.array([[2.0, 0.0], [0.0, 120.0 * t[1] ** 2]])

    obj = Objective(spec, loss, None, None, hess)
    out = loss_slice(obj, np.zeros(2), n=5)
    assert (out["lam_min"], out["lam_max"]) == (0.0, 2.0)
    assert out["scale"] == 1.0
    assert out["r_max"] == pytest.approx(1.0) and out["r_min"] == pytest.approx(0.5)
    np.testing.assert_allclose(np.abs(out["v_min"]), [0.0, 1.0])
    np.testing.assert_allclose(out["max"], 1.0 + np.linspace(-1, 1, 5) ** 2)
    np.testing.assert_allclose(out["min"], 1.0 + 10.0 * np.linspace(-0.5, 0.5, 5) ** 4)


def test_slice_radius_caps_flat_directions() -> None:
    assert slice_radius(0.0, 1.0, 2.0, 5.0) == 5.0
    assert slice_radius(1e-30, 1.0, 2.0, 0.5) == 1.0
    assert slice_radius(2.0, 1.0, 2.0, 1.0) == pytest.approx(1.0)  # √(2·1/2)
    assert slice_radius(2.0, 1.0, 2.0, 1000.0) == pytest.approx(10.0)  # ΔL = ½·2·10²
    # Zero loss: the step is 1 % of ‖θ‖ along the stiffest direction.
    assert slice_radius(2.0, 0.0, 2.0, 300.0) == pytest.approx(3.0)


def test_loss_slice_rejects_bad_arguments(erf_objective) -> None:
    objective, theta = erf_objective
    with pytest.raises(ValueError, match="odd"):
        loss_slice(objective, theta, n=4)
    with pytest.raises(ValueError, match="radius"):
        loss_slice(objective, theta, radius=-1.0)
    with pytest.raises(ValueError, match="theta has shape"):
        loss_slice(objective, theta[:-1])


# ------------------------------------------------------------------------------ why_not


def test_why_not_says_why_in_one_line() -> None:
    five = make_spec(5, [3], "erf")
    assert why_not("weights", five) == "weight view needs input_dim = 2 (this net has d = 5)"
    deep = make_spec(2, [3, 3], "identity", bias=False)
    assert why_not("weights", deep) == "weight view needs one hidden layer (this net has 2)"
    assert why_not("singular", deep) is None
    assert why_not("singular", make_spec(2, [3], ["tanh", "relu", "tanh"])) == (
        "singular values need a linear network (this one has relu, tanh units)"
    )
    two = make_spec(2, [3], "softplus")
    teacher = random_teacher(two, jax.random.PRNGKey(0))
    assert why_not("weights", two, teacher) is None
    assert why_not("function", five, teacher) is None
    assert why_not("function", five, None) == "function view needs a teacher to compare with"
    assert why_not("slice", deep) is None
    for view in VIEWS:
        reason = why_not(view, five, None)
        assert reason is None or "\n" not in reason
    with pytest.raises(ValueError, match="unknown view"):
        why_not("phase", two)


def test_erf_convention_in_function_line() -> None:
    # σ = erf means erf(z/√2) (core.activations); the orthonormal teacher is Σ_j σ(v_j·x).
    teacher = orthonormal_teacher(2, 2, "erf")
    spec = make_spec(2, [1], "erf", bias=False)
    out = function_line(spec, np.zeros(spec.n_params), teacher, n=7)
    x = out["x"]
    np.testing.assert_allclose(
        out["teacher"][:, 0], erf(x[:, 0] / np.sqrt(2)) + erf(x[:, 1] / np.sqrt(2)), rtol=1e-13
    )
    np.testing.assert_array_equal(out["student"], np.zeros((7, 1)))
