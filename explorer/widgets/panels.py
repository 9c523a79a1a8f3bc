"""The tabbed trajectory panels shared by the run and replay screens.

Plots (loss, Hessian eigenvalues, current spectrum, weight divergence; keys 1–4 pick the
one shown when the terminal is small), the neuron inspector, and the event log.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import RichLog, TabbedContent, TabPane

from explorer.widgets.inspector import NeuronInspector
from explorer.widgets.plots import LinePlot


def trajectory_tabs(log_max_lines: int | None = None) -> ComposeResult:
    """Yield the Plots / Inspector / Log tabs (use with ``yield from`` inside ``compose``)."""
    with TabbedContent(id="run-tabs", initial="tab-plots"):
        with TabPane("Plots", id="tab-plots"), Grid(id="plot-grid"):
            yield LinePlot(
                "loss  (1)",
                log_x=True,
                log_y=True,
                xlabel="t",
                id="plot-loss",
                classes="plot -current",
            )
            yield LinePlot(
                "Hessian λ  (2)",
                log_x=True,
                log_y=True,
                xlabel="t",
                id="plot-hessian",
                classes="plot",
            )
            yield LinePlot(
                "spectrum log10|λ|  (3)",
                scatter=True,
                xlabel="eigenvalue #",
                id="plot-spectrum",
                classes="plot",
            )
            yield LinePlot(
                "weights  (4)",
                log_x=True,
                log_y=True,
                xlabel="t",
                id="plot-weights",
                classes="plot",
            )
        with TabPane("Inspector", id="tab-inspector"):
            yield NeuronInspector(id="inspector")
        with TabPane("Log", id="tab-log"), Vertical():
            yield RichLog(id="event-log", wrap=True, markup=True, max_lines=log_max_lines)
