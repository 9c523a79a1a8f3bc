"""Infinite Gaussian data for deep linear networks: the exact expected loss in closed form.

Setting (the saddle-to-saddle paper, Jacot, Ged, Şimşek et al. 2021): inputs x ~ N(0, I_d),
a student whose hidden activations are all the identity, of any depth L and output
dimension K,

    f(x) = W_L ⋯ W_1 x + c = A x + c,     A = W_L ⋯ W_1 (K × d),
    c = Σ_l W_L ⋯ W_{l+1} b_l (K,)        (0 without biases; c_l = W_l c_{l−1} + b_l),

and a teacher of the same kind (any depth, biases or not: it collapses to its product
g(x) = M x + m; a teacher given as a matrix is the same thing with one layer).  With
E[x] = 0 and E[x xᵀ] = I the expected MSE is exact and has no sample count,

    L(θ) = ½ E‖f(x) − g(x)‖² + B(θ) = ½ ‖A − M‖²_F + ½ ‖c − m‖² + B(θ),

B the ``maxnorm`` weight barrier of :mod:`core.objectives`.  Gradient and Hessian are JAX
autodiff of this closed form (exact: a polynomial in θ of degree 2L; cheap: the cost is
that of L small matrix products, independent of any data).  At A = M, c = m the residuals
are exactly zero, so the gradient vanishes exactly at the global minimum.

Saddles (Eckart–Young): with s_1 ≥ s_2 ≥ … the singular values of M and no biases, the
best end-to-end map of rank ≤ r leaves L_r = ½ Σ_{i>r} s_i²; from small initialisation
the flow visits the saddles at L_0, L_1, L_2, … in turn and ends at L_w with w the
student's narrowest width (0 if w ≥ rank M).

Only the MSE loss: the correlation −E[f g] = −⟨A, M⟩_F − c·m of a linear student is
unbounded below.  Non-linear teachers are refused (:func:`linear_teacher_map` raises).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core.networks import NetworkSpec, unflatten
from core.objectives import Objective, barrier, objective_from
from core.teachers import Teacher

Array = jax.Array

__all__ = ["end_to_end", "is_linear", "linear_gaussian_objective", "linear_teacher_map"]


def is_linear(spec: NetworkSpec | None) -> bool:
    """Whether ``spec`` is a network whose every activation (hidden and output) is the identity."""
    if spec is None or not spec.linear_output:
        return False
    return all(a == "identity" for layer in spec.activations for a in layer)


def end_to_end(spec: NetworkSpec, theta: Array) -> tuple[Array, Array]:
    """(A, c) with f(x) = A x + c for a linear ``spec``: A (K, d), c (K,); θ (P,).

    Works under jit (NumPy θ gives JAX arrays).  Raises ``ValueError`` if a hidden
    activation is not the identity.
    """
    if not is_linear(spec):
        raise ValueError("end_to_end needs identity activations in every hidden layer")
    p = unflatten(spec, jnp.asarray(theta, jnp.float64))
    a = jnp.eye(spec.input_dim, dtype=jnp.float64)
    c = jnp.zeros(spec.input_dim, jnp.float64)
    for layer in range(1, spec.n_layers + 1):
        w = p[f"w{layer}"]
        a, c = w @ a, w @ c
        if f"b{layer}" in p:
            c = c + p[f"b{layer}"]
    return a, c


def linear_teacher_map(teacher: Teacher) -> tuple[np.ndarray, np.ndarray]:
    """(M (K, d), m (K,)) of a network teacher with identity activations; ``ValueError``
    (naming what is wrong) for a plain target function or a non-linear teacher."""
    if teacher.spec is None or teacher.theta is None:
        raise ValueError(
            f"a linear student on gaussian-infinite data needs a linear network teacher, "
            f"not the target function {teacher.kind!r}"
        )
    if not is_linear(teacher.spec):
        acts = sorted({a for layer in teacher.spec.activations for a in layer} - {"identity"})
        raise ValueError(
            "a linear student on gaussian-infinite data needs a linear teacher (every "
            f"teacher activation 'identity'), got {', '.join(acts)}"
        )
    a, c = end_to_end(teacher.spec, teacher.theta)
    return np.asarray(a), np.asarray(c)


def linear_gaussian_objective(
    spec: NetworkSpec, teacher: Teacher, maxnorm: float | None = None
) -> Objective:
    """L(θ) = ½ ‖A(θ) − M‖²_F + ½ ‖c(θ) − m‖² + B(θ) (see the module docstring).

    ``spec``: a linear student (identity activations, any depth, biases, output_dim K);
    ``teacher``: a linear network teacher with the same d and K.  Callables take θ (P,)
    and are jit-compiled; ``data`` of the returned Objective is ``None``; ``extras`` holds
    ``"kind"`` (``"gaussian-infinite"``), ``"loss"`` (``"mse"``), ``"teacher"``,
    ``"maxnorm"`` and ``"target"`` ((M, m) as NumPy arrays).
    """
    if not is_linear(spec):
        raise ValueError("linear_gaussian_objective needs a student with identity activations")
    m_mat, m_vec = linear_teacher_map(teacher)
    if m_mat.shape != (spec.output_dim, spec.input_dim):
        raise ValueError(
            f"teacher maps ℝ^{m_mat.shape[1]} → ℝ^{m_mat.shape[0]}, "
            f"student ℝ^{spec.input_dim} → ℝ^{spec.output_dim}"
        )
    maxnorm = None if maxnorm is None else float(maxnorm)
    if maxnorm is not None and not (np.isfinite(maxnorm) and maxnorm > 0):
        raise ValueError(f"maxnorm must be a positive number or None, got {maxnorm!r}")

    def loss_fn(theta: Array, target: Array, offset: Array) -> Array:
        a, c = end_to_end(spec, theta)
        ra, rc = a - target, c - offset
        return 0.5 * (jnp.sum(ra * ra) + jnp.sum(rc * rc)) + barrier(theta, maxnorm)

    grad_fn = jax.grad(loss_fn)

    def hess_fn(theta: Array, target: Array, offset: Array) -> Array:
        h = jax.hessian(loss_fn)(theta, target, offset)
        return 0.5 * (h + h.T)

    # The target is an argument, not a closed-over constant (as in core.gaussian), so XLA
    # cannot fold it differently from the student's product.
    return objective_from(
        spec,
        (loss_fn, grad_fn, jax.value_and_grad(loss_fn), hess_fn),
        (jnp.asarray(m_mat), jnp.asarray(m_vec)),
        data=None,
        name="gaussian-infinite-linear-mse",
        extras={
            "kind": "gaussian-infinite",
            "loss": "mse",
            "teacher": teacher,
            "maxnorm": maxnorm,
            "target": (m_mat, m_vec),
        },
    )
