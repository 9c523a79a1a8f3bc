"""Line plots and heatmaps rendered as terminal text, behind one widget of our own.

Why not textual-plotext: it pins plotext 5, imports its private modules, and a
log-scale plot raises ``ValueError: math domain error`` on its second build.  So
log axes are done here: values are mapped to log10 before plotting and the ticks
are labelled with the original decades (``1e-3``), which keeps every backend on
linear axes.  The backend (:class:`PlotextBackend`) turns series into an ANSI
string; swapping it for another renderer touches nothing else.

Redraws are throttled by the caller: :meth:`LinePlot.set_series` only stores the
data and bumps a version; the widget re-renders when its screen's timer calls
:meth:`LinePlot.flush` (4–10 Hz), never once per solver chunk.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rich.text import Text
from textual.widget import Widget

# 16-colour names: readable with TEXTUAL_COLOR_SYSTEM=standard and over SSH.
PALETTE = ("cyan", "magenta", "green", "yellow", "red", "blue", "white")

_PLOTEXT_LOCK = threading.Lock()  # plotext keeps one global figure


@dataclass(frozen=True)
class Series:
    """One line: x (m,), y (m,), a legend label and a colour name."""

    x: np.ndarray
    y: np.ndarray
    label: str = ""
    color: str = "cyan"


@dataclass(frozen=True)
class PlotSpec:
    """Everything a backend needs to draw one figure."""

    series: tuple[Series, ...]
    title: str = ""
    log_x: bool = False
    log_y: bool = False
    xlabel: str = ""
    scatter: bool = False
    extra: dict = field(default_factory=dict)


def finite_log10(values: np.ndarray) -> np.ndarray:
    """log10 of positive entries; NaN where the value is ≤ 0 or not finite (dropped later)."""
    v = np.asarray(values, dtype=float)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v) & (v > 0)
    out[ok] = np.log10(v[ok])
    return out


def decade_ticks(lo: float, hi: float, max_ticks: int = 6) -> tuple[list[float], list[str]]:
    """Tick positions in log10 space spanning [lo, hi] and labels of the original values.

    Integer decades when the span covers at least one, thinned to ≤ ``max_ticks``;
    otherwise a few evenly spaced positions labelled with 3 significant digits.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [], []
    if hi - lo < 1.0:
        if hi == lo:
            return [lo], [f"{10**lo:.3g}"]
        pos = list(np.linspace(lo, hi, 3))
        return pos, [f"{10**p:.3g}" for p in pos]
    first, last = math.ceil(lo), math.floor(hi)
    step = max(1, math.ceil((last - first + 1) / max_ticks))
    pos = [float(p) for p in range(first, last + 1, step)]
    return pos, [_decade_label(p) for p in pos]


def _decade_label(p: float) -> str:
    p = round(p)
    if p == 0:
        return "1"
    if p == 1:
        return "10"
    return f"1e{p}"


class PlotextBackend:
    """Renders a :class:`PlotSpec` to an ANSI string with plotext (linear axes only)."""

    def render(self, spec: PlotSpec, width: int, height: int) -> str:
        import plotext as plt

        xs_all, ys_all, drawn = [], [], []
        for s in spec.series:
            x = finite_log10(s.x) if spec.log_x else np.asarray(s.x, float)
            y = finite_log10(s.y) if spec.log_y else np.asarray(s.y, float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                drawn.append((x[ok], y[ok], s))
                xs_all.append(x[ok])
                ys_all.append(y[ok])
        with _PLOTEXT_LOCK:
            plt.clf()
            plt.plotsize(max(width, 10), max(height, 5))
            plt.theme("clear")
            if spec.title:
                plt.title(spec.title)
            if not drawn:
                plt.plot([0.0], [0.0], marker=" ")
                plt.text("waiting for data…", 0.0, 0.0)
                plt.xticks([], [])
                plt.yticks([], [])
                return plt.build()
            for x, y, s in drawn:
                draw = plt.scatter if spec.scatter or len(x) == 1 else plt.plot
                draw(x.tolist(), y.tolist(), color=s.color, marker="braille", label=s.label or None)
            if spec.log_x:
                xv = np.concatenate(xs_all)
                plt.xticks(*decade_ticks(float(xv.min()), float(xv.max())))
            if spec.log_y:
                yv = np.concatenate(ys_all)
                plt.yticks(
                    *decade_ticks(float(yv.min()), float(yv.max()), max_ticks=max(2, height // 3))
                )
            if spec.xlabel:
                plt.xlabel(spec.xlabel)
            return plt.build()


class LinePlot(Widget):
    """A plot widget: holds a :class:`PlotSpec`, renders it at its own size.

    ``set_series`` is cheap and thread-agnostic on the main thread; the render is
    cached per (version, size) so repeated refreshes cost nothing.
    """

    DEFAULT_CSS = """
    LinePlot { height: 1fr; width: 1fr; }
    """

    def __init__(
        self,
        title: str = "",
        *,
        log_x: bool = False,
        log_y: bool = False,
        xlabel: str = "",
        scatter: bool = False,
        backend: PlotextBackend | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.backend = backend or PlotextBackend()
        self.plot = PlotSpec((), title, log_x, log_y, xlabel, scatter)
        self._version = 0
        self._drawn_version = -1
        self._cache: tuple[tuple[int, int, int], Text] | None = None

    @property
    def dirty(self) -> bool:
        """True when data changed since the last render."""
        return self._version != self._drawn_version

    def set_series(self, series: Sequence[Series], title: str | None = None) -> None:
        """Replace the plotted data (no redraw until :meth:`flush`)."""
        self.plot = PlotSpec(
            tuple(series),
            self.plot.title if title is None else title,
            self.plot.log_x,
            self.plot.log_y,
            self.plot.xlabel,
            self.plot.scatter,
        )
        self._version += 1

    def flush(self) -> None:
        """Refresh if the data changed: called from a throttled timer."""
        if self.dirty:
            self.refresh()

    def render(self) -> Text:
        w, h = self.content_size.width, self.content_size.height
        key = (self._version, w, h)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        self._drawn_version = self._version
        text = Text.from_ansi(self.backend.render(self.plot, w, h), no_wrap=True)
        self._cache = (key, text)
        return text


def heatmap_text(values: np.ndarray, width: int, height: int) -> Text:
    """A character heatmap of a 2-D array (rows = y from top, columns = x).

    Values map to a 9-step ramp of characters (density, readable in monochrome)
    coloured blue (negative) / red (positive) by sign — 16-colour safe.  Rows and
    columns are nearest-neighbour resampled to ``height`` × ``width``.
    """
    ramp = " .:-=+*#%"
    v = np.asarray(values, float)
    if v.ndim != 2 or v.size == 0:
        return Text("(no data)")
    rows = np.linspace(0, v.shape[0] - 1, max(1, height)).round().astype(int)
    cols = np.linspace(0, v.shape[1] - 1, max(1, width)).round().astype(int)
    grid = v[np.ix_(rows, cols)]
    scale = float(np.nanmax(np.abs(grid))) or 1.0
    text = Text(no_wrap=True)
    for r in range(grid.shape[0] - 1, -1, -1):  # larger y on top
        for c in range(grid.shape[1]):
            val = grid[r, c]
            k = 0 if not np.isfinite(val) else round(abs(val) / scale * (len(ramp) - 1))
            text.append(ramp[k], style="red" if val > 0 else "blue")
        if r:
            text.append("\n")
    return text
