"""sgd minibatches the objective's own loss (core.flow.discrete, Objective.extras
["batch_loss"/"batch_grad"]): the batch of all data is the objective (loss, gradient, also
by autodiff of the batch loss) for mse, cross-entropy (with its gauge term) and the
correlation loss, with the maxnorm barrier, unconstrained and on the unit-norm manifold;
the mean over single-sample batches is ∇L (unbiased); cross-entropy sgd runs follow gd;
compare's sgd trace on three_classes is the cross-entropy; config accepts sgd with every
finite-data loss and refuses it on infinite data."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.config import ConfigError, load_config, with_overrides
from core.correlation import correlation_objective
from core.crossentropy import centre_logits, crossentropy_objective
from core.flow import DynamicsSettings, run_to_end
from core.flow.discrete import _batch_gradient, _minibatch_grad
from core.manifold import constrained_objective, make_constraint, retract
from core.networks import make_spec
from core.objectives import Dataset, barrier, mse_objective

PRESETS = Path(__file__).resolve().parents[1] / "explorer" / "presets"
N = 48


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _data(loss: str, d: int, k: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, d))
    if loss == "crossentropy":
        return Dataset(x, rng.integers(0, k, N))  # integer labels
    w = rng.uniform(0.5, 1.5, N)  # non-uniform sample weights, summing to 1
    return Dataset(x, np.tanh(x @ rng.standard_normal((d, k))), w / w.sum())


def _objective(loss: str, maxnorm: float | None, constrained: bool, seed: int = 0):
    """(objective, θ): θ with weights outside the maxnorm box and, for the cross-entropy,
    off the centred slice (the gauge term G and its gradient ≠ 0)."""
    d, k = 3, 3 if loss == "crossentropy" else 2
    spec = make_spec(d, [4], ["tanh", "softplus", "erf", "tanh"], not constrained, k)
    data = _data(loss, d, k, seed)
    if loss == "mse":
        obj = mse_objective(spec, data, maxnorm=maxnorm)
    elif loss == "crossentropy":
        obj = crossentropy_objective(spec, data, maxnorm=maxnorm)
    else:
        obj = correlation_objective(spec, data, maxnorm=maxnorm)
    theta = 1.5 * np.random.default_rng(seed + 1).standard_normal(spec.n_params)
    if constrained:
        c = make_constraint(spec, unit_norm=True, train_output=loss != "correlation")
        obj, theta = constrained_objective(obj, c), retract(c, theta)
    return obj, jnp.asarray(theta)


CASES = [
    (loss, maxnorm, constrained)
    for loss in ("mse", "crossentropy", "correlation")
    for maxnorm in (None, 1.0)
    for constrained in (False, True)
]
IDS = [f"{a}-{'maxnorm' if b else 'free'}-{'sphere' if c else 'flat'}" for a, b, c in CASES]


@pytest.mark.parametrize(("loss", "maxnorm", "constrained"), CASES, ids=IDS)
def test_batch_of_all_data_is_the_objective(loss, maxnorm, constrained) -> None:
    obj, theta = _objective(loss, maxnorm, constrained)
    data = obj.data
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    w = jnp.asarray(data.weights) if data.weights is not None else jnp.full(N, 1.0 / N)
    if maxnorm is not None:
        assert float(barrier(theta, maxnorm)) > 1e-2  # the barrier is active at θ
    if loss == "crossentropy" and not constrained:
        assert np.max(np.abs(theta - centre_logits(obj.spec, theta))) > 0.1  # off the slice
    batch_loss = obj.extras["batch_loss"]
    assert abs(float(batch_loss(theta, x, y, w)) - float(obj.loss(theta))) <= 1e-12 * max(
        1.0, abs(float(obj.loss(theta)))
    )
    grad = np.asarray(obj.grad(theta))
    # sgd's gradient on the batch 0..N−1 (weights (N/N) w_n) is ∇L …
    assert _rel(_batch_gradient(obj)(theta, jnp.arange(N)), grad) <= 1e-12
    # … so is autodiff of the batch loss (independent of the hand-written backprop); a
    # constrained objective's gradient is 0 on its fixed coordinates.
    auto = np.array(jax.grad(batch_loss)(theta, x, y, w))
    c = obj.extras.get("constraint")
    if c is not None:
        auto[c.fixed] = 0.0
    assert _rel(auto, grad) <= 1e-12
    assert np.max(np.abs(grad)) > 1e-3


@pytest.mark.parametrize(("loss", "maxnorm", "constrained"), CASES[::3], ids=IDS[::3])
def test_single_sample_batches_average_to_the_gradient(loss, maxnorm, constrained) -> None:
    """Batches of one sample n weigh it N w_n: their mean over n is exactly ∇L (the θ-only
    barrier and gauge terms once per batch), the expectation of sgd's uniform draw."""
    obj, theta = _objective(loss, maxnorm, constrained, seed=3)
    gradient = _batch_gradient(obj)
    per_sample = jax.vmap(lambda i: gradient(theta, i[None]))(jnp.arange(N))
    assert _rel(jnp.mean(per_sample, axis=0), obj.grad(theta)) <= 1e-12
    assert float(jnp.max(jnp.std(per_sample, axis=0))) > 1e-3  # the batches do differ


def test_minibatches_are_drawn_from_the_data() -> None:
    """sgd's minibatch gradient is the batch gradient of the indices its key draws."""
    obj, theta = _objective("crossentropy", 1.0, False)
    key = jax.random.PRNGKey(7)
    idx = jax.random.randint(key, (16,), 0, N)
    np.testing.assert_array_equal(
        _minibatch_grad(obj, 16)(theta, key), _batch_gradient(obj)(theta, idx)
    )


def _preset(name: str, **tables):
    return with_overrides(load_config(PRESETS / f"{name}.toml"), **tables)


def test_crossentropy_sgd_follows_gd_and_decreases_the_crossentropy() -> None:
    """three_classes: sgd's loss is the cross-entropy and falls as gd's does; its path stays
    near gd's (noisy gd).  The MSE of the logits against the one-hot labels (what sgd
    minibatched before) leads elsewhere: its own gd path is much further from gd's."""
    from core.problem import build_problem

    cfg = _preset("three_classes", student={"init_scale": 0.5})
    problem = build_problem(cfg)
    obj, theta0 = problem.objective, problem.theta0
    settings = DynamicsSettings(method="sgd", lr=0.05, t_max=20.0, batch_size=32, n_saves=40)
    sgd = run_to_end(obj, theta0, settings, seed=1)
    gd = run_to_end(obj, theta0, DynamicsSettings(method="gd", lr=0.05, t_max=20.0, n_saves=40))
    assert sgd.loss[0] == pytest.approx(float(obj.loss(theta0)), rel=1e-12)
    assert sgd.loss[-1] < 0.8 * sgd.loss[0]
    assert sgd.loss[-1] == pytest.approx(gd.loss[-1], rel=0.1)
    travelled = np.linalg.norm(gd.theta[-1] - theta0)
    assert np.linalg.norm(sgd.theta[-1] - gd.theta[-1]) < 0.2 * travelled
    mse = mse_objective(obj.spec, obj.data, maxnorm=cfg.dynamics.maxnorm)
    wrong = run_to_end(mse, theta0, DynamicsSettings(method="gd", lr=0.05, t_max=20.0))
    assert np.linalg.norm(wrong.theta[-1] - gd.theta[-1]) > 0.3 * travelled


def test_compare_three_classes_sgd_trace_is_the_crossentropy() -> None:
    from core.compare import compare_config, default_methods
    from core.problem import build_problem

    cfg = _preset("three_classes", dynamics={"t_max": 3.0, "max_seconds": 60})
    problem = build_problem(cfg)
    assert default_methods(problem.objective.data is not None) == ("gd", "sgd", "adam")
    cmp = compare_config(cfg)
    sgd = next(tr for tr in cmp.traces if tr.method == "sgd")
    loss0 = float(problem.objective.loss(problem.theta0))
    assert sgd.t[0] == 0.0 and sgd.loss[0] == pytest.approx(loss0, rel=1e-12)
    assert cmp.flow_loss[0] == pytest.approx(loss0, rel=1e-12)
    assert sgd.loss[-1] < sgd.loss[0] and sgd.stop_reason == "t_max"
    assert sgd.max_distance < 0.05, sgd.max_distance  # noisy gd: near the flow


def test_correlation_sgd_on_the_sphere_decreases_the_loss() -> None:
    obj, theta = _objective("correlation", None, True, seed=5)
    c = obj.extras["constraint"]
    settings = DynamicsSettings(method="sgd", lr=0.05, t_max=5.0, batch_size=8, n_saves=10)
    run = run_to_end(obj, theta, settings, seed=2)
    assert run.loss[-1] < run.loss[0] - 1e-2
    np.testing.assert_allclose(np.linalg.norm(run.theta[:, c.spheres], axis=2), 1.0, atol=1e-12)
    assert np.all(run.theta[:, c.fixed] == np.asarray(theta)[c.fixed])


def test_config_accepts_sgd_with_every_finite_data_loss(tmp_path) -> None:
    assert _preset("three_classes", dynamics={"method": "sgd"}).dynamics.method == "sgd"
    text = (PRESETS / "multi_index_below.toml").read_text(encoding="utf-8")
    finite = text.replace('kind = "gaussian-infinite"', 'kind = "gaussian"\nsamples = 200')
    path = tmp_path / "c.toml"
    path.write_text(finite.replace('method = "flow"', 'method = "sgd"'), encoding="utf-8")
    cfg = load_config(path)
    assert (cfg.data.loss, cfg.dynamics.method) == ("correlation", "sgd")
    # Infinite data has no samples to draw: refused, the field named.
    path.write_text(text.replace('method = "flow"', 'method = "sgd"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dynamics\.method: 'sgd' needs finite data"):
        load_config(path)
