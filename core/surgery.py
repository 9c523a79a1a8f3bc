"""Neuron surgery on one-hidden-layer networks: merge, split, and step off a saddle.

For f(x) = Σ_i a_i σ_i(w_i·x + b_i) + b₂ (a_i = W2[:, i] ∈ ℝ^k):

* :func:`merge_neurons` replaces neurons i, j by one neuron with input weights and bias
  ½(w_i + w_j), ½(b_i + b_j) and output weights a_i + a_j (width − 1).  When w_i = w_j
  (e.g. after a split) the function is unchanged.
* :func:`split_neuron` duplicates neuron i: the copy keeps (w_i, b_i, σ_i), and the output
  weights become μ a_i (neuron i) and (1 − μ) a_i (the copy, appended as the last neuron),
  width + 1.  The function is unchanged for every real μ, and by Şimşek et al. (2021) a
  critical point of the narrower net maps to a critical point of the wider one for every
  μ (a line of critical points): ∂L/∂a of both copies equals ∂L/∂a_i of the original
  (same hidden unit, same residual), and ∂L/∂w of the copies are μ and (1 − μ) times the
  original ∂L/∂w_i, all zero.
* :func:`perturb_along_eigenvector` moves θ by ε along a unit Hessian eigenvector (by default
  that of the smallest eigenvalue: the steepest descent direction of curvature at a saddle).

Constrained students (:mod:`core.manifold`, pass ``constraint``): with
``train_output = false`` merge and split are refused (both change the output weights the
constraint holds fixed); with ``unit_norm`` a split keeps the constraint (the copy has the
same unit w_i) and a merge normalises the merged w′; a perturbation moves along an
eigenvector of the Riemannian Hessian (tangent) and is retracted onto the spheres.

Per-neuron activations travel with their neurons, so the returned spec can differ from the
input spec in more than its width.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from core.manifold import Constraint, constraint_of, retract, spectrum_eigh, spectrum_hessian
from core.networks import NetworkSpec, flatten, unflatten
from core.objectives import Objective


def _check_one_hidden(spec: NetworkSpec, what: str) -> None:
    if len(spec.widths) != 1:
        raise ValueError(
            f"{what} needs a network with exactly one hidden layer, got widths {list(spec.widths)}"
        )


def _check_index(name: str, i: int, width: int) -> int:
    if isinstance(i, bool) or not isinstance(i, int | np.integer):
        raise ValueError(f"{name} must be an integer neuron index, got {i!r}")
    if not 0 <= int(i) < width:
        raise ValueError(f"{name}={i} out of range for a hidden layer of width {width}")
    return int(i)


def _with_width(spec: NetworkSpec, acts: tuple[str, ...]) -> NetworkSpec:
    return NetworkSpec(
        spec.input_dim, (len(acts),), spec.output_dim, (acts,), spec.bias, spec.output
    )


def _check_constraint(constraint: Constraint | None, what: str) -> None:
    if constraint is not None and constraint.fixed.size:
        raise ValueError(
            f"{what}: refused — it changes the output weights, which student.train_output = "
            "false holds fixed"
        )


def merge_neurons(
    spec: NetworkSpec, theta, i: int, j: int, *, constraint: Constraint | None = None
) -> tuple[NetworkSpec, np.ndarray]:
    """Merge hidden neurons i ≠ j into one at position min(i, j); returns (spec′, θ′ (P′,)).

    w′ = ½(w_i + w_j), b′ = ½(b_i + b_j), a′ = a_i + a_j; the other neurons keep their order.
    Both neurons must share an activation (the merged neuron has one).  With a unit_norm
    ``constraint`` w′ is normalised; with train_output = false the merge is refused.
    """
    _check_constraint(constraint, "merge_neurons")
    _check_one_hidden(spec, "merge_neurons")
    k = spec.widths[0]
    i = _check_index("i", i, k)
    j = _check_index("j", j, k)
    if i == j:
        raise ValueError(f"merge_neurons needs two different neurons, got i = j = {i}")
    if k < 2:
        raise ValueError("merge_neurons needs a hidden layer of width ≥ 2")
    acts = spec.activations[0]
    if acts[i] != acts[j]:
        raise ValueError(
            f"cannot merge neurons {i} ({acts[i]}) and {j} ({acts[j]}) with different activations"
        )
    keep, drop = min(i, j), max(i, j)
    p = {n: np.array(v) for n, v in unflatten(spec, np.asarray(theta, np.float64)).items()}
    p["w1"][keep] = 0.5 * (p["w1"][i] + p["w1"][j])
    if constraint is not None and constraint.n_spheres:
        norm = float(np.linalg.norm(p["w1"][keep]))
        if norm == 0:
            raise ValueError(f"merge_neurons: w_{i} = −w_{j}, the merged w has no direction")
        p["w1"][keep] /= norm
    if spec.bias[0]:
        p["b1"][keep] = 0.5 * (p["b1"][i] + p["b1"][j])
    p["w2"][:, keep] = p["w2"][:, i] + p["w2"][:, j]
    p["w1"] = np.delete(p["w1"], drop, axis=0)
    if spec.bias[0]:
        p["b1"] = np.delete(p["b1"], drop)
    p["w2"] = np.delete(p["w2"], drop, axis=1)
    new_spec = _with_width(spec, acts[:drop] + acts[drop + 1 :])
    return new_spec, np.asarray(flatten(new_spec, p))


def split_neuron(
    spec: NetworkSpec, theta, i: int, mu: float, *, constraint: Constraint | None = None
) -> tuple[NetworkSpec, np.ndarray]:
    """Duplicate hidden neuron i; returns (spec′, θ′) with width k + 1.

    Neuron i keeps its place with output weights μ a_i; the copy (same w_i, b_i, σ_i) is
    appended as neuron k with output weights (1 − μ) a_i.  μ may be any finite real.
    A unit_norm ``constraint`` is kept as is; with train_output = false the split is refused.
    """
    _check_constraint(constraint, "split_neuron")
    _check_one_hidden(spec, "split_neuron")
    k = spec.widths[0]
    i = _check_index("i", i, k)
    mu = float(mu)
    if not math.isfinite(mu):
        raise ValueError(f"mu must be finite, got {mu}")
    acts = spec.activations[0]
    p = {n: np.array(v) for n, v in unflatten(spec, np.asarray(theta, np.float64)).items()}
    a_i = p["w2"][:, i].copy()
    p["w1"] = np.concatenate([p["w1"], p["w1"][i : i + 1]], axis=0)
    if spec.bias[0]:
        p["b1"] = np.append(p["b1"], p["b1"][i])
    p["w2"] = np.concatenate([p["w2"], ((1.0 - mu) * a_i)[:, None]], axis=1)
    p["w2"][:, i] = mu * a_i
    new_spec = _with_width(spec, (*acts, acts[i]))
    return new_spec, np.asarray(flatten(new_spec, p))


def hessian_eigenpair(
    objective: Objective, theta, which: str | int = "min"
) -> tuple[float, np.ndarray]:
    """(λ, v): an eigenvalue of ½(H + Hᵀ) at θ and its unit eigenvector (P,).

    ``which``: "min" (smallest λ), "max" (largest) or an int index into the ascending
    eigenvalues (negative counts from the end).
    """
    h = spectrum_hessian(objective, theta)
    if not np.all(np.isfinite(h)):
        raise ValueError("hessian at theta contains non-finite entries")
    if constraint_of(objective) is None:
        lam, vec = scipy.linalg.eigh(0.5 * (h + h.T))
    else:  # the Riemannian Hessian; eigenvectors embedded in θ space, tangent to M
        lam, vec = spectrum_eigh(objective, theta, h)
    n = lam.size
    if which == "min":
        idx = 0
    elif which == "max":
        idx = n - 1
    elif isinstance(which, int | np.integer) and not isinstance(which, bool) and -n <= which < n:
        idx = int(which) % n
    else:
        raise ValueError(f"which must be 'min', 'max' or an index in [-{n}, {n}), got {which!r}")
    return float(lam[idx]), vec[:, idx]


def perturb_along_eigenvector(
    objective: Objective, theta, eps: float, which: str | int = "min"
) -> np.ndarray:
    """θ′ = θ ± ε v with v the unit Hessian eigenvector chosen by ``which`` (see
    :func:`hessian_eigenpair`); of the two signs the one with the lower loss is returned
    (at a saddle both lower it to second order, ½ λ ε² < 0; the cubic term picks the sign).
    """
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    th = np.asarray(theta, dtype=np.float64)
    if th.shape != (objective.n_params,):
        raise ValueError(f"theta has shape {th.shape}, expected ({objective.n_params},)")
    _, v = hessian_eigenpair(objective, th, which)
    c = constraint_of(objective)
    plus, minus = retract(c, th + eps * v), retract(c, th - eps * v)
    lp = float(objective.loss(jnp.asarray(plus)))
    lm = float(objective.loss(jnp.asarray(minus)))
    return plus if lp <= lm else minus


__all__ = ["hessian_eigenpair", "merge_neurons", "perturb_along_eigenvector", "split_neuron"]
