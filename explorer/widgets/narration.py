"""The narration line of the run and replay screens: what the flow is doing, in words.

:class:`NarrationLine` shows one or two lines of :func:`core.narration.narrate`.  It never
computes them itself: every ``TICK_SECONDS`` it asks its screen for a job
(``source() -> (key, fn) | None``), and when the key is new and no job is in flight it runs
``fn`` in a thread worker; ``fn`` returns a :class:`~explorer.messages.NarrationDone`
that the widget shows.  The job builders here — :func:`replay_job` (the replay cursor's
state) and :func:`run_job` (a live run's latest state, throttled by the caller's key) —
only gather references to the screen's arrays on the main thread; the analysis
(:func:`core.narration.narrate_state`) runs in the worker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from textual.widgets import Static

from explorer.messages import NarrationDone

#: How often the widget asks its screen for a new job (seconds).
TICK_SECONDS = 0.25
#: While a flow runs, a new narration at most this often (seconds): the analysis of one
#: state costs ~10–50 ms (channel check over the data, teacher matching), and a line that
#: changes faster than it can be read helps nobody.
LIVE_SECONDS = 2.0

Job = tuple[Any, Callable[[], NarrationDone]]


class NarrationLine(Static):
    """One or two lines of narration (layout in app.tcss: ``#narration``).

    ``source``: a callable returning ``(key, fn)`` — ``fn()`` computes a
    :class:`NarrationDone` off the event loop — or None when there is nothing to narrate.
    A job runs only when its key differs from the last one started.
    """

    #: False hides the line and starts no jobs (app tests whose frames must not depend on
    #: when a worker finishes turn it off; see tests/conftest.py).
    enabled = True

    def __init__(self, source: Callable[[], Job | None], **kwargs: Any) -> None:
        super().__init__("…", markup=False, **kwargs)
        self.source = source
        self.narration: Any = None  # the last core.narration.Narration shown
        self._key: Any = object()
        self._busy = False

    def on_mount(self) -> None:
        self.display = self.enabled
        if self.enabled:
            self.set_interval(TICK_SECONDS, self.tick)

    def tick(self) -> None:
        """Start the screen's job when its key is new and none is in flight."""
        if self._busy:
            return
        job = self.source()
        if job is None or job[0] == self._key:
            return
        self._key, fn = job
        self._busy = True
        self.run_worker(lambda: self._run(fn), thread=True, group="narration", exit_on_error=False)

    def _run(self, fn: Callable[[], NarrationDone]) -> None:
        try:
            message = fn()
        except Exception as exc:  # shown, never fatal: the narration is a commentary
            message = NarrationDone(None, f"(no narration: {type(exc).__name__}: {exc})")
        self.post_message(message)

    def on_narration_done(self, message: NarrationDone) -> None:
        self._busy = False
        if message.narration is not None:
            self.narration = message.narration
            self.update(message.narration.text)
        else:
            self.update(message.error)
        message.stop()


# -- jobs ----------------------------------------------------------------------------------


def replay_job(screen: Any) -> Job | None:
    """The narration at a :class:`~explorer.screens.replay.ReplayScreen`'s cursor.

    Key: the cursor position (recomputed when it moves; needs the rebuilt problem).
    """
    problem = screen.problem
    if problem is None:
        return None
    session = screen.session
    position = screen.position
    s, j = screen.index[position]
    seg = session.segments[s]
    t = float(seg.t[j])
    phases = list(screen._session_phases())
    eig = None
    for snap in session.spectra:
        if snap.segment == s and snap.t <= t and snap.label != "refined":
            eig = snap.eigenvalues
    at_refined = session.refined is not None and (s, j) == (
        len(session.segments) - 1,
        len(seg) - 1,
    )
    hist_t = np.concatenate([np.asarray(g.t) for g in session.segments])
    hist_l = np.concatenate([np.asarray(g.loss) for g in session.segments])
    loss0 = float(session.segments[0].loss[0])

    def fn() -> NarrationDone:
        from core.narration import narrate_state

        objective = problem.objective_for(seg.spec)
        refined = (
            _refined(session.refined, session.summary, session.spectra) if at_refined else None
        )
        n = narrate_state(
            objective, problem.teacher, seg.t, seg.theta, seg.loss, seg.grad_norm, j,
            history_t=hist_t, history_loss=hist_l, phases=phases, eigenvalues=eig,
            refined=refined, loss0=loss0,
        )  # fmt: skip
        return NarrationDone(n)

    return position, fn


def run_job(screen: Any, now: float | None = None) -> Job | None:
    """The narration at a :class:`~explorer.screens.run.RunScreen`'s latest state.

    Key: the screen's data version, but while the flow runs a new key at most every
    LIVE_SECONDS (the version changes with every chunk).  The phases are those of the
    current segment (since the last surgery), detected in the worker.
    """
    run, problem = screen.run, screen.problem
    if run is None or problem is None or screen.objective is None:
        return None
    live = screen.state in ("compiling", "running", "pausing")
    now = time.monotonic() if now is None else now
    last = getattr(screen, "_narrated_at", -math.inf)
    if live and now - last < LIVE_SECONDS:
        return None
    key = screen._version
    t_seg, theta_seg = run.trajectory()
    if not t_seg.size:
        return None
    seg = run.segments[-1]
    loss_seg = np.concatenate(seg.loss)
    grad_seg = np.concatenate(seg.grad_norm)
    finite = np.flatnonzero(np.isfinite(loss_seg) & np.all(np.isfinite(theta_seg), axis=1))
    if not finite.size:
        return None
    j = int(finite[-1])
    _, hist_l = run.series("loss")
    k = len(run.segments) - 1  # the current segment (surgery starts a new one)
    t0 = float(np.concatenate(run.segments[k - 1].t)[-1]) if k > 0 else 0.0
    spectra = [
        (snap.t, np.asarray(snap.eigenvalues))
        for snap in (screen.recorder.spectra if screen.recorder is not None else [])
        if snap.segment == k and snap.label != "refined"
    ]
    grad_tol = float(screen.config.dynamics.grad_tol)
    eig = None if run.spectrum is None else np.asarray(run.spectrum.eigenvalues)
    refined = None
    rec = screen.recorder
    if rec is not None and rec.refined is not None and screen.last_refine is not None:
        r = rec.refined
        if r.get("t") == float(t_seg[j]) and r.get("segment", len(run.segments) - 1) == (
            len(run.segments) - 1
        ):
            refined = _refined(r, {}, [], index=int(screen.last_refine[1].index))
    objective, teacher = screen.objective, problem.teacher
    loss0 = float(hist_l[0]) if hist_l.size else None

    def fn() -> NarrationDone:
        from core.narration import narrate_state, segment_phases

        phases = segment_phases(t_seg, loss_seg, grad_seg, spectra, t0=t0, grad_tol=grad_tol)
        n = narrate_state(
            objective, teacher, t_seg, theta_seg, loss_seg, grad_seg, j,
            history_t=t_seg, history_loss=loss_seg, phases=phases, eigenvalues=eig,
            refined=refined, loss0=loss0,
        )  # fmt: skip
        return NarrationDone(n)

    if key == getattr(screen, "_narrated_key", None):
        return None
    screen._narrated_key, screen._narrated_at = key, now
    return key, fn


def _refined(r: dict, summary: dict, spectra: Any, index: int | None = None) -> Any:
    """A :class:`core.narration.Refined` from a session's ``refined`` record."""
    from core.analysis import hessian_spectrum
    from core.narration import Refined

    if index is None:
        for snap in spectra:
            if snap.label == "refined":
                index = hessian_spectrum(np.diag(np.asarray(snap.eigenvalues))).index
    kind = r.get("classification") or summary.get("classification") or "?"
    return Refined(
        float(r.get("t", math.nan)),
        float(r.get("loss", math.nan)),
        float(r.get("grad_inf_norm", math.nan)),
        bool(r.get("converged", False)),
        str(kind),
        index,
    )


class WatchPanel(Static):
    """A preset's "what to watch" text and demo keys (:mod:`explorer.watch`), hidden until
    :meth:`toggle` (the run screen's ``w``) or :meth:`show_for` (the setup screen, on
    loading a preset).  Layout in app.tcss: ``.watch``; class ``-shown`` displays it."""

    def __init__(self, explanation: Any = None, *, keys_first: bool = False, **kwargs: Any):
        super().__init__("", markup=False, classes="watch", **kwargs)
        self.explanation = explanation
        self.keys_first = keys_first
        if explanation is not None:
            self.update(explanation.render(keys_first))

    def show_for(self, explanation: Any) -> None:
        """Show ``explanation`` (an :class:`explorer.watch.Explanation`; None hides)."""
        self.explanation = explanation
        self.update("" if explanation is None else explanation.render(self.keys_first))
        self.set_class(explanation is not None, "-shown")

    def toggle(self) -> bool:
        """Show / hide; False (and nothing changes) when there is no explanation."""
        if self.explanation is None:
            return False
        self.toggle_class("-shown")
        return True
