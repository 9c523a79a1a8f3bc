"""Branching: a new session that starts from a saved session's state at an earlier time.

A session is a record of the flow θ(t) (its save points, possibly in several segments after
surgery).  Branching at time T keeps the record up to the last saved state at or before T —
segments, spectra and events with t ≤ that time, in their order — and drops what belongs to
the rest of the run (later states and spectra, the refined point, the analysis and report of
the end point, the stop reason).  The branch's summary records where it came from::

    summary["branched_from"] = {"session": "<source folder>", "t": t_b, "segment": s, "index": j}

so a replay of the branch shows the source's history up to t_b and then whatever was done
from there (the flow resumed, a refinement, surgery).  The state is a saved one, exactly
(never an interpolation between saves): the flow is autonomous, so continuing it from
(θ_b, t_b) is the same dynamics the source followed from there, up to the solver's steps.

:func:`branch_point` picks the state; :func:`branch_session` builds the truncated session.
``explorer run CONFIG --resume SRC --from-t T`` (headless) and the replay screen's branch key
(the state at the cursor) both use them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.session import Segment, Session, now_iso


def branch_point(session: Session, t: float) -> tuple[int, int]:
    """(segment s, position j) of the last saved state with t_{s,j} ≤ ``t``.

    States at equal times (surgery keeps t) resolve to the later one, i.e. after the surgery.
    Raises ``ValueError`` naming ``from_t`` when t is not finite or precedes the first state.
    """
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"from_t must be a finite time, got {t}")
    best: tuple[int, int] | None = None
    for s, seg in enumerate(session.segments):
        times = np.asarray(seg.t, dtype=np.float64)
        j = int(np.searchsorted(times, t, side="right")) - 1
        if j >= 0:
            best = (s, j)
    if best is None:
        first = float(session.segments[0].t[0])
        raise ValueError(f"from_t = {t:g} is before the session's first state (t = {first:g})")
    return best


def branch_session(
    session: Session,
    t: float | None = None,
    *,
    at: tuple[int, int] | None = None,
    source: str | Path | None = None,
) -> Session:
    """The session truncated at the state :func:`branch_point` (t) picks, or at ``at`` = (s, j).

    Returns a new :class:`~core.session.Session` (arrays are copies; ``path`` None) whose last
    state is that one, with ``summary = {"branched_from": {...}}`` (see the module docstring;
    ``source`` defaults to ``session.path``).  The caller records the "branch" event itself
    when it continues the run (so the event carries the run's own wall time).
    """
    if at is None:
        if t is None:
            raise ValueError("branch_session needs t or at")
        at = branch_point(session, t)
    s, j = at
    if not (0 <= s < len(session.segments) and 0 <= j < len(session.segments[s])):
        raise ValueError(f"branch point {at} is outside the session")
    segments: list[Segment] = []
    for k, seg in enumerate(session.segments[: s + 1]):
        stop = j + 1 if k == s else len(seg)
        segments.append(
            Segment(
                seg.spec,
                np.array(seg.t[:stop]),
                np.array(seg.theta[:stop]),
                np.array(seg.loss[:stop]),
                np.array(seg.grad_norm[:stop]),
            )
        )
    t_b = float(segments[-1].t[-1])
    spectra = [
        replace(snap, eigenvalues=np.array(snap.eigenvalues))
        for snap in session.spectra
        if snap.label != "refined" and (snap.segment < s or (snap.segment == s and snap.t <= t_b))
    ]
    events = [dict(e) for e in session.events if _event_before(e, t_b)]
    src = source if source is not None else session.path
    origin: dict[str, Any] = {
        "session": "" if src is None else str(src),
        "t": t_b,
        "segment": int(s),
        "index": int(j),
    }
    return Session(
        config=session.config,
        segments=segments,
        spectra=spectra,
        events=events,
        summary={"branched_from": origin},
        created=now_iso(),
        versions=dict(session.versions),
        path=None,
    )


def _event_before(event: dict, t_b: float) -> bool:
    """Events with a time at or before the branch point (timeless ones — e.g. the end-of-run
    "finish" — describe the source's end and are dropped)."""
    t = event.get("t")
    return isinstance(t, int | float) and not isinstance(t, bool) and float(t) <= t_b


__all__ = ["branch_point", "branch_session"]
