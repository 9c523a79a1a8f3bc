"""Landscape analysis at a parameter point θ: Hessian spectrum, neurons, channels, GLU limits.

Everything here is a pure function of (spec, θ) and, where needed, a batch of inputs
``x`` (N, d); results are frozen dataclasses whose ``to_json`` gives plain Python
floats and lists for the report (DESIGN.md, "Report").

Neuron-level analysis is for the first hidden layer.  For a one-hidden-layer net with
scalar output, f(x) = Σ_i a_i σ_i(w_i·x + b_i) + b₂, neuron i has input weights
w_i = W1[i] (d,), bias b_i (when present) and output weights a_i = W2[:, i] (k,).  It is
often convenient to fold the bias into an *augmented* input weight
w̃_i = (w_i, b_i) ∈ ℝ^{d+1} acting on x̃ = (x, 1); without a first-layer bias w̃_i = w_i.

Channels to infinity (Martinelli et al. 2025): a pair (i, j) with augmented weights
w̃_{i,j} = w ± εΔ (‖Δ‖ = 1) and output weights a_i, a_j computes

    a_i σ(w̃_i·x̃) + a_j σ(w̃_j·x̃) = c σ(w·x̃) + A (Δ·x̃) σ′(w·x̃) + O(ε²),
    c = a_i + a_j,   A = ε (a_i − a_j),

by Taylor expansion about the midpoint w (the odd orders in ε cancel between the two
neurons, so the remainder is ½ c ε² (Δ·x̃)² σ″ + (A ε²/6)(Δ·x̃)³ σ‴ + …).  Along a channel
ε → 0 and |a_i − a_j| → ∞ with A finite: the pair tends to that gated linear unit (GLU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.optimize

from core.activations import Activation, apply_per_neuron, get_activation
from core.files import json_float
from core.manifold import spectrum_hessian
from core.networks import NetworkSpec, unflatten
from core.objectives import Objective
from core.spec import ODD_ACTIVATIONS
from core.teachers import Teacher

if TYPE_CHECKING:
    from core.phases import Phase

# ---------------------------------------------------------------------------------------
# Thresholds (documented here once; every one is relative, so results do not depend on
# the units of the loss, the weights or the inputs).

#: Relative eigenvalue tolerance: |λ| ≤ EIG_REL_TOL · max|λ| counts as zero.  A Hessian
#: evaluated at a point refined to ‖∇L‖ ~ 1e-12 has symmetry-induced zero eigenvalues of
#: order 1e-14..1e-11 relative to the largest; 1e-9 leaves two decades of margin above that
#: and still resolves genuinely small curvatures (1e-8 relative and up).
EIG_REL_TOL = 1e-9
#: Absolute floor on the eigenvalue tolerance, used only when the Hessian is (nearly) zero.
EIG_ABS_FLOOR = 1e-14
#: Default gradient tolerance for :func:`classify` (‖∇L‖∞ above it means "unconverged").
DEFAULT_GRAD_TOL = 1e-8

#: A student neuron is a "copy" of a teacher neuron if cos(w̃_i, ṽ_j) ≥ COPY_COSINE.
COPY_COSINE = 0.99
#: ... and an "average" if its best non-negative combination Σ_j c_j ṽ_j (c_j ≥ 0) of at
#: least two teacher neurons, each with weight c_j ≥ AVERAGE_MIN_SHARE · max c, has
#: cosine ≥ AVERAGE_COSINE with w̃_i (and the neuron is not a copy).
AVERAGE_COSINE = 0.99
AVERAGE_MIN_SHARE = 0.1
#: "dead": ‖a_i‖ ≤ DEAD_REL_A · max_k ‖a_k‖ (output weight negligible next to the largest),
#: or, given inputs x, σ′(w_i·x_n + b_i) = 0 at every sample (e.g. a relu never active).
DEAD_REL_A = 1e-6

#: Channel detection, for a pair (i, j) with the same activation (see the module docstring):
#:   * ε ≤ CHANNEL_EPS_REL · ‖w‖ (input weights have nearly merged);
#:   * a_i a_j < 0 and |a_i − a_j| ≥ CHANNEL_RATIO · max(|c|, ā) (output weights diverge
#:     with opposite signs and dominate both their sum and the typical output weight ā:
#:     the median |a_k| over the other neurons, or, when the pair is the whole layer, the
#:     weight RMS(pair output)/RMS(σ(w·x̃)) one neuron at w would need for the pair's output);
#:   * the GLU term carries at least CHANNEL_MIN_GLU_SHARE of the pair's output (RMS over
#:     x): this rejects exact duplicates (ε = 0, e.g. a neuron split with μ ∉ [0, 1]),
#:     which lie on a line of critical points, not on a channel.
#: CHANNEL_RATIO = 3 catches channels early enough to matter: the default teacher-student
#: problem (seed 1) at t = 10⁸ has a pair with ε/‖w‖ ≈ 0.03, a = (4.36, −3.24) next to
#: typical |a| ≈ 1.3, loss 1.6e-5 and ‖∇L‖∞ ≈ 1e-8 — with a ratio of 10 that point was
#: reported as a "minimum", exactly the trap the channels paper warns about.
CHANNEL_EPS_REL = 0.1
CHANNEL_RATIO = 3.0
CHANNEL_MIN_GLU_SHARE = 1e-2

#: Size of the Gaussian sample used for channel checks when no inputs are given.
DEFAULT_GAUSSIAN_SAMPLES = 4096


# ---------------------------------------------------------------------------------------
# Spectrum and classification


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues of a symmetric Hessian, sorted ascending, with the counts at tolerance ``tol``.

    Attributes:
        eigenvalues: (P,) ascending.
        index: #(λ < −tol), the Morse index (number of descent directions).
        n_zero: #(|λ| ≤ tol), flat directions (symmetry, lines of critical points, channels).
        tol: the tolerance used.
    """

    eigenvalues: np.ndarray
    index: int
    n_zero: int
    tol: float

    @property
    def flat(self) -> bool:
        """True when some eigenvalue is zero within ``tol`` (a degenerate critical point)."""
        return self.n_zero > 0

    @property
    def n_positive(self) -> int:
        """#(λ > tol)."""
        return int(self.eigenvalues.size) - self.index - self.n_zero

    def to_json(self) -> dict:
        return {
            "eigenvalues": [json_float(v) for v in self.eigenvalues],
            "index": int(self.index),
            "n_zero": int(self.n_zero),
            "tol": json_float(self.tol),
        }


def default_eigen_tol(max_abs_eigenvalue: float, n_params: int) -> float:
    """tol = max(EIG_REL_TOL · s, P · ε_mach · s, EIG_ABS_FLOOR) with s = max|λ|.

    P·ε_mach·s bounds the rounding error of a symmetric eigensolver on a P×P matrix of
    norm s (it only matters for P ≳ 10⁶); EIG_REL_TOL·s allows for the Hessian being
    taken at a point that is critical to ~1e-12, not exactly; the floor handles H ≈ 0.
    """
    s = float(max_abs_eigenvalue)
    eps = float(np.finfo(np.float64).eps)
    return max(EIG_REL_TOL * s, n_params * eps * s, EIG_ABS_FLOOR)


def hessian_spectrum(hessian: np.ndarray, tol: float | None = None) -> Spectrum:
    """Spectrum of ½(H + Hᵀ) for a Hessian H of shape (P, P).

    Eigenvalues by LAPACK ``eigh`` (scipy), sorted ascending; ``index`` = #(λ < −tol),
    ``n_zero`` = #(|λ| ≤ tol).  ``tol=None`` uses :func:`default_eigen_tol`.
    """
    h = np.asarray(hessian, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"hessian must be a square (P, P) matrix, got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise ValueError("hessian contains non-finite entries")
    if tol is not None and not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number ≥ 0, got {tol}")
    lam = scipy.linalg.eigh(0.5 * (h + h.T), eigvals_only=True) if h.size else np.zeros(0)
    lam = np.sort(lam)
    s = float(np.max(np.abs(lam))) if lam.size else 0.0
    t = default_eigen_tol(s, h.shape[0]) if tol is None else float(tol)
    return Spectrum(lam, int(np.sum(lam < -t)), int(np.sum(np.abs(lam) <= t)), t)


def classify(
    spectrum: Spectrum,
    grad_inf_norm: float,
    channels: Sequence[Channel] = (),
    grad_tol: float = DEFAULT_GRAD_TOL,
) -> str:
    """Name the point: "channel" | "unconverged" | "saddle" | "minimum".

    * "channel" if any channel pair was detected (such points look like flat minima when a
      run stops early, and their gradient can be tiny, so channels take precedence);
    * "unconverged" if ‖∇L‖∞ > ``grad_tol`` (or is not finite);
    * "saddle" if the Morse index is ≥ 1;
    * "minimum" otherwise.  A minimum or saddle with zero eigenvalues is still reported as
      such; ``spectrum.flat`` says it is degenerate.
    """
    if channels:
        return "channel"
    g = float(grad_inf_norm)
    if not math.isfinite(g) or g > grad_tol:
        return "unconverged"
    return "saddle" if spectrum.index > 0 else "minimum"


# ---------------------------------------------------------------------------------------
# Neurons


@dataclass(frozen=True)
class NeuronInfo:
    """One first-layer neuron.

    Attributes:
        index: 0-based neuron index in the first hidden layer.
        w: input weights W1[i] (d,).
        b: bias b1[i], or None without a first-layer bias.
        a: output weights W2[:, i] (k,) (for deeper nets: its fan-out weights to layer 2).
        norm: ‖w̃_i‖, the norm of the augmented input weights (w_i, b_i).
        nearest_teacher: index of the teacher neuron with the largest cosine (|cos| for odd
            activations), or None when the teacher is not a one-hidden-layer network.
        cosine: that cosine (signed: negative means the sign-flipped copy), or None.
        role: "copy" | "average" | "channel" | "dead" | "".
    """

    index: int
    w: list[float]
    b: float | None
    a: list[float]
    norm: float
    nearest_teacher: int | None
    cosine: float | None
    role: str

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "w": [json_float(v) for v in self.w],
            "b": None if self.b is None else json_float(self.b),
            "a": [json_float(v) for v in self.a],
            "norm": json_float(self.norm),
            "nearest_teacher": self.nearest_teacher,
            "cosine": None if self.cosine is None else json_float(self.cosine),
            "role": self.role,
        }


def first_layer(spec: NetworkSpec, theta) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(W1 (k, d), b1 (k,) or None, W2 (k_2, k)) of a network with ≥ 1 hidden layer."""
    if not spec.widths:
        raise ValueError("spec has no hidden layer: neuron analysis needs at least one")
    p = unflatten(spec, np.asarray(theta, dtype=np.float64))
    return np.asarray(p["w1"]), (np.asarray(p["b1"]) if spec.bias[0] else None), np.asarray(p["w2"])


def _augmented(w: np.ndarray, b: np.ndarray | None, with_bias: bool) -> np.ndarray:
    """Rows (w_i, b_i) when ``with_bias`` (b = 0 if absent), else rows w_i."""
    if not with_bias:
        return w
    bb = np.zeros(w.shape[0]) if b is None else b
    return np.concatenate([w, bb[:, None]], axis=1)


def _cosines(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine matrix (n_u, n_v) between the rows of u and v (0 where a row is zero)."""
    nu = np.linalg.norm(u, axis=1)[:, None]
    nv = np.linalg.norm(v, axis=1)[None, :]
    denom = nu * nv
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (u @ v.T) / np.where(denom > 0, denom, 1.0), 0.0)


def _is_average(w: np.ndarray, teacher_w: np.ndarray, odd: bool) -> bool:
    """Whether w (or −w, for odd σ) is a non-negative combination of ≥ 2 teacher rows."""
    if np.linalg.norm(w) == 0 or teacher_w.shape[0] < 2:
        return False
    for sign in (1.0, -1.0) if odd else (1.0,):
        target = sign * w
        coef, _ = scipy.optimize.nnls(teacher_w.T, target)
        if coef.max() <= 0:
            continue
        fit = teacher_w.T @ coef
        cos = float(fit @ target / (np.linalg.norm(fit) * np.linalg.norm(target)))
        if cos >= AVERAGE_COSINE and int(np.sum(coef >= AVERAGE_MIN_SHARE * coef.max())) >= 2:
            return True
    return False


def neuron_table(
    spec: NetworkSpec,
    theta,
    teacher: Teacher | None = None,
    *,
    channels: Sequence[Channel] = (),
    x=None,
) -> list[NeuronInfo]:
    """Per first-layer neuron: weights, norm, nearest teacher neuron and copy/average role.

    Teacher matching uses augmented vectors (w, b) when either net has a first-layer bias
    (a missing bias counts as 0) and needs a one-hidden-layer teacher network with the same
    input dimension.  Roles, in order of precedence:

    * "channel": the neuron is in one of the given ``channels`` (see :func:`detect_channels`);
    * "dead": ‖a_i‖ ≤ DEAD_REL_A · max_k ‖a_k‖, or (given inputs ``x`` (N, d)) σ′ vanishes
      at every sample, so the neuron never receives a gradient (a relu that is never active);
    * "copy": cosine with the nearest teacher neuron ≥ COPY_COSINE (|cos| for odd σ);
    * "average": aligned with a non-negative combination of ≥ 2 teacher neurons
      (Martinelli, Şimşek, Gerstner & Brea 2023, "copy or average"), see AVERAGE_*;
    * "" otherwise.

    Deeper nets: the first layer is listed with its fan-out weights as ``a`` and no teacher
    roles (only "dead"/"").
    """
    w1, b1, w2 = first_layer(spec, theta)
    k = w1.shape[0]
    acts = spec.activations[0]
    a_norm = np.linalg.norm(w2, axis=0)
    a_max = float(a_norm.max()) if k else 0.0
    in_channel = {n for ch in channels for n in ch.neurons}

    never_active = np.zeros(k, dtype=bool)
    if x is not None:
        xx = _check_inputs(x, spec.input_dim)
        z = xx @ w1.T + (b1 if b1 is not None else 0.0)
        dz = np.asarray(apply_per_neuron(acts, jnp.asarray(z), order=1))
        never_active = np.all(dz == 0.0, axis=0)

    one_hidden = len(spec.widths) == 1
    tw = None
    if (
        one_hidden
        and teacher is not None
        and teacher.spec is not None
        and teacher.theta is not None
        and len(teacher.spec.widths) == 1
        and teacher.spec.input_dim == spec.input_dim
    ):
        tw1, tb1, _ = first_layer(teacher.spec, teacher.theta)
        with_bias = spec.bias[0] or teacher.spec.bias[0]
        tw = _augmented(tw1, tb1, with_bias)
        sw = _augmented(w1, b1, with_bias)
        cos = _cosines(sw, tw)

    out = []
    for i in range(k):
        # odd σ (the registry's parity, core.spec.PARITY): (w, a) and (−w, −a) are the same
        # neuron, so teacher matching uses |cos|
        odd = acts[i] in ODD_ACTIVATIONS
        nearest, cosine = None, None
        if tw is not None:
            score = np.abs(cos[i]) if odd else cos[i]
            nearest = int(np.argmax(score))
            cosine = float(cos[i, nearest])
        if i in in_channel:
            role = "channel"
        elif (a_max > 0 and a_norm[i] <= DEAD_REL_A * a_max) or a_max == 0 or never_active[i]:
            role = "dead"
        elif tw is not None and (abs(cosine) if odd else cosine) >= COPY_COSINE:
            role = "copy"
        elif tw is not None and _is_average(sw[i], tw, odd):
            role = "average"
        else:
            role = ""
        wi = w1[i]
        norm = float(np.linalg.norm(wi if b1 is None else np.append(wi, b1[i])))
        out.append(
            NeuronInfo(
                index=i,
                w=[float(v) for v in wi],
                b=None if b1 is None else float(b1[i]),
                a=[float(v) for v in w2[:, i]],
                norm=norm,
                nearest_teacher=nearest,
                cosine=cosine,
                role=role,
            )
        )
    return out


def neuron_response(spec: NetworkSpec, theta, i: int, grid) -> np.ndarray:
    """a_i σ_i(w_i·x + b_i) of first-layer neuron ``i`` at grid points (scalar output only).

    ``grid`` holds points with the input dimension last, shape (..., d) (e.g. a stacked
    meshgrid (n_y, n_x, 2) for d = 2); for d = 1 a plain 1-D array (G,) is accepted.
    Returns the response with the grid's leading shape, (...) (or (G,)).
    """
    w1, b1, w2 = first_layer(spec, theta)
    if len(spec.widths) != 1 or spec.output_dim != 1:
        raise ValueError("neuron_response needs a one-hidden-layer network with scalar output")
    if not 0 <= int(i) < w1.shape[0]:
        raise ValueError(f"neuron index i={i} out of range for width {w1.shape[0]}")
    g = np.asarray(grid, dtype=np.float64)
    if spec.input_dim == 1 and (g.ndim == 1 or g.shape[-1] != 1):
        g = g[..., None]
    if g.shape[-1] != spec.input_dim:
        raise ValueError(
            f"grid's last axis must be the input dimension {spec.input_dim}, got {g.shape}"
        )
    z = g @ w1[i] + (b1[i] if b1 is not None else 0.0)
    act = get_activation(spec.activations[0][i])
    return w2[0, i] * np.asarray(act.f(jnp.asarray(z)))


def neuron_weights(spec: NetworkSpec, theta) -> tuple[np.ndarray, np.ndarray]:
    """Augmented first-layer weights w̃ (k, d) or (k, d+1) and output magnitudes |a| (k,).

    w̃_i = (w_i, b_i) when the first layer has a bias, else w_i; |a_i| = ‖W2[:, i]‖₂ (the
    fan-out weights of neuron i).  These are the per-neuron summaries plotted over time.
    """
    w1, b1, w2 = first_layer(spec, theta)
    return _augmented(w1, b1, b1 is not None), np.linalg.norm(w2, axis=0)


def closest_pair_distance(w: np.ndarray) -> float:
    """min_{i<j} ‖w_i − w_j‖₂ over the rows of w (k, d); NaN for k < 2.

    Two neurons merging (a symmetry saddle, or a channel to infinity) send it to 0.
    """
    w = np.asarray(w, dtype=np.float64)
    k = w.shape[0]
    if k < 2:
        return float("nan")
    diff = w[:, None, :] - w[None, :, :]
    dist = np.sqrt(np.sum(diff * diff, axis=-1))
    return float(dist[np.triu_indices(k, 1)].min())


# ---------------------------------------------------------------------------------------
# Channels


@dataclass(frozen=True)
class Channel:
    """A neuron pair tending to the gated linear unit c σ(w·x̃) + A (Δ·x̃) σ′(w·x̃).

    Attributes:
        neurons: (i, j), 0-based, i < j.
        epsilon: ε = ‖w̃_i − w̃_j‖/2.
        c: a_i + a_j.
        A: ε (a_i − a_j).
        w: midpoint (w̃_i + w̃_j)/2 (augmented with the bias as last entry when present).
        delta: Δ = (w̃_i − w̃_j)/(2ε), a unit vector (same layout as ``w``).
        glu_error: RMS over x of (pair output − GLU) divided by RMS of the pair output.
    """

    neurons: tuple[int, int]
    epsilon: float
    c: float
    A: float
    w: list[float]
    delta: list[float]
    glu_error: float
    activation: str = field(default="", compare=False)

    def to_json(self) -> dict:
        return {
            "neurons": [int(n) for n in self.neurons],
            "epsilon": json_float(self.epsilon),
            "c": json_float(self.c),
            "A": json_float(self.A),
            "w": [json_float(v) for v in self.w],
            "delta": [json_float(v) for v in self.delta],
            "glu_error": json_float(self.glu_error),
            "activation": self.activation,
        }


def glu_function(channel: Channel, activation: str | Activation) -> Callable:
    """The channel's limit x (N, d) → c σ(w·x̃) + A (Δ·x̃) σ′(w·x̃), shape (N,).

    x̃ = (x, 1) when ``channel.w`` has one more entry than x has columns (bias folded in).
    """
    act = get_activation(activation) if isinstance(activation, str) else activation
    w = np.asarray(channel.w, dtype=np.float64)
    delta = np.asarray(channel.delta, dtype=np.float64)

    def glu(x) -> np.ndarray:
        xx = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if xx.shape[1] == w.size - 1:
            xx = np.concatenate([xx, np.ones((xx.shape[0], 1))], axis=1)
        elif xx.shape[1] != w.size:
            raise ValueError(f"x has {xx.shape[1]} columns, channel weights have {w.size}")
        z = jnp.asarray(xx @ w)
        return np.asarray(channel.c * act.f(z) + channel.A * (xx @ delta) * act.df(z))

    return glu


def gaussian_sample(input_dim: int, n: int = DEFAULT_GAUSSIAN_SAMPLES, seed: int = 0) -> np.ndarray:
    """x ~ N(0, I_d), shape (n, d): stand-in inputs for infinite-data objectives."""
    return np.random.default_rng(seed).standard_normal((n, input_dim))


def analysis_inputs(objective: Objective) -> np.ndarray:
    """The inputs x (N, d) for channel and activity checks at a point of ``objective``.

    The objective's data set; for infinite-data objectives the one stand-in sample
    :func:`gaussian_sample` ``(d)`` (DEFAULT_GAUSSIAN_SAMPLES points, seed 0).  The report
    (:func:`analyze`) and the explorer's inspector (:func:`inspect_point`) both take their
    inputs from here, so they agree about channels.
    """
    data = objective.data
    if data is not None:
        return np.asarray(data.x)
    return gaussian_sample(objective.spec.input_dim)


def detect_channels(spec: NetworkSpec, theta, x) -> list[Channel]:
    """Neuron pairs on a channel to infinity (criteria: CHANNEL_* above), greedily disjoint.

    Only for one-hidden-layer nets with scalar output (others return []); ``x`` (N, d) are
    the inputs over which the pair is compared with its GLU limit (for infinite-data
    objectives a Gaussian sample, :func:`gaussian_sample`).  Pairs are taken in order of
    increasing ε/‖w‖, each neuron in at most one channel.
    """
    if len(spec.widths) != 1 or spec.output_dim != 1:
        return []
    xx = _check_inputs(x, spec.input_dim)
    w1, b1, w2 = first_layer(spec, theta)
    a = w2[0]
    k = w1.shape[0]
    wt = _augmented(w1, b1, b1 is not None)
    xt = np.concatenate([xx, np.ones((xx.shape[0], 1))], axis=1) if b1 is not None else xx
    acts = spec.activations[0]
    abs_a = np.abs(a)

    candidates = []
    for i in range(k):
        for j in range(i + 1, k):
            if acts[i] != acts[j] or not (a[i] * a[j] < 0):
                continue
            w = 0.5 * (wt[i] + wt[j])
            eps = 0.5 * float(np.linalg.norm(wt[i] - wt[j]))
            wn = float(np.linalg.norm(w))
            if not (wn > 0 and 0 < eps <= CHANNEL_EPS_REL * wn):
                continue
            c, diff = float(a[i] + a[j]), float(a[i] - a[j])
            act = get_activation(acts[i])
            zi, zj, zm = (jnp.asarray(xt @ v) for v in (wt[i], wt[j], w))
            pair = a[i] * np.asarray(act.f(zi)) + a[j] * np.asarray(act.f(zj))
            delta = (wt[i] - wt[j]) / (2.0 * eps)
            big_a = eps * diff
            glu_term = big_a * (xt @ delta) * np.asarray(act.df(zm))
            glu = c * np.asarray(act.f(zm)) + glu_term
            rms_pair = _rms(pair)
            others = [n for n in range(k) if n not in (i, j)]
            if others:
                a_typ = float(np.median(abs_a[others]))
            else:
                rms_sig = _rms(np.asarray(act.f(zm)))
                a_typ = rms_pair / rms_sig if rms_sig > 0 else 0.0
            if abs(diff) < CHANNEL_RATIO * max(abs(c), a_typ):
                continue
            if rms_pair == 0 or _rms(glu_term) < CHANNEL_MIN_GLU_SHARE * rms_pair:
                continue
            err = _rms(pair - glu) / rms_pair
            candidates.append(
                (
                    eps / wn,
                    Channel((i, j), eps, c, big_a, w.tolist(), delta.tolist(), float(err), acts[i]),
                )
            )
    candidates.sort(key=lambda t: t[0])
    used: set[int] = set()
    out = []
    for _, ch in candidates:
        if used.isdisjoint(ch.neurons):
            out.append(ch)
            used.update(ch.neurons)
    return out


# ---------------------------------------------------------------------------------------
# Everything at once


@dataclass(frozen=True)
class Analysis:
    """Spectrum, neurons, channels and the classification of one point θ."""

    spectrum: Spectrum
    neurons: list[NeuronInfo]
    channels: list[Channel]
    classification: str
    grad_inf_norm: float
    loss: float

    def to_json(self) -> dict:
        """Report fragments (DESIGN.md "Report"): plain floats/lists; non-finite → None."""
        return {
            "spectrum": self.spectrum.to_json(),
            "classification": self.classification,
            "channels": [ch.to_json() for ch in self.channels],
            "neurons": [n.to_json() for n in self.neurons],
            "grad_inf_norm": json_float(self.grad_inf_norm),
            "loss": json_float(self.loss),
        }


def analyze(
    objective: Objective,
    theta,
    teacher: Teacher | None = None,
    x=None,
    *,
    grad_tol: float = DEFAULT_GRAD_TOL,
    tol: float | None = None,
) -> Analysis:
    """Analyse θ (P,) under ``objective``: loss, ‖∇L‖∞, Hessian spectrum, channels, neurons.

    The spectrum is that of :func:`core.manifold.spectrum_hessian`: ∇²L (P values), or for
    constrained parameters the Riemannian Hessian (F values, one per free dimension).

    ``x`` (N, d) are the inputs for channel and activity checks; by default
    :func:`analysis_inputs` (the objective's data, or the stand-in Gaussian sample).
    A non-finite Hessian gives an all-NaN spectrum and "unconverged".
    """
    spec = objective.spec
    th = jnp.asarray(theta, dtype=jnp.float64)
    if th.shape != (spec.n_params,):
        raise ValueError(f"theta has shape {th.shape}, expected ({spec.n_params},)")
    loss, grad = objective.value_and_grad(th)
    gnorm = float(jnp.max(jnp.abs(grad))) if grad.size else 0.0
    # Constrained parameters: the Riemannian Hessian (F, F) (core.manifold).
    h = spectrum_hessian(objective, th)
    if np.all(np.isfinite(h)):
        spectrum = hessian_spectrum(h, tol)
    else:
        spectrum = Spectrum(np.full(h.shape[0], np.nan), 0, 0, float("nan"))
        gnorm = float("nan")
    if x is None:
        x = analysis_inputs(objective)
    channels: list[Channel] = []
    neurons: list[NeuronInfo] = []
    if spec.widths:
        theta_np = np.asarray(th)
        channels = detect_channels(spec, theta_np, x)
        neurons = neuron_table(spec, theta_np, teacher, channels=channels, x=x)
    cls = classify(spectrum, gnorm, channels, grad_tol)
    return Analysis(spectrum, neurons, channels, cls, gnorm, float(loss))


#: Neuron responses are shown on [−RESPONSE_EXTENT, RESPONSE_EXTENT]^d: the inputs are
#: standard Gaussian (or data drawn like them), and ±3σ holds 99.7 % of each coordinate.
RESPONSE_EXTENT = 3.0
#: Response grid points per axis for d = 1 (a curve) and d = 2 (a heatmap).
RESPONSE_POINTS_1D = 121
RESPONSE_POINTS_2D = 41


@dataclass(frozen=True)
class Inspection:
    """What the explorer's neuron inspector shows at one point θ at time t.

    Attributes:
        t: the time of the point.
        note: one line summarising it (neurons and channels, or why there are none).
        neurons: :func:`neuron_table` with the detected channels and activity checks.
        channels: :func:`detect_channels` on :func:`analysis_inputs`.
        grid: response grid axis, (G,) — the inputs for d = 1, each axis's values for d = 2.
        responses: per neuron a_i σ_i(w_i·x + b_i) on the grid: (G,) for d = 1, (G, G)
            (rows = second coordinate) for d = 2; None when it cannot be drawn.
        response_note: why there is no response plot ("" when there is one).
    """

    t: float
    note: str
    neurons: list[NeuronInfo] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    grid: np.ndarray | None = None
    responses: list[np.ndarray] | None = None
    response_note: str = ""


def inspect_point(objective: Objective, theta, teacher: Teacher | None, t: float) -> Inspection:
    """Neuron table, channels and per-neuron responses of ``objective.spec`` at θ (P,).

    Channels and roles use the same inputs as the report (:func:`analysis_inputs`).
    Nets with more than one hidden layer get only a note (neuron views need one).
    """
    spec = objective.spec
    if len(spec.widths) != 1:
        layers = f"{len(spec.widths)} hidden layers" if spec.widths else "no hidden neurons"
        return Inspection(
            t,
            f"t={t:.4g}: {layers} — neuron views need one hidden layer; see the spectrum plot",
        )
    theta = np.asarray(theta, dtype=np.float64)
    x = analysis_inputs(objective)
    channels = detect_channels(spec, theta, x)
    neurons = neuron_table(spec, theta, teacher, channels=channels, x=x)
    k = spec.widths[0]
    grid, responses, response_note = None, None, ""
    if spec.output_dim == 1 and spec.input_dim in (1, 2):
        if spec.input_dim == 1:
            grid = np.linspace(-RESPONSE_EXTENT, RESPONSE_EXTENT, RESPONSE_POINTS_1D)
            points = grid
        else:
            grid = np.linspace(-RESPONSE_EXTENT, RESPONSE_EXTENT, RESPONSE_POINTS_2D)
            points = np.stack(np.meshgrid(grid, grid), axis=-1)  # (G, G, 2): rows = y
        responses = [neuron_response(spec, theta, i, points) for i in range(k)]
    else:
        outs = "s" if spec.output_dim != 1 else ""
        response_note = (
            f"no response plot: needs d ≤ 2 and one output (d = {spec.input_dim}, "
            f"{spec.output_dim} output{outs})"
        )
    n_ch = len(channels)
    note = f"t={t:.4g}: {k} neurons, {n_ch} channel{'s' if n_ch != 1 else ''}"
    return Inspection(t, note, neurons, channels, grid, responses, response_note)


#: The role of a neuron in a pair that a later state confirms as a channel (see
#: :func:`mark_forming_channels`).
FORMING_CHANNEL_ROLE = "channel (forming)"


def forming_channels(
    t: float,
    here: Sequence[Channel],
    ahead: Sequence[Channel],
    t_ahead: float,
    *,
    phases: Sequence[Phase],
) -> list[Channel]:
    """The pairs of ``ahead`` (:func:`detect_channels` at the later state t_ahead) that are
    forming at t: those ``here`` (the channels detected at t) does not confirm, when t and
    t_ahead lie in one channel phase of ``phases``; else none.  The one decision behind
    :func:`mark_forming_channels` (the inspector) and the narration (core.narration)."""
    t, t_ahead = float(t), float(t_ahead)
    inside = any(
        p.kind == "channel" and p.t_start <= t <= p.t_end and p.t_start <= t_ahead <= p.t_end
        for p in phases
    )
    confirmed = {ch.neurons for ch in here}
    return [ch for ch in ahead if ch.neurons not in confirmed] if inside else []


def mark_forming_channels(
    inspection: Inspection,
    ahead: Sequence[Channel],
    t_ahead: float,
    *,
    phases: Sequence[Phase],
) -> Inspection:
    """``inspection`` (at time t) with the neurons of ``ahead`` — :func:`detect_channels`
    at the later state t_ahead — marked :data:`FORMING_CHANNEL_ROLE` where t and t_ahead lie
    in one channel phase of ``phases`` (:func:`core.phases.session_phases`)
    and the neuron has no role of its own at t.

    Why: the static criteria (``CHANNEL_EPS_REL``, ``CHANNEL_RATIO``…) confirm a pair only
    once ε is small against ‖w‖, long after the trajectory has entered the channel; within
    the phase the pair is the same one, on its way in.  A pair that this state already
    confirms keeps its "channel" role; another pair of ``ahead`` that it does not yet
    confirm is marked forming beside it.  Nothing is guessed: outside a channel phase, with
    no channel ahead or when every pair ahead is confirmed here, the inspection is returned
    unchanged.
    """
    t = float(inspection.t)
    forming = forming_channels(t, inspection.channels, ahead, t_ahead, phases=phases)
    if not forming:
        return inspection
    pairs = {n for ch in forming for n in ch.neurons}
    neurons = [
        replace(n, role=FORMING_CHANNEL_ROLE) if n.index in pairs and not n.role else n
        for n in inspection.neurons
    ]
    if neurons == inspection.neurons:
        return inspection
    names = " and ".join(f"{i}+{j}" for i, j in (ch.neurons for ch in forming))
    note = f"{inspection.note}; neurons {names} form the channel confirmed at t={t_ahead:.4g}"
    return replace(inspection, neurons=neurons, note=note)


# ---------------------------------------------------------------------------------------
# Helpers


def _check_inputs(x, input_dim: int) -> np.ndarray:
    xx = np.asarray(x, dtype=np.float64)
    if xx.ndim != 2 or xx.shape[1] != input_dim or xx.shape[0] == 0:
        raise ValueError(f"x must have shape (N ≥ 1, {input_dim}), got {xx.shape}")
    return xx


def _rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(v))))


__all__ = [
    "Analysis",
    "Channel",
    "Inspection",
    "NeuronInfo",
    "Spectrum",
    "analysis_inputs",
    "analyze",
    "classify",
    "closest_pair_distance",
    "default_eigen_tol",
    "detect_channels",
    "first_layer",
    "forming_channels",
    "gaussian_sample",
    "glu_function",
    "hessian_spectrum",
    "inspect_point",
    "mark_forming_channels",
    "neuron_response",
    "neuron_table",
    "neuron_weights",
]
