"""Branching from a replay: the state at the cursor becomes a new live run.

In the replay screen, ``c`` ("continue from here") truncates the replayed session at the
cursor's saved state (:func:`core.branch.branch_session`: the record up to there, and
``summary.branched_from`` = source folder, t, segment, index) and opens a
:class:`~explorer.screens.run.RunScreen` on it, paused: space resumes the flow from there,
``r`` refines, ``x``/``m``/``e`` operate on neurons, ``s`` saves the branch as a new session
(its log starts with a "branch" event naming the source and t).  ``b`` goes back to the
replay.  The headless equivalent is ``explorer run CONFIG --resume SRC --from-t T``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.analysis import closest_pair_distance, hessian_spectrum, neuron_weights
from explorer.worker import RunState, Segment, one_hidden_layer


def branch_from_replay(replay: Any) -> Any:
    """Open a paused run screen on the replay's session truncated at its cursor; return it."""
    from core.branch import branch_session
    from explorer.screens.run import RunScreen

    s, j = replay.index[replay.position]
    session = branch_session(replay.session, at=(s, j), source=replay.session.path)
    screen = RunScreen(session.config, None, autostart=False, start=session)
    screen.show_clock = getattr(replay.app, "show_clock", True)
    replay.app.push_screen(screen)
    t = float(session.segments[-1].t[-1])
    replay.notify(f"branched at t={t:.4g}: space resumes, r refines, b goes back", timeout=4)
    return screen


def continue_session(problem: Any, session: Any) -> tuple[RunState, Any, Any]:
    """(RunState, SessionRecorder, objective) that continue ``session`` from its last state.

    The run state holds the session's whole record (so the plots show the history up to the
    branch point); the recorder continues it and logs a "branch" event at that t with the
    source folder (``summary.branched_from``).
    """
    from core.session import SessionRecorder

    final = session.segments[-1]
    spec = final.spec
    objective = problem.objective_for(spec)
    segments = [
        Segment(
            seg.spec,
            [np.asarray(seg.t)],
            [np.asarray(seg.theta)],
            [np.asarray(seg.loss)],
            [np.asarray(seg.grad_norm)],
        )
        for seg in session.segments
    ]
    run = RunState(spec, np.asarray(final.theta[-1]), segments=segments)
    run.t = float(final.t[-1])
    run.loss = float(final.loss[-1])
    run.grad_norm = float(final.grad_norm[-1])
    if one_hidden_layer(spec):
        for ti, th in zip(final.t, final.theta, strict=True):
            if np.all(np.isfinite(th)):
                w, a = neuron_weights(spec, th)
                run.a_t.append(float(ti))
                run.a_abs.append(a)
                run.pair_dist.append(closest_pair_distance(w))
    last, current = len(session.segments) - 1, None
    for snap in session.spectra:
        ev = np.asarray(snap.eigenvalues)
        if ev.size:
            run.spec_t.append(float(snap.t))
            run.spec_min.append(float(ev[0]))
            run.spec_max.append(float(ev[-1]))
            if snap.segment == last:
                current = ev
    if current is not None:  # the spectrum shown: the last one of the final segment
        run.spectrum = hessian_spectrum(np.diag(current))
    recorder = SessionRecorder.from_session(session)
    origin = session.summary.get("branched_from", {})
    recorder.add_event("branch", t=run.t, source=str(origin.get("session", "")))
    return run, recorder, objective
