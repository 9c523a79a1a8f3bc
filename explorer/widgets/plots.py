"""Line plots and heatmaps rendered as terminal text, behind one widget of our own.

Why not textual-plotext: it pins plotext 5, imports its private modules, and a
log-scale plot raises ``ValueError: math domain error`` on its second build.  So
log axes are done here: values are mapped to log10 before plotting and the ticks
are labelled with the original decades (``1e-3``), which keeps every backend on
linear axes.  The backend (:class:`PlotextBackend`) turns series into an ANSI
string; swapping it for another renderer touches nothing else.

Redraws are throttled by the caller: :meth:`LinePlot.set_series` only stores the
data and bumps a version; the widget re-renders when its screen's timer calls
:meth:`LinePlot.flush` (a few Hz), never once per solver chunk.

Keeping the app responsive: plotext costs ~50–100 ms per figure (pure Python), far too
much for the event loop.  So (i) every series is thinned to at most two points per
braille dot column (:func:`envelope_indices`: the min and max of each column, which is
all a terminal can show), (ii) only plots that are on screen are rendered, and only
when their data or size changed, and (iii) in background mode (the default)
the figure text is built in a worker thread and swapped in when ready; the event loop
only ever blits cached text.  The figure itself is drawn in a separate process
(:func:`draw_in_process`, one shared forkserver worker): plotext is pure Python, and in
a thread it would hold the GIL that the event loop needs for every key press; the
thread only thins the data and waits.  Synchronous mode (``LinePlot.background = False``) is for
deterministic snapshots.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import math
import multiprocessing
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from rich.text import Text
from textual.message import Message
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


def envelope_indices(x: np.ndarray, y: np.ndarray, n_bins: int) -> np.ndarray:
    """Indices of the points that survive drawing at ``n_bins`` columns, in order.

    x (m,) and y (m,) are finite display coordinates.  The x range is cut into
    ``n_bins`` equal columns; in each, the first and last point (so lines joining
    columns are kept) and the points of minimum and maximum y (so spikes are kept)
    survive.  At most ``4 * n_bins`` indices, sorted; all of them when m is small.
    """
    m = len(x)
    if m <= 4 * n_bins:
        return np.arange(m)
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        col = np.zeros(m, dtype=int)
    else:
        col = np.minimum(((x - lo) / (hi - lo) * n_bins).astype(int), n_bins - 1)
    order = np.lexsort((np.arange(m), col))  # by column, then by index
    col_sorted = col[order]
    starts = np.flatnonzero(np.r_[True, col_sorted[1:] != col_sorted[:-1]])
    ends = np.r_[starts[1:], m] - 1
    keep = [order[starts], order[ends]]
    ys = y[order]
    # Per column argmin / argmax via reduceat on (y, index) — vectorised.
    for pick in (np.minimum, np.maximum):
        best = pick.reduceat(ys, starts)
        hit = ys == np.repeat(best, ends - starts + 1)
        first_hit = np.minimum.reduceat(np.where(hit, np.arange(m), m), starts)
        keep.append(order[first_hit])
    return np.unique(np.concatenate(keep))


def thin(spec: PlotSpec, width: int) -> PlotSpec:
    """``spec`` with each series cut to the points visible at ``width`` columns.

    Envelope (:func:`envelope_indices`, 2 braille dots per column) in display
    coordinates (log10 where the axis is logarithmic); non-finite and, on log axes,
    non-positive points are dropped, as the backend would.  Drawing the result gives
    the same figure, at a cost bounded by the width rather than the history length.
    """
    out = []
    for s in spec.series:
        x = finite_log10(s.x) if spec.log_x else np.asarray(s.x, float)
        y = finite_log10(s.y) if spec.log_y else np.asarray(s.y, float)
        ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        keep = ok[envelope_indices(x[ok], y[ok], 2 * max(width, 10))]
        out.append(replace(s, x=np.asarray(s.x, float)[keep], y=np.asarray(s.y, float)[keep]))
    return replace(spec, series=tuple(out))


_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _draw(spec: PlotSpec, width: int, height: int) -> str:
    return PlotextBackend().render(spec, width, height)


def _shutdown_pool() -> None:
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)


def start_drawing_process() -> concurrent.futures.ProcessPoolExecutor:
    """Start (once) the shared drawing process; returns the pool.

    Call it from the main thread early (the app does, on mount).  Under Textual,
    ``sys.stderr`` is a capture object without a file descriptor, which
    multiprocessing's helper processes need: the real stderr is lent for the start.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            ctx = multiprocessing.get_context("forkserver")  # never fork JAX's threads
            pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
            saved = sys.stderr
            try:
                if sys.__stderr__ is not None:
                    sys.stderr = sys.__stderr__
                pool.submit(int)  # spawns the worker now, with a real stderr
            finally:
                sys.stderr = saved
            _POOL = pool
            atexit.register(_shutdown_pool)
        return _POOL


def draw_in_process(spec: PlotSpec, width: int, height: int) -> str:
    """:meth:`PlotextBackend.render` of :func:`thin` ``(spec)`` in the drawing process.

    Falls back to drawing in the calling thread if the process cannot be used.
    """
    global _POOL
    spec = thin(spec, width)  # small pickles, bounded work
    try:
        return start_drawing_process().submit(_draw, spec, width, height).result()
    except (concurrent.futures.process.BrokenProcessPool, OSError, RuntimeError, ValueError):
        with _POOL_LOCK:
            _POOL = None
        return _draw(spec, width, height)


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
                x, y = x[ok], y[ok]
                # Braille has 2 dots per column: nothing finer can be seen (see thin()).
                keep = envelope_indices(x, y, 2 * max(width, 10))
                x, y = x[keep], y[keep]
                drawn.append((x, y, s))
                xs_all.append(x)
                ys_all.append(y)
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

    ``set_series`` only stores data (main thread).  The figure text is cached per
    (data version, width, height); :meth:`flush` (called from the screen's timer)
    rebuilds it when stale and the plot is on screen — in a worker thread when
    ``background`` is true, inline otherwise.  ``render`` never builds a figure in
    background mode: it shows the last text (or a placeholder) until the new one
    arrives.
    """

    DEFAULT_CSS = """
    LinePlot { height: 1fr; width: 1fr; }
    """

    #: Build figures in a worker thread (class default; snapshot tests switch it off).
    background = True

    class Rendered(Message):
        """A figure built off the main thread for ``key`` = (version, w, h)."""

        def __init__(self, key: tuple[int, int, int], text: Text) -> None:
            super().__init__()
            self.key = key
            self.text = text

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
        self._cache: tuple[tuple[int, int, int], Text] | None = None
        self._pending: tuple[int, int, int] | None = None
        self.renders = 0  # figures built (for tests and the responsiveness bench)

    @property
    def key(self) -> tuple[int, int, int]:
        """(data version, content width, content height) of the figure to show."""
        return (self._version, self.content_size.width, self.content_size.height)

    @property
    def dirty(self) -> bool:
        """True when the shown figure is not that of the current data and size."""
        return self._cache is None or self._cache[0] != self.key

    @property
    def on_screen(self) -> bool:
        """Displayed with a non-empty region (not in a hidden tab or a hidden grid cell)."""
        return self.display and self.region.area > 0 and self.is_on_screen

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
        """Rebuild the figure if it is stale and visible (called from a throttled timer)."""
        if not self.dirty or not self.on_screen:
            return
        if not self.background:
            self.refresh()
            return
        key = self.key
        if self._pending is not None:
            return  # one build at a time; the next flush picks up newer data
        self._pending = key
        plot, backend = self.plot, self.backend

        def build() -> None:
            try:
                if type(backend) is PlotextBackend:
                    ansi = draw_in_process(plot, key[1], key[2])
                else:
                    ansi = backend.render(plot, key[1], key[2])
                text = Text.from_ansi(ansi, no_wrap=True)
            except Exception as exc:  # always answer, or the plot would never redraw
                text = Text(f"plot failed: {type(exc).__name__}: {exc}", style="red")
            self.post_message(self.Rendered(key, text))

        self.run_worker(build, thread=True, group="plot-render", exit_on_error=False)

    def on_line_plot_rendered(self, message: LinePlot.Rendered) -> None:
        message.stop()
        self._pending = None
        self.renders += 1
        self._cache = (message.key, message.text)
        self.refresh()

    def _build_now(self) -> Text:
        key = self.key
        text = Text.from_ansi(self.backend.render(self.plot, key[1], key[2]), no_wrap=True)
        self.renders += 1
        self._cache = (key, text)
        return text

    def render(self) -> Text:
        if not self.dirty:
            return self._cache[1]
        if not self.background:
            return self._build_now()
        # Never build on the event loop: show what we have and ask for a rebuild.
        self.call_later(self.flush)
        return self._cache[1] if self._cache is not None else Text("drawing…", style="dim")


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
