"""Gradient flow to its fixed point: the flow, handed over to refinement in the basin.

The one pipeline behind ``explorer run`` (:mod:`core.runner`), the app's live runs
(:mod:`explorer.worker`), sweeps and ``bench/``: :class:`FixedPointRun` streams the flow's
:class:`core.flow.Chunk` s and ends with the flow's own end point, to ‖∇L‖∞ < gtol.

Why hand over at all: teacher-student minima are extremely ill-conditioned (at a recovered
softplus teacher, d = 2, 5 neurons: λ_min/λ_max ≈ 1e-9…1e-12), so the flow needs
t ≳ 1/λ_min to arrive, while a Newton-type method (:mod:`core.refine`) crosses the last
stretch of such a valley in a handful of iterations.

When (all decided on the flow's *state*, never on the wall clock, so the same config gives
the same trajectory, hand-over and end point whatever the machine's load).  Only states on
the fixed save grid (:func:`core.flow.save_grid`) are considered; progress rows between
grid points, whose number depends on the load, never are.  For the continuous flow
(``dynamics.method = "flow"``) with ‖∇L(θ_f)‖∞ < ``switch_grad``:

1. *Check*, at the fixed check times :func:`check_times` (:data:`CHECKS_PER_DECADE` save
   times per decade of t, fewer for P > 316; a function of the settings and P only, so a
   resumed run checks at the same times; cost: one Hessian and one ``eigh``).  With H = ∇²L(θ_f) =
   Q Λ Qᵀ, the check passes when

   * λ_min ≥ −tol (:func:`core.analysis.default_eigen_tol`) here and at the previous
     check: no direction of negative curvature, so the flow is not passing a saddle
     (every plateau of the presets has one, λ_min ≈ −0.01 at the symmetry saddle).
     One check is not enough: between two saddle regions of the default config λ_min
     crosses zero briefly (+2e-7 at t = 1.6e4, between −7e-7 and −1e-6);
   * the curvature has settled: λ_max's change since the previous check, extrapolated
     over the Newton step s (below), is under :data:`LMAX_DRIFT` of λ_max
     (:func:`_lmax_drift`).  In a channel to infinity λ_max grows like 1/ε² for ever.

2. *Attempt* (when the check passes, at most once per decade of t or 10× drop of
   ‖∇L‖∞; bounded by :data:`ATTEMPT_MAX_ITER` · 2^k iterations per stage for the
   k-th attempt, at most ``max_iter``, never by seconds):
   :func:`core.refine.refine` from θ_f with the configured method.  The local quadratic
   model m(θ_f + p) = L_f + gᵀp + ½ pᵀHp has its minimiser at the Newton step
   s = −H⁺g, with predicted decrease δ = ½ gᵀH⁺g (H⁺ on the eigenvalues λ > P·ε·λ_max).
   The refined point θ* is accepted when

   * it converged (‖∇L(θ*)‖∞ < gtol) to a minimum (Hessian index 0) with L* ≤ L_f;
   * L_f − L* ≤ :data:`MODEL_FACTOR` · δ and ‖θ* − θ_f‖₂ ≤ :data:`MODEL_FACTOR` · ‖s‖₂:
     the quadratic model at θ_f predicts where refinement landed.  A shortcut past a
     plateau drops the loss by the plateau's height, orders of magnitude above δ there.
     (At a degenerate minimum L ∝ u^{2k} the actual drop is (2k−1)/k < 2 times δ and
     the distance 2k − 1 times ‖s‖: a factor 10 admits quartic and sextic valleys.)
   * 1/:data:`CURVATURE_RATIO` ≤ λ_max(θ*)/λ_max(θ_f) ≤ :data:`CURVATURE_RATIO`: the
     same basin's curvature, not a point far out in a channel.

   (Convexity along the segment θ_f → θ* would be a stronger test, but teacher-student
   valleys are curved: at the default config's t = 1e6, L = 1.3e-8, where the model
   predicts the refined point to 15 %, L rises 27× along the chord.)

   A rejected attempt is discarded: the flow goes on from θ_f untouched.  An accepted one
   ends the run there: the last chunk is cut after θ_f (``reason`` :data:`HANDED_OVER`).

If the flow ends by itself (t_max, ``grad_tol``, max_steps, …), the configured refinement
runs from its last state with ``max_iter`` per stage and its result is the end point
whatever it is (a saddle too; ``index`` says so).  A flow that met ``grad_tol`` is thereby
polished by Newton to the gradient's round-off floor (method "auto" or "newton").  A run
cut short by ``max_seconds`` says so in ``reason`` and ``stop_reason``; its final
refinement is then bounded by :data:`FINAL_SECONDS_SHARE` × max_seconds as well, the only
place a clock enters an outcome (a run cut short by the clock is not reproducible anyway).
Discrete dynamics (gd, sgd, adam) are not handed over: their end points are their own,
refined at the end only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

import core  # noqa: F401  (float64)
from core.flow import StopReason
from core.manifold import spectrum_eigh, spectrum_hessian
from core.objectives import Objective
from core.refine import (
    METHODS,
    RefineResult,
    newton,
    polish,
    refine,
    then_newton,
    trust_region,
)

#: ``Chunk.reason`` / ``stop_reason`` of a run that ended by an accepted hand-over.
HANDED_OVER = StopReason.REFINED
#: Refinement is considered only once ‖∇L‖∞ is below this (absolute, like gtol): above
#: it the flow is still far from any critical point, and each check costs a Hessian.
SWITCH_GRAD = 1e-3
#: Hessian checks per decade of t (a plateau spans ≳ 1 decade in every preset, so a
#: settled λ_max can be told from a growing one at this rate).
CHECKS_PER_DECADE = 4
#: An attempt also comes early once ‖∇L‖∞ fell by this factor since the last one.
GRAD_DROP = 0.1
#: Attempts are at least this factor apart in t (a decade).
ATTEMPT_T_FACTOR = 10.0
#: Largest relative change of λ_max extrapolated over the Newton step (see
#: :func:`_lmax_drift`) for the curvature to count as settled.  Measured at the checks
#: with no negative curvature: converging to a minimum 0.0003…0.043 (default config,
#: symmetry saddle after its escape); along the channel preset 0.16…0.38 (t = 2e4…1e9);
#: the default config at t = 1.6e4, between two saddle regions, 0.38.
LMAX_DRIFT = 0.1
#: An attempt's trust region is followed by Newton only below this ‖∇L‖∞.
POLISH_BELOW = 1e-7
#: Iterations per stage of the first attempt during the flow; each later attempt gets
#: twice as many (up to ``max_iter``), so failed attempts cost a bounded share of the
#: flow, which spends ever more steps per decade.  Inside the basin trust region and
#: Newton converge in a few to a few tens of iterations (ill-conditioned valleys: up
#: to ~100); more means the quadratic model is not (yet) valid, and the flow goes on.
ATTEMPT_MAX_ITER = 50
#: How far the refined point may lie beyond the local quadratic model's prediction.
MODEL_FACTOR = 10.0
#: Largest change of λ_max from the flow state to the refined point.
CURVATURE_RATIO = 2.0
#: After a max_seconds stop, the final refinement gets this share of max_seconds (the
#: analysis and the save after it take the rest of the 10 % that max_seconds allows).
FINAL_SECONDS_SHARE = 0.05


@dataclass(frozen=True)
class Attempt:
    """One refinement attempt during the flow.

    Attributes:
        t: flow time of the state it started from.
        grad_inf_norm: ‖∇L‖∞ there.
        accepted: whether the run was handed over.
        why: the reason for the verdict, in words.
        iterations: refinement iterations spent.
    """

    t: float
    grad_inf_norm: float
    accepted: bool
    why: str
    iterations: int


@dataclass(frozen=True)
class FixedPointResult:
    """Outcome of :class:`FixedPointRun`.

    Attributes:
        theta: (P,) the end point: the refined point, else the flow's last state.
        loss, grad_inf_norm: L and ‖∇L‖∞ there.
        converged: whether ‖∇L‖∞ < gtol.
        index: number of Hessian eigenvalues < −tol there (0: a minimum; −1: H not finite).
        t: flow time of the flow's last state (where refinement started).
        flow_steps: accepted solver steps of the flow, as of the end of the chunk the last
            state came in (after a hand-over mid-chunk that includes the chunk's later
            steps, so it may vary with the load: the flow reports steps per chunk, not row).
        refine_attempts: refinements tried, accepted or not, the final one included.
        jump: ‖θ − θ_flow‖∞, the distance refinement moved from the flow's last state.
        wall: seconds, compilation included.
        reason: how it ended, in words.
        stop_reason: :data:`HANDED_OVER`, else the flow's stop reason (``Chunk.reason``).
        handed_over: whether refinement took over during the flow.
        refine: the refinement that produced ``theta`` (None: method "none", or it failed).
        refine_seconds: wall seconds of that refinement (reporting only).
        error: the refinement's exception text, if it raised.
        attempts: the attempts during the flow, in order.
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
    stop_reason: str
    handed_over: bool
    refine: RefineResult | None
    refine_seconds: float
    error: str | None
    attempts: tuple[Attempt, ...]


def _eigen_tol(lam: np.ndarray) -> float:
    from core.analysis import default_eigen_tol

    return default_eigen_tol(float(np.max(np.abs(lam))) if lam.size else 0.0, lam.size)


def _lmax_drift(before: tuple[np.ndarray, float], theta: np.ndarray, lmax: float, step: float):
    """|Δλ_max| / λ_max extrapolated over the remaining Newton step ‖s‖₂.

    Between the previous check (θ_p, λ_p) and this one λ_max changed at the rate
    |λ_max − λ_p| / ‖θ − θ_p‖₂ per unit distance; over the distance ‖s‖₂ still to go that
    predicts a relative change |λ_max − λ_p| ‖s‖₂ / (‖θ − θ_p‖₂ λ_max).  Converging to a
    minimum λ_max settles as the remaining distance shrinks, so this is a few % at most;
    along a channel λ_max keeps growing at a steady rate per distance travelled while
    the Newton step points on down the channel, so it stays at tens of %
    (measurements at :data:`LMAX_DRIFT`).
    """
    theta_p, lmax_p = before
    change = abs(lmax - lmax_p) / abs(lmax) if lmax != 0 else np.inf
    if change == 0:
        return 0.0
    moved = float(np.linalg.norm(theta - theta_p))
    return change * step / moved if moved > 0 else np.inf


def check_times(grid: np.ndarray, n_params: int) -> np.ndarray:
    """The save times (a subset of ``grid`` (n,), ascending) at which the flow is checked.

    Walking the grid from its first point, t_j is taken when t_j ≥ 10^(1/n) times the last
    one taken, n = min(CHECKS_PER_DECADE, :func:`core.spectra.spectra_per_decade` (P)): like
    the spectra along a run, checks (one Hessian, O(N P²), and one ``eigh``, O(P³)) thin
    out like 1/P² above P ≈ 316, so they stay a bounded share of the run's cost.
    """
    from core.spectra import spectra_per_decade

    factor = 10.0 ** (1.0 / min(CHECKS_PER_DECADE, spectra_per_decade(n_params)))
    chosen: list[float] = []
    for t in np.asarray(grid, dtype=np.float64):
        if not chosen or t >= factor * chosen[-1] * (1 - 1e-12):
            chosen.append(float(t))
    return np.asarray(chosen, dtype=np.float64)


def _inf_norm(v) -> float:
    return float(np.max(np.abs(v))) if np.size(v) else 0.0


class FixedPointRun:
    """Iterate for the flow's chunks; afterwards :attr:`result` holds the end point.

    Args:
        objective: the loss and its derivatives.
        theta0: (P,) start.
        settings: :class:`core.flow.DynamicsSettings` (default: t_max = 1e10, rtol = 1e-3,
            atol = 1e-6, the defaults of MLPGradientFlow.jl's ``train``: only where the
            flow ends matters here, not the accuracy of its path).
        t0, seed: as for :func:`core.flow.run_dynamics` (resume; sgd minibatches).
        method: refinement method, one of :data:`core.refine.METHODS` or "none" (the
            flow alone, no hand-over and no final refinement).
        gtol, max_iter: refinement tolerance on ‖∇L‖∞ and iterations per stage of the
            final refinement.
        switch_grad: see :data:`SWITCH_GRAD`.

    The chunks are those of :func:`core.flow.run_dynamics`, except that a hand-over cuts
    the last one after the state it started from and marks it done with reason
    :data:`HANDED_OVER`.  :attr:`result` is set before the done chunk is yielded, so a
    consumer that stops at ``chunk.done`` finds it.  :meth:`close` stops early (then
    :attr:`result` stays None).
    """

    def __init__(
        self,
        objective: Objective,
        theta0,
        settings=None,
        *,
        t0: float = 0.0,
        seed: int = 0,
        method: str = "auto",
        gtol: float = 1e-12,
        max_iter: int = 200,
        switch_grad: float = SWITCH_GRAD,
    ) -> None:
        from core.flow import DynamicsSettings, run_dynamics, save_grid

        if settings is None:
            settings = DynamicsSettings(t_max=1e10, rtol=1e-3, atol=1e-6)
        if method not in (*METHODS, "none"):
            raise ValueError(
                f"refine.method: unknown method {method!r}; choose one of {(*METHODS, 'none')}"
            )
        if not (gtol > 0):
            raise ValueError(f"refine.gtol: must be > 0, got {gtol!r}")
        if not (isinstance(max_iter, int) and max_iter >= 1):
            raise ValueError(f"refine.max_iter: must be an integer ≥ 1, got {max_iter!r}")
        if not (switch_grad > 0):
            raise ValueError(f"switch_grad: must be > 0, got {switch_grad!r}")
        self.objective, self.settings = objective, settings
        self.method, self.gtol, self.max_iter = method, float(gtol), int(max_iter)
        self.switch_grad = float(switch_grad)
        self.result: FixedPointResult | None = None
        self.attempts: list[Attempt] = []
        self._handover = method != "none" and settings.method == "flow"
        self._check_times = check_times(save_grid(settings), objective.n_params)
        self._start = time.perf_counter()
        flow = run_dynamics(objective, theta0, settings, t0=t0, seed=seed)
        self._gen = self._drive(flow)
        # schedule state: the last check's (θ, λ_max, no negative curvature), the last
        # attempt's (t, ‖∇L‖∞)
        self._prev: tuple[np.ndarray, float] | None = None  # (θ, λ_max) at the last check
        self._settled = False  # whether the last check found no negative curvature
        self._attempt: tuple[float, float] | None = None
        self._seconds = 0.0  # of the latest refinement

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        return next(self._gen)

    def close(self) -> None:
        """Stop the flow (no result)."""
        self._gen.close()

    # -- the driver ---------------------------------------------------------------

    def _drive(self, flow) -> Iterator:
        last = None  # (t, θ, loss, ‖∇L‖∞) of the flow's latest finite row
        try:
            for chunk in flow:
                rows = range(len(chunk.t))
                at_check = np.isin(chunk.t, self._check_times) if self._handover else ()
                for i in rows:
                    row = (float(chunk.t[i]), chunk.theta[i], float(chunk.loss[i]),
                           float(chunk.grad_norm[i]))  # fmt: skip
                    if np.isfinite(row[2]) and np.isfinite(row[3]):
                        last = row
                    if not (self._handover and at_check[i]):
                        continue
                    accepted = self._consider(*row)
                    if accepted is not None:
                        cut = slice(0, i + 1)
                        message = (
                            f"handed over to refinement at t = {row[0]:.6g} "
                            f"(‖∇L‖∞ = {row[3]:.2g}): {accepted.reason}"
                        )
                        self.result = self._finish(row, accepted, chunk.steps, HANDED_OVER,
                                                   message, handed_over=True)  # fmt: skip
                        yield dataclasses.replace(
                            chunk, t=chunk.t[cut], theta=chunk.theta[cut],
                            loss=chunk.loss[cut], grad_norm=chunk.grad_norm[cut],
                            done=True, reason=HANDED_OVER, message=message,
                        )  # fmt: skip
                        return
                if chunk.done:
                    if last is None:  # pragma: no cover - run_dynamics always yields a row
                        raise RuntimeError("the flow produced no finite state")
                    self.result = self._final(last, chunk)
                yield chunk
                if chunk.done:
                    return
        finally:
            flow.close()

    def _consider(self, t: float, theta, loss: float, gnorm: float) -> RefineResult | None:
        """The check and attempt at a state at a check time; the accepted refinement, else
        None."""
        if not (self.settings.grad_tol <= gnorm < self.switch_grad):
            return None  # far from critical, or the flow stops here itself ("converged")
        # Constrained parameters: the Riemannian Hessian, eigenvectors q (P, F) embedded.
        h = spectrum_hessian(self.objective, theta)
        if not np.all(np.isfinite(h)):
            return None
        lam, q = spectrum_eigh(self.objective, theta, h)
        theta = np.asarray(theta, np.float64)
        before, self._prev = self._prev, (theta, float(lam[-1]))
        settled, self._settled = self._settled, bool(lam[0] >= -_eigen_tol(lam))
        if not (settled and self._settled):
            return None  # negative curvature now or at the last check: passing a saddle
        g = np.asarray(self.objective.grad(jnp.asarray(theta)), np.float64)
        # Newton step s = −H⁺g and predicted decrease δ = ½ gᵀH⁺g of the quadratic model,
        # on the resolved positive curvatures λ > P·ε·λ_max (as in core.refine.newton).
        gq = q.T @ g
        resolved = lam > lam.size * np.finfo(float).eps * float(np.max(np.abs(lam)))
        coef = np.where(resolved, 1.0 / np.where(resolved, lam, 1.0), 0.0)
        step = float(np.linalg.norm(coef * gq))
        decrease = 0.5 * float(np.sum(coef * gq * gq))
        if before is None or _lmax_drift(before, theta, float(lam[-1]), step) > LMAX_DRIFT:
            return None  # the curvature has not settled (or there is nothing to compare)
        if self._attempt is not None:
            t_a, g_a = self._attempt
            if t < ATTEMPT_T_FACTOR * t_a * (1 - 1e-12) and gnorm > GRAD_DROP * g_a:
                return None
        self._attempt = (t, gnorm)
        tic = time.perf_counter()
        res = self._attempt_refine(theta)
        self._seconds = time.perf_counter() - tic
        why = self._verdict(theta, loss, float(lam[-1]), step, decrease, res)
        self.attempts.append(Attempt(t, gnorm, why is None, why or "accepted", res.iterations))
        return res if why is None else None

    def _attempt_refine(self, theta) -> RefineResult:
        """The configured refinement from θ, each stage capped (see ATTEMPT_MAX_ITER).

        For "auto", Newton follows the trust region only once that stalled close by
        (‖∇L‖∞ < POLISH_BELOW: trust-exact can stop a little above gtol where the
        gradient's rounding noise starts); farther away a failed trust region means the
        flow is not in the quadratic basin yet, and Newton would only cost more.
        """
        cap = min(ATTEMPT_MAX_ITER * 2 ** len(self.attempts), self.max_iter)
        # Iteration caps decide every attempt; the wall budget can only cut one short when
        # the run is about to be cut short by max_seconds anyway (and then says so).
        left = self._seconds_left
        if self.method == "newton":
            res = newton(self.objective, theta, self.gtol, cap, max_seconds=left())
        else:
            res = trust_region(self.objective, theta, self.gtol, cap, max_seconds=left())
            if self.method == "auto" and not res.converged and res.grad_inf_norm < POLISH_BELOW:
                second = newton(self.objective, res.theta, self.gtol, cap, max_seconds=left())
                res = then_newton(res, second)
        if self.method != "trust-region" and res.converged:
            res = polish(self.objective, res, self.gtol)
        return res

    def _seconds_left(self) -> float:
        """Wall seconds left of ``max_seconds`` (never below a millisecond)."""
        return max(self.settings.max_seconds - (time.perf_counter() - self._start), 1e-3)

    def _verdict(self, theta_f, loss_f, lmax_f, step, decrease, res) -> str | None:
        """Why the refinement ``res`` from the flow state θ_f is rejected, or None."""
        if not res.converged:
            return f"not converged (‖∇L‖∞ = {res.grad_inf_norm:.2g}: {res.reason})"
        slack = 1e-10 * abs(loss_f) + 1e-300
        if not res.loss <= loss_f + slack:
            return f"uphill (L = {res.loss:.6g} > {loss_f:.6g})"
        drop = loss_f - res.loss
        if drop > MODEL_FACTOR * decrease + slack:
            return f"loss drop {drop:.3g} > {MODEL_FACTOR:g} × the quadratic model's {decrease:.3g}"
        moved = float(np.linalg.norm(np.asarray(res.theta) - np.asarray(theta_f)))
        if moved > MODEL_FACTOR * step + 1e-6 * (1.0 + float(np.linalg.norm(theta_f))):
            return f"moved {moved:.3g} > {MODEL_FACTOR:g} × the Newton step {step:.3g}"
        lam = np.linalg.eigvalsh(spectrum_hessian(self.objective, res.theta))
        if lam[0] < -_eigen_tol(lam):
            return f"landed on a saddle (λ_min = {lam[0]:.3g})"
        ratio = float(lam[-1]) / lmax_f if lmax_f > 0 else np.inf
        if not (1 / CURVATURE_RATIO <= ratio <= CURVATURE_RATIO):
            return f"λ_max changed {ratio:.3g}× from the flow state"
        return None

    def _final(self, last, chunk) -> FixedPointResult:
        """The refinement from the flow's last state after the flow ended by itself."""
        t, theta = last[0], last[1]
        why = f"flow ended ({chunk.reason}) at t = {t:.6g}"
        if chunk.reason == "max_seconds":
            why = f"cut short by max_seconds = {self.settings.max_seconds:g} at t = {t:.6g}"
        if self.method == "none":
            return self._finish(last, None, chunk.steps, chunk.reason, why)
        # The final refinement gets what is left of the budget, and after a max_seconds
        # stop FINAL_SECONDS_SHARE of it, so a run ends within ~5 % of max_seconds.
        seconds = max(self._seconds_left(), FINAL_SECONDS_SHARE * self.settings.max_seconds)
        tic = time.perf_counter()
        try:
            res = refine(self.objective, theta, self.method, self.gtol, self.max_iter, seconds)
            if self.method == "newton" and res.converged:
                res = polish(self.objective, res, self.gtol)
            self._seconds = time.perf_counter() - tic
        except Exception as e:  # a failed refinement still leaves the flow's end point
            error = f"{type(e).__name__}: {e}"
            return self._finish(last, None, chunk.steps, chunk.reason, why, error=error)
        return self._finish(last, res, chunk.steps, chunk.reason, f"{why}; refine: {res.reason}")

    def _finish(self, last, res, steps, stop_reason, reason, *, handed_over=False, error=None):
        t, theta_f, loss_f, gnorm_f = last
        if res is not None and np.all(np.isfinite(res.theta)):
            theta, loss, gnorm = np.asarray(res.theta), res.loss, res.grad_inf_norm
        else:
            theta, loss, gnorm = np.asarray(theta_f, np.float64), loss_f, gnorm_f
        h = spectrum_hessian(self.objective, theta)
        index = -1
        if np.all(np.isfinite(h)):
            lam = np.linalg.eigvalsh(h)
            index = int(np.sum(lam < -_eigen_tol(lam)))
        final_attempt = 0 if handed_over or res is None else 1
        return FixedPointResult(
            theta, float(loss), float(gnorm), bool(np.isfinite(gnorm) and gnorm < self.gtol),
            index, float(t), int(steps), len(self.attempts) + final_attempt,
            _inf_norm(theta - np.asarray(theta_f)), time.perf_counter() - self._start,
            reason, str(stop_reason), handed_over, res, self._seconds if res else 0.0, error,
            tuple(self.attempts),
        )  # fmt: skip


def flow_to_fixed_point(
    objective: Objective,
    theta0,
    settings=None,
    *,
    method: str = "auto",
    gtol: float = 1e-12,
    max_iter: int = 200,
    switch_grad: float = SWITCH_GRAD,
) -> FixedPointResult:
    """Run :class:`FixedPointRun` to the end and return its result (θ0 (P,); see there)."""
    run = FixedPointRun(
        objective, theta0, settings, method=method, gtol=gtol, max_iter=max_iter,
        switch_grad=switch_grad,
    )  # fmt: skip
    for _ in run:
        pass
    assert run.result is not None
    return run.result
