"""The tabbed trajectory panels shared by the run and replay screens, and their plot tabs.

A plot tab (:class:`PlotTab`) is a widget in the Plots pane plus the function that
pushes a :class:`TrajectoryView` (what the screen shows: the trajectory, the current
point, the replay cursor, events, phases) into it.  :data:`TRAJECTORY_PLOTS` are the four
standard ones (loss and ‖∇L‖∞, Hessian λmin/λmax, the current spectrum, weights); the
screens' ``PLOT_TABS`` (:mod:`explorer.screens.trajectory`) decide which are shown.
Every value plotted comes from the run's record or from :mod:`core`; nothing is computed
here but the choice of what to draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widget import Widget
from textual.widgets import RichLog, TabbedContent, TabPane

from explorer.widgets.inspector import NeuronInspector
from explorer.widgets.plots import PALETTE, LinePlot, Series, loss_offset


@dataclass
class TrajectoryView:
    """What a plot tab draws.

    Attributes:
        run: an :class:`explorer.worker.RunState`: the trajectory shown (live: so far;
            replay: the whole session) and, in ``theta``/``t``/``spec``/``spectrum``,
            the current point (replay: the replayed one).
        cursor: the replayed time (a vertical cursor on time plots); None when live.
        events: session events (dicts with "kind" and "t": pause, resume, refine, surgery).
        phases: :class:`core.phases.Phase` list of the trajectory (empty when unknown).
        problem: the :class:`core.problem.Problem` (teacher, data), or None until built.
        comparison: a :class:`core.compare.Comparison` (flow vs GD/Adam), or None.
    """

    run: Any
    cursor: float | None = None
    events: Sequence[dict] = ()
    phases: Sequence[Any] = ()
    problem: Any = None
    comparison: Any = None


@dataclass(frozen=True)
class PlotTab:
    """One plot in the Plots pane.

    Attributes:
        id: the widget id ("plot-loss"); also the key of its plot-control state.
        name: short name for the key help ("Loss": key n shows it).
        make: builds the widget (a :class:`LinePlot`, or any widget).
        update: ``update(widget, view)`` pushes a :class:`TrajectoryView` into the widget
            (called on the main thread, only while the widget is on screen; keep it cheap
            or hand heavy work to a worker).  A :class:`LinePlot` is redrawn afterwards.
        time_axis: x is simulated time t: the screen adds event/phase markers and the
            replay cursor.
    """

    id: str
    name: str
    make: Callable[[], Widget]
    update: Callable[[Widget, TrajectoryView], None]
    time_axis: bool = field(default=True)


# -- the standard plots ----------------------------------------------------------------


LOSS_TITLE = "loss  (1)"


def _update_loss(plot: LinePlot, view: TrajectoryView) -> None:
    """L and ‖∇L‖∞ against t; a loss with values < 0 as L − min L (:func:`loss_offset`)."""
    t, loss = view.run.series("loss")
    _, gnorm = view.run.series("grad_norm")
    offset = loss_offset(loss)
    curve, title = Series(t, loss, "loss", "cyan"), LOSS_TITLE
    if offset:
        curve = Series(t, loss - offset, "L − min L", "cyan")
        title = f"loss L − min L, min L = {offset:.4g}  (1)"
    plot.set_series([curve, Series(t, gnorm, "‖∇L‖∞", "yellow")], title=title)


def _update_hessian(plot: LinePlot, view: TrajectoryView) -> None:
    """λmin and λmax against t, signed (a symlog axis), so a saddle's λmin < 0 shows."""
    run = view.run
    st = np.asarray(run.spec_t, float)
    plot.set_series(
        [
            Series(st, np.asarray(run.spec_max, float), "λmax", "red"),
            Series(st, np.asarray(run.spec_min, float), "λmin", "green"),
        ]
    )


def _update_spectrum(plot: LinePlot, view: TrajectoryView) -> None:
    spectrum = view.run.spectrum
    if spectrum is None:
        plot.set_series([], title="spectrum log10|λ|  (3)")  # no stale index
        return
    ev = np.asarray(spectrum.eigenvalues)
    idx = np.arange(ev.size, dtype=float)
    with np.errstate(divide="ignore"):
        mag = np.log10(np.abs(ev))
    plot.set_series(
        [
            Series(idx[ev > 0], mag[ev > 0], "λ>0", "green"),
            Series(idx[ev <= 0], mag[ev <= 0], "λ≤0", "magenta"),
        ],
        title=f"spectrum log10|λ|: index {spectrum.index}, zero {spectrum.n_zero}  (3)",
    )


def _update_weights(plot: LinePlot, view: TrajectoryView) -> None:
    run = view.run
    weights = []
    if run.a_abs and len({a.shape for a in run.a_abs}) == 1:
        at = np.asarray(run.a_t)
        a = np.stack(run.a_abs)
        for i in range(a.shape[1]):
            weights.append(Series(at, a[:, i], f"|a{i}|" if i < 6 else "", PALETTE[i % 6]))
        weights.append(Series(at, np.asarray(run.pair_dist), "min‖wi−wj‖", "white"))
    note = ""
    if len(run.spec.widths) != 1:
        note = f"{len(run.spec.widths)} hidden layers: per-neuron weights need one"
    plot.set_series(weights, note=note)


TRAJECTORY_PLOTS: tuple[PlotTab, ...] = (
    PlotTab(
        "plot-loss",
        "Loss",
        lambda: LinePlot(LOSS_TITLE, log_x=True, log_y=True, xlabel="t"),
        _update_loss,
    ),
    # λ are recorded ≈10 per decade, with no round-off tail: a dip (a saddle's escape) is
    # real, so this plot fits the full range.
    PlotTab(
        "plot-hessian",
        "Hessian",
        lambda: LinePlot("Hessian λ  (2)", log_x=True, y_scale="symlog", xlabel="t", fit="full"),
        _update_hessian,
    ),
    PlotTab(
        "plot-spectrum",
        "Spectrum",
        lambda: LinePlot("spectrum log10|λ|  (3)", scatter=True, xlabel="eigenvalue #", fit="full"),
        _update_spectrum,
        time_axis=False,
    ),
    PlotTab(
        "plot-weights",
        "Weights",
        # A neuron pair's closest approach (a saddle, a channel) is real, not round-off.
        lambda: LinePlot("weights  (4)", log_x=True, log_y=True, xlabel="t", fit="full"),
        _update_weights,
    ),
)


def trajectory_tabs(
    plots: Sequence[PlotTab] = TRAJECTORY_PLOTS, log_max_lines: int | None = None
) -> ComposeResult:
    """Yield the Plots / Inspector / Log tabs (use with ``yield from`` inside ``compose``)."""
    with TabbedContent(id="run-tabs", initial="tab-plots"):
        with TabPane("Plots", id="tab-plots"), Grid(id="plot-grid"):
            for n, tab in enumerate(plots):
                widget = tab.make()
                widget.id = tab.id
                widget.add_class("plot")
                if n == 0:
                    widget.add_class("-current")
                if n < 4:
                    widget.add_class("-page")  # the first 2×2 page (wide screens)
                yield widget
        with TabPane("Inspector", id="tab-inspector"):
            yield NeuronInspector(id="inspector")
        with TabPane("Log", id="tab-log"), Vertical():
            yield RichLog(id="event-log", wrap=True, markup=True, max_lines=log_max_lines)
