"""Multilayer perceptrons as a static spec plus one flat parameter vector.

A network with hidden widths (k₁, …, k_{L−1}) and output dimension k_L maps
x ∈ ℝ^{d} (d = ``input_dim``) through

    h⁰ = x,   z^l = W_l h^{l−1} + b_l,   h^l = σ_l(z^l)  (l < L),   f(x) = W_L h^{L−1} + b_L,

with W_l of shape (k_l, k_{l−1}) ("out × in") and b_l present only where
``bias[l-1]`` is true.  The output layer is linear unless ``spec.output`` names an
activation φ, then f(x) = φ(W_L h^{L−1} + b_L) elementwise (MLPGradientFlow's last
layer ``(K, φ, bias)``).  Each hidden layer has one
activation name per neuron (MLPGradientFlow 0.3 allows mixed layers).

All numerics see θ ∈ ℝ^P, the layers concatenated in order
``w1, b1, w2, b2, …`` with each W_l flattened row-major.  Humans see the named
view ``{"w1": (k₁, d), "b1": (k₁,), "w2": …}`` from :func:`unflatten`.
Batches of inputs are row-major: ``x`` has shape (N, d) and ``forward`` returns
(N, k_L).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from core.activations import apply_per_neuron, get_activation
from core.spec import NetworkSpec, make_spec

Array = jax.Array

__all__ = [
    "NetworkSpec",
    "flatten",
    "forward",
    "forward_jit",
    "hidden_preactivations",
    "init_params",
    "make_spec",
    "params_to_lists",
    "unflatten",
]


def unflatten(spec: NetworkSpec, theta: Array) -> dict[str, Array]:
    """Named view of θ: ``{"w1": (k₁, d), "b1": (k₁,), …}`` (works under jit and on NumPy)."""
    out = {}
    for name, sl in spec.offsets().items():
        out[name] = theta[sl].reshape(spec.shapes[name])
    return out


def flatten(spec: NetworkSpec, params: Mapping[str, Array]) -> Array:
    """Inverse of :func:`unflatten`; checks every named shape."""
    parts = []
    for name, shape in spec.shapes.items():
        if name not in params:
            raise ValueError(f"missing parameter {name!r}")
        value = jnp.asarray(params[name], dtype=jnp.float64)
        if value.shape != shape:
            raise ValueError(f"parameter {name!r} has shape {value.shape}, expected {shape}")
        parts.append(value.reshape(-1))
    extra = set(params) - set(spec.shapes)
    if extra:
        raise ValueError(f"unexpected parameters {sorted(extra)}")
    return jnp.concatenate(parts) if parts else jnp.zeros(0)


def forward(spec: NetworkSpec, theta: Array, x: Array) -> Array:
    """f(x; θ) for a batch: x (N, d) → (N, k_L)."""
    p = unflatten(spec, theta)
    h = x
    for l in range(1, spec.n_layers + 1):
        z = h @ p[f"w{l}"].T
        if spec.bias[l - 1]:
            z = z + p[f"b{l}"]
        h = apply_per_neuron(spec.activations[l - 1], z) if l < spec.n_layers else z
    return h if spec.linear_output else get_activation(spec.output).f(h)


# ``forward`` as one compiled program, for eager callers (a teacher labelling its data at
# start-up): a cache hit instead of one dispatch per layer operation.
forward_jit = jax.jit(forward, static_argnums=0)


def hidden_preactivations(spec: NetworkSpec, theta: Array, x: Array) -> list[Array]:
    """[z¹, …, z^{L−1}], each (N, k_l): the hidden pre-activations of a batch."""
    p = unflatten(spec, theta)
    h, zs = x, []
    for l in range(1, spec.n_layers):
        z = h @ p[f"w{l}"].T
        if spec.bias[l - 1]:
            z = z + p[f"b{l}"]
        zs.append(z)
        h = apply_per_neuron(spec.activations[l - 1], z)
    return zs


@partial(jax.jit, static_argnums=0)
def _init_params(spec: NetworkSpec, key: Array, scale: Array, root_fan_in: Array) -> Array:
    # ``scale`` and √k_{l−1} are run-time arguments, not constants, so XLA evaluates
    # scale·z/√k exactly as eager operations would (bit for bit: seeds keep their θ₀).
    parts = []
    sizes = spec.layer_sizes
    for l in range(1, spec.n_layers + 1):
        key, sub = jax.random.split(key)
        # The barriers keep XLA from reassociating scale·z/√k with the sampler's own
        # arithmetic (z = √2·erfinv(u)) or with each other.
        z = jax.lax.optimization_barrier(jax.random.normal(sub, (sizes[l], sizes[l - 1])))
        w = jax.lax.optimization_barrier(scale * z) / root_fan_in[l - 1]
        parts.append(w.reshape(-1))
        if spec.bias[l - 1]:
            parts.append(jnp.zeros(sizes[l]))
    return jnp.concatenate(parts)


def init_params(spec: NetworkSpec, key: Array, scale: float = 1.0) -> Array:
    """Random θ: W_l ~ N(0, scale²/k_{l−1}) entrywise (LeCun-normal times ``scale``), biases 0.

    One compiled program (start-up time: one cache hit instead of a dozen eager dispatches).
    """
    root_fan_in = jnp.sqrt(jnp.asarray(spec.layer_sizes[:-1], jnp.float64))
    return _init_params(spec, key, jnp.float64(scale), root_fan_in)


def params_to_lists(spec: NetworkSpec, theta: Array) -> dict[str, list]:
    """Named view as nested Python lists (for JSON reports)."""
    return {k: np.asarray(v).tolist() for k, v in unflatten(spec, np.asarray(theta)).items()}
