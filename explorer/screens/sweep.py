"""Sweep screen: a sweep folder (``explorer sweep … --out DIR``) in two tabs.

* **Runs** — rows of ``DIR/summary.csv`` (:mod:`core.sweep.results`): run name, grid
  values, outcome, classification, analysed loss (the refined point's, else the flow's
  end: what the outcome is judged on), final loss (the flow's end), wall time.  Keys:
  o / l / w / n sort by outcome, analysed loss, wall time, name (pressing the same key
  again reverses).
* **Atlas** — rows of ``DIR/atlas.csv`` (:mod:`core.sweep.atlas`): the distinct critical
  points the runs ended at, modulo the network's symmetries, by loss, with how many runs
  reached each and which.

``a`` switches between the tabs; Enter opens the selected run's session (on the atlas,
the entry's representative run) in the replay screen, loaded in a worker thread; r
reloads both tables (a sweep still running rewrites summary.csv after every run, and
atlas.csv when it ends).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, TabbedContent, TabPane

from explorer.messages import SessionLoaded
from explorer.widgets.status import StatusLine

#: Sort keys: binding action argument → (summary.csv column, label).
SORTS = {
    "outcome": ("outcome", "outcome"),
    "loss": ("analysed_loss", "analysed loss"),
    "wall": ("wall_seconds", "wall time"),
    "name": ("run", "name"),
}

#: The atlas's ``runs`` cell is cut after this many characters ("… +n" more runs).
RUNS_CHARS = 48


def _number(text: str) -> float:
    """A CSV cell as a float; empty/invalid cells sort last (as +inf)."""
    try:
        x = float(text)
    except (TypeError, ValueError):
        return math.inf
    return x if math.isfinite(x) else math.inf


def sort_rows(rows: list[dict[str, str]], by: str, reverse: bool = False) -> list[dict]:
    """Rows sorted by ``by`` (a key of :data:`SORTS`); outcomes in :data:`core.sweep.OUTCOMES`
    order (zero-loss first, failed last), ties broken by analysed loss then name."""
    from core.sweep import OUTCOMES

    rank = {o: i for i, o in enumerate(OUTCOMES)}
    column = SORTS[by][0]

    def key(r: dict[str, str]) -> tuple:
        tail = (_number(r.get("analysed_loss", "")), r.get("run", ""))
        if by == "outcome":
            return (rank.get(r.get("outcome", ""), len(rank)), *tail)
        if by == "name":
            return (r.get("run", ""),)
        return (_number(r.get(column, "")), *tail)

    return sorted(rows, key=key, reverse=reverse)


class SweepScreen(Screen):
    """The runs of one sweep output folder; Enter replays one."""

    BINDINGS: ClassVar[list] = [
        Binding("enter", "open", "Replay run", id="sweep.open"),
        Binding("a", "toggle_atlas", "Runs/Atlas", id="sweep.atlas"),
        Binding("o", "sort('outcome')", "Sort: outcome", id="sweep.sort-outcome"),
        Binding("l", "sort('loss')", "Sort: loss", id="sweep.sort-loss"),
        Binding("w", "sort('wall')", "Sort: wall", id="sweep.sort-wall", show=False),
        Binding("n", "sort('name')", "Sort: name", id="sweep.sort-name", show=False),
        Binding("r", "reload", "Reload", id="sweep.reload"),
        Binding("question_mark", "app.help", "Help", id="sweep.help"),
        Binding("q", "app.quit", "Quit", id="sweep.quit"),
    ]

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.rows: list[dict[str, str]] = []
        self.columns: list[str] = []
        self.atlas: list[dict[str, str]] = []
        self.atlas_note = ""
        self.sort_by = "outcome"
        self.reverse = False
        self.error = ""

    def compose(self) -> ComposeResult:
        yield StatusLine("", id="status")
        with TabbedContent(id="sweep-tabs"):
            with TabPane("Runs", id="tab-runs"):
                yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Atlas", id="tab-atlas"):
                yield DataTable(id="atlas-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one("#sweep-table", DataTable).focus()

    # -- data ---------------------------------------------------------------------

    def load_rows(self) -> None:
        """Read ``summary.csv``; the columns shown are run, grid values, then results."""
        from core.sweep import RUN_COLUMNS, SUMMARY_CSV, read_summary_csv

        path = self.folder / SUMMARY_CSV
        try:
            self.rows = read_summary_csv(path)
        except (OSError, ValueError) as e:
            self.rows, self.columns = [], []
            self.error = f"{path}: cannot read ({e})"
            return
        self.error = ""
        header = list(self.rows[0]) if self.rows else ["run"]
        grid = [c for c in header if c != "run" and c not in RUN_COLUMNS]
        # outcome is judged on analysed_loss (the refined point's, else the flow's end):
        # it stands beside the outcome, the flow's final_loss after it.
        shown = ("outcome", "classification", "analysed_loss", "final_loss", "wall_seconds")
        self.columns = ["run", *grid, *shown]
        self.load_atlas()

    def load_atlas(self) -> None:
        """Read ``atlas.csv`` (absent while a sweep's first pass is still running)."""
        from core.sweep import ATLAS_CSV, read_summary_csv

        path = self.folder / ATLAS_CSV
        self.atlas, self.atlas_note = [], ""
        if not path.is_file():
            self.atlas_note = "no atlas.csv yet: it is written when the sweep ends"
            return
        try:
            self.atlas = read_summary_csv(path)
        except (OSError, ValueError) as e:
            self.atlas_note = f"{path}: cannot read ({e})"

    def _cell(self, column: str, value: str) -> str:
        if column in ("analysed_loss", "final_loss", "loss") and value:
            return f"{float(value):.4e}"
        if column == "wall_seconds" and value:
            return f"{float(value):.2f}"
        if column == "runs" and len(value) > RUNS_CHARS:
            names, shown = value.split(";"), []
            while names and len(";".join([*shown, names[0]])) <= RUNS_CHARS:
                shown.append(names.pop(0))
            return f"{';'.join(shown)} … +{len(names)}"
        return value or "-"

    def refresh_table(self) -> None:
        table = self.query_one("#sweep-table", DataTable)
        table.clear(columns=True)
        for c in self.columns:
            table.add_column(c, key=c)
        for row in sort_rows(self.rows, self.sort_by, self.reverse):
            table.add_row(*(self._cell(c, row.get(c, "")) for c in self.columns), key=row["run"])
        self.refresh_atlas()
        self.query_one(StatusLine).update(self.status_text())

    def atlas_columns(self) -> list[str]:
        """The atlas columns shown; ``problem`` only when the sweep spans several landscapes."""
        cols = ["id", "classification", "index", "loss", "count", "widths"]
        if len({r.get("problem") for r in self.atlas}) > 1:
            cols.append("problem")
        return [*cols, "runs"]

    def refresh_atlas(self) -> None:
        table = self.query_one("#atlas-table", DataTable)
        table.clear(columns=True)
        cols = self.atlas_columns()
        for c in cols:
            table.add_column(c, key=c)
        for row in self.atlas:
            cells = [self._cell(c, row.get(c, "")) for c in cols]
            table.add_row(*cells, key=row.get("representative") or None)

    def status_text(self) -> str:
        from core.sweep import OUTCOMES

        if self.error:
            return self.error
        if self.query_one(TabbedContent).active == "tab-atlas":
            if self.atlas_note:
                return f"{self.folder}  {self.atlas_note}"
            n = sum(int(r.get("count") or 0) for r in self.atlas)
            return f"{self.folder}  {len(self.atlas)} distinct critical points of {n} runs"
        counts = {o: sum(r.get("outcome") == o for r in self.rows) for o in OUTCOMES}
        parts = " · ".join(f"{o} {n}" for o, n in counts.items() if n)
        order = "↓" if self.reverse else "↑"
        return (
            f"{self.folder}  {len(self.rows)} runs  {parts}   "
            f"sorted by {SORTS[self.sort_by][1]} {order}"
        )

    # -- actions ------------------------------------------------------------------

    def action_reload(self) -> None:
        self.load_rows()
        self.refresh_table()

    def action_toggle_atlas(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "tab-runs" if tabs.active == "tab-atlas" else "tab-atlas"

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Focus the shown table (its keys: Enter, arrows) and say what it shows."""
        table_id = "#atlas-table" if event.pane.id == "tab-atlas" else "#sweep-table"
        self.query_one(table_id, DataTable).focus()
        self.query_one(StatusLine).update(self.status_text())

    def action_sort(self, by: str) -> None:
        self.reverse = (not self.reverse) if by == self.sort_by else False
        self.sort_by = by
        self.refresh_table()

    def selected_run(self) -> str | None:
        """The run under the cursor of the shown table (on the atlas: the representative)."""
        atlas = self.query_one(TabbedContent).active == "tab-atlas"
        table = self.query_one("#atlas-table" if atlas else "#sweep-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return None if key.value is None else str(key.value)

    def action_open(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.load_session(run)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.load_session(str(event.row_key.value))

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load_session(self, run: str) -> None:
        from core.session import SessionError, load_session

        try:
            session = load_session(self.folder / run)
        except SessionError as e:
            self.post_message(SessionLoaded(run, error=str(e)))
            return
        self.post_message(SessionLoaded(run, session=session))

    def on_session_loaded(self, message: SessionLoaded) -> None:
        if message.error:
            self.notify(message.error, title=f"cannot open {message.run}", severity="error")
            return
        from explorer.screens.replay import ReplayScreen

        self.app.push_screen(ReplayScreen(message.session))
