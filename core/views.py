"""Numbers behind the explorer's extra plot views: function space, weight space, deep-linear
singular values and loss slices along Hessian eigenvectors.

Each view is a pure function of the student spec, its flat parameters θ (P,) and, where it
compares with the target, the :class:`~core.teachers.Teacher`; results are dicts of NumPy
float64 arrays (shapes below).  :func:`why_not` says in one line when a view does not apply.

Function space.  Inputs x ~ N(0, I_d) in every shipped problem, so the views look at
|x| ≤ 3 (the projection of x on any unit vector lies in [−3, 3] with probability 99.7 %):

* :func:`function_line`: f(s u; θ) and g(s u) for s ∈ [−extent, extent] along one fixed unit
  direction u through the origin, u = z/‖z‖ with z ~ N(0, I_d) drawn from
  ``numpy.random.default_rng(seed)`` and its sign fixed so that its largest-magnitude entry is
  positive (the same u for every θ, so frames of one run are comparable; for d = 1, u = (1,)).
  A random direction sees every hidden unit's kink, where a teacher-neuron direction would
  hide the others.
* :func:`function_grid` (d = 2): f, g and f − g on an n × n grid of [−extent, extent]².

Classification (softmax outputs, ``data.loss = "crossentropy"``): the student's class at x is
ĉ(x) = argmax_o p_o(x) = argmax_o f_o(x) (softmax is monotone in each logit) and the
teacher's c(x) = argmax_o g_o(x), the labels of the data (:func:`core.crossentropy.class_labels`).

* :func:`function_line` with ``probabilities=True``: p = softmax(f) along the line, beside
  the teacher's class as a one-hot vector (what the cross-entropy fits p to) and both classes.
* :func:`class_regions` (d = 2): ĉ and c on the n × n grid, where they disagree, and the
  training points with their labels and the student's class.  Ties (equal logits, measure
  zero) go to the lowest class index, as ``numpy.argmax`` does.

Weight space (:func:`weight_vectors`, one hidden layer, d = 2): the input weights w_i = W1[i]
of each student neuron and their output-weight norms ‖a_i‖ = ‖W2[:, i]‖, and the same for a
one-hidden-layer teacher network; the picture draws w_i ‖a_i‖ (a neuron's contribution to f
scales with ‖a_i‖, so a copy of teacher neuron j lands on v_j ‖b_j‖).

Deep linear nets (:func:`singular_values`): for σ = identity in every hidden layer the net is
x ↦ M x (+ bias terms) with M = W_L ⋯ W_1 (K × d); its singular values over a trajectory show
the saddle-to-saddle dynamics as a staircase (one singular value rises per plateau).

Loss slices (:func:`loss_slice`): L(θ + s v) for the unit eigenvectors v_min and v_max of
∇²L(θ) (eigenvalues λmin ≤ λmax).  Along v_min a saddle's descent direction (λmin < 0) or a
channel's flat valley (λmin ≈ 0) shows; along v_max the steepest wall.  Second difference
at s = 0: (L(h v) − 2L(0) + L(−h v))/h² = λ + O(h²).
"""

from __future__ import annotations

import math

import numpy as np

from core.networks import NetworkSpec, forward_jit
from core.objectives import Objective
from core.teachers import Teacher

VIEWS = ("function", "weights", "singular", "slice")

#: Half-width of the input window |x| ≤ 3 (inputs are standard Gaussian, see the docstring).
DEFAULT_EXTENT = 3.0
#: Loss slices: with no ``radius``, the slice along an eigenvector with eigenvalue λ spans
#: s ∈ [−r, r], r = √(2 ΔL/|λ|) — the step over which the quadratic model ½λs² changes the
#: loss by ΔL = max(L(θ), ½ |λ|max (SLICE_REL_STEP ‖θ‖)²): by the loss itself, or, near a
#: zero loss, by what a step of 1 % of ‖θ‖ along the stiffest direction does.  So the v_max
#: slice rises by about ΔL, a saddle's v_min slice falls by about as much (to ≈ 0 in the
#: quadratic model: the descent is visible) and both fit one y axis.  1 %, not more: on the
#: symmetry-saddle plateau (L = 1.4e-3, λmax = 4.2, ‖θ‖ = 1.7) a 10 % step would set
#: ΔL = 0.06 ≫ L and bury the descent under the walls' quartic rise.  r is capped at
#: max(‖θ‖, 1) (a flat direction, λ ≈ 0, would otherwise give r = ∞): far enough to show a
#: channel's valley, not past the scale of θ.
SLICE_REL_STEP = 0.01
#: ... and then halved (at most SLICE_MAX_HALVINGS times) while L(θ ± r v) − L(θ) exceeds
#: SLICE_MAX_RISE · ΔL: the quadratic model can be far off over such a step (a soft
#: direction of a minimum, λ ~ 1e-6, capped at r = ‖θ‖, rises by ~10³ ΔL through quartic
#: terms), and one curve would then flatten the other on the shared y axis.
SLICE_MAX_RISE = 4.0
SLICE_MAX_HALVINGS = 40


def _direction(d: int, seed: int) -> np.ndarray:
    """The fixed unit direction of :func:`function_line` (see the module docstring)."""
    if d == 1:
        return np.ones(1)
    z = np.random.default_rng(seed).standard_normal(d)
    u = z / np.linalg.norm(z)
    return u if u[np.argmax(np.abs(u))] > 0 else -u


def _student(spec: NetworkSpec, theta, x: np.ndarray) -> np.ndarray:
    th = np.asarray(theta, dtype=np.float64)
    if th.shape != (spec.n_params,):
        raise ValueError(f"theta has shape {th.shape}, expected ({spec.n_params},)")
    return np.asarray(forward_jit(spec, th, x), dtype=np.float64)


def _target(teacher: Teacher | None, x: np.ndarray) -> np.ndarray | None:
    if teacher is None or teacher.kind == "none":  # no teacher: a data file's own targets
        return None
    y = np.asarray(teacher(x), dtype=np.float64)
    return y.reshape(x.shape[0], -1)


def _softmax(f: np.ndarray) -> np.ndarray:
    """p = softmax(f) along the last axis, (…, K) → (…, K), stable for any logits."""
    z = np.exp(f - np.max(f, axis=-1, keepdims=True))
    return z / np.sum(z, axis=-1, keepdims=True)


def function_line(
    spec: NetworkSpec,
    theta,
    teacher: Teacher | None,
    *,
    n: int = 201,
    seed: int = 0,
    extent: float = DEFAULT_EXTENT,
    probabilities: bool = False,
) -> dict:
    """Student and teacher along the line x(s) = s u, s ∈ [−extent, extent] (n points).

    Returns ``{"s": (n,), "x": (n, d), "direction": u (d,), "student": f (n, K),
    "teacher": g (n, K) or None}``; u is the seeded unit direction of the module docstring.
    With ``probabilities`` (softmax outputs, K ≥ 2): ``"student"`` is p = softmax(f) (n, K),
    ``"teacher"`` the one-hot vector of the teacher's class c = argmax g (n, K), and
    ``"student_class"`` ĉ = argmax f (n,), ``"teacher_class"`` c (n,) or None are added.
    """
    if n < 2:
        raise ValueError(f"n must be ≥ 2, got {n}")
    u = _direction(spec.input_dim, seed)
    s = np.linspace(-extent, extent, n)
    x = s[:, None] * u[None, :]
    f, g = _student(spec, theta, x), _target(teacher, x)
    out = {"s": s, "x": x, "direction": u, "student": f, "teacher": g}
    if probabilities:
        if spec.output_dim < 2:
            raise ValueError(f"class probabilities need output_dim ≥ 2, got {spec.output_dim}")
        c = None if g is None else np.argmax(g, axis=1)
        out.update(
            student=_softmax(f),
            teacher=None if c is None else np.eye(spec.output_dim)[c],
            student_class=np.argmax(f, axis=1),
            teacher_class=c,
        )
    return out


def function_grid(
    spec: NetworkSpec,
    theta,
    teacher: Teacher | None,
    *,
    n: int = 41,
    extent: float = DEFAULT_EXTENT,
    output: int = 0,
) -> dict:
    """d = 2: output ``output`` of f, g and f − g on the grid [−extent, extent]² (n × n).

    Returns ``{"x": (n,), "y": (n,), "student": (n, n), "teacher": (n, n) or None,
    "diff": (n, n) or None}`` with rows indexed by y and columns by x
    (``student[i, j] = f(x[j], y[i])``).
    """
    if spec.input_dim != 2:
        raise ValueError(f"function grid needs input_dim = 2, got {spec.input_dim}")
    if not 0 <= output < spec.output_dim:
        raise ValueError(f"output must be in 0…{spec.output_dim - 1}, got {output}")
    g, f, t = _on_grid(spec, theta, teacher, n, extent)
    f = f[:, output].reshape(n, n)
    t = None if t is None else t[:, output].reshape(n, n)
    return {"x": g, "y": g, "student": f, "teacher": t, "diff": None if t is None else f - t}


def _on_grid(spec: NetworkSpec, theta, teacher: Teacher | None, n: int, extent: float):
    """The coordinates c (n,) of a grid on the square [−extent, extent]² and the student's
    and the target's outputs at its n² points: (c, f (n², K), g (n², K) or None).  Point
    i·n + j is (c[j], c[i]), so ``reshape(n, n)`` gives images with rows indexed by y."""
    g = np.linspace(-extent, extent, n)
    xx, yy = np.meshgrid(g, g)  # (n, n): rows = y
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    return g, _student(spec, theta, pts), _target(teacher, pts)


def class_regions(
    spec: NetworkSpec,
    theta,
    teacher: Teacher | None,
    *,
    n: int = 41,
    extent: float = DEFAULT_EXTENT,
    points=None,
    labels=None,
) -> dict:
    """d = 2, K ≥ 2 classes: the student's and the teacher's class on the grid [−extent, extent]².

    ĉ = argmax_o f_o and c = argmax_o g_o (see the module docstring) at the grid points of
    :func:`function_grid` (rows indexed by y, columns by x).  ``points`` (M, 2) with
    ``labels`` (M,) integer classes or (M, K) one-hot rows (the training data) adds the
    student's class at those points.

    Returns ``{"x": (n,), "y": (n,), "student": ĉ (n, n) int, "teacher": c (n, n) int or
    None, "disagree": ĉ ≠ c (n, n) bool or None, "agreement": fraction of grid points with
    ĉ = c or None, "n_classes": K, "points": (M, 2) or None, "labels": (M,) int or None,
    "predicted": ĉ at the points (M,) int or None, "accuracy": mean of predicted = labels
    or None, "wrong_cells": (n, n) bool or None}``; ``wrong_cells[i, j]`` says that a
    misclassified point has (x[j], y[i]) as its nearest grid point (points outside the square
    are not counted there): where the student disagrees with the labels when there is no
    teacher to compare the whole grid with.
    """
    if spec.input_dim != 2:
        raise ValueError(f"class regions need input_dim = 2, got {spec.input_dim}")
    if n < 2:
        raise ValueError(f"n must be ≥ 2, got {n}")
    k = spec.output_dim
    if k < 2:
        raise ValueError(f"class regions need output_dim ≥ 2 classes, got {k}")
    g, f, t = _on_grid(spec, theta, teacher, n, extent)
    mine = np.argmax(f, axis=1).reshape(n, n)
    theirs = None if t is None else np.argmax(t, axis=1).reshape(n, n)
    out = {
        "x": g,
        "y": g,
        "student": mine,
        "teacher": theirs,
        "disagree": None if theirs is None else mine != theirs,
        "agreement": None if theirs is None else float(np.mean(mine == theirs)),
        "n_classes": k,
        "points": None,
        "labels": None,
        "predicted": None,
        "accuracy": None,
        "wrong_cells": None,
    }
    if points is not None:
        xp = np.asarray(points, dtype=np.float64)
        if xp.ndim != 2 or xp.shape[1] != 2:
            raise ValueError(f"points must have shape (M, 2), got {xp.shape}")
        lab = np.asarray(labels)
        lab = np.argmax(lab, axis=1) if lab.ndim == 2 else lab.astype(np.int64)
        if lab.shape != (xp.shape[0],):
            raise ValueError(f"labels must hold {xp.shape[0]} classes, got shape {lab.shape}")
        pred = np.argmax(_student(spec, theta, xp), axis=1)
        wrong = np.zeros((n, n), dtype=bool)
        step = 2.0 * extent / (n - 1)
        idx = np.rint((xp + extent) / step).astype(np.int64)  # nearest grid index per axis
        inside = (pred != lab) & np.all((idx >= 0) & (idx < n), axis=1)
        wrong[idx[inside, 1], idx[inside, 0]] = True  # rows = y
        out.update(
            points=xp,
            labels=lab,
            predicted=pred,
            accuracy=float(np.mean(pred == lab)),
            wrong_cells=wrong,
        )
    return out


def _first_layer(spec: NetworkSpec, theta) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    th = np.asarray(theta, dtype=np.float64)
    off = spec.offsets()
    w1 = th[off["w1"]].reshape(spec.shapes["w1"])
    b1 = th[off["b1"]] if spec.bias[0] else None
    w2 = th[off["w2"]].reshape(spec.shapes["w2"])
    return w1, b1, w2


def weight_vectors(spec: NetworkSpec, theta, teacher: Teacher | None) -> dict:
    """Input-weight vectors of a one-hidden-layer net with d = 2, and the teacher's.

    Returns ``{"student": W1 (k, 2), "scale": ‖a_i‖ (k,), "a": W2ᵀ (k, K), "bias": b1 (k,)
    or None, "teacher": V1 (m, 2) or None, "teacher_scale": ‖b_j‖ (m,) or None}``; the
    teacher part is present when the teacher is a one-hidden-layer network with d = 2.
    Plot w_i · scale_i against v_j · teacher_scale_j.
    """
    reason = _weights_reason(spec)
    if reason:
        raise ValueError(reason)
    w1, b1, w2 = _first_layer(spec, theta)
    out = {
        "student": w1,
        "scale": np.linalg.norm(w2, axis=0),
        "a": w2.T.copy(),
        "bias": b1,
        "teacher": None,
        "teacher_scale": None,
    }
    if _network_teacher_2d(teacher):
        v1, _, v2 = _first_layer(teacher.spec, teacher.theta)
        out["teacher"] = v1
        out["teacher_scale"] = np.linalg.norm(v2, axis=0)
    return out


def _network_teacher_2d(teacher: Teacher | None) -> bool:
    return (
        teacher is not None
        and teacher.spec is not None
        and teacher.theta is not None
        and len(teacher.spec.widths) == 1
        and teacher.spec.input_dim == 2
    )


def _linear(spec: NetworkSpec) -> bool:
    """Every activation, the output layer's included, is the identity."""
    return spec.linear_output and all(a == "identity" for acts in spec.activations for a in acts)


def singular_values(spec: NetworkSpec, thetas) -> np.ndarray:
    """Singular values of M = W_L ⋯ W_1 (K × d) per state, descending: thetas (m, P) → (m, r).

    r = min(K, d).  Needs σ = identity in every hidden layer (biases, if any, only shift f).
    A single θ (P,) gives (1, r).
    """
    if not _linear(spec):
        raise ValueError(_singular_reason(spec))
    th = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    if th.shape[1] != spec.n_params:
        raise ValueError(f"thetas have {th.shape[1]} columns, expected P = {spec.n_params}")
    m = th.shape[0]
    off, shapes = spec.offsets(), spec.shapes
    prod = th[:, off["w1"]].reshape(m, *shapes["w1"])
    for layer in range(2, spec.n_layers + 1):
        w = th[:, off[f"w{layer}"]].reshape(m, *shapes[f"w{layer}"])
        prod = w @ prod
    return np.linalg.svd(prod, compute_uv=False)


def _unit_sign_fixed(v: np.ndarray) -> np.ndarray:
    v = v / np.linalg.norm(v)
    return v if v[np.argmax(np.abs(v))] > 0 else -v


def slice_scale(loss: float, lam_abs_max: float, theta_norm: float) -> float:
    """ΔL, the loss change a default slice is sized for (see SLICE_REL_STEP)."""
    return max(loss, 0.5 * lam_abs_max * (SLICE_REL_STEP * theta_norm) ** 2)


def slice_radius(lam: float, loss: float, lam_abs_max: float, theta_norm: float) -> float:
    """First half-width r = min(√(2ΔL/|λ|), max(‖θ‖, 1)) along an eigenvector with eigenvalue λ."""
    cap = max(theta_norm, 1.0)
    delta = slice_scale(loss, lam_abs_max, theta_norm)
    if not (abs(lam) > 0 and delta > 0 and math.isfinite(delta)):
        return cap
    return min(math.sqrt(2.0 * delta / abs(lam)), cap)


def loss_slice(objective: Objective, theta, *, n: int = 41, radius: float | None = None) -> dict:
    """L(θ + s v) along the unit eigenvectors v of λmin and λmax of ∇²L(θ).

    n (odd, so that s = 0 is a grid point) steps per slice over s ∈ [−r, r]: r = ``radius``
    for both, or by default one radius per eigenvector: :func:`slice_radius`, halved while
    the loss at s = ±r rises by more than SLICE_MAX_RISE · ΔL (:func:`slice_scale`).
    Eigenvectors are sign-fixed (largest-magnitude entry positive).  Returns
    ``{"s_min": (n,), "min": (n,), "s_max": (n,), "max": (n,), "lam_min", "lam_max",
    "r_min", "r_max", "loss": L(θ), "scale": ΔL, "v_min": (P,), "v_max": (P,)}``.
    """
    if n < 3 or n % 2 == 0:
        raise ValueError(f"n must be odd and ≥ 3 (s = 0 on the grid), got {n}")
    if radius is not None and not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive number, got {radius!r}")
    th = np.asarray(theta, dtype=np.float64)
    if th.shape != (objective.n_params,):
        raise ValueError(f"theta has shape {th.shape}, expected ({objective.n_params},)")
    # Constrained parameters (core.manifold): eigenvectors of the Riemannian Hessian,
    # tangent to the manifold, and objective.loss = L∘N, so a slice follows the manifold.
    from core.manifold import spectrum_eigh, spectrum_hessian

    h = spectrum_hessian(objective, th)
    if not np.all(np.isfinite(h)):
        raise ValueError("loss slice: the Hessian at θ is not finite")
    lam, vecs = spectrum_eigh(objective, th, h)
    loss0 = float(objective.loss(th))
    lam_abs = float(np.max(np.abs(lam)))
    tnorm = float(np.linalg.norm(th))
    delta = slice_scale(loss0, lam_abs, tnorm)
    out = {"loss": loss0, "lam_min": float(lam[0]), "lam_max": float(lam[-1]), "scale": delta}

    def too_high(r: float, v: np.ndarray) -> bool:
        ends = [float(objective.loss(th + r * v)), float(objective.loss(th - r * v))]
        return not all(math.isfinite(e) and e - loss0 <= SLICE_MAX_RISE * delta for e in ends)

    for key, col in (("min", 0), ("max", -1)):
        v = _unit_sign_fixed(vecs[:, col])
        if radius is not None:
            r = float(radius)
        else:
            r = slice_radius(lam[col], loss0, lam_abs, tnorm)
            for _ in range(SLICE_MAX_HALVINGS if delta > 0 else 0):
                if not too_high(r, v):
                    break
                r *= 0.5
        s = np.linspace(-r, r, n)
        s[n // 2] = 0.0
        vals = np.array([float(objective.loss(th + si * v)) for si in s])
        out.update({f"s_{key}": s, key: vals, f"r_{key}": float(r), f"v_{key}": v})
    return out


def _weights_reason(spec: NetworkSpec) -> str | None:
    if spec.input_dim != 2:
        return f"weight view needs input_dim = 2 (this net has d = {spec.input_dim})"
    if not spec.widths:
        return "weight view needs one hidden layer (this net has no hidden neurons)"
    if len(spec.widths) != 1:
        return f"weight view needs one hidden layer (this net has {len(spec.widths)})"
    return None


def _singular_reason(spec: NetworkSpec) -> str | None:
    if _linear(spec):
        return None
    names = sorted({a for acts in spec.activations for a in acts if a != "identity"})
    if not spec.linear_output:
        names.append(f"output {spec.output}")
    return f"singular values need a linear network (this one has {', '.join(names)} units)"


def why_not(view: str, spec: NetworkSpec, teacher: Teacher | None = None) -> str | None:
    """One line saying why ``view`` (one of :data:`VIEWS`) does not apply, or None if it does."""
    if view == "function":
        return None if teacher is not None else "function view needs a teacher to compare with"
    if view == "weights":
        return _weights_reason(spec)
    if view == "singular":
        return _singular_reason(spec)
    if view == "slice":
        return None
    raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")


__all__ = [
    "VIEWS",
    "class_regions",
    "function_grid",
    "function_line",
    "loss_slice",
    "singular_values",
    "slice_radius",
    "slice_scale",
    "weight_vectors",
    "why_not",
]
