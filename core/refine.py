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

:func:`flow_to_fixed_point` combines the flow with the trust-region method: teacher-student
landscapes are extremely ill-conditioned near their minima (at a recovered softplus
teacher, d = 2, 5 neurons: λ_min/λ_max ≈ 1e-9…1e-12), so the flow needs t ≳ 1/λ_min ≈
1e9…1e12 to get there.  Once the flow's gradient is small the driver tries a time-bounded
trust-region solve and accepts it only if it lands on a *minimum* (Hessian index 0) no
higher than the flow state, i.e. where the flow is headed; a solve that fails, or lands
on a saddle or uphill, is discarded and the flow continues.
"""

from __future__ import annotations

import time
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

    def fun(x):
        value, g = objective.value_and_grad(jnp.asarray(x))
        return float(value), np.asarray(g, np.float64)

    def hess(x):
        return np.asarray(objective.hessian(jnp.asarray(x)), np.float64)

    def callback(intermediate_result):
        if deadline is not None and time.perf_counter() > deadline:
            raise StopIteration

    # scipy stops on the 2-norm; ‖g‖∞ ≤ ‖g‖₂, so gtol on the 2-norm is sufficient.
    res = scipy.optimize.minimize(
        fun, theta, jac=True, hess=hess, method="trust-exact", callback=callback,
        options={"gtol": gtol, "maxiter": max_iter},
    )  # fmt: skip
    message = res.message
    if deadline is not None and res.status == 99:  # the callback's StopIteration
        message = f"stopped after max_seconds = {max_seconds:g}"
    return _result(objective, res.x, res.nit, gtol, f"trust-exact: {message}", "trust-region")


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
            # A full Newton step on every resolved direction to begin with: λ² ≥ cutoff² ≫ μ
            # keeps λ/(λ²+μ) ≈ 1/λ even for λ/max|λ| ~ 1e-12, as at ill-conditioned
            # teacher-student minima (a larger μ would stall those directions for dozens
            # of iterations while μ decays).
            mu = cutoff**2
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
    objective: Objective,
    theta,
    method: str = "auto",
    gtol: float = 1e-12,
    max_iter: int = 200,
    max_seconds: float | None = None,
) -> RefineResult:
    """Converge from θ (P,) to a nearby critical point; see the module docstring.

    ``max_iter`` bounds each stage; ``max_seconds`` (optional) bounds the trust-region stage.
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
    if method == "newton":
        return newton(objective, theta, gtol, max_iter)
    first = trust_region(objective, theta, gtol, max_iter, max_seconds)
    if method == "trust-region" or first.converged:
        return first
    return _then_newton(first, newton(objective, first.theta, gtol, max_iter))


def _then_newton(first: RefineResult, second: RefineResult) -> RefineResult:
    """The Newton polish ``second`` started from the trust-region result ``first``."""
    return RefineResult(
        second.theta, second.loss, second.grad_inf_norm, first.iterations + second.iterations,
        second.converged, f"{first.reason}; then newton: {second.reason}", "newton",
    )  # fmt: skip


# --------------------------------------------------------- flow, then trust region


@dataclass(frozen=True)
class FixedPointResult:
    """Outcome of :func:`flow_to_fixed_point`.

    Attributes:
        theta: (P,) the final point (the accepted refinement, else the final one).
        loss, grad_inf_norm: L and ‖∇L‖∞ there.
        converged: whether ‖∇L‖∞ < gtol.
        index: number of Hessian eigenvalues < −tol there (0: a minimum).
        t: flow time reached before the switch.
        flow_steps: accepted solver steps of the flow.
        refine_attempts: refinements tried (accepted or not), the final one included.
        jump: ‖θ_final − θ_flow‖∞, the distance the refinement moved from the flow's last state.
        wall: seconds, compilation included.
        reason: how it ended, in words.
    """

    theta: np.ndarray
    loss: float
    grad_inf_norm: float
    converged: bool
    index: int
    t: float
    flow_steps: int
    refine_attempts: int
    jump: float
    wall: float
    reason: str


def _hessian_index(objective: Objective, theta) -> int:
    """#(λ < −tol) of ∇²L(θ), tol as in :func:`core.analysis.default_eigen_tol`."""
    from core.analysis import default_eigen_tol

    lam = np.linalg.eigvalsh(np.asarray(objective.hessian(jnp.asarray(theta)), np.float64))
    tol = default_eigen_tol(float(np.max(np.abs(lam))) if lam.size else 0.0, lam.size)
    return int(np.sum(lam < -tol))


def _refine_attempt(objective: Objective, theta, gtol: float, seconds: float) -> RefineResult:
    """Trust-region for at most ``seconds``, then a short Newton polish if it stalled close by.

    (trust-exact can stop a little above gtol where the gradient's rounding noise starts;
    Newton on ∇L = 0 removes that last bit.  Farther away Newton could head for a saddle.)
    """
    first = trust_region(objective, theta, gtol, max_iter=10**9, max_seconds=seconds)
    if first.converged or not first.grad_inf_norm < _POLISH_BELOW:
        return first
    second = newton(objective, first.theta, gtol, max_iter=20)
    return _then_newton(first, second) if second.grad_inf_norm < first.grad_inf_norm else first


# Newton polishes a trust-region result only when its ‖∇L‖∞ is already below this.
_POLISH_BELOW = 1e-7
# Shortest time budget of a refinement attempt during the flow, seconds.
_MIN_ATTEMPT_SECONDS = 0.2


def flow_to_fixed_point(
    objective: Objective,
    theta0,
    settings=None,
    *,
    gtol: float = 1e-12,
    switch_grad: float = 1e-3,
    refine_share: float = 0.25,
    final_seconds: float | None = None,
) -> FixedPointResult:
    """Gradient flow from θ0 (P,), handing over to an exact-Hessian trust-region solve.

    The flow (:func:`core.flow.run_dynamics` with ``settings``; default: t_max = 1e10,
    rtol = 1e-3, atol = 1e-6, the defaults of MLPGradientFlow.jl's ``train``: only where
    the flow ends matters here, not the accuracy of its path) runs in chunks.  After a
    chunk whose last state θ_f has ‖∇L(θ_f)‖∞ < ``switch_grad``, a refinement is tried
    from θ_f: :func:`trust_region` for at most ``refine_share`` × the wall time so far
    (≥ 0.2 s), then a short Newton polish if it stalled just above ``gtol``.  It is
    accepted when it converges (‖∇L‖∞ < gtol) to a minimum (Hessian index 0) with
    L ≤ L(θ_f), i.e. where the flow is headed; otherwise the flow goes on from θ_f (its
    trajectory is never altered).  The next attempt waits until the gradient fell 10×
    or (1/refine_share − 1) × the failed attempt's cost has passed, so failed attempts
    take at most about ``refine_share`` of the run.  If the flow ends first (t_max,
    max_seconds, …), the same refinement runs from its last state for ``final_seconds``
    (default: ``refine_share`` × settings.max_seconds) and its result is returned
    whatever it is (a saddle, too: ``index`` says which).

    Why: teacher-student minima are extremely ill-conditioned (λ_min/λ_max ≈ 1e-9…1e-12
    at a recovered softplus teacher, d = 2, 5 neurons), so the flow needs t ≳ 1/λ_min to
    arrive, while a trust-region Newton method, an implicit-Euler-like step whose size
    adapts to the curvature, crosses such a valley in tens to hundreds of iterations.
    """
    from core.flow import DynamicsSettings, run_dynamics

    if settings is None:
        settings = DynamicsSettings(t_max=1e10, rtol=1e-3, atol=1e-6)
    if not (switch_grad > 0):
        raise ValueError(f"switch_grad: must be > 0, got {switch_grad!r}")
    if not (0 < refine_share < 1):
        raise ValueError(f"refine_share: must be in (0, 1), got {refine_share!r}")
    if final_seconds is None:
        final_seconds = refine_share * settings.max_seconds
    if not (final_seconds > 0):
        raise ValueError(f"final_seconds: must be > 0, got {final_seconds!r}")
    start = time.perf_counter()
    theta0 = np.asarray(theta0, np.float64)
    last = None
    attempts = 0
    last_g, next_try = np.inf, 0.0
    for chunk in run_dynamics(objective, theta0, settings):
        if len(chunk.t):
            last = chunk
        if last is None or chunk.done:
            continue
        g, now = float(last.grad_norm[-1]), time.perf_counter()
        if not (g < switch_grad and (g < 0.1 * last_g or now >= next_try)):
            continue
        attempts += 1
        theta_f, loss_f = last.theta[-1], float(last.loss[-1])
        budget = max(_MIN_ATTEMPT_SECONDS, refine_share * (now - start))
        res = _refine_attempt(objective, theta_f, gtol, budget)
        downhill = res.loss <= loss_f * (1 + 1e-9) + 1e-300
        if res.converged and downhill and _hessian_index(objective, res.theta) == 0:
            return FixedPointResult(
                res.theta, res.loss, res.grad_inf_norm, True, 0, float(last.t[-1]),
                chunk.steps, attempts, float(np.max(np.abs(res.theta - theta_f))),
                time.perf_counter() - start,
                f"refined from the flow at t = {last.t[-1]:.3g} (‖∇L‖∞ = {g:.2g}): "
                f"{res.reason}",
            )  # fmt: skip
        last_g = g
        spent = time.perf_counter() - now
        next_try = time.perf_counter() + (1 / refine_share - 1) * spent
    if last is None:  # pragma: no cover - run_dynamics always yields a row
        raise RuntimeError("the flow produced no state")
    theta_f = last.theta[-1]
    res = _refine_attempt(objective, theta_f, gtol, final_seconds)
    return FixedPointResult(
        res.theta, res.loss, res.grad_inf_norm, res.converged,
        _hessian_index(objective, res.theta), float(last.t[-1]), last.steps, attempts + 1,
        float(np.max(np.abs(res.theta - theta_f))), time.perf_counter() - start,
        f"flow ended ({last.reason}) at t = {last.t[-1]:.3g}; refine: {res.reason}",
    )  # fmt: skip
