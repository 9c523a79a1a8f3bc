"""The bridge between core's chunked dynamics and the Textual UI.

The flow runs in a Textual thread worker; the functions here are what that
thread executes.  They talk back only through a ``post`` callable (the screen's
thread-safe ``post_message``), so they can also be driven without an app.  The
messages are the dataclasses of :mod:`explorer.messages`.

:class:`RunState` is the UI-side record of a run (main thread only): the
trajectory so far, spectrum snapshots, and per-neuron weight summaries.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from textual.message import Message

from core.analysis import closest_pair_distance, neuron_weights
from explorer.messages import (
    ChunkArrived,
    FlowFailed,
    FlowStopped,
    RefineDone,
    SpectrumArrived,
    TaskFailed,
)


def stream_flow(
    objective: Any,
    theta0: np.ndarray,
    settings: Any,
    *,
    t0: float,
    seed: int,
    segment: int,
    post: Callable[[Message], Any],
    cancelled: Callable[[], bool],
    refine: Any = None,
) -> None:
    """Run the dynamics, posting every chunk and the Hessian spectra along the run.

    The flow is the headless runs' flow-to-fixed-point driver
    (:class:`core.fixed_point.FixedPointRun`, ``refine``: the config's ``[refine]`` table,
    default method "auto"); its refinement (the hand-over, or the one after the flow)
    arrives as :class:`explorer.messages.RefineDone` before :class:`FlowStopped`.

    Spectra come at the deterministic simulated times of :class:`core.spectra.SpectrumSchedule`
    (the same a headless run records, however fast the machine), plus the final state's.
    Stops when the generator is done or ``cancelled()`` turns true (pause); the
    generator is closed either way.  Exceptions are posted as :class:`FlowFailed`
    rather than raised, so the UI keeps its last finite state.
    """
    from core.analysis import hessian_spectrum
    from core.config import RefineConfig
    from core.fixed_point import FixedPointRun
    from core.flow import save_grid
    from core.spectra import SpectrumSchedule

    cfg = refine if refine is not None else RefineConfig()
    gen = FixedPointRun(
        objective, np.asarray(theta0), settings, t0=t0, seed=seed, method=cfg.method,
        gtol=cfg.gtol, max_iter=cfg.max_iter,
    )  # fmt: skip
    schedule = SpectrumSchedule(objective, save_grid(settings), t0=t0)
    reason, message = "paused", ""
    try:
        for chunk in gen:
            post(ChunkArrived(chunk, segment))
            last_t = None
            for t, spectrum in schedule.spectra(chunk):
                post(SpectrumArrived(t, spectrum, segment))
                last_t = t
            if chunk.done and len(chunk.t) and chunk.t[-1] != last_t:
                theta = np.asarray(chunk.theta[-1])
                from core.manifold import spectrum_hessian

                h = spectrum_hessian(objective, theta)  # Riemannian when constrained
                if np.all(np.isfinite(h)):
                    post(SpectrumArrived(float(chunk.t[-1]), hessian_spectrum(h), segment))
            if chunk.done:
                reason, message = chunk.reason or "done", chunk.message
                break
            if cancelled():
                break
        fixed = gen.result
        if fixed is not None and fixed.refine is not None:
            from core.analysis import analyze

            res = fixed.refine
            # The report's classification (core.runner.finish), channels included, as the
            # app's r: a channel refined "to a minimum" must still read "channel".
            point = res.theta if np.all(np.isfinite(np.asarray(res.theta))) else fixed.theta
            analysis = analyze(objective, point)
            post(RefineDone(res, analysis.spectrum, analysis.classification))
    except Exception as exc:  # shown in the app; the run stays inspectable
        post(FlowFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc(), segment))
        return
    finally:
        gen.close()
    post(FlowStopped(reason, message, segment))


def run_task(job: str, fn: Callable[[], Message], post: Callable[[Message], Any]) -> None:
    """Run ``fn()`` and post the message it returns, or :class:`TaskFailed` naming ``job``."""
    try:
        message = fn()
    except Exception as exc:
        post(TaskFailed(job, f"{type(exc).__name__}: {exc}"))
        return
    post(message)


def one_hidden_layer(spec: Any) -> bool:
    """Whether neuron-level views (weights per neuron, inspector, surgery) apply."""
    return len(spec.widths) == 1


@dataclass
class LiveSegment:
    """A stretch of the run on screen with one network spec (surgery starts a new one),
    kept as the chunk arrays that arrived (a saved :class:`core.session.Segment` is
    one chunk: :meth:`from_saved`)."""

    spec: Any
    t: list[np.ndarray] = field(default_factory=list)
    theta: list[np.ndarray] = field(default_factory=list)
    loss: list[np.ndarray] = field(default_factory=list)
    grad_norm: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def from_saved(cls, seg: Any) -> LiveSegment:
        """A saved segment (t (m,), theta (m, P), loss, grad_norm) as one chunk."""
        arrays = (seg.t, seg.theta, seg.loss, seg.grad_norm)
        return cls(seg.spec, *([np.asarray(a)] for a in arrays))

    def compact(self) -> None:
        """Join the chunk arrays into one per field, so repeated reads stay O(new data)."""
        if len(self.t) > 1:
            for name in ("t", "theta", "loss", "grad_norm"):
                setattr(self, name, [np.concatenate(getattr(self, name))])


def neuron_series(spec: Any, t: Any, theta: Any) -> tuple[list[float], list, list[float]]:
    """(t_i, |a| per neuron, closest-pair distance) at the finite states among rows
    (t (m,), θ (m, P)): the weights plot's series; empty unless one hidden layer."""
    out: tuple[list[float], list, list[float]] = ([], [], [])
    if not one_hidden_layer(spec):
        return out
    for ti, th in zip(t, theta, strict=True):
        if np.all(np.isfinite(th)):
            w, a = neuron_weights(spec, th)
            out[0].append(float(ti))
            out[1].append(a)
            out[2].append(closest_pair_distance(w))
    return out


@dataclass
class RunState:
    """Everything the run screen shows, accumulated on the main thread.

    Arrays are concatenated lazily; neuron summaries (|a_i|, closest pair) are
    computed per arriving chunk on its save points only.
    """

    spec: Any
    theta: np.ndarray
    t: float = 0.0
    loss: float = float("nan")
    grad_norm: float = float("nan")
    steps: int = 0
    steps_offset: int = 0  # solver steps of earlier flow segments (before a resume)
    wall: float = 0.0
    segments: list[LiveSegment] = field(default_factory=list)
    spec_t: list[float] = field(default_factory=list)
    spec_min: list[float] = field(default_factory=list)
    spec_max: list[float] = field(default_factory=list)
    spectrum: Any = None
    a_t: list[float] = field(default_factory=list)
    a_abs: list[np.ndarray] = field(default_factory=list)
    pair_dist: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments.append(LiveSegment(self.spec))

    def add_chunk(self, chunk: Any) -> None:
        """Append a chunk; keeps only finite states (θ, loss) as the current point."""
        if len(chunk.t) == 0:
            self.steps = self.steps_offset + int(chunk.steps)
            return
        seg = self.segments[-1]
        theta = np.asarray(chunk.theta)
        seg.t.append(np.asarray(chunk.t))
        seg.theta.append(theta)
        seg.loss.append(np.asarray(chunk.loss))
        seg.grad_norm.append(np.asarray(chunk.grad_norm))
        finite = np.isfinite(chunk.loss) & np.all(np.isfinite(theta), axis=1)
        if finite.any():
            last = int(np.nonzero(finite)[0][-1])
            self.theta = theta[last]
            self.t = float(chunk.t[last])
            self.loss = float(chunk.loss[last])
            self.grad_norm = float(chunk.grad_norm[last])
        self.steps = self.steps_offset + int(chunk.steps)
        self.wall = float(chunk.wall)
        a_t, a_abs, dist = neuron_series(self.spec, chunk.t, theta)
        self.a_t += a_t
        self.a_abs += a_abs
        self.pair_dist += dist

    def add_spectrum(self, t: float, spectrum: Any) -> None:
        """Record λ_min, λ_max at t and keep the current spectrum."""
        ev = np.asarray(spectrum.eigenvalues)
        if ev.size:
            self.spec_t.append(t)
            self.spec_min.append(float(ev[0]))
            self.spec_max.append(float(ev[-1]))
        self.spectrum = spectrum

    def new_segment(self, spec: Any, theta: np.ndarray) -> None:
        """Start a segment after surgery: a new spec and a jump in θ at the same t."""
        self.spec = spec
        self.theta = np.asarray(theta)
        self.segments.append(LiveSegment(spec))
        self.a_t, self.a_abs, self.pair_dist = [], [], []
        self.spectrum = None

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(t, values) over all segments for ``name`` in {"loss", "grad_norm"}."""
        for s in self.segments:
            s.compact()
        ts = [np.concatenate(s.t) for s in self.segments if s.t]
        vs = [np.concatenate(getattr(s, name)) for s in self.segments if s.t]
        if not ts:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(ts), np.concatenate(vs)

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """(t (m,), θ (m, P)) of the current segment."""
        seg = self.segments[-1]
        seg.compact()
        if not seg.t:
            return np.zeros(0), np.zeros((0, self.theta.shape[0]))
        return np.concatenate(seg.t), np.concatenate(seg.theta)


def session_state(
    session: Any,
    s: int,
    j: int,
    *,
    segments: list[LiveSegment] | None = None,
    neurons: tuple[list[float], list, list[float]] | None = None,
    spectrum: Callable[[int], Any] | None = None,
) -> RunState:
    """A :class:`RunState` of a saved session whose current point is state j of segment s
    (the replay's cursor; a branch's last state).

    The trajectory and the λmin/λmax series cover the whole session; θ, t, loss, ‖∇L‖∞,
    the per-neuron series (segment s's) and the spectrum (the last snapshot of segment s
    at or before t; none when it is empty) are those of the point.  A caller that asks
    often passes what it keeps: ``segments`` (:meth:`LiveSegment.from_saved` of each),
    ``neurons`` (:func:`neuron_series` of segment s) and ``spectrum`` (snapshot number
    → :class:`core.analysis.HessianSpectrum`).
    """
    seg = session.segments[s]
    if segments is None:
        segments = [LiveSegment.from_saved(x) for x in session.segments]
    state = RunState(seg.spec, np.asarray(seg.theta[j]), segments=segments)
    state.t = float(seg.t[j])
    state.loss = float(seg.loss[j])
    state.grad_norm = float(seg.grad_norm[j])
    a_t, a_abs, dist = neurons if neurons is not None else neuron_series(seg.spec, seg.t, seg.theta)
    state.a_t, state.a_abs, state.pair_dist = list(a_t), list(a_abs), list(dist)
    last = None
    for n, snap in enumerate(session.spectra):
        ev = np.asarray(snap.eigenvalues)
        if ev.size:
            state.spec_t.append(float(snap.t))
            state.spec_min.append(float(ev[0]))
            state.spec_max.append(float(ev[-1]))
        if snap.segment == s and snap.t <= state.t:
            last = n
    if last is not None and np.asarray(session.spectra[last].eigenvalues).size:
        state.spectrum = (spectrum or (lambda n: snapshot_spectrum(session, n)))(last)
    return state


def snapshot_spectrum(session: Any, n: int) -> Any:
    """The :class:`core.analysis.HessianSpectrum` of a session's stored snapshot n."""
    from core.analysis import hessian_spectrum

    return hessian_spectrum(np.diag(np.asarray(session.spectra[n].eigenvalues)))


def elapsed_text(seconds: float) -> str:
    """Compact h:mm:ss / m:ss."""
    s = int(seconds)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
