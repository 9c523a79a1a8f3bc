"""Converge from any θ to a nearby critical point ∇L(θ*) = 0, to ‖∇L‖∞ < gtol ≈ 1e-12.

Two methods, both with the exact Hessian H = ∇²L (``objective.hessian``):

* ``"trust-region"`` — :func:`scipy.optimize.minimize` with ``method="trust-exact"``: a
  descent method on L, so it lands on minima (it escapes saddles along negative curvature).
* ``"newton"`` — damped Newton on the gradient system ∇L(θ) = 0, which lands on saddles as
  readily as on minima.  With H = Q Λ Qᵀ (eigh; H is symmetric) the step is the
  Levenberg-Marquardt step for the residual ∇L with Jacobian H,

      p = −(H² + μI)⁻¹ H ∇L = −Σ_i  λ_i / (λ_i² + μ) · (q_iᵀ∇L) q_i,

  taken only if it lowers the merit m(θ) = ½‖∇L(θ)‖² (else μ ← 10μ and retry; after a
  success μ ← μ/10).  Eigenvalues with |λ_i| ≤ P·ε·max|λ| are treated as exact zeros
  (their components dropped, as a pseudo-inverse does): critical points of MLPs come in
  manifolds (permutation / split symmetries), so H is singular there and the plain
  Newton step is undefined.  Indefinite H needs no special care: λ_i/(λ_i²+μ) has the
  sign of λ_i, so each eigen-direction is driven to ∇L = 0, not downhill.
* ``"auto"`` — trust-region, then a Newton polish if the gradient is not yet below gtol.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import scipy.optimize

import core  # noqa: F401  (float64)
from core.objectives import Objective

METHODS = ("auto", "trust-region", "newton")


@dataclass(frozen=True)
class RefineResult:
    """Outcome of :func:`refine`.

    Attributes:
        theta: (P,) the refined parameters.
        loss: L(θ).
        grad_inf_norm: ‖∇L(θ)‖∞.
        iterations: iterations taken (summed over both stages for "auto").
        converged: whether ‖∇L‖∞ < gtol.
        reason: why it stopped, in words.
        method: the method that produced θ: "newton" | "trust-region".
    """

    theta: np.ndarray
    loss: float
    grad_inf_norm: float
    iterations: int
    converged: bool
    reason: str
    method: str


def _inf_norm(g) -> float:
    return float(np.max(np.abs(np.asarray(g)))) if np.size(g) else 0.0


def _result(objective, theta, iterations, gtol, reason, method) -> RefineResult:
    loss, g = objective.value_and_grad(jnp.asarray(theta))
    gnorm = _inf_norm(g)
    converged = bool(np.isfinite(gnorm) and gnorm < gtol)
    return RefineResult(
        np.asarray(theta, np.float64), float(loss), gnorm, int(iterations), converged,
        reason, method,
    )  # fmt: skip


def trust_region(objective: Objective, theta, gtol: float = 1e-12, max_iter: int = 200):
    """Minimise L with scipy's exact-Hessian trust-region method (``trust-exact``)."""
    theta = np.asarray(theta, np.float64)

    def fun(x):
        value, g = objective.value_and_grad(jnp.asarray(x))
        return float(value), np.asarray(g, np.float64)

    def hess(x):
        return np.asarray(objective.hessian(jnp.asarray(x)), np.float64)

    # scipy stops on the 2-norm; ‖g‖∞ ≤ ‖g‖₂, so gtol on the 2-norm is sufficient.
    res = scipy.optimize.minimize(
        fun, theta, jac=True, hess=hess, method="trust-exact",
        options={"gtol": gtol, "maxiter": max_iter},
    )  # fmt: skip
    reason = f"trust-exact: {res.message}"
    return _result(objective, res.x, res.nit, gtol, reason, "trust-region")


def newton(objective: Objective, theta, gtol: float = 1e-12, max_iter: int = 200):
    """Damped (Levenberg-Marquardt) Newton on ∇L = 0 with an eigendecomposition of H."""
    theta = np.asarray(theta, np.float64)
    g = np.asarray(objective.grad(jnp.asarray(theta)), np.float64)
    if not np.all(np.isfinite(g)):
        return _result(objective, theta, 0, gtol, "non-finite gradient at the start", "newton")
    merit = 0.5 * float(g @ g)
    mu = None
    iterations = 0
    reason = f"reached max_iter = {max_iter}"
    while iterations < max_iter:
        if _inf_norm(g) < gtol:
            reason = f"‖∇L‖∞ < {gtol:g}"
            break
        iterations += 1
        lam, q = np.linalg.eigh(np.asarray(objective.hessian(jnp.asarray(theta)), np.float64))
        scale = float(np.max(np.abs(lam))) if lam.size else 0.0
        if not np.isfinite(scale) or scale == 0.0:
            reason = "Hessian is zero or not finite"
            break
        cutoff = lam.size * np.finfo(float).eps * scale
        active = np.abs(lam) > cutoff
        gq = q.T @ g
        if mu is None:
            mu = 1e-12 * scale**2  # nearly a full Newton step to begin with
        accepted = False
        while mu <= 1e20 * scale**2:
            coef = np.where(active, lam / (lam * lam + mu), 0.0)
            step = -(q @ (coef * gq))
            trial = theta + step
            g_trial = np.asarray(objective.grad(jnp.asarray(trial)), np.float64)
            merit_trial = 0.5 * float(g_trial @ g_trial)
            if np.isfinite(merit_trial) and merit_trial < merit:
                theta, g, merit = trial, g_trial, merit_trial
                mu = max(mu / 10.0, 1e-30 * scale**2)
                accepted = True
                break
            mu *= 10.0
        if not accepted:
            reason = (
                f"no step lowers ‖∇L‖² further (‖∇L‖∞ = {_inf_norm(g):.3g}, the numerical "
                "noise floor of the gradient here)"
            )
            break
    else:
        if _inf_norm(g) < gtol:
            reason = f"‖∇L‖∞ < {gtol:g}"
    return _result(objective, theta, iterations, gtol, reason, "newton")


def refine(
    objective: Objective, theta, method: str = "auto", gtol: float = 1e-12, max_iter: int = 200
) -> RefineResult:
    """Converge from θ (P,) to a nearby critical point; see the module docstring."""
    if method not in METHODS:
        raise ValueError(f"refine.method: unknown method {method!r}; choose one of {METHODS}")
    if not (gtol > 0):
        raise ValueError(f"refine.gtol: must be > 0, got {gtol!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"refine.max_iter: must be an integer ≥ 1, got {max_iter!r}")
    theta = np.asarray(theta, np.float64)
    if theta.shape != (objective.n_params,):
        raise ValueError(f"theta: expected shape ({objective.n_params},), got {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError("theta: contains NaN or Inf")
    if method == "newton":
        return newton(objective, theta, gtol, max_iter)
    first = trust_region(objective, theta, gtol, max_iter)
    if method == "trust-region" or first.converged:
        return first
    second = newton(objective, first.theta, gtol, max_iter)
    return RefineResult(
        second.theta, second.loss, second.grad_inf_norm, first.iterations + second.iterations,
        second.converged, f"{first.reason}; then newton: {second.reason}", "newton",
    )  # fmt: skip
