"""Constrained parameters: unit-norm first-layer weights and fixed output weights.

``[student] unit_norm = true`` keeps each first-layer input-weight vector w_i = W1[i] ∈ ℝ^m
on the unit sphere (a bias-free first layer); ``[student] train_output = false`` keeps the
output layer's weights (and bias) at their initial values.  The parameters then live on

    M = S^{m−1} × … × S^{m−1} × ℝ^{free} × {θ_fixed}        (one sphere per neuron),

of dimension F = P − n_spheres − n_fixed, and the dynamics is the Riemannian (projected)
gradient flow dθ/dt = −grad_R L(θ), grad_R L = P_T(θ) ∇L(θ), with P_T projecting each
w_i-block onto w_i^⊥ (P_i = I − w_i w_iᵀ), the identity on the free coordinates and zero on
the fixed ones.

How it is computed (:func:`constrained_objective`).  With N(θ) normalising every w_i
(w_i ↦ w_i/‖w_i‖, other coordinates unchanged) the flow runs on the scale-invariant loss

    L̃(θ) = L(N(θ)),     ∇L̃(θ) = DN(θ)ᵀ ∇L(N θ) = P_i ∇_{w_i}L / ‖w_i‖  per sphere block,

(zeroed on the fixed coordinates), which on M is exactly grad_R L, and is tangent
everywhere (L̃(s w_i) = L̃(w_i), so w_i·∇_{w_i}L̃ = 0): the continuous flow keeps every
‖w_i‖ and every fixed coordinate constant, so every flow solver (diffrax, lsoda/bdf) and
the discrete methods run unchanged on L̃.  Its Hessian, the exact Jacobian of that flow
field, is for one sphere block with r = ‖w‖, u = w/r, g = ∇_w L(N θ), H = ∇²L(N θ)

    ∇²L̃ = DNᵀ H DN + (1/r²)[ −(g uᵀ + u gᵀ) − (u·g)(I − 3uuᵀ) ],     DN = (I − uuᵀ)/r,

the second term being Σ_k g_k ∇²N_k (no cross-block terms: N acts per block).  Rounding
lets ‖w_i‖ drift by ~rtol over a run; the flow therefore retracts (renormalises) its state
at every save time (:func:`retract`), so saved states lie on M to round-off.

Riemannian Hessian (the ``spectrum`` of a constrained problem, one eigenvalue per free
dimension).  With B (P, F) an orthonormal basis of the tangent space T_θM (per sphere the
m − 1 columns of a Householder reflector orthogonal to w_i, unit vectors for the free
coordinates, nothing for the fixed ones; B is block-sparse and never multiplied densely:
Bᵀ H B costs O(P² m)),

    Hess_R L(θ) = Bᵀ ( ∇²L − Σ_i (w_i·∇_{w_i}L) I_{w_i block} ) B          (F, F).

The Weingarten term −(w_i·∇_{w_i}L) I is the curvature of the sphere: the Euclidean
Hessian restricted to the tangent space, BᵀHB, differs from Hess_R by exactly
Σ_i (w_i·∇_{w_i}L) Bᵀ I_i B, the normal part of the gradient — it does not vanish at a
Riemannian critical point (there ∇_{w_i}L = (w_i·∇_{w_i}L) w_i ≠ 0 in general).
On M, Bᵀ ∇²L̃ B = Hess_R (the formula above with r = 1, Bᵀu = 0).  The chart
z ↦ N(θ + Bz) is a second-order retraction (its second derivative at z = 0 is normal to
M), so the Hessian of L∘chart at z = 0 equals Hess_R at *every* point of M, not only at
critical points; its gradient at z = 0 is Bᵀ grad_R L.

Everything else uses the one entry point :func:`spectrum_hessian` / :func:`spectrum_eigh`
(unconstrained objectives: the plain Hessian), and :mod:`core.refine` steps in tangent
coordinates and retracts.  Shapes: θ (P,); spheres (n_s, m) flat indices; B (P, F).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import core  # noqa: F401  (float64)
from core.networks import NetworkSpec
from core.objectives import Objective

Array = jax.Array


@dataclass(frozen=True, eq=False)
class Constraint:
    """Which coordinates of θ (P,) are constrained.

    Attributes:
        n_params: P.
        spheres: (n_s, m) int — the flat indices of each unit vector w_i (row i of W1).
        fixed: (n_f,) int — flat indices held at their initial values (output layer).
        unit_norm, train_output: the config flags it was made from.
    """

    n_params: int
    spheres: np.ndarray
    fixed: np.ndarray
    unit_norm: bool = False
    train_output: bool = True

    def __post_init__(self) -> None:
        spheres = np.array(self.spheres, dtype=np.int64, ndmin=2)
        fixed = np.array(self.fixed, dtype=np.int64).reshape(-1)
        spheres.setflags(write=False)
        fixed.setflags(write=False)
        object.__setattr__(self, "spheres", spheres)
        object.__setattr__(self, "fixed", fixed)

    @property
    def n_spheres(self) -> int:
        return int(self.spheres.shape[0])

    @property
    def n_free(self) -> int:
        """F = P − n_spheres − n_fixed, the dimension of M."""
        return self.n_params - self.n_spheres - int(self.fixed.size)

    @property
    def loose(self) -> np.ndarray:
        """Flat indices that are neither on a sphere nor fixed (ordinary coordinates)."""
        mask = np.ones(self.n_params, bool)
        mask[self.spheres.reshape(-1)] = False
        mask[self.fixed] = False
        return np.flatnonzero(mask)

    @property
    def sphere_columns(self) -> list:
        """Per sphere its indices as a slice when contiguous (row i of W1 always is), for
        copy-free column views."""
        return [
            slice(int(i[0]), int(i[-1]) + 1) if np.all(np.diff(i) == 1) else i for i in self.spheres
        ]

    def digest(self) -> str:
        """A short key naming the constraint (for compiled-program caches)."""
        h = hashlib.sha256()
        for part in (np.int64(self.n_params), self.spheres, self.fixed):
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()[:16]


def make_constraint(spec: NetworkSpec, unit_norm: bool, train_output: bool) -> Constraint | None:
    """The constraint of ``[student] unit_norm`` / ``train_output`` for ``spec``; None when
    neither is set.  unit_norm needs a hidden layer without bias (``ValueError`` otherwise)."""
    if not unit_norm and train_output:
        return None
    off = spec.offsets()
    spheres = np.zeros((0, spec.input_dim), np.int64)
    if unit_norm:
        if not spec.widths:
            raise ValueError("student.unit_norm: needs at least one hidden layer")
        if spec.bias[0]:
            raise ValueError(
                "student.unit_norm: needs a bias-free first layer (set student.bias = false)"
            )
        k, d = spec.shapes["w1"]
        spheres = off["w1"].start + np.arange(k * d).reshape(k, d)
    fixed = np.zeros(0, np.int64)
    if not train_output:
        last = spec.n_layers
        parts = [np.arange(off[f"w{last}"].start, off[f"w{last}"].stop)]
        if spec.bias[last - 1]:
            parts.append(np.arange(off[f"b{last}"].start, off[f"b{last}"].stop))
        fixed = np.concatenate(parts)
        if unit_norm and last == 1:  # pragma: no cover - spheres need a hidden layer
            raise ValueError("student.train_output: nothing left to train")
    return Constraint(spec.n_params, spheres, fixed, bool(unit_norm), bool(train_output))


def spectrum_size(config, spec: NetworkSpec) -> int:
    """Eigenvalues in a spectrum of ``spec`` under ``config.student``'s constraint: F
    (P when unconstrained).  ``config``: a :class:`core.config.Config`."""
    s = config.student
    try:
        c = make_constraint(spec, s.unit_norm, s.train_output)
    except ValueError:
        return spec.n_params
    return spec.n_params if c is None else c.n_free


def constraint_of(objective) -> Constraint | None:
    """The objective's constraint (``objective.extras["constraint"]``), or None."""
    extras = getattr(objective, "extras", None) or {}
    return extras.get("constraint")


# ------------------------------------------------------------------- maps (jnp)


def _normalise(c: Constraint, theta: Array) -> tuple[Array, Array, Array]:
    """(N(θ), u (n_s, m), r (n_s, 1)): every sphere block divided by its norm."""
    w = theta[c.spheres]
    r = jnp.sqrt(jnp.sum(w * w, axis=1, keepdims=True))
    u = w / r
    return theta.at[c.spheres].set(u), u, r


def _project(c: Constraint, u: Array, r: Array, g: Array) -> Array:
    """DN(θ)ᵀ g: (g_i − u_i (u_i·g_i))/r_i per sphere block, 0 on fixed coordinates."""
    if c.n_spheres:
        gs = g[c.spheres]
        gs = (gs - u * jnp.sum(u * gs, axis=1, keepdims=True)) / r
        g = g.at[c.spheres].set(gs)
    if c.fixed.size:
        g = g.at[c.fixed].set(0.0)
    return g


def _pullback_hessian(c: Constraint, u: Array, r: Array, g: Array, h: Array) -> Array:
    """∇²(L∘N) (P, P) from g = ∇L and H = ∇²L at N(θ) (see the module docstring)."""

    def cols(m: Array) -> Array:  # M DN
        if c.n_spheres:
            ms = m[:, c.spheres]  # (P, n_s, m)
            mu = jnp.einsum("pim,im->pi", ms, u)
            m = m.at[:, c.spheres].set((ms - mu[:, :, None] * u[None]) / r[None])
        if c.fixed.size:
            m = m.at[:, c.fixed].set(0.0)
        return m

    out = cols(cols(h).T)
    if c.n_spheres:
        gs = g[c.spheres]  # (n_s, m)
        ug = jnp.sum(u * gs, axis=1)  # (n_s,)
        eye = jnp.eye(u.shape[1])
        uu = u[:, :, None] * u[:, None, :]
        curv = -(gs[:, :, None] * u[:, None, :] + u[:, :, None] * gs[:, None, :])
        curv = (curv - ug[:, None, None] * (eye - 3.0 * uu)) / (r[:, :, None] ** 2)
        out = out.at[c.spheres[:, :, None], c.spheres[:, None, :]].add(curv)
    return 0.5 * (out + out.T)


def retract(c: Constraint | None, theta):
    """θ with every sphere block normalised (the retraction onto M; fixed coordinates are
    left alone: nothing moves them).  NumPy in, NumPy out; jax arrays (also traced) stay jax."""
    if c is None or c.n_spheres == 0:
        return theta
    if isinstance(theta, jax.Array):
        return _normalise(c, theta)[0]
    th = np.array(theta, dtype=np.float64)
    w = th[c.spheres]
    th[c.spheres] = w / np.sqrt(np.sum(w * w, axis=1, keepdims=True))
    return th


def riemannian_gradient(c: Constraint, theta, g) -> np.ndarray:
    """grad_R L = P_T(θ) g (P,) for θ on M and the Euclidean gradient g = ∇L(θ) (P,)."""
    th = retract(c, np.asarray(theta, np.float64))
    g = np.array(g, dtype=np.float64)
    if c.n_spheres:
        u, gs = th[c.spheres], g[c.spheres]
        g[c.spheres] = gs - u * np.sum(u * gs, axis=1, keepdims=True)
    g[c.fixed] = 0.0
    return g


def _householder(u: np.ndarray) -> np.ndarray:
    """Q (n_s, m, m − 1): per unit row u_i of u (n_s, m) the last m − 1 columns of the
    Householder reflector I − 2vvᵀ/vᵀv, v = u_i + sign(u_i0) e₀, which maps e₀ to
    −sign(u_i0) u_i: an orthonormal basis of u_i^⊥ (sign(0) = +1: no cancellation in v)."""
    m = u.shape[1]
    v = u.copy()
    v[:, 0] += np.where(u[:, 0] >= 0, 1.0, -1.0)
    q = np.eye(m)[None] - 2.0 * v[:, :, None] * v[:, None, :] / np.sum(v * v, 1)[:, None, None]
    return q[:, :, 1:]


def tangent_basis(c: Constraint, theta) -> np.ndarray:
    """An orthonormal basis B (P, F) of T_θM, θ (P,) (normalised here).

    Columns: per sphere block (in order) the m − 1 columns of :func:`_householder`, then a
    unit vector per free coordinate (in order); fixed coordinates contribute nothing.
    """
    th = retract(c, np.asarray(theta, np.float64))
    basis = np.zeros((c.n_params, c.n_free))
    if c.n_spheres:
        q = _householder(th[c.spheres])  # (n_s, m, m − 1)
        n, m = c.spheres.shape
        cols = np.arange(n * (m - 1)).reshape(n, 1, m - 1)
        basis[c.spheres[:, :, None], cols] = q
    loose = c.loose
    basis[loose, c.n_free - loose.size + np.arange(loose.size)] = 1.0
    return basis


def _times_basis(c: Constraint, q: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """M B (rows, F) for M (rows, P) without forming B: O(rows · P · m), B block-sparse."""
    parts = []
    if c.n_spheres:
        parts.extend(mat[:, idx] @ qi for idx, qi in zip(c.sphere_columns, q, strict=True))
    parts.append(mat[:, c.loose])
    return np.concatenate(parts, axis=1)


def tangent_project(c: Constraint, theta, h) -> np.ndarray:
    """Bᵀ H B (F, F), symmetrised, for H (P, P) and B = :func:`tangent_basis` (θ)."""
    th = retract(c, np.asarray(theta, np.float64))
    q = _householder(th[c.spheres]) if c.n_spheres else None
    h = np.asarray(h, np.float64)
    out = _times_basis(c, q, _times_basis(c, q, h).T)  # (H B)ᵀ B = Bᵀ Hᵀ B
    return 0.5 * (out + out.T)


def riemannian_hessian(c: Constraint, theta, g, h) -> np.ndarray:
    """Hess_R = Bᵀ (H − Σ_i (w_i·g_{w_i}) I_{w_i}) B (F, F) at θ ∈ M from the Euclidean
    g = ∇L(θ) (P,) and H = ∇²L(θ) (P, P); B = :func:`tangent_basis` (θ)."""
    th = retract(c, np.asarray(theta, np.float64))
    g, h = np.asarray(g, np.float64), np.array(h, dtype=np.float64)
    if c.n_spheres:
        ug = np.sum(th[c.spheres] * g[c.spheres], axis=1)  # (n_s,)
        flat = c.spheres.reshape(-1)
        h[flat, flat] -= np.repeat(ug, c.spheres.shape[1])
    return tangent_project(c, th, h)


# --------------------------------------------------------------------- objective


def constrained_objective(objective: Objective, c: Constraint) -> Objective:
    """``objective`` on M: loss L(N θ), grad = embedded Riemannian gradient, hessian =
    ∇²(L∘N) (P, P) (the exact Jacobian of the flow field; for spectra use
    :func:`spectrum_hessian`).  extras: the base's plus ``"constraint"``, ``"retract"``
    (jnp θ → θ) and ``"base"`` (the unconstrained objective); a finite-data base's
    ``"batch_loss"``/``"batch_grad"`` become L_b(N θ) and its gradient projected like
    ``grad``."""
    if c.n_params != objective.n_params:
        raise ValueError(f"constraint is for P = {c.n_params}, objective has {objective.n_params}")
    base = objective

    @jax.jit
    def norm(theta):
        return _normalise(c, theta)

    @jax.jit
    def project(theta, g):
        _, u, r = _normalise(c, theta)
        return _project(c, u, r, g)

    @jax.jit
    def pull_hessian(theta, g, h):
        _, u, r = _normalise(c, theta)
        return _pullback_hessian(c, u, r, g, h)

    def loss(theta):
        return base.loss(norm(theta)[0])

    def grad(theta):
        return project(theta, base.grad(norm(theta)[0]))

    def value_and_grad(theta):
        value, g = base.value_and_grad(norm(theta)[0])
        return value, project(theta, g)

    def hessian(theta):
        x = norm(theta)[0]
        return pull_hessian(theta, base.grad(x), base.hessian(x))

    def retract_jnp(theta):
        return norm(theta)[0]

    extras = {k: v for k, v in base.extras.items() if k not in ("gauss_newton", "jacobian")}
    extras.update(constraint=c, retract=retract_jnp, base=base)
    if "batch_grad" in base.extras:  # sgd's minibatch L_b(N θ) and its projected gradient
        base_batch_loss, base_batch_grad = base.extras["batch_loss"], base.extras["batch_grad"]

        def batch_loss(theta, *batch):
            return base_batch_loss(_normalise(c, theta)[0], *batch)

        def batch_grad(theta, *batch):
            x, u, r = _normalise(c, theta)
            return _project(c, u, r, base_batch_grad(x, *batch))

        extras.update(batch_loss=batch_loss, batch_grad=batch_grad)
    name = f"{base.name} ({describe(c)})"
    return dataclasses.replace(
        base, loss=loss, grad=grad, value_and_grad=value_and_grad, hessian=hessian,
        name=name, extras=extras,
    )  # fmt: skip


def describe(c: Constraint) -> str:
    """A few words naming the constraint, e.g. "unit-norm w_i, fixed output"."""
    parts = (["unit-norm w_i"] if c.n_spheres else []) + (["fixed output"] if c.fixed.size else [])
    return ", ".join(parts)


# ----------------------------------------------------------------------- spectra


def spectrum_hessian(objective, theta) -> np.ndarray:
    """THE matrix whose eigenvalues are a point's ``spectrum``, NumPy float64.

    Unconstrained: ∇²L(θ) (P, P) as ``objective.hessian`` gives it.  Constrained:
    Hess_R at N(θ) (F, F), from the unconstrained objective's gradient and Hessian.
    """
    c = constraint_of(objective)
    if c is None:
        return np.asarray(objective.hessian(jnp.asarray(theta, jnp.float64)), np.float64)
    base = objective.extras["base"]
    th = retract(c, np.asarray(theta, np.float64))
    x = jnp.asarray(th)
    return riemannian_hessian(c, th, base.grad(x), base.hessian(x))


def spectrum_eigh(objective, theta, hessian: np.ndarray | None = None):
    """(λ (F,) ascending, V (P, F)): the spectrum and its unit eigenvectors embedded in θ
    space (V = B Q for a constrained objective, tangent to M; Q itself otherwise).

    ``hessian``: :func:`spectrum_hessian` (objective, θ) if already computed.  Raises
    ``ValueError`` when it is not finite.
    """
    h = spectrum_hessian(objective, theta) if hessian is None else np.asarray(hessian)
    if not np.all(np.isfinite(h)):
        raise ValueError("the Hessian at θ contains non-finite entries")
    lam, q = np.linalg.eigh(0.5 * (h + h.T))
    c = constraint_of(objective)
    if c is None:
        return lam, q
    return lam, tangent_basis(c, theta) @ q


__all__ = [
    "Constraint",
    "constrained_objective",
    "constraint_of",
    "describe",
    "make_constraint",
    "retract",
    "riemannian_gradient",
    "riemannian_hessian",
    "spectrum_eigh",
    "spectrum_hessian",
    "spectrum_size",
    "tangent_basis",
    "tangent_project",
]
