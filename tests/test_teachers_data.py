"""Teachers and input samplers: statistics checked by Monte Carlo against standard errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.data import make_dataset, sample_inputs
from core.networks import forward, make_spec, unflatten
from core.teachers import (
    glu_teacher,
    load_teacher_npz,
    network_teacher,
    orthonormal_teacher,
    random_teacher,
    rosenbrock_teacher,
)


@pytest.mark.parametrize("d", [2, 4])
def test_rosenbrock_is_standardized(d: int) -> None:
    """Mean ≈ 0 and std ≈ 1 under x ~ N(0, I) within 5 Monte-Carlo standard errors.

    The Rosenbrock sum is heavy-tailed (degree-4 polynomial), so the standard error of
    the sample variance uses the sample fourth moment: SE(s²) ≈ √((m₄ − s⁴)/n).
    """
    n = 400_000
    x = np.random.default_rng(d).standard_normal((n, d))
    y = np.asarray(rosenbrock_teacher(d)(jnp.asarray(x)))[:, 0]
    mean, var = y.mean(), y.var()
    m4 = np.mean((y - mean) ** 4)
    assert abs(mean) < 5 * np.sqrt(var / n)
    assert abs(var - 1.0) < 5 * np.sqrt((m4 - var**2) / n)


def test_rosenbrock_values_and_errors() -> None:
    t = rosenbrock_teacher(2)
    from core.teachers import _rosenbrock_moments

    mean, std = _rosenbrock_moments(2)
    # g(1, 1) = 0 (the global minimum of the raw Rosenbrock function).
    np.testing.assert_allclose(t(jnp.array([[1.0, 1.0]])), [[(0 - mean) / std]], rtol=1e-14)
    # Exact moments for d=2 in closed form: E g = 100·E(b−a²)² + E(1−a)² = 100·4 + 2.
    assert mean == pytest.approx(402.0, rel=1e-12)
    with pytest.raises(ValueError, match="input_dim ≥ 2"):
        rosenbrock_teacher(1)


def test_orthonormal_teacher() -> None:
    t = orthonormal_teacher(5, 3, "erf", key=jax.random.PRNGKey(0))
    v = unflatten(t.spec, t.theta)["w1"]
    np.testing.assert_allclose(v @ v.T, np.eye(3), atol=1e-13)
    np.testing.assert_array_equal(unflatten(t.spec, t.theta)["w2"], np.ones((1, 3)))
    t0 = orthonormal_teacher(4, 2, "relu")
    np.testing.assert_array_equal(unflatten(t0.spec, t0.theta)["w1"], np.eye(4)[:2])
    with pytest.raises(ValueError, match="width ≤ input_dim"):
        orthonormal_teacher(2, 3)


def test_random_teacher_and_network_teacher_shape_error() -> None:
    spec = make_spec(3, [4], "tanh", output_dim=2)
    t = random_teacher(spec, jax.random.PRNGKey(1))
    x = jnp.ones((5, 3))
    np.testing.assert_array_equal(t(x), forward(spec, t.theta, x))
    assert t(x).shape == (5, 2) and t.kind == "random"
    with pytest.raises(ValueError, match="teacher θ has shape"):
        network_teacher(spec, jnp.zeros(3))


def test_glu_teacher_formula() -> None:
    t = glu_teacher([1.0, -0.5], [0.3, 2.0], "tanh")
    x = np.array([[0.2, 0.7], [-1.0, 0.4]])
    u, v = np.array([1.0, -0.5]), np.array([0.3, 2.0])
    expected = (x @ v) * (1 - np.tanh(x @ u) ** 2)
    np.testing.assert_allclose(t(jnp.asarray(x))[:, 0], expected, rtol=1e-14)
    with pytest.raises(ValueError, match="equal length"):
        glu_teacher([1.0], [1.0, 2.0], "tanh")


def test_npz_teacher_round_trip(tmp_path) -> None:
    spec = make_spec(2, [3], "softplus")
    t = random_teacher(spec, jax.random.PRNGKey(2))
    path = tmp_path / "teacher.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in unflatten(spec, t.theta).items()})
    loaded = load_teacher_npz(path, spec)
    np.testing.assert_array_equal(loaded.theta, t.theta)
    assert loaded.kind == "file"
    bad = tmp_path / "bad.npz"
    np.savez(bad, w1=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="missing array 'b1'"):
        load_teacher_npz(bad, spec)


def test_uniform_inputs_unit_variance() -> None:
    n = 200_000
    x = np.asarray(sample_inputs("uniform", n, 3, seed=0))
    assert np.all(np.abs(x) <= np.sqrt(3.0))
    # Var of U(−√3, √3) is 1; the sample variance's SE is √((E x⁴ − 1)/n) = √(0.8/n).
    assert np.all(np.abs(x.var(axis=0) - 1.0) < 5 * np.sqrt(0.8 / n))
    assert np.all(np.abs(x.mean(axis=0)) < 5 * np.sqrt(1 / n))


def test_gaussian_inputs_moments_and_seed() -> None:
    n = 100_000
    x = np.asarray(sample_inputs("gaussian", n, 2, seed=4))
    assert np.all(np.abs(x.mean(axis=0)) < 5 / np.sqrt(n))
    assert np.all(np.abs(x.var(axis=0) - 1.0) < 5 * np.sqrt(2 / n))
    np.testing.assert_array_equal(x, sample_inputs("gaussian", n, 2, seed=4))
    assert not np.array_equal(x, sample_inputs("gaussian", n, 2, seed=5))


def test_sobol_shape_determinism_and_normality() -> None:
    x = np.asarray(sample_inputs("sobol", 1024, 3, seed=7))
    assert x.shape == (1024, 3) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, sample_inputs("sobol", 1024, 3, seed=7))
    assert not np.array_equal(x, sample_inputs("sobol", 1024, 3, seed=8))
    # Quasi-Monte Carlo: far better than the MC standard error 1/√n ≈ 0.03.
    assert np.all(np.abs(x.mean(axis=0)) < 0.01)
    assert np.all(np.abs(x.var(axis=0) - 1.0) < 0.03)
    assert sample_inputs("sobol", 100, 2, seed=0).shape == (100, 2)  # non power of two


def test_unknown_input_kind_and_make_dataset() -> None:
    with pytest.raises(ValueError, match="unknown input kind 'cauchy'"):
        sample_inputs("cauchy", 10, 2, 0)
    t = rosenbrock_teacher(3)
    data = make_dataset(t, "gaussian", 50, seed=1)
    assert data.x.shape == (50, 3) and data.y.shape == (50, 1) and data.weights is None
    np.testing.assert_array_equal(data.y, t(data.x))
