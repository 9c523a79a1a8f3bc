"""core.crossentropy: loss, gradient and structured Hessian against autodiff of an independent
log-softmax formula; labels vs one-hot; sample blocks; accuracy; bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core import objectives
from core.crossentropy import (
    accuracy,
    centre_logits,
    class_labels,
    crossentropy_objective,
    label_dataset,
    one_hot,
)
from core.networks import forward, init_params, make_spec, unflatten
from core.objectives import Dataset


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def reference_loss(spec, x, labels, weights=None, maxnorm=None, gauge=False):
    """−Σ_n w_n log(exp f_{n,c_n} / Σ_o exp f_no) written with log/exp/sum, plus the barrier,
    plus (``gauge``) (1/2K)(‖Σ_o W_L[o,:]‖² + (Σ_o b_L[o])²) from the named view."""
    n = x.shape[0]
    w = jnp.full(n, 1.0 / n) if weights is None else jnp.asarray(weights)
    last = spec.n_layers

    def loss(theta):
        f = forward(spec, theta, x)
        picked = f[jnp.arange(n), labels]
        value = -jnp.sum(w * (picked - jnp.log(jnp.sum(jnp.exp(f), axis=1))))
        if maxnorm is not None:
            value = value + 0.5 * jnp.sum(jnp.maximum(jnp.abs(theta) - maxnorm, 0.0) ** 2)
        if gauge:
            p = unflatten(spec, theta)
            g = jnp.sum(jnp.sum(p[f"w{last}"], axis=0) ** 2)
            if f"b{last}" in p:
                g = g + jnp.sum(p[f"b{last}"]) ** 2
            value = value + g / (2 * spec.output_dim)
        return value

    return jax.jit(loss)


SPECS = {
    "linear": make_spec(3, [], "tanh", True, output_dim=4),
    "one-hidden": make_spec(3, [5], ["tanh", "g", "softplus", "tanh", "sigmoid"], True, 4),
    "one-hidden-no-bias": make_spec(3, [4], "tanh", False, 3),
    "two-hidden": make_spec(3, [4, 3], ["sigmoid", "g"], [True, False, True], 3),
}


def _case(name, n=37, seed=0, scale=1.5):
    spec = SPECS[name]
    kx, kl, kt = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (n, spec.input_dim))
    labels = jax.random.randint(kl, (n,), 0, spec.output_dim)
    theta = init_params(spec, kt, scale)
    return spec, x, labels, theta


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize(("maxnorm", "gauge"), [(None, False), (0.4, False), (None, True)])
def test_loss_gradient_hessian_match_autodiff(name, maxnorm, gauge) -> None:
    spec, x, labels, theta = _case(name)
    obj = crossentropy_objective(spec, Dataset(x, labels), maxnorm=maxnorm, gauge=gauge)
    ref = reference_loss(spec, x, labels, maxnorm=maxnorm, gauge=gauge)
    if maxnorm is not None:
        assert np.sum(np.abs(np.asarray(theta)) > maxnorm) >= 3  # the barrier is active
    assert abs(float(obj.loss(theta)) - float(ref(theta))) < 1e-13 * abs(float(ref(theta)))
    value, grad = obj.value_and_grad(theta)
    assert float(value) == pytest.approx(float(ref(theta)), rel=1e-13)
    assert _rel(grad, jax.grad(ref)(theta)) < 1e-12
    assert _rel(obj.grad(theta), grad) < 1e-15
    h_ref = jax.jit(jax.hessian(ref))(theta)
    h = obj.hessian(theta)
    assert _rel(h, h_ref) < 1e-11
    np.testing.assert_array_equal(h, h.T)


def test_gauss_newton_is_the_psd_part() -> None:
    """GGN = Σ_n w_n J_nᵀ(diag p − ppᵀ)J_n: autodiff Hessian of the loss in the logits, pulled
    back by the autodiff Jacobian; positive semi-definite."""
    spec, x, labels, theta = _case("two-hidden")
    obj = crossentropy_objective(spec, Dataset(x, labels), gauge=False)
    jac = jax.jacfwd(lambda t: forward(spec, t, x))(theta)  # (N, K, P)
    n = x.shape[0]

    def ell(f, c):
        return -(f[c] - jax.scipy.special.logsumexp(f)) / n

    hf = jax.vmap(jax.hessian(ell))(forward(spec, theta, x), labels)  # (N, K, K)
    ref = jnp.einsum("nkp,nkl,nlq->pq", jac, hf, jac)
    gn = obj.extras["gauss_newton"](theta)
    assert _rel(gn, ref) < 1e-12
    assert np.min(np.linalg.eigvalsh(np.asarray(gn))) > -1e-12


def test_labels_and_one_hot_give_the_same_objective() -> None:
    """MLPGradientFlow's "crossentropy" testset: targets as class indices or one-hot columns
    give the same loss, gradient and Hessian (d = 10, 10 classes, tanh hidden layer of 2,
    no biases, N = 100)."""
    spec = make_spec(10, [2], "tanh", False, output_dim=10)
    kx, kl, kt = jax.random.split(jax.random.PRNGKey(123), 3)
    x = jax.random.normal(kx, (100, 10))
    labels = jax.random.randint(kl, (100,), 0, 10)
    theta = jax.random.normal(kt, (spec.n_params,))
    a = crossentropy_objective(spec, Dataset(x, labels), gauge=False)
    b = crossentropy_objective(spec, Dataset(x, one_hot(labels, 10)), gauge=False)
    c = crossentropy_objective(spec, Dataset(x, np.asarray(labels, np.float64)), gauge=False)
    ref = reference_loss(spec, x, labels)
    for obj in (a, b, c):
        assert float(obj.loss(theta)) == pytest.approx(float(ref(theta)), rel=1e-13)
        assert _rel(obj.grad(theta), jax.grad(ref)(theta)) < 1e-12
        assert _rel(obj.hessian(theta), jax.hessian(ref)(theta)) < 1e-11
    np.testing.assert_allclose(a.hessian(theta), b.hessian(theta), rtol=0, atol=1e-15)


def test_soft_targets_and_weights() -> None:
    """Non-one-hot rows (s_n ≠ 1) and sample weights: against jax.hessian of −Σ w T·log p."""
    spec, x, _, theta = _case("one-hidden", n=11)
    t = jax.random.uniform(jax.random.PRNGKey(5), (11, 4)) * 2
    w = jax.random.uniform(jax.random.PRNGKey(6), (11,))
    obj = crossentropy_objective(spec, Dataset(x, t, w), gauge=False)

    def ref(theta):
        f = forward(spec, theta, x)
        return -jnp.sum(w[:, None] * t * jax.nn.log_softmax(f, axis=1))

    assert float(obj.loss(theta)) == pytest.approx(float(ref(theta)), rel=1e-13)
    assert _rel(obj.grad(theta), jax.grad(ref)(theta)) < 1e-12
    assert _rel(obj.hessian(theta), jax.hessian(ref)(theta)) < 1e-11


def test_sample_blocks_and_deep_path(monkeypatch) -> None:
    """Many samples (scanned in blocks, zero-weight padding) and the forward-over-reverse
    second-order term give the same Hessian as one block with the closed form."""
    spec, x, labels, theta = _case("one-hidden", n=101)
    whole = crossentropy_objective(spec, Dataset(x, labels)).hessian(theta)
    monkeypatch.setattr(objectives, "_BLOCK_BUDGET", 7 * spec.output_dim * spec.n_params)
    blocked = crossentropy_objective(spec, Dataset(x, labels))
    assert _rel(blocked.hessian(theta), whole) < 1e-13
    from core.crossentropy import _hessian

    w = jnp.full(101, 1 / 101)
    t = one_hot(labels, 4)
    auto = _hessian(theta, x, t, w, spec=spec, maxnorm=None, gauge=True, structured=False)
    assert _rel(auto, whole) < 1e-12


@pytest.mark.parametrize("name", ["one-hidden", "one-hidden-no-bias", "two-hidden"])
def test_gauge_directions(name) -> None:
    """The bare cross-entropy is flat along the gauge directions (its Hessian annihilates
    them); with the gauge term they have eigenvalue exactly 1; on the centred slice the loss
    and gradient are the bare ones and the probabilities are those of the uncentred θ."""
    spec, x, labels, theta = _case(name)
    bare = crossentropy_objective(spec, Dataset(x, labels), gauge=False)
    obj = crossentropy_objective(spec, Dataset(x, labels))
    m = obj.extras["gauge"]
    assert m.shape == (spec.layer_sizes[-2] + spec.bias[-1], spec.n_params)
    for v in m:  # L(θ + s v) = L(θ)
        shifted = bare.loss(theta + 0.7 * v)
        assert float(shifted) == pytest.approx(float(bare.loss(theta)), rel=1e-13)
    h_bare = np.asarray(bare.hessian(theta))
    assert np.max(np.abs(h_bare @ m.T)) < 1e-12 * np.max(np.abs(h_bare))
    np.testing.assert_allclose(np.asarray(obj.hessian(theta)) @ m.T, m.T, atol=1e-12)
    centred = centre_logits(spec, theta)
    np.testing.assert_allclose(m @ centred, 0, atol=1e-14)
    p0 = jax.nn.softmax(forward(spec, theta, x), axis=1)
    np.testing.assert_allclose(jax.nn.softmax(forward(spec, centred, x), axis=1), p0, atol=1e-14)
    assert float(obj.loss(centred)) == pytest.approx(float(bare.loss(theta)), rel=1e-13)
    np.testing.assert_allclose(obj.grad(centred), bare.grad(centred), atol=1e-15)
    ev = np.linalg.eigvalsh(np.asarray(obj.hessian(centred)))
    assert np.sum(np.abs(ev - 1.0) < 1e-10) >= m.shape[0]


def test_labels_from_a_teacher_and_accuracy() -> None:
    y = jnp.asarray([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [0.0, 0.0, 0.2], [1.0, 5.0, 4.0]])
    np.testing.assert_array_equal(class_labels(y), [1, 0, 2, 1])
    ds = label_dataset(Dataset(jnp.zeros((4, 2)), y))
    np.testing.assert_array_equal(ds.y, np.eye(3)[[1, 0, 2, 1]])
    logits = jnp.asarray([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert accuracy(logits, ds.y) == pytest.approx(0.75)
    assert accuracy(logits, ds.y, jnp.asarray([0.2, 1.2, 0.2, 0.4])) == pytest.approx(0.4)
    spec = make_spec(2, [3], "tanh", True, 3)
    theta = init_params(spec, jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 2))
    obj = crossentropy_objective(spec, Dataset(x, jnp.zeros(50, jnp.int32)))
    by_hand = np.mean(np.argmax(np.asarray(forward(spec, theta, x)), axis=1) == 0)
    assert obj.extras["accuracy"](theta) == pytest.approx(by_hand)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.array([0, 1, 3]), r"class labels must lie in \[0, 3\)"),
        (np.array([0, 1.5, 2]), "class labels must be integers"),
        (np.array([0, 1]), "must hold 3 labels"),
        (-np.eye(3), "non-negative"),
        (np.zeros((3, 2)), r"must have shape \(3,\) \(labels\) or \(3, 3\)"),
    ],
)
def test_bad_targets(y, message) -> None:
    spec = make_spec(2, [2], "tanh", True, 3)
    with pytest.raises(ValueError, match=message):
        crossentropy_objective(spec, Dataset(jnp.zeros((3, 2)), y))


def test_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="output_dim ≥ 2"):
        crossentropy_objective(make_spec(2, [2]), Dataset(jnp.zeros((3, 2)), np.zeros(3)))


# ------------------------------------------------------------------- config and problem

CLS = {
    "seed": 1,
    "teacher": {"kind": "random", "input_dim": 2, "widths": [4], "output_dim": 3},
    "student": {"widths": [2], "output": "softmax"},
    "data": {"kind": "gaussian", "samples": 60, "loss": "crossentropy"},
}


def _cls(**tables) -> dict:
    return {k: ({**v, **tables.get(k, {})} if isinstance(v, dict) else v) for k, v in CLS.items()}


def test_problem_labels_are_the_teachers_argmax() -> None:
    from core.config import parse_config
    from core.problem import build_problem

    problem = build_problem(parse_config(_cls()))
    assert problem.objective.name == "crossentropy"
    x = problem.data.x
    labels = class_labels(problem.teacher(x))
    np.testing.assert_array_equal(problem.data.y, np.eye(3)[labels])
    assert len(set(labels.tolist())) >= 2  # a real classification problem
    theta = problem.theta0
    ref = reference_loss(problem.spec, x, labels)
    assert float(problem.objective.loss(theta)) == pytest.approx(float(ref(theta)), rel=1e-13)
    fit = problem.fit_metrics(problem.spec, theta)
    by_hand = np.mean(np.argmax(np.asarray(forward(problem.spec, theta, x)), axis=1) == labels)
    assert fit == {"accuracy": pytest.approx(by_hand)}


@pytest.mark.parametrize(
    ("tables", "field", "message"),
    [
        ({"data": {"kind": "gaussian-infinite"}}, "data.loss", "'crossentropy' needs finite data"),
        ({"student": {"output": "identity"}}, "data.loss", "needs student.output = 'softmax'"),
        ({"data": {"loss": "mse"}}, "student.output", "needs data.loss = 'crossentropy'"),
        ({"teacher": {"output_dim": 1}}, "teacher.output_dim", "needs ≥ 2 classes"),
        (
            {"teacher": {"kind": "rosenbrock", "widths": [4], "output_dim": 1}},
            "teacher.kind",
            "network teacher",
        ),
        # an output activation is for the MSE (tests/test_output_activations.py)
        ({"student": {"output": "sigmoid"}}, "student.output", "needs data.loss = 'mse'"),
    ],
)
def test_config_errors_name_the_field(tables, field, message) -> None:
    from core.config import ConfigError, parse_config

    mapping = _cls(**{k: v for k, v in tables.items() if k in CLS})
    if "dynamics" in tables:
        mapping["dynamics"] = tables["dynamics"]
    with pytest.raises(ConfigError, match=f"^cls.toml: {field}: .*{message}") as info:
        parse_config(mapping, "cls.toml")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------- the three_classes preset


def _np_logits(spec, theta, x):
    """Softplus two-layer logits in NumPy, from the named view (independent of core.networks)."""
    p = {k: np.asarray(v) for k, v in unflatten(spec, np.asarray(theta)).items()}
    h = np.logaddexp(0.0, x @ p["w1"].T + p.get("b1", 0.0))
    return h @ p["w2"].T + p.get("b2", 0.0)


def test_three_classes_session_shows_what_its_preset_promises() -> None:
    """sessions/three_classes: the loss starts at log 3 (chance), the refined point is a strict
    minimum of loss + barrier (objective re-evaluated: ‖∇‖∞ tiny, every Hessian eigenvalue
    > 0), the training accuracy (NumPy forward on the regenerated data) is the report's,
    ≈ 0.97, and close to the accuracy on fresh samples; the barrier is what stops the flow:
    the bare cross-entropy still falls along θ → sθ."""
    from pathlib import Path

    from core.analysis import hessian_spectrum
    from core.data import sample_inputs
    from core.problem import build_problem
    from core.runner import session_report
    from core.session import load_session

    root = Path(__file__).resolve().parents[1]
    session = load_session(root / "sessions" / "three_classes")
    report = session_report(session)
    problem = build_problem(session.config)
    spec, theta = session.final_spec, np.asarray(session.refined_theta)
    assert abs(float(session.segments[0].loss[0]) - np.log(3)) < 1e-3
    assert np.max(np.abs(np.asarray(problem.objective.grad(theta)))) < 1e-10
    spectrum = hessian_spectrum(np.asarray(problem.objective.hessian(theta)))
    assert spectrum.eigenvalues[0] > 1e-3 and report["classification"] == "minimum"
    x, labels = np.asarray(problem.data.x), np.argmax(np.asarray(problem.data.y), axis=1)
    np.testing.assert_array_equal(labels, np.argmax(np.asarray(problem.teacher(x)), axis=1))
    train_acc = np.mean(np.argmax(_np_logits(spec, theta, x), axis=1) == labels)
    assert report["refined"]["accuracy"] == pytest.approx(train_acc, abs=1e-12)
    assert 0.95 <= train_acc < 1.0
    fresh = np.asarray(sample_inputs("gaussian", 4000, 2, seed=12345))
    fresh_labels = np.argmax(np.asarray(problem.teacher(fresh)), axis=1)
    fresh_acc = np.mean(np.argmax(_np_logits(spec, theta, fresh), axis=1) == fresh_labels)
    assert abs(fresh_acc - train_acc) < 0.05
    bare = crossentropy_objective(spec, problem.data, gauge=False)
    assert float(np.asarray(bare.grad(theta)) @ theta) < -0.05  # sharpening would still pay
    assert np.max(np.abs(theta)) > session.config.dynamics.maxnorm


def test_classification_runs_in_the_app() -> None:
    """The explorer runs a cross-entropy problem live (the three_classes preset, shortened):
    the loss it shows is the objective's at the shown point, below the log 3 start."""
    import asyncio
    from pathlib import Path

    from core.config import load_config, with_overrides
    from explorer.app import ExplorerApp

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "explorer" / "presets" / "three_classes.toml")
    cfg = with_overrides(cfg, dynamics={"t_max": 50.0}, refine={"method": "none"})
    app = ExplorerApp(config=cfg, show_clock=False)

    from helpers import start_run

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, "done")
            assert screen.objective.name == "crossentropy"
            assert screen.run.t == pytest.approx(50.0)
            assert screen.run.loss == pytest.approx(
                float(screen.objective.loss(screen.run.theta)), rel=1e-10
            )
            assert screen.run.loss < 0.9 * np.log(3)

    asyncio.run(scenario())


def test_classification_config_round_trips() -> None:
    """output / loss survive config_to_toml → parse (what sessions store); defaults stay mse."""
    import tomllib

    from core.config import config_to_toml, default_config, parse_config

    cfg = parse_config(_cls())
    assert cfg.student.output == "softmax" and cfg.data.loss == "crossentropy"
    assert parse_config(tomllib.loads(config_to_toml(cfg))) == cfg
    plain = default_config()
    assert plain.student.output == "identity" and plain.data.loss == "mse"


def test_huge_logits_stay_finite() -> None:
    """Sharpened boundaries (logits ~10³, where exp overflows): loss, gradient and Hessian
    stay finite and match the bare formula computed in log-sum-exp form."""
    spec, x, labels, theta = _case("one-hidden", n=20)
    theta = 300.0 * theta
    obj = crossentropy_objective(spec, Dataset(x, labels), gauge=False)
    f = forward(spec, theta, x)
    assert float(jnp.max(jnp.abs(f))) > 800  # exp(f) would overflow
    ref = -jnp.mean(f[jnp.arange(20), labels] - jax.scipy.special.logsumexp(f, axis=1))
    assert float(obj.loss(theta)) == pytest.approx(float(ref), rel=1e-12)
    assert np.all(np.isfinite(np.asarray(obj.grad(theta))))
    assert np.all(np.isfinite(np.asarray(obj.hessian(theta))))
