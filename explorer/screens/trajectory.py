"""The base of the run and replay screens: trajectory tabs, their keys, plot updates.

Both screens show one trajectory in the same Plots / Inspector / Log tabs; they differ in
where the trajectory comes from (a running flow, a saved session) and in their own keys.
:class:`TrajectoryScreen` holds what they share: the plot tabs and the keys that pick one,
the plot-control keys (y zoom, pan, auto-fit, log/linear, series, markers), the tab keys,
and pushing a :class:`~explorer.widgets.panels.TrajectoryView` into the plots that are on
screen — with markers for events and phase boundaries (:func:`core.phases.detect_phases`)
and, in replay, the cursor.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import TabbedContent

from explorer.screens.dialogs import PromptScreen
from explorer.widgets.compare import COMPARE_TABS
from explorer.widgets.panels import TRAJECTORY_PLOTS, PlotTab, TrajectoryView
from explorer.widgets.plots import MARKER_GLYPHS, LinePlot, Marker
from explorer.widgets.views import VIEW_TABS

#: The plot tabs of both screens, in key order (1–9, then 0).  Add new ones here.
PLOT_TABS: tuple[PlotTab, ...] = TRAJECTORY_PLOTS + VIEW_TABS + COMPARE_TABS
PLOT_KEYS = "1234567890"
#: Marker colours per kind (events of the session log; phase boundaries are "phase").
MARKER_COLORS = {"refine": "green", "surgery": "magenta", "pause": "yellow", "resume": "yellow"}
PHASE_COLOR = "blue"


def plot_bindings(tabs: Sequence[PlotTab]) -> list[Binding]:
    """Keys 1–9, 0 → ``show_plot(n)`` for each tab (ids ``trajectory.plot<n+1>``)."""
    return [
        Binding(key, f"show_plot({n})", tab.name, id=f"trajectory.plot{n + 1}", show=False)
        for n, (key, tab) in enumerate(zip(PLOT_KEYS, tabs, strict=False))
    ]


def event_markers(events: Iterable[dict], phases: Iterable[Any]) -> list[Marker]:
    """Vertical markers: one per event with a time (refine, surgery, pause, resume) and one
    at the start of every phase after the first (glyph by phase kind)."""
    out = []
    for e in events:
        kind, t = e.get("kind"), e.get("t")
        if kind in MARKER_COLORS and t is not None:
            out.append(Marker(float(t), kind, MARKER_GLYPHS[kind], MARKER_COLORS[kind]))
    for p in list(phases)[1:]:
        out.append(Marker(float(p.t_start), p.kind, MARKER_GLYPHS.get(p.kind, "|"), PHASE_COLOR))
    return sorted(out, key=lambda m: m.x)


class TrajectoryScreen(Screen):
    """Shared keys and plot handling of :class:`RunScreen` and :class:`ReplayScreen`.

    Subclasses compose ``trajectory_tabs(self.PLOT_TABS)``, implement :meth:`view` and
    bind ``?`` to ``app.help`` themselves (the footer lists base keys first);
    they call :meth:`touch` when their data change and :meth:`refresh_plots` from a timer.

    How to add a plot tab: write a :class:`~explorer.widgets.panels.PlotTab` — ``id``,
    ``name``, ``make()`` returning the widget (a :class:`LinePlot` or any widget), and
    ``update(widget, view)`` filling it from a :class:`TrajectoryView` (the trajectory, the
    current point ``view.run.theta``/``spec``, the replay ``cursor``, ``events``,
    ``phases``, ``problem``) — and append it to :data:`PLOT_TABS` in this module.  It
    gets the next digit key, a line in the help screen, a place in the plot grid (one
    plot at a time below 100×32, pages of 2×2 above) and an update whenever the data
    change while it is on screen.  A LinePlot also gets the plot-control keys, and with
    ``time_axis=True`` the event/phase markers and the replay cursor.
    """

    HELP_TITLE = "Run and replay: plots"
    PLOT_TABS: ClassVar[tuple[PlotTab, ...]] = PLOT_TABS

    BINDINGS: ClassVar[list] = [
        *plot_bindings(PLOT_TABS),
        Binding(
            "plus,equals_sign", "zoom_y(1)", "Zoom in (y)", id="trajectory.zoom-in", show=False
        ),
        Binding("minus", "zoom_y(-1)", "Zoom out (y)", id="trajectory.zoom-out", show=False),
        Binding("u", "pan_y(1)", "Move y window up", id="trajectory.pan-up", show=False),
        Binding("d", "pan_y(-1)", "Move y window down", id="trajectory.pan-down", show=False),
        Binding("f", "fit_y", "Auto-fit y (robust / full)", id="trajectory.fit", show=False),
        Binding("g", "toggle_scale", "Log / linear y", id="trajectory.scale", show=False),
        Binding("v", "series", "Show / hide series", id="trajectory.series", show=False),
        Binding("o", "toggle_markers", "Markers on / off", id="trajectory.markers", show=False),
        Binding("p", "tab('tab-plots')", "Plots tab", id="trajectory.tab-plots", show=False),
        Binding(
            "n", "tab('tab-inspector')", "Inspector tab", id="trajectory.tab-inspector", show=False
        ),
        Binding("l", "tab('tab-log')", "Log tab", id="trajectory.tab-log", show=False),
    ]

    #: While a flow runs, each visible plot is refreshed at most this often (seconds),
    #: one plot per timer tick (a figure costs ~50–100 ms of drawing, in another process).
    PLOT_SECONDS = 0.8

    def __init__(self) -> None:
        super().__init__()
        self.current_plot = 0
        self._version = 0
        self._plotted: dict[str, int] = {}
        self._last_plot: dict[str, float] = {}
        self._phases_key: Any = None
        self._phases: list = []
        self._phases_at = -float("inf")

    # -- what subclasses provide ------------------------------------------------------

    def view(self) -> TrajectoryView | None:
        """The data to show now (None: nothing yet)."""
        raise NotImplementedError

    def touch(self) -> None:
        """Mark the data as changed: every plot is stale."""
        self._version += 1

    # -- phases ------------------------------------------------------------------------

    def phases_for(self, key: Any, compute: Any, min_seconds: float = 0.0) -> list:
        """``compute()`` (a list of :class:`core.phases.Phase`) cached under ``key``, and
        recomputed for a new key at most every ``min_seconds``; [] when :mod:`core.phases`
        is not importable."""
        now = time.monotonic()
        if key != self._phases_key and now - self._phases_at >= min_seconds:
            try:
                self._phases = list(compute())
            except ImportError:
                self._phases = []
            self._phases_key, self._phases_at = key, now
        return self._phases

    # -- plots -------------------------------------------------------------------------

    def plot_widget(self, n: int) -> Any:
        return self.query_one("#" + self.PLOT_TABS[n].id)

    def refresh_plots(self, *, live: bool = False) -> None:
        """Push the view into the plots on screen whose data changed.

        ``live`` (a flow is running): at most one plot per call, each at most every
        PLOT_SECONDS, the longest-waiting first — spreads the repaint work.
        """
        now = time.monotonic()
        stale = [
            tab
            for tab in self.PLOT_TABS
            if self._plotted.get(tab.id) != self._version
            and _on_screen(self.query_one("#" + tab.id))
            and not (live and now - self._last_plot.get(tab.id, 0.0) < self.PLOT_SECONDS)
        ]
        if live:
            stale = sorted(stale, key=lambda tab: self._last_plot.get(tab.id, 0.0))[:1]
        if not stale:
            return
        view = self.view()
        if view is None:
            return
        markers = event_markers(view.events, view.phases)
        for tab in stale:
            widget = self.query_one("#" + tab.id)
            tab.update(widget, view)
            if isinstance(widget, LinePlot):
                if tab.time_axis:
                    widget.set_markers(markers, view.cursor)
                widget.flush()
            self._plotted[tab.id] = self._version
            self._last_plot[tab.id] = now

    # -- actions -------------------------------------------------------------------------

    def action_show_plot(self, n: int) -> None:
        """Show plot n (at ≥ 100×32 its 2×2 page) and make it the one the plot keys act on."""
        if not 0 <= n < len(self.PLOT_TABS):
            return
        self.query_one(TabbedContent).active = "tab-plots"
        self.current_plot = n
        page = n // 4
        for k in range(len(self.PLOT_TABS)):
            widget = self.plot_widget(k)
            widget.set_class(k == n, "-current")
            widget.set_class(k // 4 == page, "-page")
            if isinstance(widget, LinePlot):
                widget.refresh()  # the legend marks the current plot
        self.call_after_refresh(self.refresh_plots)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def _current_line_plot(self) -> LinePlot | None:
        widget = self.plot_widget(self.current_plot)
        if not isinstance(widget, LinePlot):
            self.notify("plot keys act on line plots (pick one with 1–4)", severity="warning")
            return None
        if self.query_one(TabbedContent).active != "tab-plots":
            self.query_one(TabbedContent).active = "tab-plots"
        return widget

    def _control(self, change: Any) -> None:
        plot = self._current_line_plot()
        if plot is not None:
            self.notify(change(plot), timeout=2)
            plot.flush()

    def action_zoom_y(self, step: int) -> None:
        self._control(lambda p: p.zoom_y(step))

    def action_pan_y(self, step: int) -> None:
        self._control(lambda p: p.pan_y(step))

    def action_fit_y(self) -> None:
        self._control(lambda p: p.cycle_fit())

    def action_toggle_scale(self) -> None:
        self._control(lambda p: p.toggle_scale())

    def action_toggle_markers(self) -> None:
        self._control(lambda p: p.toggle_markers())

    def action_series(self) -> None:
        plot = self._current_line_plot()
        if plot is None:
            return
        names = [
            f"{n + 1} {s.label or '(unnamed)'}" + (" (hidden)" if n in plot.control.hidden else "")
            for n, s in enumerate(plot.plot.series)
        ]
        if not names:
            self.notify("this plot has no series yet", severity="warning")
            return

        def answer(text: str | None) -> None:
            if not text:
                return
            try:
                picks = [int(p) for p in text.replace(",", " ").split()]
            except ValueError:
                self.notify("series: type numbers, e.g. '2' or '1 3'", severity="error")
                return
            self.notify("; ".join(plot.toggle_series(k - 1) for k in picks), timeout=3)
            plot.flush()

        self.app.push_screen(
            PromptScreen("Show / hide series", "numbers to toggle: " + ", ".join(names), ""),
            answer,
        )


def _on_screen(widget: Any) -> bool:
    if isinstance(widget, LinePlot):
        return widget.on_screen
    return bool(widget.display and widget.region.area > 0 and widget.is_on_screen)
