"""The extra plot views — function space, weight space, singular values, loss slice — as
terminal widgets.

Numbers come from :mod:`core.views` only: a :class:`ViewPanel` is handed the current point
(:class:`ViewInputs`) by its screen, computes the view with :func:`compute_view` in a thread
worker and receives the result back as a :class:`ViewPanel.Computed` message; ``render``
only blits text.  A view that does not apply shows :func:`core.views.why_not`'s line.

Figures are drawn like :mod:`explorer.widgets.plots` draws its plots (a :class:`PlotSpec`
of :class:`Series`, plotext in the shared drawing process, in a worker thread, cached per
data version and size), by :func:`render_view`, which adds what these views need: a marker
per series (so they differ without colour: NO_COLOR=1, 16-colour terminals), axis limits,
reference lines and text labels.  The function view's f − g heatmap (:class:`SignHeatmap`)
shows the sign by glyph (``+ * #`` above, ``- = ≡`` below, ``·`` about zero) as well as by
colour.  For a softmax student (cross-entropy loss) the line shows the class probabilities
p = softmax(f) against the teacher's class, and for d = 2 a :class:`ClassMap` replaces the
heatmap: the student's class per cell by digit (``1`` = output 1) and colour, in reverse
video where the teacher's class differs — or, with no teacher (a data file's labels), where
a misclassified training point lies (NO_COLOR keeps reverse video: the student's class
stays readable where it is wrong, and without colour).
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from explorer.widgets.panels import PlotTab, TrajectoryView
from explorer.widgets.plots import (
    _PLOTEXT_LOCK,
    PALETTE,
    LinePlot,
    PlotSpec,
    Series,
    decade_ticks,
    finite_log10,
    start_drawing_process,
)

#: While a run flows, a view is recomputed at most this often (it costs a forward pass on
#: ~2000 points, or a Hessian and 82 loss evaluations, on the two cores the flow also uses).
LIVE_SECONDS = 1.0
#: Heatmap: |f − g| below this fraction of max|g| counts as zero (rounding, not a difference:
#: a recovered teacher leaves |f − g| ~ 1e-14 · |g|, whose sign pattern is noise).
HEATMAP_ZERO_REL = 1e-9
#: Heatmap glyphs by sign and |v|/max|v|: below 1/8 "·"; then three equal bins.
HEAT_POS, HEAT_NEG, HEAT_ZERO = ("+", "*", "#"), ("-", "=", "≡"), "·"
HEAT_EDGES = (0.125, 0.125 + 0.875 / 3, 0.125 + 2 * 0.875 / 3)

#: Class map: the glyph of class c (0-based) is CLASS_GLYPHS[c] (so "1" is output 1, as in
#: the line's legend); a cell whose teacher class differs from the student's is drawn with
#: CLASS_DISAGREE_STYLE added — reverse video, not a glyph of its own, so the student's class
#: still shows where it is wrong (at a plateau that is most of the map).
CLASS_GLYPHS = "123456789abcdefghijklmnopqrstuvwxyz"
CLASS_DISAGREE_STYLE = "reverse bold"

#: Student outputs 1–3 of the function view: plotext marker and its legend glyph.
OUTPUT_MARKERS = ("braille", "+", "x")
OUTPUT_GLYPHS = ("⠤⠤", "++", "xx")

#: Singular values below this fraction of the largest (the teacher's included) are drawn at
#: that floor: a small initialisation starts them at ~1e-9, and an axis down to there would
#: squeeze the learned levels (3, 1, 0.3 in the saddle-to-saddle preset) into two rows.
SINGULAR_FLOOR = 1e-3

#: The digit keys of the plot tabs, as :mod:`explorer.screens.trajectory` assigns them.
PLOT_KEYS = "1234567890"

#: Titles of the views (help lines and note lines), in :data:`core.views.VIEWS` order.
VIEW_TITLES = {
    "function": "function space",
    "weights": "weight space",
    "singular": "singular values",
    "slice": "loss slice",
}


@dataclass(frozen=True)
class ViewSeries(Series):
    """A :class:`Series` with its own plotext marker ("braille", or one character) and style."""

    marker: str = "braille"
    scatter: bool = False


# ----------------------------------------------------------------------------- computing


@dataclass(frozen=True, eq=False)
class ViewInputs:
    """The point a view is computed at (main thread → worker; arrays are copies).

    Attributes:
        spec, theta: the student network and its parameters (P,) at time ``t``.
        teacher: the problem's :class:`core.teachers.Teacher` (None until it is built).
        objective: ``objective(spec)`` → the loss for that spec (built in the worker).
        history_t, history_theta: the trajectory of the current segment, (m,) and (m, P),
            for the singular-value view (None otherwise).
        cursor: the time marked on time axes (the replayed or current t).
        loss: the problem's ``data.loss``; "crossentropy" (softmax outputs) makes the function
            view show class probabilities and, for d = 2, class regions.
        data: the training set (x (N, d), one-hot y (N, K)) for the class regions when there
            is no teacher to compare them with (teacher kind "none"), else None.
    """

    spec: Any
    theta: np.ndarray
    t: float
    teacher: Any = None
    objective: Callable[[Any], Any] | None = None
    history_t: np.ndarray | None = None
    history_theta: np.ndarray | None = None
    cursor: float | None = None
    loss: str = "mse"
    data: Any = None

    def key(self, view: str) -> tuple:
        """Identifies the result: same key, same picture."""
        hist = (
            None if self.history_t is None else (len(self.history_t), self.history_t[-1:].tobytes())
        )
        return (
            view,
            self.spec,
            float(self.t),
            np.asarray(self.theta).tobytes(),
            hist,
            self.teacher is None,
            self.cursor,
            self.loss,
        )


@dataclass(frozen=True)
class ViewResult:
    """What :func:`compute_view` found: ``data`` from :mod:`core.views`, or ``reason`` why not."""

    view: str
    t: float
    data: dict = field(default_factory=dict)
    reason: str | None = None


def compute_view(view: str, inputs: ViewInputs) -> ViewResult:
    """Call :mod:`core.views` for ``view`` at ``inputs`` (runs in a worker thread)."""
    from core import views

    spec, theta, teacher = inputs.spec, np.asarray(inputs.theta), inputs.teacher
    reason = views.why_not(view, spec, teacher)
    if reason:
        return ViewResult(view, inputs.t, reason=reason)
    try:
        if view == "function":
            classes = inputs.loss == "crossentropy" and spec.output_dim >= 2
            data = {"line": views.function_line(spec, theta, teacher, probabilities=classes)}
            if spec.input_dim == 2 and classes:
                points = None if inputs.data is None else np.asarray(inputs.data.x)
                labels = None if inputs.data is None else np.asarray(inputs.data.y)
                data["classes"] = views.class_regions(
                    spec, theta, teacher, points=points, labels=labels
                )
            elif spec.input_dim == 2:
                data["grid"] = views.function_grid(spec, theta, teacher)
        elif view == "weights":
            data = views.weight_vectors(spec, theta, teacher)
        elif view == "singular":
            t = np.asarray(inputs.history_t if inputs.history_t is not None else [inputs.t])
            th = inputs.history_theta if inputs.history_theta is not None else theta[None]
            data = {"t": t, "sv": views.singular_values(spec, th), "cursor": inputs.cursor}
            tspec = getattr(teacher, "spec", None)
            if tspec is not None and views.why_not("singular", tspec) is None:
                data["teacher"] = views.singular_values(tspec, teacher.theta)[0]
        elif view == "slice":
            if inputs.objective is None:
                return ViewResult(
                    view, inputs.t, reason="loss slice: the problem is still being built"
                )
            data = views.loss_slice(inputs.objective(spec), theta)
        else:
            raise ValueError(f"unknown view {view!r}")
    except Exception as exc:  # shown in the panel's note line, never raised into the UI
        return ViewResult(view, inputs.t, reason=f"{view} view failed: {type(exc).__name__}: {exc}")
    return ViewResult(view, inputs.t, data=data)


# ------------------------------------------------------------------------------ figures


def _fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else str(v)


def class_line_figure(result: ViewResult) -> tuple[PlotSpec, str]:
    """p = softmax(f) along the line against the teacher's class (one-hot), and the legend."""
    line = result.data["line"]
    s, p, onehot = line["s"], line["student"], line["teacher"]
    k_out = min(p.shape[1], 3)
    teacher, student = [], []
    for k in range(k_out):
        student.append(
            ViewSeries(s, p[:, k], f"p{k + 1}", PALETTE[2 * k % 6], marker=OUTPUT_MARKERS[k])
        )
        if onehot is not None:
            teacher.append(ViewSeries(s, onehot[:, k], "", PALETTE[2 * k % 6], marker="·"))
    u = ", ".join(f"{c:.2f}" for c in line["direction"][:4])
    more = ", …" if line["direction"].size > 4 else ""
    title = "p along x = s·u"
    if line["teacher_class"] is not None:
        agree = float(np.mean(line["student_class"] == line["teacher_class"]))
        title = f"p: {agree:.0%} = teacher"  # short: plotext cuts titles to the canvas
    outs = "  ".join(f"{OUTPUT_GLYPHS[k]} p{'₁₂₃'[k]}" for k in range(k_out))
    teacher_part = "  ·· teacher's class (0/1)" if onehot is not None else ""
    legend = f"{outs}{teacher_part}  u = ({u}{more})"
    if p.shape[1] > k_out:
        legend += f"  (classes 1–{k_out} of {p.shape[1]})"
    extra = {"ylim": (-0.05, 1.05)}
    return PlotSpec(tuple(teacher + student), title, xlabel="s", extra=extra), legend


def function_figure(result: ViewResult) -> tuple[PlotSpec, str]:
    """f and g along the line, and the legend line (class probabilities for softmax)."""
    line = result.data["line"]
    if "student_class" in line:
        return class_line_figure(result)
    s, f, g = line["s"], line["student"], line["teacher"]
    k_out = min(f.shape[1], 3)
    teacher, student = [], []
    for k in range(k_out):
        sub = f"{k + 1}" if f.shape[1] > 1 else ""
        marker = OUTPUT_MARKERS[k]  # outputs differ by glyph too, not by colour alone
        student.append(ViewSeries(s, f[:, k], f"f{sub}", PALETTE[2 * k % 6], marker=marker))
        if g is not None:
            teacher.append(ViewSeries(s, g[:, k], f"g{sub}", PALETTE[(2 * k + 1) % 6], marker="·"))
    series = teacher + student  # the student on top: where f = g its glyph shows
    u = ", ".join(f"{c:.2f}" for c in line["direction"][:4])
    more = ", …" if line["direction"].size > 4 else ""
    title = "f along x = s·u"
    if g is not None:
        title = f"max|f−g| {_fmt(float(np.max(np.abs(f - g))))} on the line x = s·u"
    g_key = "·· teacher g" if g is not None else "no teacher"  # None: a data file's targets
    if f.shape[1] == 1:
        legend = f"⠤⠤ student f  {g_key}  u = ({u}{more})"
    else:
        outs = "  ".join(f"{OUTPUT_GLYPHS[k]} f{'₁₂₃'[k]}" for k in range(k_out))
        legend = f"{outs}  {g_key}  u = ({u}{more})"
    if f.shape[1] > k_out:
        legend += f"  (outputs 1–{k_out} of {f.shape[1]})"
    return PlotSpec(tuple(series), title, xlabel="s"), legend


def weights_figure(result: ViewResult) -> tuple[PlotSpec, str]:
    """Student input weights w_i·‖a_i‖ (marker: i, braille rays), teacher v_j·‖b_j‖ (x, dotted)."""
    d = result.data
    pts = d["student"] * d["scale"][:, None]
    series = []
    every = [pts]
    if d["teacher"] is not None:
        tpts = d["teacher"] * d["teacher_scale"][:, None]
        every.append(tpts)
        for j, (x, y) in enumerate(tpts):
            series.append(ViewSeries(np.array([0.0, x]), np.array([0.0, y]), "", "magenta", "·"))
            series.append(
                ViewSeries(
                    np.array([x]), np.array([y]), "teacher" if j == 0 else "", "magenta", "x", True
                )
            )
    for i, (x, y) in enumerate(pts):
        color = PALETTE[i % 6] if PALETTE[i % 6] != "magenta" else "white"
        tip = str(i) if i < 10 else "o"  # the neuron's index is its marker
        series.append(ViewSeries(np.array([0.0, x]), np.array([0.0, y]), "", color))
        series.append(ViewSeries(np.array([x]), np.array([y]), "", color, tip, True))
    lim = float(np.max(np.abs(np.concatenate(every)))) if pts.size else 1.0
    lim = 1.1 * lim if lim > 0 and math.isfinite(lim) else 1.0
    extra = {"xlim": (-lim, lim), "ylim": (-lim, lim), "axes": True}
    title = "input weights w·‖a‖ in the plane"
    legend = "0 1 2 … student neuron i"
    legend += (
        "   x teacher neuron" if d["teacher"] is not None else "   (no teacher network to draw)"
    )
    return PlotSpec(tuple(series), title, xlabel="w₁", extra=extra), legend


def singular_figure(result: ViewResult) -> tuple[PlotSpec, str]:
    """σ_i(W_L⋯W_1) against t (log-log), teacher's σ_i as dotted levels, the cursor."""
    d = result.data
    t, sv = np.asarray(d["t"]), np.asarray(d["sv"])
    levels = np.concatenate([sv.ravel(), np.asarray(d.get("teacher", []), float)])
    top = float(np.max(levels)) if levels.size else 0.0
    floor = SINGULAR_FLOOR * top if top > 0 else 0.0
    shown = np.maximum(sv, floor) if floor > 0 else sv
    series = []
    extra: dict = {}
    if "teacher" in d:  # first, so the student's σ are drawn over the levels they reach
        lo, hi = (float(np.min(t[t > 0])), float(np.max(t))) if np.any(t > 0) else (1.0, 10.0)
        for i, level in enumerate(d["teacher"]):
            if level > 0:
                series.append(
                    ViewSeries(
                        np.array([lo, hi]), np.array([level, level]), "", PALETTE[i % 6], "·"
                    )
                )
    series += [
        ViewSeries(t, shown[:, i], f"σ{i + 1}", PALETTE[i % 6], marker="braille")
        for i in range(sv.shape[1])
    ]
    cursor = d.get("cursor")
    now_i = len(t) - 1
    if cursor is not None and len(t):
        now_i = max(0, int(np.searchsorted(t, cursor, side="right")) - 1)
        if cursor > 0:
            extra["vlines"] = [(float(cursor), "white")]
    if sv.size:  # the current point on each curve
        for i in range(sv.shape[1]):
            series.append(
                ViewSeries(
                    t[now_i : now_i + 1], shown[now_i, i : i + 1], "", PALETTE[i % 6], "o", True
                )
            )
    now = ", ".join(_fmt(v) for v in sv[now_i][:4]) if sv.size else ""
    when = f" at t={_fmt(float(t[now_i]))}" if len(t) else ""
    title = f"σ of the end-to-end map{when}: {now}"
    legend = "⠤⠤ σ₁ ≥ σ₂ ≥ … of W_L⋯W₁  o now"
    if "teacher" in d:
        legend += "   ·· teacher's σ"
    if floor > 0:
        legend += f"   (below {_fmt(floor)} drawn at it)"
    return PlotSpec(tuple(series), title, log_x=True, log_y=True, xlabel="t", extra=extra), legend


def slice_figure(result: ViewResult) -> tuple[PlotSpec, str]:
    """L(θ + s v) against s/r for v_min (braille) and v_max (·), r printed in the legend."""
    d = result.data
    u_min = d["s_min"] / d["r_min"]
    u_max = d["s_max"] / d["r_max"]
    series = (
        ViewSeries(u_min, d["min"], "v_min", "green"),
        ViewSeries(u_max, d["max"], "v_max", "red", marker="·"),
    )
    extra = {"hlines": [(float(d["loss"]), "white")], "xlim": (-1.0, 1.0)}
    title = f"L(θ+s·v): λmin {_fmt(d['lam_min'])}, λmax {_fmt(d['lam_max'])}"
    legend = (
        f"⠤⠤ v_min |s| ≤ {_fmt(d['r_min'])}  ·· v_max |s| ≤ {_fmt(d['r_max'])}"
        f"  ── L(θ) = {_fmt(d['loss'])}"
    )
    return PlotSpec(series, title, xlabel="s / r", extra=extra), legend


FIGURES = {
    "function": function_figure,
    "weights": weights_figure,
    "singular": singular_figure,
    "slice": slice_figure,
}


def render_view(spec: PlotSpec, width: int, height: int) -> str:
    """A view's figure as ANSI text, with plotext (log axes as in :class:`PlotextBackend`)."""
    import plotext as plt

    def tx(v):
        return finite_log10(v) if spec.log_x else np.asarray(v, float)

    def ty(v):
        return finite_log10(v) if spec.log_y else np.asarray(v, float)

    extra = spec.extra
    with _PLOTEXT_LOCK:
        plt.clf()
        plt.plotsize(max(width, 10), max(height, 5))
        plt.theme("clear")
        if spec.title:
            # plotext drops a title wider than the canvas; cut it instead (y ticks ≈ 8 cols).
            room = max(width - 9, 8)
            plt.title(spec.title if len(spec.title) <= room else spec.title[: room - 1] + "…")
        xs, ys = [], []
        for s in spec.series:
            x, y = tx(s.x), ty(s.y)
            ok = np.isfinite(x) & np.isfinite(y)
            if not ok.any():
                continue
            x, y = x[ok], y[ok]
            xs.append(x)
            ys.append(y)
            marker = getattr(s, "marker", "braille")
            draw = plt.scatter if getattr(s, "scatter", False) or len(x) == 1 else plt.plot
            draw(x.tolist(), y.tolist(), color=s.color, marker=marker)
        if not xs:
            plt.plot([0.0], [0.0], marker=" ")
            plt.text("no data", 0.0, 0.0)
            return plt.build()
        for y0, color in extra.get("hlines", ()):
            plt.hline(float(ty(np.array([y0]))[0]), color)
        for x0, color in extra.get("vlines", ()):
            xv = float(tx(np.array([x0]))[0])
            if math.isfinite(xv):
                plt.vline(xv, color)
        if extra.get("axes"):
            plt.hline(0.0, "white")
            plt.vline(0.0, "white")
        for label, x0, y0, color in extra.get("texts", ()):
            plt.text(label, float(x0), float(y0), color=color)
        if "xlim" in extra:
            plt.xlim(*extra["xlim"])
        if "ylim" in extra:
            plt.ylim(*extra["ylim"])
        if spec.log_x:
            xv = np.concatenate(xs)
            plt.xticks(*decade_ticks(float(xv.min()), float(xv.max())))
        if spec.log_y:
            yv = np.concatenate(ys)
            plt.yticks(
                *decade_ticks(float(yv.min()), float(yv.max()), max_ticks=max(2, height // 3))
            )
        if spec.xlabel:
            plt.xlabel(spec.xlabel)
        return plt.build()


def draw_view(spec: PlotSpec, width: int, height: int) -> str:
    """:func:`render_view` in the shared drawing process (inline if that cannot be used)."""
    try:
        return start_drawing_process().submit(render_view, spec, width, height).result()
    except (concurrent.futures.process.BrokenProcessPool, OSError, RuntimeError, ValueError):
        return render_view(spec, width, height)


# ------------------------------------------------------------------------------ widgets


class ViewPlot(Widget):
    """A figure of :func:`render_view`, rebuilt off the event loop when its data or size change.

    Same scheme as :class:`~explorer.widgets.plots.LinePlot` (and the same synchronous switch,
    ``LinePlot.background``, for snapshot tests).
    """

    @dataclass(eq=False)
    class Rendered(Message):
        key: tuple
        text: Text

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.figure = PlotSpec(())
        self._version = 0
        self._cache: tuple[tuple, Text] | None = None
        self._pending: tuple | None = None
        self.renders = 0

    @property
    def key(self) -> tuple:
        return (self._version, self.content_size.width, self.content_size.height)

    def set_figure(self, figure: PlotSpec) -> None:
        self.figure = figure
        self._version += 1
        self.refresh()

    def _build(self, key: tuple, figure: PlotSpec) -> Text:
        try:
            return Text.from_ansi(draw_view(figure, key[1], key[2]), no_wrap=True)
        except Exception as exc:  # always answer, or the plot would never redraw
            return Text(f"plot failed: {type(exc).__name__}: {exc}")

    def flush(self) -> None:
        key = self.key
        if (self._cache is not None and self._cache[0] == key) or self._pending is not None:
            return
        if key[1] <= 0 or key[2] <= 0:
            return
        self._pending = key
        figure = self.figure

        def build() -> None:
            self.post_message(self.Rendered(key, self._build(key, figure)))

        self.run_worker(build, thread=True, group="view-render", exit_on_error=False)

    def on_view_plot_rendered(self, message: ViewPlot.Rendered) -> None:
        message.stop()
        self._pending = None
        self.renders += 1
        self._cache = (message.key, message.text)
        self.refresh()

    def render(self) -> Text:
        key = self.key
        if not self.figure.series:
            return Text("")  # nothing computed yet (the note line says so)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if not LinePlot.background:
            text = self._build(key, self.figure)
            self.renders += 1
            self._cache = (key, text)
            return text
        self.call_later(self.flush)
        return self._cache[1] if self._cache is not None else Text("drawing…", style="dim")


def heatmap_glyph(v: float, scale: float) -> tuple[str, str]:
    """(glyph, colour) of one heatmap cell: sign by glyph and colour, size by glyph."""
    if not math.isfinite(v) or scale <= 0:
        return HEAT_ZERO, "white"
    r = abs(v) / scale
    if r < HEAT_EDGES[0]:
        return HEAT_ZERO, "white"
    level = 0 if r < HEAT_EDGES[1] else 1 if r < HEAT_EDGES[2] else 2
    return (HEAT_POS[level], "red") if v > 0 else (HEAT_NEG[level], "blue")


def heatmap_rows(values: np.ndarray, scale: float, width: int, height: int) -> list[list]:
    """Rows of (glyph, colour) cells, top row = largest y: ``values`` (n_y, n_x) resampled
    (nearest neighbour) to ``height`` × ``width``."""
    v = np.asarray(values, float)
    rows = np.linspace(0, v.shape[0] - 1, max(1, height)).round().astype(int)
    cols = np.linspace(0, v.shape[1] - 1, max(1, width)).round().astype(int)
    return [[heatmap_glyph(float(v[r, c]), scale) for c in cols] for r in rows[::-1]]


class SignHeatmap(Widget):
    """f − g on the d = 2 grid as glyphs (rows = y, larger y on top), resampled to its size."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.values: np.ndarray | None = None
        self.scale = 0.0
        self.title = ""

    def set_grid(
        self, values: np.ndarray, reference: np.ndarray, extent: float, label: str = "f−g"
    ) -> None:
        """``values`` (n_y, n_x) = f − g; ``reference`` = g sets the zero threshold."""
        v = np.asarray(values, float)
        vmax = float(np.nanmax(np.abs(v))) if v.size else 0.0
        gmax = float(np.nanmax(np.abs(reference))) if np.size(reference) else 0.0
        self.scale = vmax if vmax > HEATMAP_ZERO_REL * gmax else 0.0
        self.values = v
        self.title = f"{label}, max {_fmt(vmax)}, |x|,|y| ≤ {extent:g}"
        self.refresh()

    def render(self) -> Text:
        if self.values is None:
            return Text("")
        w, h = self.content_size.width, self.content_size.height
        text = Text(no_wrap=True)
        text.append(self.title[:w] + "\n", style="bold")
        for row in heatmap_rows(self.values, self.scale, w, max(1, h - 2)):
            for glyph, color in row:
                text.append(glyph, style=color)
            text.append("\n")
        text.append(f"+*# f>g  -=≡ f<g  {HEAT_ZERO} ≈0"[:w], style="dim")
        return text


def class_rows(
    student: np.ndarray, disagree: np.ndarray | None, width: int, height: int
) -> list[list]:
    """Rows of (glyph, style) cells, top row = largest y: the class grid (n_y, n_x)
    resampled (nearest neighbour) to ``height`` × ``width``; class c is CLASS_GLYPHS[c] in
    PALETTE[2c mod 6] (the colour of output c + 1's line), with CLASS_DISAGREE_STYLE on every
    cell whose block of grid points holds one where ``disagree`` (so a band or a point one
    grid step wide is not lost when the grid is shrunk to the screen)."""
    c = np.asarray(student)
    n_y, n_x = c.shape
    height, width = max(1, height), max(1, width)
    rows = np.linspace(0, n_y - 1, height).round().astype(int)
    cols = np.linspace(0, n_x - 1, width).round().astype(int)
    marks = np.zeros((height, width), dtype=bool)
    if disagree is not None:
        bad = np.asarray(disagree, dtype=bool)
        marks |= bad[np.ix_(rows, cols)]  # nearest (covers upsampling)
        iy, ix = np.nonzero(bad)  # and every grid point into the cell it falls in
        at_y, at_x = (
            np.minimum(iy * height // n_y, height - 1),
            np.minimum(ix * width // n_x, width - 1),
        )
        marks[at_y, at_x] = True
    out = []
    for i, r in enumerate(rows[::-1]):
        cells = []
        for j, col in enumerate(cols):
            k = int(c[r, col])
            glyph = CLASS_GLYPHS[k] if k < len(CLASS_GLYPHS) else "?"
            style = PALETTE[2 * k % 6]
            if marks[height - 1 - i, j]:
                style = f"{CLASS_DISAGREE_STYLE} {style}"
            cells.append((glyph, style))
        out.append(cells)
    return out


class ClassMap(Widget):
    """Class regions on the d = 2 grid (softmax students): the student's class per cell,
    reverse video where the teacher's differs (rows = y, larger y on top), resampled."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.regions: dict | None = None
        self.title = ""

    def set_regions(self, regions: dict) -> None:
        """``regions`` from :func:`core.views.class_regions`."""
        self.regions = regions
        extent = float(regions["x"][-1])
        if regions["agreement"] is not None:  # short: the map is half of a view's width
            wrong = 1.0 - regions["agreement"]
            self.title = f"class≠teacher {wrong:.0%}, |x|,|y|≤{extent:g}"
        elif regions["accuracy"] is not None:
            self.title = f"train acc {regions['accuracy']:.0%}, |x|,|y|≤{extent:g}"
        else:
            self.title = f"class argmax f, |x|,|y|≤{extent:g}"
        self.refresh()

    def render(self) -> Text:
        if self.regions is None:
            return Text("")
        w, h = self.content_size.width, self.content_size.height
        text = Text(no_wrap=True)
        text.append(self.title[:w] + "\n", style="bold")
        r = self.regions
        marks = r["disagree"] if r["disagree"] is not None else r.get("wrong_cells")
        for row in class_rows(r["student"], marks, w, max(1, h - 2)):
            for glyph, style in row:
                text.append(glyph, style=style)
            text.append("\n")
        k = r["n_classes"]
        legend = " ".join(CLASS_GLYPHS[: min(k, len(CLASS_GLYPHS))]) + " class"
        text.append(legend[:w], style="dim")
        what = " ≠ teacher" if r["disagree"] is not None else " wrong label"
        if marks is not None and len(legend) + 5 + len(what) <= w:
            text.append("  ")
            text.append(" 1 ", style=CLASS_DISAGREE_STYLE)
            text.append(what, style="dim")
        return text


class ViewPanel(Vertical):
    """One view: a note line (legend, or why the view does not apply) and its figure(s).

    The screen calls :meth:`request` with the current point while the panel is on screen;
    the panel computes in a thread worker (one at a time, at most every ``LIVE_SECONDS``
    while ``live``) and shows the newest result.
    """

    #: The objective per student spec of the current problem, shared by the panels (a new
    #: spec compiles a new loss); key "problem" holds the problem they belong to.
    _objectives: ClassVar[dict] = {}

    @dataclass(eq=False)
    class Computed(Message):
        key: tuple
        result: ViewResult

    def __init__(self, view: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view = view
        self.result: ViewResult | None = None
        self.computations = 0
        self._wanted: tuple[tuple, ViewInputs] | None = None
        self._shown_key: tuple | None = None
        self._pending: tuple | None = None
        self._last_start = -math.inf
        self._live = False
        self.header = VIEW_TITLES[view]

    def on_mount(self) -> None:
        # "function (5)": the digit that shows this tab, from the screen's tab order.
        tabs = [tab.id for tab in getattr(self.screen, "PLOT_TABS", ())]
        if self.id in tabs and tabs.index(self.id) < len(PLOT_KEYS):
            self.header = f"{VIEW_TITLES[self.view]} ({PLOT_KEYS[tabs.index(self.id)]})"
        self.query_one(".view-note", Static).update(Text(f"{self.header}: computing…"))

    def compose(self) -> ComposeResult:
        yield Static(f"{self.header}: computing…", classes="view-note")
        with Horizontal(classes="view-body"):
            yield ViewPlot(classes="view-plot")
            if self.view == "function":
                yield SignHeatmap(classes="view-heatmap")
                yield ClassMap(classes="view-classes")

    def request(self, inputs: ViewInputs, *, live: bool = False) -> None:
        """Ask for the view at ``inputs`` (main thread; cheap: the work is in a worker)."""
        key = inputs.key(self.view)
        self._wanted = (key, inputs)
        self._live = live
        self._kick()

    def _kick(self) -> None:
        if self._wanted is None or self._pending is not None:
            return
        key, inputs = self._wanted
        if key == self._shown_key:
            return
        wait = self._last_start + LIVE_SECONDS - time.monotonic()
        if self._live and wait > 0:
            self.set_timer(wait, self._kick)
            return
        self._pending = key
        self._last_start = time.monotonic()
        view = self.view

        def job() -> None:
            self.post_message(self.Computed(key, compute_view(view, inputs)))

        self.run_worker(job, thread=True, group=f"view-{view}", exit_on_error=False)

    def on_view_panel_computed(self, message: ViewPanel.Computed) -> None:
        message.stop()
        self._pending = None
        self._shown_key = message.key
        self.computations += 1
        self.show(message.result)
        self._kick()  # a newer point may have been asked for meanwhile

    def wait(self, text: str) -> None:
        """Show ``text`` in the note line until a result arrives."""
        if self.result is None:
            self.query_one(".view-note", Static).update(Text(f"{self.header}: {text}"))

    def show(self, result: ViewResult) -> None:
        """Display ``result`` (main thread; only maps numbers to glyphs)."""
        self.result = result
        note = self.query_one(".view-note", Static)
        body = self.query_one(".view-body")
        if result.reason:
            note.update(Text(f"{self.header}: {result.reason}"))
            body.display = False
            return
        body.display = True
        figure, legend = FIGURES[result.view](result)
        note.update(Text(f"{self.header}: {legend}"))
        self.query_one(ViewPlot).set_figure(figure)
        if result.view == "function":
            regions = result.data.get("classes")
            class_map = self.query_one(ClassMap)
            class_map.display = regions is not None
            if regions is not None:
                class_map.set_regions(regions)
            heat = self.query_one(SignHeatmap)
            grid = result.data.get("grid")
            heat.display = grid is not None and grid["diff"] is not None
            if heat.display:
                several = result.data["line"]["student"].shape[1] > 1
                label = "f₁−g₁" if several else "f−g"  # function_grid's output 0
                heat.set_grid(grid["diff"], grid["teacher"], float(grid["x"][-1]), label)


# ------------------------------------------------------------------------- plot tabs


def _history(run: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(t (m,), θ (m, P)) of the latest segment with the current point's spec, or None."""
    for seg in reversed(run.segments):
        if seg.spec == run.spec and seg.t:
            seg.compact()
            return np.concatenate(seg.t), np.concatenate(seg.theta)
    return None


def view_inputs(view_name: str, view: TrajectoryView) -> ViewInputs | None:
    """The :class:`ViewInputs` of a :class:`TrajectoryView` (main thread), None before a
    problem is built (every view compares with its teacher or needs its loss)."""
    from core.teachers import has_target

    run, problem = view.run, view.problem
    if run is None or problem is None:
        return None
    spec = run.spec
    history = None
    if view_name == "singular":
        from core.views import why_not

        if why_not("singular", spec) is None:
            history = _history(run)
    cache = ViewPanel._objectives

    def objective(s: Any) -> Any:
        if cache.get("problem") is not problem:  # one problem at a time (held, so its id
            cache.clear()  # cannot be reused by another while cached)
            cache["problem"] = problem
        if s not in cache:
            cache[s] = problem.objective_for(s)
        return cache[s]

    return ViewInputs(
        spec,
        np.array(run.theta, dtype=np.float64),
        float(run.t),
        problem.teacher,
        objective,
        None if history is None else history[0],
        None if history is None else history[1],
        view.cursor if view.cursor is not None else float(run.t),
        problem.config.data.loss,
        problem.data if not has_target(problem.teacher) else None,
    )


def _tab(view_name: str) -> PlotTab:
    def make() -> ViewPanel:
        return ViewPanel(view_name)

    def update(panel: Widget, view: TrajectoryView) -> None:
        assert isinstance(panel, ViewPanel)
        inputs = view_inputs(view_name, view)
        if inputs is None:
            panel.wait("waiting for the problem to be built…")
        else:
            panel.request(inputs, live=view.cursor is None)

    return PlotTab(
        f"plot-view-{view_name}", VIEW_TITLES[view_name].capitalize(), make, update, time_axis=False
    )


#: The four view tabs, for :data:`explorer.screens.trajectory.PLOT_TABS`.
VIEW_TABS: tuple[PlotTab, ...] = tuple(
    _tab(name) for name in ("function", "weights", "singular", "slice")
)


__all__ = [
    "FIGURES",
    "VIEW_TABS",
    "ClassMap",
    "SignHeatmap",
    "ViewInputs",
    "ViewPanel",
    "ViewPlot",
    "ViewResult",
    "ViewSeries",
    "compute_view",
    "render_view",
]
