"""Phases of a training trajectory: plateaus, descents, channels to infinity, convergence.

From one trajectory — save times t (m,), losses L (m,), ‖∇L‖∞ (m,), and the Hessian spectra
recorded along it — :func:`detect_phases` names the stretches a person watching the loss
curve sees, in time order:

* **plateau**: the flow lingers near a critical point θ* (a saddle, typically).  Gradient
  flow near θ* moves at speed ‖∇L‖ ≈ ‖H (θ − θ*)‖, so it spends a long stretch of log t
  there while the loss stays at L(θ*) + O(‖θ − θ*‖²); it leaves along an unstable
  direction, ‖θ − θ*‖ (and ‖∇L‖) growing like e^{|λmin| t}.  Detected as a stretch of at
  least :data:`PLATEAU_MIN_DECADES` of log t on which the loss is flat to
  :data:`PLATEAU_FLAT_REL` *and* ‖∇L‖∞ has a local minimum: it rises by
  :data:`PLATEAU_GRAD_RISE` or more from its least value on the stretch before the next
  flat stretch (the escape).  The second test is what keeps the start of every smooth
  descent out: for small t every trajectory is flat in log t (nothing has moved yet), but
  there ‖∇L‖ is at its largest, not at a minimum.
* **descent**: the loss falls between two of the other phases.
* **channel**: the run ends in a channel to infinity (Martinelli et al. 2025, see
  :mod:`core.analysis`): the loss still falls, slowly (at most :data:`CHANNEL_MAX_RATE`
  e-folds per decade of t, a power law, not the exponential collapse of a convergence),
  while the output weights of a neuron pair diverge — found by
  :func:`core.analysis.detect_channels` on the last state when θ and the spec are given —
  or, from the spectra alone, while λmax still grows by :data:`CHANNEL_LMAX_TAIL_GROWTH`
  or more per decade at the end of the run.  Its onset: where the slow fall begins when a
  fast fall (or a plateau) precedes it, and not before λmax stops decreasing.  When the
  loss fell slowly from the start, the loss marks no onset, and the channel is dated by its
  own evidence, the preceding part being a descent: with a pair, from where the pair's
  ε = ½‖w̃_i − w̃_j‖ stops growing and |a_i − a_j| stops shrinking for good (the shipped
  channel_to_infinity's pair does so from t ≈ 95, within its main drop); from the spectra
  alone, from the first spectrum at which the tail test above already holds over the
  decade before it and at every later one (the run, stopped there, would be called a
  channel).  A channel seen only in the spectra is unsure (:attr:`Phase.sure` false, a
  note "possibly a channel …, but no neuron pair passes the channel test").  Such is the
  explorer's default problem with a student of width 2: its loss falls at most 2.2
  e-folds per decade anywhere (0.46 → 0.0058 over t ∈ [0, 10⁶]); λmax grows 1.7–2.6× per
  decade from t ≈ 2 on, and neuron 1's bias grows like log t (5.3 → 10.6 over
  t ∈ [10⁴, 10⁶], the output bias compensating), so the weights do go to infinity, but as
  no pair: no two neurons pass the channel test at any save, and ‖w₀ − w₁‖, down from 2.2
  to 0.47 by t ≈ 10⁴, grows again to 0.9.  It is kept as an unsure channel from t ≈ 20 (λmax grew
  1.25× over the decade before), a descent before, rather than called a descent to the
  end: what diverges is not decided here, and the note says so.
* **converged**: the run ends with ‖∇L‖∞ ≤ :data:`CONVERGED_GRAD_TOL` (or the run's looser
  ``grad_tol``); the phase starts where the loss stopped changing (it was flat from there
  to the end) or, for a loss that keeps falling towards 0, where the gradient reached that
  tolerance.

All tests work on u = log₁₀ t; a row at t = 0 (the initial state) has no place on that axis
and only decides whether the first phase starts at t = 0 (it does when the loss there is
within the flat tolerance of the first plateau).  Each phase carries a representative loss
(a plateau's: the loss where ‖∇L‖∞ is least, i.e. nearest the critical point; otherwise the
loss at its end) and the Hessian index of the recorded spectrum that lies inside the phase
nearest to that least-gradient row (index tolerance as :func:`core.analysis.hessian_spectrum`:
λ < −:func:`core.analysis.default_eigen_tol`).

Phases share their boundaries; a stretch in which nothing is detected and the loss does not
fall (a run cut short before anything happened) gets no phase.  Everything is NumPy (the
optional channel check calls :func:`core.analysis.detect_channels`) and deterministic;
:func:`session_phases` applies :func:`detect_phases` to every segment of a
:class:`core.session.Session`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.analysis import DEFAULT_GRAD_TOL, default_eigen_tol
from core.files import json_float

# ---------------------------------------------------------------------------------------
# Thresholds (all relative or per decade of t, so they do not depend on the units of the
# loss, the weights or time).

#: A stretch is flat when max L − min L ≤ PLATEAU_FLAT_REL · |L| over it.  The shipped
#: plateaus are flat to 4e-6 (saddle_to_saddle) and 2e-4 (symmetry_saddle) until a few saves
#: before their escape, so 1 % puts a plateau's end within one save (0.04 decade) of the
#: visible drop, while smooth descents fall by tens of percent per decade.
PLATEAU_FLAT_REL = 1e-2
#: ... for at least this many decades of t (a factor 1.4; 3–4 saves at 20–25 saves per
#: decade).  The saddle_to_saddle preset's shortest plateau lasts 0.49 decade, those of
#: two-layer linear nets with teacher singular values a decade apart 0.4–0.8; the shortest
#: we know, rank 1 of a two-layer net with singular values (5, 1, 0.2) from init 1e-3, is
#: flat to 1 % for 0.2 decade.  Shorter flat stretches are not mistaken for plateaus by a
#: smooth descent anyway: the gradient test below is what rules those out.
PLATEAU_MIN_DECADES = 0.15
#: ... and ‖∇L‖∞ must rise by this factor from its least value on the stretch before the
#: next flat stretch: the escape along the saddle's unstable direction.  The shipped
#: escapes rise by 260× (symmetry_saddle) and 390×, 10⁴×, 9·10³× (saddle_to_saddle); along
#: a smooth descent ‖∇L‖ falls or changes by a factor of 2 or so (teacher_recovery: its
#: largest rise after a dip is 1.8×).
PLATEAU_GRAD_RISE = 10.0
#: ‖∇L‖∞ at or below which the end of a run counts as converged: the tolerance at which
#: :func:`core.analysis.classify` calls a point critical.  The flow's own ``grad_tol``
#: (1e-12 by default) is often not reached before t_max at a genuine minimum (the
#: symmetry_saddle run ends at 4.6e-12 and is refined in one Newton step), so a looser
#: run tolerance is honoured but a tighter one does not hide a convergence.
CONVERGED_GRAD_TOL = DEFAULT_GRAD_TOL
#: A channel's loss falls slowly: at most this many e-folds per decade of t on every save
#: interval of the run's tail, −Δln L/Δlog₁₀t ≤ 5, i.e. no faster than L ∝ t^(−2.2).  The
#: channel_to_infinity session falls at 1.6 (L ∝ t^(−0.7)); exponential convergence
#: (L ∝ e^(−2λt)) exceeds any fixed rate once λt ≳ 1 (symmetry_saddle ends at 28).
CHANNEL_MAX_RATE = 5.0
#: ... over at least one decade of t at the end of the run when only the spectra say that
#: it is a channel (λmax is sampled ≈ 10 times per decade: a decade gives a growth rate from
#: ~10 spectra), and over PLATEAU_MIN_DECADES (a doubling of t) when a neuron pair does.
CHANNEL_MIN_DECADES = 1.0
#: ... with λmax still growing by this factor per decade at the end (the weights of the
#: pair diverge, so does the curvature across the channel).  The channel_to_infinity
#: session grows 1.8× per decade; converging runs' λmax settles (copy_or_average: +1.7 %
#: over its last decade, symmetry_saddle: decreasing).
CHANNEL_LMAX_TAIL_GROWTH = 1.25
#: λmax counts as non-decreasing (for the channel's onset) through dips of this fraction
#: (eigensolver and solver noise on a nearly constant λmax; the channel_to_infinity session
#: dips by 0.13 % once on its way from 1.7 to 53).  Step by step, so a slow decline passes
#: (the default problem with a student of width 2: 3.32 → 3.02 over t ∈ [0, 1] by < 1 %
#: per save): where the loss marks no onset the growth test below dates the channel.  The
#: same slack, against the running extreme, lets a channel pair's ε and |a_i − a_j| wobble
#: when the onset is read from the pair.
CHANNEL_LMAX_SLACK = 1e-2

KINDS = ("plateau", "descent", "channel", "converged")


@dataclass(frozen=True)
class Phase:
    """One stretch of a trajectory.

    Attributes:
        kind: "plateau" | "descent" | "channel" | "converged".
        t_start, t_end: its time span (phases in a list share their boundaries).
        loss: representative loss (a plateau's level, else the loss at ``t_end``).
        index: Hessian index of a spectrum recorded inside the phase, else None.
        note: one short human sentence.
        sure: False for a channel that only the spectra show (λmax grows) while no neuron
            pair passes the channel test: the note says "possibly"; not in :meth:`to_json`
            (the note carries it there).
    """

    kind: str
    t_start: float
    t_end: float
    loss: float
    index: int | None
    note: str
    sure: bool = True

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "t_start": json_float(self.t_start),
            "t_end": json_float(self.t_end),
            "loss": json_float(self.loss),
            "index": None if self.index is None else int(self.index),
            "note": self.note,
        }


# ---------------------------------------------------------------------------------------
# Detection


def detect_phases(
    t,
    loss,
    grad_norm,
    spectra: Sequence[tuple[float, Any]] = (),
    *,
    theta=None,
    spec=None,
    x=None,
    grad_tol: float | None = None,
) -> list[Phase]:
    """Phases of one trajectory, in time order (see the module docstring for the tests).

    Args:
        t: (m,) non-decreasing times, t ≥ 0 (t[0] may be 0).
        loss: (m,) L(θ(t)).
        grad_norm: (m,) ‖∇L(θ(t))‖∞.
        spectra: (t_i, eigenvalues_i (P,) ascending) recorded along the trajectory.
        theta: (m, P) states, optional; with ``spec`` the last finite state is checked for a
            channel pair (:func:`core.analysis.detect_channels`, one-hidden-layer nets).
        spec: the :class:`~core.networks.NetworkSpec` of ``theta``.
        x: (N, d) inputs for the channel check (default: a standard Gaussian sample,
            :func:`core.analysis.gaussian_sample`).
        grad_tol: the run's gradient tolerance; counts for convergence when it is looser
            than :data:`CONVERGED_GRAD_TOL`.

    Rows with a non-finite t, loss or gradient norm are ignored; of rows with equal t the
    last is kept.  Returns [] for an empty trajectory.  Raises ``ValueError`` naming the
    argument for mismatched shapes, negative or decreasing t.
    """
    m_in = int(np.asarray(t).shape[0]) if np.ndim(t) else 0
    tt, ll, gg, keep = _clean(t, loss, grad_norm)
    if theta is not None and spec is not None:
        shape = np.shape(theta)
        if shape != (m_in, spec.n_params):
            raise ValueError(
                f"detect_phases: theta must have shape ({m_in}, {spec.n_params}), got {shape}"
            )
    n = tt.shape[0]
    if n == 0:
        return []
    tol = max(CONVERGED_GRAD_TOL, float(grad_tol) if grad_tol is not None else 0.0)
    spec_rows = _spectra_rows(spectra, tt)

    if n == 1:
        if gg[0] <= tol:
            return [_converged(tt, ll, gg, 0, 0, spec_rows)]
        return []

    first = 1 if tt[0] == 0.0 else 0  # rows [first, n) lie on the log axis
    u = np.full(n, -np.inf)
    u[first:] = np.log10(tt[first:])

    plateaus = _plateau_stretches(ll, gg, u, first, spec_rows, tol)
    if plateaus and first == 1 and plateaus[0][0] == 1 and _flat(ll[0 : plateaus[0][1] + 1]):
        plateaus[0] = (0, plateaus[0][1])  # the t = 0 row sits on the first plateau

    last_end = plateaus[-1][1] if plateaus else 0
    tail: Phase | None = _channel(tt, ll, gg, u, spectra, spec_rows, theta, keep, spec, x, last_end)
    if tail is None and gg[-1] <= tol:
        c = n - 1
        while c > last_end and gg[c - 1] <= tol:
            c -= 1
        c = min(c, _flat_tail_start(ll, last_end))
        tail = _converged(tt, ll, gg, c, n - 1, spec_rows)

    phases: list[Phase] = []
    cursor = 0  # row where the next phase may start
    for i, j in plateaus:
        if i > cursor:
            phases.extend(_descent(tt, ll, gg, cursor, i, spec_rows))
        phases.append(_plateau(tt, ll, gg, i, j, spec_rows))
        cursor = j
    end = n - 1
    if tail is not None:
        end = int(np.searchsorted(tt, tail.t_start))
    if end > cursor:
        phases.extend(_descent(tt, ll, gg, cursor, end, spec_rows))
    if tail is not None:
        phases.append(tail)
    return phases


def session_phases(session) -> list[Phase]:
    """Phases of every segment of a :class:`core.session.Session`, in time order.

    Each segment (one student spec; surgery starts a new one) is analysed on its own with
    its spectra and its states (for the channel check, over the session's finite data when
    its config can be rebuilt, else a Gaussian sample); the convergence tolerance honours
    the config's ``dynamics.grad_tol``.  The flow is autonomous, so a segment that starts
    after surgery at t₀ is analysed on the log of the time since then, log₁₀(t − t₀) (a
    plateau lasting 20 time units after surgery at t₀ = 100 spans 0.08 decade of t but three
    of t − t₀); its phases are reported at the session's times t.
    """
    x = _session_inputs(session)
    grad_tol = float(session.config.dynamics.grad_tol)
    out: list[Phase] = []
    for k, seg in enumerate(session.segments):
        t0 = float(session.segments[k - 1].t[-1]) if k > 0 else 0.0
        t = np.asarray(seg.t, dtype=np.float64)
        since = np.maximum(t - t0, 0.0)
        spectra = [(s.t - t0, s.eigenvalues) for s in session.spectra if s.segment == k]
        phases = detect_phases(
            since,
            seg.loss,
            seg.grad_norm,
            spectra,
            theta=seg.theta,
            spec=seg.spec,
            x=x,
            grad_tol=grad_tol,
        )
        if t0 > 0:

            def back(v: float, since=since, t=t) -> float:
                return float(t[min(int(np.searchsorted(since, v)), t.size - 1)])

            phases = [
                dataclasses.replace(p, t_start=back(p.t_start), t_end=back(p.t_end)) for p in phases
            ]
        out.extend(phases)
    handover = _handover_phase(session, out)
    if handover is not None:
        if out and out[-1].kind == "channel":
            # The tail's slow fall looked like a channel only because the trajectory stops
            # at the hand-over; the driver hands over only where λmax has settled and the
            # Hessian is positive definite, which a channel (λmax ~ 1/ε²) never passes.
            tail = out.pop()
            if out and out[-1].kind == "descent":
                # the merged phase's least-‖∇L‖ row lies in the tail (‖∇L‖ falls into the
                # basin), so its index is the tail's: the rule of detect_phases for one phase
                head = out[-1].note.rsplit(" to ", 1)[0]
                out[-1] = dataclasses.replace(
                    out[-1], t_end=tail.t_end, loss=tail.loss, index=tail.index,
                    note=f"{head} to {tail.loss:.3g}",
                )  # fmt: skip
            else:
                out.append(dataclasses.replace(tail, kind="descent", note="slow descent"))
        out.append(handover)
    return out


def _handover_phase(session, phases: list[Phase]) -> Phase | None:
    """The "converged" phase of a run that core.fixed_point handed over to refinement.

    The driver hands over only once the flow has entered the basin of the point that
    refinement then lands on (Hessian positive definite at two checks, the refined point
    inside the flow's quadratic model), so the flow's end point is that refined point:
    the trajectory stops before ‖∇L‖∞ reaches the tolerance by itself, and the run's
    convergence is dated at the hand-over.  None when the run was not handed over, the
    refinement did not converge, or the trajectory already ends converged.
    """
    refined = session.refined or {}
    last = len(session.segments) - 1
    if not (refined.get("handed_over") and refined.get("converged")):
        return None
    if refined.get("segment", last) != last or (phases and phases[-1].kind == "converged"):
        return None
    t = float(refined.get("t", session.segments[-1].t[-1]))
    index = None
    at_refined = [sp for sp in session.spectra if sp.label == "refined" and sp.segment == last]
    if at_refined:
        ev = np.asarray(at_refined[-1].eigenvalues, dtype=np.float64)
        tol = default_eigen_tol(float(np.max(np.abs(ev))), ev.size) if ev.size else 0.0
        index = int(np.sum(ev < -tol))
    loss = float(refined.get("loss", float("nan")))
    grad = refined.get("grad_inf_norm")
    exact = f" (‖∇L‖∞ = {float(grad):.1e})" if grad is not None else ""
    note = f"handed over to refinement at t ≈ {t:.3g}: the flow's end point, L = {loss:.4g}{exact}"
    return Phase("converged", t, t, loss, index, note)


# ---------------------------------------------------------------------------------------
# Pieces


def _clean(t, loss, grad_norm) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Finite rows, last of equal times: (t, L, g, indices of the kept rows in the input)."""
    arrays = []
    for name, a in (("t", t), ("loss", loss), ("grad_norm", grad_norm)):
        arr = np.asarray(a, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"detect_phases: {name} must be 1-D, got shape {arr.shape}")
        arrays.append(arr)
    tt, ll, gg = arrays
    if not (tt.shape == ll.shape == gg.shape):
        raise ValueError(
            f"detect_phases: t, loss and grad_norm must have one length, got "
            f"{tt.shape[0]}, {ll.shape[0]}, {gg.shape[0]}"
        )
    ok = np.isfinite(tt) & np.isfinite(ll) & np.isfinite(gg)
    idx = np.flatnonzero(ok)
    tt = tt[idx]
    if tt.size and tt[0] < 0:
        raise ValueError(f"detect_phases: t must be ≥ 0, got t = {tt[0]}")
    if np.any(np.diff(tt) < 0):
        raise ValueError("detect_phases: t must be non-decreasing")
    last_of_equal = np.append(tt[1:] != tt[:-1], True) if tt.size else np.zeros(0, bool)
    idx = idx[last_of_equal]
    return tt[last_of_equal], ll[idx], gg[idx], idx


def _flat(values: np.ndarray) -> bool:
    """max − min ≤ PLATEAU_FLAT_REL · max|value| (all exactly equal when that is 0)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    return hi - lo <= PLATEAU_FLAT_REL * max(abs(lo), abs(hi))


def _flat_ends(loss: np.ndarray) -> np.ndarray:
    """J (m,): J[i] is the last row j ≥ i such that rows [i, j] are flat (:func:`_flat`).

    J is non-decreasing (a part of a flat stretch is flat), so two pointers with monotone
    queues of the running max and min find it in O(m).
    """
    n = loss.shape[0]
    ends = np.empty(n, dtype=np.int64)
    qmax: deque[int] = deque()
    qmin: deque[int] = deque()
    j = -1
    for i in range(n):
        while qmax and qmax[0] < i:
            qmax.popleft()
        while qmin and qmin[0] < i:
            qmin.popleft()
        if j < i:
            j = i
            qmax.append(i)
            qmin.append(i)
        while j + 1 < n:
            v = loss[j + 1]
            hi, lo = max(loss[qmax[0]], v), min(loss[qmin[0]], v)
            if hi - lo > PLATEAU_FLAT_REL * max(abs(lo), abs(hi)):
                break
            j += 1
            while qmax and loss[qmax[-1]] <= v:
                qmax.pop()
            qmax.append(j)
            while qmin and loss[qmin[-1]] >= v:
                qmin.pop()
            qmin.append(j)
        ends[i] = j
    return ends


def _flat_tail_start(loss: np.ndarray, start: int) -> int:
    """The first row r ≥ ``start`` such that rows [r, m) are flat (m − 1 at worst)."""
    hi = np.maximum.accumulate(loss[::-1])[::-1]
    lo = np.minimum.accumulate(loss[::-1])[::-1]
    ok = hi - lo <= PLATEAU_FLAT_REL * np.maximum(np.abs(lo), np.abs(hi))
    ok[:start] = False
    ok[-1] = True
    return int(np.argmax(ok))


def _plateau_stretches(loss, g, u, first, spec_rows, tol) -> list[tuple[int, int]]:
    """Disjoint plateaus [i, j] (inclusive rows), left to right.

    A candidate starts at row i ≥ ``first`` (on the log axis) and extends as far as the loss
    stays flat; it needs PLATEAU_MIN_DECADES of log t and :func:`_is_plateau`.  After a
    plateau the search resumes behind it, after a rejected candidate at the next row (so a
    flat approach that is not itself a plateau cannot swallow the start of one).
    """
    n = loss.shape[0]
    ends = _flat_ends(loss)
    rows = np.arange(n)
    long = (rows >= first) & (u[ends] - np.where(rows >= first, u, 0.0) >= PLATEAU_MIN_DECADES)
    # next_long[r]: first row ≥ r that starts a long flat stretch (n − 1 when none)
    next_long = np.full(n + 1, n - 1, dtype=np.int64)
    for r in range(n - 1, -1, -1):
        next_long[r] = r if long[r] else next_long[r + 1]
    out: list[tuple[int, int]] = []
    i = first
    while i < n - 1:
        if long[i]:
            j = int(ends[i])
            nxt = int(next_long[j + 1]) if j + 1 < n else n - 1
            if _is_plateau(loss, g, i, j, nxt, n, spec_rows, tol, out):
                out.append((i, j))
                i = j + 1
                continue
        i += 1
    return out


def _is_plateau(loss, g, i, j, nxt, n, spec_rows, tol, plateaus) -> bool:
    """Whether the flat stretch [i, j] is a plateau (see the module docstring).

    ``nxt``: first row of the next flat stretch (or the last row).  A stretch that reaches
    the end of the run is a plateau only if the escape has begun inside it (‖∇L‖∞ rose by
    PLATEAU_GRAD_RISE), or if the flow fell into it (‖∇L‖∞ fell by that factor since the
    last plateau) and a spectrum in it shows a saddle (index ≥ 1) while ‖∇L‖∞ > tol.
    """
    k = i + int(np.argmin(g[i : j + 1]))
    g_min = float(g[k])
    if j < n - 1:
        g_after = float(np.max(g[k : nxt + 1]))
        dropped = float(np.min(loss[j + 1 :])) < float(np.min(loss[i : j + 1])) - (
            PLATEAU_FLAT_REL * abs(float(np.min(loss[i : j + 1])))
        )
        return dropped and g_after > PLATEAU_GRAD_RISE * g_min
    if float(np.max(g[k : j + 1])) > PLATEAU_GRAD_RISE * g_min:
        return True
    start = plateaus[-1][1] if plateaus else 0
    fell = float(np.max(g[start : k + 1])) > PLATEAU_GRAD_RISE * g_min
    index = _index_near(spec_rows, i, j, k)
    return fell and index is not None and index >= 1 and float(g[-1]) > tol


def _channel(tt, ll, gg, u, spectra, spec_rows, theta, keep, spec, x, last_end) -> Phase | None:
    """The trailing channel phase, or None (criteria: CHANNEL_* and the module docstring)."""
    n = tt.shape[0]
    s = n - 1
    # edge: the walk-back stopped at a fast fall or a plateau (something else precedes the
    # slow tail) rather than at the run's first logged state (slow from the start)
    edge = False
    while s - 1 >= max(last_end, 0) and np.isfinite(u[s - 1]):
        a, b = ll[s - 1], ll[s]
        if not (a > 0 and b > 0):
            edge = True
            break
        rate = -(math.log(b) - math.log(a)) / (u[s] - u[s - 1])
        if abs(rate) > CHANNEL_MAX_RATE:
            edge = True
            break
        s -= 1
    edge = edge or s == last_end > 0
    if s == n - 1 or not (ll[s] - ll[-1] > PLATEAU_FLAT_REL * abs(ll[s])):
        return None

    pair = _channel_pair(theta, keep, spec, x)
    lmax = [
        (float(ts), float(np.max(ev)))
        for ts, ev in _finite_spectra(spectra)
        if tt[s] <= ts <= tt[-1] and ts > 0
    ]
    lmax.sort(key=lambda p: p[0])
    if u[-1] - u[s] < (PLATEAU_MIN_DECADES if pair is not None else CHANNEL_MIN_DECADES):
        return None
    if pair is None and not _lmax_grows_before(lmax, float(tt[-1])):
        return None
    onset_t = tt[s]
    if lmax:
        m = len(lmax) - 1
        while m > 0 and lmax[m - 1][1] <= lmax[m][1] * (1 + CHANNEL_LMAX_SLACK):
            m -= 1
        onset_t = max(onset_t, lmax[m][0])
    if not edge:
        # The loss fell slowly from the start, so it marks no boundary: date the channel by
        # its own evidence, and what comes before is a descent.
        if pair is not None:
            onset_t = max(onset_t, _pair_onset(theta, keep, spec, pair, tt))
        else:
            onset_t = max(onset_t, _lmax_growth_onset(lmax))
        if u[-1] - math.log10(onset_t) < PLATEAU_MIN_DECADES:
            return None
    r0 = int(np.searchsorted(tt, onset_t))
    r0 = min(r0, n - 1)
    k = r0 + int(np.argmin(gg[r0:]))
    index = _index_near(spec_rows, r0, n - 1, k)
    if pair is not None:
        why = f"the output weights of neurons {pair[0]} and {pair[1]} diverge"
        note = f"channel to infinity: L falls slowly to {ll[-1]:.3g} while {why}"
        return Phase("channel", float(tt[r0]), float(tt[-1]), float(ll[-1]), index, note)
    # the spectra were the evidence (so there are some); no pair confirms it
    grown = [lm for ts, lm in lmax if ts >= tt[r0]] or [lmax[-1][1]]
    note = (
        f"possibly a channel to infinity: L falls slowly to {ll[-1]:.3g} while λmax grows "
        f"{grown[0]:.3g} → {grown[-1]:.3g}, but no neuron pair passes the channel test"
    )
    return Phase("channel", float(tt[r0]), float(tt[-1]), float(ll[-1]), index, note, sure=False)


def _lmax_grows_before(lmax: list[tuple[float, float]], t_end: float) -> bool:
    """The spectra's channel test as if the run ended at ``t_end``: over the
    CHANNEL_MIN_DECADES before it (recorded spectra spanning at least half of that), λmax
    grew by CHANNEL_LMAX_TAIL_GROWTH or more per decade.  ``lmax``: (t > 0, λmax) sorted."""
    lo = math.log10(t_end) - CHANNEL_MIN_DECADES
    tail = [(ts, lm) for ts, lm in lmax if ts <= t_end and math.log10(ts) >= lo]
    if len(tail) < 2 or not (tail[0][1] > 0 and tail[-1][1] > 0):
        return False
    du = math.log10(tail[-1][0]) - math.log10(tail[0][0])
    if du < 0.5 * CHANNEL_MIN_DECADES:
        return False
    return math.log(tail[-1][1] / tail[0][1]) / du >= math.log(CHANNEL_LMAX_TAIL_GROWTH)


def _lmax_growth_onset(lmax: list[tuple[float, float]]) -> float:
    """The earliest spectrum time from which on :func:`_lmax_grows_before` holds at every
    recorded spectrum: from there the run, stopped at any later time, would already be
    called a channel by its spectra (the last spectrum's time when only that one passes)."""
    m = len(lmax) - 1
    while m > 0 and _lmax_grows_before(lmax, lmax[m - 1][0]):
        m -= 1
    return lmax[m][0]


def _pair_onset(theta, keep, spec, pair: tuple[int, int], tt: np.ndarray) -> float:
    """Where the pair (i, j) entered its channel: the start of the final stretch of states
    from which on ε = ½‖w̃_i − w̃_j‖ never again exceeds its value and |a_i − a_j| never
    again falls below it (each within CHANNEL_LMAX_SLACK): the two neurons approach each
    other while their output weights diverge.  Times ``tt`` of the kept rows ``keep``."""
    from core.analysis import first_layer

    th = np.asarray(theta, dtype=np.float64)
    i, j = pair
    eps_max, da_min, onset = -math.inf, math.inf, float(tt[-1])
    for r in range(len(keep) - 1, -1, -1):
        if not np.all(np.isfinite(th[keep[r]])):
            break
        w1, b1, w2 = first_layer(spec, th[keep[r]])
        wt = w1 if b1 is None else np.concatenate([w1, b1[:, None]], axis=1)
        eps = 0.5 * float(np.linalg.norm(wt[i] - wt[j]))
        da = abs(float(w2[0, i] - w2[0, j]))
        if eps_max > eps * (1 + CHANNEL_LMAX_SLACK) or da_min < da * (1 - CHANNEL_LMAX_SLACK):
            break
        eps_max, da_min, onset = max(eps_max, eps), min(da_min, da), float(tt[r])
    return onset


def _channel_pair(theta, keep, spec, x) -> tuple[int, int] | None:
    """The first channel pair at the last finite state, when θ and a spec are given."""
    if theta is None or spec is None or not len(keep):
        return None
    from core.analysis import detect_channels, gaussian_sample

    th = np.asarray(theta, dtype=np.float64)  # shape checked by detect_phases
    rows = [r for r in keep[::-1] if np.all(np.isfinite(th[r]))]
    if not rows:
        return None
    xx = gaussian_sample(spec.input_dim) if x is None else x
    channels = detect_channels(spec, th[rows[0]], xx)
    return tuple(channels[0].neurons) if channels else None


def _plateau(tt, ll, gg, i, j, spec_rows) -> Phase:
    k = i + int(np.argmin(gg[i : j + 1]))
    index = _index_near(spec_rows, i, j, k)
    level = float(ll[k])
    if index is None:
        near = f"(‖∇L‖∞ down to {gg[k]:.1e})"
    elif index >= 1:
        near = f"near a saddle of index {index}"
    else:
        near = "near a critical point with no descent direction (index 0)"
    return Phase(
        "plateau", float(tt[i]), float(tt[j]), level, index, f"plateau at L ≈ {level:.3g} {near}"
    )


def _descent(tt, ll, gg, i, j, spec_rows) -> list[Phase]:
    """A descent over rows [i, j], or nothing when the loss did not fall over them."""
    if not (ll[i] - ll[j] > PLATEAU_FLAT_REL * abs(ll[i])):
        return []
    k = i + int(np.argmin(gg[i : j + 1]))
    note = f"descent from L ≈ {ll[i]:.3g} to {ll[j]:.3g}"
    return [
        Phase(
            "descent",
            float(tt[i]),
            float(tt[j]),
            float(ll[j]),
            _index_near(spec_rows, i, j, k),
            note,
        )
    ]


def _converged(tt, ll, gg, i, j, spec_rows) -> Phase:
    k = i + int(np.argmin(gg[i : j + 1]))
    index = _index_near(spec_rows, i, j, k)
    if index is None:
        what = "a critical point"
    elif index == 0:
        what = "a minimum"
    else:
        what = f"a saddle of index {index}"
    note = f"converged to {what} at L ≈ {ll[j]:.3g} (‖∇L‖∞ = {gg[j]:.1e})"
    return Phase("converged", float(tt[i]), float(tt[j]), float(ll[j]), index, note)


def _finite_spectra(spectra) -> list[tuple[float, np.ndarray]]:
    out = []
    for item in spectra:
        ts, ev = item[0], np.asarray(item[1], dtype=np.float64).reshape(-1)
        if math.isfinite(float(ts)) and ev.size and np.all(np.isfinite(ev)):
            out.append((float(ts), ev))
    return out


def _spectra_rows(spectra, tt: np.ndarray) -> list[tuple[int, float, int]]:
    """(row nearest in t, t, Morse index) per finite spectrum inside the trajectory's span."""
    out = []
    if not tt.size:
        return out
    for ts, ev in _finite_spectra(spectra):
        if not (tt[0] <= ts <= tt[-1]):
            continue
        r = int(np.searchsorted(tt, ts))
        if r > 0 and (r == tt.size or ts - tt[r - 1] < tt[r] - ts):
            r -= 1
        tol = default_eigen_tol(float(np.max(np.abs(ev))), ev.size)
        out.append((r, ts, int(np.sum(ev < -tol))))
    return out


def _index_near(spec_rows, i: int, j: int, k: int) -> int | None:
    """Index of the spectrum in rows [i, j] nearest to row k (ties: the later one given)."""
    best: tuple[int, int] | None = None
    for r, _, index in spec_rows:
        if i <= r <= j and (best is None or abs(r - k) <= best[0]):
            best = (abs(r - k), index)
    return None if best is None else best[1]


def _session_inputs(session):
    """The session's finite-data inputs (N, d), or None (infinite data / unbuildable)."""
    try:
        from core.problem import build_teacher, make_data

        data = make_data(session.config, build_teacher(session.config))
    except Exception:  # e.g. a teacher file gone: the channel check falls back to N(0, I)
        return None
    return None if data is None else np.asarray(data.x)


__all__ = [
    "CHANNEL_LMAX_SLACK",
    "CHANNEL_LMAX_TAIL_GROWTH",
    "CHANNEL_MAX_RATE",
    "CHANNEL_MIN_DECADES",
    "CONVERGED_GRAD_TOL",
    "KINDS",
    "PLATEAU_FLAT_REL",
    "PLATEAU_GRAD_RISE",
    "PLATEAU_MIN_DECADES",
    "Phase",
    "detect_phases",
    "session_phases",
]
