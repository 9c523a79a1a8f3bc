"""Neuron inspector: the per-neuron table, detected channels and a neuron's response.

Everything shown comes from :func:`core.analysis.inspect_point` (an
:class:`~core.analysis.Inspection`); this module only lays it out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from explorer.widgets.plots import HEAT_LEGEND, LinePlot, Series, heatmap_text

COLUMNS = ("#", "w", "b", "a", "‖w‖", "teacher", "cos", "role")
#: The norm column's label when the neurons have a bias: the norm is of (w, b)
#: (core.analysis.NeuronInfo.norm), not of w alone.
NORM_WITH_BIAS = "‖(w,b)‖"


def columns(neurons: list[Any]) -> tuple[str, ...]:
    """The table's column labels for these neurons (the norm's says what it includes)."""
    if any(n.b is not None for n in neurons):
        return tuple(NORM_WITH_BIAS if c == "‖w‖" else c for c in COLUMNS)
    return COLUMNS


def role_text(role: str) -> str:
    """A neuron's role as shown: "–" when it has none (no copy, average, channel or dead)."""
    return role or "–"


def neuron_row(n: Any) -> tuple[str, ...]:
    """The table cells of a :class:`core.analysis.NeuronInfo` (in :data:`COLUMNS` order)."""
    a = np.atleast_1d(np.asarray(n.a, float))
    return (
        str(n.index),
        _vec(n.w),
        _num(n.b, ".2f"),
        # "#" keeps the decimals: 12.0 and 1.00, not 12 and 1 (3 significant digits).
        _vec(a) if a.size > 1 else f"{a[0]:#.3g}",
        f"{n.norm:#.3g}",
        "–" if n.nearest_teacher is None else str(n.nearest_teacher),
        _num(n.cosine, ".3f"),
        role_text(n.role),
    )


def heat_scale(values: np.ndarray) -> str:
    """The heatmap's scale: the densest glyph stands for max |value| (the ramp of
    :func:`explorer.widgets.plots.heatmap_text` is relative), and the values' range."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return "no finite values"
    return f"densest = |v| {np.max(np.abs(v)):.3g}; range {v.min():.3g}…{v.max():.3g}"


def _vec(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    arr = np.atleast_1d(np.asarray(v, float))
    if arr.size > 3:
        return "[" + ", ".join(f"{x:.{digits}f}" for x in arr[:3]) + ", …]"
    return "[" + ", ".join(f"{x:.{digits}f}" for x in arr) + "]"


def _num(v: Any, fmt: str = ".3g") -> str:
    return "–" if v is None else format(float(v), fmt)


def channel_lines(channels: list[Any]) -> str:
    """Channels as text: neurons, ε, c, A, w, Δ and the GLU error."""
    if not channels:
        return "no channel detected"
    out = []
    for ch in channels:
        i, j = ch.neurons
        out.append(
            f"[b]channel {i}+{j}[/b]  ε={ch.epsilon:.2e}  c={ch.c:.3g}  A={ch.A:.3g}  "
            f"w={_vec(ch.w)}  Δ={_vec(ch.delta)}  GLU err={ch.glu_error:.1e}"
        )
    return "\n".join(out)


class NeuronInspector(Vertical):
    """Neuron table (cursor picks the neuron), channels, refinement result and response."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result: Any = None  # the Inspection shown

    def compose(self) -> ComposeResult:
        yield Static("paused runs are inspected here (space pauses)", id="inspector-summary")
        yield Static("", id="inspector-refine")
        yield Static("", id="inspector-channels")
        with Horizontal(id="inspector-body"):
            yield DataTable(id="inspector-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="inspector-response-box"):
                yield Static("", id="inspector-heatmap")
                yield LinePlot("response", id="inspector-line")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        self.query_one("#inspector-line").display = False

    def show(self, result: Any) -> None:
        """Display a :class:`core.analysis.Inspection`."""
        self.result = result
        table = self.query_one(DataTable)
        row = table.cursor_row
        rows = [neuron_row(n) for n in result.neurons]
        # Explicit column widths: auto-width columns are re-measured only when the table
        # gets an idle moment, and a table filled while its tab is hidden kept the label
        # widths (one character for w, b, a) on its first showing.
        table.clear(columns=True)
        for j, label in enumerate(columns(result.neurons)):
            table.add_column(label, width=max([len(label), *(len(r[j]) for r in rows)]))
        table.add_rows(rows)
        if table.row_count:
            table.move_cursor(row=min(max(row, 0), table.row_count - 1))
        self.query_one("#inspector-channels", Static).update(channel_lines(result.channels))
        self.query_one("#inspector-summary", Static).update(result.note)
        self._show_response()

    def focus_table(self) -> None:
        """Give the neuron table the keyboard (↑/↓ pick the neuron whose response is shown)."""
        self.query_one(DataTable).focus()

    def show_refine(self, text: str) -> None:
        self.query_one("#inspector-refine", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_response()

    def on_resize(self) -> None:
        # The heatmap is drawn to the response box's size: redraw when the layout settles
        # on another one (the first draw may see the box before its final layout).
        if self.result is not None:
            self._show_response()

    def selected_neuron(self) -> int:
        return max(self.query_one(DataTable).cursor_row, 0)

    def _show_response(self) -> None:
        heat = self.query_one("#inspector-heatmap", Static)
        line = self.query_one("#inspector-line", LinePlot)
        result = self.result
        responses = None if result is None else result.responses
        grid = None if result is None else result.grid
        i = self.selected_neuron()
        if responses is None or grid is None or i >= len(responses):
            heat.display, line.display = True, False
            heat.update("" if result is None else result.response_note)
            return
        r = np.asarray(responses[i])
        if r.ndim == 1:
            heat.display, line.display = False, True
            line.set_series(
                [Series(np.asarray(grid), r, f"neuron {i}", "cyan")], f"neuron {i}: a·σ(w·x+b)"
            )
            line.refresh()
        else:
            heat.display, line.display = True, False
            # The box's size, not the Static's: an auto-height Static still has the
            # size of its previous content (one line) when the heatmap is first drawn.
            size = self.query_one("#inspector-response-box").content_size
            w = max(size.width, 20)
            # Title with the glyph legend, then the scale: two header lines (the ramp
            # is relative to max |v|, so the numbers are what the glyphs mean).
            header = f"neuron {i}: a·σ(w·x+b) on [-3,3]²: {HEAT_LEGEND}\n{heat_scale(r)}"
            # Header rows as wrapped at this width, so the map never runs past the box.
            rows = sum(max(1, -(-len(line) // w)) for line in header.split("\n"))
            h = max(size.height - rows, 6)
            text = Text(header + "\n")
            text.append_text(heatmap_text(r, w, h))
            heat.update(text)
