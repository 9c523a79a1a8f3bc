"""Gradient flow against its discretisations: GD, SGD and Adam from one initial point.

The comparison of MLPGradientFlow.jl's paper: every method starts at the same θ₀ and runs
on the same time axis, the flow's time t for the flow and t = k·lr after k iterations of a
discrete method (:mod:`core.flow`).  For each method m it records

* its loss L(θ_m(t)) at its own save times (the flow's save grid rounded to whole
  iterations, :func:`core.flow.save_grid`), and
* the distance D_m(t) = ‖θ_m(t) − θ_flow(t)‖₂ at those same times.

θ_flow is known exactly (to the solver's tolerance) only at the flow's save times.  Where a
discrete time k·lr is one of them (within 10⁻¹² relative, e.g. t = lr = 10⁻² at the first
save), the saved state is used; elsewhere θ_flow(t) is the cubic Hermite interpolant
between the two neighbouring saves t_j ≤ t ≤ t_{j+1}, built from the saved states and the
exact vector field θ' = −τ⁻¹ ⊙ ∇L(θ) there (error O(h⁴ ‖θ⁗‖), h = t_{j+1} − t_j).  Such
distances are flagged ``interpolated``; past the flow's last save they are NaN.

What to expect (the tests check these): gradient descent is the explicit Euler scheme of
the flow, so for a fixed horizon D_gd(t) = O(lr) → 0 linearly as lr → 0; Adam's update
≈ −lr · m̂/√v̂ ≈ −lr · sign(∇L) approximates the *sign* flow, not the gradient flow, so
D_adam stays O(1) as lr → 0; SGD adds O(√lr) noise around GD.

All methods run with ``grad_tol = 0`` (no early convergence stop), so each reaches the
comparison's ``t_max`` unless its wall-clock budget (``max_seconds``) or ``max_steps`` cut it
short, which its ``stop_reason`` says.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.flow import DynamicsSettings, run_to_end, tauinv_array
from core.objectives import Objective

DISCRETE_METHODS = ("gd", "sgd", "adam")
# A discrete time k·lr within this relative distance of a flow save time is that save time
# (both are float64 products/powers of the same numbers; 1e-12 is far above their round-off
# and far below any grid spacing).
SAME_TIME_RTOL = 1e-12
# The note stored with every comparison (what the distances mean).
NOTE = (
    "D(t) = ‖θ_method(t) − θ_flow(t)‖₂ at t = k·lr; θ_flow from the flow's saves, cubic "
    "Hermite interpolation (θ' = −τ⁻¹∇L) where k·lr is not a save time (flagged)"
)


@dataclass(frozen=True)
class MethodTrace:
    """One discrete method against the flow.

    Attributes:
        method: "gd" | "sgd" | "adam".
        lr: its learning rate (t = k·lr).
        t: (n,) its save times, increasing, t[0] = 0.
        loss: (n,) L(θ_m(t)).
        distance: (n,) ‖θ_m(t) − θ_flow(t)‖₂ (NaN past the flow's last save).
        interpolated: (n,) bool, whether θ_flow(t) was interpolated.
        stop_reason: why its run stopped (:class:`core.flow.StopReason` value).
    """

    method: str
    lr: float
    t: np.ndarray
    loss: np.ndarray
    distance: np.ndarray
    interpolated: np.ndarray
    stop_reason: str

    @property
    def max_distance(self) -> float:
        """max_t D(t) over the times where it is defined (NaN if none)."""
        d = self.distance[np.isfinite(self.distance)]
        return float(d.max()) if d.size else math.nan


@dataclass(frozen=True)
class Comparison:
    """The flow and each discrete method from one θ₀.

    Attributes:
        t_max: the common horizon.
        flow_t, flow_loss: (m,) the flow's save times (t[0] = 0) and loss.
        flow_stop_reason: why the flow stopped.
        traces: one :class:`MethodTrace` per discrete method, in the order asked.
        note: how the distances were computed.
    """

    t_max: float
    flow_t: np.ndarray
    flow_loss: np.ndarray
    flow_stop_reason: str
    traces: tuple[MethodTrace, ...]
    note: str = NOTE

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(tr.method for tr in self.traces)

    # -- storage (core.session keeps it in meta.json + trajectory.npz)

    def to_stored(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(meta, arrays): JSON-able metadata and float64 arrays named ``cmp_*``."""
        meta = {
            "t_max": float(self.t_max),
            "flow_stop_reason": self.flow_stop_reason,
            "note": self.note,
            "methods": [
                {"method": tr.method, "lr": float(tr.lr), "stop_reason": tr.stop_reason}
                for tr in self.traces
            ],
        }
        arrays = {"cmp_flow_t": self.flow_t, "cmp_flow_loss": self.flow_loss}
        for i, tr in enumerate(self.traces):
            arrays[f"cmp{i}_t"] = tr.t
            arrays[f"cmp{i}_loss"] = tr.loss
            arrays[f"cmp{i}_distance"] = tr.distance
            arrays[f"cmp{i}_interpolated"] = tr.interpolated.astype(np.float64)
        return meta, {k: np.asarray(v, np.float64) for k, v in arrays.items()}

    @classmethod
    def from_stored(cls, meta: Any, arrays: dict[str, np.ndarray]) -> Comparison:
        """Inverse of :meth:`to_stored`; ``ValueError`` (one line naming the field) when
        the stored data are not a valid comparison."""

        def need(cond: bool, message: str) -> None:
            if not cond:
                raise ValueError(f"comparison: {message}")

        def array(name: str, n: int | None = None, nan: bool = False) -> np.ndarray:
            need(name in arrays, f"missing array {name!r}")
            a = np.asarray(arrays[name])
            need(a.dtype.kind in "fi" and a.ndim == 1, f"array {name!r} must be a float vector")
            need(n is None or a.shape[0] == n, f"array {name!r} has {a.shape[0]} values, not {n}")
            a = a.astype(np.float64)
            need(nan or bool(np.all(np.isfinite(a))), f"array {name!r} contains NaN or inf")
            return a

        need(isinstance(meta, dict), "must be an object")
        t_max = meta.get("t_max")
        need(_is_positive(t_max), f"t_max must be a number > 0, got {t_max!r}")
        reason = meta.get("flow_stop_reason")
        need(isinstance(reason, str), "flow_stop_reason must be a string")
        note = meta.get("note", NOTE)
        need(isinstance(note, str), "note must be a string")
        methods = meta.get("methods")
        need(isinstance(methods, list) and len(methods) > 0, "methods must be a non-empty list")
        flow_t = array("cmp_flow_t")
        flow_loss = array("cmp_flow_loss", flow_t.shape[0])
        need(bool(np.all(np.diff(flow_t) > 0)), "cmp_flow_t must increase")
        traces = []
        for i, m in enumerate(methods):
            need(isinstance(m, dict), f"methods[{i}] must be an object")
            name, lr, why = m.get("method"), m.get("lr"), m.get("stop_reason")
            need(name in DISCRETE_METHODS, f"methods[{i}].method must be one of {DISCRETE_METHODS}")
            need(_is_positive(lr), f"methods[{i}].lr must be a number > 0")
            need(isinstance(why, str), f"methods[{i}].stop_reason must be a string")
            t = array(f"cmp{i}_t")
            need(bool(np.all(np.diff(t) > 0)), f"cmp{i}_t must increase")
            flags = array(f"cmp{i}_interpolated", t.shape[0])
            need(bool(np.all((flags == 0) | (flags == 1))), f"cmp{i}_interpolated must be 0/1")
            traces.append(
                MethodTrace(
                    method=name,
                    lr=float(lr),
                    t=t,
                    loss=array(f"cmp{i}_loss", t.shape[0]),
                    distance=array(f"cmp{i}_distance", t.shape[0], nan=True),
                    interpolated=flags.astype(bool),
                    stop_reason=why,
                )
            )
        return cls(float(t_max), flow_t, flow_loss, reason, tuple(traces), note)


def _is_positive(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def flow_at(
    t_query: np.ndarray,
    flow_t: np.ndarray,
    flow_theta: np.ndarray,
    flow_velocity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """θ_flow at the times ``t_query`` (n,) from saves t (m,), θ (m, P) and θ' (m, P).

    Returns (theta (n, P), interpolated (n,) bool): the saved state where t_query is a save
    time (within :data:`SAME_TIME_RTOL`), else the cubic Hermite interpolant on the
    enclosing interval; NaN rows (not interpolated) outside [t_0, t_{m−1}].
    """
    t_query = np.asarray(t_query, np.float64)
    n, p = t_query.shape[0], flow_theta.shape[1]
    out = np.full((n, p), np.nan)
    interpolated = np.zeros(n, bool)
    j = np.clip(np.searchsorted(flow_t, t_query), 0, len(flow_t) - 1)
    for q, tq in enumerate(t_query):
        for cand in (j[q] - 1, j[q]):
            if 0 <= cand < len(flow_t) and abs(flow_t[cand] - tq) <= SAME_TIME_RTOL * abs(tq):
                out[q] = flow_theta[cand]
                break
        else:
            if not (flow_t[0] < tq < flow_t[-1]):
                continue
            hi = int(j[q])
            lo = hi - 1
            h = flow_t[hi] - flow_t[lo]
            s = (tq - flow_t[lo]) / h
            h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
            h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
            out[q] = (
                h00 * flow_theta[lo]
                + h10 * h * flow_velocity[lo]
                + h01 * flow_theta[hi]
                + h11 * h * flow_velocity[hi]
            )
            interpolated[q] = True
    return out, interpolated


def check_methods(methods: Any, *, has_data: bool) -> tuple[str, ...]:
    """``methods`` as a tuple, or ``ValueError`` naming ``compare.methods``: empty, unknown or
    repeated names, or sgd without a finite data set (``has_data``)."""
    methods = tuple(methods)
    if not methods:
        raise ValueError("compare.methods: name at least one of gd, sgd, adam")
    for m in methods:
        if m not in DISCRETE_METHODS:
            raise ValueError(
                f"compare.methods: unknown method {m!r}; choose from {', '.join(DISCRETE_METHODS)}"
            )
    if len(set(methods)) != len(methods):
        raise ValueError(f"compare.methods: a method is named twice in {list(methods)}")
    if "sgd" in methods and not has_data:
        raise ValueError(
            "compare.methods: sgd needs a finite data set, but this problem has none "
            "(infinite data); compare gd and adam"
        )
    return methods


def default_methods(has_data: bool) -> tuple[str, ...]:
    """gd, adam, and sgd where there is a finite data set to sample minibatches from."""
    return ("gd", "sgd", "adam") if has_data else ("gd", "adam")


def compare_config(config: Any, methods: Any = None) -> Comparison:
    """:func:`compare_methods` for a :class:`core.config.Config`: its problem's θ₀, its
    ``[dynamics]`` settings (t_max, lr, tolerances…), ``methods`` or
    :func:`default_methods`."""
    from core.problem import build_problem
    from core.runner import dynamics_settings

    problem = build_problem(config)
    has_data = problem.objective.data is not None
    methods = default_methods(has_data) if methods is None else methods
    settings = dynamics_settings(config.dynamics, problem.spec.n_params)
    return compare_methods(problem.objective, problem.theta0, settings, methods, seed=config.seed)


def compare_methods(
    objective: Objective,
    theta0: np.ndarray,
    settings: DynamicsSettings,
    methods: tuple[str, ...] | list[str] = DISCRETE_METHODS,
    *,
    seed: int = 0,
) -> Comparison:
    """Run the flow and each discrete method from θ₀ (P,) to ``settings.t_max``.

    ``settings`` gives the flow's solver and tolerances, the discrete methods' ``lr`` and
    ``batch_size``, τ⁻¹, ``n_saves``, ``max_seconds`` (per method) and ``max_steps``; its
    ``method`` and ``grad_tol`` are ignored (flow, resp. 0).  ``seed``: sgd's minibatches.
    Errors name the field (``compare.methods``) for an unknown method, a repeated one, or
    sgd on an objective without a finite data set.
    """
    methods = check_methods(methods, has_data=objective.data is not None)
    theta0 = np.asarray(theta0, np.float64)
    flow_settings = dataclasses.replace(settings, method="flow", grad_tol=0.0)
    flow = run_to_end(objective, theta0, flow_settings)
    tauinv = tauinv_array(settings, objective.n_params)
    velocity = np.stack([-tauinv * np.asarray(objective.grad(th)) for th in flow.theta])
    traces = []
    for m in methods:
        run = run_to_end(
            objective, theta0, dataclasses.replace(settings, method=m, grad_tol=0.0), seed=seed
        )
        ref, interpolated = flow_at(run.t, flow.t, flow.theta, velocity)
        distance = np.linalg.norm(run.theta - ref, axis=1)  # NaN where ref is NaN
        traces.append(
            MethodTrace(
                method=m,
                lr=float(settings.lr),
                t=np.asarray(run.t, np.float64),
                loss=np.asarray(run.loss, np.float64),
                distance=distance,
                interpolated=interpolated,
                stop_reason=str(run.reason),
            )
        )
    return Comparison(
        t_max=float(settings.t_max),
        flow_t=np.asarray(flow.t, np.float64),
        flow_loss=np.asarray(flow.loss, np.float64),
        flow_stop_reason=str(flow.reason),
        traces=tuple(traces),
    )


def comparison_summary(comparison: Comparison) -> list[str]:
    """One line per method: its final loss, max and final distance, how many interpolated."""
    lines = [
        f"flow: final loss {comparison.flow_loss[-1]:.4g} at t = {comparison.flow_t[-1]:.4g} "
        f"({comparison.flow_stop_reason})"
    ]
    for tr in comparison.traces:
        finite = np.isfinite(tr.distance)
        last = tr.distance[finite][-1] if finite.any() else math.nan
        lines.append(
            f"{tr.method} (lr {tr.lr:g}): final loss {tr.loss[-1]:.4g} at t = {tr.t[-1]:.4g} "
            f"({tr.stop_reason}); ‖θ−θ_flow‖ max {tr.max_distance:.3g}, final {last:.3g} "
            f"({int(tr.interpolated.sum())} of {len(tr.t)} flow states interpolated)"
        )
    return lines
