"""Line plots and heatmaps rendered as terminal text, behind one widget of our own.

Why not textual-plotext: it pins plotext 5, imports its private modules, and a
log-scale plot raises ``ValueError: math domain error`` on its second build.  So
log axes are done here: values are mapped to log10 before plotting and the ticks
are labelled with the original decades (``1e-3``), which keeps every backend on
linear axes.  Signed data (Hessian eigenvalues) get a symmetric-log axis,
sign(y)·log10(1 + |y|/c) (:func:`symlog`), so a saddle's λmin < 0 shows next to a
λmax decades larger.  The backend (:class:`PlotextBackend`) turns series into an ANSI
string; swapping it for another renderer touches nothing else.

What is drawn is :meth:`LinePlot.figure_spec`: the data with the keyboard's
:class:`PlotControl` applied (y window auto-fitted robustly or fully — :func:`fit_range`
— then zoomed and moved; log/linear; hidden series dropped; event/phase
:class:`Marker` lines and the replay cursor).  The legend is a line of its own above
the frame, never over the curves.  Without colour or with 16 colours
(:func:`glyph_mode`) each series has its own point glyph (:data:`GLYPHS`), repeated in
the legend, and heatmaps carry the sign in their glyphs (:func:`heatmap_text`).

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
import os
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
#: Point glyphs per series in monochrome (NO_COLOR): the first series keeps the fine
#: braille line, the others are drawn with these characters, and the legend repeats them.
GLYPHS = ("braille", "x", "o", "+", "*", "#", "%", "@", "=", "&")

#: Robust auto-fit: the lowest ROBUST_QUANTILE of a series' points may fall below the
#: window.  A flow that converges spends a few save points dropping to round-off (loss
#: 1e-31 after plateaus at 5, 0.6, 0.05); those few points would otherwise stretch the
#: axis over 30 decades and squash every plateau into one row.  2 % of a 200-point save
#: grid is 4 points: the final drop, not a plateau (plateaus span ≥ a decade of t, ≥ 10 %).
ROBUST_QUANTILE = 0.02
#: ... but only when that tail is long: showing it would take more than a third of the
#: axis (tail > TAIL_SHARE × the rest of the range), and the series has enough points
#: (≥ ROBUST_MIN_POINTS) for a quantile to mean something.  A smooth descent keeps its end.
TAIL_SHARE = 0.5
ROBUST_MIN_POINTS = 50
#: Margin added on each side of a fitted window, as a fraction of its span.
FIT_MARGIN = 0.04
#: Symmetric-log axes are linear within ±c, c = SYMLOG_REL · max|y| (curvatures smaller
#: than 1e-4 of the largest are drawn near 0: at a refined point the symmetry-induced
#: zero eigenvalues are ~1e-11 relative, a saddle's escape direction ≳ 1e-3).
SYMLOG_REL = 1e-4
#: Glyph of each marker kind (event kinds of the session log, then phase boundaries).
MARKER_GLYPHS = {
    "refine": "R",
    "surgery": "S",
    "pause": "P",
    "resume": ">",
    "plateau": "=",
    "descent": "\\",
    "channel": "~",
    "converged": "*",
}

_PLOTEXT_LOCK = threading.Lock()  # plotext keeps one global figure


@dataclass(frozen=True)
class Series:
    """One line: x (m,), y (m,), a legend label and a colour name."""

    x: np.ndarray
    y: np.ndarray
    label: str = ""
    color: str = "cyan"


@dataclass(frozen=True)
class Marker:
    """A vertical line at x (data coordinates) with a one-character ``glyph`` on top."""

    x: float
    kind: str
    glyph: str = "|"
    color: str = "white"


@dataclass(frozen=True)
class PlotSpec:
    """Everything a backend needs to draw one figure.

    ``y_scale`` is "linear", "log" or "symlog" (sign(y)·log10(1 + |y|/c), c =
    ``linthresh``); ``ylim`` is the y window in display coordinates (None: the data's
    range).  ``glyphs`` (one per series) replace braille dots where given (monochrome).
    """

    series: tuple[Series, ...]
    title: str = ""
    log_x: bool = False
    log_y: bool = False
    xlabel: str = ""
    scatter: bool = False
    extra: dict = field(default_factory=dict)
    y_scale: str = ""
    linthresh: float = 1.0
    ylim: tuple[float, float] | None = None
    markers: tuple[Marker, ...] = ()
    cursor: float | None = None
    glyphs: tuple[str, ...] = ()

    @property
    def scale(self) -> str:
        """The y scale: ``y_scale`` if set, else "log" or "linear" from ``log_y``."""
        return self.y_scale or ("log" if self.log_y else "linear")


@dataclass(frozen=True)
class PlotControl:
    """The keyboard's view settings of one plot.

    ``fit``: "robust" (clip each series' lowest ROBUST_QUANTILE) or "full";
    ``zoom``: halvings of the fitted y span (negative: doublings); ``pan``: window
    centre shift in units of half the shown span; ``y_scale``: override of the plot's
    default scale (None: default); ``hidden``: indices of series not drawn;
    ``markers``: draw event/phase markers.
    """

    fit: str = "robust"
    zoom: int = 0
    pan: int = 0
    y_scale: str | None = None
    hidden: frozenset[int] = frozenset()
    markers: bool = True


def finite_log10(values: np.ndarray) -> np.ndarray:
    """log10 of positive entries; NaN where the value is ≤ 0 or not finite (dropped later)."""
    v = np.asarray(values, dtype=float)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v) & (v > 0)
    out[ok] = np.log10(v[ok])
    return out


def symlog(values: np.ndarray, c: float) -> np.ndarray:
    """sign(y) · log10(1 + |y|/c): linear (slope 1/(c ln 10)) for |y| ≪ c, log beyond."""
    v = np.asarray(values, dtype=float)
    return np.sign(v) * np.log10(1.0 + np.abs(v) / c)


def symlog_inverse(d: np.ndarray | float, c: float) -> np.ndarray:
    """The value y with :func:`symlog` (y, c) = d."""
    d = np.asarray(d, dtype=float)
    return np.sign(d) * c * (10.0 ** np.abs(d) - 1.0)


def symlog_threshold(series: Sequence[Series]) -> float:
    """c = SYMLOG_REL · max|y| over the series' finite values (1 when there are none)."""
    peaks = [
        float(np.max(np.abs(y[np.isfinite(y)])))
        for y in (np.asarray(s.y, float) for s in series)
        if np.isfinite(y).any()
    ]
    peak = max(peaks, default=0.0)
    return SYMLOG_REL * peak if peak > 0 else 1.0


def loss_offset(*ys: np.ndarray) -> float:
    """min L over the finite values of the loss series ``ys`` when it is < 0, else 0.

    A loss with values ≤ 0 (the correlation loss −E[f f*]) has no log axis; the loss plots
    draw L − min L on it instead, labelled so, with min L in the title.  Not the symlog
    axis of the Hessian plot: it is linear near 0 and logarithmic in |L|, so a loss that
    moves from −0.963 to −1.044 (multi_index_below), or by 3e-5 (multi_index_above), would
    be a flat line there; L − min L shows the plateaus and the final approach in decades.
    A loss ≥ 0 is drawn as it is (offset 0: positive-loss plots are unchanged).
    """
    lows = [np.min(v[np.isfinite(v)]) for v in (np.asarray(y, float) for y in ys)
            if np.isfinite(v).any()]  # fmt: skip
    low = float(min(lows, default=0.0))
    return low if low < 0 else 0.0


def to_display_y(values: np.ndarray, scale: str, linthresh: float = 1.0) -> np.ndarray:
    """y in display coordinates: log10 (NaN for y ≤ 0), symlog, or as is."""
    if scale == "log":
        return finite_log10(values)
    if scale == "symlog":
        return symlog(values, linthresh)
    return np.asarray(values, dtype=float)


def display_xy(spec: PlotSpec, s: Series) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a series in display coordinates (may hold NaN: not drawable)."""
    x = finite_log10(s.x) if spec.log_x else np.asarray(s.x, float)
    return x, to_display_y(s.y, spec.scale, spec.linthresh)


def fit_range(ys: Sequence[np.ndarray], mode: str = "robust") -> tuple[float, float] | None:
    """The y window [lo, hi] (display coordinates) fitted to the series' finite values.

    "full": their min and max.  "robust": a series whose lowest ROBUST_QUANTILE of points
    forms a long tail (see TAIL_SHARE, ROBUST_MIN_POINTS) has that quantile as its floor;
    the top is kept.  A margin of FIT_MARGIN of the span on both sides.  None when
    nothing is finite.
    """
    lows, highs = [], []
    for y in ys:
        v = np.asarray(y, float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        lo, hi = float(v.min()), float(v.max())
        if mode == "robust" and v.size >= ROBUST_MIN_POINTS:
            q = float(np.quantile(v, ROBUST_QUANTILE))
            if q - lo > TAIL_SHARE * (hi - q):
                lo = q
        lows.append(lo)
        highs.append(hi)
    if not lows:
        return None
    lo, hi = min(lows), max(highs)
    span = hi - lo
    if span <= 0:
        span = abs(hi) if hi else 1.0
        return lo - 0.5 * span, hi + 0.5 * span
    return lo - FIT_MARGIN * span, hi + FIT_MARGIN * span


def zoomed(window: tuple[float, float], zoom: int, pan: int) -> tuple[float, float]:
    """``window`` with its span halved ``zoom`` times about its centre, shifted by ``pan``
    half-spans of the result (pan > 0: up)."""
    lo, hi = window
    half = 0.5 * (hi - lo) / 2.0**zoom
    centre = 0.5 * (lo + hi) + pan * half
    return centre - half, centre + half


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
    coordinates (log10/symlog where the axis is); non-finite and, on log axes,
    non-positive points are dropped, as the backend would.  Drawing the result gives
    the same figure, at a cost bounded by the width rather than the history length.
    """
    out = []
    for s in spec.series:
        x, y = display_xy(spec, s)
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
    otherwise a few evenly spaced positions labelled with 3 significant digits, or as many
    more as tell them apart (:func:`distinct_labels`).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [], []
    if hi - lo < 1.0:
        if hi == lo:
            return [lo], [f"{10**lo:.3g}"]
        pos = list(np.linspace(lo, hi, 3))
        return pos, distinct_labels([10**p for p in pos])
    first, last = math.ceil(lo), math.floor(hi)
    step = max(1, math.ceil((last - first + 1) / max_ticks))
    pos = [float(p) for p in range(first, last + 1, step)]
    return pos, [_decade_label(p) for p in pos]


def symlog_ticks(
    lo: float, hi: float, c: float, max_ticks: int = 6
) -> tuple[list[float], list[str]]:
    """Ticks of a symlog axis (display window [lo, hi], threshold c): 0 and ±10^k.

    Positions are display coordinates; labels the original values ("-1e-2", "0", "10").
    0 first, then decades from the outside in, each kept when it is at least
    (hi − lo)/max_ticks from every kept tick (so labels never share a row).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], []
    k_lo = math.floor(math.log10(c))
    k_hi = math.ceil(math.log10(c) + max(abs(lo), abs(hi))) + 1
    cands = []
    for k in range(k_lo, k_hi + 1):
        for sign in (1, -1):
            d = float(symlog(sign * 10.0**k, c))
            if lo <= d <= hi:
                cands.append((d, ("-" if sign < 0 else "") + _decade_label(k)))
    if len(cands) < 2:  # inside the linear stretch: plain values
        pos = list(np.linspace(lo, hi, 3))
        return pos, [f"{float(symlog_inverse(p, c)):.2g}" for p in pos]
    gap = (hi - lo) / max(max_ticks, 2)
    picked = [(0.0, "0")] if lo <= 0 <= hi else []
    for d, label in sorted(cands, key=lambda dl: -abs(dl[0])):
        if all(abs(d - q) >= gap for q, _ in picked):
            picked.append((d, label))
    picked.sort()
    return [d for d, _ in picked], [lab for _, lab in picked]


def distinct_labels(values: Sequence[float]) -> list[str]:
    """Labels of ``values`` with 3 significant digits, or with as many more (up to 15) as
    make them all different.

    A narrow window far from 0 needs them: the weights plot after a surgery at t = 10⁶
    shows t ∈ [10⁶, 10⁶ + 40], whose ticks read "1e+06" three times with 3 digits;
    here "1000000", "1000020", "1000040".  Beyond 3 digits, values in [1e-4, 1e15) are
    written without an exponent (with the decimals those digits need).
    """
    labels = [f"{v:.3g}" for v in values]
    digits = 3
    while len(set(labels)) < len(labels) and digits < 15:
        digits += 1
        labels = [_plain(v, digits) for v in values]
    return labels


def _plain(v: float, digits: int) -> str:
    """``v`` to ``digits`` significant digits, without an exponent where that reads."""
    a = abs(v)
    if not (1e-4 <= a < 1e15):
        return f"{v:.{digits}g}"
    return f"{v:.{max(0, digits - 1 - math.floor(math.log10(a)))}f}"


def _decade_label(p: float) -> str:
    p = round(p)
    if p == 0:
        return "1"
    if p == 1:
        return "10"
    return f"1e{p}"


class PlotextBackend:
    """Renders a :class:`PlotSpec` to an ANSI string with plotext (linear axes only).

    No legend is drawn inside the frame (it would cover curves): :class:`LinePlot` writes
    it on its own line above the figure.
    """

    def render(self, spec: PlotSpec, width: int, height: int) -> str:
        import plotext as plt

        xs_all, ys_all, drawn = [], [], []
        for n, s in enumerate(spec.series):
            x, y = display_xy(spec, s)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                x, y = x[ok], y[ok]
                # Braille has 2 dots per column: nothing finer can be seen (see thin()).
                keep = envelope_indices(x, y, 2 * max(width, 10))
                x, y = x[keep], y[keep]
                glyph = spec.glyphs[n] if n < len(spec.glyphs) else "braille"
                drawn.append((x, y, s, glyph))
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
                plt.text(spec.extra.get("note") or "waiting for data…", 0.0, 0.0)
                plt.xticks([], [])
                plt.yticks([], [])
                return plt.build()
            for x, y, s, glyph in drawn:
                draw = plt.scatter if spec.scatter or len(x) == 1 else plt.plot
                draw(x.tolist(), y.tolist(), color=s.color, marker=glyph)
            xv = np.concatenate(xs_all)
            x_lo, x_hi = float(xv.min()), float(xv.max())
            yv = np.concatenate(ys_all)
            y_lo, y_hi = spec.ylim if spec.ylim is not None else (float(yv.min()), float(yv.max()))
            if spec.ylim is not None:
                plt.ylim(y_lo, y_hi)
            to_x = (lambda v: math.log10(v) if v > 0 else None) if spec.log_x else float
            top = y_hi if spec.ylim is not None else float(yv.max())
            for m in spec.markers:
                mx = to_x(m.x)
                if mx is not None and x_lo <= mx <= x_hi:
                    plt.vline(mx, m.color)
                    plt.text(m.glyph, mx, top, color=m.color)
            if spec.cursor is not None:
                cx = to_x(spec.cursor)
                cx = x_lo if cx is None else min(max(cx, x_lo), x_hi)  # t = 0: left edge
                plt.vline(cx, "white")
                plt.text("▼", cx, top, color="white")
            if spec.scale == "symlog" and y_lo < 0 < y_hi:
                plt.hline(0.0, "white")
            if spec.log_x:
                plt.xticks(*decade_ticks(x_lo, x_hi))
            n_ticks = max(2, height // 3)
            if spec.scale == "log":
                plt.yticks(*decade_ticks(y_lo, y_hi, max_ticks=n_ticks))
            elif spec.scale == "symlog":
                plt.yticks(*symlog_ticks(y_lo, y_hi, spec.linthresh, max_ticks=n_ticks))
            if spec.xlabel:
                plt.xlabel(spec.xlabel)
            return plt.build()


def glyph_mode(app) -> bool:
    """Whether series are told apart by glyph as well as colour: without colour
    (NO_COLOR), or with 16 colours or fewer (``TEXTUAL_COLOR_SYSTEM=standard``, or a
    terminal that reports no more).  Headless runs (tests) go by the settings only, so
    their frames do not depend on the terminal that runs them."""
    if app.no_color:
        return True
    if os.environ.get("TEXTUAL_COLOR_SYSTEM") in ("standard", "windows"):
        return True
    if app.is_headless:
        return False
    return app.console.color_system in (None, "standard", "windows")


class LinePlot(Widget):
    """A plot widget: holds a :class:`PlotSpec` and its :class:`PlotControl`, renders both.

    ``set_series`` only stores data (main thread).  The figure text is cached per
    (version, width, height), the version counting data, control and marker changes;
    :meth:`flush` (called from the screen's timer) rebuilds it when stale and the plot is
    on screen — in a worker thread when ``background`` is true, inline otherwise.
    ``render`` never builds a figure in background mode: it shows the last text (or a
    placeholder) until the new one arrives.  The first line is the legend (series glyph
    and label, hidden series and points below the window), never drawn over the curves.
    """

    #: Build figures in a worker thread (class default; snapshot tests switch it off).
    background = True

    @dataclass(eq=False)
    class Rendered(Message):
        """A figure built off the main thread for ``key`` = (version, w, h)."""

        key: tuple[int, int, int]
        text: Text

    def __init__(
        self,
        title: str = "",
        *,
        log_x: bool = False,
        log_y: bool = False,
        y_scale: str = "",
        xlabel: str = "",
        scatter: bool = False,
        fit: str = "robust",
        backend: PlotextBackend | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.backend = backend or PlotextBackend()
        self.plot = PlotSpec((), title, log_x, log_y, xlabel, scatter, y_scale=y_scale)
        self.control = PlotControl(fit=fit)
        self.markers: tuple[Marker, ...] = ()
        self.cursor: float | None = None
        self._version = 0
        self._cache: tuple[tuple[int, int, int], Text] | None = None
        self._pending: tuple[int, int, int] | None = None
        self.renders = 0  # figures built (for tests and the responsiveness bench)

    # -- data ---------------------------------------------------------------------

    def set_series(
        self, series: Sequence[Series], title: str | None = None, note: str = ""
    ) -> None:
        """Replace the plotted data (no redraw until :meth:`flush`); ``note`` is shown
        instead of the curves when there are none (say why)."""
        self.plot = replace(
            self.plot,
            series=tuple(series),
            title=self.plot.title if title is None else title,
            extra={**self.plot.extra, "note": note},
        )
        self._version += 1

    def set_markers(self, markers: Sequence[Marker], cursor: float | None = None) -> None:
        """Vertical markers (events, phase boundaries) and the replay cursor (data x)."""
        markers, cursor = tuple(markers), None if cursor is None else float(cursor)
        if markers != self.markers or cursor != self.cursor:
            self.markers, self.cursor = markers, cursor
            self._version += 1

    # -- control (the keyboard) -------------------------------------------------------

    def _set_control(self, **changes) -> None:
        self.control = replace(self.control, **changes)
        self._version += 1

    @property
    def scale(self) -> str:
        """The y scale in use: the control's override, else the plot's default."""
        return self.control.y_scale or self.plot.scale

    def zoom_y(self, step: int) -> str:
        """Halve (step = 1) or double (step = −1) the y span about its centre."""
        self._set_control(zoom=self.control.zoom + step)
        return f"y zoom ×{2.0**self.control.zoom:g}"

    def pan_y(self, step: int) -> str:
        """Move the y window up (step = 1) or down by half its span."""
        self._set_control(pan=self.control.pan + step)
        return f"y window moved {'up' if step > 0 else 'down'}"

    def cycle_fit(self) -> str:
        """Auto-fit again (zoom and pan reset), alternating robust and full range."""
        if self.control.zoom or self.control.pan:
            mode = self.control.fit  # first press after zooming: just fit again
        else:
            mode = "full" if self.control.fit == "robust" else "robust"
        self._set_control(fit=mode, zoom=0, pan=0)
        return f"y auto-fit: {mode} range"

    def toggle_scale(self) -> str:
        """Log (or symlog) ↔ linear y axis; a linear plot gets log only when its data are
        all > 0 (log10|λ| or a signed response has no log axis)."""
        default = self.plot.scale
        if default != "linear":
            new = "linear" if self.scale != "linear" else None
        elif self.scale == "linear":
            ys = [np.asarray(s.y, float) for s in self.plot.series]
            ys = [y[np.isfinite(y)] for y in ys]
            if not any(y.size for y in ys) or any(np.any(y <= 0) for y in ys):
                return "y has values ≤ 0 here: no log axis"
            new = "log"
        else:
            new = None
        self._set_control(y_scale=new, zoom=0, pan=0)
        return f"y axis: {self.scale}"

    def toggle_series(self, index: int) -> str:
        """Hide or show series ``index`` (0-based)."""
        if not 0 <= index < len(self.plot.series):
            return f"no series {index + 1} (this plot has {len(self.plot.series)})"
        hidden = set(self.control.hidden) ^ {index}
        self._set_control(hidden=frozenset(hidden))
        label = self.plot.series[index].label or f"series {index + 1}"
        return f"{label}: {'hidden' if index in hidden else 'shown'}"

    def toggle_markers(self) -> str:
        self._set_control(markers=not self.control.markers)
        return f"markers {'on' if self.control.markers else 'off'}"

    # -- what is drawn --------------------------------------------------------------------

    @property
    def monochrome(self) -> bool:
        """Series must differ by glyph, not colour alone (see :func:`glyph_mode`)."""
        try:
            return glyph_mode(self.app)
        except Exception:  # no app (unit use)
            return False

    def glyph(self, index: int) -> str:
        """Point glyph of series ``index``: braille in colour, :data:`GLYPHS` when
        :attr:`monochrome` (no colour, or 16 colours or fewer)."""
        return GLYPHS[index % len(GLYPHS)] if self.monochrome else "braille"

    def figure_spec(self, height: int | None = None) -> PlotSpec:
        """The :class:`PlotSpec` the backend draws: hidden series dropped, the y window
        fitted/zoomed (``extra["below"]``: points under it, ``extra["lowest"]``: their
        minimum), glyphs, markers and cursor.  With markers or a cursor the window gets
        one more row on top (``height``: the figure's rows) for their glyphs, so they
        never sit on a curve."""
        scale = self.scale
        base = replace(self.plot, y_scale=scale)
        if scale == "symlog":
            base = replace(base, linthresh=symlog_threshold(base.series))
        shown = [(n, s) for n, s in enumerate(base.series) if n not in self.control.hidden]
        ys = [display_xy(base, s) for _, s in shown]
        ys = [y[np.isfinite(x)] for x, y in ys]
        window = fit_range(ys, self.control.fit)
        below, lowest = 0, math.inf
        if window is not None:
            window = zoomed(window, self.control.zoom, self.control.pan)
            if (self.markers and self.control.markers) or self.cursor is not None:
                rows = max((height or 24) - 6, 4)  # title, legend-free frame, ticks, label
                window = (window[0], window[1] + (window[1] - window[0]) / rows)
            for (_, s), y in zip(shown, ys, strict=True):
                under = np.isfinite(y) & (y < window[0])
                below += int(under.sum())
                if under.any():
                    finite_s = np.asarray(s.y, float)[np.isfinite(display_xy(base, s)[0])]
                    lowest = min(lowest, float(np.min(finite_s[under])))
        return replace(
            base,
            series=tuple(s for _, s in shown),
            glyphs=tuple(self.glyph(n) for n, _ in shown),
            ylim=window,
            markers=self.markers if self.control.markers else (),
            cursor=self.cursor,
            extra={**base.extra, "below": below, "lowest": lowest},
        )

    def legend(self, spec: PlotSpec | None = None) -> Text:
        """The legend line: glyph + label per series (hidden ones marked), clipped points."""
        spec = spec if spec is not None else self.figure_spec()
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.has_class("-current"):
            text.append("▸ ", style="bold")
        for n, s in enumerate(self.plot.series):
            if not s.label:
                continue
            mark = "⠒⠒" if self.glyph(n) == "braille" else self.glyph(n) * 2
            if n in self.control.hidden:
                text.append(f"({n + 1} {s.label} hidden)  ", style="dim")
            else:
                text.append(mark, style=s.color)
                text.append(f" {s.label}  ")
        if spec.extra.get("below"):
            low = spec.extra["lowest"]
            text.append(f"↓{spec.extra['below']} below", style="dim")
            if math.isfinite(low):
                text.append(f" (min {low:.2g})", style="dim")
        return text

    # -- rendering ------------------------------------------------------------------------

    @property
    def key(self) -> tuple[int, int, int]:
        """(version, content width, content height) of the figure to show."""
        return (
            self._version * 2 + self.monochrome,
            self.content_size.width,
            self.content_size.height,
        )

    @property
    def dirty(self) -> bool:
        """True when the shown figure is not that of the current data and size."""
        return self._cache is None or self._cache[0] != self.key

    @property
    def on_screen(self) -> bool:
        """Displayed with a non-empty region (not in a hidden tab or a hidden grid cell)."""
        return self.display and self.region.area > 0 and self.is_on_screen

    def _compose_text(self, spec: PlotSpec, ansi: str) -> Text:
        text = self.legend(spec)
        text.append("\n")
        text.append_text(Text.from_ansi(ansi, no_wrap=True))
        return text

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
        width, height = key[1], max(key[2] - 1, 1)
        spec, backend = self.figure_spec(height), self.backend

        def build() -> None:
            try:
                if type(backend) is PlotextBackend:
                    ansi = draw_in_process(spec, width, height)
                else:
                    ansi = backend.render(spec, width, height)
                text = self._compose_text(spec, ansi)
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
        height = max(key[2] - 1, 1)
        spec = self.figure_spec(height)
        text = self._compose_text(spec, self.backend.render(spec, key[1], height))
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


#: Heatmap glyph ramps by sign, from small to large |value| (sign readable without colour).
HEAT_POSITIVE = " '+*#"
HEAT_NEGATIVE = " ,-=%"
HEAT_LEGEND = "+ * # > 0, - = % < 0"


def heatmap_text(values: np.ndarray, width: int, height: int) -> Text:
    """A character heatmap of a 2-D array (rows = y from top, columns = x).

    |value| maps to a 5-step ramp whose glyphs also carry the sign (:data:`HEAT_POSITIVE`
    ``" '+*#"``, :data:`HEAT_NEGATIVE` ``" ,-=%"``; :data:`HEAT_LEGEND`), so the map reads
    in monochrome; colour (red +, blue −, 16-colour safe) repeats it.  Rows and columns
    are nearest-neighbour resampled to ``height`` × ``width``.
    """
    v = np.asarray(values, float)
    if v.ndim != 2 or v.size == 0:
        return Text("(no data)")
    rows = np.linspace(0, v.shape[0] - 1, max(1, height)).round().astype(int)
    cols = np.linspace(0, v.shape[1] - 1, max(1, width)).round().astype(int)
    grid = v[np.ix_(rows, cols)]
    finite = grid[np.isfinite(grid)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    scale = scale or 1.0
    top = len(HEAT_POSITIVE) - 1
    text = Text(no_wrap=True)
    for r in range(grid.shape[0] - 1, -1, -1):  # larger y on top
        for c in range(grid.shape[1]):
            val = grid[r, c]
            k = 0 if not np.isfinite(val) else round(abs(val) / scale * top)
            if val > 0:
                text.append(HEAT_POSITIVE[k], style="red")
            else:
                text.append(HEAT_NEGATIVE[k], style="blue")
        if r:
            text.append("\n")
    return text
