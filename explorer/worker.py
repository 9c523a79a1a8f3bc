"""The bridge between core's chunked dynamics and the Textual UI.

The flow runs in a Textual thread worker; the functions here are what that
thread executes.  They talk back only through a ``post`` callable (the screen's
thread-safe ``post_message``), so they can also be driven without an app.

Messages (all :class:`textual.message.Message`):

* :class:`ChunkArrived` – one :class:`core.flow.Chunk` (t (m,), θ (m, P), loss (m,), …).
* :class:`SpectrumArrived` – Hessian eigenvalues at a snapshot (t, θ), at the run's
  deterministic spectrum times (:mod:`core.spectra`) and at the final state.
* :class:`FlowStopped` – the generator finished (reason) or was cancelled (paused).
* :class:`FlowFailed` – an exception in the thread; the UI keeps its last finite state.
* :class:`TaskDone` / :class:`TaskFailed` – a one-off job (refinement, inspection).

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


class ChunkArrived(Message):
    """A chunk of the trajectory from :func:`core.flow.run_dynamics`."""

    def __init__(self, chunk: Any, segment: int) -> None:
        super().__init__()
        self.chunk = chunk
        self.segment = segment


class SpectrumArrived(Message):
    """Sorted Hessian eigenvalues (P,) at time t, and the Spectrum object."""

    def __init__(self, t: float, spectrum: Any, segment: int) -> None:
        super().__init__()
        self.t = t
        self.spectrum = spectrum
        self.segment = segment


class FlowStopped(Message):
    """The flow worker ended: ``reason`` from the last chunk, or "paused"."""

    def __init__(self, reason: str, message: str, segment: int) -> None:
        super().__init__()
        self.reason = reason
        self.message = message
        self.segment = segment


class FlowFailed(Message):
    """The flow worker raised: a one-line error and the traceback text."""

    def __init__(self, error: str, details: str, segment: int) -> None:
        super().__init__()
        self.error = error
        self.details = details
        self.segment = segment


class TaskDone(Message):
    """A one-off background job (``kind``: "refine", "inspect", …) produced ``result``."""

    def __init__(self, kind: str, result: Any) -> None:
        super().__init__()
        self.kind = kind
        self.result = result


class TaskFailed(Message):
    """A one-off background job raised."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__()
        self.kind = kind
        self.error = error


def dynamics_settings(dynamics_cfg: Any, **overrides: Any) -> Any:
    """A :class:`core.flow.DynamicsSettings` from the config's dynamics table.

    Copies every field the two have in common (so new config keys flow through
    without touching the UI), then applies ``overrides``.
    """
    import dataclasses

    from core.flow import DynamicsSettings

    names = {f.name for f in dataclasses.fields(DynamicsSettings)}
    values = {}
    for name in names:
        if hasattr(dynamics_cfg, name):
            v = getattr(dynamics_cfg, name)
            if v is not None or name == "tauinv":
                values[name] = tuple(v) if isinstance(v, list) else v
    values.update(overrides)
    return DynamicsSettings(**values)


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
) -> None:
    """Run the dynamics, posting every chunk and the Hessian spectra along the run.

    Spectra come at the deterministic simulated times of :class:`core.spectra.SpectrumSchedule`
    (the same a headless run records, however fast the machine), plus the final state's.
    Stops when the generator is done or ``cancelled()`` turns true (pause); the
    generator is closed either way.  Exceptions are posted as :class:`FlowFailed`
    rather than raised, so the UI keeps its last finite state.
    """
    from core.analysis import hessian_spectrum
    from core.flow import run_dynamics, save_grid
    from core.spectra import SpectrumSchedule

    gen = run_dynamics(objective, np.asarray(theta0), settings, t0=t0, seed=seed)
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
                h = np.asarray(objective.hessian(theta))
                if np.all(np.isfinite(h)):
                    post(SpectrumArrived(float(chunk.t[-1]), hessian_spectrum(h), segment))
            if chunk.done:
                reason, message = chunk.reason or "done", chunk.message
                break
            if cancelled():
                break
    except Exception as exc:  # shown in the app; the run stays inspectable
        post(FlowFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc(), segment))
        return
    finally:
        gen.close()
    post(FlowStopped(reason, message, segment))


def run_task(kind: str, job: Callable[[], Any], post: Callable[[Message], Any]) -> None:
    """Run ``job()`` and post :class:`TaskDone` or :class:`TaskFailed`."""
    try:
        result = job()
    except Exception as exc:
        post(TaskFailed(kind, f"{type(exc).__name__}: {exc}"))
        return
    post(TaskDone(kind, result))


def one_hidden_layer(spec: Any) -> bool:
    """Whether neuron-level views (weights per neuron, inspector, surgery) apply."""
    return len(spec.widths) == 1


def neuron_weights(spec: Any, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-layer input weights W1 (k, d) (bias appended as a column if present) and |a| (k,).

    |a_i| = ‖W2[:, i]‖₂ (the output weight magnitude of neuron i).
    """
    from core.networks import unflatten

    p = unflatten(spec, np.asarray(theta))
    w = np.asarray(p["w1"])
    if spec.bias[0]:
        w = np.concatenate([w, np.asarray(p["b1"])[:, None]], axis=1)
    a = np.linalg.norm(np.asarray(p["w2"]), axis=0)
    return w, a


def closest_pair_distance(w: np.ndarray) -> float:
    """min_{i<j} ‖w_i − w_j‖₂ over the rows of w (k, d); NaN for k < 2."""
    k = w.shape[0]
    if k < 2:
        return float("nan")
    diff = w[:, None, :] - w[None, :, :]
    dist = np.sqrt(np.sum(diff * diff, axis=-1))
    return float(dist[np.triu_indices(k, 1)].min())


@dataclass
class Segment:
    """A stretch of the run with one network spec (surgery starts a new one)."""

    spec: Any
    t: list[np.ndarray] = field(default_factory=list)
    theta: list[np.ndarray] = field(default_factory=list)
    loss: list[np.ndarray] = field(default_factory=list)
    grad_norm: list[np.ndarray] = field(default_factory=list)

    def compact(self) -> None:
        """Join the chunk arrays into one per field, so repeated reads stay O(new data)."""
        if len(self.t) > 1:
            for name in ("t", "theta", "loss", "grad_norm"):
                setattr(self, name, [np.concatenate(getattr(self, name))])


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
    segments: list[Segment] = field(default_factory=list)
    spec_t: list[float] = field(default_factory=list)
    spec_min: list[float] = field(default_factory=list)
    spec_max: list[float] = field(default_factory=list)
    spectrum: Any = None
    a_t: list[float] = field(default_factory=list)
    a_abs: list[np.ndarray] = field(default_factory=list)
    pair_dist: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments.append(Segment(self.spec))

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
        if one_hidden_layer(self.spec):
            for ti, th in zip(chunk.t, theta, strict=True):
                if np.all(np.isfinite(th)):
                    w, a = neuron_weights(self.spec, th)
                    self.a_t.append(float(ti))
                    self.a_abs.append(a)
                    self.pair_dist.append(closest_pair_distance(w))

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
        self.segments.append(Segment(spec))
        self.a_t, self.a_abs, self.pair_dist = [], [], []
        self.spectrum = None

    def set_point(self, theta: np.ndarray, loss: float, grad_norm: float) -> None:
        """Move the current point (after refinement/perturbation) without advancing t."""
        self.theta = np.asarray(theta)
        self.loss = float(loss)
        self.grad_norm = float(grad_norm)

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


def rebuild_objective(problem: Any, objective: Any, spec: Any) -> Any:
    """The same loss (same data, same teacher) for a new student spec after surgery.

    Delegates to :func:`core.problem.make_objective`, so finite and infinite data are
    handled exactly as when the problem was built.
    """
    from core.problem import make_objective

    return make_objective(problem.config, spec, problem.teacher, problem.data)


def analysis_inputs(objective: Any, input_dim: int, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Inputs for channel detection: the data set, or a Gaussian sample for infinite data."""
    if objective.data is not None:
        return np.asarray(objective.data.x)
    from core.data import sample_inputs

    return np.asarray(sample_inputs("gaussian", n, input_dim, seed))


def elapsed_text(seconds: float) -> str:
    """Compact h:mm:ss / m:ss."""
    s = int(seconds)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
