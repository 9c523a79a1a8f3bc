"""Messages from the app's worker threads to its screens (Textual dataclass messages).

The flow worker (:func:`explorer.worker.stream_flow`) posts, for one flow ``segment``:

* :class:`ChunkArrived` – one :class:`core.flow.Chunk` (t (m,), θ (m, P), loss (m,), …);
* :class:`SpectrumArrived` – the Hessian :class:`core.analysis.Spectrum` at a recorded time t;
* :class:`FlowStopped` – the generator finished (reason) or was cancelled ("paused");
* :class:`FlowFailed` – an exception in the thread; the UI keeps its last finite state.

One-off jobs (:func:`explorer.worker.run_task`) post one message type per job when they
succeed — :class:`BuildDone`, :class:`InspectDone`, :class:`RefineDone`,
:class:`SurgeryDone` — and :class:`TaskFailed` (naming the job) when they raise.  A screen
handles each with its own ``on_<name>`` method; nothing dispatches on strings.  The sweep
screen's loader posts :class:`SessionLoaded`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass(eq=False)
class ChunkArrived(Message):
    """A chunk of the trajectory from :func:`core.flow.run_dynamics`."""

    chunk: Any
    segment: int


@dataclass(eq=False)
class SpectrumArrived(Message):
    """The Hessian spectrum (a :class:`core.analysis.Spectrum`, eigenvalues (P,)) at time t."""

    t: float
    spectrum: Any
    segment: int


@dataclass(eq=False)
class FlowStopped(Message):
    """The flow worker ended: ``reason`` from the last chunk, or "paused"."""

    reason: str
    message: str
    segment: int


@dataclass(eq=False)
class FlowFailed(Message):
    """The flow worker raised: a one-line error and the traceback text."""

    error: str
    details: str
    segment: int


@dataclass(eq=False)
class BuildDone(Message):
    """The problem was built from the config (and, for a run, evaluated at θ₀)."""

    problem: Any
    loss: float = math.nan
    grad_norm: float = math.nan


@dataclass(eq=False)
class InspectDone(Message):
    """A :class:`core.analysis.Inspection` of one point."""

    inspection: Any


@dataclass(eq=False)
class RefineDone(Message):
    """A :class:`core.refine.RefineResult`, the Hessian spectrum at its point and its class."""

    result: Any
    spectrum: Any
    classification: str


@dataclass(eq=False)
class CompareDone(Message):
    """A :class:`core.compare.Comparison`: flow vs GD/SGD/Adam from the run's θ₀."""

    comparison: Any


@dataclass(eq=False)
class SurgeryDone(Message):
    """Surgery ``op`` ("merge" | "split" | "perturb") with ``params`` produced a new point.

    ``spec``/``objective`` are the (possibly new) network and loss; ``theta`` (P,) the
    point, with its ``loss`` and ‖∇L‖∞ ``grad_norm``.
    """

    op: str
    params: dict = field(default_factory=dict)
    spec: Any = None
    objective: Any = None
    theta: Any = None
    loss: float = math.nan
    grad_norm: float = math.nan


@dataclass(eq=False)
class TaskFailed(Message):
    """A one-off ``job`` ("build", "inspect", "refine", "surgery") raised ``error``."""

    job: str
    error: str


@dataclass(eq=False)
class SessionLoaded(Message):
    """A sweep run's session was loaded (``session``), or failed to (``error``)."""

    run: str
    session: Any = None
    error: str = ""


@dataclass(eq=False)
class NarrationDone(Message):
    """A :class:`core.narration.Narration` for the narration line (or, when it could not be
    computed, ``narration=None`` and a one-line ``error``)."""

    narration: Any
    error: str = ""
