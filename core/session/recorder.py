"""Recording a run as it goes (trajectory chunks, events, spectra, results) in bounded memory.

Bounded size: :class:`SessionRecorder` keeps at most ``2·max_points`` states per
segment — the first, a log-spaced subsample in t − t_start and the last
``keep_last`` — and always the final state.  With the defaults (max_points = 2000)
a 10⁶-step run of a P = 17 network stores ≤ 4000 × (17 + 3) × 8 B ≈ 0.64 MB of
trajectory, whatever the number of steps.

The recorder is thread-safe (a signal watcher thread may save it while the main thread
computes), and :meth:`SessionRecorder.save` writes through :func:`core.session.save.save_session`,
so a run killed at any moment leaves its last save complete.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Config
from core.networks import NetworkSpec
from core.session.layout import jsonable, now_iso, versions
from core.session.model import Segment, Session, SpectrumSnapshot
from core.session.save import save_session


def subsample_indices(t: np.ndarray, n_log: int, n_last: int) -> np.ndarray:
    """Indices of a bounded subsample of a non-decreasing time series t (m,).

    Keeps index 0, the indices nearest to ``n_log`` log-spaced values of s = t − t[0] over
    (min positive s, s at the first of the last points], and the last ``n_last`` indices.
    Result is sorted and unique, of length ≤ 1 + n_log + n_last.
    """
    m = t.shape[0]
    if m <= 1 + n_log + n_last:
        return np.arange(m)
    head_end = m - n_last  # [0, head_end) is subsampled, [head_end, m) kept
    s = t[:head_end] - t[0]
    keep = [np.array([0]), np.arange(head_end, m)]
    pos = s[s > 0]
    if pos.size:
        targets = np.geomspace(pos.min(), s[-1], n_log)
        idx = np.clip(np.searchsorted(s, targets), 0, head_end - 1)
        # nearest of the two neighbours in log t
        left = np.clip(idx - 1, 0, head_end - 1)
        choose_left = np.abs(s[left] - targets) < np.abs(s[idx] - targets)
        keep.append(np.where(choose_left, left, idx))
    return np.unique(np.concatenate(keep))


def _locked(method: Callable) -> Callable:
    """Run a :class:`SessionRecorder` method under its lock (a signal watcher thread may
    save the recorder while the main thread is computing)."""

    @functools.wraps(method)
    def wrapper(self: SessionRecorder, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class _SegmentBuffer:
    def __init__(self, spec: NetworkSpec) -> None:
        self.spec = spec
        p = spec.n_params
        self.t = np.zeros(0)
        self.theta = np.zeros((0, p))
        self.loss = np.zeros(0)
        self.grad_norm = np.zeros(0)

    def append(self, t, theta, loss, grad_norm, max_points: int, keep_last: int) -> None:
        t = np.asarray(t, np.float64).reshape(-1)
        theta = np.asarray(theta, np.float64).reshape(t.shape[0], -1)
        if theta.shape[1] != self.spec.n_params:
            raise ValueError(
                f"theta has {theta.shape[1]} parameters, the current segment's spec has "
                f"{self.spec.n_params}; start a new segment after surgery"
            )
        loss = np.asarray(loss, np.float64).reshape(-1)
        grad_norm = np.asarray(grad_norm, np.float64).reshape(-1)
        if (
            len(self.t)
            and len(t)
            and t[0] == self.t[-1]
            and np.array_equal(theta[0], self.theta[-1])
        ):
            # the state already recorded (θ₀ saved before the first chunk repeats it)
            t, theta, loss, grad_norm = t[1:], theta[1:], loss[1:], grad_norm[1:]
        self.t = np.concatenate([self.t, t])
        self.theta = np.concatenate([self.theta, theta])
        self.loss = np.concatenate([self.loss, loss])
        self.grad_norm = np.concatenate([self.grad_norm, grad_norm])
        if self.t.shape[0] > 2 * max_points:
            idx = subsample_indices(self.t, max_points - keep_last - 1, keep_last)
            self.t, self.theta = self.t[idx], self.theta[idx]
            self.loss, self.grad_norm = self.loss[idx], self.grad_norm[idx]

    def segment(self) -> Segment:
        return Segment(
            self.spec, self.t.copy(), self.theta.copy(), self.loss.copy(), self.grad_norm.copy()
        )


class SessionRecorder:
    """Accumulates a run — trajectory chunks, events, spectra, results — and saves it.

    Usage::

        rec = SessionRecorder(config, spec)
        for chunk in run_dynamics(...):
            rec.append_chunk(chunk)
            rec.autosave(out_dir)          # at most every ``autosave_seconds``
        rec.add_event("refine", t=..., converged=True)
        rec.save(out_dir)

    Trajectories stay bounded (see the module docstring).  ``wall_seconds`` counts from
    construction plus ``wall_offset`` (time already spent in a resumed session).
    """

    def __init__(
        self,
        config: Config,
        spec: NetworkSpec,
        *,
        max_points: int = 2000,
        keep_last: int = 200,
        autosave_seconds: float = 10.0,
        created: str | None = None,
        wall_offset: float = 0.0,
    ) -> None:
        if max_points < keep_last + 10:
            raise ValueError(f"max_points must be ≥ keep_last + 10, got {max_points}")
        self.config = config
        self.max_points = max_points
        self.keep_last = keep_last
        self.autosave_seconds = autosave_seconds
        self.created = created or now_iso()
        self.wall_offset = wall_offset
        self._start = time.monotonic()
        self._last_save = -math.inf
        self._lock = threading.RLock()
        self._segments = [_SegmentBuffer(spec)]
        self.spectra: list[SpectrumSnapshot] = []
        self.events: list[dict] = []
        self.summary: dict = {}
        self.analysis: dict | None = None
        self.report: dict | None = None
        self.refined: dict | None = None
        self.refined_theta: np.ndarray | None = None
        self.comparison: Any = None  # core.compare.Comparison, kept as it is

    # -- building

    @classmethod
    def from_session(cls, session: Session, **kwargs: Any) -> SessionRecorder:
        """A recorder that continues ``session`` (same segments, events, spectra)."""
        rec = cls(
            session.config,
            session.segments[0].spec,
            created=session.created,
            wall_offset=session.wall_seconds,
            **kwargs,
        )
        rec._segments = []
        for seg in session.segments:
            buf = _SegmentBuffer(seg.spec)
            buf.append(seg.t, seg.theta, seg.loss, seg.grad_norm, rec.max_points, rec.keep_last)
            rec._segments.append(buf)
        rec.spectra = list(session.spectra)
        rec.events = [dict(e) for e in session.events]
        rec.summary = dict(session.summary)
        rec.comparison = session.comparison
        return rec

    @property
    def spec(self) -> NetworkSpec:
        """The current segment's student spec."""
        return self._segments[-1].spec

    @property
    def n_points(self) -> int:
        return sum(s.t.shape[0] for s in self._segments)

    def elapsed(self) -> float:
        """Wall seconds of this session so far (including a resumed session's)."""
        return self.wall_offset + time.monotonic() - self._start

    @_locked
    def append(self, t, theta, loss, grad_norm) -> None:
        """Append states: t (m,), theta (m, P), loss (m,), grad_norm (m,)."""
        self._segments[-1].append(t, theta, loss, grad_norm, self.max_points, self.keep_last)

    @_locked
    def append_chunk(self, chunk: Any) -> None:
        """Append a :class:`core.flow.Chunk` (its t, theta, loss, grad_norm)."""
        if len(chunk.t):
            self.append(chunk.t, chunk.theta, chunk.loss, chunk.grad_norm)
        self.summary["steps"] = int(self.summary.get("steps_offset", 0)) + int(chunk.steps)
        if chunk.done:
            self.summary["stop_reason"] = chunk.reason
            if chunk.message:
                self.summary["stop_message"] = chunk.message

    @_locked
    def start_segment(self, spec: NetworkSpec) -> None:
        """Begin a new segment with another student spec (after surgery)."""
        if len(self._segments[-1].t) == 0:
            self._segments[-1] = _SegmentBuffer(spec)
        else:
            self._segments.append(_SegmentBuffer(spec))

    @_locked
    def add_event(self, kind: str, t: float | None = None, **data: Any) -> dict:
        """Log an event (``kind`` e.g. "pause", "resume", "refine", "surgery", "interrupted")."""
        if t is None:
            t = self.last_t()
        event = {"kind": kind, "t": t, "wall": round(self.elapsed(), 3), "time": now_iso()}
        event.update(jsonable(data))
        self.events.append(jsonable(event))
        return event

    @_locked
    def add_spectrum(self, t: float, eigenvalues: Any, label: str = "") -> None:
        """Record Hessian eigenvalues (P,) of the current segment at time t ((F,), one per
        free dimension, for a constrained student: :func:`core.manifold.spectrum_size`)."""
        from core.manifold import spectrum_size

        eig = np.sort(np.asarray(eigenvalues, np.float64).reshape(-1))
        size = spectrum_size(self.config, self.spec)
        if eig.shape[0] != size:
            raise ValueError(f"spectrum has {eig.shape[0]} values, expected {size}")
        self.spectra.append(SpectrumSnapshot(float(t), len(self._segments) - 1, eig, label))

    @_locked
    def set_refined(self, theta: Any, **info: Any) -> None:
        """The refined critical point θ* (P,) of the current segment, with refine details."""
        theta = np.asarray(theta, np.float64).reshape(-1)
        if theta.shape[0] != self.spec.n_params:
            raise ValueError(
                f"refined θ has {theta.shape[0]} values, expected {self.spec.n_params}"
            )
        self.refined_theta = theta
        self.refined = {"segment": len(self._segments) - 1, **jsonable(info)}

    def last_t(self) -> float | None:
        for seg in reversed(self._segments):
            if len(seg.t):
                return float(seg.t[-1])
        return None

    # -- output

    @_locked
    def to_session(self) -> Session:
        segments = [b.segment() for b in self._segments]
        summary = dict(self.summary)
        summary["wall_seconds"] = round(self.elapsed(), 6)
        return Session(
            config=self.config,
            segments=segments,
            spectra=list(self.spectra),
            events=list(self.events),
            summary=summary,
            analysis=self.analysis,
            report=self.report,
            refined=self.refined,
            refined_theta=self.refined_theta,
            created=self.created,
            versions=versions(),
            comparison=self.comparison,
        )

    @_locked
    def save(self, path: str | Path) -> Path:
        """Atomically write the session to ``path`` (see :func:`save_session`)."""
        out = save_session(path, self.to_session())
        self._last_save = time.monotonic()
        return out

    def autosave(self, path: str | Path, force: bool = False) -> bool:
        """Save if ``autosave_seconds`` passed since the last save (or ``force``)."""
        if force or time.monotonic() - self._last_save >= self.autosave_seconds:
            self.save(path)
            return True
        return False
