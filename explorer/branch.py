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

from explorer.worker import RunState, session_state


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
    objective = problem.objective_for(final.spec)
    run = session_state(session, len(session.segments) - 1, len(final) - 1)
    recorder = SessionRecorder.from_session(session)
    origin = session.summary.get("branched_from", {})
    recorder.add_event("branch", t=run.t, source=str(origin.get("session", "")))
    return run, recorder, objective
