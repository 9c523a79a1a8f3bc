"""Targets for teacher-student learning: teacher networks and non-network functions.

A :class:`Teacher` is a target function y = g(x), x (N, d) → y (N, k), plus, when
g is itself an MLP, its spec and flat parameters (so analyses can compare
student neurons with teacher neurons).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from core.activations import get_activation
from core.files import load_params_npz
from core.networks import NetworkSpec, flatten, forward_jit, make_spec

Array = jax.Array


@dataclass(frozen=True)
class Teacher:
    """A target function with optional network structure.

    Attributes:
        kind: "random" | "orthonormal" | "glu" | "rosenbrock" | "file" | "explicit", or
            "none" (:func:`no_teacher`: the targets are a data file's, there is no g).
        input_dim: d.
        output_dim: k.
        target: x (N, d) → y (N, k).
        spec, theta: the teacher network, when the target is an MLP (else ``None``).
    """

    kind: str
    input_dim: int
    output_dim: int
    target: Callable[[Array], Array]
    spec: NetworkSpec | None = None
    theta: Array | None = None

    def __call__(self, x: Array) -> Array:
        return self.target(x)


def no_teacher(input_dim: int, output_dim: int) -> Teacher:
    """The absent teacher of a data file with its own targets: dimensions only.

    Calling it raises ``ValueError`` (there is no g(x) off the data); code that compares
    with a target checks ``kind == "none"`` (or :func:`has_target`) first.
    """

    def target(x: Array) -> Array:
        raise ValueError("no teacher: the targets are data.path's y")

    return Teacher("none", int(input_dim), int(output_dim), target)


def has_target(teacher: Teacher | None) -> bool:
    """Whether ``teacher`` is a target function one can evaluate (not absent, not "none")."""
    return teacher is not None and teacher.kind != "none"


def network_teacher(spec: NetworkSpec, theta: Array, kind: str = "explicit") -> Teacher:
    """Teacher given by an MLP (spec, θ)."""
    theta = jnp.asarray(theta, jnp.float64)
    if theta.shape != (spec.n_params,):
        raise ValueError(f"teacher θ has shape {theta.shape}, expected ({spec.n_params},)")
    return Teacher(
        kind, spec.input_dim, spec.output_dim, lambda x: forward_jit(spec, theta, x), spec, theta
    )


def random_teacher(spec: NetworkSpec, key: Array) -> Teacher:
    """Teacher with i.i.d. standard normal weights and biases (MLPGradientFlow's random teacher)."""
    return network_teacher(spec, jax.random.normal(key, (spec.n_params,)), "random")


def orthonormal_teacher(
    input_dim: int, width: int, activation: str = "erf", key: Array | None = None
) -> Teacher:
    """Bias-free two-layer teacher Σ_j σ(v_j·x) with orthonormal v_j (rows) and unit output weights.

    With ``key`` the orthonormal frame is a random rotation (QR of a Gaussian matrix,
    sign-fixed); without it the v_j are the first ``width`` standard basis vectors.
    Requires width ≤ input_dim.
    """
    if width > input_dim:
        raise ValueError(f"orthonormal teacher needs width ≤ input_dim, got {width} > {input_dim}")
    if key is None:
        v = jnp.eye(input_dim)[:width]
    else:
        q, r = jnp.linalg.qr(jax.random.normal(key, (input_dim, input_dim)))
        q = q * jnp.sign(jnp.diag(r))
        v = q.T[:width]
    spec = make_spec(input_dim, [width], activation, bias=False)
    theta = flatten(spec, {"w1": v, "w2": jnp.ones((1, width))})
    return network_teacher(spec, theta, "orthonormal")


def glu_teacher(u: Sequence[float], v: Sequence[float], activation: str) -> Teacher:
    """Gated linear unit target y = (v·x) σ′(u·x), the limit function of a channel to infinity."""
    u_a = jnp.asarray(u, jnp.float64)
    v_a = jnp.asarray(v, jnp.float64)
    if u_a.shape != v_a.shape or u_a.ndim != 1:
        raise ValueError(f"glu teacher needs u and v of equal length, got {u_a.shape}, {v_a.shape}")
    dsig = get_activation(activation).df
    return Teacher("glu", int(u_a.shape[0]), 1, lambda x: ((x @ v_a) * dsig(x @ u_a))[:, None])


def rosenbrock_teacher(input_dim: int) -> Teacher:
    """Standardized Rosenbrock target, as in the channels paper.

    g(x) = Σ_{i<d} [100 (x_{i+1} − x_i²)² + (1 − x_i)²], standardized by the exact mean
    and standard deviation under x ~ N(0, I) so that targets are O(1); computed in closed
    form via Gaussian moments (E[x⁴]=3, E[x⁶]=15, E[x⁸]=105).
    """
    if input_dim < 2:
        raise ValueError("rosenbrock teacher needs input_dim ≥ 2")
    mean, std = _rosenbrock_moments(input_dim)

    def target(x: Array) -> Array:
        a, b = x[:, :-1], x[:, 1:]
        g = jnp.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2, axis=1)
        return ((g - mean) / std)[:, None]

    return Teacher("rosenbrock", input_dim, 1, target)


def _rosenbrock_moments(d: int) -> tuple[float, float]:
    """Exact mean and std of the Rosenbrock sum under x ~ N(0, I_d), by Monte-Carlo-free algebra.

    Uses a fixed 2-D Gauss-Hermite rule per term pair (exact: polynomial degree ≤ 8)
    and the chain structure: terms i and i+1 share x_{i+1}; terms further apart are independent.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(12)
    weights = weights / weights.sum()
    # Three consecutive coordinates (a, b, c) cover every covariance in the chain.
    a, b, c = np.meshgrid(nodes, nodes, nodes, indexing="ij")
    w = weights[:, None, None] * weights[None, :, None] * weights[None, None, :]
    t1 = 100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2
    t2 = 100.0 * (c - b * b) ** 2 + (1.0 - b) ** 2
    m = float(np.sum(w * t1))
    var1 = float(np.sum(w * t1 * t1)) - m * m
    cov12 = float(np.sum(w * t1 * t2)) - m * m
    n_terms = d - 1
    mean = n_terms * m
    var = n_terms * var1 + 2 * (n_terms - 1) * cov12
    return mean, float(np.sqrt(var))


def load_teacher_npz(path: str | Path, spec: NetworkSpec) -> Teacher:
    """Teacher network whose named parameters (w1, b1, …) are arrays in an ``.npz`` file.

    The file is read bounded and checked (:func:`core.files.load_params_npz`: the spec's
    names and shapes, finite real values); problems raise ``ValueError`` saying which.
    """
    params = load_params_npz(Path(path), spec.shapes)
    return network_teacher(spec, flatten(spec, params), "file")
