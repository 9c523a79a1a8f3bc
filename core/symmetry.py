"""Symmetries of an MLP's parameters: canonical forms and distances modulo them.

For a hidden neuron i of layer l (see :mod:`core.networks`) write u_i = (W_l[i], b_l[i])
for its incoming weights (the bias only where the layer has one) and a_i = W_{l+1}[:, i]
for its outgoing weights.  The network function f(x; θ) is unchanged by

* **permutations** of the neurons of one hidden layer that have the same activation
  (rows of W_l and b_l, columns of W_{l+1}); for deeper nets, independently in every
  hidden layer;
* the **sign flip** (u_i, a_i) → (−u_i, −a_i) of a neuron with an odd activation,
  σ(−z) = −σ(z) (:data:`ODD`), and (u_i, a_i) → (−u_i, a_i) for an even one,
  σ(−z) = σ(z) (:data:`EVEN`);
* the **rescaling** (u_i, a_i) → (c u_i, a_i / c^p), c > 0, of a neuron whose activation
  is positively homogeneous of degree p, σ(cz) = c^p σ(z) (:data:`HOMOGENEOUS_DEGREE`:
  relu and identity p = 1, square p = 2, cube p = 3).  The bias scales with the weights,
  so biases do not break this symmetry.

so a critical point comes with its whole orbit of critical points of the same loss and
Hessian spectrum.  Not quotiented: the continuous GL(k) symmetry of a layer of identity
neurons (a deep linear net's critical points form manifolds), and symmetries of the
teacher or of the data.

Canonical form (:func:`canonical_form`), layer by layer from the input: every rescalable
neuron is **normalised**, ‖u_i‖₂ = 1 (c = 1/‖u_i‖; a neuron with u_i = 0 is left as it
is).  Normalising, not balancing ‖u_i‖ = ‖a_i‖: rescaling the neurons of layer l + 1
changes the rows of W_{l+1}, which are the a_i of layer l, so a balance struck in layer l
would not survive; the u_i of layer l are untouched by later layers.  Every odd neuron's
sign makes the largest-magnitude entry of a_i positive (of u_i when a_i = 0; in hidden
layers before the last, of u_i, whose coordinates are canonical already), every even
one's the largest entry of u_i; then the neurons of each activation are sorted (among
their positions) by decreasing ‖u_i‖‖a_i‖ (last hidden layer) and by u_i.  The result
is a point of the same orbit, so a critical point's canonical form is an exact critical
point of the same loss.

Distance modulo symmetries (:func:`symmetric_distance`): both points are normalised as
above (not sorted), then the second one's neurons are matched to the first one's, layer
by layer from the input, by a linear assignment
(:func:`scipy.optimize.linear_sum_assignment`) on squared distances — over (u_i, a_i) in
the last hidden layer, over u_i in earlier ones (their a_i live in the next layer's
coordinates, matched next) — with each pair's sign chosen as the better one.  This keeps
the comparison robust where the sort order or a sign choice of the canonical form is a
near tie.  The distance is the largest entry of the difference after matching: for one
hidden layer, the distance to the nearest point of the orbit (in normalised
coordinates); deeper, an upper bound (a valid group element is always applied, so a
small distance always means the same orbit; a large one may, rarely, not mean another).

A **silent** neuron contributes nothing to f: its output weights vanish (‖a_i‖ ≤
:data:`SILENT_REL` · max_k ‖a_k‖ in its layer), or its incoming ones do (‖u_i‖ ≤
SILENT_REL · max_k ‖u_k‖) and σ(0) = 0 (:data:`ZERO_AT_ZERO`).  At a critical point the
other half of such a neuron moves freely along flat directions (a manifold of critical
points, the same loss everywhere), so it differs from run to run: the distance ignores
silent neurons (both halves are compared as zero, whichever half vanished), and the
normalisation leaves them as they are.

Pure NumPy (no JAX): θ is the flat (P,) vector of :mod:`core.networks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize

from core.spec import EVEN_ACTIVATIONS, ODD_ACTIVATIONS, NetworkSpec

#: σ(−z) = −σ(z) and σ(−z) = σ(z): the activation registry's parity
#: (:data:`core.spec.PARITY`, checked against :mod:`core.activations` in the tests).
ODD, EVEN = ODD_ACTIVATIONS, EVEN_ACTIVATIONS
#: σ(cz) = c^p σ(z) for c > 0.
HOMOGENEOUS_DEGREE = {"relu": 1, "identity": 1, "he1": 1, "square": 2, "cube": 3}
#: σ(0) = 0: a neuron with u_i = 0 is silent.
ZERO_AT_ZERO = frozenset(
    {"relu", "tanh", "erf", "gelu", "silu", "square", "cube", "identity", "he1", "he3", "selu"}
)
#: A weight vector counts as zero below SILENT_REL times the largest of its layer: the
#: dead-neuron threshold of :data:`core.analysis.DEAD_REL_A` (repeated so that this module
#: needs no JAX; a test keeps them equal).  Refinement drives a silent neuron's weights to
#: round-off (~1e-16 relative and below), live ones stay O(1e-3) and up.
SILENT_REL = 1e-6
_BIG = 1e300  # assignment cost of a pair of neurons with different activations


@dataclass(frozen=True)
class Symmetries:
    """Which symmetries a problem has beyond the permutations.

    Attributes:
        flip_output: sign flips of odd neurons (they negate a_i: not a symmetry when the
            output weights are fixed, ``student.train_output = false``).
        rescale: rescalings of homogeneous neurons (not a symmetry with unit-norm input
            weights, fixed output weights, or a weight-norm barrier ``maxnorm``).
    """

    flip_output: bool = True
    rescale: bool = True


def _layers(spec: NetworkSpec, theta: np.ndarray) -> list[list[np.ndarray | None]]:
    """[[W_l, b_l or None] for l = 1..L], copies."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (spec.n_params,):
        raise ValueError(f"θ has shape {theta.shape}, expected ({spec.n_params},)")
    offsets = spec.offsets()
    out = []
    for l in range(1, spec.n_layers + 1):
        w = theta[offsets[f"w{l}"]].reshape(spec.shapes[f"w{l}"]).copy()
        b = theta[offsets[f"b{l}"]].copy() if f"b{l}" in offsets else None
        out.append([w, b])
    return out


def _flat(layers: list[list[np.ndarray | None]]) -> np.ndarray:
    parts = []
    for w, b in layers:
        parts.append(w.reshape(-1))
        if b is not None:
            parts.append(b)
    return np.concatenate(parts) if parts else np.zeros(0)


def _incoming(layer: list, i: int) -> np.ndarray:
    w, b = layer
    return w[i] if b is None else np.append(w[i], b[i])


def _scale_neuron(layers: list, l: int, i: int, s_in: float, s_out: float) -> None:
    """Multiply neuron i of hidden layer ``l`` (0-based): u_i by s_in, a_i by s_out."""
    w, b = layers[l]
    w[i] *= s_in
    if b is not None:
        b[i] *= s_in
    layers[l + 1][0][:, i] *= s_out


def _largest_sign(v: np.ndarray) -> float:
    """The sign of the largest-magnitude entry of v (+1 for v = 0)."""
    if v.size == 0 or not np.any(v):
        return 1.0
    return 1.0 if v[int(np.argmax(np.abs(v)))] >= 0 else -1.0


def _normalise(
    spec: NetworkSpec, theta: np.ndarray, sym: Symmetries, sort: bool
) -> tuple[list, float]:
    """Normalised, sign-normalised (and, with ``sort``, sorted) layers; and the largest
    factor by which the normalisation stretched any coordinate (≥ 1)."""
    layers = _layers(spec, theta)
    stretch = 1.0
    for l, acts in enumerate(spec.activations):
        silent = _silent(layers, l, acts)
        for i, act in enumerate(acts):
            if silent[i]:
                continue
            p = HOMOGENEOUS_DEGREE.get(act)
            if sym.rescale and p is not None:
                nu = float(np.linalg.norm(_incoming(layers[l], i)))
                if nu > 0:
                    c = 1.0 / nu
                    _scale_neuron(layers, l, i, c, c**-p)
                    stretch = max(stretch, c, c**-p)
            a, u = layers[l + 1][0][:, i], _incoming(layers[l], i)
            if act in ODD and sym.flip_output:
                # By a_i in the last hidden layer (output coordinates, fixed); by u_i in
                # earlier ones (a_i there is in the next layer's coordinates, still to be
                # rescaled and flipped).
                first, second = (a, u) if l == len(spec.widths) - 1 else (u, a)
                s = _largest_sign(first) if np.any(first) else _largest_sign(second)
                _scale_neuron(layers, l, i, s, s)
            elif act in EVEN:
                s = _largest_sign(_incoming(layers[l], i))
                _scale_neuron(layers, l, i, s, 1.0)
        if sort:
            last = l == len(spec.widths) - 1
            u = [_incoming(layers[l], i) for i in range(len(acts))]
            a_norm = np.linalg.norm(layers[l + 1][0], axis=0)

            def key(i: int, u: list = u, a_norm: np.ndarray = a_norm, last: bool = last):
                size = float(np.linalg.norm(u[i]) * a_norm[i]) if last else 0.0
                return (-size, tuple(u[i].tolist()))

            # Neurons are sorted among the positions of their activation (a mixed layer
            # keeps its activation per position).
            order = np.arange(len(acts))
            for name in dict.fromkeys(acts):
                idx = [i for i, x in enumerate(acts) if x == name]
                order[idx] = sorted(idx, key=key)
            _permute(layers, l, order)
    return layers, stretch


def _permute(layers: list, l: int, order: list[int] | np.ndarray) -> None:
    """Reorder the neurons of hidden layer ``l``: new neuron j is old neuron order[j]."""
    w, b = layers[l]
    layers[l][0] = w[order]
    if b is not None:
        layers[l][1] = b[order]
    layers[l + 1][0] = layers[l + 1][0][:, order]


def canonical_form(
    spec: NetworkSpec, theta: np.ndarray, symmetries: Symmetries | None = None
) -> np.ndarray:
    """The canonical representative (P,) of θ's orbit (see the module docstring)."""
    layers, _ = _normalise(spec, theta, symmetries or Symmetries(), sort=True)
    return _flat(layers)


def _silent(layers: list, l: int, acts: tuple[str, ...]) -> np.ndarray:
    """Mask (k_l,) of the silent neurons of hidden layer ``l`` (module docstring)."""
    a = np.linalg.norm(layers[l + 1][0], axis=0)
    u = np.linalg.norm(np.stack([_incoming(layers[l], i) for i in range(len(acts))]), axis=1)
    zero_at_zero = np.array([x in ZERO_AT_ZERO for x in acts])
    return (a <= SILENT_REL * a.max()) | (zero_at_zero & (u <= SILENT_REL * u.max()))


def _forget_silent(layers: list, l: int, silent: np.ndarray) -> None:
    """Zero both halves of the silent neurons of hidden layer ``l``."""
    layers[l][0][silent] = 0.0
    if layers[l][1] is not None:
        layers[l][1][silent] = 0.0
    layers[l + 1][0][:, silent] = 0.0


@dataclass(frozen=True)
class Comparison:
    """:func:`symmetric_distance`'s answer.

    Attributes:
        distance: max |θ₁ − g θ₂| entrywise after matching (canonical coordinates).
        scale: max(‖θ₁‖∞, ‖θ₂‖∞) in the same coordinates.
        stretch: the largest factor by which normalising stretched a coordinate of either
            point (≥ 1): a position uncertainty δ in θ is at most stretch·δ here.
    """

    distance: float
    scale: float
    stretch: float


def symmetric_distance(
    spec: NetworkSpec,
    theta1: np.ndarray,
    theta2: np.ndarray,
    symmetries: Symmetries | None = None,
) -> Comparison:
    """How far θ₂'s orbit comes to θ₁'s (see the module docstring)."""
    sym = symmetries or Symmetries()
    raw1, raw2 = _layers(spec, theta1), _layers(spec, theta2)
    silent1 = [_silent(raw1, l, acts) for l, acts in enumerate(spec.activations)]
    silent2 = [_silent(raw2, l, acts) for l, acts in enumerate(spec.activations)]
    a, s1 = _normalise(spec, theta1, sym, sort=False)
    b, s2 = _normalise(spec, theta2, sym, sort=False)
    n_hidden = len(spec.widths)
    for l, acts in enumerate(spec.activations):
        _forget_silent(a, l, silent1[l])
        _forget_silent(b, l, silent2[l])
        last = l == n_hidden - 1
        k = len(acts)
        ua = np.stack([_incoming(a[l], i) for i in range(k)])
        ub = np.stack([_incoming(b[l], j) for j in range(k)])
        aa, ab = a[l + 1][0].T, b[l + 1][0].T  # (k, k_{l+1}): row i is a_i

        def sq(x: np.ndarray, y: np.ndarray, s: float) -> np.ndarray:
            """(k, k): ‖x_i − s y_j‖²."""
            return np.sum((x[:, None, :] - s * y[None, :, :]) ** 2, axis=-1)

        # Per pair, the cost of each allowed (sign of u, sign of a); the cheaper one is used.
        options = [(1.0, 1.0), (-1.0, -1.0), (-1.0, 1.0)]
        allowed = np.zeros((3, k, k), dtype=bool)
        same = np.equal.outer(np.array(acts, dtype=object), np.array(acts, dtype=object))
        allowed[0] = same
        odd = np.array([x in ODD for x in acts]) & sym.flip_output
        even = np.array([x in EVEN for x in acts])
        allowed[1] = same & odd[:, None]
        allowed[2] = same & even[:, None]
        costs = np.stack([sq(ua, ub, su) + (sq(aa, ab, sa) if last else 0.0) for su, sa in options])
        costs = np.where(allowed, costs, _BIG)
        pick = np.argmin(costs, axis=0)
        cost = np.min(costs, axis=0)
        signs = np.array(options)[pick]  # (k, k, 2)
        rows, cols = scipy.optimize.linear_sum_assignment(cost)
        for i, j in zip(rows, cols, strict=True):
            _scale_neuron(b, l, int(j), *signs[i, j])
        order = np.empty(k, dtype=int)
        order[rows] = cols
        _permute(b, l, order)
    fa, fb = _flat(a), _flat(b)
    dist = float(np.max(np.abs(fa - fb))) if fa.size else 0.0
    scale = float(max(np.max(np.abs(fa)), np.max(np.abs(fb)))) if fa.size else 0.0
    return Comparison(dist, scale, max(s1, s2))
