"""Run screen: live plots of a running flow, pause / inspect / refine / surgery / save.

States: ``compiling`` (first chunk not yet in: JAX is compiling) → ``running`` →
``pausing`` (cancel requested, the worker finishes its chunk) → ``paused``; or
``done`` (the generator stopped: t_max, converged, …) / ``error`` (the worker raised
or produced non-finite values; the last finite state is kept).  Actions that move
the point (refine, surgery) run only while nothing flows, in one-off workers
(``busy``), and are logged as session events.

Redraws are throttled: messages only update :class:`~explorer.worker.RunState`;
a 5 Hz timer refreshes the status line and pushes new data to the plots that are on
screen (:meth:`TrajectoryScreen.refresh_plots`) — while the flow runs, one plot per
tick and each at most every ``PLOT_SECONDS``; when idle, all at once.  Figures are
drawn off the event loop (:mod:`explorer.widgets.plots`).  Plot keys, tabs and help
come from :class:`~explorer.screens.trajectory.TrajectoryScreen`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, RichLog, TabbedContent
from textual.worker import get_current_worker

from explorer.messages import (
    BuildDone,
    ChunkArrived,
    CompareDone,
    FlowFailed,
    FlowStopped,
    InspectDone,
    RefineDone,
    SpectrumArrived,
    SurgeryDone,
    TaskFailed,
)
from explorer.screens.dialogs import ConfirmScreen, PromptScreen
from explorer.screens.trajectory import TrajectoryScreen
from explorer.watch import explanation
from explorer.widgets.inspector import NeuronInspector
from explorer.widgets.narration import NarrationLine, WatchPanel, run_job
from explorer.widgets.panels import TrajectoryView, trajectory_tabs
from explorer.widgets.status import StatusLine, format_status
from explorer.worker import (
    RunState,
    elapsed_text,
    one_hidden_layer,
    run_task,
    stream_flow,
)

REDRAW_HZ = 5
#: While the flow runs, phases (plot markers) are re-detected at most this often (seconds).
PHASES_SECONDS = 3.0
IDLE_STATES = ("paused", "done", "error")
#: Wall-clock budget of each method's run in a comparison (k): a cut run says so.
COMPARE_SECONDS = 30.0
LIVE_STATES = ("compiling", "running", "pausing")


class RunScreen(TrajectoryScreen):
    """Watch and steer one run."""

    BINDINGS: ClassVar[list] = [
        Binding("space", "toggle_pause", "Pause/Resume", id="run.pause"),
        Binding("i", "inspect", "Inspect", id="run.inspect"),
        Binding("r", "refine", "Refine", id="run.refine"),
        Binding("m", "merge", "Merge", id="run.merge", show=False),
        Binding("x", "split", "Split", id="run.split", show=False),
        Binding("e", "perturb", "Perturb", id="run.perturb", show=False),
        Binding("s", "save", "Save", id="run.save"),
        Binding("k", "compare", "Compare methods", id="run.compare", show=False),
        Binding("w", "toggle_watch", "What to watch", id="run.watch", show=False),
        Binding("b", "back", "Back to setup", id="run.back", show=False),
        Binding("question_mark", "app.help", "Help", id="run.help"),
        Binding("q", "quit_run", "Quit", id="run.quit"),
    ]

    def __init__(
        self,
        config: Any,
        config_path: Path | None = None,
        *,
        autostart: bool = True,
        start: Any = None,
    ):
        super().__init__()
        self.config = config
        self.config_path = config_path
        self.autostart = autostart
        #: A :class:`core.session.Session` to continue (a branch of a replay,
        #: :func:`core.branch.branch_session`) instead of starting at θ₀.
        self.start = start
        self.state = "building"
        self.problem: Any = None
        self.objective: Any = None
        self.run: RunState | None = None
        self.recorder: Any = None
        self.saved_to: Path | None = None
        self.unsaved = False
        self.error: str | None = None
        self.show_clock = True
        self._frame = 0
        self._t_start = time.monotonic()
        self._wall_offset = 0.0
        self._segment = 0
        self._prev_state = "paused"
        self.last_refine: Any = None
        self.last_inspection: Any = None  # a core.analysis.Inspection
        self.comparison: Any = None  # a core.compare.Comparison (k)

    # -- layout -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusLine("", id="status")
        yield NarrationLine(lambda: run_job(self), id="narration")
        yield WatchPanel(explanation(self.config_path), keys_first=True, id="watch")
        yield from trajectory_tabs(self.PLOT_TABS, log_max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1 / REDRAW_HZ, self._redraw)
        self.log_event(f"config: {self.config.source}")
        self._build_worker()

    # -- problem building -------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="task")
    def _build_worker(self) -> None:
        def job():
            # Everything slow happens here, off the event loop: the build, the first
            # JIT compilations (loss, gradient) and the import of the dynamics stack.
            import core.flow  # noqa: F401
            from core.problem import build_problem

            problem = build_problem(self.config)
            theta0 = np.asarray(problem.theta0)
            # value_and_grad: the one the flow evaluates at t = 0 too (one compilation).
            loss, grad = problem.objective.value_and_grad(theta0)
            return BuildDone(problem, float(loss), float(np.max(np.abs(np.asarray(grad)))))

        run_task("build", job, self.post_message)

    def on_build_done(self, message: BuildDone) -> None:
        import gc

        from core.session import SessionRecorder

        problem, loss0, gnorm0 = message.problem, message.loss, message.grad_norm
        # JAX, diffrax and Textual leave ~10⁶ long-lived objects; a full collection
        # scanning them stalls the event loop for ~0.5 s.  Freeze them out of the GC.
        gc.freeze()
        self.problem = problem
        self.objective = problem.objective
        if self.start is not None:
            from explorer.branch import continue_session

            self.run, self.recorder, self.objective = continue_session(problem, self.start)
            origin = self.start.summary.get("branched_from", {})
            self.log_event(f"branched from {origin.get('session')} at t={self.run.t:.4g}")
        else:
            theta0 = np.asarray(problem.theta0)
            self.run = RunState(problem.spec, theta0)
            self.run.loss = loss0
            self.run.grad_norm = gnorm0
            self.recorder = SessionRecorder(self.config, problem.spec)
        self.log_event(
            f"problem: {problem.spec.input_dim}→{list(problem.spec.widths)}→"
            f"{problem.spec.output_dim}, P={problem.spec.n_params}, {self.objective.name}"
        )
        self.state = "paused"
        if self.autostart:
            self.start_flow()
        self.touch()

    # -- flow -------------------------------------------------------------------

    def start_flow(self) -> None:
        """Start (or resume) the flow from the current point."""
        from core.runner import dynamics_settings

        if self.run is None or self.state not in IDLE_STATES:
            return
        cfg = self.config.dynamics
        t0 = self.run.t
        t_max = cfg.t_max if t0 < cfg.t_max * (1 - 1e-12) else t0 + cfg.t_max
        settings = replace(dynamics_settings(cfg, self.run.spec.n_params), t_max=t_max)
        self._segment += 1
        self.state = "compiling" if not self.run.segments[-1].t else "running"
        self.error = None
        self._t_start = time.monotonic()
        self._wall_offset = self.run.wall
        self.run.steps_offset = self.run.steps  # the generator counts from 0 again
        self._flow(self.objective, self.run.theta, t0, settings, self._segment)
        self.touch()

    @work(thread=True, exclusive=True, exit_on_error=False, group="flow")
    def _flow(
        self, objective: Any, theta: np.ndarray, t0: float, settings: Any, segment: int
    ) -> None:
        worker = get_current_worker()
        stream_flow(
            objective,
            theta,
            settings,
            t0=t0,
            seed=int(self.config.seed) + segment,
            segment=segment,
            post=self.post_message,
            cancelled=lambda: worker.is_cancelled,
            refine=self.config.refine,
        )

    def on_chunk_arrived(self, message: ChunkArrived) -> None:
        if self.run is None or message.segment != self._segment:
            return
        chunk = message.chunk
        base_wall = self._wall_offset
        self.run.add_chunk(chunk)
        self.run.wall = base_wall + float(chunk.wall)
        if self.recorder is not None:
            self.recorder.append_chunk(chunk)
        self.unsaved = True
        if self.state == "compiling":
            self.state = "running"
        self.touch()

    def on_spectrum_arrived(self, message: SpectrumArrived) -> None:
        if self.run is None or message.segment != self._segment:
            return
        self.run.add_spectrum(message.t, message.spectrum)
        if self.recorder is not None:
            self.recorder.add_spectrum(message.t, np.asarray(message.spectrum.eigenvalues))
        self.touch()

    def on_flow_stopped(self, message: FlowStopped) -> None:
        if message.segment != self._segment:
            return
        if message.reason == "paused":
            self.state = "paused"
            self.log_event(f"paused at t={self.run.t:.4g}")
            self.record("pause", t=self.run.t)
        elif message.reason in ("nonfinite", "solver_error"):
            self.state = "error"
            self.error = f"{message.reason}: {message.message}".strip(": ")
            self.log_event(f"[red]stopped: {escape(self.error)}[/red] (last finite state kept)")
            self.notify(self.error, severity="error", timeout=8)
        else:
            self.state = "done"
            self.log_event(
                f"done: {message.reason} at t={self.run.t:.4g}, loss={self.run.loss:.4e}"
            )
        self.touch()

    def on_flow_failed(self, message: FlowFailed) -> None:
        if message.segment != self._segment:
            return
        self.state = "error"
        self.error = message.error
        self.log_event(f"[red]error: {escape(message.error)}[/red] (last finite state kept)")
        self.notify(message.error, title="flow failed", severity="error", timeout=8)
        self.touch()

    def action_toggle_pause(self) -> None:
        if self.state in ("compiling", "running"):
            self.state = "pausing"
            self.workers.cancel_group(self, "flow")
            self.touch()
        elif self.state in IDLE_STATES and self.run is not None:
            self.log_event(f"resume from t={self.run.t:.4g}")
            self.record("resume", t=self.run.t)
            self.start_flow()

    def _require_idle(self, what: str, retry: Any = None) -> bool:
        """Whether nothing flows now.  A running flow is paused first — as ``i`` does —
        and ``retry`` (the action) is called again once it is paused."""
        if self.run is not None and retry is not None and self.state in LIVE_STATES:
            if self.state != "pausing":
                self.action_toggle_pause()
                self.notify(f"paused to {what}", timeout=2)
            self._when_idle(retry)
            return False
        if self.run is None or self.state not in IDLE_STATES:
            self.notify(f"wait for the current task to {what}", severity="warning", timeout=3)
            return False
        return True

    def _when_idle(self, then: Any) -> None:
        """Call ``then`` once the flow has stopped (polls while it is pausing)."""
        if self.state == "pausing":
            self.set_timer(0.1, lambda: self._when_idle(then))
        elif self.state in IDLE_STATES:
            then()

    def action_toggle_watch(self) -> None:
        if not self.query_one(WatchPanel).toggle():
            self.notify("no what-to-watch text: this config is not a shipped preset", timeout=3)

    # -- one-off tasks ------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="task")
    def _task_worker(self, kind: str, job: Any) -> None:
        run_task(kind, job, self.post_message)

    def _start_task(self, job: str, fn: Any, label: str) -> None:
        self._prev_state = self.state
        self.state = "busy"
        self.log_event(label)
        self._task_worker(job, fn)
        self.touch()

    def _task_finished(self) -> None:
        """A one-off job answered: back to the state it started from."""
        self.state = self._prev_state
        self.touch()

    def on_task_failed(self, message: TaskFailed) -> None:
        if message.job == "build":
            self.state = "error"
        else:
            self._task_finished()
        self.error = message.error
        self.log_event(f"[red]{message.job} failed: {escape(message.error)}[/red]")
        self.notify(message.error, title=f"{message.job} failed", severity="error", timeout=8)
        self.touch()

    # inspect ---------------------------------------------------------------------

    def action_inspect(self) -> None:
        if not self._require_idle("inspect", self.action_inspect):
            return
        self.query_one(TabbedContent).active = "tab-inspector"
        self._inspect()

    def _inspect(self) -> None:
        """Inspect the current point in a worker (the inspector shows it when done)."""
        theta, objective = self.run.theta, self.objective
        teacher = self.problem.teacher
        t = self.run.t

        def job():
            from core.analysis import inspect_point

            return InspectDone(inspect_point(objective, theta, teacher, t))

        self._start_task("inspect", job, f"inspect at t={t:.4g}")

    def on_inspect_done(self, message: InspectDone) -> None:
        self._task_finished()
        self.last_inspection = message.inspection
        inspector = self.query_one(NeuronInspector)
        inspector.show(message.inspection)
        # ↑/↓ then pick the neuron; the run screen binds no arrow keys, so nothing is lost
        # (the replay screen keeps ←/→ for stepping and does not do this).
        inspector.focus_table()

    # refine ------------------------------------------------------------------------

    def action_refine(self) -> None:
        if not self._require_idle("refine", self.action_refine):
            return
        cfg = self.config.refine
        method = "auto" if cfg.method == "none" else cfg.method
        objective, theta = self.objective, self.run.theta
        teacher = self.problem.teacher
        x = None if self.problem.data is None else self.problem.data.x

        def job():
            from core.analysis import analyze
            from core.refine import refine

            res = refine(objective, theta, method=method, gtol=cfg.gtol, max_iter=cfg.max_iter)
            # The report's analysis (core.runner.finish): same classification, channels
            # included, of the refined point (or, if it is not finite, of the start).
            point = res.theta if np.all(np.isfinite(np.asarray(res.theta))) else theta
            analysis = analyze(objective, point, teacher, x)
            return RefineDone(res, analysis.spectrum, analysis.classification)

        self._start_task("refine", job, f"refine ({method}) from t={self.run.t:.4g}")

    def _reinspect(self) -> None:
        """The point moved (refine, surgery): an inspector that showed the old point is
        refreshed, so its rows never describe a point that is gone."""
        if self.last_inspection is not None and self.state in IDLE_STATES:
            self._inspect()

    def on_refine_done(self, message: RefineDone) -> None:
        self._task_finished()
        res, spectrum, kind = message.result, message.spectrum, message.classification
        self.last_refine = (res, spectrum, kind)
        moved = float(np.max(np.abs(np.asarray(res.theta) - self.run.theta)))
        self.record_point(np.asarray(res.theta), float(res.loss), float(res.grad_inf_norm))
        self.run.add_spectrum(self.run.t, spectrum)
        status = "converged" if res.converged else f"[b]not converged[/b]: {res.reason}"
        text = (
            f"[b]refined[/b] ({res.method}, {res.iterations} it, {status}): "
            f"[b]{kind}[/b], index {spectrum.index}, zero eigenvalues {spectrum.n_zero}, "
            f"loss {res.loss:.6e}, ‖∇L‖∞ {res.grad_inf_norm:.2e}, moved {moved:.2e}"
        )
        self.query_one(NeuronInspector).show_refine(text)
        self.log_event(text)
        self.record(
            "refine",
            t=self.run.t,
            method=res.method,
            converged=bool(res.converged),
            loss=float(res.loss),
            grad_inf_norm=float(res.grad_inf_norm),
            classification=kind,
            index=int(spectrum.index),
        )
        if self.recorder is not None:
            self.recorder.add_spectrum(self.run.t, np.asarray(spectrum.eigenvalues), "refined")
            self.recorder.set_refined(
                res.theta,
                t=self.run.t,
                loss=float(res.loss),
                grad_inf_norm=float(res.grad_inf_norm),
                iterations=int(res.iterations),
                converged=bool(res.converged),
                reason=res.reason,
                method=res.method,
                classification=kind,
            )
        self.unsaved = True
        self._reinspect()

    # surgery ----------------------------------------------------------------------

    def _surgery_allowed(self, what: str, retry: Any = None) -> bool:
        if not self._require_idle(what, retry):
            return False
        if not one_hidden_layer(self.run.spec):
            self.notify(f"{what} needs a one-hidden-layer student", severity="warning")
            return False
        return True

    def action_merge(self) -> None:
        if not self._surgery_allowed("merge", self.action_merge):
            return
        k = self.run.spec.widths[0]
        self.app.push_screen(
            PromptScreen("Merge two neurons", f"neuron indices i j (0…{k - 1})", "0 1"),
            self._merge_answer,
        )

    def _merge_answer(self, text: str | None) -> None:
        if text is None:
            return
        try:
            i, j = (int(p) for p in text.replace(",", " ").split())
        except ValueError:
            self.notify("merge: type two neuron indices, e.g. '0 1'", severity="error")
            return
        self._surgery("merge", i=i, j=j)

    def action_split(self) -> None:
        if not self._surgery_allowed("split", self.action_split):
            return
        k = self.run.spec.widths[0]
        default = self.query_one(NeuronInspector).selected_neuron()
        self.app.push_screen(
            PromptScreen(
                "Split a neuron", f"neuron index i (0…{k - 1}) and split ratio μ", f"{default} 0.5"
            ),
            self._split_answer,
        )

    def _split_answer(self, text: str | None) -> None:
        if text is None:
            return
        try:
            parts = text.replace(",", " ").split()
            i, mu = int(parts[0]), float(parts[1]) if len(parts) > 1 else 0.5
        except (ValueError, IndexError):
            self.notify("split: type a neuron index and μ, e.g. '0 0.3'", severity="error")
            return
        self._surgery("split", i=i, mu=mu)

    def action_perturb(self) -> None:
        if not self._require_idle("perturb", self.action_perturb):
            return
        self.app.push_screen(
            PromptScreen("Perturb along the most negative eigenvector", "step size ε", "1e-3"),
            self._perturb_answer,
        )

    def _perturb_answer(self, text: str | None) -> None:
        if text is None:
            return
        try:
            eps = float(text)
        except ValueError:
            self.notify("perturb: ε must be a number", severity="error")
            return
        self._surgery("perturb", eps=eps)

    def _surgery(self, op: str, **kw: Any) -> None:
        spec, theta, objective, problem = (
            self.run.spec,
            self.run.theta,
            self.objective,
            self.problem,
        )

        def job():
            from core import surgery

            params = dict(kw)
            if op == "perturb":
                lam, _ = surgery.hessian_eigenpair(objective, theta, "min")
                params["lambda_min"] = float(lam)
                new_theta = surgery.perturb_along_eigenvector(
                    objective, theta, kw["eps"], which="min"
                )
                new_spec, new_obj = spec, objective
            else:
                fn = surgery.merge_neurons if op == "merge" else surgery.split_neuron
                args = (kw["i"], kw["j"]) if op == "merge" else (kw["i"], kw["mu"])
                from core.manifold import constraint_of

                constraint = constraint_of(objective)  # unit_norm / train_output: kept or refused
                new_spec, new_theta = fn(spec, theta, *args, constraint=constraint)
                new_obj = problem.objective_for(new_spec)
            new_theta = np.asarray(new_theta)
            loss = float(new_obj.loss(new_theta))
            gnorm = float(np.max(np.abs(np.asarray(new_obj.grad(new_theta)))))
            return SurgeryDone(op, params, new_spec, new_obj, new_theta, loss, gnorm)

        self._start_task("surgery", job, f"{op} {kw}")

    def on_surgery_done(self, message: SurgeryDone) -> None:
        self._task_finished()
        op, kw, spec, theta = message.op, message.params, message.spec, message.theta
        objective, loss, gnorm = message.objective, message.loss, message.grad_norm
        if spec != self.run.spec:
            self.run.new_segment(spec, theta)
            self.objective = objective
            if self.recorder is not None:
                self.recorder.start_segment(spec)
        self.record_point(theta, loss, gnorm)
        text = (
            f"{op} {kw}: width {list(spec.widths)}, loss {loss:.6e}, ‖∇L‖∞ {gnorm:.2e}"
            " — space resumes"
        )
        lam = kw.get("lambda_min")
        if op == "perturb" and lam is not None and lam >= 0:
            # The key promises the most negative direction; at a minimum there is none.
            text = (
                f"perturbed along the eigenvector of λmin = {lam:.3e} ≥ 0: no descent "
                f"direction here (a minimum), the flow will return; loss {loss:.6e}"
            )
            self.notify(text, severity="warning", timeout=6)
        else:
            self.notify(text, timeout=4)
        self.log_event(text)
        self.record(
            "surgery",
            t=self.run.t,
            op=op,
            **kw,
            widths=list(spec.widths),
            loss=loss,
            grad_inf_norm=gnorm,
        )
        self.unsaved = True
        self._reinspect()

    # compare methods ----------------------------------------------------------------

    def action_compare(self) -> None:
        """Flow vs GD (and SGD with data) and Adam from the run's θ₀ up to the time the run
        reached (:func:`core.compare.compare_methods`), each method within
        :data:`COMPARE_SECONDS`; shown in plots 9 and 0 and saved with the session."""
        if not self._require_idle("compare methods", self.action_compare):
            return
        from core.compare import default_methods
        from core.runner import dynamics_settings

        problem = self.problem
        cfg = self.config.dynamics
        t_max = self.run.t if self.run.t > 0 else cfg.t_max
        settings = dynamics_settings(cfg, problem.spec.n_params)
        settings = replace(
            settings, t_max=t_max, max_seconds=min(settings.max_seconds, COMPARE_SECONDS)
        )
        methods = default_methods(problem.objective.data is not None)
        seed = int(self.config.seed)

        def job():
            from core.compare import compare_methods

            theta0 = np.asarray(problem.theta0)
            return CompareDone(
                compare_methods(problem.objective, theta0, settings, methods, seed=seed)
            )

        self._start_task(
            "compare", job, f"compare flow vs {', '.join(methods)} from θ₀ to t={t_max:.4g}"
        )

    def on_compare_done(self, message: CompareDone) -> None:
        from core.compare import comparison_summary

        self._task_finished()
        self.comparison = message.comparison
        if self.recorder is not None:
            self.recorder.comparison = message.comparison
        for line in comparison_summary(message.comparison):
            self.log_event(line)
        self.unsaved = True
        self.touch()
        self.action_show_plot(len(self.PLOT_TABS) - 2)  # the comparison's loss plot

    # save -------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.run is None or self.recorder is None:
            self.notify("nothing to save yet", severity="warning")
            return
        default = self.saved_to or default_session_dir(self.config_path)
        self.app.push_screen(
            PromptScreen("Save session", "folder (created or replaced atomically)", str(default)),
            self._save_answer,
        )

    def _save_answer(self, text: str | None) -> None:
        if not text:
            return
        from core.session import is_session_dir

        path = Path(text).expanduser()
        if path.absolute() != self.saved_to and is_session_dir(path):

            def answer(yes: bool | None) -> None:  # another session is there: ask first
                if yes:
                    self.save_to(path)

            self.app.push_screen(ConfirmScreen(f"Replace the session in {path}?"), answer)
            return
        self.save_to(path)

    def save_to(self, path: Path) -> None:
        """Save the session now (main thread: the recorder is only touched here)."""
        from core.session import SessionError

        try:
            out = Path(self.recorder.save(path))
        except (SessionError, OSError, ValueError) as exc:
            self.notify(str(exc), title="save failed", severity="error", timeout=8)
            self.log_event(f"[red]save failed: {escape(str(exc))}[/red]")
            return
        self.saved_to = out
        self.unsaved = False
        self.log_event(f"saved to {out}")
        self.notify(f"saved to {out}", timeout=3)

    # navigation ---------------------------------------------------------------------

    def action_back(self) -> None:
        self._leave(lambda: self.app.pop_screen(), "go back to setup")

    def action_quit_run(self) -> None:
        self._leave(lambda: self.app.exit(), "quit")

    def _leave(self, then: Any, what: str) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.workers.cancel_group(self, "flow")
                then()

        if self.unsaved:
            self.app.push_screen(ConfirmScreen(f"Discard the unsaved run and {what}?"), answer)
        else:
            answer(True)

    # -- bookkeeping ------------------------------------------------------------------

    def record_point(self, theta: np.ndarray, loss: float, grad_norm: float) -> None:
        """Append the current point (moved by refine/surgery, same t) to the trajectory.

        Keeps the saved trajectory faithful (the next flow segment starts here) and gives
        a segment created by surgery its first state.
        """
        from core.flow import Chunk

        chunk = Chunk(
            t=np.array([self.run.t]),
            theta=np.asarray(theta)[None, :],
            loss=np.array([loss]),
            grad_norm=np.array([grad_norm]),
            steps=self.run.steps - self.run.steps_offset,  # add_chunk adds the offset
            wall=self.run.wall,
            done=False,
            reason=None,
        )
        self.run.add_chunk(chunk)
        if self.recorder is not None:
            self.recorder.append(chunk.t, chunk.theta, chunk.loss, chunk.grad_norm)

    def record(self, kind: str, **data: Any) -> None:
        """Add an event to the session log."""
        if self.recorder is not None:
            self.recorder.add_event(kind, **data)

    def log_event(self, text: str) -> None:
        self.query_one("#event-log", RichLog).write(text)

    def view(self) -> TrajectoryView | None:
        """The run so far, its events and phases (recomputed when new points arrive)."""
        if self.run is None:
            return None
        events = self.recorder.events if self.recorder is not None else []
        return TrajectoryView(
            self.run, None, events, self._run_phases(), self.problem, self.comparison
        )

    def _run_phases(self) -> list:
        run = self.run
        key = self._version  # bumped by every new chunk, spectrum or moved point

        def compute() -> list:
            from core.phases import detect_phases

            t, loss = run.series("loss")
            _, gnorm = run.series("grad_norm")
            spectra = (
                []
                if self.recorder is None
                else [(s.t, s.eigenvalues) for s in self.recorder.spectra]
            )
            return detect_phases(t, loss, gnorm, spectra)

        # Detection is pure NumPy on the event loop (~5 ms per 200 points, ~70 ms per 4000):
        # while the flow runs, at most every PHASES_SECONDS; once it stops, at once.
        live = self.state in ("compiling", "running", "pausing")
        return self.phases_for(key, compute, PHASES_SECONDS if live else 0.0)

    def _redraw(self) -> None:
        """Timer callback: status line always; plots on screen whose data changed."""
        self._frame += 1
        self._update_status()
        if self.run is not None:
            self.refresh_plots(live=self.state in ("compiling", "running", "pausing"))

    def _update_status(self) -> None:
        run = self.run
        state = self.state
        if state == "error" and self.error:
            # One status line cannot hold a long message: its start here, the whole of it
            # in the Log tab (every error path logs it in full) and the notification.
            head = escape(self.error if len(self.error) <= 40 else self.error[:39] + "…")
            state = f"error ({head}" + (" — l: full text in Log)" if len(self.error) > 40 else ")")
        if run is None:
            text = format_status(state, 0.0, float("nan"), float("nan"), 0, None, self._frame)
        else:
            elapsed = None
            if self.show_clock:
                wall = run.wall
                if self.state in ("compiling", "running"):
                    wall = self._wall_offset + time.monotonic() - self._t_start
                elapsed = elapsed_text(wall)
            text = format_status(
                state, run.t, run.loss, run.grad_norm, run.steps, elapsed, self._frame
            )
        self.query_one(StatusLine).update(text)


def default_session_dir(config_path: Path | None) -> Path:
    """sessions/<config stem>-<YYYYmmdd-HHMMSS>."""
    stem = config_path.stem if config_path else "run"
    return Path("sessions") / f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
