"""NetworkSpec construction, flat ↔ named parameters, forward pass against a hand-written MLP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.networks import (
    flatten,
    forward,
    hidden_preactivations,
    init_params,
    make_spec,
    params_to_lists,
    unflatten,
)


def test_shapes_and_param_count() -> None:
    spec = make_spec(3, [4, 5], "tanh", bias=[True, False, True], output_dim=2)
    assert spec.shapes == {"w1": (4, 3), "b1": (4,), "w2": (5, 4), "w3": (2, 5), "b3": (2,)}
    assert spec.n_params == 12 + 4 + 20 + 10 + 2
    offs = spec.offsets()
    assert offs["w1"] == slice(0, 12) and offs["b3"] == slice(spec.n_params - 2, spec.n_params)
    assert spec.layer_sizes == (3, 4, 5, 2) and spec.n_layers == 3


def test_flatten_unflatten_round_trip() -> None:
    spec = make_spec(2, [3, 2], ["relu", ("tanh", "erf")], bias=[False, True, True], output_dim=2)
    theta = jax.random.normal(jax.random.PRNGKey(1), (spec.n_params,))
    params = unflatten(spec, theta)
    for name, shape in spec.shapes.items():
        assert params[name].shape == shape
    np.testing.assert_array_equal(flatten(spec, params), theta)
    lists = params_to_lists(spec, theta)
    np.testing.assert_array_equal(flatten(spec, {k: np.array(v) for k, v in lists.items()}), theta)


def test_flatten_errors_name_the_parameter() -> None:
    spec = make_spec(2, [3])
    params = unflatten(spec, jnp.zeros(spec.n_params))
    with pytest.raises(ValueError, match="'w1' has shape"):
        flatten(spec, {**params, "w1": jnp.zeros((2, 3))})
    with pytest.raises(ValueError, match="missing parameter 'b2'"):
        flatten(spec, {k: v for k, v in params.items() if k != "b2"})
    with pytest.raises(ValueError, match="unexpected parameters"):
        flatten(spec, {**params, "w9": jnp.zeros(1)})


def test_forward_matches_hand_written_numpy() -> None:
    spec = make_spec(3, [4, 2], [("tanh", "relu", "softplus", "cube"), "erf"], output_dim=2)
    theta = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (spec.n_params,)))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (6, 3)))
    p = {k: np.asarray(v) for k, v in unflatten(spec, theta).items()}
    from scipy.special import erf

    z1 = x @ p["w1"].T + p["b1"]
    h1 = np.stack(
        [np.tanh(z1[:, 0]), np.maximum(z1[:, 1], 0), np.logaddexp(z1[:, 2], 0), z1[:, 3] ** 3], 1
    )
    z2 = h1 @ p["w2"].T + p["b2"]
    y = erf(z2 / np.sqrt(2)) @ p["w3"].T + p["b3"]
    np.testing.assert_allclose(forward(spec, jnp.asarray(theta), jnp.asarray(x)), y, rtol=1e-13)
    zs = hidden_preactivations(spec, jnp.asarray(theta), jnp.asarray(x))
    np.testing.assert_allclose(zs[0], z1, rtol=1e-13)
    np.testing.assert_allclose(zs[1], z2, rtol=1e-13)


def test_make_spec_forms_and_errors() -> None:
    per_neuron = make_spec(2, [3], ["tanh", "relu", "linear"])
    assert per_neuron.activations == (("tanh", "relu", "identity"),)
    per_layer = make_spec(2, [2, 2], ["tanh", "relu"])
    assert per_layer.activations == (("tanh", "tanh"), ("relu", "relu"))
    assert make_spec(2, [3], bias=False).bias == (False, False)
    with pytest.raises(ValueError, match="activation list has 3 entries for 2 hidden layers"):
        make_spec(2, [4, 4], ["tanh", "relu", "erf"])
    with pytest.raises(ValueError, match="unknown activation"):
        make_spec(2, [3], "nope")
    with pytest.raises(ValueError, match="input_dim"):
        make_spec(0, [3])
    with pytest.raises(ValueError, match="hidden widths"):
        make_spec(2, [0])
    with pytest.raises(ValueError, match="output_dim"):
        make_spec(2, [3], output_dim=0)
    with pytest.raises(ValueError, match="bias flag per layer"):
        make_spec(2, [3], bias=[True])
    with pytest.raises(ValueError, match="has 2 activations"):
        make_spec(2, [3, 3], [("tanh", "tanh"), "relu"])


def test_spec_is_hashable_and_init_scale() -> None:
    spec = make_spec(50, [200], bias=True)
    assert hash(spec) == hash(make_spec(50, [200], bias=True))
    theta = init_params(spec, jax.random.PRNGKey(0), scale=2.0)
    p = unflatten(spec, theta)
    # LeCun-normal × scale: Var(W1) = scale²/d = 4/50 (10⁴ entries → ~1.4% standard error).
    assert abs(float(jnp.var(p["w1"])) / (4 / 50) - 1) < 0.06
    assert float(jnp.max(jnp.abs(p["b1"]))) == 0.0


@pytest.mark.parametrize("scale", [1.0, 1e-3, 0.37])
def test_init_params_is_bitwise_the_eager_lecun_draw(scale: float) -> None:
    """init_params is one compiled program for start-up time, but a seed must keep its θ₀:
    the values equal op-by-op eager evaluation of scale·N(0,1)/√k_{l−1} to the last bit."""
    spec = make_spec(3, [3, 5], "identity", bias=[False, True, False], output_dim=2)
    key = jax.random.PRNGKey(7)
    parts, k = [], key
    sizes = spec.layer_sizes
    for l in range(1, spec.n_layers + 1):
        k, sub = jax.random.split(k)
        w = scale * jax.random.normal(sub, (sizes[l], sizes[l - 1])) / jnp.sqrt(sizes[l - 1])
        parts.append(w.reshape(-1))
        if spec.bias[l - 1]:
            parts.append(jnp.zeros(sizes[l]))
    np.testing.assert_array_equal(init_params(spec, key, scale), jnp.concatenate(parts))
