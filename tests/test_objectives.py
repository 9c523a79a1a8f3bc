"""The MSE objective's structured Hessian and closed-form gradient against independent references.

References: ``jax.hessian`` of the plainly written loss (small nets only), central finite
differences of the loss, ``jax.jacrev`` of the network output.  Relative errors are
max|H − H_ref| / max|H_ref|.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core import objectives
from core.activations import ACTIVATIONS
from core.networks import NetworkSpec, forward, init_params, make_spec
from core.objectives import Dataset, barrier, mse_objective

ALL_ACTS = tuple(sorted(ACTIVATIONS))  # one neuron per activation: every σ″ in one compile


def _problem(spec: NetworkSpec, n: int = 13, weighted: bool = False, seed: int = 0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    theta = init_params(spec, keys[0], 1.0) + 0.4 * jax.random.normal(keys[1], (spec.n_params,))
    x = jax.random.normal(keys[2], (n, spec.input_dim))
    y = jax.random.normal(keys[3], (n, spec.output_dim))
    w = jax.random.uniform(keys[4], (n,), minval=0.1, maxval=1.0) if weighted else None
    return theta, Dataset(x, y, w)


def _reference_loss(spec: NetworkSpec, data: Dataset, maxnorm: float | None):
    n = data.x.shape[0]
    w = jnp.full(n, 1.0 / n) if data.weights is None else data.weights

    def loss(theta):
        r = forward(spec, theta, data.x) - data.y
        return 0.5 * jnp.sum(w[:, None] * r**2) + barrier(theta, maxnorm)

    return loss


def _rel(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


CASES = {
    # name: (make_spec kwargs, weighted, maxnorm)
    "linear-model": ({"input_dim": 3, "widths": [], "output_dim": 2}, False, None),
    "1h-all-acts-bias": (
        {"input_dim": 3, "widths": [len(ALL_ACTS)], "activation": [ALL_ACTS]},
        False,
        None,
    ),
    "1h-all-acts-nobias-K2-weighted": (
        {
            "input_dim": 2,
            "widths": [len(ALL_ACTS)],
            "activation": [ALL_ACTS],
            "bias": False,
            "output_dim": 2,
        },
        True,
        None,
    ),
    "1h-mixed-bias-maxnorm": (
        {
            "input_dim": 2,
            "widths": [4],
            "activation": "softplus",
            "bias": [True, False],
            "output_dim": 2,
        },
        True,
        0.3,
    ),
    "2h-mixed-K2-weighted-maxnorm": (
        {
            "input_dim": 2,
            "widths": [4, 3],
            "activation": [("softplus", "erf", "square", "relu"), ("tanh", "relu", "silu")],
            "bias": [True, False, True],
            "output_dim": 2,
        },
        True,
        0.5,
    ),
    "3h-mixed-bias": (
        {
            "input_dim": 2,
            "widths": [3, 2, 3],
            "activation": ["erf", ("softplus", "cube"), "sigmoid"],
            "bias": [False, True, False, True],
        },
        False,
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hessian_and_gradient_match_autodiff(case: str) -> None:
    kwargs, weighted, maxnorm = CASES[case]
    spec = make_spec(**kwargs)
    theta, data = _problem(spec, weighted=weighted)
    obj = mse_objective(spec, data, maxnorm=maxnorm)
    ref_loss = _reference_loss(spec, data, maxnorm)
    if maxnorm is not None:  # the barrier must actually be active somewhere
        assert float(jnp.sum(jnp.abs(theta) > maxnorm)) > 0
    h = obj.hessian(theta)
    h_ref = jax.jit(jax.hessian(ref_loss))(theta)
    assert h.shape == (spec.n_params, spec.n_params)
    assert _rel(h, h_ref) < 1e-10
    np.testing.assert_array_equal(h, h.T)
    value, g = obj.value_and_grad(theta)
    value_ref, g_ref = jax.jit(jax.value_and_grad(ref_loss))(theta)
    np.testing.assert_allclose(value, value_ref, rtol=1e-13)
    assert _rel(g, g_ref) < 1e-12


def test_loss_and_grad_callables_agree_with_value_and_grad() -> None:
    kwargs, weighted, maxnorm = CASES["2h-mixed-K2-weighted-maxnorm"]
    spec = make_spec(**kwargs)
    theta, data = _problem(spec, weighted=weighted)
    obj = mse_objective(spec, data, maxnorm=maxnorm)
    value, g = obj.value_and_grad(theta)
    np.testing.assert_allclose(obj.loss(theta), value, rtol=1e-14)
    np.testing.assert_allclose(obj.grad(theta), g, rtol=1e-14)
    assert obj.n_params == spec.n_params and obj.name == "mse"


def test_autodiff_second_order_path_matches_closed_form() -> None:
    """The forward-over-reverse path (used for deep nets) agrees with the one-layer closed form."""
    spec = make_spec(2, [5], ("tanh", "softplus", "erf", "relu", "square"), output_dim=2)
    theta, data = _problem(spec, weighted=True)
    args = (theta, data.x, data.y, data.weights)
    closed = jax.jit(functools.partial(objectives._hessian, spec=spec, maxnorm=None))(*args)
    generic = jax.jit(
        functools.partial(objectives._hessian, spec=spec, maxnorm=None, structured=False)
    )(*args)
    assert _rel(generic, closed) < 1e-12


def test_sample_blocks_with_padding(monkeypatch) -> None:
    """Large-N path: scanning over zero-padded sample blocks gives the same Hessian."""
    spec = make_spec(2, [3], "tanh", output_dim=2)
    theta, data = _problem(spec, n=23)
    whole = mse_objective(spec, data).hessian(theta)
    # Budget of 5 samples per block (5·K·P entries): 23 samples → 5 blocks, 2 padded rows.
    monkeypatch.setattr(objectives, "_BLOCK_BUDGET", 5 * 2 * spec.n_params)
    blocked = mse_objective(spec, data).hessian(theta)
    assert _rel(blocked, whole) < 1e-13


def test_gradient_matches_central_differences() -> None:
    spec = make_spec(2, [4], ("softplus", "tanh", "gelu", "erf"), output_dim=2)
    theta, data = _problem(spec, n=40, weighted=True)
    obj = mse_objective(spec, data, maxnorm=0.6)
    g = np.asarray(obj.grad(theta))
    eps = 1e-6
    steps = eps * jnp.eye(spec.n_params)
    loss = jax.vmap(obj.loss)
    fd = np.asarray((loss(theta + steps) - loss(theta - steps)) / (2 * eps))
    # central differences: truncation O(eps²·L‴) + rounding O(1e-16·L/eps) ≈ 1e-10
    np.testing.assert_allclose(g, fd, atol=1e-8 * max(1.0, np.abs(g).max()))


def test_hessian_matches_differences_of_gradient() -> None:
    """Independent of jax.hessian: columns of ∇²L vs central differences of ∇L."""
    spec = make_spec(3, [3], "silu", output_dim=1)
    theta, data = _problem(spec, n=30)
    obj = mse_objective(spec, data)
    h = np.asarray(obj.hessian(theta))
    eps = 1e-5
    steps = eps * jnp.eye(spec.n_params)
    grad = jax.vmap(obj.grad)
    cols = (grad(theta + steps) - grad(theta - steps)) / (2 * eps)  # row p = ∂∇L/∂θ_p
    np.testing.assert_allclose(h, np.asarray(cols).T, atol=1e-7 * np.abs(h).max())


def test_jacobian_and_gauss_newton_extras() -> None:
    spec = make_spec(2, [3], "tanh", output_dim=2)
    theta, data = _problem(spec, weighted=True)
    obj = mse_objective(spec, data, maxnorm=0.5)
    jac_ref = jax.jit(jax.jacrev(lambda t: forward(spec, t, data.x)))(theta).reshape(
        -1, spec.n_params
    )
    assert _rel(obj.extras["jacobian"](theta), jac_ref) < 1e-13
    wrep = jnp.repeat(data.weights, 2)
    gn_ref = (jac_ref * wrep[:, None]).T @ jac_ref + jnp.diag((jnp.abs(theta) > 0.5).astype(float))
    assert _rel(obj.extras["gauss_newton"](theta), gn_ref) < 1e-13
    assert obj.extras["maxnorm"] == 0.5


def test_zero_residual_hessian_is_gauss_newton() -> None:
    """At a teacher's own parameters (r = 0) the second-order term vanishes exactly."""
    spec = make_spec(2, [3], "softplus")
    theta, data = _problem(spec)
    data = Dataset(data.x, forward(spec, theta, data.x))
    obj = mse_objective(spec, data)
    assert _rel(obj.hessian(theta), obj.extras["gauss_newton"](theta)) < 1e-14


def test_barrier_value_and_derivatives() -> None:
    theta = jnp.array([-2.0, -0.5, 0.0, 0.9, 1.5])
    assert float(barrier(theta, None)) == 0.0
    assert float(barrier(theta, 1.0)) == pytest.approx(0.5 * (1.0**2 + 0.5**2))
    np.testing.assert_allclose(objectives.barrier_grad(theta, 1.0), [-1.0, 0, 0, 0, 0.5])
    np.testing.assert_allclose(objectives.barrier_hessian_diag(theta, 1.0), [1.0, 0, 0, 0, 1.0])


def test_bad_data_errors_name_the_field() -> None:
    spec = make_spec(2, [3], output_dim=2)
    x, y = jnp.zeros((5, 2)), jnp.zeros((5, 2))
    with pytest.raises(ValueError, match=r"data\.x must have shape \(N, 2\)"):
        mse_objective(spec, Dataset(jnp.zeros((5, 3)), y))
    with pytest.raises(ValueError, match=r"data\.y must have shape \(5, 2\)"):
        mse_objective(spec, Dataset(x, jnp.zeros((5, 1))))
    with pytest.raises(ValueError, match=r"data\.weights must have shape \(5,\)"):
        mse_objective(spec, Dataset(x, y, jnp.ones(4)))
    with pytest.raises(ValueError, match="maxnorm must be a positive number"):
        mse_objective(spec, Dataset(x, y), maxnorm=-1.0)
    # 1-D targets are accepted for scalar output
    spec1 = make_spec(2, [3])
    assert mse_objective(spec1, Dataset(x, jnp.zeros(5))).data.y.shape == (5, 1)


def test_hessian_memory_at_k100_n10000_is_small() -> None:
    """XLA's buffer accounting (nothing runs): structured Hessian < 1 GB, jax.hessian > 20×."""
    spec = make_spec(2, [100], "softplus", bias=True)
    n = 10_000
    args = (
        jax.ShapeDtypeStruct((spec.n_params,), jnp.float64),
        jax.ShapeDtypeStruct((n, 2), jnp.float64),
        jax.ShapeDtypeStruct((n, 1), jnp.float64),
        jax.ShapeDtypeStruct((n,), jnp.float64),
    )
    fn = jax.jit(functools.partial(objectives._hessian, spec=spec, maxnorm=None))
    mem = fn.lower(*args).compile().memory_analysis()
    total = mem.temp_size_in_bytes + mem.output_size_in_bytes + mem.argument_size_in_bytes
    assert total < 1e9

    def plain(theta, x, y, w):
        r = forward(spec, theta, x) - y
        return 0.5 * jnp.sum(w[:, None] * r * r)

    naive = jax.jit(jax.hessian(plain)).lower(*args).compile().memory_analysis()
    assert naive.temp_size_in_bytes > 20 * total


def test_log1p_series_within_two_ulp_on_the_unit_interval() -> None:
    """The vectorised log1p of the softplus layers against numpy's, on e ∈ [0, 1]
    (dense near 0 and 1, where the series is shortest and longest)."""
    e = np.concatenate([np.linspace(0.0, 1.0, 100_001), np.exp(-np.linspace(0.0, 745.0, 20_001))])
    got = np.asarray(jax.jit(objectives._log1p_unit)(jnp.asarray(e)))
    ref = np.log1p(e)
    ulp = np.abs(got - ref) / np.maximum(ref * np.finfo(float).eps, np.finfo(float).tiny)
    assert np.max(ulp) <= 2.0
    assert got[0] == 0.0


def test_softplus_gradient_matches_autodiff_in_both_tails() -> None:
    """The fused softplus forward/backward (one exp(−|z|) for σ and σ′, series log1p) on
    pre-activations from −60 to 60, one and two hidden layers, against jax.grad of the
    plainly written loss (core.activations' softplus, jnp.log1p)."""
    for widths in ([6], [4, 3]):
        spec = make_spec(2, widths, "softplus", bias=True, output_dim=2)
        theta, data = _problem(spec, n=200, seed=3)
        data = Dataset(20.0 * data.x, data.y)  # |z| up to ~60: both tails of softplus
        obj = mse_objective(spec, data)
        value, g = obj.value_and_grad(theta)
        value_ref, g_ref = jax.jit(jax.value_and_grad(_reference_loss(spec, data, None)))(theta)
        np.testing.assert_allclose(value, value_ref, rtol=1e-13)
        assert _rel(g, g_ref) < 1e-12
        assert (
            _rel(obj.hessian(theta), jax.jit(jax.hessian(_reference_loss(spec, data, None)))(theta))
            < 1e-10
        )
