"""Hessian spectra along a run, at deterministic simulated times.

A replay (and a live run) plots λ_min(t) and λ_max(t) of the Hessian H(θ(t)); for the
plot to show what a run does — a negative λ_min on a saddle's plateau, λ_max growing like
1/ε² in a channel — the spectra must sit at the same *simulated* times whatever the
machine's speed, in a headless run (``explorer run``), a live run in the app, and a run
paused and resumed any number of times.

The times are a fixed subset of the run's save grid (:func:`core.flow.save_grid`,
log-spaced, a function of the settings only): walking the grid from its first point,
a time t_j is taken when t_j ≥ r · t_last, with r = 10^(1/n) for n spectra per decade,

    n = SPECTRA_PER_DECADE                                   if P ≤ FULL_RATE_MAX_PARAMS,
    n = max(1, SPECTRA_PER_DECADE · (FULL_RATE_MAX_PARAMS / P)²)   otherwise,

so the cost of the spectra (one Hessian, O(N P²), and one ``eigh``, O(P³), each) stays a
bounded share of the run's cost however large P is, without ever looking at the clock.
A run that starts at t = 0 also gets the spectrum of its initial state.  Progress rows
between grid points (whose number depends on the machine's load) are never used.

Shapes: θ (P,), eigenvalues (P,) ascending (:func:`core.analysis.hessian_spectrum`), or
(F,) for constrained parameters: the Riemannian Hessian (:func:`core.manifold.spectrum_hessian`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

#: About ten spectra per decade of t resolve a plateau (which spans ≳ 1 decade of log t
#: in every preset) with several spectra, and a symmetry-saddle escape with one or two.
SPECTRA_PER_DECADE = 10
#: Up to this many parameters the Hessian and its eigh cost ≲ 10 ms each on one core
#: (bench/derivatives.py), so ≈ 100 spectra per run are ≲ 1 s; above it the rate falls
#: like 1/P², keeping the spectra's share of a run roughly constant as P grows.
FULL_RATE_MAX_PARAMS = 200


def spectra_per_decade(n_params: int) -> float:
    """Spectra per decade of t for a network with ``n_params`` parameters (see above)."""
    if n_params <= FULL_RATE_MAX_PARAMS:
        return float(SPECTRA_PER_DECADE)
    return max(1.0, SPECTRA_PER_DECADE * (FULL_RATE_MAX_PARAMS / n_params) ** 2)


def spectrum_times(grid: np.ndarray, n_params: int) -> np.ndarray:
    """The subset of the save grid (n,) at which spectra are recorded, ascending.

    Depends on the grid and P only: a run resumed at t0 records ``times[times > t0]``,
    the same times an uninterrupted run records after t0.
    """
    grid = np.asarray(grid, dtype=np.float64)
    factor = 10.0 ** (1.0 / spectra_per_decade(n_params))
    chosen: list[float] = []
    for t in grid:
        if not chosen or t >= factor * chosen[-1] * (1 - 1e-12):
            chosen.append(float(t))
    return np.asarray(chosen, dtype=np.float64)


class SpectrumSchedule:
    """Which rows of a run's chunks get a Hessian spectrum, and the spectra themselves.

    Args:
        objective: its spectra are those of :func:`core.manifold.spectrum_hessian`.
        grid: the run's save grid (:func:`core.flow.save_grid` of its settings).
        t0: the time the run (or this resumed stretch of it) starts at; at t0 = 0 the
            initial state is included.

    Feed every chunk, in order, to :meth:`spectra`; it yields ``(t, Spectrum)`` for the
    rows at scheduled times (a non-finite Hessian is skipped, never raised).
    """

    def __init__(self, objective: Any, grid: np.ndarray, t0: float = 0.0) -> None:
        self.objective = objective
        times = spectrum_times(grid, objective.n_params)
        self._pending = times[times > t0 * (1 + 1e-12)] if t0 > 0 else times
        self._start = t0 == 0.0
        self._pos = 0

    def due(self, chunk: Any) -> Iterator[tuple[float, np.ndarray]]:
        """(t, θ) of the chunk's rows at scheduled times (each time at most once)."""
        for t, theta in zip(np.asarray(chunk.t), np.asarray(chunk.theta), strict=True):
            t = float(t)
            if self._start and t == 0.0:
                self._start = False
                yield t, theta
                continue
            # Times are matched exactly: grid rows carry the grid's own float values.
            while self._pos < len(self._pending) and self._pending[self._pos] < t:
                self._pos += 1  # a scheduled time with no row (e.g. a non-finite state)
            if self._pos < len(self._pending) and self._pending[self._pos] == t:
                self._pos += 1
                yield t, theta

    def spectra(self, chunk: Any) -> Iterator[tuple[float, Any]]:
        """(t, :class:`core.analysis.Spectrum`) at the chunk's scheduled rows."""
        from core.analysis import hessian_spectrum
        from core.manifold import spectrum_hessian

        for t, theta in self.due(chunk):
            h = spectrum_hessian(self.objective, np.asarray(theta))
            if np.all(np.isfinite(h)):
                yield t, hessian_spectrum(h)
