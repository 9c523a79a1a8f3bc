"""The in-memory session: its segments, spectrum snapshots and records, and its one error type.

A *segment* is a stretch of trajectory with one student spec: surgery (merging or
splitting neurons) changes P mid-session and starts a new segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Config
from core.files import one_line, short
from core.networks import NetworkSpec
from core.session.layout import SCHEMA_VERSION

#: Longest error message (values inside are cut to :data:`core.files.ECHO_CHARS`).
MAX_MESSAGE = 400


class SessionError(Exception):
    """A session that cannot be read or written; ``str()`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = one_line(path)
        self.message = short(" ".join(str(message).split()), MAX_MESSAGE)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Segment:
    """Trajectory with one student spec: t (m,), theta (m, P), loss (m,), grad_norm (m,)."""

    spec: NetworkSpec
    t: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass
class SpectrumSnapshot:
    """Hessian eigenvalues (P,), ascending, at time ``t`` in ``segment``; ``label``: "refined"…"""

    t: float
    segment: int
    eigenvalues: np.ndarray
    label: str = ""


@dataclass
class Session:
    """A loaded (or to-be-saved) session.  Its files: :mod:`core.session.layout`."""

    config: Config
    segments: list[Segment]
    spectra: list[SpectrumSnapshot] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    analysis: dict | None = None
    report: dict | None = None
    refined: dict | None = None
    refined_theta: np.ndarray | None = None
    created: str = ""
    saved: str = ""
    versions: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    path: Path | None = None
    #: a :class:`core.compare.Comparison` (``explorer compare``), or None
    comparison: Any = None

    @property
    def final_segment(self) -> Segment:
        return self.segments[-1]

    @property
    def final_spec(self) -> NetworkSpec:
        return self.segments[-1].spec

    @property
    def final_t(self) -> float:
        return float(self.segments[-1].t[-1])

    @property
    def final_theta(self) -> np.ndarray:
        return self.segments[-1].theta[-1]

    @property
    def final_loss(self) -> float:
        return float(self.segments[-1].loss[-1])

    @property
    def wall_seconds(self) -> float:
        return float(self.summary.get("wall_seconds", 0.0))
