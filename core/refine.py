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
* ``"auto"`` (the default) — trust-region, then Newton if the gradient is not yet below
  gtol; once converged, a Newton :func:`polish` down to the gradient's round-off floor.

Constrained parameters (``student.unit_norm`` / ``train_output``, :mod:`core.manifold`):
every method works on the manifold M.  Newton takes its step in tangent coordinates,
p = B z with H the Riemannian Hessian (F, F) and the tangent gradient Bᵀ grad_R L, and
retracts θ + p onto M; the trust region minimises the chart z ↦ L(N(θ₀ + Bz)) (B at the
start, exact Hessian BᵀH̃B of the scale-invariant L̃ = L∘N) and retracts its end point.
``grad_inf_norm`` and convergence are the Riemannian gradient's ‖grad_R L‖∞.

The flow that hands over to these methods is :mod:`core.fixed_point`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import scipy.optimize

import core  # noqa: F401  (float64)
from core.manifold import (
    constraint_of,
    retract,
    spectrum_eigh,
    spectrum_hessian,
    tangent_basis,
    tangent_project,
)
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
    theta = retract(constraint_of(objective), np.asarray(theta, np.float64))
    loss, g = objective.value_and_grad(jnp.asarray(theta))
    gnorm = _inf_norm(g)
    converged = bool(np.isfinite(gnorm) and gnorm < gtol)
    return RefineResult(
        np.asarray(theta, np.float64), float(loss), gnorm, int(iterations), converged,
        reason, method,
    )  # fmt: skip


def trust_region(
    objective: Objective,
    theta,
    gtol: float = 1e-12,
    max_iter: int = 200,
    max_seconds: float | None = None,
):
    """Minimise L with scipy's exact-Hessian trust-region method (``trust-exact``).

    Stops after ``max_iter`` iterations or, when given, once ``max_seconds`` have passed
    (checked after each iteration).
    """
    theta = np.asarray(theta, np.float64)
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    # Constrained: the chart θ(z) = θ₀ + Bz (z ∈ ℝ^F) of the scale-invariant L̃ = L∘N.
    c = constraint_of(objective)
    theta = retract(c, theta)
    origin, basis = (theta, tangent_basis(c, theta)) if c is not None else (None, None)

    def at(z):
        return z if basis is None else origin + basis @ z

    def fun(z):
        value, g = objective.value_and_grad(jnp.asarray(at(z)))
        g = np.asarray(g, np.float64)
        return float(value), g if basis is None else basis.T @ g

    def hess(z):
        h = np.asarray(objective.hessian(jnp.asarray(at(z))), np.float64)
        return h if basis is None else tangent_project(c, origin, h)

    def callback(intermediate_result):
        if deadline is not None and time.perf_counter() > deadline:
            raise StopIteration

    # scipy stops on the 2-norm; ‖g‖∞ ≤ ‖g‖₂, so gtol on the 2-norm is sufficient.
    start = theta if basis is None else np.zeros(basis.shape[1])
    res = scipy.optimize.minimize(
        fun, start, jac=True, hess=hess, method="trust-exact", callback=callback,
        options={"gtol": gtol, "maxiter": max_iter},
    )  # fmt: skip
    message = res.message
    if deadline is not None and res.status == 99:  # the callback's StopIteration
        message = f"stopped after max_seconds = {max_seconds:g}"
    end = at(res.x)  # retracted onto M by _result
    return _result(objective, end, res.nit, gtol, f"trust-exact: {message}", "trust-region")


def newton(
    objective: Objective,
    theta,
    gtol: float = 1e-12,
    max_iter: int = 200,
    *,
    stop_below: float | None = None,
    max_damping: float = 1e20,
    max_seconds: float | None = None,
):
    """Damped (Levenberg-Marquardt) Newton on ∇L = 0 with an eigendecomposition of H.

    Iterates until ‖∇L‖∞ < ``stop_below`` (default: ``gtol``), no step lowers ‖∇L‖² with
    μ ≤ ``max_damping`` · max|λ|², ``max_iter`` iterations, or (when given) ``max_seconds``
    have passed (checked after each iteration); ``converged`` is judged against ``gtol``.
    (:func:`polish` passes stop_below = 0: on to the round-off floor.)
    """
    stop = gtol if stop_below is None else stop_below
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    c = constraint_of(objective)
    theta = retract(c, np.asarray(theta, np.float64))
    g = np.asarray(objective.grad(jnp.asarray(theta)), np.float64)
    if not np.all(np.isfinite(g)):
        return _result(objective, theta, 0, gtol, "non-finite gradient at the start", "newton")
    merit = 0.5 * float(g @ g)
    mu = None
    iterations = 0
    reason = f"reached max_iter = {max_iter}"
    while iterations < max_iter:
        if _inf_norm(g) < stop:
            reason = f"‖∇L‖∞ < {stop:g}"
            break
        if deadline is not None and time.perf_counter() > deadline:
            reason = f"stopped after max_seconds = {max_seconds:g}"
            break
        iterations += 1
        if c is None:
            lam, q = np.linalg.eigh(np.asarray(objective.hessian(jnp.asarray(theta)), np.float64))
        else:  # Riemannian Hessian (F, F), eigenvectors embedded (P, F) and tangent
            h = spectrum_hessian(objective, theta)
            if not np.all(np.isfinite(h)):
                reason = "Hessian is zero or not finite"
                break
            lam, q = spectrum_eigh(objective, theta, h)
        scale = float(np.max(np.abs(lam))) if lam.size else 0.0
        if not np.isfinite(scale) or scale == 0.0:
            reason = "Hessian is zero or not finite"
            break
        cutoff = lam.size * np.finfo(float).eps * scale
        active = np.abs(lam) > cutoff
        gq = q.T @ g
        if mu is None:
            # A full Newton step on every resolved direction to begin with: λ² ≥ cutoff² ≫ μ
            # keeps λ/(λ²+μ) ≈ 1/λ even for λ/max|λ| ~ 1e-12, as at ill-conditioned
            # teacher-student minima (a larger μ would stall those directions for dozens
            # of iterations while μ decays).
            mu = cutoff**2
        accepted = False
        while mu <= max_damping * scale**2:
            coef = np.where(active, lam / (lam * lam + mu), 0.0)
            step = -(q @ (coef * gq))
            trial = theta + step if c is None else retract(c, theta + step)
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
        if _inf_norm(g) < stop:
            reason = f"‖∇L‖∞ < {stop:g}"
    return _result(objective, theta, iterations, gtol, reason, "newton")


# Newton iterations of a polish, and its largest damping μ (relative to max|λ|²): at the
# round-off floor every trial step is noise, so about ten retries from μ ≈ (P·ε)² (×10
# each) are enough to see it, where the full range up to 1e20 would take ~50 gradients.
POLISH_MAX_ITER = 10
POLISH_MAX_DAMPING = 1e-20


def polish(objective: Objective, result: RefineResult, gtol: float = 1e-12) -> RefineResult:
    """Newton on ∇L = 0 from ``result`` on to the round-off floor of the gradient.

    A point refined (or flowed) to ‖∇L‖∞ < gtol is not yet exact: at a zero-loss minimum
    L ≈ ½ eᵀHe with e = θ − θ*, and ‖∇L‖ ≈ 1e-12 still leaves L ~ 1e-19 in the soft
    directions.  From there Newton converges quadratically, so a few iterations reach
    ‖∇L‖ at its rounding noise (L ~ 1e-30 at a zero-loss teacher recovery).  Returns the
    polished result (method "newton"), or ``result`` itself if Newton did not lower
    ‖∇L‖∞ (or it is not finite).
    """
    if not np.isfinite(result.grad_inf_norm):
        return result
    second = newton(
        objective, result.theta, gtol, POLISH_MAX_ITER, stop_below=0.0,
        max_damping=POLISH_MAX_DAMPING,
    )  # fmt: skip
    if not second.grad_inf_norm < result.grad_inf_norm:
        return result
    return then_newton(result, second, "polish")


def refine(
    objective: Objective,
    theta,
    method: str = "auto",
    gtol: float = 1e-12,
    max_iter: int = 200,
    max_seconds: float | None = None,
) -> RefineResult:
    """Converge from θ (P,) to a nearby critical point; see the module docstring.

    ``max_iter`` bounds each stage; ``max_seconds`` (optional) bounds the trust-region and
    Newton stages together (the polish, a few iterations, is not timed).
    """
    if method not in METHODS:
        raise ValueError(f"refine.method: unknown method {method!r}; choose one of {METHODS}")
    if not (gtol > 0):
        raise ValueError(f"refine.gtol: must be > 0, got {gtol!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"refine.max_iter: must be an integer ≥ 1, got {max_iter!r}")
    if max_seconds is not None and not (max_seconds > 0):
        raise ValueError(f"refine.max_seconds: must be > 0, got {max_seconds!r}")
    theta = np.asarray(theta, np.float64)
    if theta.shape != (objective.n_params,):
        raise ValueError(f"theta: expected shape ({objective.n_params},), got {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError("theta: contains NaN or Inf")
    theta = retract(constraint_of(objective), theta)
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    if method == "newton":
        return newton(objective, theta, gtol, max_iter, max_seconds=max_seconds)
    first = trust_region(objective, theta, gtol, max_iter, max_seconds)
    if method == "trust-region":
        return first
    if not first.converged:
        rest = None if deadline is None else max(deadline - time.perf_counter(), 1e-9)
        first = then_newton(first, newton(objective, first.theta, gtol, max_iter, max_seconds=rest))
    return polish(objective, first, gtol) if first.converged else first


def then_newton(first: RefineResult, second: RefineResult, what: str = "newton") -> RefineResult:
    """The Newton stage ``second`` (``what``: "newton" | "polish") started from ``first``."""
    return RefineResult(
        second.theta, second.loss, second.grad_inf_norm, first.iterations + second.iterations,
        second.converged, f"{first.reason}; then {what}: {second.reason}", "newton",
    )  # fmt: skip
