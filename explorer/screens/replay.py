"""Replay screen: scrub through a saved session; every plot and the inspector follow t.

Keys: ←/→ one saved point, PgUp/PgDn (or [ ]) a tenth of the run, Home/End the ends,
space plays/pauses (advancing about 1 % of the run per frame at 5 Hz).  The time plots
show the whole run with a cursor at the replayed time; the spectrum, weights and
inspector show the replayed point.  The inspector (i) analyses θ at the current point
with :mod:`core.analysis`, in a worker, and is refreshed automatically when the
scrubber rests.  ``c`` continues a new live run from the replayed state (a branch,
:mod:`explorer.branch`).  The narration line (:mod:`explorer.widgets.narration`) says
what the flow does at the replayed time.  Plot keys, tabs and help come from
:class:`~explorer.screens.trajectory.TrajectoryScreen`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, ProgressBar, RichLog, TabbedContent

from explorer.messages import BuildDone, InspectDone, TaskFailed
from explorer.screens.trajectory import TrajectoryScreen
from explorer.watch import session_explanation
from explorer.widgets.inspector import NeuronInspector
from explorer.widgets.narration import NarrationLine, WatchPanel, replay_job
from explorer.widgets.panels import TrajectoryView, trajectory_tabs
from explorer.widgets.status import StatusLine, format_status
from explorer.worker import (
    LiveSegment,
    RunState,
    neuron_series,
    run_task,
    session_state,
    snapshot_spectrum,
)

PLAY_HZ = 5


class ReplayScreen(TrajectoryScreen):
    """Scrub a :class:`core.session.Session`."""

    BINDINGS: ClassVar[list] = [
        Binding("space", "toggle_play", "Play/Pause", id="replay.play", priority=True),
        Binding("right", "step(1)", "Step", id="replay.next", priority=True),
        Binding("left", "step(-1)", "Back", id="replay.prev", priority=True),
        Binding(
            "pagedown,right_square_bracket",
            "jump(1)",
            "+10%",
            id="replay.jump",
            show=False,
            priority=True,
        ),
        Binding(
            "pageup,left_square_bracket",
            "jump(-1)",
            "−10%",
            id="replay.back",
            show=False,
            priority=True,
        ),
        Binding("home", "go(0)", "Start", id="replay.start", show=False, priority=True),
        Binding("end", "go(-1)", "End", id="replay.end", show=False, priority=True),
        Binding("i", "inspect", "Inspect", id="replay.inspect"),
        # Opened from another screen (the sweep view's Enter): Esc / b return to it.
        Binding("escape,b", "back", "Back to the list", id="replay.to-list"),
        # ↑/↓ pick the inspector's neuron without first focusing its table (Tab); a
        # focused table takes them itself.
        Binding("down", "neuron(1)", "Next neuron", id="replay.neuron-next", show=False),
        Binding("up", "neuron(-1)", "Previous neuron", id="replay.neuron-prev", show=False),
        Binding("c", "branch", "Continue from here (branch)", id="replay.branch", show=False),
        Binding("w", "toggle_watch", "What to watch", id="replay.watch", show=False),
        Binding("question_mark", "app.help", "Help", id="replay.help"),
        Binding("q", "app.quit", "Quit", id="replay.quit"),
    ]

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        # Global index → (segment, position in segment).
        self.index = [(s, j) for s, seg in enumerate(session.segments) for j in range(len(seg))]
        if not self.index:
            raise ValueError("session has no trajectory points to replay")
        self.position = len(self.index) - 1
        self.playing = False
        self.problem: Any = None
        self._summaries: dict[int, tuple[list[float], list, list[float]]] = {}
        self._spectra_cache: dict[int, Any] = {}
        self._drawn = -1
        self._segments: list[LiveSegment] | None = None
        self._rest = 0
        self._inspected = -1
        self.last_inspection: Any = None  # a core.analysis.Inspection

    def compose(self) -> ComposeResult:
        yield StatusLine("", id="status")
        yield ProgressBar(total=max(len(self.index) - 1, 1), show_eta=False, id="scrubber")
        yield NarrationLine(lambda: replay_job(self), id="narration")
        yield WatchPanel(session_explanation(self.session), keys_first=True, id="watch")
        yield from trajectory_tabs(self.PLOT_TABS)
        yield Footer()

    def on_mount(self) -> None:
        log = self.query_one("#event-log", RichLog)
        log.write(f"session: {self.session.path or ''}  config: {self.session.config.source}")
        for e in self.session.events:
            extra = {k: v for k, v in e.items() if k not in ("kind", "t", "wall", "time")}
            t = e.get("t")
            log.write(f"t={t if t is None else format(t, '.4g')}  {e.get('kind')}  {extra}")
        self.set_interval(1 / PLAY_HZ, self._tick)
        self._build_worker()

    # -- state at a position ----------------------------------------------------

    def _summary(self, s: int) -> tuple[list[float], list, list[float]]:
        """Per-point |a_i| and closest-pair distance of segment s (computed once)."""
        if s not in self._summaries:
            seg = self.session.segments[s]
            self._summaries[s] = neuron_series(seg.spec, seg.t, seg.theta)
        return self._summaries[s]

    def _spectrum(self, n: int) -> Any:
        if n not in self._spectra_cache:
            self._spectra_cache[n] = snapshot_spectrum(self.session, n)
        return self._spectra_cache[n]

    def _whole_segments(self) -> list[LiveSegment]:
        """The session's segments as RunState segments (built once, arrays shared)."""
        if self._segments is None:
            self._segments = [LiveSegment.from_saved(seg) for seg in self.session.segments]
        return self._segments

    def state_at(self, k: int) -> RunState:
        """A :class:`RunState` of the whole session whose current point is global point k
        (:func:`explorer.worker.session_state`, from what this screen keeps)."""
        s, j = self.index[k]
        return session_state(
            self.session,
            s,
            j,
            segments=self._whole_segments(),
            neurons=self._summary(s),
            spectrum=self._spectrum,
        )

    def view(self) -> TrajectoryView:
        """The whole session, the cursor at the replayed point, its events and phases."""
        state = self.state_at(self.position)
        return TrajectoryView(
            state,
            state.t,
            self.session.events,
            self._session_phases(),
            self.problem,
            self.session.comparison,
        )

    def _session_phases(self) -> list:
        def compute() -> list:
            from core.phases import session_phases

            return session_phases(self.session)

        return self.phases_for("session", compute)

    # -- drawing ------------------------------------------------------------------

    def _tick(self) -> None:
        if self.playing:
            step = max(1, len(self.index) // 100)
            if self.position >= len(self.index) - 1:
                self.playing = False
            else:
                self.position = min(self.position + step, len(self.index) - 1)
        self._redraw()
        # Inspect automatically once the scrubber has rested for two frames.
        self._rest = 0 if self.playing or self._drawn != self.position else self._rest + 1
        if (
            self._rest == 2
            and self.problem is not None
            and self._inspected != self.position
            and self.query_one(TabbedContent).active == "tab-inspector"
        ):
            self.action_inspect()

    def _redraw(self) -> None:
        if self._drawn != self.position:
            self._drawn = self.position
            self.touch()
            self._update_status()
        self.refresh_plots()

    def _update_status(self) -> None:
        s, j = self.index[self.position]
        seg = self.session.segments[s]
        self.query_one("#scrubber", ProgressBar).update(progress=self.position)
        mode = "playing" if self.playing else "replay"
        label = f"{mode} {self.position + 1}/{len(self.index)}"
        t, loss, gnorm = float(seg.t[j]), float(seg.loss[j]), float(seg.grad_norm[j])
        text = format_status(label, t, loss, gnorm, 0, None).replace("  steps=0", "")
        self.query_one(StatusLine).update(text)

    # -- actions --------------------------------------------------------------------

    def action_toggle_play(self) -> None:
        if not self.playing and self.position >= len(self.index) - 1:
            self.position = 0
        self.playing = not self.playing

    def action_step(self, d: int) -> None:
        self.playing = False
        self.position = int(np.clip(self.position + d, 0, len(self.index) - 1))
        self._redraw()

    def action_jump(self, d: int) -> None:
        self.action_step(d * max(1, len(self.index) // 10))

    def action_go(self, where: int) -> None:
        self.playing = False
        self.position = 0 if where == 0 else len(self.index) - 1
        self._redraw()

    def _opened_from_a_screen(self) -> bool:
        """Whether a screen of ours lies beneath (the first one is Textual's default)."""
        stack = self.app.screen_stack
        return self in stack and stack.index(self) > 1

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "back":
            return self._opened_from_a_screen()  # no "Back" key without a way back
        return True

    def action_neuron(self, d: int) -> None:
        """Move the inspector's neuron selection (its response plot follows)."""
        from textual.widgets import DataTable

        if self.query_one(TabbedContent).active != "tab-inspector":
            return
        table = self.query_one(NeuronInspector).query_one(DataTable)
        if table.row_count:
            table.move_cursor(row=int(np.clip(table.cursor_row + d, 0, table.row_count - 1)))

    def action_back(self) -> None:
        """Back to the screen that opened this replay (the sweep's table of runs)."""
        if self._opened_from_a_screen():
            self.playing = False
            self.app.pop_screen()

    def action_toggle_watch(self) -> None:
        if not self.query_one(WatchPanel).toggle():
            self.notify("no what-to-watch text: this session is not a preset's", timeout=3)

    def action_branch(self) -> None:
        """A new live run from the state at the cursor (:mod:`explorer.branch`)."""
        from explorer.branch import branch_from_replay

        self.playing = False
        branch_from_replay(self)

    def action_inspect(self) -> None:
        if self.problem is None:
            self.notify("still rebuilding the problem from the session's config…")
            return
        self.query_one(TabbedContent).active = "tab-inspector"
        s, j = self.index[self.position]
        seg = self.session.segments[s]
        spec, theta, t = seg.spec, np.asarray(seg.theta[j]), float(seg.t[j])
        self._inspected = self.position
        problem = self.problem
        # The segment's last state: core marks the pairs it confirms as forming at t when
        # both lie in one channel phase (core.analysis.mark_forming_channels).
        phases = list(self._session_phases())
        last_theta, t_last = np.asarray(seg.theta[-1]), float(seg.t[-1])

        def job():
            from core.analysis import (
                analysis_inputs,
                detect_channels,
                inspect_point,
                mark_forming_channels,
            )

            objective = problem.objective_for(spec)
            inspection = inspect_point(objective, theta, problem.teacher, t)
            ahead = detect_channels(spec, last_theta, analysis_inputs(objective))
            inspection = mark_forming_channels(inspection, ahead, t_last, phases=phases)
            return InspectDone(inspection)

        self._task_worker("inspect", job)

    # -- workers --------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="task")
    def _build_worker(self) -> None:
        def job():
            from core.problem import build_problem

            return BuildDone(build_problem(self.session.config))

        run_task("build", job, self.post_message)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect")
    def _task_worker(self, job: str, fn: Any) -> None:
        run_task(job, fn, self.post_message)

    def on_build_done(self, message: BuildDone) -> None:
        import gc

        gc.freeze()  # keep full collections (and their pauses) small; see run.py
        self.problem = message.problem
        self.touch()  # plots that need the problem (teacher, data) can draw now

    def on_inspect_done(self, message: InspectDone) -> None:
        self.last_inspection = message.inspection
        self.query_one(NeuronInspector).show(message.inspection)

    def on_task_failed(self, message: TaskFailed) -> None:
        self.query_one("#event-log", RichLog).write(f"[red]{message.job} failed: {message.error}")
        self.notify(message.error, title=f"{message.job} failed", severity="error", timeout=8)
