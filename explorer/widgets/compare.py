"""The method-comparison plot tabs: flow vs GD / SGD / Adam from one θ₀ (:mod:`core.compare`).

Two :class:`~explorer.widgets.panels.PlotTab` s read ``view.comparison`` (a
:class:`core.compare.Comparison`: a replayed session's, or the one the run screen's ``k``
computed): the loss of every method over t on one plot, and each discrete method's
distance ‖θ_method(t) − θ_flow(t)‖ to the flow.  Nothing is computed here.
"""

from __future__ import annotations

import numpy as np

from explorer.widgets.panels import PlotTab, TrajectoryView
from explorer.widgets.plots import LinePlot, Series, loss_offset

#: A colour per discrete method (the flow is white).
METHOD_COLORS = {"gd": "green", "sgd": "yellow", "adam": "magenta"}
NO_COMPARISON = (
    "no comparison yet: press k on the run screen (flow vs GD/Adam from θ₀), or "
    "explorer compare CONFIG --out DIR"
)


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y)
    return np.asarray(x)[keep], np.asarray(y)[keep]


def _cut(reason: str) -> str:
    return "" if reason == "t_max" else f" ({reason})"


def update_compare_loss(plot: LinePlot, view: TrajectoryView) -> None:
    """L(θ_m(t)) for the flow and each method, t = k·lr for the discrete ones; a loss with
    values < 0 as L − min L over all of them (:func:`loss_offset`), said in the title."""
    cmp = view.comparison
    if cmp is None:
        plot.set_series([], note=NO_COMPARISON)
        return
    offset = loss_offset(cmp.flow_loss, *(tr.loss for tr in cmp.traces))
    flow_label = "flow" + _cut(cmp.flow_stop_reason)
    series = [Series(cmp.flow_t, cmp.flow_loss - offset, flow_label, "white")]
    for tr in cmp.traces:
        label = f"{tr.method} lr={tr.lr:g}" + _cut(tr.stop_reason)
        t, loss = _finite(tr.t, tr.loss)
        series.append(Series(t, loss - offset, label, METHOD_COLORS[tr.method]))
    what = f"loss L − min L, min L = {offset:.4g}" if offset else "loss"
    plot.set_series(series, title=f"flow vs GD/Adam: {what}  (9)")


def update_compare_distance(plot: LinePlot, view: TrajectoryView) -> None:
    """‖θ_m(t) − θ_flow(t)‖₂ per method; the title says how many θ_flow were interpolated."""
    cmp = view.comparison
    if cmp is None:
        plot.set_series([], note=NO_COMPARISON)
        return
    series, interpolated, total = [], 0, 0
    for tr in cmp.traces:
        # d = 0 at t = 0 (the same θ₀) has no place on a log axis.
        t, d = _finite(tr.t, np.where(tr.distance > 0, tr.distance, np.nan))
        series.append(Series(t, d, tr.method, METHOD_COLORS[tr.method]))
        interpolated += int(tr.interpolated.sum())
        total += len(tr.t)
    title = f"‖θ−θ_flow‖ at t = k·lr; θ_flow interpolated at {interpolated}/{total}  (0)"
    plot.set_series(series, title=title, note="every distance is 0" if not series else "")


COMPARE_TABS: tuple[PlotTab, ...] = (
    PlotTab(
        "plot-compare-loss",
        "Compare: loss",
        lambda: LinePlot("flow vs GD/Adam: loss  (9)", log_x=True, log_y=True, xlabel="t"),
        update_compare_loss,
        time_axis=False,
    ),
    PlotTab(
        "plot-compare-distance",
        "Compare: distance",
        lambda: LinePlot("‖θ−θ_flow‖  (0)", log_x=True, log_y=True, xlabel="t = k·lr"),
        update_compare_distance,
        time_axis=False,
    ),
)
